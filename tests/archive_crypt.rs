//! Encrypted backups end to end, without an engine: each kind of key (an age key, ssh-ed25519 and ssh-rsa
//! keys made with `ssh-keygen`, a passphrase) writes a backup with a Compose file, a volume and a dump that
//! hold secrets; it must read back byte for byte with the key and stay listable and checkable without it;
//! the `age` CLI must decrypt a member to the very bytes a plain backup of the same data holds; no secret
//! may appear in the file; a wrong key, a wrong passphrase, a changed byte and a cut-short file must each
//! be refused with an error that names the problem.

// Helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use docker_persist::archive::crypt::{expose, generate_identity};
use docker_persist::archive::{
    ArchiveError, Backup, BackupName, BackupWriter, DumpSpec, EngineInfo, HookRecord, Identity,
    Keys, Passphrase, ProblemKind, Recipient, Sealer, UnlockError, VolumeSpec, WriterOptions,
};
use docker_persist::compose::Tier;
use docker_persist::compose::classify::DataKind;

const DRIVER_PASSWORD: &str = "cifs-password-Zq8Lw3";
const LABEL_SECRET: &str = "label-secret-Hn4Kp7";
const FILE_SECRET: &str = "file-content-secret-Rt5Vb2";
const COMPOSE_SECRET: &str = "compose-secret-Xc9Mm1";
const DUMP_SECRET: &str = "dump-secret-Pq2Ww6";
const HOOK_SECRET: &str = "hook-output-secret-Ls3Df8";
const SECRETS: [&str; 6] = [
    DRIVER_PASSWORD,
    LABEL_SECRET,
    FILE_SECRET,
    COMPOSE_SECRET,
    DUMP_SECRET,
    HOOK_SECRET,
];

fn spec(key: &str) -> VolumeSpec {
    VolumeSpec {
        key: key.into(),
        name: format!("app_{key}"),
        kind: DataKind::Named,
        tier: Tier::Critical,
        reason: "database data directory".into(),
        driver: "local".into(),
        driver_opts: BTreeMap::from([
            ("type".to_string(), "cifs".to_string()),
            (
                "o".to_string(),
                format!("username=backup,password={DRIVER_PASSWORD}"),
            ),
        ]),
        labels: BTreeMap::from([("app.secret".to_string(), LABEL_SECRET.to_string())]),
        users: vec![],
        consistency: "stop".into(),
        stopped: vec!["db".into()],
        read_at: None,
        tar_prefix: None,
    }
}

/// A volume's tar: a directory, a file holding a secret, and 300 KiB of text (several age chunks).
fn volume_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8], kind| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o600
        });
        h.set_uid(999);
        h.set_gid(999);
        h.set_mtime(1_763_806_500);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("./", b"", tar::EntryType::Directory);
    add(
        "./secret.txt",
        format!("token={FILE_SECRET}\n").as_bytes(),
        tar::EntryType::Regular,
    );
    let text: Vec<u8> = (0..40_000u32)
        .flat_map(|i| format!("line {i} of ordinary text\n").into_bytes())
        .collect();
    add("./big.txt", &text, tar::EntryType::Regular);
    b.into_inner().unwrap()
}

fn dump_bytes() -> Vec<u8> {
    format!("-- PostgreSQL database dump\nINSERT INTO secrets VALUES ('{DUMP_SECRET}');\n")
        .into_bytes()
}

fn compose_bytes() -> Vec<u8> {
    format!("services:\n  db:\n    environment:\n      PASSWORD: {COMPOSE_SECRET}\n").into_bytes()
}

/// Writes a backup of the fixed data into `dir`, encrypted with `sealer` when given.
fn write(dir: &Path, stamp: &str, sealer: Option<Sealer>) -> PathBuf {
    write_with(dir, stamp, sealer, WriterOptions::default())
}

/// The same with `options`: with zstd workers, the stored bytes are encrypted on a thread of their own.
fn write_with(dir: &Path, stamp: &str, sealer: Option<Sealer>, options: WriterOptions) -> PathBuf {
    let name = BackupName::new("app", stamp.parse().unwrap(), None).unwrap();
    let mut w = BackupWriter::create(dir, &name, EngineInfo::default(), options).unwrap();
    if let Some(s) = sealer {
        w.encrypt(s).unwrap();
    }
    w.add_compose_file("compose.yaml", &compose_bytes())
        .unwrap();
    w.add_volume(spec("db"), &volume_tar()[..]).unwrap();
    w.record_volume_hooks(
        "db",
        vec![HookRecord {
            phase: "pre".into(),
            service: "db".into(),
            command: "echo".into(),
            exit_code: Some(0),
            timed_out: false,
            duration_ms: 1,
            on_error: "fail".into(),
            error: None,
            stdout: HOOK_SECRET.into(),
            stderr: String::new(),
        }],
    );
    let mut dump_spec = spec("pg");
    dump_spec.consistency = "dump".into();
    w.add_dump(
        dump_spec,
        DumpSpec {
            recipe: "postgres".into(),
            service: "pg".into(),
            image: "postgres:16".into(),
            ext: "sql".into(),
        },
        &dump_bytes()[..],
    )
    .unwrap();
    w.finish().unwrap().path
}

fn private_file(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// A throwaway ssh key of `kind` (`ed25519`, `rsa`): (private key path, public key line).
fn ssh_key(dir: &Path, kind: &str) -> (PathBuf, String) {
    let key = dir.join(format!("id_{kind}"));
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", "", "-C", "throwaway", "-f"])
        .arg(&key);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    let out = cmd
        .output()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public)
}

/// An age key made by `age-keygen` (the CLI): (identity file, public key).
fn age_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("age.txt");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .expect("age-keygen (Debian package `age`) is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&key).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    (key, public)
}

fn keys_from(path: &Path) -> Keys {
    Keys {
        identities: Identity::read_file(path).unwrap(),
        passphrase: None,
    }
}

fn read_all(mut r: impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    out
}

/// Checks everything a backup holds, with and without its keys.
fn check_round_trip(path: &Path, keys: &Keys) {
    // Without the key: listed and checked as far as it can be, nothing secret readable.
    let locked = Backup::open(path).unwrap();
    assert!(locked.is_encrypted() && locked.is_locked());
    let m = locked.manifest();
    assert_eq!(m.project, "app");
    let v = m.volume("db").unwrap();
    assert_eq!(v.member, "volumes/db.tar.zst.age");
    assert_eq!(v.tier, Tier::Critical);
    assert_eq!(v.stopped, ["db"]);
    assert!(v.entries == 3 && v.stored_bytes > 0);
    assert!(v.labels.is_empty() && v.driver_opts.is_empty() && v.hooks.is_empty());
    assert!(v.content_digest.is_none());
    assert_eq!(m.dump("pg").unwrap().member, "dumps/pg.sql.zst.age");
    let report = locked.verify().unwrap();
    assert!(report.is_ok(), "{:#?}", report.problems);
    assert!(report.locked);
    assert!(matches!(
        locked.volume_stream("db"),
        Err(ArchiveError::NotVerified { .. })
    ));
    assert!(matches!(
        locked.volume_stream_unverified("db"),
        Err(ArchiveError::Locked {
            source: UnlockError::NoKeys { .. },
            ..
        })
    ));

    // With it: everything, as a plain backup.
    let backup = Backup::open_with(path, keys).unwrap();
    assert!(!backup.is_locked());
    let m = backup.manifest();
    let v = m.volume("db").unwrap();
    assert_eq!(v.labels["app.secret"], LABEL_SECRET);
    assert!(v.driver_opts["o"].contains(DRIVER_PASSWORD));
    assert_eq!(v.hooks[0].stdout, HOOK_SECRET);
    assert!(v.content_digest.is_some());
    let d = m.dump("pg").unwrap();
    assert_eq!(d.image, "postgres:16");
    assert!(!d.content_sha256.is_empty());
    let report = backup.verify().unwrap();
    assert!(report.is_ok(), "{:#?}", report.problems);
    assert!(!report.locked);
    assert_eq!(read_all(backup.volume_stream("db").unwrap()), volume_tar());
    assert_eq!(read_all(backup.dump_stream("pg").unwrap()), dump_bytes());
    assert_eq!(
        backup.compose_file("compose.yaml").unwrap(),
        compose_bytes()
    );

    // No secret is anywhere in the file.
    let bytes = fs::read(path).unwrap();
    for secret in SECRETS {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "`{secret}` is in the clear in {}",
            path.display()
        );
    }
}

#[test]
fn an_age_key_made_by_age_keygen_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = age_key(tmp.path());
    let sealer = Sealer::new(vec![Recipient::parse(&public).unwrap()], None).unwrap();
    let path = write(tmp.path(), "2026-11-22T10:15:00Z", Some(sealer));
    check_round_trip(&path, &keys_from(&key));
    let backup = Backup::open(&path).unwrap();
    let info = backup.manifest().encryption.as_ref().unwrap();
    assert_eq!(info.recipients.len(), 1);
    assert_eq!(info.recipients[0].kind, "x25519");

    // With zstd workers (the default on two cores or more) the members are encrypted on another thread.
    let sealer = Sealer::new(vec![Recipient::parse(&public).unwrap()], None).unwrap();
    let workers = WriterOptions {
        level: 3,
        workers: 2,
    };
    let path = write_with(tmp.path(), "2026-11-22T10:16:00Z", Some(sealer), workers);
    check_round_trip(&path, &keys_from(&key));
}

#[test]
fn ssh_ed25519_and_ssh_rsa_keys_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    for (n, kind) in ["ed25519", "rsa"].into_iter().enumerate() {
        let (key, public) = ssh_key(tmp.path(), kind);
        let sealer = Sealer::new(vec![Recipient::parse(&public).unwrap()], None).unwrap();
        let path = write(tmp.path(), &format!("2026-11-22T10:15:0{n}Z"), Some(sealer));
        check_round_trip(&path, &keys_from(&key));
        let info = Backup::open(&path)
            .unwrap()
            .manifest()
            .encryption
            .clone()
            .unwrap();
        assert_eq!(info.recipients[0].kind, format!("ssh-{kind}"));
        // The fingerprint is the one `ssh-keygen -l` prints for the key.
        let listed = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(key.with_extension("pub"))
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&listed.stdout).contains(&info.recipients[0].fingerprint));
    }
}

#[test]
fn a_passphrase_round_trips_and_a_wrong_one_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("pass");
    private_file(&file, "correct horse battery staple\n");
    let passphrase = Passphrase::from_file(&file).unwrap();
    let sealer = Sealer::new(vec![], Some(&passphrase)).unwrap();
    let path = write(tmp.path(), "2026-11-22T10:15:00Z", Some(sealer));
    let keys = Keys {
        identities: vec![],
        passphrase: Some(Passphrase::from_file(&file).unwrap()),
    };
    check_round_trip(&path, &keys);

    private_file(&file, "wrong horse\n");
    let wrong = Keys {
        identities: vec![],
        passphrase: Some(Passphrase::from_file(&file).unwrap()),
    };
    let err = Backup::open_with(&path, &wrong).unwrap_err();
    assert!(
        matches!(
            &err,
            ArchiveError::Locked {
                source: UnlockError::WrongPassphrase,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("the passphrase does not match"),
        "{err}"
    );
}

#[test]
fn the_age_cli_decrypts_a_member_to_the_plain_backup_s_member() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = age_key(tmp.path());
    let plain = write(tmp.path(), "2026-11-22T10:15:00Z", None);
    let sealer = Sealer::new(vec![Recipient::parse(&public).unwrap()], None).unwrap();
    let encrypted = write(tmp.path(), "2026-11-22T10:15:01Z", Some(sealer));
    for (plain_member, stored) in [
        ("volumes/db.tar.zst", "volumes/db.tar.zst.age"),
        ("dumps/pg.sql.zst", "dumps/pg.sql.zst.age"),
        ("compose/compose.yaml", "compose/compose.yaml.age"),
    ] {
        let expected = member_bytes(&plain, plain_member);
        let sealed = member_bytes(&encrypted, stored);
        let decrypted = age_decrypt(&key, &sealed);
        assert_eq!(decrypted, expected, "{stored}");
    }
    // And the sealed manifest part, with `age -d` on its armored text.
    let backup = Backup::open(&encrypted).unwrap();
    let sealed = backup.manifest().encryption.clone().unwrap().sealed;
    let json = String::from_utf8(age_decrypt(&key, sealed.as_bytes())).unwrap();
    assert!(
        json.contains(LABEL_SECRET) && json.contains(DRIVER_PASSWORD),
        "{json}"
    );
}

/// `tar -xOf FILE MEMBER`, as the docs tell a user to run it.
fn member_bytes(file: &Path, member: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(file)
        .arg(member)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn age_decrypt(identity: &Path, input: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the `age` CLI (Debian package `age`) is installed");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "age -d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn a_wrong_or_missing_identity_is_refused_naming_the_recipients() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, public) = age_key(tmp.path());
    let sealer = Sealer::new(vec![Recipient::parse(&public).unwrap()], None).unwrap();
    let path = write(tmp.path(), "2026-11-22T10:15:00Z", Some(sealer));
    let expected = Recipient::parse(&public).unwrap().info().fingerprint;

    let other = tmp.path().join("other.txt");
    private_file(&other, expose(&generate_identity("now").0));
    let err = Backup::open_with(&path, &keys_from(&other)).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            &err,
            ArchiveError::Locked {
                source: UnlockError::NoMatchingIdentity { .. },
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.contains(&expected) && text.contains("other.txt"),
        "{text}"
    );

    let err = Backup::open_with(&path, &Keys::default()).unwrap_err();
    assert!(err.to_string().contains("no identity was given"), "{err}");
}

/// Changes one byte of member `member` of `path`: in its middle, or its last byte.
fn flip(path: &Path, member: &str, last: bool) {
    let backup = Backup::open(path).unwrap();
    let m = backup.member(member).unwrap().clone();
    let mut bytes = fs::read(path).unwrap();
    let offset = if last { m.size - 1 } else { m.size / 2 };
    let at = usize::try_from(m.data_offset + offset).unwrap();
    bytes[at] ^= 0x55;
    fs::write(path, &bytes).unwrap();
}

#[test]
fn a_changed_byte_is_found_with_and_without_the_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = age_key(tmp.path());
    // In the middle of the data, and in the last chunk's authentication tag.
    for (n, last) in [(0, false), (1, true)] {
        let sealer = Sealer::new(vec![Recipient::parse(&public).unwrap()], None).unwrap();
        let path = write(tmp.path(), &format!("2026-11-22T10:15:0{n}Z"), Some(sealer));
        let before = Backup::open_with(&path, &keys_from(&key)).unwrap();
        assert!(before.verify().unwrap().is_ok());
        flip(&path, "volumes/db.tar.zst.age", last);

        let locked = Backup::open(&path).unwrap().verify().unwrap();
        assert!(
            locked
                .problems
                .iter()
                .any(|p| p.kind == ProblemKind::Sha256Mismatch),
            "{:#?}",
            locked.problems
        );
        let report = Backup::open_with(&path, &keys_from(&key))
            .unwrap()
            .verify()
            .unwrap();
        let kinds: Vec<_> = report.problems.iter().map(|p| p.kind).collect();
        assert!(
            kinds.contains(&ProblemKind::Decrypt),
            "{:#?}",
            report.problems
        );
        assert!(
            kinds.contains(&ProblemKind::Sha256Mismatch),
            "{:#?}",
            report.problems
        );
        // A restore that verified before the change still refuses to pass the changed bytes on.
        let err = before.volume_stream("db").unwrap().finish().unwrap_err();
        assert!(
            matches!(
                err,
                ArchiveError::Decrypt { .. } | ArchiveError::Changed { .. }
            ),
            "{err}"
        );
    }
}

#[test]
fn a_cut_short_file_is_not_a_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, public) = age_key(tmp.path());
    let sealer = Sealer::new(vec![Recipient::parse(&public).unwrap()], None).unwrap();
    let path = write(tmp.path(), "2026-11-22T10:15:00Z", Some(sealer));
    let len = fs::metadata(&path).unwrap().len();
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 2).unwrap();
    let err = Backup::open(&path).unwrap_err();
    assert!(matches!(err, ArchiveError::NotABackup { .. }), "{err}");
}
