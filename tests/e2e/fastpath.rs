//! The local fast path against a real engine: a static build packs and unpacks volumes on disk through its
//! own helper image; both paths make the same backup of a torture tree and every backup restores exactly
//! through either; a dynamic build, or an engine whose bind mounts do not reach the helper's socket
//! directory, falls back to the universal path; helpers and their socket directories never outlive the
//! command.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::restore::{PROJECT, exec_db, helpers_on, tree_digest, up_with_data};
use crate::support::{Ran, TestEnv, volume_entry};

const PGDATA: &str = "/var/lib/postgresql/data";

fn printed_path(ran: &Ran) -> PathBuf {
    ran.assert_success();
    let path = PathBuf::from(ran.stdout().lines().last().unwrap_or_default().trim());
    assert!(path.is_file(), "backup printed {path:?}\n{ran}");
    path
}

/// `backup -v --path PATH`; checks that the path asked for was the one used.
fn backup_with(env: &TestEnv, path: &str) -> PathBuf {
    let ran = env.persist(["backup", "-v", "--path", path]);
    let file = printed_path(&ran);
    let expected = match path {
        "fast" => "reading `dbdata` on the fast path",
        _ => "reading `dbdata` through the engine's archive API",
    };
    assert!(ran.stderr().contains(expected), "{ran}");
    file
}

fn manifest(env: &TestEnv, file: &Path) -> Value {
    let ran = env.run({
        let mut c = env.command("tar");
        c.arg("-xOf").arg(file).arg("manifest.json");
        c
    });
    ran.assert_success();
    serde_json::from_str(&ran.stdout()).unwrap()
}

/// The fields of a volume record that both paths must agree on.
fn content_of(manifest: &Value, key: &str) -> Value {
    let r = volume_entry(manifest, key);
    serde_json::json!({
        "content_digest": r["content_digest"],
        "entries": r["entries"],
        "file_bytes": r["file_bytes"],
        "symlink_bytes": r["symlink_bytes"],
        "uncompressed_bytes_nonzero": r["uncompressed_bytes"].as_u64().unwrap_or(0) > 0,
    })
}

/// Helper containers that name this sandbox's processes, and socket directories left in `tmp`.
fn leftovers(env: &TestEnv, tmp: &Path) -> Vec<String> {
    let mut found: Vec<String> = ["dbdata"]
        .iter()
        .map(|v| helpers_on(env, &format!("{}_{v}", env.project)))
        .filter(|h| !h.is_empty())
        .collect();
    if let Ok(dir) = std::fs::read_dir(tmp) {
        found.extend(
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("docker-persist-io-")),
        );
    }
    found
}

/// The tree digests of the database volume and the uploads bind mount.
fn trees(env: &TestEnv) -> [String; 2] {
    [tree_digest(env, PGDATA), tree_digest(env, "/uploads")]
}

/// Changes both trees so that the restore has something to undo, restores `file` through `path`, and
/// checks that both trees are `before` again and that `path` was the one used.
fn change_then_restore_exactly(env: &TestEnv, file: &Path, path: &str, before: &[String; 2]) {
    exec_db(
        env,
        "set -e; echo changed > \"$1/owned\"; rm -rf /uploads/a; echo new > /uploads/new",
        PGDATA,
    );
    assert_ne!(tree_digest(env, PGDATA), before[0]);
    let ran = env.persist([
        "restore",
        "--yes",
        "--no-safety-backup",
        "-v",
        "--path",
        path,
        file.to_str().unwrap(),
    ]);
    ran.assert_success();
    let how = if path == "fast" {
        "writing `dbdata` on the fast path"
    } else {
        "writing `dbdata` through the engine's archive API"
    };
    assert!(ran.stderr().contains(how), "{ran}");
    let made_by = file.file_name().unwrap().to_string_lossy();
    assert_eq!(
        &trees(env),
        before,
        "dbdata and uploads after restoring {made_by} through the {path} path"
    );
}

#[test]
fn both_paths_back_up_the_same_tree_and_every_backup_restores_exactly_through_either() {
    let env = TestEnv::with_static_plugin();
    up_with_data(&env);
    let before = trees(&env);

    let fast = backup_with(&env, "fast");
    let universal = backup_with(&env, "universal");
    let (mf, mu) = (manifest(&env, &fast), manifest(&env, &universal));
    for key in ["dbdata", "./uploads"] {
        assert_eq!(
            content_of(&mf, key),
            content_of(&mu, key),
            "`{key}` differs between the paths"
        );
    }

    for (file, path) in [
        (&fast, "fast"),
        (&fast, "universal"),
        (&universal, "fast"),
        (&universal, "universal"),
    ] {
        change_then_restore_exactly(&env, file, path, &before);
    }

    // The restore test of `verify` runs on the fast path too, and leaves no scratch volume.
    let ran = env.persist([
        "verify",
        "--restore-test",
        "-v",
        "--path",
        "fast",
        universal.to_str().unwrap(),
    ]);
    ran.assert_success();
    assert!(
        ran.stderr().contains("writing `dbdata` on the fast path"),
        "{ran}"
    );
    let scratch = env.docker(["volume", "ls", "-q", "--filter", "label=persist.scratch"]);
    assert_eq!(scratch.stdout().trim(), "", "{scratch}");
    assert_eq!(leftovers(&env, &std::env::temp_dir()), Vec::<String>::new());
}

#[test]
fn a_dynamic_build_uses_the_universal_path_and_refuses_path_fast() {
    let env = TestEnv::new();
    env.write_project(PROJECT, None);
    std::fs::create_dir_all(env.project_dir.join("uploads")).unwrap();
    env.compose_v2(["up", "-d"]).assert_success();
    exec_db(&env, "echo x > \"$1/x\"", PGDATA);

    let ran = env.persist(["backup", "-v", "dbdata"]);
    printed_path(&ran);
    assert!(
        ran.stderr()
            .contains("data path: universal, because this docker-persist is dynamically linked"),
        "{ran}"
    );

    let dir = env.project_dir.join("backups");
    let files_before = std::fs::read_dir(&dir).unwrap().count();
    let ran = env.persist(["backup", "--path", "fast", "dbdata"]);
    ran.assert_code(1);
    assert!(
        ran.stderr()
            .contains("`--path fast` cannot be used: this docker-persist is dynamically linked"),
        "{ran}"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), files_before);
}

/// Runs `docker persist ARGS` in a mount namespace of its own where `tmp` is a private tmpfs: the
/// helper's socket directory is then invisible to the engine, as with an engine in a VM or a sandboxed
/// one.
fn persist_with_private_tmp(env: &TestEnv, tmp: &Path, args: &[&str]) -> Ran {
    let mut cmd = env.command("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs persist-private \"$1\" && shift && TMPDIR=\"$0\" exec docker persist \"$@\"")
        .arg(tmp)
        .arg(tmp)
        .args(args);
    env.run(cmd)
}

#[test]
fn when_the_engine_cannot_reach_the_socket_directory_the_universal_path_takes_over() {
    let env = TestEnv::with_static_plugin();
    env.write_project(PROJECT, None);
    std::fs::create_dir_all(env.project_dir.join("uploads")).unwrap();
    env.compose_v2(["up", "-d"]).assert_success();
    exec_db(
        &env,
        "set -e; cd \"$1\"; echo x > x; mkdir d; echo y > d/y; chown -R 999:999 .",
        PGDATA,
    );
    let tmp = env.home.join("private-tmp");
    std::fs::create_dir_all(&tmp).unwrap();

    let ran = persist_with_private_tmp(&env, &tmp, &["backup", "-v", "dbdata"]);
    let fell_back = printed_path(&ran);
    // The engine refuses a bind mount of a directory it cannot see (the helper never runs); had it
    // mounted an empty stand-in, the helper would have failed to connect. Either way: the universal path.
    let stderr = ran.stderr();
    assert!(
        stderr.contains(
            "data path: universal from now on, because a helper container could not be created"
        ) || stderr.contains("data path: universal from now on, because the helper exited"),
        "{ran}"
    );
    assert!(
        ran.stderr()
            .contains("reading `dbdata` through the engine's archive API"),
        "{ran}"
    );
    // The same data as the fast path reads.
    let fast = backup_with(&env, "fast");
    assert_eq!(
        content_of(&manifest(&env, &fell_back), "dbdata"),
        content_of(&manifest(&env, &fast), "dbdata")
    );

    // Asked for explicitly, the fast path fails clearly instead, and leaves nothing.
    let dir = env.project_dir.join("backups");
    let files_before = std::fs::read_dir(&dir).unwrap().count();
    let ran = persist_with_private_tmp(&env, &tmp, &["backup", "--path", "fast", "dbdata"]);
    ran.assert_code(1);
    assert!(
        ran.stderr().contains("`--path fast` cannot be used"),
        "{ran}"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), files_before);
    assert_eq!(leftovers(&env, &tmp), Vec::<String>::new());
}

#[test]
fn fast_backup_interrupted_by_sigint_exits_130_and_leaves_no_file_and_no_helper() {
    crate::backup::interrupted_backup_leaves_nothing_behind(
        TestEnv::with_static_plugin(),
        "INT",
        &["--path", "fast"],
    );
}

#[test]
fn a_damaged_backup_restored_into_a_missing_volume_leaves_no_volume_on_either_path() {
    let env = TestEnv::with_static_plugin();
    up_with_data(&env);
    let file = backup_with(&env, "fast");
    env.compose_v2(["down", "-v"]).assert_success();
    let volume = format!("{}_dbdata", env.project);
    assert!(env.volume_labels(&volume).is_none());

    // One flipped byte deep in the volume member: the restore streams into a new volume (no verification
    // pass first, nothing to protect) and must notice, fail, and remove that volume again.
    let mut bytes = std::fs::read(&file).unwrap();
    let header = bytes
        .windows(b"volumes/dbdata.tar.zst".len())
        .position(|w| w == b"volumes/dbdata.tar.zst")
        .expect("member header");
    let member_start = header + 512;
    bytes[member_start + 20_000] ^= 0x20;
    let damaged = env.project_dir.join("damaged.tar");
    std::fs::write(&damaged, &bytes).unwrap();
    for path in ["fast", "universal"] {
        let ran = env.persist([
            "restore",
            "--yes",
            "-v",
            "--path",
            path,
            damaged.to_str().unwrap(),
            "dbdata",
        ]);
        ran.assert_code(1);
        assert!(
            ran.stderr().contains(&format!(
                "volume `{volume}` did not exist before and was removed again"
            )),
            "{path}: {ran}"
        );
        assert!(
            env.volume_labels(&volume).is_none(),
            "{path}: the damaged restore left the volume"
        );
        assert_eq!(helpers_on(&env, &volume), "", "{path}");
    }

    // The intact backup restores, and `up` runs on it.
    env.persist(["restore", "--yes", file.to_str().unwrap(), "dbdata"])
        .assert_success();
    assert!(env.volume_labels(&volume).is_some());
}

/// A copy of `file` as a backup written before `tree-v2` has it: the same members, and in the manifest
/// each volume's `tree-v1` digest, computed from its member.
fn with_tree_v1_digests(file: &Path) -> PathBuf {
    use docker_persist::archive::digest::{DigestOptions, DigestVersion, digest_tar};
    use docker_persist::archive::{ContentDigest, Manifest};
    use std::io::Read as _;

    let mut members: Vec<(tar::Header, String, Vec<u8>)> = Vec::new();
    let mut archive = tar::Archive::new(std::fs::File::open(file).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        members.push((entry.header().clone(), name, data));
    }
    let v1_of = |member: &str, prefix: Option<&str>| -> ContentDigest {
        let (_, _, data) = members.iter().find(|(_, n, _)| n == member).unwrap();
        let options = DigestOptions::new(prefix)
            .unwrap()
            .with_version(DigestVersion::V1);
        let tar = zstd::decode_all(&data[..]).unwrap();
        digest_tar(&tar[..], &options).unwrap().digest
    };
    let (_, _, json) = members
        .iter()
        .find(|(_, n, _)| n == "manifest.json")
        .unwrap();
    let mut manifest: Manifest = serde_json::from_slice(json).unwrap();
    for v in &mut manifest.volumes {
        assert_eq!(v.digest_version(), DigestVersion::V2);
        v.content_digest = Some(v1_of(&v.member, v.tar_prefix.as_deref()));
    }
    let json = serde_json::to_vec_pretty(&manifest).unwrap();

    let copy = file.with_file_name(format!(
        "{}-tree-v1.tar",
        file.file_stem().unwrap().to_string_lossy()
    ));
    let mut builder = tar::Builder::new(std::fs::File::create(&copy).unwrap());
    for (mut header, name, data) in members {
        let data = if name == "manifest.json" {
            json.clone()
        } else {
            data
        };
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, &data[..]).unwrap();
    }
    builder.into_inner().unwrap();
    copy
}

#[test]
fn a_backup_with_tree_v1_digests_verifies_and_restores_exactly_through_either_path() {
    let env = TestEnv::with_static_plugin();
    up_with_data(&env);
    let before = trees(&env);
    let v1 = with_tree_v1_digests(&backup_with(&env, "fast"));
    let digests = manifest(&env, &v1);
    assert!(
        volume_entry(&digests, "dbdata")["content_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("tree-v1:")),
        "{digests:#}"
    );

    env.persist(["verify", v1.to_str().unwrap()])
        .assert_success()
        .assert_stderr_contains("is intact");
    for path in ["fast", "universal"] {
        // The read-back digest is compared with the manifest's v1 digest: a v2 read-back would differ.
        change_then_restore_exactly(&env, &v1, path, &before);
        env.persist([
            "verify",
            "--restore-test",
            "--path",
            path,
            v1.to_str().unwrap(),
        ])
        .assert_success();
    }
}
