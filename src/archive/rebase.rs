//! Re-rooting a volume's tar stream for upload.
//!
//! Volume members hold paths relative to the volume root (`./`, `./pgdata/PG_VERSION`). The engine's
//! archive endpoint ignores the attributes of an entry for the directory it extracts into, so a restore that
//! uploaded such a stream into `/data` would lose the owner and mode of the volume's root — which PostgreSQL,
//! for one, insists on. Uploading into `/` with every entry under `data/` makes the root an ordinary entry.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use tar::{Archive, Builder, EntryType, Header};

/// Copies the tar stream `src` to `dst` with every entry moved under `prefix/` (the root entry `./` becomes
/// `prefix/`); hardlink targets move with it, symlink targets are kept as they are. PAX records other than
/// path, link path and size (extended attributes such as `security.capability`, precise times) are kept.
pub fn rebase_tar<R: Read, W: Write>(src: R, dst: W, prefix: &str) -> io::Result<W> {
    let mut archive = Archive::new(src);
    let mut builder = Builder::new(dst);
    builder.mode(tar::HeaderMode::Complete);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = under(prefix, &entry.path()?);
        let link = entry.link_name()?.map(|l| l.into_owned());
        let mut pax = Vec::new();
        if let Some(exts) = entry.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                let key = ext.key_bytes();
                if matches!(key, b"path" | b"linkpath" | b"size") {
                    continue;
                }
                pax.extend_from_slice(&pax_record(key, ext.value_bytes()));
            }
        }
        if !pax.is_empty() {
            let mut h = Header::new_ustar();
            h.set_entry_type(EntryType::XHeader);
            h.set_size(pax.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            builder.append(&h, pax.as_slice())?;
        }
        let mut header = entry.header().clone();
        match header.entry_type() {
            EntryType::Link => {
                let target = link.map(|l| under(prefix, &l)).unwrap_or_default();
                builder.append_link(&mut header, &path, &target)?;
            }
            EntryType::Symlink => {
                let target = link.unwrap_or_default();
                builder.append_link(&mut header, &path, &target)?;
            }
            _ => builder.append_data(&mut header, &path, &mut entry)?,
        }
    }
    builder.into_inner()
}

/// `prefix/rel`, with `./` and leading slashes of `rel` dropped; the root itself becomes `prefix/`.
fn under(prefix: &str, rel: &Path) -> PathBuf {
    let mut out = PathBuf::from(prefix);
    for c in rel.components() {
        if let std::path::Component::Normal(part) = c {
            out.push(part);
        }
    }
    out
}

/// One PAX record: `"<len> <key>=<value>\n"`, where `<len>` counts the whole record, itself included.
pub(crate) fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // space, '=', newline
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} ").into_bytes();
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar: &[u8]) -> Vec<(String, u32, u64, Option<String>)> {
        let mut a = Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    e.link_name().unwrap().map(|l| l.display().to_string()),
                )
            })
            .collect()
    }

    #[test]
    fn entries_move_under_the_prefix_with_their_attributes() {
        let mut b = Builder::new(Vec::new());
        let mut root = Header::new_gnu();
        root.set_entry_type(EntryType::Directory);
        root.set_mode(0o700);
        root.set_uid(999);
        root.set_size(0);
        b.append_data(&mut root, "./", io::empty()).unwrap();
        let mut f = Header::new_gnu();
        f.set_mode(0o600);
        f.set_uid(999);
        f.set_size(2);
        let long = format!("./{}", "n".repeat(150));
        b.append_data(&mut f, &long, &b"hi"[..]).unwrap();
        let mut hl = Header::new_gnu();
        hl.set_entry_type(EntryType::Link);
        hl.set_mode(0o600);
        hl.set_uid(0);
        hl.set_gid(0);
        hl.set_mtime(0);
        hl.set_size(0);
        b.append_link(&mut hl, "./hard", &long).unwrap();
        let mut sl = Header::new_gnu();
        sl.set_entry_type(EntryType::Symlink);
        sl.set_mode(0o777);
        sl.set_uid(0);
        sl.set_gid(0);
        sl.set_mtime(0);
        sl.set_size(0);
        b.append_link(&mut sl, "./soft", "../outside/x").unwrap();
        let src = b.into_inner().unwrap();

        let out = rebase_tar(src.as_slice(), Vec::new(), "data").unwrap();
        let got = entries(&out);
        let long_under = format!("data/{}", "n".repeat(150));
        assert_eq!(got[0], ("data".to_string(), 0o700, 999, None));
        assert_eq!(got[1], (long_under.clone(), 0o600, 999, None));
        assert_eq!(got[2].0, "data/hard");
        assert_eq!(got[2].3.as_deref(), Some(long_under.as_str()));
        assert_eq!(got[3].3.as_deref(), Some("../outside/x"));
    }

    #[test]
    fn pax_records_count_their_own_length() {
        let r = pax_record(b"SCHILY.xattr.security.capability", b"\x01\x02");
        let text = String::from_utf8_lossy(&r);
        let (len, _) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), r.len());
        // A length that gains a digit when counted.
        let r = pax_record(b"k", &[b'v'; 93]);
        let (len, _) = std::str::from_utf8(&r).unwrap().split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), r.len());
    }

    #[test]
    fn extended_attributes_survive() {
        let mut b = Builder::new(Vec::new());
        let rec = pax_record(b"SCHILY.xattr.security.capability", b"cap");
        let mut x = Header::new_ustar();
        x.set_entry_type(EntryType::XHeader);
        x.set_size(rec.len() as u64);
        x.set_cksum();
        b.append(&x, rec.as_slice()).unwrap();
        let mut f = Header::new_ustar();
        f.set_size(1);
        f.set_mode(0o755);
        b.append_data(&mut f, "./bin", &b"x"[..]).unwrap();
        let src = b.into_inner().unwrap();
        let out = rebase_tar(src.as_slice(), Vec::new(), "data").unwrap();
        let mut a = Archive::new(out.as_slice());
        let mut e = a.entries().unwrap().next().unwrap().unwrap();
        let exts: Vec<(String, Vec<u8>)> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| {
                let x = x.unwrap();
                (x.key().unwrap().to_string(), x.value_bytes().to_vec())
            })
            .collect();
        assert!(exts.contains(&(
            "SCHILY.xattr.security.capability".to_string(),
            b"cap".to_vec()
        )));
        assert_eq!(e.path().unwrap().display().to_string(), "data/bin");
    }
}
