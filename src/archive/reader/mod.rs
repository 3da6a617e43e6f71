//! Reading backup files back: opening one (its outer index and manifest), verifying everything it claims,
//! streaming a volume's tar out for a restore, and listing a project's backups.
//!
//! A file is a backup only if it is a tar whose `manifest.json` parses as format 1; anything else — a
//! `.partial`, a truncated file, a foreign tar — is [`ArchiveError::NotABackup`](super::ArchiveError::NotABackup),
//! and listings skip it.
//!
//! Reading a volume back ([`Backup::volume_stream`]) requires that volume to have been verified through the
//! same [`Backup`] first (a restore must know the member is sound before it destroys anything), and it checks
//! again on the way: the stored bytes' SHA-256 and size are compared at the end of the stream and zstd checks
//! its frame checksum, so a file changed after its verification fails the stream instead of passing silently.
//!
//! An encrypted backup ([`super::crypt`]) opens without its identity: the readable manifest lists it, and
//! [`Backup::verify`] checks the structure, sizes, SHA-256 of the stored bytes and age headers, and says
//! that it could not check more ([`VerifyReport::locked`]). [`Backup::unlock`] with an identity (or the
//! passphrase) reads the sealed manifest fields, and from then on members are decrypted as they are read
//! (`age`, then zstd), the same checks as for a plain backup.
//!
//! The parts: opening a file and its manifest (`open.rs`), reading only the manifest from the file's tail
//! (`tail.rs`), reading a member, decrypted and hashed (`member.rs`), verification and its report
//! (`verify.rs`), streaming a volume out (`stream.rs`) and listing a project's backups (`listing.rs`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::crypt::Unlocked;
use super::format::Manifest;
use super::source::RangeSource;

mod listing;
mod member;
mod open;
mod stream;
mod tail;
mod verify;

pub use listing::{BackupListing, BackupSummary, SkippedFile, list_backups};
pub use stream::VolumeStream;
pub use tail::read_tail_manifest;
pub use verify::{Problem, ProblemKind, VerifyReport, VolumeCheck};

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
    /// The manifest's JSON as stored (for an encrypted backup, without its sealed fields).
    readable: serde_json::Value,
    /// The identities that opened an encrypted backup.
    unlocked: Option<Arc<Unlocked>>,
}

impl Backup {
    /// Whether the members are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.manifest.encryption.is_some()
    }

    /// Encrypted and not unlocked: only the readable manifest and the stored bytes can be checked.
    pub fn is_locked(&self) -> bool {
        self.is_encrypted() && self.unlocked.is_none()
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::archive::digest::tests::{build, dir, file};
    use crate::archive::format::{BackupName, EngineInfo};
    use crate::archive::writer::tests::spec;
    use crate::archive::writer::{BackupWriter, WriterOptions};

    pub(super) fn write_backup(
        to: &Path,
        project: &str,
        stamp: &str,
        tag: Option<&str>,
    ) -> PathBuf {
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
}
