//! Encrypted backups against a real engine: `key init` makes the project's key, `x-persist: {encrypt: …}`
//! encrypts every backup to its public key on both data paths, the file holds no secret in the clear (a
//! password in a volume's driver options, a label, a file's content), `verify` checks what it can without
//! the identity and everything with it, a restore needs the identity and puts the data back exactly — the
//! volume recreated with its sealed driver options — and the `age` CLI decrypts a member to the bytes of
//! a plain backup's member. A dump goes through ssh-ed25519, ssh-rsa and passphrase keys, and a wrong
//! passphrase, a key others can read and a changed byte are each refused with nothing changed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::backup::{exec, host_sh, manifest, member_names, printed_path};
use crate::restore::{TORTURE, exec_db, tree_digest};
use crate::support::{TestEnv, volume_entry};

const PGDATA: &str = "/var/lib/postgresql/data";
const DRIVER_PASSWORD: &str = "drvpass-Wq7Zk2Lm";
const LABEL_SECRET: &str = "labelsecret-Pb4Nx8Rt";
const FILE_SECRET: &str = "filesecret-Hs6Cv1Qy";

const PROJECT: &str = r#"
x-persist:
  encrypt:
    recipients: ["file:./keys/backup.key.pub"]
services:
  db:
    image: postgres:16
    volumes:
      - dbdata:/var/lib/postgresql/data
      - creds:/creds
volumes:
  dbdata:
    labels:
      persist.test.run: "{{RUN}}"
      app.secret: "{{LABEL}}"
  creds:
    labels:
      persist.test.run: "{{RUN}}"
    driver_opts:
      type: none
      o: "bind,password={{PASSWORD}}"
      device: "{{CREDS}}"
"#;

fn utf8(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The project with its key made by `key init`, up, with a secret in a file of each volume.
fn up_encrypted(env: &TestEnv) -> PathBuf {
    let creds = env.project_dir.join("creds-device");
    fs::create_dir_all(&creds).unwrap();
    env.write_project(
        &PROJECT
            .replace("{{LABEL}}", LABEL_SECRET)
            .replace("{{PASSWORD}}", DRIVER_PASSWORD)
            .replace("{{CREDS}}", utf8(&creds)),
        None,
    );
    let init = env.persist(["key", "init", "keys/backup.key"]);
    init.assert_success()
        .assert_stderr_contains("cannot be read by anyone");
    let key = env.project_dir.join("keys/backup.key");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let public = fs::read_to_string(key.with_extension("key.pub")).unwrap();
    assert_eq!(init.stdout().trim(), public.trim());
    assert!(public.starts_with("age1"), "{public}");
    // Never replaced.
    env.persist(["key", "init", "keys/backup.key"])
        .assert_code(3);

    env.compose_v2(["up", "-d"]).assert_success();
    exec_db(env, TORTURE, PGDATA);
    exec(
        env,
        "db",
        &format!(
            "echo 'token={FILE_SECRET}' > {PGDATA}/secret.txt; echo 'pw={FILE_SECRET}' > /creds/app.conf"
        ),
    );
    key
}

fn trees(env: &TestEnv) -> [String; 2] {
    [tree_digest(env, PGDATA), tree_digest(env, "/creds")]
}

#[track_caller]
fn assert_no_secret_in(file: &Path) {
    let bytes = fs::read(file).unwrap();
    for secret in [DRIVER_PASSWORD, LABEL_SECRET, FILE_SECRET] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "`{secret}` is in the clear in {}",
            file.display()
        );
    }
    // And grep agrees.
    let grep = std::process::Command::new("grep")
        .args([
            "-a",
            "-c",
            "-e",
            DRIVER_PASSWORD,
            "-e",
            LABEL_SECRET,
            "-e",
            FILE_SECRET,
        ])
        .arg(file)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&grep.stdout).trim(), "0");
}

/// `tar -xOf FILE MEMBER [| age -d -i KEY] | zstd -d`, as docs/format.md tells a user to run it.
#[track_caller]
fn member_plain(env: &TestEnv, file: &Path, member: &str, key: Option<&Path>) -> Vec<u8> {
    let ran = match key {
        Some(k) => host_sh(
            env,
            r#"tar -xOf "$1" "$2" | age -d -i "$3" | zstd -d -q"#,
            &[utf8(file), member, utf8(k)],
        ),
        None => host_sh(
            env,
            r#"tar -xOf "$1" "$2" | zstd -d -q"#,
            &[utf8(file), member],
        ),
    };
    ran.assert_success();
    ran.output.stdout
}

#[test]
fn encrypted_backups_round_trip_on_both_data_paths_with_no_secret_in_the_clear() {
    let env = TestEnv::with_static_plugin();
    let key = up_encrypted(&env);
    let before = trees(&env);

    for path in ["fast", "universal"] {
        let ran = env.persist(["backup", "-v", "--path", path]);
        let file = printed_path(&ran);
        ran.assert_stderr_contains("encrypted to SHA256:");
        let names = member_names(&file);
        assert_eq!(
            names,
            [
                "compose/compose.yaml.age",
                "volumes/dbdata.tar.zst.age",
                "volumes/creds.tar.zst.age",
                "manifest.json"
            ],
            "{ran}"
        );
        assert_no_secret_in(&file);
        // The readable manifest lists it, with no sealed field.
        let m = manifest(&env, &file);
        let v = volume_entry(&m, "creds");
        assert!(
            v.get("driver_opts").is_none() && v.get("labels").is_none(),
            "{m:#}"
        );
        assert!(v["entries"].as_u64().unwrap() > 0, "{m:#}");
        assert_eq!(m["encryption"]["recipients"][0]["kind"], "x25519");
        let listed = env.persist(["backups"]);
        listed
            .assert_success()
            .assert_stdout_contains(file.file_name().unwrap().to_str().unwrap());

        // verify: without the identity, what it can; with it, everything.
        env.persist(["verify", utf8(&file)])
            .assert_success()
            .assert_stderr_contains("checked without the identity");
        env.persist(["verify", "--identity", utf8(&key), utf8(&file)])
            .assert_success()
            .assert_stderr_contains("every checksum and digest matches");
        env.persist(["verify", "--restore-test", utf8(&file)])
            .assert_code(1)
            .assert_stderr_contains("`--restore-test` needs to decrypt");
        env.persist([
            "verify",
            "--restore-test",
            "--path",
            path,
            "--identity",
            utf8(&key),
            utf8(&file),
        ])
        .assert_success()
        .assert_stderr_contains("matches");

        // The age CLI reads a member, and it is what a plain backup of the same data holds.
        let plain = printed_path(&env.persist(["backup", "--no-encrypt", "--path", path]));
        let tar = member_plain(&env, &file, "volumes/dbdata.tar.zst.age", Some(&key));
        assert!(tar == member_plain(&env, &plain, "volumes/dbdata.tar.zst", None));
        fs::remove_file(&plain).unwrap();

        // Restore: refused without the identity, nothing changed; exact with it.
        exec_db(
            &env,
            "set -e; echo changed > \"$1/secret.txt\"; rm -f /creds/app.conf",
            PGDATA,
        );
        let changed = trees(&env);
        env.persist(["restore", "--yes", "--no-safety-backup", utf8(&file)])
            .assert_code(1)
            .assert_stderr_contains("no identity was given")
            .assert_stderr_contains("--identity FILE");
        assert_eq!(trees(&env), changed);
        let ran = env.persist([
            "restore",
            "--yes",
            "-v",
            "--path",
            path,
            "--identity",
            utf8(&key),
            utf8(&file),
        ]);
        ran.assert_success();
        assert_eq!(
            trees(&env),
            before,
            "after restoring through the {path} path\n{ran}"
        );
        // Its safety backup is encrypted to the project's key as well.
        let safety: Vec<PathBuf> = crate::restore::backups_in(&env.project_dir.join("backups"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("pre-restore"))
            .collect();
        assert!(!safety.is_empty());
        for s in &safety {
            assert_no_secret_in(s);
            fs::remove_file(s).unwrap();
        }
    }

    // After `down -v`, the volumes are recreated from the sealed driver options and labels.
    let file = printed_path(&env.persist(["backup", "--path", "universal"]));
    env.compose_v2(["down", "-v"]).assert_success();
    env.persist(["restore", "--yes", "--identity", utf8(&key), utf8(&file)])
        .assert_success();
    let creds = format!("{}_creds", env.project);
    let inspect = env.docker(["volume", "inspect", "--format", "{{json .Options}}", &creds]);
    inspect
        .assert_success()
        .assert_stdout_contains(DRIVER_PASSWORD);
    assert_eq!(
        env.volume_labels(&format!("{}_dbdata", env.project))
            .unwrap()
            .get("app.secret")
            .map(String::as_str),
        Some(LABEL_SECRET)
    );
    env.compose_v2(["up", "-d"]).assert_success();
    assert_eq!(trees(&env), before);
}

/// Changes the byte in the middle of `member` of the backup `file`.
fn flip_middle(file: &Path, member: &str) {
    let mut archive = tar::Archive::new(fs::File::open(file).unwrap());
    let (offset, size) = archive
        .entries_with_seek()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path_bytes().as_ref() == member.as_bytes())
        .map(|e| (e.raw_file_position(), e.size()))
        .unwrap();
    let mut bytes = fs::read(file).unwrap();
    bytes[usize::try_from(offset + size / 2).unwrap()] ^= 0xff;
    fs::write(file, bytes).unwrap();
}

/// Makes an ssh key with `ssh-keygen` in the project directory: (private key, public key line).
/// The kinds of the recipients a manifest lists, in order.
fn recipient_kinds(m: &serde_json::Value) -> Vec<&str> {
    m["encryption"]["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect()
}

fn ssh_key(env: &TestEnv, kind: &str) -> (PathBuf, String) {
    let key = env.project_dir.join(format!("id_{kind}"));
    let bits: &[&str] = if kind == "rsa" { &["-b", "2048"] } else { &[] };
    let mut cmd = env.command("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", "", "-C", "throwaway", "-f"])
        .arg(&key)
        .args(bits);
    env.run(cmd).assert_success();
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

#[test]
fn a_dump_round_trips_through_ssh_keys_and_a_passphrase_and_bad_keys_change_nothing() {
    let env = TestEnv::new();
    let (sql, _) = crate::dumps::start(&env, crate::dumps::PROJECT);
    let (ed, _) = ssh_key(&env, "ed25519");
    let (rsa, rsa_public) = ssh_key(&env, "rsa");
    let pass = env.project_dir.join("pass");
    fs::write(&pass, "correct horse battery staple\n").unwrap();

    let ran = env.persist([
        "backup",
        "--encrypt-to",
        "file:id_ed25519.pub",
        "--encrypt-to",
        &rsa_public,
        "--passphrase-file",
        utf8(&pass),
        "dbdata",
    ]);
    let file = printed_path(&ran);
    assert_eq!(
        member_names(&file),
        [
            "compose/compose.yaml.age",
            "dumps/db.sql.zst.age",
            "manifest.json"
        ]
    );
    let m = manifest(&env, &file);
    let kinds = recipient_kinds(&m);
    assert_eq!(kinds, ["ssh-ed25519", "ssh-rsa", "passphrase"]);
    assert!(m["dumps"][0].get("content_sha256").is_none(), "{m:#}");
    // The age CLI decrypts the dump with the ssh key to exactly what pg_dumpall wrote.
    assert!(member_plain(&env, &file, "dumps/db.sql.zst.age", Some(&ed)) == sql);

    let stdin_of_psql = || {
        let r = env.docker([
            "exec",
            &env.service_container("db"),
            "cat",
            "/tmp/psql.stdin",
        ]);
        r.output.stdout.clone()
    };
    let clear_psql = || {
        exec(&env, "db", "rm -f /tmp/psql.stdin");
    };

    // Each kind of key loads the dump.
    for keys in [
        vec!["--identity", utf8(&rsa)],
        vec!["--identity", utf8(&ed)],
        vec!["--passphrase-file", utf8(&pass)],
    ] {
        clear_psql();
        let mut args = vec!["restore", "--yes", "--no-safety-backup"];
        args.extend(keys.iter().copied());
        args.extend([utf8(&file), "dbdata"]);
        let ran = env.persist(&args);
        ran.assert_success();
        assert!(stdin_of_psql() == sql, "{keys:?}\n{ran}");
    }
    env.persist(["verify", "--identity", utf8(&ed), utf8(&file)])
        .assert_success();

    // A wrong passphrase, a key others can read, a changed byte: refused, nothing loaded.
    clear_psql();
    let wrong = env.project_dir.join("wrong");
    fs::write(&wrong, "wrong horse\n").unwrap();
    env.persist([
        "restore",
        "--yes",
        "--passphrase-file",
        utf8(&wrong),
        utf8(&file),
        "dbdata",
    ])
    .assert_code(1)
    .assert_stderr_contains("the passphrase does not match");
    let open = env.project_dir.join("id_open");
    fs::copy(&ed, &open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o644)).unwrap();
    env.persist([
        "restore",
        "--yes",
        "--identity",
        utf8(&open),
        utf8(&file),
        "dbdata",
    ])
    .assert_code(1)
    .assert_stderr_contains("can be read by others (mode 0644)")
    .assert_stderr_contains("--insecure-identity");
    env.persist([
        "verify",
        "--insecure-identity",
        "--identity",
        utf8(&open),
        utf8(&file),
    ])
    .assert_success();
    flip_middle(&file, "dumps/db.sql.zst.age");
    env.persist(["verify", "--identity", utf8(&ed), utf8(&file)])
        .assert_code(1)
        .assert_stderr_contains("does not decrypt");
    env.persist([
        "restore",
        "--yes",
        "--identity",
        utf8(&ed),
        utf8(&file),
        "dbdata",
    ])
    .assert_code(1)
    .assert_stderr_contains("nothing was changed");
    assert!(stdin_of_psql().is_empty());
}

/// A destination with recipients of its own (the project has none): the one file written for it is
/// encrypted to them, the destination's copy decrypts with their identity through the `age` CLI, and
/// restores with it; `--no-encrypt` sends it plain, and a destination that requires encryption without
/// any recipient anywhere refuses a plain backup before anything is stopped.
#[test]
fn a_destination_with_its_own_recipients_gets_its_copy_encrypted_to_them() {
    let env = TestEnv::new();
    let offsite = env.project_dir.join("offsite");
    let strict = env.project_dir.join("strict");
    let (ed, _) = ssh_key(&env, "ed25519");
    let compose = format!(
        "{}x-persist:\n  destinations:\n    offsite:\n      url: {}\n      encrypt:\n        recipients: [\"file:./id_ed25519.pub\"]\n    strict:\n      url: {}\n      require_encryption: true\n",
        crate::restore::PROJECT,
        utf8(&offsite),
        utf8(&strict)
    );
    crate::restore::up_with_data(&env);
    env.write_project(&compose, None);
    let before = tree_digest(&env, PGDATA);

    let ran = env.persist(["backup", "--to", "offsite", "dbdata"]);
    ran.assert_success();
    let local = printed_path(&ran);
    let copies = crate::restore::backups_in(&offsite);
    assert_eq!(copies.len(), 1, "{ran}");
    assert_eq!(
        fs::read(&copies[0]).unwrap(),
        fs::read(&local).unwrap(),
        "the destination holds the local file"
    );
    assert_eq!(
        member_names(&copies[0]),
        [
            "compose/compose.yaml.age",
            "volumes/dbdata.tar.zst.age",
            "manifest.json"
        ],
        "{ran}"
    );
    let m = manifest(&env, &copies[0]);
    let kinds = recipient_kinds(&m);
    assert_eq!(kinds, ["ssh-ed25519"], "{m:#}");
    // The destination's key holder reads it by hand, and restores it.
    let tar = member_plain(&env, &copies[0], "volumes/dbdata.tar.zst.age", Some(&ed));
    assert!(
        tar.windows(10).any(|w| w == b"random.bin"),
        "{} bytes",
        tar.len()
    );
    exec_db(&env, "rm -rf \"$1\"/*", PGDATA);
    env.persist(["restore", "--yes", "--no-safety-backup", utf8(&copies[0])])
        .assert_code(1)
        .assert_stderr_contains("no identity was given");
    env.persist([
        "restore",
        "--yes",
        "--no-safety-backup",
        "--identity",
        utf8(&ed),
        utf8(&copies[0]),
        "dbdata",
    ])
    .assert_success();
    assert_eq!(tree_digest(&env, PGDATA), before);

    // `--no-encrypt`: plain, as asked.
    let ran = env.persist(["backup", "--no-encrypt", "--to", "offsite", "dbdata"]);
    ran.assert_success();
    let plain = printed_path(&ran);
    assert_eq!(
        member_names(&plain),
        [
            "compose/compose.yaml",
            "volumes/dbdata.tar.zst",
            "manifest.json"
        ]
    );

    // `require_encryption: true` and nobody to encrypt to: refused before the service is stopped.
    let started_at = || {
        env.docker([
            "inspect",
            "-f",
            "{{.State.StartedAt}}",
            &env.service_container("db"),
        ])
        .stdout()
        .trim()
        .to_string()
    };
    let started = started_at();
    env.persist(["backup", "--to", "strict", "dbdata"])
        .assert_code(3)
        .assert_stderr_contains("requires encryption");
    assert!(crate::restore::backups_in(&strict).is_empty());
    assert_eq!(started_at(), started);
}
