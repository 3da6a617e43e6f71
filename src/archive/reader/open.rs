//! Opening a backup file: the outer tar's index, the manifest read and checked as format 1, the problems of
//! the outer structure found on the way, and unlocking an encrypted backup with its identity.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::super::ArchiveError;
use super::super::crypt::{Keys, UnlockError, Unlocked};
use super::super::format::{FORMAT, MANIFEST_MEMBER, Manifest, PARTIAL_SUFFIX, merge_sealed};
use super::super::source::{FileSource, RangeSource, ReadSeek};
use super::{BLOCK, Backup, MAX_MANIFEST, MemberIndex, Problem, ProblemKind};

impl Backup {
    /// Reads the outer tar's index and the manifest of a local file.
    pub fn open(path: impl AsRef<Path>) -> Result<Backup, ArchiveError> {
        let path = path.as_ref().to_path_buf();
        let source = FileSource::open(&path).map_err(|source| ArchiveError::Open {
            path: path.clone(),
            source,
        })?;
        Backup::open_source(path, Arc::new(source))
    }

    /// Reads the outer tar's index and the manifest from `source` (a local file, or a destination's object
    /// read by ranges); `path` names it in messages (a path, or the destination's URL of the file).
    pub fn open_source(
        path: PathBuf,
        source: Arc<dyn RangeSource>,
    ) -> Result<Backup, ArchiveError> {
        let not_a_backup = |reason: String| ArchiveError::NotABackup {
            path: path.clone(),
            reason,
        };
        if path.to_string_lossy().ends_with(PARTIAL_SUFFIX) {
            return Err(not_a_backup(
                "it is an unfinished write (`.partial`)".to_string(),
            ));
        }
        let open_err = |source| ArchiveError::Open {
            path: path.clone(),
            source,
        };
        let mut file = source.cursor().map_err(open_err)?;
        let file_len = source.len();

        let mut members = Vec::new();
        let mut structure = Vec::new();
        {
            let mut archive = tar::Archive::new(&mut file);
            let entries = archive
                .entries_with_seek()
                .map_err(|e| not_a_backup(format!("not a tar file: {e}")))?;
            for entry in entries {
                let entry = entry.map_err(|e| {
                    not_a_backup(format!(
                        "the tar is damaged after {} members: {e}",
                        members.len()
                    ))
                })?;
                let name = String::from_utf8(entry.path_bytes().into_owned())
                    .map_err(|_| not_a_backup("a member name is not UTF-8".to_string()))?;
                let kind = entry.header().entry_type();
                if !kind.is_file() {
                    structure.push(Problem::new(
                        Some(&name),
                        ProblemKind::Structure,
                        "is not a regular file",
                    ));
                }
                members.push(MemberIndex {
                    name,
                    header_offset: entry.raw_header_position(),
                    data_offset: entry.raw_file_position(),
                    size: entry.size(),
                });
            }
        }
        if members.is_empty() {
            return Err(not_a_backup("it holds no tar member".to_string()));
        }
        let mut end = 0;
        for m in &members {
            let member_end = m.data_offset.saturating_add(m.size);
            if member_end > file_len {
                return Err(not_a_backup(format!(
                    "it is truncated: member `{}` needs {member_end} bytes, the file has {file_len}",
                    m.name
                )));
            }
            end = member_end.div_ceil(BLOCK) * BLOCK;
        }

        let manifest_index = members
            .iter()
            .rposition(|m| m.name == MANIFEST_MEMBER)
            .ok_or_else(|| not_a_backup(format!("it has no `{MANIFEST_MEMBER}`")))?;
        let m = &members[manifest_index];
        if m.size > MAX_MANIFEST {
            return Err(not_a_backup(format!(
                "`{MANIFEST_MEMBER}` is {} bytes, too large to be a manifest",
                m.size
            )));
        }
        let mut json = Vec::with_capacity(usize::try_from(m.size).unwrap_or(0));
        file.seek(SeekFrom::Start(m.data_offset))
            .and_then(|_| (&mut file).take(m.size).read_to_end(&mut json))
            .map_err(|source| ArchiveError::ReadMember {
                path: path.clone(),
                member: MANIFEST_MEMBER.to_string(),
                source,
            })?;
        let (manifest, readable) = parse_manifest(&path, &json)?;

        if manifest_index != members.len() - 1 {
            structure.push(Problem::new(
                Some(MANIFEST_MEMBER),
                ProblemKind::Structure,
                "is not the last member",
            ));
        }
        let mut seen = BTreeSet::new();
        for m in &members {
            if !seen.insert(m.name.as_str()) {
                structure.push(Problem::new(
                    Some(&m.name),
                    ProblemKind::Structure,
                    "appears more than once",
                ));
            }
        }
        if let Some(problem) = check_end(&mut file, end, file_len) {
            structure.push(problem);
        }

        drop(file);
        Ok(Backup {
            source,
            path,
            manifest,
            members,
            file_len,
            structure,
            verified: Mutex::new(BTreeSet::new()),
            readable,
            unlocked: None,
        })
    }

    /// Opens a backup and, when it is encrypted, unlocks it with `keys` (an error when they do not fit or
    /// there are none). A plain backup opens as with [`Backup::open`], whatever the keys.
    pub fn open_with(path: impl AsRef<Path>, keys: &Keys) -> Result<Backup, ArchiveError> {
        let mut backup = Backup::open(path)?;
        backup.unlock(keys)?;
        Ok(backup)
    }

    /// Reads the sealed manifest fields of an encrypted backup with `keys`, and keeps the identities for
    /// reading its members. Nothing to do for a plain backup, or one already unlocked.
    pub fn unlock(&mut self, keys: &Keys) -> Result<(), ArchiveError> {
        let Some(info) = self.manifest.encryption.clone() else {
            return Ok(());
        };
        if self.unlocked.is_some() {
            return Ok(());
        }
        let locked = |source| ArchiveError::Locked {
            path: self.path.clone(),
            source,
        };
        let (unlocked, sealed) = Unlocked::open(&info, keys).map_err(locked)?;
        let sealed: serde_json::Value = serde_json::from_slice(&sealed)
            .map_err(|e| locked(UnlockError::Damaged(format!("it is not JSON: {e}"))))?;
        let mut full = self.readable.clone();
        merge_sealed(&mut full, sealed);
        self.manifest = serde_json::from_value(full)
            .map_err(|e| locked(UnlockError::Damaged(format!("not a valid manifest: {e}"))))?;
        self.unlocked = Some(Arc::new(unlocked));
        Ok(())
    }
}

pub(super) fn parse_manifest(
    path: &Path,
    json: &[u8],
) -> Result<(Manifest, serde_json::Value), ArchiveError> {
    let not_a_backup = |reason: String| ArchiveError::NotABackup {
        path: path.to_path_buf(),
        reason,
    };
    let value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| not_a_backup(format!("`{MANIFEST_MEMBER}` is not JSON: {e}")))?;
    match value.get("format") {
        None => {
            return Err(not_a_backup(format!(
                "`{MANIFEST_MEMBER}` has no `format` field"
            )));
        }
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(u64::from(FORMAT)) => {}
        Some(other) => {
            return Err(ArchiveError::UnsupportedFormat {
                path: path.to_path_buf(),
                found: other.to_string(),
            });
        }
    }
    let manifest = serde_json::from_value(value.clone())
        .map_err(|e| not_a_backup(format!("`{MANIFEST_MEMBER}` is not a valid manifest: {e}")))?;
    Ok((manifest, value))
}

/// After the last member: at least two zero blocks, and nothing but zeros.
fn check_end(file: &mut dyn ReadSeek, end: u64, file_len: u64) -> Option<Problem> {
    let structure = |what: &str| Some(Problem::new(None, ProblemKind::Structure, what));
    if file_len < end + 2 * BLOCK {
        return structure("the tar's end-of-archive blocks are missing");
    }
    let mut tail = Vec::new();
    let read = file
        .seek(SeekFrom::Start(end))
        .and_then(|_| file.take(64 * 1024).read_to_end(&mut tail));
    match read {
        Err(e) => structure(&format!("the end of the file cannot be read: {e}")),
        Ok(_) if tail.iter().any(|b| *b != 0) || file_len > end + 64 * 1024 => {
            structure("data follows the end of the tar")
        }
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::write_backup;
    use super::*;

    #[test]
    fn partial_files_are_not_backups() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write_backup(tmp.path(), "app", "2026-11-22T10:15:00Z", None);
        let partial = tmp.path().join("app-20261122T101500Z.tar.partial");
        std::fs::copy(&path, &partial).unwrap();
        assert!(matches!(
            Backup::open(&partial),
            Err(ArchiveError::NotABackup { .. })
        ));
    }

    #[test]
    fn other_format_numbers_are_refused_clearly() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.tar");
        let mut b = tar::Builder::new(Vec::new());
        let json = br#"{"format": 2, "whatever": true}"#;
        let mut h = tar::Header::new_ustar();
        h.set_size(json.len() as u64);
        b.append_data(&mut h, "manifest.json", &json[..]).unwrap();
        std::fs::write(&path, b.into_inner().unwrap()).unwrap();
        let err = Backup::open(&path).unwrap_err();
        assert!(
            matches!(&err, ArchiveError::UnsupportedFormat { found, .. } if found == "2"),
            "{err}"
        );
    }
}
