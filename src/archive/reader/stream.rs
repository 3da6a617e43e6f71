//! Streaming a volume's tar (or a dump) out of a backup for a restore, the stored bytes checked again as
//! they are read ([`VolumeStream`]).

use std::fmt;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;

use super::super::ArchiveError;
use super::member::{HashHandle, MemberReader};
use super::{Backup, READ_BUFFER};

impl Backup {
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
        let (reader, hash) = self.member_reader(index)?;
        let decoder =
            zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(READ_BUFFER, reader))
                .map_err(|source| self.read_err(member, source))?;
        Ok(VolumeStream {
            decoder: Some(decoder),
            hash,
            path: self.path.clone(),
            member: member.to_string(),
            expected_sha256: sha256.to_string(),
            expected_size: stored_bytes,
            ended: false,
        })
    }
}

/// The decoded tar of one volume; see [`Backup::volume_stream`].
pub struct VolumeStream {
    decoder: Option<zstd::stream::read::Decoder<'static, BufReader<MemberReader>>>,
    hash: HashHandle,
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
        let mut stored = decoder.finish().into_inner();
        let drained = io::copy(&mut stored, &mut io::sink());
        if let Some(source) = self.hash.take_failure() {
            return Err(ArchiveError::ReadMember {
                path: self.path.clone(),
                member: self.member.clone(),
                source,
            });
        }
        if let Err(e) = drained {
            return Err(if stored.is_sealed() {
                ArchiveError::Decrypt {
                    path: self.path.clone(),
                    member: self.member.clone(),
                    reason: format!("it does not decrypt: {e}"),
                }
            } else {
                ArchiveError::ReadMember {
                    path: self.path.clone(),
                    member: self.member.clone(),
                    source: e,
                }
            });
        }
        let (sha256, size) = self.hash.finish();
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
        let n = match decoder.read(buf) {
            Ok(n) => n,
            Err(e)
                if e.kind() != io::ErrorKind::Interrupted
                    && decoder.get_ref().get_ref().decrypt_failed()
                    && self.hash.take_failure().is_none() =>
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    ArchiveError::Decrypt {
                        path: self.path.clone(),
                        member: self.member.clone(),
                        reason: format!("it does not decrypt: {e}"),
                    },
                ));
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            self.ended = true;
            self.check_end()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::write_backup;
    use super::*;
    use crate::archive::digest::{DigestOptions, digest_tar};

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
        assert_eq!(
            Some(summary.digest),
            backup.manifest().volumes[0].content_digest
        );
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
}
