//! Verifying a backup: the outer structure, the Compose files, and each volume and dump member checked
//! against the manifest (size, SHA-256, zstd, the inner tar, counts and content digest), and the report
//! of what was found.

use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use super::super::ArchiveError;
use super::super::crypt::{self, AGE_SUFFIX};
use super::super::digest::{DigestError, DigestOptions, TreeSummary, digest_tar};
use super::super::format::{DUMPS_DIR, DumpRecord, VOLUMES_DIR, encrypted_member, key_for_member};
use super::{Backup, MemberIndex, READ_BUFFER, chain};

impl Backup {
    /// Checks everything: the outer structure, every Compose file and volume member named by the manifest,
    /// their sizes and SHA-256, zstd frames and checksums, the inner tars, entry counts, byte counts, content
    /// digests, and that no inner entry escapes the volume root. Problems go into the report; only an I/O
    /// failure reading the file is an error.
    pub fn verify(&self) -> Result<VerifyReport, ArchiveError> {
        let keys: Vec<&str> = self.manifest.keys().collect();
        let mut report = self.verify_volumes(&keys)?;
        let mut problems = Vec::new();

        for name in &self.manifest.compose_files {
            match self.compose_member_name(name) {
                Some(member) if self.member(&member).is_some() => {
                    if self.is_encrypted()
                        && let Some(index) = self.member(&member)
                        && let Some(reason) = self.check_encrypted_whole(index)?
                    {
                        problems.push(Problem::new(Some(&member), ProblemKind::Decrypt, &reason));
                    }
                }
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
            locked: self.is_locked(),
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
            if problems.is_empty() && self.structure.is_empty() && !self.is_locked() {
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

    pub(super) fn is_verified(&self, key: &str) -> bool {
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

    /// Gives `consume` the decrypted (when encrypted) and zstd-decoded member, then reads whatever it left
    /// so that the SHA-256 covers the whole member, and records a SHA-256 that differs from `sha256`.
    /// Returns what `consume` returned and whether zstd failed; `None` when the member did not decrypt
    /// (recorded as a problem: what it decoded to means nothing then). A failure to read the file itself
    /// is an error, not a problem.
    fn read_checked<T>(
        &self,
        member: &str,
        index: &MemberIndex,
        sha256: &str,
        problem: &mut Report<'_>,
        consume: impl FnOnce(&mut dyn Read) -> T,
    ) -> Result<Option<(T, bool)>, ArchiveError> {
        let (reader, hash) = match self.member_reader(index) {
            Ok(opened) => opened,
            Err(ArchiveError::Decrypt { reason, .. }) => {
                problem(ProblemKind::Decrypt, &reason, None, None);
                self.compare_stored_sha(index, sha256, problem)?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let decoder = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(
            READ_BUFFER,
            Latch::new(reader),
        ))
        .map_err(|source| self.read_err(member, source))?;
        let mut decoder = Latch::new(decoder);
        let consumed = consume(&mut decoder);
        if let Some(source) = hash.take_failure() {
            return Err(self.read_err(member, source));
        }
        let mut stored = decoder.inner.finish().into_inner();
        let drained = io::copy(&mut stored, &mut io::sink());
        if let Some(source) = hash.take_failure() {
            return Err(self.read_err(member, source));
        }
        if stored.inner.is_sealed() && (stored.failed || drained.is_err()) {
            problem(
                ProblemKind::Decrypt,
                "it does not decrypt: the encrypted data was changed or cut short",
                None,
                None,
            );
            self.compare_stored_sha(index, sha256, problem)?;
            return Ok(None);
        }
        drained.map_err(|source| self.read_err(member, source))?;
        let (found, read) = hash.finish();
        debug_assert_eq!(read, index.size);
        if found != sha256 {
            problem(
                ProblemKind::Sha256Mismatch,
                "SHA-256 of the stored bytes differs from the manifest",
                Some(sha256.to_string()),
                Some(found),
            );
        }
        Ok(Some((consumed, decoder.failed)))
    }

    /// Hashes the stored bytes of a member in a pass of their own and records a SHA-256 that differs from
    /// `sha256`: what can be checked of a member that cannot be decoded.
    fn compare_stored_sha(
        &self,
        index: &MemberIndex,
        sha256: &str,
        problem: &mut Report<'_>,
    ) -> Result<(), ArchiveError> {
        let mut raw = self.raw_member(index)?;
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            let n = raw
                .read(&mut buf)
                .map_err(|source| self.read_err(&index.name, source))?;
            if n == 0 {
                break;
            }
            sha.update(&buf[..n]);
        }
        let found = hex::encode(sha.finalize());
        if found != sha256 {
            problem(
                ProblemKind::Sha256Mismatch,
                "SHA-256 of the stored bytes differs from the manifest",
                Some(sha256.to_string()),
                Some(found),
            );
        }
        Ok(())
    }

    /// What can be checked of an encrypted member without its identity: its SHA-256 and that its age
    /// header parses.
    fn check_locked(
        &self,
        index: &MemberIndex,
        sha256: &str,
        problem: &mut Report<'_>,
    ) -> Result<(), ArchiveError> {
        if let Err(reason) = crypt::check_header(self.raw_member(index)?) {
            problem(ProblemKind::Decrypt, &reason, None, None);
        }
        self.compare_stored_sha(index, sha256, problem)
    }

    /// Decrypts a whole small member (a Compose file) to check it; the reason when it does not decrypt.
    /// Without the identity, only its age header is checked.
    fn check_encrypted_whole(&self, index: &MemberIndex) -> Result<Option<String>, ArchiveError> {
        if self.is_locked() {
            return Ok(crypt::check_header(self.raw_member(index)?).err());
        }
        match self.member_reader(index) {
            Ok((mut reader, hash)) => {
                let read = io::copy(&mut reader, &mut io::sink());
                if let Some(source) = hash.take_failure() {
                    return Err(self.read_err(&index.name, source));
                }
                Ok(read.err().map(|_| {
                    "it does not decrypt: the encrypted data was changed or cut short".to_string()
                }))
            }
            Err(ArchiveError::Decrypt { reason, .. }) => Ok(Some(reason)),
            Err(e) => Err(e),
        }
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
        if self.is_locked() {
            self.check_locked(index, &record.sha256, &mut problem)?;
            check.ok = problems.is_empty();
            return Ok(check);
        }
        let decoded = self.read_checked(member, index, &record.sha256, &mut problem, |r| {
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
        let Some((decoded, _)) = decoded else {
            return Ok(check);
        };
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

    fn verify_volume(
        &self,
        record: &super::super::VolumeRecord,
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
        let plain_member = if self.is_encrypted() {
            member.strip_suffix(AGE_SUFFIX)
        } else {
            Some(member)
        };
        if plain_member.and_then(key_for_member).as_deref() != Some(record.key.as_str()) {
            let expected = super::super::format::member_for_key(&record.key);
            problem(
                ProblemKind::Manifest,
                "is not the member name of its volume key",
                Some(if self.is_encrypted() {
                    encrypted_member(&expected)
                } else {
                    expected
                }),
                Some(member.to_string()),
            );
        }
        let Some(index) = self.located(member, record.stored_bytes, &mut problem) else {
            return Ok(check);
        };
        if self.is_locked() {
            self.check_locked(index, &record.sha256, &mut problem)?;
            check.ok = problems.is_empty();
            return Ok(check);
        }
        let Some(expected_digest) = record.content_digest else {
            problem(
                ProblemKind::Manifest,
                "has no content digest in the manifest",
                None,
                None,
            );
            return Ok(check);
        };
        let options = match DigestOptions::new(record.tar_prefix.as_deref()) {
            // The digest of the version the manifest has: a backup written before `tree-v2` has `tree-v1`.
            Ok(o) => o.with_version(expected_digest.version()),
            Err(e) => {
                problem(ProblemKind::Manifest, &e.to_string(), None, None);
                return Ok(check);
            }
        };

        let Some((digested, zstd_failed)) =
            self.read_checked(member, index, &record.sha256, &mut problem, |r| {
                digest_tar(r, &options)
            })?
        else {
            return Ok(check);
        };
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
            expected_digest.to_string(),
            summary.digest.to_string(),
        );
        check.ok = problems.is_empty();
        Ok(check)
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
    /// An encrypted member does not decrypt: changed, cut short, or encrypted to other keys.
    Decrypt,
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
    pub(super) fn new(member: Option<&str>, kind: ProblemKind, what: &str) -> Self {
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
    /// The backup is encrypted and was checked without its identity: structure, sizes, the SHA-256 of the
    /// stored bytes and the age headers were checked, not what the members decrypt to.
    pub locked: bool,
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
