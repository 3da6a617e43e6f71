//! Backup format 1 end to end, without an engine: a torture tree goes through the writer, comes back through
//! the reader, and the file is checked with GNU `tar`, `zstd` and (when installed) `bsdtar` — the tools the
//! README's "restore without docker-persist" path relies on. Damaged files must be refused with the right error.

// Helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use docker_persist::archive::digest::{DigestError, DigestOptions, DigestVersion, digest_tar};
use docker_persist::archive::{
    ArchiveError, Backup, BackupName, BackupWriter, EngineInfo, Manifest, ProblemKind, VolumeSpec,
    WriterOptions,
};
use docker_persist::compose::Tier;
use docker_persist::compose::classify::DataKind;
use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

const BIG: u64 = 64 * 1024 * 1024;

fn spec(key: &str, prefix: Option<&str>) -> VolumeSpec {
    VolumeSpec {
        key: key.into(),
        name: format!("app_{key}"),
        kind: DataKind::Named,
        tier: Tier::Critical,
        reason: "database data directory".into(),
        driver: "local".into(),
        driver_opts: Default::default(),
        labels: [("com.docker.compose.project".to_string(), "app".to_string())].into(),
        users: vec![],
        consistency: "stop".into(),
        stopped: vec![],
        read_at: None,
        tar_prefix: prefix.map(str::to_string),
    }
}

fn header(kind: EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(1_763_806_500);
    h.set_size(size);
    h
}

fn long_name() -> String {
    format!("{}.txt", "n".repeat(146))
}

/// The engine's tar of a volume mounted at `/data`: every entry under `data/`. Written to a file so the
/// 64 MiB file of zeros is streamed, never held.
fn torture_tar(path: &Path) {
    let file = fs::File::create(path).unwrap();
    let mut b = tar::Builder::new(io::BufWriter::new(file));
    let mut add = |kind, mode, uid, gid, name: &str, data: &[u8]| {
        let mut h = header(kind, mode, uid, gid, data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    };
    add(EntryType::Directory, 0o700, 999, 999, "data/", b"");
    add(
        EntryType::Regular,
        0o600,
        999,
        999,
        "data/PG_VERSION",
        b"16\n",
    );
    add(
        EntryType::Regular,
        0o4755,
        0,
        0,
        "data/setuid",
        b"#!/bin/sh\n",
    );
    add(EntryType::Regular, 0o2750, 1000, 50, "data/setgid", b"g");
    add(EntryType::Directory, 0o1777, 0, 0, "data/tmp/", b"");
    add(
        EntryType::Directory,
        0o755,
        65534,
        65534,
        "data/empty/",
        b"",
    );
    add(
        EntryType::Regular,
        0o000,
        3_000_000,
        3_000_000,
        "data/big-uid",
        b"u",
    );
    add(
        EntryType::Regular,
        0o644,
        999,
        999,
        &format!("data/{}", long_name()),
        b"long",
    );
    add(EntryType::Directory, 0o755, 999, 999, "data/ünïcødé/", b"");
    add(
        EntryType::Regular,
        0o644,
        999,
        999,
        "data/ünïcødé/日本語 ✓.txt",
        "こんにちは".as_bytes(),
    );
    let mut deep = String::from("data");
    for i in 0..40 {
        deep.push_str(&format!("/level{i:02}"));
        add(
            EntryType::Directory,
            0o755,
            999,
            999,
            &format!("{deep}/"),
            b"",
        );
    }
    add(
        EntryType::Regular,
        0o644,
        999,
        999,
        &format!("{deep}/bottom"),
        b"deep",
    );
    let mut fifo = header(EntryType::Fifo, 0o644, 999, 999, 0);
    b.append_data(&mut fifo, "data/fifo", io::empty()).unwrap();
    let mut dev = header(EntryType::Char, 0o666, 0, 0, 0);
    dev.set_device_major(1).unwrap();
    dev.set_device_minor(3).unwrap();
    b.append_data(&mut dev, "data/null", io::empty()).unwrap();
    for (name, target) in [
        ("data/link", "PG_VERSION"),
        ("data/dangling", "/nonexistent/target"),
        ("data/up", "../outside"),
        ("data/long-link", &"t/".repeat(80)),
    ] {
        let mut h = header(EntryType::Symlink, 0o777, 999, 999, 0);
        b.append_link(&mut h, name, target).unwrap();
    }
    let mut h = header(EntryType::Link, 0o600, 999, 999, 0);
    b.append_link(&mut h, "data/hardlink", "data/PG_VERSION")
        .unwrap();
    let mut h = header(EntryType::Regular, 0o600, 999, 999, BIG);
    b.append_data(&mut h, "data/zeros", io::repeat(0).take(BIG))
        .unwrap();
    b.into_inner().unwrap().flush().unwrap();
}

fn small_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(EntryType::Directory, 0o755, 1000, 1000, 0);
    b.append_data(&mut h, "./", io::empty()).unwrap();
    let mut h = header(EntryType::Regular, 0o644, 1000, 1000, 3);
    b.append_data(&mut h, "./.package-lock.json", &b"{}\n"[..])
        .unwrap();
    b.into_inner().unwrap()
}

fn sha256_of(mut r: impl Read) -> String {
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
    }
    hex::encode(sha.finalize())
}

fn sh(script: &str, dir: &Path) -> String {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    inner: PathBuf,
    backup: PathBuf,
}

fn fixture(options: WriterOptions) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let inner = tmp.path().join("inner.tar");
    torture_tar(&inner);
    let dir = tmp.path().join("backups");
    let name = BackupName::new("app", "2026-11-22T10:15:00Z".parse().unwrap(), None).unwrap();
    let engine = EngineInfo {
        version: "28.2.2".into(),
        os: "linux".into(),
        arch: "x86_64".into(),
    };
    let mut w = BackupWriter::create(&dir, &name, engine, options).unwrap();
    w.add_compose_file(
        "compose.yaml",
        b"services:\n  db:\n    image: postgres:16\n",
    )
    .unwrap();
    w.add_compose_file("compose.override.yaml", b"services: {}\n")
        .unwrap();
    let db = w
        .add_volume(spec("db", Some("data")), fs::File::open(&inner).unwrap())
        .unwrap();
    assert_eq!(db.uncompressed_bytes, fs::metadata(&inner).unwrap().len());
    assert!(
        db.stored_bytes < 1024 * 1024,
        "{} bytes stored",
        db.stored_bytes
    );
    let mut anon = spec("web:/app/node_modules", None);
    anon.kind = DataKind::Anonymous;
    anon.tier = Tier::Regenerable;
    w.add_volume(anon, &small_tar()[..]).unwrap();
    let backup = w.finish().unwrap().path;
    assert_eq!(backup, dir.join("app-20261122T101500Z.tar"));
    Fixture {
        _tmp: tmp,
        dir,
        inner,
        backup,
    }
}

#[test]
fn torture_tree_round_trips() {
    let f = fixture(WriterOptions::default());
    let backup = Backup::open(&f.backup).unwrap();
    let m = backup.manifest();
    assert_eq!(m.compose_files, ["compose.yaml", "compose.override.yaml"]);
    let db = m.volume("db").unwrap();
    assert_eq!(db.tar_prefix.as_deref(), Some("data"));
    // root, 9 named entries, 40 levels + bottom, fifo, null, 4 symlinks, hardlink, zeros
    assert_eq!(db.entries, 1 + 9 + 41 + 2 + 4 + 1 + 1);
    assert_eq!(db.file_bytes, BIG + 3 + 10 + 1 + 1 + 4 + 15 + 4);

    let report = backup.verify().unwrap();
    assert!(report.is_ok(), "{:#?}", report.problems);
    assert_eq!(report.volumes.len(), 2);

    // The decoded stream is the engine's tar, byte for byte, and digests to the manifest's value.
    let original = sha256_of(fs::File::open(&f.inner).unwrap());
    let restored = sha256_of(backup.volume_stream("db").unwrap());
    assert_eq!(restored, original);
    let options = DigestOptions::new(Some("data")).unwrap();
    let summary = digest_tar(backup.volume_stream("db").unwrap(), &options).unwrap();
    assert_eq!(Some(summary.digest), db.content_digest);
    let direct = digest_tar(fs::File::open(&f.inner).unwrap(), &options).unwrap();
    assert_eq!(Some(direct.digest), db.content_digest);

    let web = m.volume("web:/app/node_modules").unwrap();
    assert_eq!(web.member, "volumes/web%3A%2Fapp%2Fnode_modules.tar.zst");
    let mut tar = Vec::new();
    backup
        .volume_stream("web:/app/node_modules")
        .unwrap()
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(tar, small_tar());
}

#[test]
fn multithreaded_compression_writes_the_same_content() {
    let single = fixture(WriterOptions::default());
    let multi = fixture(WriterOptions {
        level: 3,
        workers: 2,
    });
    let a = Backup::open(&single.backup).unwrap();
    let b = Backup::open(&multi.backup).unwrap();
    assert!(b.verify().unwrap().is_ok());
    let (va, vb) = (
        a.manifest().volume("db").unwrap(),
        b.manifest().volume("db").unwrap(),
    );
    assert_eq!(va.content_digest, vb.content_digest);
    assert_eq!(va.uncompressed_bytes, vb.uncompressed_bytes);
}

#[test]
fn gnu_tar_and_zstd_read_the_file_without_the_tool() {
    let f = fixture(WriterOptions::default());
    let dir = f.backup.parent().unwrap();
    let file = "app-20261122T101500Z.tar";
    assert_eq!(
        sh(&format!("tar tf {file}"), dir),
        "compose/compose.yaml\ncompose/compose.override.yaml\nvolumes/db.tar.zst\n\
         volumes/web%3A%2Fapp%2Fnode_modules.tar.zst\nmanifest.json\n"
    );
    let verbose = sh(&format!("tar tvf {file}"), dir);
    assert!(
        verbose.lines().all(|l| l.starts_with("-rw-------")),
        "{verbose}"
    );

    // The README's commands: list and extract one volume with tar and zstd alone.
    let listing = sh(
        &format!("tar -xOf {file} volumes/db.tar.zst | zstd -d | tar -t"),
        dir,
    );
    for want in [
        "data/PG_VERSION".to_string(),
        format!("data/{}", long_name()),
        "data/ünïcødé/日本語 ✓.txt".to_string(),
        "data/zeros".to_string(),
    ] {
        assert!(
            listing.lines().any(|l| l == want),
            "{want} not in {listing}"
        );
    }
    sh(
        &format!(
            "mkdir -p restored && tar -xOf {file} volumes/db.tar.zst | zstd -d | tar -x --numeric-owner -C restored --strip-components=1"
        ),
        dir,
    );
    let restored = dir.join("restored");
    assert_eq!(fs::read(restored.join("PG_VERSION")).unwrap(), b"16\n");
    assert_eq!(fs::read(restored.join(long_name())).unwrap(), b"long");
    assert_eq!(
        fs::read_to_string(restored.join("ünïcødé/日本語 ✓.txt")).unwrap(),
        "こんにちは"
    );
    assert_eq!(fs::metadata(restored.join("zeros")).unwrap().len(), BIG);
    assert!(
        fs::symlink_metadata(restored.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(
        fs::read_link(restored.join("dangling")).unwrap(),
        Path::new("/nonexistent/target")
    );
    let pg = fs::metadata(restored.join("PG_VERSION")).unwrap();
    assert_eq!(
        pg.ino(),
        fs::metadata(restored.join("hardlink")).unwrap().ino()
    );
    if nix_is_root() {
        assert_eq!((pg.uid(), pg.gid()), (999, 999));
        let setuid = fs::metadata(restored.join("setuid")).unwrap();
        assert_eq!(setuid.permissions().mode() & 0o7777, 0o4755);
    }

    // Extracting the whole outer tar gives members that zstd checks on its own.
    sh(
        &format!("mkdir outer && tar -xf {file} -C outer && zstd -tq outer/volumes/*.tar.zst"),
        dir,
    );
    let manifest: Manifest =
        serde_json::from_slice(&fs::read(dir.join("outer/manifest.json")).unwrap()).unwrap();
    let member_sha = sha256_of(fs::File::open(dir.join("outer/volumes/db.tar.zst")).unwrap());
    assert_eq!(manifest.volume("db").unwrap().sha256, member_sha);
    let piped = sh(
        &format!("tar -xOf {file} volumes/db.tar.zst | sha256sum"),
        dir,
    );
    assert_eq!(piped.split_whitespace().next(), Some(member_sha.as_str()));

    if which::which("bsdtar").is_ok() {
        let listing = sh(&format!("bsdtar -tf {file}"), dir);
        assert_eq!(listing.lines().count(), 5, "{listing}");
        sh(
            &format!(
                "mkdir bsd && bsdtar -xf {file} -C bsd && bsdtar -xOf {file} volumes/db.tar.zst | zstd -d | bsdtar -t >/dev/null"
            ),
            dir,
        );
        assert_eq!(
            sha256_of(fs::File::open(dir.join("bsd/volumes/db.tar.zst")).unwrap()),
            member_sha
        );
    }
}

fn nix_is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn copy_to(f: &Fixture, name: &str) -> PathBuf {
    let path = f.dir.join(name);
    fs::copy(&f.backup, &path).unwrap();
    path
}

#[test]
fn a_flipped_byte_in_a_member_is_found() {
    let f = fixture(WriterOptions::default());
    let m = Backup::open(&f.backup)
        .unwrap()
        .member("volumes/db.tar.zst")
        .unwrap()
        .clone();
    let path = copy_to(&f, "app-20261122T101501Z.tar");
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let at = m.data_offset + m.size / 2;
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(at)).unwrap();
    file.read_exact(&mut byte).unwrap();
    file.seek(SeekFrom::Start(at)).unwrap();
    file.write_all(&[byte[0] ^ 0x10]).unwrap();
    drop(file);

    let backup = Backup::open(&path).unwrap();
    let report = backup.verify().unwrap();
    let kinds: Vec<_> = report.problems.iter().map(|p| p.kind).collect();
    assert!(kinds.contains(&ProblemKind::Sha256Mismatch), "{kinds:?}");
    let sha = report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::Sha256Mismatch)
        .unwrap();
    assert_eq!(sha.member.as_deref(), Some("volumes/db.tar.zst"));
    assert!(sha.expected.is_some() && sha.found.is_some() && sha.expected != sha.found);
    assert!(
        report
            .volumes
            .iter()
            .any(|v| v.key == "web:/app/node_modules" && v.ok)
    );
    assert!(matches!(
        backup.volume_stream("db"),
        Err(ArchiveError::NotVerified { .. })
    ));
    let err = report.into_result().unwrap_err();
    assert!(err.to_string().contains("volumes/db.tar.zst"), "{err}");
}

#[test]
fn a_truncated_file_is_not_a_backup() {
    let f = fixture(WriterOptions::default());
    let path = copy_to(&f, "app-20261122T101502Z.tar");
    let len = fs::metadata(&path).unwrap().len();
    for cut in [len / 2, len - 1024 - 700, 300] {
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(cut).unwrap();
        let err = Backup::open(&path).unwrap_err();
        assert!(
            matches!(err, ArchiveError::NotABackup { .. }),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn a_missing_end_of_archive_is_a_structure_problem() {
    let f = fixture(WriterOptions::default());
    let path = copy_to(&f, "app-20261122T101503Z.tar");
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 1024)
        .unwrap();
    let report = Backup::open(&path).unwrap().verify().unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::Structure),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_missing_manifest_is_not_a_backup() {
    let f = fixture(WriterOptions::default());
    let path = copy_to(&f, "app-20261122T101504Z.tar");
    sh(
        &format!("tar --delete -f {} manifest.json", path.display()),
        &f.dir,
    );
    let err = Backup::open(&path).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::NotABackup { reason, .. } if reason.contains("manifest.json")),
        "{err}"
    );
}

#[test]
fn a_partial_file_is_not_a_backup() {
    let f = fixture(WriterOptions::default());
    let path = copy_to(&f, "app-20261122T101505Z.tar.partial");
    let err = Backup::open(&path).unwrap_err();
    assert!(matches!(err, ArchiveError::NotABackup { .. }), "{err}");
    let listing = docker_persist::archive::list_backups(&f.dir, "app").unwrap();
    assert_eq!(listing.backups.len(), 1);
    assert_eq!(listing.skipped.len(), 1);
}

/// A copy of the fixture's backup named `name` whose manifest `edit` changed.
fn with_manifest(f: &Fixture, name: &str, edit: impl Fn(&mut Manifest)) -> PathBuf {
    let path = copy_to(f, name);
    let mut manifest = Backup::open(&path).unwrap().manifest().clone();
    edit(&mut manifest);
    fs::write(
        f.dir.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    sh(
        &format!(
            "tar --delete -f {p} manifest.json && tar --format=ustar -rf {p} manifest.json",
            p = path.display()
        ),
        &f.dir,
    );
    path
}

#[test]
fn a_manifest_with_a_wrong_sha256_is_found() {
    let f = fixture(WriterOptions::default());
    let good = Backup::open(&f.backup).unwrap().manifest().volumes[0]
        .sha256
        .clone();
    let path = with_manifest(&f, "app-20261122T101506Z.tar", |m| {
        m.volumes[0].sha256 = "ab".repeat(32);
    });
    let report = Backup::open(&path).unwrap().verify().unwrap();
    let p = report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::Sha256Mismatch)
        .unwrap_or_else(|| panic!("{:?}", report.problems));
    assert_eq!(p.expected.as_deref(), Some("ab".repeat(32).as_str()));
    assert_eq!(p.found.as_deref(), Some(good.as_str()));
    // Only the SHA-256 is wrong: the content itself still decodes and digests.
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
}

/// The content digests of [`torture_tar`] and [`small_tar`] as written before `tree-v2` existed: backups
/// written then hold these, and must keep verifying.
const TORTURE_V1: &str = "tree-v1:61ac0d9c4011cce0fa7b86e80b00cbd49ae32b54d2c711f695f716f0e207a213";
const SMALL_V1: &str = "tree-v1:ea438167155fa4008cfece528591c9ac2f9093bd032a055c970ce53b1325606c";

#[test]
fn new_backups_carry_tree_v2_digests() {
    let f = fixture(WriterOptions::default());
    let backup = Backup::open(&f.backup).unwrap();
    for v in &backup.manifest().volumes {
        assert_eq!(v.digest_version(), DigestVersion::V2, "{}", v.key);
        assert!(v.digest_text().starts_with("tree-v2:"));
    }
}

#[test]
fn a_backup_with_tree_v1_digests_still_verifies() {
    let f = fixture(WriterOptions::default());
    // What a backup written before `tree-v2` holds: the same members, v1 digests in the manifest.
    let path = with_manifest(&f, "app-20261122T101507Z.tar", |m| {
        m.volumes[0].content_digest = Some(TORTURE_V1.parse().unwrap());
        m.volumes[1].content_digest = Some(SMALL_V1.parse().unwrap());
    });
    let backup = Backup::open(&path).unwrap();
    let report = backup.verify().unwrap();
    assert!(report.is_ok(), "{:#?}", report.problems);
    assert_eq!(report.volumes.len(), 2);
    // The v1 digest of what the member holds is the one computed before `tree-v2` existed.
    let options = DigestOptions::new(Some("data"))
        .unwrap()
        .with_version(DigestVersion::V1);
    let summary = digest_tar(backup.volume_stream("db").unwrap(), &options).unwrap();
    assert_eq!(summary.digest.to_string(), TORTURE_V1);

    // A v1 digest that does not match is still found.
    let path = with_manifest(&f, "app-20261122T101508Z.tar", |m| {
        m.volumes[0].content_digest = Some(SMALL_V1.parse().unwrap());
    });
    let report = Backup::open(&path).unwrap().verify().unwrap();
    let p = report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::DigestMismatch)
        .unwrap_or_else(|| panic!("{:?}", report.problems));
    assert_eq!(p.expected.as_deref(), Some(SMALL_V1));
    assert_eq!(p.found.as_deref(), Some(TORTURE_V1));
}

/// A backup made by hand whose volume member holds `entry` (and nothing the writer would refuse otherwise).
fn evil_backup(dir: &Path, entry: &str, kind: EntryType, link: Option<&str>) -> PathBuf {
    let mut inner = tar::Builder::new(Vec::new());
    let mut h = header(
        kind,
        0o644,
        0,
        0,
        if kind == EntryType::Regular { 1 } else { 0 },
    );
    let name = entry.as_bytes();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    if let Some(l) = link {
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_cksum();
    let data: &[u8] = if kind == EntryType::Regular {
        b"x"
    } else {
        b""
    };
    inner.append(&h, data).unwrap();
    let inner = inner.into_inner().unwrap();
    let member = zstd::encode_all(&inner[..], 3).unwrap();

    let mut manifest: Manifest = {
        let tmp = tempfile::tempdir().unwrap();
        let name = BackupName::new("app", "2026-11-22T10:15:00Z".parse().unwrap(), None).unwrap();
        let mut w = BackupWriter::create(
            tmp.path(),
            &name,
            EngineInfo::default(),
            WriterOptions::default(),
        )
        .unwrap();
        w.add_volume(spec("db", None), &small_tar()[..]).unwrap();
        w.finish().unwrap().manifest
    };
    manifest.volumes[0].stored_bytes = member.len() as u64;
    manifest.volumes[0].sha256 = hex::encode(Sha256::digest(&member));
    let json = serde_json::to_vec(&manifest).unwrap();

    let path = dir.join(format!("evil-{}.tar", hex::encode(Sha256::digest(entry))));
    let mut outer = tar::Builder::new(fs::File::create(&path).unwrap());
    for (name, data) in [("volumes/db.tar.zst", &member), ("manifest.json", &json)] {
        let mut h = Header::new_ustar();
        h.set_mode(0o600);
        h.set_size(data.len() as u64);
        outer.append_data(&mut h, name, &data[..]).unwrap();
    }
    outer.into_inner().unwrap();
    path
}

#[test]
fn entries_escaping_the_volume_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for (entry, kind, link) in [
        ("../x", EntryType::Regular, None),
        ("/etc/x", EntryType::Regular, None),
        ("a/../../x", EntryType::Regular, None),
        ("h", EntryType::Link, Some("../../etc/shadow")),
        ("h", EntryType::Link, Some("/etc/shadow")),
    ] {
        let path = evil_backup(tmp.path(), entry, kind, link);
        let backup = Backup::open(&path).unwrap();
        let report = backup.verify().unwrap();
        let unsafe_entry = report
            .problems
            .iter()
            .find(|p| p.kind == ProblemKind::UnsafeEntry)
            .unwrap_or_else(|| panic!("{entry}: {:?}", report.problems));
        assert!(unsafe_entry.what.contains(entry), "{}", unsafe_entry.what);
        assert!(matches!(
            backup.volume_stream("db"),
            Err(ArchiveError::NotVerified { .. })
        ));

        // The writer refuses such a stream in the first place.
        let mut inner = tar::Builder::new(Vec::new());
        let mut h = header(kind, 0o644, 0, 0, 0);
        h.as_old_mut().name[..entry.len()].copy_from_slice(entry.as_bytes());
        if let Some(l) = link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        inner.append(&h, io::empty()).unwrap();
        let name = BackupName::new("app", "2026-11-22T10:15:00Z".parse().unwrap(), None).unwrap();
        let mut w = BackupWriter::create(
            tmp.path().join("w"),
            &name,
            EngineInfo::default(),
            WriterOptions::default(),
        )
        .unwrap();
        let err = w
            .add_volume(spec("db", None), &inner.into_inner().unwrap()[..])
            .unwrap_err();
        assert!(
            matches!(
                &err,
                ArchiveError::ReadVolume {
                    source: DigestError::UnsafeEntry { .. },
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn a_foreign_tar_is_not_a_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("app-20261122T101500Z.tar");
    let status = Command::new("tar")
        .args([
            "cf",
            path.to_str().unwrap(),
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "Cargo.toml",
        ])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(matches!(
        Backup::open(&path),
        Err(ArchiveError::NotABackup { .. })
    ));
    fs::write(&path, b"not even a tar").unwrap();
    assert!(matches!(
        Backup::open(&path),
        Err(ArchiveError::NotABackup { .. })
    ));
    let listing = docker_persist::archive::list_backups(tmp.path(), "app").unwrap();
    assert!(listing.backups.is_empty());
    assert_eq!(listing.skipped.len(), 1);
}
