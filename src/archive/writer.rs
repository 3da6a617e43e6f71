//! Writing a backup file: `<dir>/<name>.partial` (mode 0600) is filled member by member — Compose files, then
//! one zstd-compressed tar per volume streamed from a [`Read`], then the manifest — fsynced, and only then
//! renamed to its final name. Until [`BackupWriter::finish`] has renamed it, dropping the writer (an error, a
//! cancelled task, Ctrl-C unwinding) deletes the `.partial`, so no half-written file is ever left looking
//! like a backup; a killed process leaves a `.partial`, which listings skip.
//!
//! # Layout decisions
//! - The outer tar is ustar. A member's size is not known until its stream ends, so its header is written
//!   first with size 0, the data streamed straight into the file, and the header then rewritten in place with
//!   the real size and checksum (the file is ours, so seeking back is safe). Sizes up to 8 GiB − 1 are octal;
//!   larger ones use the base-256 encoding in the same 12-byte field (GNU tar, bsdtar, busybox, Go and the
//!   `tar` crate read it), so the header never changes length and nothing has to be reserved in advance.
//! - A member name longer than ustar's name/prefix fields allow (a long anonymous-volume key) gets a PAX `x`
//!   header with a `path` record in front of its ustar header; the ustar header is the one patched.
//! - Every byte written for a volume member passes through SHA-256 on its way to the file; the inner tar
//!   passes through the content digest ([`super::digest`]) on its way into zstd. One pass, fixed buffers: memory
//!   does not grow with the volume (zstd's own window and, with workers, its job buffers, are fixed too).
//! - A volume whose stream fails midway is cut off again (the file is truncated back to where its member
//!   began), so the writer stays usable for the other volumes; the caller decides whether to go on.
//! - Encrypted backups ([`BackupWriter::encrypt`]): each member's bytes go through age on their way to
//!   the file, after zstd (`zstd | age`), so the SHA-256 covers the bytes as stored; the manifest is written
//!   readable, with the fields that can hold secrets encrypted into its `encryption.sealed`.
//! - `finish` refuses to replace an existing backup of the same name: it hard-links the `.partial` to the final
//!   name (which fails if that exists) and falls back to a checked rename on file systems without hard links.

use std::collections::BTreeSet;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::ArchiveError;
use super::crypt::{EncryptingWriter, Sealer};
use super::digest::{DigestError, DigestOptions, digest_tar_into};
use super::format::{
    BackupName, DumpRecord, EngineInfo, FORMAT, HookRecord, MANIFEST_MEMBER, Manifest,
    PARTIAL_SUFFIX, Tool, VolumeRecord, VolumeUser, compose_member, dump_member, encrypted_member,
    member_for_key, split_sealed,
};
use super::growing::{Growing, TrackedFile};
use super::handoff::{self, Handoff};
use crate::compose::Tier;
use crate::compose::classify::DataKind;

const BLOCK: u64 = 512;
const OUT_BUFFER: usize = 1024 * 1024;
/// zstd's default multithreading job is 4× its window: 8 MiB at levels 3 to 8 (2 MiB window), which with two
/// workers peaked at ≈100 MB. zstd holds about ten jobs' worth of buffers with two workers (its round buffer
/// and the output buffers of the jobs under way), so the job size sets the memory of a backup: measured on the
/// reference tar (`examples/archive_bench.rs write`, 2 workers, docs/benchmarks.md), 3 MiB jobs peaked at
/// 49 MB, 1.5 MiB at 31 MB and 1 MiB at 23 MB, in 1.31, 1.34 and 1.43 s (medians of 5), the stored size within
/// 0.05 %. 1.5 MiB leaves room under the 64 MB target for a destination's buffers (an S3 upload's parts).
const MT_JOB_SIZE: u32 = 3 << 19;
const MT_SMALL_JOB_LEVELS: std::ops::RangeInclusive<i32> = 3..=8;
/// The largest size ustar's 11 octal digits hold.
const MAX_OCTAL_SIZE: u64 = (1 << 33) - 1;

/// How volumes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// zstd level, 1 to 19 (negative levels are zstd's fast modes).
    pub level: i32,
    /// zstd worker threads; 0 compresses on the calling thread.
    pub workers: u32,
}

impl WriterOptions {
    /// Level 3 with two zstd workers when the machine has two cores or more, else on the calling thread.
    /// Measured on 2 cores (docs/benchmarks.md): two workers cut a backup's time by ≈12% on the universal
    /// path and ≈30% on the fast path, for ≈23 MB more memory (zstd's job buffers, see [`MT_JOB_SIZE`]).
    pub fn auto() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        WriterOptions {
            level: 3,
            workers: if cores >= 2 { 2 } else { 0 },
        }
    }
}

impl Default for WriterOptions {
    /// Level 3 on the calling thread. Measured on 2 cores (`docs/format.md`, "Measurements"): one thread
    /// writes ≈310 MB/s of tar at a 7.5 MB peak, about twice what the engine's archive endpoint delivers; two
    /// workers reach ≈500 MB/s at ≈31 MB, worth it only where the source is that fast (the local fast path).
    fn default() -> Self {
        WriterOptions {
            level: 3,
            workers: 0,
        }
    }
}

/// What the caller knows about a volume before reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    pub key: String,
    pub name: String,
    pub kind: DataKind,
    pub tier: Tier,
    pub reason: String,
    pub driver: String,
    pub driver_opts: std::collections::BTreeMap<String, String>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub users: Vec<VolumeUser>,
    pub consistency: String,
    /// What was stopped while it was read (see [`VolumeRecord::stopped`]).
    pub stopped: Vec<String>,
    /// When reading began (see [`VolumeRecord::read_at`]).
    pub read_at: Option<jiff::Timestamp>,
    /// The leading path component of the inner tar's entries (`data` for the engine's tar of `/data`).
    pub tar_prefix: Option<String>,
}

/// How a dump was made: recipe, service, image and the file extension of its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpSpec {
    pub recipe: String,
    pub service: String,
    pub image: String,
    /// `sql`, `rdb`, `archive`.
    pub ext: String,
}

/// A completed backup file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedBackup {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// Size of the file.
    pub bytes: u64,
}

/// How long a `.partial` must have gone unmodified before it can be taken for the leftover of a writer that
/// died (a running writer modifies it all the time, apart from short pauses between volumes).
pub const STALE_PARTIAL_AGE: std::time::Duration = std::time::Duration::from_secs(120);

/// Removes the unfinished backup files of `project` in `dir` that no writer holds: not locked (the
/// writer's lock goes with its process) and unmodified for [`STALE_PARTIAL_AGE`]. Returns what it removed.
/// They are never backups (listings skip them); this only gives their space back after a `kill -9` or a
/// crash.
pub fn remove_stale_partials(dir: &Path, project: &str) -> Result<Vec<PathBuf>, ArchiveError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ArchiveError::ListDir {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some(base) = name.strip_suffix(PARTIAL_SUFFIX) else {
            continue;
        };
        if BackupName::parse_for_project(base, project).is_none() {
            continue;
        }
        let path = entry.path();
        let old_enough = std::fs::symlink_metadata(&path)
            .ok()
            .filter(std::fs::Metadata::is_file)
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= STALE_PARTIAL_AGE);
        if !old_enough {
            continue;
        }
        let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path) else {
            continue;
        };
        // Held by a writer that is still running (on this machine or, where the filesystem shares locks,
        // another one): leave it.
        if fs4::FileExt::try_lock(&file).is_err() {
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    removed.sort();
    Ok(removed)
}

/// Writes one backup file; see the module docs.
#[derive(Debug)]
pub struct BackupWriter {
    out: Option<BufWriter<TrackedFile>>,
    dir: PathBuf,
    partial: PathBuf,
    target: PathBuf,
    manifest: Manifest,
    options: WriterOptions,
    /// Set when the members are encrypted.
    sealer: Option<std::sync::Arc<Sealer>>,
    members: BTreeSet<String>,
    /// Bytes written so far; where the next member starts.
    pos: u64,
    volumes_started: bool,
    poisoned: bool,
    done: bool,
}

impl BackupWriter {
    /// Creates `<dir>/<name>.partial`. When `dir` does not exist it is created with mode 0700 and a
    /// `.gitignore` of `*`. Fails if a backup of that name exists already.
    pub fn create(
        dir: impl AsRef<Path>,
        name: &BackupName,
        engine: EngineInfo,
        options: WriterOptions,
    ) -> Result<BackupWriter, ArchiveError> {
        Self::create_followed(dir, name, engine, options, None)
    }

    /// Like [`BackupWriter::create`], telling `growing` (when given) every write, so that the file can be
    /// copied to destinations while it is written ([`super::growing`]).
    pub fn create_followed(
        dir: impl AsRef<Path>,
        name: &BackupName,
        engine: EngineInfo,
        options: WriterOptions,
        growing: Option<std::sync::Arc<Growing>>,
    ) -> Result<BackupWriter, ArchiveError> {
        let dir = dir.as_ref().to_path_buf();
        ensure_dir(&dir)?;
        let target = dir.join(name.file_name());
        if target.symlink_metadata().is_ok() {
            return Err(ArchiveError::Exists { path: target });
        }
        let partial = dir.join(format!("{}{PARTIAL_SUFFIX}", name.file_name()));
        // The same name within the same second: a `.partial` that no writer holds is a killed writer's.
        if let Ok(left) = std::fs::OpenOptions::new().write(true).open(&partial)
            && fs4::FileExt::try_lock(&left).is_ok()
        {
            let _ = std::fs::remove_file(&partial);
        }
        let file = fs_err::OpenOptions::from_options({
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true).mode(0o600);
            o
        })
        .open(&partial)
        .map_err(|source| ArchiveError::Create {
            path: partial.clone(),
            source,
        })?;
        // Held while the file is open, released by the kernel when this process ends however it ends: a
        // `.partial` nobody holds is left by a writer that died ([`remove_stale_partials`]). Best effort: a
        // filesystem without locks only loses that clean-up.
        let _ = fs4::FileExt::try_lock(file.file());
        if let Some(g) = &growing {
            g.begin(partial.clone(), name.file_name());
        }
        let file = TrackedFile::new(file, growing);
        let manifest = Manifest {
            format: FORMAT,
            tool: Tool::current(),
            created: name.created(),
            project: name.project().to_string(),
            tag: name.tag().map(str::to_string),
            engine,
            compose_files: Vec::new(),
            volumes: Vec::new(),
            dumps: Vec::new(),
            hooks: Vec::new(),
            encryption: None,
        };
        Ok(BackupWriter {
            out: Some(BufWriter::with_capacity(OUT_BUFFER, file)),
            dir,
            partial,
            target,
            manifest,
            options,
            sealer: None,
            members: BTreeSet::new(),
            pos: 0,
            volumes_started: false,
            poisoned: false,
            done: false,
        })
    }

    /// Encrypts every member from now on to `sealer`'s recipients (see [`super::crypt`]); before the
    /// first member only.
    pub fn encrypt(&mut self, sealer: Sealer) -> Result<(), ArchiveError> {
        if !self.members.is_empty() {
            return Err(ArchiveError::InvalidMember {
                path: self.partial.clone(),
                member: String::new(),
                reason: "encryption must be chosen before the first member",
            });
        }
        self.sealer = Some(std::sync::Arc::new(sealer));
        Ok(())
    }

    /// Whether the members are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.sealer.is_some()
    }

    /// A plain member name as this file names it (`<name>.age` when encrypted).
    fn stored_name(&self, plain: String) -> String {
        if self.sealer.is_some() {
            encrypted_member(&plain)
        } else {
            plain
        }
    }

    /// The file being written.
    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    /// The name the file gets once finished.
    pub fn target_path(&self) -> &Path {
        &self.target
    }

    /// Adds `compose/<file_name>`. Compose files come before every volume.
    pub fn add_compose_file(
        &mut self,
        file_name: &str,
        contents: &[u8],
    ) -> Result<(), ArchiveError> {
        self.check_usable()?;
        let invalid = |reason| ArchiveError::InvalidMember {
            path: self.partial.clone(),
            member: file_name.to_string(),
            reason,
        };
        let member = compose_member(file_name).ok_or_else(|| invalid("not a plain file name"))?;
        let member = self.stored_name(member);
        if self.volumes_started {
            return Err(invalid("Compose files must come before volumes"));
        }
        if self.members.contains(&member) {
            return Err(invalid(
                "a Compose file of that name is in the backup already",
            ));
        }
        let mtime = self.mtime();
        let encrypted = self
            .sealer
            .as_ref()
            .map(|s| s.encrypt(contents))
            .transpose()
            .map_err(|source| ArchiveError::Write {
                path: self.partial.clone(),
                member: member.clone(),
                source,
            })?;
        let contents = encrypted.as_deref().unwrap_or(contents);
        let result = self.write_small_member(&member, contents, mtime);
        self.after_write(result, &member)?;
        self.members.insert(member);
        self.manifest.compose_files.push(file_name.to_string());
        Ok(())
    }

    /// Streams one volume's tar from `data` into `volumes/<key>.tar.zst`, digesting it on the way, and
    /// returns its manifest record. On error the member is removed again and the writer stays usable.
    pub fn add_volume<R: Read>(
        &mut self,
        spec: VolumeSpec,
        data: R,
    ) -> Result<VolumeRecord, ArchiveError> {
        self.check_usable()?;
        let member = self.stored_name(member_for_key(&spec.key));
        let invalid = |reason| ArchiveError::InvalidMember {
            path: self.partial.clone(),
            member: member.clone(),
            reason,
        };
        if spec.key.is_empty() {
            return Err(invalid("the volume key is empty"));
        }
        if self.members.contains(&member) {
            return Err(invalid("that volume is in the backup already"));
        }
        let digest_options = DigestOptions::new(spec.tar_prefix.as_deref())
            .map_err(|_| invalid("the tar prefix is not a relative path"))?;
        self.volumes_started = true;

        let start = self.pos;
        let streamed = self.stream_volume(&member, data, &digest_options);
        let (summary, stored, sha256) = match streamed {
            Ok(done) => done,
            Err(err) => {
                self.rollback(start);
                return Err(match err {
                    DigestError::Sink(source) => ArchiveError::Write {
                        path: self.partial.clone(),
                        member,
                        source,
                    },
                    source => ArchiveError::ReadVolume {
                        path: self.partial.clone(),
                        key: spec.key,
                        source,
                    },
                });
            }
        };
        let record = VolumeRecord {
            key: spec.key,
            name: spec.name,
            kind: spec.kind,
            tier: spec.tier,
            reason: spec.reason,
            driver: spec.driver,
            driver_opts: spec.driver_opts,
            labels: spec.labels,
            users: spec.users,
            consistency: spec.consistency,
            stopped: spec.stopped,
            read_at: spec.read_at,
            hooks: Vec::new(),
            member: member.clone(),
            tar_prefix: digest_options.strip_prefix().map(str::to_string),
            entries: summary.entries,
            file_bytes: summary.file_bytes,
            symlink_bytes: summary.symlink_bytes,
            uncompressed_bytes: summary.tar_bytes,
            stored_bytes: stored,
            sha256,
            content_digest: Some(summary.digest),
        };
        self.members.insert(member);
        self.manifest.volumes.push(record.clone());
        Ok(record)
    }

    /// Streams a logical dump of volume `spec.key`, made in `service` by `recipe`, from `data` into
    /// `dumps/<service>.<ext>.zst` and returns its manifest record. On error (the stream's own, as when the
    /// dump tool failed) the member is removed again and the writer stays usable.
    pub fn add_dump<R: Read>(
        &mut self,
        spec: VolumeSpec,
        dump: DumpSpec,
        mut data: R,
    ) -> Result<DumpRecord, ArchiveError> {
        self.check_usable()?;
        let member = self.stored_name(dump_member(&dump.service, &dump.ext));
        if self.members.contains(&member) || self.manifest.dumps.iter().any(|d| d.key == spec.key) {
            return Err(ArchiveError::InvalidMember {
                path: self.partial.clone(),
                member,
                reason: "a dump of that service or volume is in the backup already",
            });
        }
        self.volumes_started = true;
        let start = self.pos;
        let streamed = (|| -> Result<(u64, String, u64, String), (bool, io::Error)> {
            let sink_err = |e| (true, e);
            let mtime = self.mtime();
            let header_pos = self.start_member(&member, mtime).map_err(sink_err)?;
            let ((bytes, content), stored, sha) = self.compress(
                |encoder| {
                    let mut content = Sha256::new();
                    let mut bytes = 0u64;
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        let n = match data.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err((false, e)),
                        };
                        content.update(&buf[..n]);
                        bytes += n as u64;
                        encoder.write_all(&buf[..n]).map_err(sink_err)?;
                    }
                    Ok((bytes, content))
                },
                sink_err,
            )?;
            self.pos += stored;
            self.end_member(header_pos, &member, stored, mtime)
                .map_err(sink_err)?;
            Ok((bytes, hex::encode(content.finalize()), stored, sha))
        })();
        let (bytes, content_sha256, stored_bytes, sha256) = match streamed {
            Ok(done) => done,
            Err((sink, source)) => {
                self.rollback(start);
                return Err(if sink {
                    ArchiveError::Write {
                        path: self.partial.clone(),
                        member,
                        source,
                    }
                } else {
                    ArchiveError::ReadDump {
                        path: self.partial.clone(),
                        key: spec.key,
                        source,
                    }
                });
            }
        };
        let record = DumpRecord {
            key: spec.key,
            name: spec.name,
            kind: spec.kind,
            tier: spec.tier,
            reason: spec.reason,
            driver: spec.driver,
            driver_opts: spec.driver_opts,
            labels: spec.labels,
            users: spec.users,
            consistency: "dump".to_string(),
            recipe: dump.recipe,
            service: dump.service,
            image: dump.image,
            member: member.clone(),
            bytes,
            stored_bytes,
            sha256,
            content_sha256,
            hooks: Vec::new(),
        };
        self.members.insert(member);
        self.manifest.dumps.push(record.clone());
        Ok(record)
    }

    /// Records the hooks run around volume `key` (a tree or a dump) in the manifest.
    pub fn record_volume_hooks(&mut self, key: &str, hooks: Vec<HookRecord>) {
        if let Some(v) = self.manifest.volumes.iter_mut().find(|v| v.key == key) {
            v.hooks = hooks;
        } else if let Some(d) = self.manifest.dumps.iter_mut().find(|d| d.key == key) {
            d.hooks = hooks;
        }
    }

    /// Records the project-wide hooks in the manifest.
    pub fn record_project_hooks(&mut self, hooks: Vec<HookRecord>) {
        self.manifest.hooks = hooks;
    }

    /// Writes the manifest and the end of the archive, fsyncs the file, renames it to its final name and fsyncs
    /// the directory.
    pub fn finish(mut self) -> Result<FinishedBackup, ArchiveError> {
        self.check_usable()?;
        let finish_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ArchiveError::Finish { path, source }
        };
        let json = match &self.sealer {
            None => serde_json::to_vec_pretty(&self.manifest),
            Some(sealer) => split_sealed(&self.manifest).and_then(|(mut readable, sealed)| {
                let sealed = serde_json::to_vec(&sealed)?;
                let info = sealer
                    .info_for(&sealed)
                    .map_err(serde::ser::Error::custom)?;
                self.manifest.encryption = Some(info.clone());
                if let serde_json::Value::Object(top) = &mut readable {
                    top.insert("encryption".to_string(), serde_json::to_value(info)?);
                }
                serde_json::to_vec_pretty(&readable)
            }),
        };
        let mut json = json.map_err(|e| finish_err(&self.partial)(io::Error::other(e)))?;
        json.push(b'\n');
        let mtime = self.mtime();
        let result = self.write_small_member(MANIFEST_MEMBER, &json, mtime);
        self.after_write(result, MANIFEST_MEMBER)?;
        let result = self.write_raw(&[0u8; 2 * BLOCK as usize]);
        self.after_write(result, MANIFEST_MEMBER)?;

        let out = self.out.take().ok_or_else(|| ArchiveError::Poisoned {
            path: self.partial.clone(),
        })?;
        let file = out
            .into_inner()
            .map_err(|e| finish_err(&self.partial)(e.into_error()))?;
        file.sync_all().map_err(finish_err(&self.partial))?;
        let growing = file.growing().cloned();
        drop(file);
        publish(&self.partial, &self.target)?;
        self.done = true;
        let synced = fs_err::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(finish_err(&self.target));
        if let Some(g) = growing {
            match &synced {
                Ok(()) => g.complete_at(self.pos),
                Err(e) => g.abandon(&e.to_string()),
            }
        }
        synced?;
        Ok(FinishedBackup {
            path: self.target.clone(),
            manifest: self.manifest.clone(),
            bytes: self.pos,
        })
    }

    fn check_usable(&self) -> Result<(), ArchiveError> {
        if self.poisoned || self.out.is_none() {
            return Err(ArchiveError::Poisoned {
                path: self.partial.clone(),
            });
        }
        Ok(())
    }

    fn after_write(&mut self, result: io::Result<()>, member: &str) -> Result<(), ArchiveError> {
        result.map_err(|source| {
            self.poisoned = true;
            ArchiveError::Write {
                path: self.partial.clone(),
                member: member.to_string(),
                source,
            }
        })
    }

    fn mtime(&self) -> u64 {
        u64::try_from(self.manifest.created.as_second()).unwrap_or(0)
    }

    fn out(&mut self) -> io::Result<&mut BufWriter<TrackedFile>> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("the backup file is closed"))
    }

    fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out()?.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let rest = (BLOCK - self.pos % BLOCK) % BLOCK;
        self.write_raw(&[0u8; BLOCK as usize][..rest as usize])
    }

    fn write_small_member(&mut self, member: &str, contents: &[u8], mtime: u64) -> io::Result<()> {
        let header_pos = self.start_member(member, mtime)?;
        self.write_raw(contents)?;
        self.end_member(header_pos, member, contents.len() as u64, mtime)
    }

    /// Writes the member's header(s) with size 0 and returns where its ustar header is.
    fn start_member(&mut self, member: &str, mtime: u64) -> io::Result<u64> {
        let (pax, header) = member_header(member, 0, mtime)?;
        if let Some(pax) = pax {
            self.write_raw(&pax)?;
        }
        let header_pos = self.pos;
        if let Some(g) = self.growing() {
            g.hold(Some(header_pos));
        }
        self.write_raw(header.as_bytes())?;
        Ok(header_pos)
    }

    /// Pads the member's data and rewrites its header with the real size.
    fn end_member(
        &mut self,
        header_pos: u64,
        member: &str,
        size: u64,
        mtime: u64,
    ) -> io::Result<()> {
        self.pad()?;
        let (_, header) = member_header(member, size, mtime)?;
        let end = self.pos;
        let out = self.out()?;
        out.seek(SeekFrom::Start(header_pos))?;
        out.write_all(header.as_bytes())?;
        out.seek(SeekFrom::Start(end))?;
        if let Some(g) = self.growing() {
            g.hold(None);
        }
        Ok(())
    }

    /// The followers' state, when the file is followed.
    fn growing(&self) -> Option<std::sync::Arc<Growing>> {
        self.out
            .as_ref()
            .and_then(|o| o.get_ref().growing().cloned())
    }

    fn stream_volume<R: Read>(
        &mut self,
        member: &str,
        data: R,
        digest_options: &DigestOptions,
    ) -> Result<(super::digest::TreeSummary, u64, String), DigestError> {
        let mtime = self.mtime();
        let header_pos = self
            .start_member(member, mtime)
            .map_err(DigestError::Sink)?;
        let (summary, stored, sha) = self.compress(
            |encoder| digest_tar_into(data, encoder, digest_options),
            DigestError::Sink,
        )?;
        self.pos += stored;
        self.end_member(header_pos, member, stored, mtime)
            .map_err(DigestError::Sink)?;
        Ok((summary, stored, sha))
    }

    /// Compresses what `feed` writes into the member being written, through age (when encrypted) and the
    /// SHA-256 of the stored bytes into the file; returns what `feed` returned, the stored bytes' count and
    /// their SHA-256. With zstd workers the stored bytes are written on a thread of their own
    /// ([`super::handoff`]), so that encryption, hashing and writing do not hold up the thread that feeds
    /// zstd. A write error wins over the error it caused in `feed` (which then only saw the writing stop).
    fn compress<T, E>(
        &mut self,
        feed: impl FnOnce(&mut dyn Write) -> Result<T, E>,
        sink_err: impl Fn(io::Error) -> E,
    ) -> Result<(T, u64, String), E> {
        let options = self.options;
        let sink = self.member_sink().map_err(&sink_err)?;
        let (fed, written) = if options.workers > 0 {
            std::thread::scope(|scope| {
                let (handoff, writing) = Handoff::start(scope, sink);
                let fed = (|| {
                    let mut encoder = member_encoder(handoff, options).map_err(&sink_err)?;
                    let fed = feed(&mut encoder)?;
                    let handoff = encoder.finish().map_err(&sink_err)?;
                    handoff.finish().map_err(&sink_err)?;
                    Ok(fed)
                })();
                (fed, handoff::join(writing))
            })
        } else {
            let mut encoder = member_encoder(sink, options).map_err(&sink_err)?;
            let fed = feed(&mut encoder)?;
            (Ok(fed), encoder.finish())
        };
        let written = written.map_err(&sink_err)?;
        let fed = fed?;
        let hashing = written.finish().map_err(&sink_err)?;
        Ok((fed, hashing.bytes, hex::encode(hashing.sha.finalize())))
    }

    /// Where a member's zstd output goes: through age (when encrypted) and the SHA-256 of the stored bytes
    /// into the file.
    fn member_sink(&mut self) -> io::Result<MemberSink<'_>> {
        let sealer = self.sealer.clone();
        let hashing = HashingWriter {
            out: self.out()?,
            sha: Sha256::new(),
            bytes: 0,
        };
        Ok(match sealer {
            Some(sealer) => MemberSink::Sealed(sealer.wrap(hashing)?),
            None => MemberSink::Plain(hashing),
        })
    }

    /// Cuts the file back to `start` after a failed member; poisons the writer if even that fails.
    fn rollback(&mut self, start: u64) {
        let cut = (|| -> io::Result<()> {
            let out = self.out()?;
            out.seek(SeekFrom::Start(start))?;
            out.get_ref().set_len(start)?;
            Ok(())
        })();
        if let Some(g) = self.growing() {
            g.hold(None);
        }
        match cut {
            Ok(()) => self.pos = start,
            Err(_) => self.poisoned = true,
        }
    }
}

impl Drop for BackupWriter {
    fn drop(&mut self) {
        if !self.done {
            if let Some(g) = self.growing() {
                g.abandon("the backup did not finish");
            }
            drop(self.out.take());
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Creates the backup directory (0700, with a `.gitignore` of `*`) unless it exists.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), ArchiveError> {
    let err = |source| ArchiveError::CreateDir {
        path: dir.to_path_buf(),
        source,
    };
    match dir.metadata() {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "it exists and is not a directory",
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(err(e)),
    }
    let gitignore = dir.join(".gitignore");
    match fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&gitignore)
    {
        Ok(mut f) => f.write_all(b"*\n").map_err(err),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// Gives the finished `.partial` its final name without ever replacing an existing file.
pub(crate) fn publish(partial: &Path, target: &Path) -> Result<(), ArchiveError> {
    let finish_err = |source| ArchiveError::Finish {
        path: target.to_path_buf(),
        source,
    };
    match std::fs::hard_link(partial, target) {
        Ok(()) => {
            // The backup is complete under its final name; a leftover second name would only be skipped.
            let _ = std::fs::remove_file(partial);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(ArchiveError::Exists {
            path: target.to_path_buf(),
        }),
        Err(_) => {
            if target.symlink_metadata().is_ok() {
                return Err(ArchiveError::Exists {
                    path: target.to_path_buf(),
                });
            }
            fs_err::rename(partial, target).map_err(finish_err)
        }
    }
}

/// The header block(s) of a member: a PAX `x` header (header, `path` record, padding) when the name does not
/// fit ustar's fields, then the ustar header itself.
fn member_header(
    member: &str,
    size: u64,
    mtime: u64,
) -> io::Result<(Option<Vec<u8>>, tar::Header)> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o600);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_size(size);
    debug_assert!(size <= MAX_OCTAL_SIZE || header.as_bytes()[124] & 0x80 != 0);
    let pax = if header.set_path(member).is_ok() {
        None
    } else {
        let short = truncate_utf8(member, 100);
        header.as_old_mut().name = [0; 100];
        header.as_old_mut().name[..short.len()].copy_from_slice(short.as_bytes());
        let record = pax_record("path", member);
        let mut ext = tar::Header::new_ustar();
        ext.set_entry_type(tar::EntryType::XHeader);
        ext.set_mode(0o600);
        ext.set_mtime(mtime);
        ext.set_size(record.len() as u64);
        let ext_name = format!(
            "PaxHeader/{}",
            truncate_utf8(short.rsplit('/').next().unwrap_or(""), 80)
        );
        ext.set_path(&ext_name)?;
        ext.set_cksum();
        let mut bytes = ext.as_bytes().to_vec();
        bytes.extend_from_slice(&record);
        let padded = bytes.len().div_ceil(BLOCK as usize) * BLOCK as usize;
        bytes.resize(padded, 0);
        Some(bytes)
    };
    header.set_cksum();
    Ok((pax, header))
}

/// `"<len> <key>=<value>\n"`, where `<len>` counts the whole record, itself included.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    format!("{len} {key}={value}\n").into_bytes()
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The zstd encoder of a streamed member, writing into `sink`.
fn member_encoder<W: Write>(
    sink: W,
    options: WriterOptions,
) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut encoder = zstd::stream::write::Encoder::new(sink, options.level)?;
    encoder.include_checksum(true)?;
    if options.workers > 0 {
        encoder.multithread(options.workers)?;
        if MT_SMALL_JOB_LEVELS.contains(&options.level) {
            encoder.set_parameter(zstd::stream::raw::CParameter::JobSize(MT_JOB_SIZE))?;
        }
    }
    Ok(encoder)
}

/// Where a member's zstd output goes: straight to the hashing writer, or through age first.
enum MemberSink<'a> {
    Plain(HashingWriter<'a>),
    Sealed(EncryptingWriter<HashingWriter<'a>>),
}

impl<'a> MemberSink<'a> {
    /// Ends the age stream, if any, and returns the hashing writer with the stored bytes' count and hash.
    fn finish(self) -> io::Result<HashingWriter<'a>> {
        match self {
            MemberSink::Plain(w) => Ok(w),
            MemberSink::Sealed(w) => w.finish(),
        }
    }
}

impl Write for MemberSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            MemberSink::Plain(w) => w.write(buf),
            MemberSink::Sealed(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            MemberSink::Plain(w) => w.flush(),
            MemberSink::Sealed(w) => w.flush(),
        }
    }
}

/// Hashes and counts what passes through on the way to the file.
struct HashingWriter<'a> {
    out: &'a mut BufWriter<TrackedFile>,
    sha: Sha256,
    bytes: u64,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::archive::digest::tests::{build, dir, file};
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    pub(crate) fn spec(key: &str) -> VolumeSpec {
        VolumeSpec {
            key: key.into(),
            name: format!("app_{key}"),
            kind: DataKind::Named,
            tier: Tier::Critical,
            reason: "test".into(),
            driver: "local".into(),
            driver_opts: Default::default(),
            labels: Default::default(),
            users: vec![],
            consistency: "stop".into(),
            stopped: vec![],
            read_at: None,
            tar_prefix: None,
        }
    }

    fn name() -> BackupName {
        BackupName::new("app", "2026-11-22T10:15:00Z".parse().unwrap(), None).unwrap()
    }

    fn gnu_tar(args: &[&str]) -> std::process::Output {
        let out = Command::new("tar").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "tar {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Makes `path` look unmodified for longer than [`STALE_PARTIAL_AGE`].
    fn age(path: &Path) {
        let old =
            std::time::SystemTime::now() - STALE_PARTIAL_AGE - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }

    #[test]
    fn only_old_unlocked_partials_of_the_project_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        // A writer at work: old (a long pause) but locked.
        let writer =
            BackupWriter::create(d, &name(), EngineInfo::default(), WriterOptions::default())
                .unwrap();
        age(writer.partial_path());
        // Left by a writer that died: old and unlocked.
        let dead = d.join("app-20261121T000000Z.tar.partial");
        std::fs::write(&dead, b"half").unwrap();
        age(&dead);
        // Unlocked but recent (a writer on a filesystem without locks, just started): kept.
        let recent = d.join("app-20261121T000001Z.tar.partial");
        std::fs::write(&recent, b"half").unwrap();
        // Another project's, and a finished backup: never touched.
        let other = d.join("other-20261121T000000Z.tar.partial");
        std::fs::write(&other, b"half").unwrap();
        age(&other);
        let finished = d.join("app-20261121T000002Z.tar");
        std::fs::write(&finished, b"x").unwrap();
        age(&finished);

        assert_eq!(remove_stale_partials(d, "app").unwrap(), vec![dead.clone()]);
        assert!(!dead.exists());
        for kept in [writer.partial_path(), &recent, &other, &finished] {
            assert!(kept.exists(), "{}", kept.display());
        }
        drop(writer);
        assert_eq!(
            remove_stale_partials(&d.join("nonexistent"), "app").unwrap(),
            Vec::<PathBuf>::new()
        );
    }

    #[test]
    fn pax_record_length_counts_itself() {
        for value in ["x", &"y".repeat(90), &"z".repeat(995), &"w".repeat(9990)] {
            let r = pax_record("path", value);
            let (len, _) = std::str::from_utf8(&r).unwrap().split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), r.len());
        }
    }

    #[test]
    fn creates_private_directory_with_gitignore_and_private_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("backups");
        let w = BackupWriter::create(
            &dir,
            &name(),
            EngineInfo::default(),
            WriterOptions::default(),
        )
        .unwrap();
        let mode = |p: &Path| p.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(w.partial_path()), 0o600);
        assert_eq!(
            std::fs::read_to_string(dir.join(".gitignore")).unwrap(),
            "*\n"
        );
        assert!(
            w.partial_path()
                .ends_with("app-20261122T101500Z.tar.partial")
        );
        let done = w.finish().unwrap();
        assert_eq!(mode(&done.path), 0o600);
        assert!(!dir.join("app-20261122T101500Z.tar.partial").exists());
    }

    #[test]
    fn existing_directory_is_left_as_it_is() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let w = BackupWriter::create(
            tmp.path(),
            &name(),
            EngineInfo::default(),
            WriterOptions::default(),
        )
        .unwrap();
        drop(w);
        assert!(!tmp.path().join(".gitignore").exists());
        assert_eq!(
            tmp.path().metadata().unwrap().permissions().mode() & 0o777,
            0o755
        );
    }

    #[test]
    fn dropping_an_unfinished_writer_removes_the_partial() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = BackupWriter::create(
            tmp.path(),
            &name(),
            EngineInfo::default(),
            WriterOptions::default(),
        )
        .unwrap();
        w.add_volume(spec("db"), &build(&[dir("."), file("x", b"x")])[..])
            .unwrap();
        let partial = w.partial_path().to_path_buf();
        assert!(partial.exists());
        drop(w);
        assert!(!partial.exists());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn dropping_during_a_panic_removes_the_partial() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().to_path_buf();
        let result = std::panic::catch_unwind(move || {
            let _w = BackupWriter::create(
                &path,
                &name(),
                EngineInfo::default(),
                WriterOptions::default(),
            )
            .unwrap();
            panic!("interrupted");
        });
        assert!(result.is_err());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn finish_never_replaces_an_existing_backup() {
        let tmp = tempfile::tempdir().unwrap();
        let w = BackupWriter::create(
            tmp.path(),
            &name(),
            EngineInfo::default(),
            WriterOptions::default(),
        )
        .unwrap();
        // Another backup of the same second appears meanwhile.
        std::fs::write(tmp.path().join("app-20261122T101500Z.tar"), b"precious").unwrap();
        let err = w.finish().unwrap_err();
        assert!(matches!(err, ArchiveError::Exists { .. }), "{err}");
        assert_eq!(
            std::fs::read(tmp.path().join("app-20261122T101500Z.tar")).unwrap(),
            b"precious"
        );
        let err = BackupWriter::create(
            tmp.path(),
            &name(),
            EngineInfo::default(),
            WriterOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ArchiveError::Exists { .. }), "{err}");
    }

    #[test]
    fn failed_volume_is_cut_off_and_writer_goes_on() {
        // On the calling thread, and with zstd workers and the stored bytes written on a thread of their own.
        for options in [
            WriterOptions::default(),
            WriterOptions {
                level: 3,
                workers: 2,
            },
        ] {
            a_failed_volume_is_cut_off(options);
        }
    }

    fn a_failed_volume_is_cut_off(options: WriterOptions) {
        struct Broken(Vec<u8>, usize);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.1 >= 4096 {
                    return Err(io::Error::other("connection reset"));
                }
                let n = buf.len().min(512).min(self.0.len() - self.1);
                buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let tmp = tempfile::tempdir().unwrap();
        let mut w =
            BackupWriter::create(tmp.path(), &name(), EngineInfo::default(), options).unwrap();
        let big = build(&[dir("."), file("x", &vec![7u8; 100_000])]);
        let err = w.add_volume(spec("db"), Broken(big, 0)).unwrap_err();
        assert!(
            matches!(&err, ArchiveError::ReadVolume { key, .. } if key == "db"),
            "{err}"
        );
        assert_eq!(w.pos, 0);
        w.add_volume(spec("db"), &build(&[dir("."), file("x", b"x")])[..])
            .unwrap();
        let done = w.finish().unwrap();
        let list = String::from_utf8(gnu_tar(&["tf", done.path.to_str().unwrap()]).stdout).unwrap();
        assert_eq!(list, "volumes/db.tar.zst\nmanifest.json\n");
    }

    fn dump_spec(service: &str) -> DumpSpec {
        DumpSpec {
            recipe: "postgres".into(),
            service: service.into(),
            image: "postgres:16".into(),
            ext: "sql".into(),
        }
    }

    #[test]
    fn dumps_round_trip_and_a_failed_dump_leaves_nothing() {
        for options in [
            WriterOptions::default(),
            WriterOptions {
                level: 3,
                workers: 2,
            },
        ] {
            dumps_round_trip(options);
        }
    }

    fn dumps_round_trip(options: WriterOptions) {
        let tmp = tempfile::tempdir().unwrap();
        let mut w =
            BackupWriter::create(tmp.path(), &name(), EngineInfo::default(), options).unwrap();
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("`pg_dumpall` exited with code 1"));
                }
                self.0 -= 1;
                buf[..3].copy_from_slice(b"abc");
                Ok(3)
            }
        }
        let err = w
            .add_dump(spec("db"), dump_spec("db"), Failing(5))
            .unwrap_err();
        assert!(
            matches!(&err, ArchiveError::ReadDump { key, .. } if key == "db"),
            "{err}"
        );
        assert_eq!(w.pos, 0);
        let sql: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let record = w.add_dump(spec("db"), dump_spec("db"), &sql[..]).unwrap();
        assert_eq!(record.member, "dumps/db.sql.zst");
        assert_eq!(record.bytes, sql.len() as u64);
        assert_eq!(record.content_sha256, hex::encode(Sha256::digest(&sql)));
        let again = w
            .add_dump(spec("db"), dump_spec("db"), &b"x"[..])
            .unwrap_err();
        assert!(
            matches!(again, ArchiveError::InvalidMember { .. }),
            "{again}"
        );
        w.record_volume_hooks("db", vec![]);
        let done = w.finish().unwrap();
        let list = String::from_utf8(gnu_tar(&["tf", done.path.to_str().unwrap()]).stdout).unwrap();
        assert_eq!(list, "dumps/db.sql.zst\nmanifest.json\n");

        let backup = crate::archive::Backup::open(&done.path).unwrap();
        assert!(backup.dump_stream("db").is_err(), "not verified yet");
        let report = backup.verify().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.volumes.len(), 1);
        let mut back = Vec::new();
        backup
            .dump_stream("db")
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, sql);

        // A flipped byte in the stored member is found.
        let index = backup.member("dumps/db.sql.zst").unwrap().clone();
        let mut bytes = std::fs::read(&done.path).unwrap();
        bytes[usize::try_from(index.data_offset).unwrap() + 40] ^= 0xff;
        std::fs::write(&done.path, &bytes).unwrap();
        let report = crate::archive::Backup::open(&done.path)
            .unwrap()
            .verify()
            .unwrap();
        assert!(!report.is_ok());
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.kind == crate::archive::ProblemKind::Sha256Mismatch),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn compose_files_come_first_and_once() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = BackupWriter::create(
            tmp.path(),
            &name(),
            EngineInfo::default(),
            WriterOptions::default(),
        )
        .unwrap();
        w.add_compose_file("compose.yaml", b"services: {}\n")
            .unwrap();
        assert!(w.add_compose_file("compose.yaml", b"x").is_err());
        assert!(w.add_compose_file("../compose.yaml", b"x").is_err());
        w.add_volume(spec("db"), &build(&[dir(".")])[..]).unwrap();
        assert!(w.add_volume(spec("db"), &build(&[dir(".")])[..]).is_err());
        let err = w.add_compose_file("late.yaml", b"x").unwrap_err();
        assert!(matches!(err, ArchiveError::InvalidMember { .. }), "{err}");
    }

    #[test]
    fn long_member_names_use_a_pax_path_record() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = BackupWriter::create(
            tmp.path(),
            &name(),
            EngineInfo::default(),
            WriterOptions::default(),
        )
        .unwrap();
        let key = format!("web:/{}/node_modules", "deep/".repeat(40));
        let record = w.add_volume(spec(&key), &build(&[dir(".")])[..]).unwrap();
        assert!(record.member.len() > 255);
        let done = w.finish().unwrap();
        let list = String::from_utf8(gnu_tar(&["tf", done.path.to_str().unwrap()]).stdout).unwrap();
        assert_eq!(list, format!("{}\nmanifest.json\n", record.member));
    }

    /// A member over 8 GiB: the size is patched in base-256. The data is a hole in a sparse file, so the test
    /// costs no disk and little time.
    #[test]
    fn members_over_8_gib_get_a_base_256_size() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = BackupWriter::create(
            tmp.path(),
            &name(),
            EngineInfo::default(),
            WriterOptions::default(),
        )
        .unwrap();
        let size = (8u64 << 30) + 12345;
        let header_pos = w.start_member("volumes/big.tar.zst", 0).unwrap();
        let end = w.pos + size;
        let out = w.out().unwrap();
        out.flush().unwrap();
        out.get_ref().set_len(end).unwrap();
        out.seek(SeekFrom::Start(end)).unwrap();
        w.pos = end;
        w.end_member(header_pos, "volumes/big.tar.zst", size, 0)
            .unwrap();
        let done = w.finish().unwrap();
        let path = done.path.to_str().unwrap();
        let listing = String::from_utf8(gnu_tar(&["tvf", path]).stdout).unwrap();
        assert!(listing.contains(&format!(" {size} ")), "{listing}");
        assert!(listing.contains("manifest.json"), "{listing}");
        let out = gnu_tar(&["xOf", path, "manifest.json"]);
        let manifest: Manifest = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(manifest.project, "app");
        if which::which("bsdtar").is_ok() {
            let out = Command::new("bsdtar").args(["tvf", path]).output().unwrap();
            assert!(out.status.success());
            assert!(String::from_utf8_lossy(&out.stdout).contains(&size.to_string()));
        }
        let backup = crate::archive::Backup::open(&done.path).unwrap();
        let big = backup
            .members()
            .iter()
            .find(|m| m.name == "volumes/big.tar.zst")
            .unwrap();
        assert_eq!(big.size, size);
        let report = backup.verify().unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert_eq!(
            report.problems[0].kind,
            crate::archive::ProblemKind::UnexpectedMember
        );
    }

    #[test]
    fn handles_can_move_to_blocking_threads() {
        fn send<T: Send>() {}
        send::<BackupWriter>();
        send::<crate::archive::Backup>();
        send::<crate::archive::VolumeStream>();
    }
}
