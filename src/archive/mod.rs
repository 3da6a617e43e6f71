//! The backup file, format 1: one uncompressed POSIX tar holding the project's Compose files, one
//! zstd-compressed tar per volume and a JSON manifest, written last (`docs/format.md` describes it for people
//! who restore without this tool).
//!
//! This module is the only one that imports `tar` and `zstd`. It is pure I/O over [`std::io::Read`],
//! [`std::io::Write`] and files: the engine side hands it the tar stream of a volume ([`BackupWriter`]) and gets
//! a decoded tar stream back ([`Backup::volume_stream`]); it never talks to Docker.
//!
//! - [`format`]: the manifest, file and member names;
//! - [`digest`]: the order-independent content digest of a tree, computed from a tar stream as it passes;
//! - [`writer`]: writing a backup file (`.partial`, fsync, rename), with the stored bytes written on a thread
//!   of their own (`handoff`);
//! - [`reader`]: opening, verifying and listing backup files, and reading a volume back;
//! - [`crypt`]: age encryption of members and of the manifest's secret fields (the only `age` user);
//! - [`tree`]: a volume's tree on disk packed to, unpacked from and digested like the engine's tar (the fast
//!   path, run inside a helper container).

pub mod crypt;
pub mod digest;
pub mod format;
pub mod growing;
mod handoff;
pub mod reader;
pub mod rebase;
pub mod rootfs;
pub mod source;
pub mod tree;
pub mod writer;

use std::path::PathBuf;

pub use crypt::{
    CryptError, EncryptionInfo, Identity, Keys, Passphrase, Recipient, RecipientInfo, Sealer,
    UnlockError,
};
pub use digest::{
    ContentDigest, DigestError, DigestOptions, DigestVersion, TreeHasher, TreeSummary,
};
pub use format::{
    BackupName, DumpRecord, EngineInfo, HookRecord, Manifest, Tool, VolumeRecord, VolumeUser,
    dump_member, member_for_key, validate_tag,
};
pub use reader::{
    Backup, BackupListing, BackupSummary, MemberIndex, Problem, ProblemKind, SkippedFile,
    VerifyReport, VolumeCheck, VolumeStream, list_backups, read_tail_manifest,
};
pub use rebase::rebase_tar;
pub use source::{FileSource, RangeSource};
pub use tree::{TreeError, TreeStats, digest_tree, pack_tree, unpack_tree};
pub use writer::{
    BackupWriter, DumpSpec, FinishedBackup, STALE_PARTIAL_AGE, VolumeSpec, WriterOptions,
    remove_stale_partials,
};

/// Everything that can go wrong reading or writing a backup file; one variant per operation, each naming the
/// file and, where there is one, the member or volume.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("`{name}` is not a valid backup name: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error("`{tag}` is not a valid backup tag: {reason}")]
    InvalidTag { tag: String, reason: &'static str },

    #[error("failed to create the backup directory `{}`", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("a backup named `{}` already exists", path.display())]
    Exists { path: PathBuf },

    #[error("failed to create the backup file `{}`", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot add member `{member}` to `{}`: {reason}", path.display())]
    InvalidMember {
        path: PathBuf,
        member: String,
        reason: &'static str,
    },

    #[error("failed to write member `{member}` of `{}`", path.display())]
    Write {
        path: PathBuf,
        member: String,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to read the data of volume `{key}` while writing `{}`", path.display())]
    ReadVolume {
        path: PathBuf,
        key: String,
        #[source]
        source: DigestError,
    },

    #[error("failed to dump volume `{key}` into `{}`", path.display())]
    ReadDump {
        path: PathBuf,
        key: String,
        #[source]
        source: std::io::Error,
    },

    #[error("the backup file `{}` is unusable after an earlier write error", path.display())]
    Poisoned { path: PathBuf },

    #[error("failed to complete the backup file `{}`", path.display())]
    Finish {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to open `{}`", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("`{}` is not a backup: {reason}", path.display())]
    NotABackup { path: PathBuf, reason: String },

    #[error(
        "`{}` is a backup in format {found}; this docker-persist reads format {}",
        path.display(),
        format::FORMAT
    )]
    UnsupportedFormat { path: PathBuf, found: String },

    #[error("backup `{}` holds no volume `{key}`", path.display())]
    UnknownVolume { path: PathBuf, key: String },

    #[error("backup `{}` holds no member `{member}`", path.display())]
    MissingMember { path: PathBuf, member: String },

    #[error("volume `{key}` of `{}` has not been verified; verify it before reading it back", path.display())]
    NotVerified { path: PathBuf, key: String },

    #[error("failed to read member `{member}` of `{}`", path.display())]
    ReadMember {
        path: PathBuf,
        member: String,
        #[source]
        source: std::io::Error,
    },

    #[error("member `{member}` of `{}` changed since it was verified: {what}", path.display())]
    Changed {
        path: PathBuf,
        member: String,
        what: String,
    },

    #[error("backup `{}` failed verification: {}", path.display(), summarize(problems))]
    Verify {
        path: PathBuf,
        problems: Vec<Problem>,
    },

    #[error("cannot read `{}`: {source}", path.display())]
    Locked {
        path: PathBuf,
        #[source]
        source: UnlockError,
    },

    #[error("member `{member}` of `{}`: {reason}", path.display())]
    Decrypt {
        path: PathBuf,
        member: String,
        reason: String,
    },

    #[error("failed to list backups in `{}`", path.display())]
    ListDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn summarize(problems: &[Problem]) -> String {
    match problems {
        [] => "no problem recorded".to_string(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}
