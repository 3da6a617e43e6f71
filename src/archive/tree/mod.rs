//! A directory tree on disk as a tar stream and back, and its content digest read straight from disk: the
//! fast path's half of the data path. A static build of this executable runs in a helper container with the
//! volume mounted and packs it ([`pack_tree`]), unpacks a backup into it ([`unpack_tree`]), or digests it to
//! check a restore ([`digest_tree`]).
//!
//! # The same tar as the engine's
//! A backup made by either path must restore through either and give the same content digest, so
//! [`pack_tree`] writes what the engine's archive endpoint writes for `/data/.` (Go's `archive/tar` over a
//! lexical walk): the root entry `./`, names `./x` (`./d/` for directories), entries sorted by byte order
//! within each directory and every directory's contents right after it; numeric uid and gid without names;
//! the mode with its file-type bits; mtimes in whole seconds; symlinks stored, never followed; every
//! non-directory with more than one link stored in full where the walk first meets it and as a hardlink to
//! that name after; fifos and devices (Linux's major/minor encoding); `security.capability` as a PAX
//! `SCHILY.xattr.security.capability` record; names and link targets longer than ustar's 100 bytes as PAX
//! `path`/`linkpath` records (any bytes); sparse files in full; unix sockets left out and counted. ustar
//! fields too small for a value (uids from 2^21, files from 8 GiB) take the base-256 form GNU tar, Go and the
//! `tar` crate read. [`digest_tree`] walks the same way and feeds the same [`EntryRecord`]s to the digest that
//! [`digest_tar`](super::digest::digest_tar) builds from such a tar.
//!
//! Something that vanishes or changes size while it is being read is an error naming it, never skipped.
//! Memory stays flat apart from the table of multiply-linked files and the sorted listing of each directory
//! on the path being walked. On an error the tar stream is left without its end-of-archive blocks, so no
//! reader takes it for a whole tree.
//!
//! # Unpacking
//! The `tar` crate parses the stream (PAX and GNU long names, PAX uid/gid, GNU sparse files) and writes
//! regular files and symlinks ([`tar::Entry::unpack`]: a new file replacing whatever was there, content
//! with sparse holes, mtime, then owner, then full permissions, then xattrs). Around it this module does
//! what the crate does not, or does differently:
//! - it decides where each entry goes, with the same path rules as the digest: an absolute path, a `..`
//!   component, or a hardlink target outside the tree is refused (the crate's `unpack_in` would silently
//!   skip or re-root such entries), and so is an entry below a symlink (the crate follows symlinks that
//!   stay inside the destination; a tree walked from disk never has one, so any is refused);
//! - the root entry (`./`, `.`, or the prefix) sets the owner and mode of `root` itself (the crate skips it);
//! - directories (the crate takes an old-style regular-file entry named `d/` for a file), hardlinks, fifos
//!   and devices (the crate resolves hardlink targets against the working directory when not unpacking
//!   with `unpack_in`, and writes fifos and devices as empty regular files);
//! - directory mtimes, set once everything is in place (the crate never sets them), and an mtime of 0 kept
//!   as 0 (the crate moves it to 1);
//! - xattrs on entries other than regular files (the crate sets them on regular files only).
//!
//! It is meant to run as root, as the helper does: keeping owners needs it.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, mpsc};
use std::{mem, thread};

use rustix::fs::OFlags;
use rustix::io::Errno;
use tar::{EntryType, Header, HeaderMode};

use super::digest::{DigestError, DigestVersion, EntryData, EntryRecord, TreeHasher, TreeSummary};
use super::rebase::pax_record;

mod unpack;

pub use unpack::unpack_tree;

/// Reads of file contents; large enough that a big file costs few system calls.
const READ_BUFFER: usize = 1 << 20;
/// The tar stream is written and read through buffers of this size.
const STREAM_BUFFER: usize = 1 << 20;
const BLOCK: usize = 512;
/// ustar's name and linkname fields; longer names get a PAX record.
const NAME_FIELD: usize = 100;
const CAPABILITY: &str = "security.capability";
/// [`digest_tree`] hands its hashing threads files in batches of this many, or of this many bytes.
const BATCH_FILES: usize = 64;
const BATCH_BYTES: u64 = 4 << 20;
/// At most this many threads hash files for [`digest_tree`].
const MAX_HASHERS: usize = 8;
const PAX_XATTR: &[u8] = b"SCHILY.xattr.";

/// What packing or unpacking a tree did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Entries written or unpacked, the root directory's included.
    pub entries: u64,
    /// Bytes of regular-file content (a hardlink adds nothing: its data is the linked file's).
    pub file_bytes: u64,
    /// Unix sockets met and left out, as the engine's tar leaves them out (always 0 when unpacking).
    pub skipped_sockets: u64,
    /// Bytes of the tar stream written or read, end-of-archive blocks and anything after them included.
    pub tar_bytes: u64,
}

/// Why a tree could not be packed, unpacked or digested; each variant names the path or entry concerned.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("`{}` is not a directory", path.display())]
    NotADirectory { path: PathBuf },

    #[error("failed to read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("`{}` vanished while the tree was being read", path.display())]
    Vanished { path: PathBuf },

    #[error("`{}` changed while being read: {what}", path.display())]
    Changed { path: PathBuf, what: String },

    #[error("failed to write the tar stream at `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(transparent)]
    InvalidPrefix(DigestError),

    #[error("failed to read the tar stream after {entries} entries")]
    ReadTar {
        entries: u64,
        #[source]
        source: io::Error,
    },

    #[error("the tar stream ends without an end-of-archive marker after {entries} entries")]
    NoEndMarker { entries: u64 },

    #[error("refusing tar entry `{entry}`: it {why}")]
    UnsafeEntry { entry: String, why: String },

    #[error("tar entry `{entry}` is {what}, which cannot be unpacked")]
    Unsupported { entry: String, what: String },

    #[error("failed to unpack tar entry `{entry}` to `{}`", path.display())]
    Unpack {
        entry: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Writes a tar of the tree rooted at `root` to `out` (see the module docs for what it holds). `root` itself
/// may be a symlink to the directory; nothing below it is followed.
pub fn pack_tree<W: Write>(root: &Path, out: W) -> Result<TreeStats, TreeError> {
    let mut out = BufWriter::with_capacity(
        STREAM_BUFFER,
        Counted {
            inner: out,
            bytes: 0,
        },
    );
    let mut stats = TreeStats::default();
    let mut buf = vec![0u8; READ_BUFFER];
    let mut pax = Vec::new();
    stats.skipped_sockets = walk(root, |found| {
        pack_entry(&mut out, found, &mut buf, &mut pax, &mut stats)
    })?;
    let end = |source| TreeError::Write {
        path: root.to_path_buf(),
        source,
    };
    out.write_all(&[0; 2 * BLOCK]).map_err(end)?;
    out.flush().map_err(end)?;
    stats.tar_bytes = out.get_ref().bytes;
    Ok(stats)
}

/// The content digest (of version `version`) of the tree rooted at `root`, read from disk: the digest
/// [`digest_tar`](super::digest::digest_tar) gives for [`pack_tree`]'s tar, or the engine's, of the same tree.
/// `tar_bytes` is 0: no tar is made.
///
/// The walk runs on the calling thread; regular files are hashed on one thread per core (at most
/// [`MAX_HASHERS`]), in batches, each thread summing its own part of the digest. Hashing content is what
/// bounds a digest of large files, and the sum does not depend on the order entries come in.
pub fn digest_tree(root: &Path, version: DigestVersion) -> Result<TreeSummary, TreeError> {
    let hashers = thread::available_parallelism().map_or(1, |n| n.get().min(MAX_HASHERS));
    let (jobs, queue) = mpsc::sync_channel::<Vec<FileJob>>(2 * hashers);
    let queue = Mutex::new(queue);
    let failure = Failure::default();
    let mut hasher = TreeHasher::new(version);
    let parts = thread::scope(|scope| {
        let threads: Vec<_> = (0..hashers)
            .map(|_| scope.spawn(|| hash_files(&queue, &failure, version)))
            .collect();
        let mut batch = Vec::with_capacity(BATCH_FILES);
        let mut batch_bytes = 0;
        let walked = walk(root, |found| {
            if let Some(e) = failure.take() {
                return Err(e);
            }
            let meta = found.meta;
            let data = match found.kind {
                Kind::Dir => EntryData::Dir,
                Kind::File => {
                    let path = found.path.as_os_str().as_bytes().to_vec();
                    batch.push(FileJob {
                        rel_start: path.len() - found.rel().len(),
                        path,
                        size: meta.len(),
                        mode: meta.mode(),
                        uid: meta.uid(),
                        gid: meta.gid(),
                    });
                    batch_bytes += meta.len();
                    if batch.len() == BATCH_FILES || batch_bytes >= BATCH_BYTES {
                        batch_bytes = 0;
                        send(
                            &jobs,
                            mem::replace(&mut batch, Vec::with_capacity(BATCH_FILES)),
                        );
                    }
                    return Ok(());
                }
                Kind::Symlink(target) => EntryData::Symlink { target },
                Kind::Hardlink(target) => EntryData::Hardlink {
                    target: relative(target),
                },
                Kind::Fifo => EntryData::Fifo,
                Kind::Char { major, minor } => EntryData::CharDevice { major, minor },
                Kind::Block { major, minor } => EntryData::BlockDevice { major, minor },
            };
            hasher.add(&EntryRecord {
                path: found.rel(),
                data,
                mode: meta.mode(),
                uid: u64::from(meta.uid()),
                gid: u64::from(meta.gid()),
            });
            Ok(())
        });
        if walked.is_ok() && !batch.is_empty() {
            send(&jobs, batch);
        }
        // Closing the queue ends the hashing threads once they have emptied it.
        drop(jobs);
        let parts: Vec<TreeHasher> = threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect();
        walked.map(|_| parts)
    })?;
    if let Some(e) = failure.take() {
        return Err(e);
    }
    for part in &parts {
        hasher.merge(part);
    }
    Ok(TreeSummary {
        digest: hasher.digest(),
        entries: hasher.entries(),
        file_bytes: hasher.file_bytes(),
        symlink_bytes: hasher.symlink_bytes(),
        tar_bytes: 0,
        has_root: hasher.has_root(),
    })
}

/// A regular file for a hashing thread, with what its digest entry needs.
struct FileJob {
    /// `<root>/./<rel>`.
    path: Vec<u8>,
    /// Where `rel` starts in `path`.
    rel_start: usize,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// The first error a hashing thread met; once there is one, the others drop what they are given (so that
/// the walk never waits on a full queue) and the walk stops at its next entry.
#[derive(Default)]
struct Failure {
    failed: AtomicBool,
    error: Mutex<Option<TreeError>>,
}

impl Failure {
    fn set(&self, error: TreeError) {
        let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert(error);
        self.failed.store(true, Ordering::Release);
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    fn take(&self) -> Option<TreeError> {
        if !self.failed() {
            return None;
        }
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Queues a batch of files; the hashing threads take from the queue until it is closed, so it is never
/// closed from their side and sending cannot fail.
fn send(jobs: &mpsc::SyncSender<Vec<FileJob>>, batch: Vec<FileJob>) {
    let _ = jobs.send(batch);
}

/// One hashing thread: digests the files of every batch it takes, until the queue is closed.
fn hash_files(
    queue: &Mutex<mpsc::Receiver<Vec<FileJob>>>,
    failure: &Failure,
    version: DigestVersion,
) -> TreeHasher {
    let mut hasher = TreeHasher::new(version);
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let received = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(batch) = received else {
            return hasher;
        };
        if failure.failed() {
            continue;
        }
        for job in &batch {
            let path = as_path(&job.path);
            let mut content = hasher.content_hasher();
            let hashed = open_file(path).and_then(|mut file| {
                read_exactly(&mut file, path, job.size, &mut buf, |chunk| {
                    content.update(chunk);
                    Ok(())
                })
            });
            if let Err(e) = hashed {
                failure.set(e);
                break;
            }
            hasher.add(&EntryRecord {
                path: &job.path[job.rel_start..],
                data: EntryData::File {
                    size: job.size,
                    content_hash: content.finish(),
                },
                mode: job.mode,
                uid: u64::from(job.uid),
                gid: u64::from(job.gid),
            });
        }
    }
}

/// What the walk found at a path.
#[derive(Clone, Copy)]
enum Kind<'a> {
    Dir,
    File,
    /// The raw target.
    Symlink(&'a [u8]),
    /// The tar name of the entry first met for this file (`./a/f`).
    Hardlink(&'a [u8]),
    Fifo,
    Char {
        major: u32,
        minor: u32,
    },
    Block {
        major: u32,
        minor: u32,
    },
}

struct Found<'a> {
    /// The tar name: `./` for the root, `./d/` for a directory, `./d/f` otherwise.
    name: &'a [u8],
    path: &'a Path,
    meta: &'a Metadata,
    kind: Kind<'a>,
}

impl Found<'_> {
    /// The path as the digest has it: `d/f`, the root being empty.
    fn rel(&self) -> &[u8] {
        let rel = relative(self.name);
        rel.strip_suffix(b"/").unwrap_or(rel)
    }
}

/// A tar name without its leading `./`.
fn relative(name: &[u8]) -> &[u8] {
    name.strip_prefix(b"./").unwrap_or(name)
}

/// One directory being walked: its entries' names in one buffer, sorted.
struct Level {
    names: Vec<u8>,
    spans: Vec<(usize, usize)>,
    next: usize,
    /// The length of the walker's path up to and including this directory's trailing `/`.
    base: usize,
}

/// Walks the tree rooted at `root` in the engine's order (each directory's entries sorted by byte order, a
/// directory's contents right after it), calling `visit` for the root and then every entry but sockets;
/// returns how many sockets it left out.
fn walk<F>(root: &Path, mut visit: F) -> Result<u64, TreeError>
where
    F: FnMut(&Found<'_>) -> Result<(), TreeError>,
{
    let meta = root_dir(root)?;
    // One buffer holds the path of the current entry as `<root>/./<rel>`: the path to open, and from
    // `name_start` on its tar name. Nothing else is allocated per entry but the directory listings, the
    // targets of symlinks and the names of multiply-linked files.
    let root_bytes = root.as_os_str().as_bytes();
    let trimmed = &root_bytes[..root_bytes
        .iter()
        .rposition(|b| *b != b'/')
        .map_or(0, |i| i + 1)];
    let mut abs = Vec::with_capacity(4096);
    abs.extend_from_slice(trimmed);
    abs.extend_from_slice(b"/./");
    let name_start = trimmed.len() + 1;
    let mut stack = vec![enter_dir(&abs, name_start, &meta, &mut visit)?];
    let mut first_names: HashMap<(u64, u64), Box<[u8]>> = HashMap::new();
    let mut sockets = 0;
    while let Some(level) = stack.last_mut() {
        let Some(&(start, end)) = level.spans.get(level.next) else {
            stack.pop();
            continue;
        };
        level.next += 1;
        abs.truncate(level.base);
        abs.extend_from_slice(&level.names[start..end]);
        let meta = fs::symlink_metadata(as_path(&abs)).map_err(|e| read_error(&abs, e))?;
        let file_type = meta.file_type();
        if file_type.is_socket() {
            sockets += 1;
            continue;
        }
        if file_type.is_dir() {
            abs.push(b'/');
            stack.push(enter_dir(&abs, name_start, &meta, &mut visit)?);
            continue;
        }
        let target;
        let mut kind = if file_type.is_file() {
            Kind::File
        } else if file_type.is_symlink() {
            target = fs::read_link(as_path(&abs))
                .map_err(|e| read_error(&abs, e))?
                .into_os_string()
                .into_vec();
            Kind::Symlink(&target)
        } else if file_type.is_fifo() {
            Kind::Fifo
        } else if file_type.is_char_device() {
            let (major, minor) = rdev_numbers(&meta);
            Kind::Char { major, minor }
        } else if file_type.is_block_device() {
            let (major, minor) = rdev_numbers(&meta);
            Kind::Block { major, minor }
        } else {
            return Err(TreeError::Read {
                path: shown(as_path(&abs)),
                source: io::Error::other("unknown file type"),
            });
        };
        if meta.nlink() > 1 {
            match first_names.entry((meta.dev(), meta.ino())) {
                Slot::Occupied(first) => kind = Kind::Hardlink(first.into_mut()),
                Slot::Vacant(slot) => {
                    slot.insert(abs[name_start..].into());
                }
            }
        }
        visit(&Found {
            name: &abs[name_start..],
            path: as_path(&abs),
            meta: &meta,
            kind,
        })?;
    }
    Ok(sockets)
}

fn as_path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// The metadata of `root`, a directory or a symlink to one.
fn root_dir(root: &Path) -> Result<Metadata, TreeError> {
    let meta = fs::metadata(root).map_err(|source| TreeError::Read {
        path: root.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        Ok(meta)
    } else {
        Err(TreeError::NotADirectory {
            path: root.to_path_buf(),
        })
    }
}

/// A path of the walk as errors show it: `<root>/a/f` rather than the walker's `<root>/./a/f`.
fn shown(path: &Path) -> PathBuf {
    path.components().collect()
}

/// An error reading `path` during the walk: gone means it vanished.
fn read_error(path: &[u8], source: io::Error) -> TreeError {
    let path = shown(as_path(path));
    if source.kind() == io::ErrorKind::NotFound {
        TreeError::Vanished { path }
    } else {
        TreeError::Read { path, source }
    }
}

/// Visits the directory at `abs` (which ends in `/`), then lists it.
fn enter_dir<F>(
    abs: &[u8],
    name_start: usize,
    meta: &Metadata,
    visit: &mut F,
) -> Result<Level, TreeError>
where
    F: FnMut(&Found<'_>) -> Result<(), TreeError>,
{
    visit(&Found {
        name: &abs[name_start..],
        path: as_path(abs),
        meta,
        kind: Kind::Dir,
    })?;
    list_dir(abs)
}

/// The sorted names in the directory `abs` (which ends in `/`).
fn list_dir(abs: &[u8]) -> Result<Level, TreeError> {
    let mut names = Vec::new();
    let mut spans = Vec::new();
    for entry in fs::read_dir(as_path(abs)).map_err(|e| read_error(abs, e))? {
        let entry = entry.map_err(|e| read_error(abs, e))?;
        let start = names.len();
        names.extend_from_slice(entry.file_name().as_bytes());
        spans.push((start, names.len()));
    }
    spans.sort_unstable_by(|a, b| names[a.0..a.1].cmp(&names[b.0..b.1]));
    Ok(Level {
        names,
        spans,
        next: 0,
        base: abs.len(),
    })
}

/// Major and minor numbers from `st_rdev`, in Linux's encoding.
fn rdev_numbers(meta: &Metadata) -> (u32, u32) {
    let rdev = meta.rdev();
    (rustix::fs::major(rdev), rustix::fs::minor(rdev))
}

/// Opens a regular file the walk found, without following a symlink or blocking on a fifo that took its
/// place since.
fn open_file(path: &Path) -> Result<File, TreeError> {
    OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
        .open(path)
        .map_err(|e| read_error(path.as_os_str().as_bytes(), e))
}

/// Reads `file` to its end, handing `sink` each piece; it must hold exactly the `size` bytes its header says.
fn read_exactly(
    file: &mut File,
    path: &Path,
    size: u64,
    buf: &mut [u8],
    mut sink: impl FnMut(&[u8]) -> Result<(), TreeError>,
) -> Result<(), TreeError> {
    let mut total = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(TreeError::Read {
                    path: shown(path),
                    source,
                });
            }
        };
        if total + n as u64 > size {
            return Err(TreeError::Changed {
                path: shown(path),
                what: format!("it grew past the {size} bytes it had when the walk reached it"),
            });
        }
        sink(&buf[..n])?;
        total += n as u64;
    }
    if total < size {
        return Err(TreeError::Changed {
            path: shown(path),
            what: format!("it shrank from {size} to {total} bytes"),
        });
    }
    Ok(())
}

/// Writes one entry: a PAX header where needed, the ustar header, and a regular file's content.
fn pack_entry<W: Write>(
    out: &mut BufWriter<W>,
    found: &Found<'_>,
    buf: &mut [u8],
    pax: &mut Vec<u8>,
    stats: &mut TreeStats,
) -> Result<(), TreeError> {
    let write_error = |source| TreeError::Write {
        path: shown(found.path),
        source,
    };
    let meta = found.meta;
    let mut header = Header::new_ustar();
    // Mode with its file-type bits, uid, gid, size, type; the mtime is set again below so that one before
    // 1970 is written as 0 rather than as a huge unsigned number.
    header.set_metadata_in_mode(meta, HeaderMode::Complete);
    header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    pax.clear();
    let mut file = None;
    match found.kind {
        Kind::Dir | Kind::Fifo => {}
        Kind::File => {
            let f = open_file(found.path)?;
            if let Some(cap) = read_capability(&f, found.path)? {
                pax.extend_from_slice(&pax_record(
                    [PAX_XATTR, CAPABILITY.as_bytes()].concat().as_slice(),
                    &cap,
                ));
            }
            file = Some(f);
        }
        Kind::Symlink(target) | Kind::Hardlink(target) => {
            if matches!(found.kind, Kind::Hardlink(_)) {
                header.set_entry_type(EntryType::Link);
                header.set_size(0);
            }
            put_name(&mut header.as_old_mut().linkname, target, b"linkpath", pax);
        }
        Kind::Char { major, minor } | Kind::Block { major, minor } => {
            header.set_device_major(major).map_err(write_error)?;
            header.set_device_minor(minor).map_err(write_error)?;
        }
    }
    put_name(&mut header.as_old_mut().name, found.name, b"path", pax);
    header.set_cksum();

    if !pax.is_empty() {
        let mut x = Header::new_ustar();
        x.set_entry_type(EntryType::XHeader);
        x.set_mode(0o644);
        x.set_size(pax.len() as u64);
        x.set_cksum();
        out.write_all(x.as_bytes()).map_err(write_error)?;
        out.write_all(pax).map_err(write_error)?;
        out.write_all(padding(pax.len() as u64))
            .map_err(write_error)?;
    }
    out.write_all(header.as_bytes()).map_err(write_error)?;
    if let Some(mut file) = file {
        let size = meta.len();
        read_exactly(&mut file, found.path, size, buf, |chunk| {
            out.write_all(chunk).map_err(write_error)
        })?;
        out.write_all(padding(size)).map_err(write_error)?;
        stats.file_bytes += size;
    }
    stats.entries += 1;
    Ok(())
}

/// Puts `name` in a header's name or linkname `field`, as it is (any bytes); one too long for it goes whole
/// into the PAX record `key`, and its first 100 bytes into the field.
fn put_name(field: &mut [u8; NAME_FIELD], name: &[u8], key: &[u8], pax: &mut Vec<u8>) {
    if name.len() <= NAME_FIELD {
        field[..name.len()].copy_from_slice(name);
    } else {
        field.copy_from_slice(&name[..NAME_FIELD]);
        pax.extend_from_slice(&pax_record(key, name));
    }
}

/// The zeros that fill the last block of `len` bytes of data.
fn padding(len: u64) -> &'static [u8] {
    const ZEROS: [u8; BLOCK] = [0; BLOCK];
    let rest = (len % BLOCK as u64) as usize;
    if rest == 0 { &[] } else { &ZEROS[rest..] }
}

/// A file's `security.capability`, if it has one (the only xattr the engine's tar records).
fn read_capability(file: &File, path: &Path) -> Result<Option<Vec<u8>>, TreeError> {
    // A capability set is 12, 20 or 24 bytes.
    let mut value = [0u8; 64];
    match rustix::fs::fgetxattr(file, CAPABILITY, &mut value[..]) {
        Ok(n) => Ok(Some(value[..n].to_vec())),
        Err(Errno::NODATA | Errno::NOTSUP) => Ok(None),
        Err(e) => Err(TreeError::Read {
            path: shown(path),
            source: e.into(),
        }),
    }
}

/// Counts what passes through to the tar stream's destination.
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The parent of a relative path (`a/b` → `a`, `a` → the root, ``).
fn parent(rel: &[u8]) -> &[u8] {
    rel.iter()
        .rposition(|b| *b == b'/')
        .map_or(&[], |i| &rel[..i])
}

/// Whether relative path `a` is `b` or one of its ancestors (the root, ``, is everyone's).
fn within(a: &[u8], b: &[u8]) -> bool {
    a.is_empty() || (b.starts_with(a) && (b.len() == a.len() || b[a.len()] == b'/'))
}

/// The length of the longest leading run of whole components `a` and `b` share.
fn common_dirs(a: &[u8], b: &[u8]) -> usize {
    let mut common = 0;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x != y {
            return common;
        }
        if *x == b'/' {
            common = i;
        }
    }
    let shorter = a.len().min(b.len());
    if a.len() == b.len() || a.get(shorter) == Some(&b'/') || b.get(shorter) == Some(&b'/') {
        shorter
    } else {
        common
    }
}

#[cfg(test)]
mod tests {
    use super::unpack::set_mtime;
    use super::*;
    use crate::archive::digest::DigestOptions;
    use crate::archive::digest::digest_tar;
    use crate::archive::rebase_tar;
    use rustix::fs::{CWD, FileType, Mode, XattrFlags};
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::fs::{lchown, symlink};
    use std::os::unix::net::UnixListener;
    use std::process::Command;

    /// A version-2 capability set: `cap_net_bind_service=ep`.
    const CAP: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const DEVICE: (u32, u32) = (259, 70_000);
    const LONG_NAME: usize = 150;
    const NON_UTF8: &[u8] = b"bin-\xff\xfe";

    /// Fails, rather than passes, where the test cannot set owners, make devices or set capabilities.
    fn require_root() {
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("probe");
        File::create(&probe).unwrap();
        if let Err(e) = lchown(&probe, Some(1234), Some(1234)) {
            panic!(
                "this test needs root (it sets owners, makes devices and sets `security.capability`): \
                 {e}; run it as root, as CI does"
            );
        }
    }

    fn p(root: &Path, rel: impl AsRef<[u8]>) -> PathBuf {
        root.join(OsStr::from_bytes(rel.as_ref()))
    }

    fn write(path: &Path, data: &[u8], mode: u32, owner: (u32, u32)) {
        fs::write(path, data).unwrap();
        lchown(path, Some(owner.0), Some(owner.1)).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mkdir(path: &Path, mode: u32, owner: (u32, u32)) {
        fs::create_dir_all(path).unwrap();
        lchown(path, Some(owner.0), Some(owner.1)).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn node(path: &Path, kind: FileType, dev: (u32, u32)) {
        let dev = rustix::fs::makedev(dev.0, dev.1);
        rustix::fs::mknodat(CWD, path, kind, Mode::from_raw_mode(0o640), dev).unwrap();
    }

    /// Everything a volume can hold, in `<tempdir>/root`, with whole-second mtimes (two of them 0); the
    /// temporary directory and the root.
    fn torture_tree() -> (tempfile::TempDir, PathBuf) {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        mkdir(&root, 0o700, (999, 999));
        mkdir(&p(&root, "a"), 0o755, (0, 0));
        write(&p(&root, "a/f"), b"abc", 0o644, (1234, 1234));
        mkdir(&p(&root, "z"), 0o755, (0, 0));
        fs::hard_link(p(&root, "a/f"), p(&root, "hl")).unwrap();
        fs::hard_link(p(&root, "a/f"), p(&root, "z/hl2")).unwrap();
        write(&p(&root, "suid"), b"#!/bin/sh\n", 0o4755, (999, 999));
        write(&p(&root, "ro"), b"read only\n", 0o444, (0, 0));
        write(
            &p(&root, "private"),
            b"secret\n",
            0o600,
            (3_000_000, 3_000_000),
        );
        mkdir(&p(&root, "sgid"), 0o2775, (0, 1234));
        mkdir(&p(&root, "sticky"), 0o1777, (0, 0));
        mkdir(&p(&root, "empty"), 0o755, (0, 0));
        mkdir(&p(&root, "empty2/inner"), 0o750, (1234, 999));
        symlink("a/f", p(&root, "sl")).unwrap();
        lchown(p(&root, "sl"), Some(1234), Some(1234)).unwrap();
        symlink("nowhere/missing", p(&root, "dangling")).unwrap();
        symlink("/etc/passwd", p(&root, "abs")).unwrap();
        symlink("t".repeat(LONG_NAME), p(&root, "longlink")).unwrap();
        write(&p(&root, "n".repeat(LONG_NAME)), b"long", 0o644, (0, 0));
        fs::hard_link(
            p(&root, "n".repeat(LONG_NAME)),
            p(&root, format!("z/{}", "m".repeat(LONG_NAME))),
        )
        .unwrap();
        write(&p(&root, "ünïcødé-日本.txt"), b"utf-8", 0o644, (0, 0));
        write(&p(&root, NON_UTF8), b"bytes", 0o644, (0, 0));
        let deep: String = (1..=32).map(|i| format!("/l{i:02}")).collect();
        mkdir(&p(&root, format!("deep{deep}")), 0o755, (0, 0));
        write(
            &p(&root, format!("deep{deep}/leaf")),
            b"deep",
            0o644,
            (0, 0),
        );
        node(&p(&root, "fifo"), FileType::Fifo, (0, 0));
        node(&p(&root, "chr"), FileType::CharacterDevice, DEVICE);
        node(&p(&root, "blk"), FileType::BlockDevice, (7, 300));
        let sparse = File::create(p(&root, "sparse")).unwrap();
        sparse.set_len(8 << 20).unwrap();
        rustix::io::pwrite(&sparse, b"middle", 1 << 20).unwrap();
        rustix::io::pwrite(&sparse, b"later", 6 << 20).unwrap();
        drop(sparse);
        write(&p(&root, "cap"), b"\x7fELF", 0o755, (0, 0));
        rustix::fs::lsetxattr(p(&root, "cap"), CAPABILITY, &CAP, XattrFlags::empty()).unwrap();
        let _socket = UnixListener::bind(p(&root, "sock")).unwrap();

        // Children before their directories, so that no later change moves a directory's mtime.
        let walk = walkdir::WalkDir::new(&root).contents_first(true);
        for (i, entry) in walk.into_iter().enumerate() {
            let path = entry.unwrap().into_path();
            let name = path.file_name().unwrap().as_bytes();
            let mtime = if name == b"ro" || name == b"dangling" {
                0
            } else {
                1_600_000_000 + 7 * i as u64
            };
            set_mtime(&path, mtime).unwrap();
        }
        (dir, root)
    }

    fn pack(root: &Path) -> (Vec<u8>, TreeStats) {
        let mut tar = Vec::new();
        let stats = pack_tree(root, &mut tar).unwrap();
        (tar, stats)
    }

    const VERSIONS: [DigestVersion; 2] = [DigestVersion::V1, DigestVersion::V2];
    const CURRENT: DigestVersion = DigestVersion::V2;

    fn digest(tar: &[u8], version: DigestVersion) -> TreeSummary {
        digest_tar(tar, &DigestOptions::default().with_version(version)).unwrap()
    }

    fn gnu_tar(root: &Path, extra: &[&str]) -> Vec<u8> {
        let out = Command::new("tar")
            .args(["--sort=name", "--numeric-owner"])
            .args(extra)
            .arg("-C")
            .arg(root)
            .args(["-cf", "-", "."])
            .output()
            .expect("GNU tar runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// One tar entry as a test compares it.
    #[derive(Debug, PartialEq)]
    struct Listed {
        name: String,
        kind: char,
        /// Without the file-type bits, which GNU tar leaves out and Go writes.
        mode: u32,
        uid: u64,
        gid: u64,
        link: Option<String>,
        device: (u32, u32),
    }

    fn list(tar: &[u8]) -> Vec<Listed> {
        let mut archive = tar::Archive::new(tar);
        let mut out = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            let device =
                if h.entry_type().is_character_special() || h.entry_type().is_block_special() {
                    (
                        h.device_major().unwrap().unwrap(),
                        h.device_minor().unwrap().unwrap(),
                    )
                } else {
                    (0, 0)
                };
            out.push(Listed {
                name: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
                kind: char::from(h.entry_type().as_byte()),
                mode: h.mode().unwrap() & 0o7777,
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                link: entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned()),
                device,
            });
        }
        out
    }

    fn find<'a>(entries: &'a [Listed], name: &str) -> &'a Listed {
        entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no entry `{name}`"))
    }

    #[test]
    fn packed_tar_digests_like_the_tree_on_disk() {
        let (_dir, root) = torture_tree();
        let (tar, stats) = pack(&root);
        let mut from_disk = None;
        for version in VERSIONS {
            let from_tar = digest(&tar, version);
            let on_disk = digest_tree(&root, version).unwrap();
            assert_eq!(from_tar.digest, on_disk.digest);
            assert_eq!(on_disk.digest.version(), version);
            assert_eq!(from_tar.entries, on_disk.entries);
            assert_eq!(from_tar.file_bytes, on_disk.file_bytes);
            assert_eq!(from_tar.symlink_bytes, on_disk.symlink_bytes);
            assert!(on_disk.has_root);
            from_disk = Some(on_disk);
        }
        let from_disk = from_disk.unwrap();
        assert_eq!(stats.entries, from_disk.entries);
        assert_eq!(stats.file_bytes, from_disk.file_bytes);
        assert_eq!(stats.skipped_sockets, 1);
        assert_eq!(stats.tar_bytes, tar.len() as u64);
        // The sparse file is stored in full.
        assert!(stats.file_bytes > 8 << 20, "{stats:?}");
    }

    #[test]
    fn gnu_tar_of_the_tree_digests_the_same() {
        let (_dir, root) = torture_tree();
        let (plain, xattrs) = (gnu_tar(&root, &[]), gnu_tar(&root, &["--xattrs"]));
        for version in VERSIONS {
            let from_disk = digest_tree(&root, version).unwrap();
            assert_eq!(digest(&plain, version).digest, from_disk.digest);
            assert_eq!(digest(&xattrs, version).digest, from_disk.digest);
        }
    }

    #[test]
    fn packed_tar_has_the_engines_names_order_and_fields() {
        let (_dir, root) = torture_tree();
        let (tar, _) = pack(&root);
        let ours = list(&tar);
        // GNU tar's `--sort=name` walks in the engine's order and names entries the same way.
        let gnu = list(&gnu_tar(&root, &[]));
        let names = |l: &[Listed]| l.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&ours), names(&gnu));
        assert_eq!(ours, gnu);

        assert_eq!(ours[0].name, "./");
        let root_entry = &ours[0];
        assert_eq!(
            (root_entry.mode, root_entry.uid, root_entry.gid),
            (0o700, 999, 999)
        );
        assert!(ours.iter().all(|e| e.name.starts_with("./")));
        assert!(!ours.iter().any(|e| e.name == "./sock"));
        for name in ["./hl", "./z/hl2"] {
            let e = find(&ours, name);
            assert_eq!((e.kind, e.link.as_deref()), ('1', Some("./a/f")), "{name}");
        }
        assert_eq!(find(&ours, "./a/f").kind, '0');
        assert_eq!(find(&ours, "./suid").mode, 0o4755);
        assert_eq!(find(&ours, "./sticky/").mode, 0o1777);
        assert_eq!(find(&ours, "./sgid/").mode, 0o2775);
        assert_eq!(find(&ours, "./private").uid, 3_000_000);
        assert_eq!(find(&ours, "./chr").device, DEVICE);
        assert_eq!(find(&ours, "./fifo").kind, '6');
        let long = format!("./{}", "n".repeat(LONG_NAME));
        assert_eq!(find(&ours, &long).kind, '0');
        let long_link = find(&ours, &format!("./z/{}", "m".repeat(LONG_NAME)));
        assert_eq!(long_link.link.as_deref(), Some(long.as_str()));
        assert_eq!(find(&ours, "./longlink").link, Some("t".repeat(LONG_NAME)));
        let non_utf8 = String::from_utf8_lossy(&[b"./", NON_UTF8].concat()).into_owned();
        find(&ours, &non_utf8);

        // Like Go's, the mode field carries the file-type bits.
        let mut archive = tar::Archive::new(&tar[..]);
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let (mode, kind) = (entry.header().mode().unwrap(), entry.header().entry_type());
            let expected = match kind {
                EntryType::Directory => 0o040000,
                EntryType::Regular | EntryType::Link => 0o100000,
                EntryType::Symlink => 0o120000,
                EntryType::Fifo => 0o010000,
                EntryType::Char => 0o020000,
                EntryType::Block => 0o060000,
                other => panic!("unexpected entry type {other:?}"),
            };
            assert_eq!(mode & 0o170000, expected, "{:?}", entry.path_bytes());
        }
    }

    #[test]
    fn packed_tar_records_the_capability_as_a_pax_xattr_and_no_owner_names() {
        let (_dir, root) = torture_tree();
        let (tar, _) = pack(&root);
        let mut archive = tar::Archive::new(&tar[..]);
        let mut capability = None;
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(h.username_bytes(), Some(&b""[..]));
            assert_eq!(h.groupname_bytes(), Some(&b""[..]));
            if entry.path_bytes() == &b"./cap"[..] {
                for ext in entry.pax_extensions().unwrap().unwrap() {
                    let ext = ext.unwrap();
                    if ext.key_bytes() == b"SCHILY.xattr.security.capability" {
                        capability = Some(ext.value_bytes().to_vec());
                    }
                }
            }
        }
        assert_eq!(capability.as_deref(), Some(&CAP[..]));
    }

    /// Every path below `root` with its lstat, the socket left out.
    fn stats_below(root: &Path) -> Vec<(PathBuf, Metadata)> {
        walkdir::WalkDir::new(root)
            .sort_by_file_name()
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
                (rel, e.path().symlink_metadata().unwrap())
            })
            .filter(|(_, m)| !m.file_type().is_socket())
            .collect()
    }

    fn assert_same_tree(original: &Path, restored: &Path, has_capability: bool) {
        let before = stats_below(original);
        let after = stats_below(restored);
        assert_eq!(
            before.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            after.iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
        for ((path, b), (_, a)) in before.iter().zip(&after) {
            assert_eq!(
                (a.mtime(), a.mtime_nsec()),
                (b.mtime(), 0),
                "mtime of `{}`",
                path.display()
            );
            assert_eq!(a.mode(), b.mode(), "mode of `{}`", path.display());
            assert_eq!(
                (a.uid(), a.gid()),
                (b.uid(), b.gid()),
                "owner of `{}`",
                path.display()
            );
        }
        let root = symlink_meta(restored);
        assert_eq!(
            (root.mode() & 0o7777, root.uid(), root.gid()),
            (0o700, 999, 999)
        );
        let inode = |rel: &str| symlink_meta(&restored.join(rel)).ino();
        assert_eq!(inode("a/f"), inode("hl"));
        assert_eq!(inode("a/f"), inode("z/hl2"));
        assert!(symlink_meta(&restored.join("fifo")).file_type().is_fifo());
        let mut value = [0u8; 64];
        let capability = rustix::fs::lgetxattr(restored.join("cap"), CAPABILITY, &mut value[..]);
        if has_capability {
            assert_eq!(&value[..capability.unwrap()], &CAP[..]);
        } else {
            assert_eq!(capability, Err(Errno::NODATA));
        }
        for (path, meta) in &before {
            if meta.is_file() {
                let (a, b) = (fs::read(original.join(path)), fs::read(restored.join(path)));
                assert!(a.unwrap() == b.unwrap(), "content of `{}`", path.display());
            }
        }
        assert_eq!(
            digest_tree(restored, CURRENT).unwrap().digest,
            digest_tree(original, CURRENT).unwrap().digest
        );
    }

    /// A new empty directory `parent/name`.
    fn new_dir(parent: &Path, name: impl AsRef<Path>) -> PathBuf {
        let path = parent.join(name);
        fs::create_dir(&path).unwrap();
        path
    }

    fn symlink_meta(path: &Path) -> Metadata {
        fs::symlink_metadata(path).unwrap()
    }

    #[test]
    fn unpacking_a_packed_tree_gives_the_same_tree() {
        let (dir, root) = torture_tree();
        let (tar, packed) = pack(&root);
        let restored = new_dir(dir.path(), "restored");
        let stats = unpack_tree(&tar[..], &restored, None).unwrap();
        assert_same_tree(&root, &restored, true);
        assert_eq!(stats.entries, packed.entries);
        assert_eq!(stats.file_bytes, packed.file_bytes);
        assert_eq!(stats.tar_bytes, tar.len() as u64);
    }

    #[test]
    fn gnu_tar_unpacks_the_packed_tar_to_the_same_tree() {
        let (dir, root) = torture_tree();
        let (tar, _) = pack(&root);
        let restored = new_dir(dir.path(), "restored");
        let mut gnu = Command::new("tar")
            .args([
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                "-xpf",
                "-",
                "-C",
            ])
            .arg(&restored)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("GNU tar runs");
        gnu.stdin.take().unwrap().write_all(&tar).unwrap();
        assert!(gnu.wait().unwrap().success());
        assert_same_tree(&root, &restored, true);
    }

    #[test]
    fn gnu_tars_unpack_to_the_same_tree() {
        let (dir, root) = torture_tree();
        // With `--xattrs`, GNU tar records `security.capability` as the engine does (and switches to the
        // POSIX format); the record padding after the end-of-archive blocks is read too.
        let mut tar = gnu_tar(&root, &["--xattrs"]);
        tar.extend_from_slice(&[0; 4096]);
        let restored = new_dir(dir.path(), "restored");
        let stats = unpack_tree(&tar[..], &restored, None).unwrap();
        assert_same_tree(&root, &restored, true);
        assert_eq!(stats.tar_bytes, tar.len() as u64);

        // `--sparse` in GNU's own format stores the holes as a GNU sparse entry; they stay holes.
        let tar = gnu_tar(&root, &["--sparse"]);
        let restored = new_dir(dir.path(), "restored-sparse");
        unpack_tree(&tar[..], &restored, None).unwrap();
        assert_same_tree(&root, &restored, false);
        let blocks = symlink_meta(&restored.join("sparse")).blocks();
        assert!(blocks < 64, "the sparse file takes {blocks} blocks");
    }

    #[test]
    fn a_pax_sparse_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = new_dir(dir.path(), "root");
        let sparse = File::create(root.join("sparse")).unwrap();
        sparse.set_len(8 << 20).unwrap();
        rustix::io::pwrite(&sparse, b"middle", 1 << 20).unwrap();
        let tar = gnu_tar(&root, &["--sparse", "--format=posix"]);
        let restored = new_dir(dir.path(), "restored");
        let err = unpack_tree(&tar[..], &restored, None).unwrap_err();
        assert!(
            matches!(&err, TreeError::Unsupported { what, .. } if what.contains("sparse")),
            "{err:?}"
        );
    }

    #[test]
    fn a_tar_under_a_prefix_unpacks_with_strip_prefix() {
        let (dir, root) = torture_tree();
        let (tar, _) = pack(&root);
        // The engine's tar of `/data` (rather than `/data/.`): every entry under `data/`.
        let prefixed = rebase_tar(&tar[..], Vec::new(), "data").unwrap();
        let restored = new_dir(dir.path(), "restored");
        unpack_tree(&prefixed[..], &restored, Some("data")).unwrap();
        assert_same_tree(&root, &restored, true);
    }

    /// `(name, type, link target, data)`, written as they are, unsafe names included.
    type RawEntry<'a> = (&'a [u8], EntryType, &'a [u8], &'a [u8]);

    fn raw_tar(entries: &[RawEntry<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, link, data) in entries {
            let mut h = Header::new_ustar();
            h.set_entry_type(*kind);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            h.set_mtime(1_700_000_000);
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(data.len() as u64);
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            out.extend_from_slice(padding(data.len() as u64));
        }
        out.extend_from_slice(&[0; 2 * BLOCK]);
        out
    }

    #[test]
    fn entries_that_would_escape_the_root_are_refused() {
        require_root();
        let file = EntryType::Regular;
        let dir_ = EntryType::Directory;
        let sym = EntryType::Symlink;
        let hard = EntryType::Link;
        let top = tempfile::tempdir().unwrap();
        let outside = top.path().join("outside");
        let abs_name = format!("{}/abs", outside.display());
        let abs_target = outside.display().to_string();
        let cases: Vec<(&str, Vec<RawEntry<'_>>)> = vec![
            ("parent component", vec![(b"../outside/x", file, b"", b"x")]),
            (
                "inner parent component",
                vec![(b"./a/../../outside/x", file, b"", b"x")],
            ),
            (
                "absolute path",
                vec![(abs_name.as_bytes(), file, b"", b"x")],
            ),
            (
                "write through an absolute symlink",
                vec![
                    (b"./sl", sym, abs_target.as_bytes(), b""),
                    (b"./sl/x", file, b"", b"x"),
                ],
            ),
            (
                "write through a relative symlink",
                vec![
                    (b"./sl", sym, b"../outside", b""),
                    (b"./sl/x", file, b"", b"x"),
                ],
            ),
            (
                "directory through a symlink",
                vec![
                    (b"./sl", sym, b"../outside", b""),
                    (b"./sl/d/", dir_, b"", b""),
                ],
            ),
            (
                "hardlink out of the root",
                vec![(b"./h", hard, b"../outside/secret", b"")],
            ),
            (
                "hardlink to an absolute path",
                vec![(b"./h", hard, abs_target.as_bytes(), b"")],
            ),
            (
                "hardlink through a symlink",
                vec![
                    (b"./sl", sym, b"../outside", b""),
                    (b"./h", hard, b"./sl/secret", b""),
                ],
            ),
            ("hardlink to the root", vec![(b"./h", hard, b"./", b"")]),
        ];
        for (what, entries) in cases {
            let root = top.path().join("root");
            fs::create_dir(&root).unwrap();
            fs::create_dir(&outside).unwrap();
            fs::write(outside.join("secret"), b"secret").unwrap();
            let err = unpack_tree(&raw_tar(&entries)[..], &root, None).unwrap_err();
            assert!(
                matches!(err, TreeError::UnsafeEntry { .. }),
                "{what}: {err:?}"
            );
            let left: Vec<_> = fs::read_dir(&outside)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(left, ["secret"], "{what}");
            assert_eq!(symlink_meta(&outside.join("secret")).nlink(), 1, "{what}");
            let mut beside: Vec<_> = fs::read_dir(top.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            beside.sort();
            assert_eq!(beside, ["outside", "root"], "{what}");
            fs::remove_dir_all(&root).unwrap();
            fs::remove_dir_all(&outside).unwrap();
        }
    }

    #[test]
    fn a_symlink_already_in_the_root_is_replaced_not_written_through() {
        require_root();
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("root");
        fs::create_dir(&root).unwrap();
        fs::write(top.path().join("secret"), b"secret").unwrap();
        symlink("../secret", root.join("f")).unwrap();
        let tar = raw_tar(&[(b"./f", EntryType::Regular, b"", b"new")]);
        unpack_tree(&tar[..], &root, None).unwrap();
        assert_eq!(fs::read(top.path().join("secret")).unwrap(), b"secret");
        assert!(symlink_meta(&root.join("f")).is_file());
        assert_eq!(fs::read(root.join("f")).unwrap(), b"new");
    }

    #[test]
    fn a_tar_cut_short_is_refused() {
        let (dir, root) = torture_tree();
        let (tar, _) = pack(&root);
        for cut in [tar.len() - 2 * BLOCK, tar.len() / 2] {
            let restored = new_dir(dir.path(), format!("restored-{cut}"));
            let err = unpack_tree(&tar[..cut], &restored, None).unwrap_err();
            assert!(
                matches!(
                    err,
                    TreeError::NoEndMarker { .. } | TreeError::Unpack { .. }
                ),
                "cut at {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn an_unknown_entry_type_is_refused() {
        require_root();
        let top = tempfile::tempdir().unwrap();
        let tar = raw_tar(&[(b"./v", EntryType::new(b'V'), b"", b"")]);
        let err = unpack_tree(&tar[..], top.path(), None).unwrap_err();
        assert!(
            matches!(&err, TreeError::Unsupported { what, .. } if what.contains('V')),
            "{err:?}"
        );
    }

    /// A tar destination that does something to the tree the first time the packer writes to it: by then
    /// the root's listing has been read and the first 1 MiB of `big` too.
    struct OnFirstWrite<F: FnMut()> {
        action: Option<F>,
    }

    impl<F: FnMut()> Write for OnFirstWrite<F> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(mut action) = self.action.take() {
                action();
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn tree_with_a_big_file() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("big"), vec![7u8; 4 << 20]).unwrap();
        fs::write(dir.path().join("small"), b"small").unwrap();
        dir
    }

    #[test]
    fn a_file_that_vanishes_during_the_walk_is_an_error_naming_it() {
        let dir = tree_with_a_big_file();
        let small = dir.path().join("small");
        let out = OnFirstWrite {
            action: Some(|| fs::remove_file(&small).unwrap()),
        };
        let err = pack_tree(dir.path(), out).unwrap_err();
        assert!(
            matches!(&err, TreeError::Vanished { path } if path.ends_with("small")),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "`{}` vanished while the tree was being read",
                small.display()
            )
        );
    }

    #[test]
    fn a_file_that_changes_size_while_read_is_an_error_naming_it() {
        for new_len in [0, 8 << 20] {
            let dir = tree_with_a_big_file();
            let big = dir.path().join("big");
            let out = OnFirstWrite {
                action: Some(|| {
                    let f = OpenOptions::new().write(true).open(&big).unwrap();
                    f.set_len(new_len).unwrap();
                }),
            };
            let err = pack_tree(dir.path(), out).unwrap_err();
            assert!(
                matches!(&err, TreeError::Changed { path, .. } if path.ends_with("big")),
                "{new_len}: {err:?}"
            );
        }
    }

    #[test]
    fn a_file_gone_before_it_is_hashed_fails_the_digest_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("./gone");
        let job = |path: &Path| FileJob {
            path: path.as_os_str().as_bytes().to_vec(),
            rel_start: 0,
            size: 1,
            mode: 0o644,
            uid: 0,
            gid: 0,
        };
        let (jobs, queue) = mpsc::sync_channel(4);
        let kept = dir.path().join("kept");
        fs::write(&kept, b"k").unwrap();
        jobs.send(vec![job(&gone), job(&kept)]).unwrap();
        jobs.send(vec![job(&kept)]).unwrap();
        drop(jobs);
        let failure = Failure::default();
        let part = hash_files(&Mutex::new(queue), &failure, CURRENT);
        // Nothing after the failure is hashed, and the queue is emptied.
        assert_eq!(part.entries(), 0);
        let err = failure.take().unwrap();
        assert!(
            matches!(&err, TreeError::Vanished { path } if path.ends_with("gone")),
            "{err:?}"
        );
    }

    #[test]
    fn the_root_must_be_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        assert!(matches!(
            pack_tree(&file, io::sink()),
            Err(TreeError::NotADirectory { .. })
        ));
        assert!(matches!(
            digest_tree(&file, CURRENT),
            Err(TreeError::NotADirectory { .. })
        ));
        let tar = raw_tar(&[]);
        assert!(matches!(
            unpack_tree(&tar[..], &file, None),
            Err(TreeError::NotADirectory { .. })
        ));
    }

    #[test]
    fn path_helpers_find_parents_and_shared_directories() {
        assert_eq!(parent(b"a/b/c"), b"a/b");
        assert_eq!(parent(b"a"), b"");
        assert!(within(b"", b"a"));
        assert!(within(b"a", b"a/b"));
        assert!(within(b"a/b", b"a/b"));
        assert!(!within(b"a/b", b"a/bc"));
        assert!(!within(b"a/b/c", b"a/b"));
        assert_eq!(common_dirs(b"x/y/z", b"x/y/w"), 3);
        assert_eq!(common_dirs(b"x/yy", b"x/y"), 1);
        assert_eq!(common_dirs(b"x/y", b"x/y/z"), 3);
        assert_eq!(common_dirs(b"x", b""), 0);
        assert_eq!(common_dirs(b"ab", b"ab"), 2);
        assert_eq!(common_dirs(b"ab", b"ac"), 0);
    }

    /// The benchmark volume's shape (DESIGN.md, "Performance targets"): 40,000 files of 1–3 KiB of text in
    /// 200 directories and 8 files of 64 MiB, each half pseudo-random bytes and half text.
    fn bench_tree(root: &Path) {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let words = [
            &b"volume "[..],
            b"backup ",
            b"restore ",
            b"compose ",
            b"digest ",
            b"tar ",
        ];
        let text = |len: usize, next: &mut dyn FnMut() -> u64| {
            let mut out = Vec::with_capacity(len + 16);
            while out.len() < len {
                out.extend_from_slice(words[(next() % words.len() as u64) as usize]);
            }
            out.truncate(len);
            out
        };
        for d in 0..200 {
            let dir = root.join(format!("d{d:03}"));
            fs::create_dir_all(&dir).unwrap();
            for f in 0..200 {
                let len = 1024 + (next() % 2048) as usize;
                fs::write(dir.join(format!("f{f:03}.txt")), text(len, &mut next)).unwrap();
            }
        }
        let half = 32 << 20;
        for i in 0..8 {
            let mut data: Vec<u8> = (0..half / 8).flat_map(|_| next().to_le_bytes()).collect();
            data.extend(text(half, &mut next));
            fs::write(root.join(format!("big{i}.bin")), data).unwrap();
        }
    }

    /// Best and median of `runs` timings of `f`, each after an untimed `setup`.
    fn time_after(runs: usize, mut setup: impl FnMut(), mut f: impl FnMut()) -> (f64, f64) {
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                setup();
                let start = std::time::Instant::now();
                f();
                start.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        (times[0], times[runs / 2])
    }

    fn time(runs: usize, f: impl FnMut()) -> (f64, f64) {
        time_after(runs, || {}, f)
    }

    fn sh(script: &str, dir: &Path) {
        let status = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(status.success(), "{script}");
    }

    /// `cargo test --release --lib archive::tree -- --ignored --nocapture`; `PERSIST_BENCH_DIR` picks where
    /// the ≈650 MB tree is made (a temporary directory otherwise). Warm page cache: every run reads what
    /// the one before read.
    #[test]
    #[ignore = "a measurement, not a test: run it in release with --ignored --nocapture"]
    fn measure_pack_digest_and_unpack_against_gnu_tar() {
        let base =
            std::env::var_os("PERSIST_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let dir = tempfile::tempdir_in(base).unwrap();
        let root = dir.path().join("tree");
        bench_tree(&root);
        let runs = 5;
        let report = |what: &str, (best, median): (f64, f64)| {
            println!("{what:<58} best {best:6.3} s  median {median:6.3} s");
        };
        report(
            "pack_tree → /dev/null",
            time(runs, || {
                pack_tree(&root, File::create("/dev/null").unwrap()).unwrap();
            }),
        );
        report(
            "pack_tree → pipe → cat > /dev/null",
            time(runs, || {
                let mut cat = Command::new("cat")
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                pack_tree(&root, cat.stdin.take().unwrap()).unwrap();
                assert!(cat.wait().unwrap().success());
            }),
        );
        report(
            "tar --sort=name -cf - . > /dev/null (tar skips reading)",
            time(runs, || sh("tar --sort=name -cf - . > /dev/null", &root)),
        );
        report(
            "tar --sort=name -cf - . | cat > /dev/null",
            time(runs, || {
                sh("tar --sort=name -cf - . | cat > /dev/null", &root)
            }),
        );
        let mut digest = None;
        report(
            "digest_tree (tree-v1)",
            time(runs, || {
                digest_tree(&root, DigestVersion::V1).unwrap();
            }),
        );
        report(
            "digest_tree (tree-v2)",
            time(runs, || {
                digest = Some(digest_tree(&root, CURRENT).unwrap().digest);
            }),
        );

        let tar_file = dir.path().join("tree.tar");
        let stats = pack_tree(&root, File::create(&tar_file).unwrap()).unwrap();
        let from_tar =
            digest_tar(File::open(&tar_file).unwrap(), &DigestOptions::default()).unwrap();
        assert_eq!(Some(from_tar.digest), digest);
        for version in VERSIONS {
            let options = DigestOptions::default().with_version(version);
            report(
                &format!("digest_tar of pack_tree's tar (from a file, {version})"),
                time(runs, || {
                    digest_tar(File::open(&tar_file).unwrap(), &options).unwrap();
                }),
            );
        }
        // Every run unpacks into a directory of its own, with everything before it written back: removing
        // the last run's files first (this file system is mounted with `discard`) made the next run pay for
        // the removal, several seconds.
        let run = std::cell::Cell::new(0);
        let out = |n: usize| dir.path().join(format!("out-{n}"));
        let fresh = || {
            run.set(run.get() + 1);
            fs::create_dir(out(run.get())).unwrap();
            sh("sync", dir.path());
        };
        let unpack = || {
            unpack_tree(File::open(&tar_file).unwrap(), &out(run.get()), None).unwrap();
        };
        let gnu = || sh(&format!("tar -xf {}", tar_file.display()), &out(run.get()));
        // Taking turns, so that a drift in the machine's state over the runs hits both alike.
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            ours.push(time_after(1, fresh, unpack).0);
            assert_eq!(
                Some(digest_tree(&out(run.get()), CURRENT).unwrap().digest),
                digest
            );
            theirs.push(time_after(1, fresh, gnu).0);
        }
        let best_and_median = |mut times: Vec<f64>| {
            times.sort_by(f64::total_cmp);
            (times[0], times[runs / 2])
        };
        report("unpack_tree from a file", best_and_median(ours));
        report(
            "tar -xf (as root: owners and modes kept)",
            best_and_median(theirs),
        );
        println!(
            "tree: {} entries, {} MB of file content, tar {} MB",
            stats.entries,
            stats.file_bytes / 1_000_000,
            stats.tar_bytes / 1_000_000
        );
    }
}
