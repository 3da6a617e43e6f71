//! Reading backup files back: opening one (its outer index and manifest), verifying everything it claims,
//! streaming a volume's tar out for a restore, and listing a project's backups.
//!
//! A file is a backup only if it is a tar whose `manifest.json` parses as format 1; anything else — a
//! `.partial`, a truncated file, a foreign tar — is [`ArchiveError::NotABackup`], and listings skip it.
//!
//! Reading a volume back ([`Backup::volume_stream`]) requires that volume to have been verified through the
//! same [`Backup`] first (a restore must know the member is sound before it destroys anything), and it checks
//! again on the way: the stored bytes' SHA-256 and size are compared at the end of the stream and zstd checks
//! its frame checksum, so a file changed after its verification fails the stream instead of passing silently.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use sha2::{Digest as _, Sha256};

use super::ArchiveError;
use super::digest::{DigestError, DigestOptions, TreeSummary, digest_tar};
use super::format::{
    BackupName, DUMPS_DIR, DumpRecord, FORMAT, MANIFEST_MEMBER, Manifest, PARTIAL_SUFFIX,
    VOLUMES_DIR, compose_member, key_for_member,
};
use super::source::{FileSource, RangeSource, ReadSeek};

const BLOCK: u64 = 512;
/// A manifest larger than this is not one of ours.
const MAX_MANIFEST: u64 = 64 * 1024 * 1024;
const READ_BUFFER: usize = 256 * 1024;

/// Where a member of the outer tar is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberIndex {
    pub name: String,
    /// Offset of the member's ustar header.
    pub header_offset: u64,
    /// Offset of its first data byte.
    pub data_offset: u64,
    pub size: u64,
}

/// An opened backup file.
#[derive(Debug)]
pub struct Backup {
    source: Arc<dyn RangeSource>,
    path: PathBuf,
    manifest: Manifest,
    members: Vec<MemberIndex>,
    file_len: u64,
    /// Problems of the outer structure found while opening, reported by [`Backup::verify`].
    structure: Vec<Problem>,
    /// Keys of the volumes verified sound through this handle.
    verified: Mutex<BTreeSet<String>>,
}

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
        let manifest = parse_manifest(&path, &json)?;

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
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The members of the outer tar, in file order.
    pub fn members(&self) -> &[MemberIndex] {
        &self.members
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    pub fn member(&self, name: &str) -> Option<&MemberIndex> {
        self.members.iter().rev().find(|m| m.name == name)
    }

    /// The bytes of `compose/<file_name>`.
    pub fn compose_file(&self, file_name: &str) -> Result<Vec<u8>, ArchiveError> {
        let name = compose_member(file_name).unwrap_or_default();
        let m = self
            .member(&name)
            .ok_or_else(|| ArchiveError::MissingMember {
                path: self.path.clone(),
                member: name.clone(),
            })?;
        let mut out = Vec::new();
        self.raw_member(m)?
            .read_to_end(&mut out)
            .map_err(|source| ArchiveError::ReadMember {
                path: self.path.clone(),
                member: name,
                source,
            })?;
        Ok(out)
    }

    /// Checks everything: the outer structure, every Compose file and volume member named by the manifest,
    /// their sizes and SHA-256, zstd frames and checksums, the inner tars, entry counts, byte counts, content
    /// digests, and that no inner entry escapes the volume root. Problems go into the report; only an I/O
    /// failure reading the file is an error.
    pub fn verify(&self) -> Result<VerifyReport, ArchiveError> {
        let keys: Vec<&str> = self.manifest.keys().collect();
        let mut report = self.verify_volumes(&keys)?;
        let mut problems = Vec::new();

        for name in &self.manifest.compose_files {
            match compose_member(name) {
                Some(member) if self.member(&member).is_some() => {}
                Some(member) => problems.push(Problem::new(
                    Some(&member),
                    ProblemKind::MissingMember,
                    "is named by the manifest but not in the file",
                )),
                None => problems.push(Problem::new(
                    None,
                    ProblemKind::Manifest,
                    &format!("Compose file name `{name}` is not a plain file name"),
                )),
            }
        }
        let listed: BTreeSet<&str> = self
            .manifest
            .volumes
            .iter()
            .map(|v| v.member.as_str())
            .chain(self.manifest.dumps.iter().map(|d| d.member.as_str()))
            .collect();
        for m in &self.members {
            if (m.name.starts_with(VOLUMES_DIR) || m.name.starts_with(DUMPS_DIR))
                && !listed.contains(m.name.as_str())
            {
                problems.push(Problem::new(
                    Some(&m.name),
                    ProblemKind::UnexpectedMember,
                    "is not named by the manifest",
                ));
            }
        }
        let mut keys = BTreeSet::new();
        let all = self
            .manifest
            .volumes
            .iter()
            .map(|v| (v.key.as_str(), v.member.as_str()))
            .chain(
                self.manifest
                    .dumps
                    .iter()
                    .map(|d| (d.key.as_str(), d.member.as_str())),
            );
        for (key, member) in all {
            if !keys.insert(key) {
                problems.push(Problem::new(
                    Some(member),
                    ProblemKind::Manifest,
                    &format!("volume `{key}` is listed more than once"),
                ));
            }
        }
        problems.append(&mut report.problems);
        report.problems = problems;
        Ok(report)
    }

    /// Verifies only the volumes `keys` (what a restore needs) and the outer structure.
    pub fn verify_volumes(&self, keys: &[&str]) -> Result<VerifyReport, ArchiveError> {
        let mut report = VerifyReport {
            path: self.path.clone(),
            volumes: Vec::new(),
            problems: self.structure.clone(),
        };
        for key in keys {
            let mut problems = Vec::new();
            let check = match (self.manifest.volume(key), self.manifest.dump(key)) {
                (Some(record), _) => self.verify_volume(record, &mut problems)?,
                (None, Some(dump)) => self.verify_dump(dump, &mut problems)?,
                (None, None) => {
                    return Err(ArchiveError::UnknownVolume {
                        path: self.path.clone(),
                        key: key.to_string(),
                    });
                }
            };
            if problems.is_empty() && self.structure.is_empty() {
                self.mark_verified(key);
            }
            report.problems.extend(problems);
            report.volumes.push(check);
        }
        Ok(report)
    }

    fn mark_verified(&self, key: &str) {
        if let Ok(mut set) = self.verified.lock() {
            set.insert(key.to_string());
        }
    }

    fn is_verified(&self, key: &str) -> bool {
        self.verified
            .lock()
            .map(|set| set.contains(key))
            .unwrap_or(false)
    }

    /// The member a manifest record names, with its stored size checked against the record; `None` when
    /// the file lacks it. Both are recorded as problems.
    fn located(
        &self,
        member: &str,
        stored_bytes: u64,
        problem: &mut Report<'_>,
    ) -> Option<&MemberIndex> {
        let Some(index) = self.member(member) else {
            problem(
                ProblemKind::MissingMember,
                "is named by the manifest but not in the file",
                None,
                None,
            );
            return None;
        };
        if index.size != stored_bytes {
            problem(
                ProblemKind::SizeMismatch,
                "stored size differs from the manifest",
                Some(stored_bytes.to_string()),
                Some(index.size.to_string()),
            );
        }
        Some(index)
    }

    /// Gives `consume` the zstd-decoded member, then hashes whatever it left unread so that the SHA-256
    /// covers the whole member, and records a SHA-256 that differs from `sha256`. Returns what `consume`
    /// returned and whether zstd failed; a failure to read the file itself is an error, not a problem.
    fn read_checked<T>(
        &self,
        member: &str,
        index: &MemberIndex,
        sha256: &str,
        problem: &mut Report<'_>,
        consume: impl FnOnce(&mut dyn Read) -> T,
    ) -> Result<(T, bool), ArchiveError> {
        let raw = self.raw_member(index)?;
        let hashing = HashingReader::new(raw);
        let io_failed = hashing.failed.clone();
        let decoder = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(
            READ_BUFFER,
            hashing,
        ))
        .map_err(|source| self.read_err(member, source))?;
        let mut decoder = Latch::new(decoder);
        let consumed = consume(&mut decoder);
        if let Some(source) = io_failed.lock().ok().and_then(|mut slot| slot.take()) {
            return Err(self.read_err(member, source));
        }
        let mut hashing = decoder.inner.finish().into_inner();
        io::copy(&mut hashing, &mut io::sink()).map_err(|source| self.read_err(member, source))?;
        let (found, read) = hashing.finish();
        debug_assert_eq!(read, index.size);
        if found != sha256 {
            problem(
                ProblemKind::Sha256Mismatch,
                "SHA-256 of the stored bytes differs from the manifest",
                Some(sha256.to_string()),
                Some(found),
            );
        }
        Ok((consumed, decoder.failed))
    }

    /// Checks a dump member: present, its size and SHA-256, its zstd frames and checksums, and the size and
    /// SHA-256 of the decompressed dump.
    fn verify_dump(
        &self,
        record: &DumpRecord,
        problems: &mut Vec<Problem>,
    ) -> Result<VolumeCheck, ArchiveError> {
        let member = record.member.as_str();
        let mut check = VolumeCheck {
            key: record.key.clone(),
            member: member.to_string(),
            ok: false,
            summary: None,
        };
        let mut problem = |kind, what: &str, expected: Option<String>, found: Option<String>| {
            problems.push(Problem {
                member: Some(member.to_string()),
                kind,
                what: what.to_string(),
                expected,
                found,
            });
        };
        if !member.starts_with(DUMPS_DIR)
            || member.contains("/..")
            || member[DUMPS_DIR.len()..].contains('/')
        {
            problem(
                ProblemKind::Manifest,
                "is not a dump member name",
                None,
                None,
            );
            return Ok(check);
        }
        let Some(index) = self.located(member, record.stored_bytes, &mut problem) else {
            return Ok(check);
        };
        let (decoded, _) = self.read_checked(member, index, &record.sha256, &mut problem, |r| {
            let mut content = Sha256::new();
            let mut bytes = 0u64;
            let mut buf = vec![0u8; READ_BUFFER];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break Ok((content, bytes)),
                    Ok(n) => {
                        content.update(&buf[..n]);
                        bytes += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            }
        })?;
        let (content, bytes) = match decoded {
            Ok(read) => read,
            Err(e) => {
                problem(
                    ProblemKind::Zstd,
                    &format!("does not decode: {e}"),
                    None,
                    None,
                );
                return Ok(check);
            }
        };
        if bytes != record.bytes {
            problem(
                ProblemKind::CountMismatch,
                "dump size differs from the manifest",
                Some(record.bytes.to_string()),
                Some(bytes.to_string()),
            );
        }
        let content = hex::encode(content.finalize());
        if content != record.content_sha256 {
            problem(
                ProblemKind::DigestMismatch,
                "SHA-256 of the dump differs from the manifest",
                Some(record.content_sha256.clone()),
                Some(content),
            );
        }
        check.ok = problems.is_empty();
        Ok(check)
    }

    /// The decompressed dump of volume `key`, for a restore; like [`Backup::volume_stream`], the dump must
    /// have been verified through this handle, and the stored bytes are checked again as it is read.
    pub fn dump_stream(&self, key: &str) -> Result<VolumeStream, ArchiveError> {
        let record = self
            .manifest
            .dump(key)
            .ok_or_else(|| ArchiveError::UnknownVolume {
                path: self.path.clone(),
                key: key.to_string(),
            })?;
        if !self.is_verified(key) {
            return Err(ArchiveError::NotVerified {
                path: self.path.clone(),
                key: key.to_string(),
            });
        }
        self.member_stream(&record.member, &record.sha256, record.stored_bytes)
    }

    fn verify_volume(
        &self,
        record: &super::VolumeRecord,
        problems: &mut Vec<Problem>,
    ) -> Result<VolumeCheck, ArchiveError> {
        let member = record.member.as_str();
        let mut check = VolumeCheck {
            key: record.key.clone(),
            member: member.to_string(),
            ok: false,
            summary: None,
        };
        let mut problem = |kind, what: &str, expected: Option<String>, found: Option<String>| {
            problems.push(Problem {
                member: Some(member.to_string()),
                kind,
                what: what.to_string(),
                expected,
                found,
            });
        };
        if key_for_member(member).as_deref() != Some(record.key.as_str()) {
            problem(
                ProblemKind::Manifest,
                "is not the member name of its volume key",
                Some(super::format::member_for_key(&record.key)),
                Some(member.to_string()),
            );
        }
        let Some(index) = self.located(member, record.stored_bytes, &mut problem) else {
            return Ok(check);
        };
        let options = match DigestOptions::new(record.tar_prefix.as_deref()) {
            // The digest of the version the manifest has: a backup written before `tree-v2` has `tree-v1`.
            Ok(o) => o.with_version(record.content_digest.version()),
            Err(e) => {
                problem(ProblemKind::Manifest, &e.to_string(), None, None);
                return Ok(check);
            }
        };

        let (digested, zstd_failed) =
            self.read_checked(member, index, &record.sha256, &mut problem, |r| {
                digest_tar(r, &options)
            })?;
        let summary = match digested {
            Ok(summary) => summary,
            Err(e) => {
                let (kind, what) = match (&e, zstd_failed) {
                    (_, true) => (ProblemKind::Zstd, format!("does not decode: {}", chain(&e))),
                    (DigestError::UnsafeEntry { .. }, _) => {
                        (ProblemKind::UnsafeEntry, format!("inner tar: {e}"))
                    }
                    _ => (ProblemKind::InnerTar, format!("inner tar: {}", chain(&e))),
                };
                problem(kind, &what, None, None);
                return Ok(check);
            }
        };
        check.summary = Some(summary);
        let mut compare = |what: &str, kind, expected: String, found: String| {
            if expected != found {
                problem(kind, what, Some(expected), Some(found));
            }
        };
        compare(
            "entry count differs from the manifest",
            ProblemKind::CountMismatch,
            record.entries.to_string(),
            summary.entries.to_string(),
        );
        compare(
            "uncompressed size differs from the manifest",
            ProblemKind::CountMismatch,
            record.uncompressed_bytes.to_string(),
            summary.tar_bytes.to_string(),
        );
        compare(
            "regular-file bytes differ from the manifest",
            ProblemKind::CountMismatch,
            record.file_bytes.to_string(),
            summary.file_bytes.to_string(),
        );
        compare(
            "content digest differs from the manifest",
            ProblemKind::DigestMismatch,
            record.content_digest.to_string(),
            summary.digest.to_string(),
        );
        check.ok = problems.is_empty();
        Ok(check)
    }

    /// The decoded inner tar of volume `key`, for a restore. The volume must have been verified through this
    /// handle ([`Backup::verify`] or [`Backup::verify_volumes`]) without problems, else
    /// [`ArchiveError::NotVerified`]. The stream checks the stored bytes again as it goes; read it to its end or
    /// call [`VolumeStream::finish`] to learn whether they still matched.
    pub fn volume_stream(&self, key: &str) -> Result<VolumeStream, ArchiveError> {
        self.open_stream(key, true)
    }

    /// Like [`Backup::volume_stream`], without the verification first: for a restore into a volume that
    /// does not exist yet, which is removed again when the stream turns out damaged. The stream still checks
    /// the stored bytes as it goes ([`VolumeStream::finish`]) and zstd its frame checksums; the caller
    /// compares the restored content's digest with the manifest's.
    pub fn volume_stream_unverified(&self, key: &str) -> Result<VolumeStream, ArchiveError> {
        self.open_stream(key, false)
    }

    fn open_stream(&self, key: &str, require_verified: bool) -> Result<VolumeStream, ArchiveError> {
        let record = self
            .manifest
            .volume(key)
            .ok_or_else(|| ArchiveError::UnknownVolume {
                path: self.path.clone(),
                key: key.to_string(),
            })?;
        if require_verified && !self.is_verified(key) {
            return Err(ArchiveError::NotVerified {
                path: self.path.clone(),
                key: key.to_string(),
            });
        }
        self.member_stream(&record.member, &record.sha256, record.stored_bytes)
    }

    fn member_stream(
        &self,
        member: &str,
        sha256: &str,
        stored_bytes: u64,
    ) -> Result<VolumeStream, ArchiveError> {
        let index = self
            .member(member)
            .ok_or_else(|| ArchiveError::MissingMember {
                path: self.path.clone(),
                member: member.to_string(),
            })?;
        let raw = self.raw_member(index)?;
        let decoder = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(
            READ_BUFFER,
            HashingReader::new(raw),
        ))
        .map_err(|source| self.read_err(member, source))?;
        Ok(VolumeStream {
            decoder: Some(decoder),
            path: self.path.clone(),
            member: member.to_string(),
            expected_sha256: sha256.to_string(),
            expected_size: stored_bytes,
            ended: false,
        })
    }

    fn raw_member(&self, index: &MemberIndex) -> Result<Box<dyn Read + Send>, ArchiveError> {
        self.source
            .read_range(index.data_offset, index.size)
            .map_err(|source| ArchiveError::Open {
                path: self.path.clone(),
                source,
            })
    }

    fn read_err(&self, member: &str, source: io::Error) -> ArchiveError {
        ArchiveError::ReadMember {
            path: self.path.clone(),
            member: member.to_string(),
            source,
        }
    }
}

fn parse_manifest(path: &Path, json: &[u8]) -> Result<Manifest, ArchiveError> {
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
    serde_json::from_value(value)
        .map_err(|e| not_a_backup(format!("`{MANIFEST_MEMBER}` is not a valid manifest: {e}")))
}

/// Reads only the manifest of a backup, from the tail of `source`: the last member of a backup is
/// `manifest.json`, followed by the end-of-archive zero blocks. This costs one ranged read (a few for a very
/// large manifest) instead of reading the file, which is what listing a remote destination needs. It checks
/// the manifest's header (name, checksum, that its data ends the archive) and the manifest itself, but not the
/// rest of the file: [`Backup::open_source`] and [`Backup::verify`] do that.
pub fn read_tail_manifest(path: &Path, source: &dyn RangeSource) -> Result<Manifest, ArchiveError> {
    let not_a_backup = |reason: String| ArchiveError::NotABackup {
        path: path.to_path_buf(),
        reason,
    };
    let len = source.len();
    if len < 3 * BLOCK || !len.is_multiple_of(BLOCK) {
        return Err(not_a_backup(format!(
            "{len} bytes is not the size of a tar file"
        )));
    }
    let mut want = 64 * 1024;
    loop {
        let start = len.saturating_sub(want);
        let mut tail = Vec::with_capacity((len - start) as usize);
        source
            .read_range(start, len - start)
            .and_then(|mut r| r.read_to_end(&mut tail))
            .map_err(|source| ArchiveError::ReadMember {
                path: path.to_path_buf(),
                member: MANIFEST_MEMBER.to_string(),
                source,
            })?;
        if tail.len() as u64 != len - start {
            return Err(not_a_backup(
                "it is shorter than its listed size".to_string(),
            ));
        }
        if let Some(json) = find_tail_manifest(&tail) {
            return parse_manifest(path, json);
        }
        if start == 0 || want >= MAX_MANIFEST {
            return Err(not_a_backup(format!(
                "it does not end with `{MANIFEST_MEMBER}`"
            )));
        }
        want *= 16;
    }
}

/// The data of the `manifest.json` member that ends the archive in `tail` (block-aligned, the last bytes of
/// the file).
fn find_tail_manifest(tail: &[u8]) -> Option<&[u8]> {
    let block = BLOCK as usize;
    let blocks = tail.len() / block;
    let is_zero = |i: usize| tail[i * block..(i + 1) * block].iter().all(|b| *b == 0);
    // The end-of-archive: two zero blocks at least.
    let mut last = blocks;
    while last > 0 && is_zero(last - 1) {
        last -= 1;
    }
    if blocks - last < 2 || last == 0 {
        return None;
    }
    // `last` blocks hold data; the manifest's data ends in block `last - 1`. Walk back to its header.
    for h in (0..last).rev() {
        let header = &tail[h * block..(h + 1) * block];
        if !header_checksum_ok(header)
            || &header[..MANIFEST_MEMBER.len() + 1] != format!("{MANIFEST_MEMBER}\0").as_bytes()
        {
            continue;
        }
        let size = tar::Header::from_byte_slice(header).entry_size().ok()?;
        let data = h * block + block;
        let end = data.checked_add(usize::try_from(size).ok()?)?;
        if end.div_ceil(block) == last && end <= tail.len() {
            return Some(&tail[data..end]);
        }
    }
    None
}

/// The ustar header checksum: the byte sum with the checksum field read as spaces.
fn header_checksum_ok(header: &[u8]) -> bool {
    let sum: u64 = header
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(*b)
            }
        })
        .sum();
    let field = &header[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| *b as char)
        .collect();
    let text = text.trim();
    !text.is_empty() && u64::from_str_radix(text, 8).ok() == Some(sum)
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

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// The decoded tar of one volume; see [`Backup::volume_stream`].
pub struct VolumeStream {
    decoder: Option<zstd::stream::read::Decoder<'static, BufReader<HashingReader>>>,
    path: PathBuf,
    member: String,
    expected_sha256: String,
    expected_size: u64,
    ended: bool,
}

impl fmt::Debug for VolumeStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VolumeStream")
            .field("path", &self.path)
            .field("member", &self.member)
            .finish_non_exhaustive()
    }
}

impl VolumeStream {
    /// Reads what is left and checks the stored bytes against the manifest.
    pub fn finish(mut self) -> Result<(), ArchiveError> {
        let (path, member) = (self.path.clone(), self.member.clone());
        let read_err = |source| ArchiveError::ReadMember {
            path,
            member,
            source,
        };
        io::copy(&mut self, &mut io::sink()).map_err(|e| {
            match e.into_inner().map(|inner| inner.downcast::<ArchiveError>()) {
                Some(Ok(archive)) => *archive,
                Some(Err(other)) => read_err(io::Error::other(other)),
                None => read_err(io::Error::other("read failed")),
            }
        })?;
        Ok(())
    }

    fn check_end(&mut self) -> Result<(), ArchiveError> {
        let Some(decoder) = self.decoder.take() else {
            return Ok(());
        };
        let mut hashing = decoder.finish().into_inner();
        io::copy(&mut hashing, &mut io::sink()).map_err(|source| ArchiveError::ReadMember {
            path: self.path.clone(),
            member: self.member.clone(),
            source,
        })?;
        let (sha256, size) = hashing.finish();
        if size != self.expected_size {
            return Err(ArchiveError::Changed {
                path: self.path.clone(),
                member: self.member.clone(),
                what: format!("{size} bytes, the manifest says {}", self.expected_size),
            });
        }
        if sha256 != self.expected_sha256 {
            return Err(ArchiveError::Changed {
                path: self.path.clone(),
                member: self.member.clone(),
                what: format!(
                    "SHA-256 {sha256}, the manifest says {}",
                    self.expected_sha256
                ),
            });
        }
        Ok(())
    }
}

impl Read for VolumeStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ended || buf.is_empty() {
            return Ok(0);
        }
        let Some(decoder) = self.decoder.as_mut() else {
            return Ok(0);
        };
        let n = decoder.read(buf)?;
        if n == 0 {
            self.ended = true;
            self.check_end()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        Ok(n)
    }
}

/// Hashes and counts the raw member bytes as the decoder pulls them, and keeps an I/O error aside so it is
/// not mistaken for damaged data.
struct HashingReader {
    inner: Box<dyn Read + Send>,
    sha: Sha256,
    bytes: u64,
    failed: Arc<Mutex<Option<io::Error>>>,
}

impl HashingReader {
    fn new(inner: Box<dyn Read + Send>) -> Self {
        HashingReader {
            inner,
            sha: Sha256::new(),
            bytes: 0,
            failed: Arc::default(),
        }
    }

    fn finish(self) -> (String, u64) {
        (hex::encode(self.sha.finalize()), self.bytes)
    }
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.sha.update(&buf[..n]);
                self.bytes += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let substitute = io::Error::new(e.kind(), e.to_string());
                if let Ok(mut slot) = self.failed.lock() {
                    *slot = Some(e);
                }
                Err(substitute)
            }
        }
    }
}

/// Remembers whether the reader it wraps (the zstd decoder) failed.
struct Latch<R> {
    inner: R,
    failed: bool,
}

impl<R> Latch<R> {
    fn new(inner: R) -> Self {
        Latch {
            inner,
            failed: false,
        }
    }
}

impl<R: Read> Read for Latch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                self.failed = true;
            }
        })
    }
}

/// Records a problem of one member: kind, what is wrong, expected and found values.
type Report<'a> = dyn FnMut(ProblemKind, &str, Option<String>, Option<String>) + 'a;

/// What kind of problem verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// The outer tar: member types, order, duplicates, end of archive.
    Structure,
    /// The manifest contradicts itself or the format.
    Manifest,
    MissingMember,
    UnexpectedMember,
    SizeMismatch,
    Sha256Mismatch,
    /// zstd could not decode the member, or its frame checksum failed.
    Zstd,
    /// The decoded member is not a valid tar.
    InnerTar,
    /// An inner entry would land outside the volume (absolute path, `..`, hardlink outside).
    UnsafeEntry,
    CountMismatch,
    DigestMismatch,
}

/// One problem found by verification, naming the member, what is wrong, and what was expected and found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub member: Option<String>,
    pub kind: ProblemKind,
    pub what: String,
    pub expected: Option<String>,
    pub found: Option<String>,
}

impl Problem {
    fn new(member: Option<&str>, kind: ProblemKind, what: &str) -> Self {
        Problem {
            member: member.map(str::to_string),
            kind,
            what: what.to_string(),
            expected: None,
            found: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(member) = &self.member {
            write!(f, "`{member}`: ")?;
        }
        f.write_str(&self.what)?;
        match (&self.expected, &self.found) {
            (Some(e), Some(x)) => write!(f, " (expected {e}, found {x})"),
            (Some(e), None) => write!(f, " (expected {e})"),
            (None, Some(x)) => write!(f, " (found {x})"),
            (None, None) => Ok(()),
        }
    }
}

/// What verification found for one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeCheck {
    pub key: String,
    pub member: String,
    /// No problem with this volume's member.
    pub ok: bool,
    /// What the decoded tar held, when it could be read to its end.
    pub summary: Option<TreeSummary>,
}

/// The result of [`Backup::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub path: PathBuf,
    pub volumes: Vec<VolumeCheck>,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// `Ok` when no problem was found, else [`ArchiveError::Verify`] listing them.
    pub fn into_result(self) -> Result<VerifyReport, ArchiveError> {
        if self.is_ok() {
            Ok(self)
        } else {
            Err(ArchiveError::Verify {
                path: self.path,
                problems: self.problems,
            })
        }
    }
}

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
    use super::*;
    use crate::archive::digest::tests::{build, dir, file};
    use crate::archive::format::EngineInfo;
    use crate::archive::writer::tests::spec;
    use crate::archive::writer::{BackupWriter, WriterOptions};

    fn write_backup(to: &Path, project: &str, stamp: &str, tag: Option<&str>) -> PathBuf {
        let name = BackupName::new(project, stamp.parse().unwrap(), tag).unwrap();
        let mut w =
            BackupWriter::create(to, &name, EngineInfo::default(), WriterOptions::default())
                .unwrap();
        w.add_compose_file("compose.yaml", b"services: {}\n")
            .unwrap();
        w.add_volume(
            spec("db"),
            &build(&[
                dir("."),
                file("PG_VERSION", b"16\n"),
                file("x", &[5u8; 5000]),
            ])[..],
        )
        .unwrap();
        w.finish().unwrap().path
    }

    #[test]
    fn verified_volume_streams_back() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write_backup(tmp.path(), "app", "2026-11-22T10:15:00Z", None);
        let backup = Backup::open(&path).unwrap();
        assert!(matches!(
            backup.volume_stream("db"),
            Err(ArchiveError::NotVerified { .. })
        ));
        let report = backup.verify().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        let mut stream = backup.volume_stream("db").unwrap();
        let mut tar = Vec::new();
        stream.read_to_end(&mut tar).unwrap();
        let summary = digest_tar(&tar[..], &DigestOptions::default()).unwrap();
        assert_eq!(summary.digest, backup.manifest().volumes[0].content_digest);
        assert_eq!(
            backup.compose_file("compose.yaml").unwrap(),
            b"services: {}\n"
        );
        assert!(matches!(
            backup.volume_stream("nope"),
            Err(ArchiveError::UnknownVolume { .. })
        ));
    }

    #[test]
    fn stream_notices_a_file_changed_after_verification() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write_backup(tmp.path(), "app", "2026-11-22T10:15:00Z", None);
        let backup = Backup::open(&path).unwrap();
        assert!(backup.verify().unwrap().is_ok());
        // Flip the last byte of the member: zstd's frame checksum or the SHA-256 must catch it.
        let m = backup.member("volumes/db.tar.zst").unwrap().clone();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(m.data_offset + m.size - 1) as usize] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let stream = backup.volume_stream("db").unwrap();
        assert!(stream.finish().is_err());
    }

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

    #[test]
    fn tail_manifest_is_the_manifest_open_reads() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write_backup(tmp.path(), "app", "2026-11-22T10:15:00Z", Some("t"));
        let src = FileSource::open(&path).unwrap();
        let tail = read_tail_manifest(&path, &src).unwrap();
        assert_eq!(&tail, Backup::open(&path).unwrap().manifest());
        // A truncated copy is not a backup, nor is a file of zeros.
        let bytes = std::fs::read(&path).unwrap();
        let cut = tmp.path().join("cut.tar");
        std::fs::write(&cut, &bytes[..bytes.len() - 1024]).unwrap();
        assert!(read_tail_manifest(&cut, &FileSource::open(&cut).unwrap()).is_err());
        std::fs::write(&cut, vec![0u8; 8192]).unwrap();
        assert!(read_tail_manifest(&cut, &FileSource::open(&cut).unwrap()).is_err());
    }

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
