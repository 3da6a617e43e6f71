//! Unpacking a backup's tar into a directory on disk (the fast path's restore): where each entry goes, what
//! it replaces, and owners, modes, times, xattrs and sparse files as the module above describes.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};

use crate::archive::digest::{
    DigestOptions, device_numbers, is_dir_entry, normalize_link_target, normalize_path,
};

use super::{
    PAX_XATTR, STREAM_BUFFER, TreeError, TreeStats, common_dirs, parent, root_dir, within,
};

/// Unpacks the tar stream `src` into `root`, an existing directory (normally empty), keeping numeric owners,
/// modes (setuid, setgid and sticky included), mtimes, hardlinks, symlinks, fifos, devices and PAX
/// `SCHILY.xattr.*` records; the root entry applies to `root` itself. `strip_prefix` means what it means
/// in [`DigestOptions::new`]. An entry that could write outside `root` is refused before anything is written
/// for it, and so is a stream cut short. The stream is read to its end.
pub fn unpack_tree<R: Read>(
    src: R,
    root: &Path,
    strip_prefix: Option<&str>,
) -> Result<TreeStats, TreeError> {
    let options = DigestOptions::new(strip_prefix).map_err(TreeError::InvalidPrefix)?;
    root_dir(root)?;
    let canonical = fs::canonicalize(root).map_err(|source| TreeError::Read {
        path: root.to_path_buf(),
        source,
    })?;
    let mut unpacker = Unpacker {
        root: canonical,
        prefix: options.strip_prefix(),
        checked: Vec::new(),
        dir_names: Vec::new(),
        dir_times: Vec::new(),
        stats: TreeStats::default(),
    };
    let mut archive = tar::Archive::new(Source {
        inner: BufReader::with_capacity(STREAM_BUFFER, src),
        bytes: 0,
        eof: false,
    });
    archive.set_preserve_ownerships(true);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    {
        let read_error = |entries, source| TreeError::ReadTar { entries, source };
        let entries = archive.entries().map_err(|e| read_error(0, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| read_error(unpacker.stats.entries, e))?;
            unpacker.unpack(&mut entry)?;
        }
    }
    let mut source = archive.into_inner();
    let entries = unpacker.stats.entries;
    if source.eof {
        return Err(TreeError::NoEndMarker { entries });
    }
    // The second end-of-archive block and any record padding: read so that a writer on a pipe sees it all
    // taken.
    io::copy(&mut source, &mut io::sink())
        .map_err(|source| TreeError::ReadTar { entries, source })?;
    unpacker.set_dir_times()?;
    unpacker.stats.tar_bytes = source.bytes;
    Ok(unpacker.stats)
}

/// The tar stream being unpacked, counted, remembering whether it ended.
pub(super) struct Source<R> {
    inner: R,
    bytes: u64,
    eof: bool,
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

pub(super) struct Unpacker<'p> {
    /// The destination, canonical.
    root: PathBuf,
    prefix: Option<&'p str>,
    /// A directory below the root (normalized relative path) known to be, with all its ancestors, a real
    /// directory rather than a symlink; usually the parent of the last entry. Entries never replace a
    /// directory (removing one to put a file in its place fails), so once checked it stays so.
    checked: Vec<u8>,
    /// Directories whose mtime is set at the end: relative paths in one buffer, `(start, end, mtime)` each.
    dir_names: Vec<u8>,
    dir_times: Vec<(usize, usize, u64)>,
    stats: TreeStats,
}

impl Unpacker<'_> {
    fn unpack<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), TreeError> {
        let entry_type = entry.header().entry_type();
        if entry_type.is_pax_global_extensions() {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        if is_pax_sparse(entry).map_err(|source| TreeError::ReadTar {
            entries: self.stats.entries,
            source,
        })? {
            // Its data starts with a sparse map the crate does not read: unpacked, it would be a file
            // `GNUSparseFile.<pid>/<name>` holding the map and the data without the holes.
            return Err(TreeError::Unsupported {
                entry: shown,
                what: "a PAX sparse file (GNU tar's `--sparse` in POSIX format)".into(),
            });
        }
        let rel = normalize_path(&raw, self.prefix).map_err(|issue| TreeError::UnsafeEntry {
            entry: shown.clone(),
            why: issue.describe().to_string(),
        })?;
        let header = entry.header();
        let fields = (|| Ok::<_, io::Error>((header.mode()?, header.uid()?, header.gid()?)))();
        let mtime = header.mtime();
        let is_dir = is_dir_entry(entry_type, &raw);
        let dst = if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(OsStr::from_bytes(&rel))
        };
        let failed = |source| TreeError::Unpack {
            entry: shown.clone(),
            path: dst.clone(),
            source,
        };
        let (mode, uid, gid) = fields.map_err(failed)?;
        let mtime = mtime.map_err(failed)?;
        self.stats.entries += 1;

        if rel.is_empty() {
            if !is_dir {
                return Err(TreeError::UnsafeEntry {
                    entry: shown,
                    why: "names the root directory but is not a directory".into(),
                });
            }
            set_owner_and_mode(&dst, uid, gid, mode).map_err(failed)?;
            set_xattrs(entry, &dst).map_err(failed)?;
            self.defer_dir_time(&rel, mtime);
            return Ok(());
        }

        self.check_dirs(parent(&rel), &shown, true)?;
        if is_dir {
            make_dir(&dst).map_err(failed)?;
            set_owner_and_mode(&dst, uid, gid, mode).map_err(failed)?;
            set_xattrs(entry, &dst).map_err(failed)?;
            self.defer_dir_time(&rel, mtime);
            self.checked.clear();
            self.checked.extend_from_slice(&rel);
            return Ok(());
        }
        // Nothing below makes a directory, and putting something else in a directory's place fails; the
        // check is only a guard against that ever changing.
        if within(&rel, &self.checked) {
            self.checked.truncate(parent(&rel).len());
        }
        if entry_type.is_file() || entry_type.is_gnu_sparse() || entry_type.as_byte() == b'7' {
            let size = if entry_type.is_gnu_sparse() {
                entry.header().size().map_err(failed)?
            } else {
                entry.size()
            };
            if let tar::Unpacked::File(file) = entry.unpack(&dst).map_err(failed)?
                && mtime == 0
            {
                rustix::fs::futimens(&file, &times(0)).map_err(|e| failed(e.into()))?;
            }
            self.stats.file_bytes += size;
        } else if entry_type.is_symlink() {
            entry.unpack(&dst).map_err(failed)?;
            set_xattrs(entry, &dst).map_err(failed)?;
            if mtime == 0 {
                set_mtime(&dst, 0).map_err(failed)?;
            }
        } else if entry_type.is_hard_link() {
            let target = normalize_link_target(entry.link_name_bytes().as_deref(), self.prefix)
                .map_err(|why| TreeError::UnsafeEntry {
                    entry: shown.clone(),
                    why: why.to_string(),
                })?;
            self.check_dirs(parent(&target), &shown, false)?;
            let source = self.root.join(OsStr::from_bytes(&target));
            replacing(&dst, || fs::hard_link(&source, &dst)).map_err(failed)?;
        } else if entry_type.is_fifo()
            || entry_type.is_character_special()
            || entry_type.is_block_special()
        {
            let (major, minor) = if entry_type.is_fifo() {
                (0, 0)
            } else {
                device_numbers(entry.header()).map_err(failed)?
            };
            let (file_type, dev) = if entry_type.is_fifo() {
                (FileType::Fifo, 0)
            } else if entry_type.is_character_special() {
                (FileType::CharacterDevice, rustix::fs::makedev(major, minor))
            } else {
                (FileType::BlockDevice, rustix::fs::makedev(major, minor))
            };
            replacing(&dst, || {
                rustix::fs::mknodat(CWD, &dst, file_type, Mode::from_raw_mode(0o600), dev)
                    .map_err(io::Error::from)
            })
            .map_err(failed)?;
            set_owner_and_mode(&dst, uid, gid, mode).map_err(failed)?;
            set_xattrs(entry, &dst).map_err(failed)?;
            set_mtime(&dst, mtime).map_err(failed)?;
        } else {
            return Err(TreeError::Unsupported {
                entry: shown,
                what: format!("of type `{}`", entry_type.as_byte().escape_ascii()),
            });
        }
        Ok(())
    }

    /// Makes sure every component of `dir` (relative to the root) is a real directory, not a symlink: an
    /// entry below a symlink could land anywhere. Missing ones are made when `create` is set (a tar may
    /// leave out a directory's own entry), as the engine and GNU tar make them.
    fn check_dirs(&mut self, dir: &[u8], entry: &str, create: bool) -> Result<(), TreeError> {
        if within(dir, &self.checked) {
            return Ok(());
        }
        let mut known = common_dirs(dir, &self.checked);
        while known < dir.len() {
            let start = if known == 0 { 0 } else { known + 1 };
            let end = dir[start..]
                .iter()
                .position(|b| *b == b'/')
                .map_or(dir.len(), |i| start + i);
            let path = self.root.join(OsStr::from_bytes(&dir[..end]));
            let failed = |source| TreeError::Unpack {
                entry: entry.to_string(),
                path: path.clone(),
                source,
            };
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(TreeError::UnsafeEntry {
                        entry: entry.to_string(),
                        why: format!(
                            "lies below the symlink `{}`",
                            String::from_utf8_lossy(&dir[..end])
                        ),
                    });
                }
                Ok(_) => return Err(failed(io::ErrorKind::NotADirectory.into())),
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::create_dir(&path).map_err(failed)?;
                }
                Err(e) => return Err(failed(e)),
            }
            known = end;
        }
        self.checked.clear();
        self.checked.extend_from_slice(dir);
        Ok(())
    }

    fn defer_dir_time(&mut self, rel: &[u8], mtime: u64) {
        let start = self.dir_names.len();
        self.dir_names.extend_from_slice(rel);
        self.dir_times.push((start, self.dir_names.len(), mtime));
    }

    /// Sets directories' mtimes, now that nothing more is made in them.
    fn set_dir_times(&self) -> Result<(), TreeError> {
        for &(start, end, mtime) in &self.dir_times {
            let rel = &self.dir_names[start..end];
            let path = if rel.is_empty() {
                self.root.clone()
            } else {
                self.root.join(OsStr::from_bytes(rel))
            };
            set_mtime(&path, mtime).map_err(|source| TreeError::Unpack {
                entry: String::from_utf8_lossy(rel).into_owned(),
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// Makes a directory, or finds one (not a symlink to one) already there.
pub(super) fn make_dir(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if fs::symlink_metadata(path)?.is_dir() {
                Ok(())
            } else {
                Err(e)
            }
        }
        other => other,
    }
}

/// Runs `make`, which creates `path`; where something is already there, removes it (unless it is a
/// directory) and runs `make` once more.
pub(super) fn replacing(path: &Path, make: impl Fn() -> io::Result<()>) -> io::Result<()> {
    match make() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(path)?;
            make()
        }
        other => other,
    }
}

pub(super) fn set_owner_and_mode(path: &Path, uid: u64, gid: u64, mode: u32) -> io::Result<()> {
    let id =
        |v: u64| u32::try_from(v).map_err(|_| io::Error::other(format!("id {v} is too large")));
    // Owner first: changing it clears setuid and setgid.
    std::os::unix::fs::lchown(path, Some(id(uid)?), Some(id(gid)?))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
}

pub(super) fn times(mtime: u64) -> Timestamps {
    let at = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: at,
        last_modification: at,
    }
}

/// Sets atime and mtime of `path` itself (a symlink is not followed), as the crate sets them on files.
pub(super) fn set_mtime(path: &Path, mtime: u64) -> io::Result<()> {
    rustix::fs::utimensat(CWD, path, &times(mtime), AtFlags::SYMLINK_NOFOLLOW).map_err(Into::into)
}

/// Whether the entry is a sparse file in one of GNU tar's PAX formats (0.1 or 1.0).
pub(super) fn is_pax_sparse<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<bool> {
    let Some(extensions) = entry.pax_extensions()? else {
        return Ok(false);
    };
    for extension in extensions {
        if extension?.key_bytes().starts_with(b"GNU.sparse.") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Applies an entry's PAX `SCHILY.xattr.*` records to `path` itself.
pub(super) fn set_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>, path: &Path) -> io::Result<()> {
    let Some(extensions) = entry.pax_extensions()? else {
        return Ok(());
    };
    for extension in extensions {
        let extension = extension?;
        if let Some(name) = extension.key_bytes().strip_prefix(PAX_XATTR) {
            rustix::fs::lsetxattr(
                path,
                OsStr::from_bytes(name),
                extension.value_bytes(),
                XattrFlags::empty(),
            )?;
        }
    }
    Ok(())
}
