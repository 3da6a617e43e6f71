//! The root filesystem of the helper image: nothing to run, only `/etc/passwd` and `/etc/group` naming
//! every uid and gid from 0 to 65535, and the mount point `/data`.
//!
//! Why the names: the engine builds an archive by looking up the owner name of every file in the
//! container's `/etc/passwd` and `/etc/group`, and does not remember a failed lookup. Measured on a
//! 40,000-file volume, reading it through a helper without these files took ≈2× as long as through a
//! container with them (and ≈3× for a volume owned by uid 999 with names missing); with every id named,
//! each distinct id costs one lookup.

use std::io::Write as _;

/// The largest uid and gid named.
const MAX_ID: u32 = 65_535;

/// The helper image's root filesystem as an uncompressed tar.
pub fn helper_rootfs() -> std::io::Result<Vec<u8>> {
    let mut passwd = Vec::with_capacity(2_200_000);
    let mut group = Vec::with_capacity(1_100_000);
    for id in 0..=MAX_ID {
        writeln!(passwd, "u{id}:x:{id}:{id}::/:/nonexistent")?;
        writeln!(group, "g{id}:x:{id}:")?;
    }
    let mut builder = tar::Builder::new(Vec::new());
    for dir in ["etc", "data"] {
        append(&mut builder, dir, 0o755, None)?;
    }
    for (name, data) in [("etc/passwd", &passwd), ("etc/group", &group)] {
        append(&mut builder, name, 0o644, Some(data))?;
    }
    builder.into_inner()
}

/// Adds a root-owned directory (`data: None`) or file to an image's root filesystem.
fn append(
    builder: &mut tar::Builder<Vec<u8>>,
    name: &str,
    mode: u32,
    data: Option<&[u8]>,
) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    if data.is_none() {
        h.set_entry_type(tar::EntryType::Directory);
    }
    h.set_mode(mode);
    h.set_size(data.map_or(0, |d| d.len() as u64));
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    builder.append_data(&mut h, name, data.unwrap_or_default())
}

/// The root filesystem of a fast-path helper image: this program's own (statically linked) executable as
/// `/docker-persist`, and the mount points `/data` and `/io`.
pub fn fast_helper_rootfs(executable: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::with_capacity(executable.len() + 4096));
    for dir in ["data", "io"] {
        append(&mut builder, dir, 0o755, None)?;
    }
    append(&mut builder, "docker-persist", 0o755, Some(executable))?;
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_names_every_id_and_has_the_mount_point() {
        let tar = helper_rootfs().unwrap();
        let mut a = tar::Archive::new(tar.as_slice());
        let mut names = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            if path == "etc/passwd" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut e, &mut text).unwrap();
                assert!(text.starts_with("u0:x:0:0::/:/nonexistent\n"));
                assert!(text.contains("\nu999:x:999:999::/:/nonexistent\n"));
                assert_eq!(text.lines().count(), 65_536);
            }
            names.push(path);
        }
        assert_eq!(names, ["etc", "data", "etc/passwd", "etc/group"]);
    }

    #[test]
    fn fast_rootfs_holds_the_executable_and_the_mount_points() {
        let tar = fast_helper_rootfs(b"\x7fELF not really").unwrap();
        let mut a = tar::Archive::new(tar.as_slice());
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let mode = e.header().mode().unwrap();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            seen.push((path, mode, data));
        }
        assert_eq!(
            seen,
            [
                ("data".to_string(), 0o755, Vec::new()),
                ("io".to_string(), 0o755, Vec::new()),
                (
                    "docker-persist".to_string(),
                    0o755,
                    b"\x7fELF not really".to_vec()
                ),
            ]
        );
    }
}

/// The parts of a tar that holds one regular file `name` of `size` bytes: the header to send before its
/// content, and the padding and end-of-archive blocks to send after it. For writing one file (a Redis RDB
/// file) into a volume through the engine's archive endpoint.
pub fn single_file_tar(
    name: &str,
    size: u64,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut header = tar::Header::new_gnu();
    header.set_path(name)?;
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(uid);
    header.set_gid(gid);
    header.set_mtime(mtime);
    header.set_cksum();
    let pad = usize::try_from((512 - size % 512) % 512).unwrap_or(0);
    Ok((header.as_bytes().to_vec(), vec![0u8; pad + 1024]))
}

#[cfg(test)]
mod single_file_tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn a_single_file_tar_reads_back() {
        let content = b"REDIS0011 rdb bytes";
        let (head, tail) =
            single_file_tar("sub/dump.rdb", content.len() as u64, 0o600, 999, 999, 7).unwrap();
        let mut all = head;
        all.extend_from_slice(content);
        all.extend_from_slice(&tail);
        assert_eq!(all.len() % 512, 0);
        let mut archive = tar::Archive::new(&all[..]);
        let mut entries = archive.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        assert_eq!(e.path().unwrap().to_str(), Some("sub/dump.rdb"));
        assert_eq!(e.header().uid().unwrap(), 999);
        let mut back = Vec::new();
        e.read_to_end(&mut back).unwrap();
        assert_eq!(back, content);
        drop(e);
        assert!(entries.next().is_none());
    }
}
