//! Listing a project's backups: which files are candidates by their name, what their manifests say, newest
//! first, and what was skipped and why.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::super::ArchiveError;
use super::super::format::{BackupName, Manifest, PARTIAL_SUFFIX};
use super::{Backup, chain};

/// One backup of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub path: PathBuf,
    /// Size of the file.
    pub bytes: u64,
    pub manifest: Manifest,
}

impl BackupSummary {
    pub fn created(&self) -> Timestamp {
        self.manifest.created
    }

    pub fn tag(&self) -> Option<&str> {
        self.manifest.tag.as_deref()
    }
}

/// A file that looked like a backup of the project by its name but is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    pub path: PathBuf,
    pub reason: String,
}

/// The backups of a project in a directory, newest first, and what was skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupListing {
    pub backups: Vec<BackupSummary>,
    /// Files named `<project>-<stamp>[-<tag>].tar[.partial]` that are not backups of the project (unfinished,
    /// damaged, another format, or another project's manifest). Other files are ignored without a word.
    pub skipped: Vec<SkippedFile>,
}

impl BackupListing {
    /// Whether the file `name` (at `path`) may be a backup of `project`, by its name. An unfinished
    /// `.partial` of the project is recorded as skipped and is not one; other names are ignored.
    pub fn is_candidate(&mut self, project: &str, name: &str, path: &Path) -> bool {
        let partial = name.strip_suffix(PARTIAL_SUFFIX);
        if BackupName::parse_for_project(partial.unwrap_or(name), project).is_none() {
            return false;
        }
        if partial.is_some() {
            self.skipped.push(SkippedFile {
                path: path.to_path_buf(),
                reason: "unfinished write (`.partial`)".to_string(),
            });
            return false;
        }
        true
    }

    /// Adds what reading a candidate's manifest found: a backup of `project`, or a skipped file saying why.
    pub fn add_read(
        &mut self,
        project: &str,
        path: PathBuf,
        bytes: u64,
        read: Result<Manifest, String>,
    ) {
        match read {
            Ok(manifest) if manifest.project != project => self.skipped.push(SkippedFile {
                path,
                reason: format!("its manifest names project `{}`", manifest.project),
            }),
            Ok(manifest) => self.backups.push(BackupSummary {
                path,
                bytes,
                manifest,
            }),
            Err(reason) => self.skipped.push(SkippedFile { path, reason }),
        }
    }

    /// Newest first: by the manifest's `created`, then by path.
    pub fn sort_newest_first(&mut self) {
        self.backups.sort_by(|a, b| {
            b.manifest
                .created
                .cmp(&a.manifest.created)
                .then_with(|| b.path.cmp(&a.path))
        });
    }
}

/// Lists the backups of `project` in `dir`, newest first (by the manifest's `created`, then by file name). A
/// missing directory holds no backups.
pub fn list_backups(dir: impl AsRef<Path>, project: &str) -> Result<BackupListing, ArchiveError> {
    let dir = dir.as_ref();
    let mut listing = BackupListing::default();
    let entries = match fs_err::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(listing),
        Err(source) => {
            return Err(ArchiveError::ListDir {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut names = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|source| ArchiveError::ListDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        names.insert(name, entry.path());
    }
    for (name, path) in names {
        if !listing.is_candidate(project, &name, &path) {
            continue;
        }
        match Backup::open(&path) {
            Ok(backup) => {
                let bytes = backup.file_len;
                listing.add_read(project, path, bytes, Ok(backup.manifest));
            }
            Err(e) => listing.add_read(project, path, 0, Err(chain(&e))),
        }
    }
    listing.sort_newest_first();
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::super::tests::write_backup;
    use super::*;

    #[test]
    fn list_is_newest_first_and_skips_non_backups() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let old = write_backup(d, "app", "2026-11-20T10:00:00Z", None);
        let new = write_backup(d, "app", "2026-11-22T10:00:00Z", Some("nightly"));
        let mid = write_backup(d, "app", "2026-11-21T10:00:00Z", Some("pre-restore"));
        write_backup(d, "other", "2026-11-23T10:00:00Z", None);
        write_backup(d, "app-web", "2026-11-23T10:00:00Z", None);
        std::fs::write(d.join("app-20261124T000000Z.tar.partial"), b"half").unwrap();
        std::fs::write(d.join("app-20261125T000000Z.tar"), b"not a tar at all").unwrap();
        std::fs::write(d.join("notes.txt"), b"hello").unwrap();
        let listing = list_backups(d, "app").unwrap();
        let paths: Vec<_> = listing.backups.iter().map(|b| b.path.clone()).collect();
        assert_eq!(paths, vec![new, mid, old]);
        assert_eq!(listing.backups[0].tag(), Some("nightly"));
        assert_eq!(listing.skipped.len(), 2, "{:?}", listing.skipped);
        assert!(
            listing
                .skipped
                .iter()
                .any(|s| s.reason.contains(".partial"))
        );
        assert!(
            list_backups(d.join("missing"), "app")
                .unwrap()
                .backups
                .is_empty()
        );
    }
}
