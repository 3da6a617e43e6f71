//! Reading a member: finding a Compose file's member, the stored bytes read by range, decrypted when the
//! backup is encrypted, and hashed and counted as they are read ([`HashingReader`]).

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

use super::super::ArchiveError;
use super::super::crypt::{DecryptingReader, UnlockError};
use super::super::format::{compose_member, encrypted_member};
use super::{Backup, MemberIndex};

impl Backup {
    /// The member name of Compose file `file_name` in this file.
    pub(super) fn compose_member_name(&self, file_name: &str) -> Option<String> {
        let plain = compose_member(file_name)?;
        Some(if self.is_encrypted() {
            encrypted_member(&plain)
        } else {
            plain
        })
    }

    /// The bytes of `compose/<file_name>` (decrypted, for an encrypted backup that was unlocked).
    pub fn compose_file(&self, file_name: &str) -> Result<Vec<u8>, ArchiveError> {
        let name = self.compose_member_name(file_name).unwrap_or_default();
        let m = self
            .member(&name)
            .ok_or_else(|| ArchiveError::MissingMember {
                path: self.path.clone(),
                member: name.clone(),
            })?;
        let (mut reader, _) = self.member_reader(m)?;
        let mut out = Vec::new();
        reader
            .read_to_end(&mut out)
            .map_err(|source| ArchiveError::ReadMember {
                path: self.path.clone(),
                member: name,
                source,
            })?;
        Ok(out)
    }

    /// The member's bytes as a plain backup would store them — decrypted when the backup is encrypted —
    /// with the SHA-256 and count of the stored bytes taken as they are read. An encrypted member of a
    /// locked backup, or one whose age header does not open, is an error.
    pub(super) fn member_reader(
        &self,
        index: &MemberIndex,
    ) -> Result<(MemberReader, HashHandle), ArchiveError> {
        let (hashing, hash) = HashingReader::new(self.raw_member(index)?);
        if !self.is_encrypted() {
            return Ok((MemberReader::Plain(hashing), hash));
        }
        let Some(unlocked) = &self.unlocked else {
            return Err(ArchiveError::Locked {
                path: self.path.clone(),
                source: UnlockError::NoKeys {
                    recipients: self
                        .manifest
                        .encryption
                        .as_ref()
                        .map(|e| e.recipients.clone())
                        .unwrap_or_default(),
                },
            });
        };
        match unlocked.decrypt(hashing) {
            Ok(reader) => Ok((MemberReader::Sealed(reader), hash)),
            Err(reason) => Err(match hash.take_failure() {
                Some(source) => self.read_err(&index.name, source),
                None => ArchiveError::Decrypt {
                    path: self.path.clone(),
                    member: index.name.clone(),
                    reason,
                },
            }),
        }
    }

    pub(super) fn raw_member(
        &self,
        index: &MemberIndex,
    ) -> Result<Box<dyn Read + Send>, ArchiveError> {
        self.source
            .read_range(index.data_offset, index.size)
            .map_err(|source| ArchiveError::Open {
                path: self.path.clone(),
                source,
            })
    }

    pub(super) fn read_err(&self, member: &str, source: io::Error) -> ArchiveError {
        ArchiveError::ReadMember {
            path: self.path.clone(),
            member: member.to_string(),
            source,
        }
    }
}

/// What [`HashingReader`] has seen: the SHA-256 and count of the stored bytes, and an I/O error kept aside
/// so it is not mistaken for damaged data. Shared, because age's reader does not give its inner reader
/// back.
#[derive(Default)]
struct HashState {
    sha: Sha256,
    bytes: u64,
    failed: Option<io::Error>,
}

/// The reading side's handle on a [`HashingReader`]'s state.
#[derive(Clone, Default)]
pub(super) struct HashHandle(Arc<Mutex<HashState>>);

impl HashHandle {
    pub(super) fn take_failure(&self) -> Option<io::Error> {
        self.0.lock().ok().and_then(|mut s| s.failed.take())
    }

    /// The SHA-256 (hex) and count of the bytes read so far.
    pub(super) fn finish(&self) -> (String, u64) {
        match self.0.lock() {
            Ok(s) => (hex::encode(s.sha.clone().finalize()), s.bytes),
            Err(_) => (String::new(), 0),
        }
    }
}

/// Hashes and counts the raw member bytes as the decoder pulls them.
pub(super) struct HashingReader {
    inner: Box<dyn Read + Send>,
    state: HashHandle,
}

impl HashingReader {
    fn new(inner: Box<dyn Read + Send>) -> (Self, HashHandle) {
        let state = HashHandle::default();
        (
            HashingReader {
                inner,
                state: state.clone(),
            },
            state,
        )
    }
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                if let Ok(mut s) = self.state.0.lock() {
                    s.sha.update(&buf[..n]);
                    s.bytes += n as u64;
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let substitute = io::Error::new(e.kind(), e.to_string());
                if let Ok(mut s) = self.state.0.lock() {
                    s.failed = Some(e);
                }
                Err(substitute)
            }
        }
    }
}

/// A member's bytes as a plain backup stores them: read as they are, or decrypted.
pub(super) enum MemberReader {
    Plain(HashingReader),
    Sealed(DecryptingReader<HashingReader>),
}

impl MemberReader {
    pub(super) fn is_sealed(&self) -> bool {
        matches!(self, MemberReader::Sealed(_))
    }

    /// Whether decryption failed.
    pub(super) fn decrypt_failed(&self) -> bool {
        matches!(self, MemberReader::Sealed(r) if r.failed())
    }
}

impl Read for MemberReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MemberReader::Plain(r) => r.read(buf),
            MemberReader::Sealed(r) => r.read(buf),
        }
    }
}
