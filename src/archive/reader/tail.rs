//! Reading only the manifest of a backup from the tail of the file, in one ranged read: what listing a
//! remote destination needs.

use std::io::Read;
use std::path::Path;

use super::super::ArchiveError;
use super::super::format::{MANIFEST_MEMBER, Manifest};
use super::super::source::RangeSource;
use super::open::parse_manifest;
use super::{BLOCK, MAX_MANIFEST};

/// Reads only the manifest of a backup, from the tail of `source`: the last member of a backup is
/// `manifest.json`, followed by the end-of-archive zero blocks. This costs one ranged read (a few for a very
/// large manifest) instead of reading the file, which is what listing a remote destination needs. It checks
/// the manifest's header (name, checksum, that its data ends the archive) and the manifest itself, but not the
/// rest of the file: [`Backup::open_source`](super::Backup::open_source) and
/// [`Backup::verify`](super::Backup::verify) do that.
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
            return parse_manifest(path, json).map(|(manifest, _)| manifest);
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

#[cfg(test)]
mod tests {
    use super::super::Backup;
    use super::super::tests::write_backup;
    use super::*;
    use crate::archive::source::FileSource;

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
}
