//! `migrate VOLUME --to PATH` and `migrate --rollback VOLUME` against real projects, with Compose v1 and
//! v2 and both data paths: a torture tree moves into a host directory and a plain `up -d` mounts it with
//! the same tree; the rollback brings the changes made there back into the volume; a copy that fails on a
//! full file system leaves the service running on its volume with nothing changed; refusals change nothing.

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;

use crate::restore::{TORTURE, helpers_on};
use crate::support::{Ran, SmallTmpfs, TestEnv, tree_digest_in_container, volume_entry};

const PGDATA: &str = "/var/lib/postgresql/data";

const PROJECT: &str = r#"
services:
  db:
    image: postgres:16
    # the data directory
    volumes:
      - dbdata:/var/lib/postgresql/data
volumes:
  dbdata:
    labels:
      persist.test.run: "{{RUN}}"
"#;

/// Which Compose drives a test.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Compose {
    V1,
    V2,
}

fn compose(env: &TestEnv, which: Compose, args: &[&str]) -> Ran {
    match which {
        Compose::V1 => env.compose_v1(args),
        Compose::V2 => env.compose_v2(args),
    }
}

/// Runs a script in the `db` container (busybox sh), `$1` = `arg`.
fn exec_db(env: &TestEnv, script: &str, arg: &str) {
    let id = env.service_container("db");
    env.docker(["exec", &id, "sh", "-c", script, "sh", arg])
        .assert_success();
}

/// The project up with `which`, and the torture tree in its database volume.
fn up_with_torture(env: &TestEnv, which: Compose) {
    env.write_project(PROJECT, None);
    compose(env, which, &["up", "-d"]).assert_success();
    exec_db(env, TORTURE, PGDATA);
}

/// The mounts of the `db` container at the data directory: (type, source, name).
fn data_mount(env: &TestEnv) -> (String, String, String) {
    let id = env.service_container("db");
    let ran = env.docker([
        "inspect",
        "--format",
        "{{range .Mounts}}{{if eq .Destination \"/var/lib/postgresql/data\"}}{{.Type}}|{{.Source}}|{{.Name}}{{end}}{{end}}",
        &id,
    ]);
    ran.assert_success();
    let out = ran.stdout().trim().to_string();
    let parts: Vec<&str> = out.split('|').collect();
    assert_eq!(parts.len(), 3, "mount of db: {out:?}");
    (
        parts[0].to_string(),
        parts[1].to_string(),
        parts[2].to_string(),
    )
}

/// The service runs on its volume with the tree it had, and no helper is left on the volume.
#[track_caller]
fn still_on_its_volume(env: &TestEnv, before: &str, context: &dyn std::fmt::Display) {
    let volume = format!("{}_dbdata", env.project);
    assert!(running(env), "the service runs again\n{context}");
    let (kind, _, name) = data_mount(env);
    assert_eq!((kind.as_str(), name.as_str()), ("volume", volume.as_str()));
    assert_eq!(tree_digest_in_container(env, "db", PGDATA), before);
    assert!(helpers_on(env, &volume).is_empty());
}

fn running(env: &TestEnv) -> bool {
    let id = env.service_container("db");
    let ran = env.docker(["inspect", "--format", "{{.State.Running}}", &id]);
    ran.assert_success();
    ran.stdout().trim() == "true"
}

fn backups_tagged(env: &TestEnv, tag: &str) -> Vec<PathBuf> {
    std::fs::read_dir(env.project_dir.join("backups"))
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(&format!("-{tag}.tar")))
                .collect()
        })
        .unwrap_or_default()
}

fn override_file(env: &TestEnv) -> PathBuf {
    env.project_dir.join("compose.override.yaml")
}

/// The whole round trip: migrate with `path`, `up -d` with `which`, change the data in the directory,
/// roll back, `up -d` again.
fn migrate_and_roll_back(which: Compose, path: &str) {
    let env = TestEnv::with_static_plugin();
    up_with_torture(&env, which);
    let before = tree_digest_in_container(&env, "db", PGDATA);
    let volume = format!("{}_dbdata", env.project);
    let target = env.project_dir.join("srv").join("pgdata");
    let to = target.to_str().unwrap();

    let ran = env.persist([
        "migrate", "dbdata", "--to", to, "--yes", "-v", "--path", path,
    ]);
    ran.assert_success();
    let how = if path == "fast" {
        "on the fast path"
    } else {
        "through the engine's archive API"
    };
    assert!(
        ran.stderr()
            .contains(&format!("copying `dbdata` → `{to}` {how}")),
        "{ran}"
    );
    assert_eq!(backups_tagged(&env, "pre-migrate").len(), 1, "{ran}");

    // A plain `up -d` keeps it there, and the service sees the same tree.
    compose(&env, which, &["up", "-d"]).assert_success();
    let (kind, source, _) = data_mount(&env);
    assert_eq!((kind.as_str(), source.as_str()), ("bind", to));
    assert_eq!(tree_digest_in_container(&env, "db", PGDATA), before);
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (999, 999));
    assert_eq!(meta.mode() & 0o7777, 0o700);
    let owned = std::fs::metadata(target.join("owned")).unwrap();
    assert_eq!((owned.uid(), owned.mode() & 0o7777), (999, 0o600));
    let text = std::fs::read_to_string(override_file(&env)).unwrap();
    assert!(
        text.starts_with("# Written by `docker persist migrate`"),
        "{text}"
    );
    // The user's file is untouched, comment included.
    let main = std::fs::read_to_string(env.project_dir.join("compose.yaml")).unwrap();
    assert_eq!(main, env.render(PROJECT));

    // ls shows the bind and the volume left over.
    let ls = env.persist(["ls", "--json"]);
    ls.assert_success();
    let doc = ls.json();
    let bind = volume_entry(&doc, to);
    assert_eq!(bind["kind"], "bind");
    assert_eq!(bind["migrated_from"], "dbdata");
    assert_eq!(bind["tier"], "critical");
    let left = volume_entry(&doc, "dbdata");
    assert_eq!(left["left_over_from_migration"], to);
    assert_eq!(left["name"], volume.as_str());

    let inspect = env.persist(["inspect", "dbdata"]);
    inspect.assert_success();
    inspect.assert_stdout_contains(&format!("its data was migrated to `{to}`"));
    // clean names it as left over, and needs no fresh backup of it (the directory holds the data).
    let clean = env.persist(["clean", "--dry-run", "dbdata"]);
    clean.assert_success();
    clean.assert_stdout_contains(&format!(
        "left over by `migrate`: its data is in `{to}` now"
    ));
    let clean = env.persist(["clean", "--dry-run", "--json", "dbdata"]);
    clean.assert_success();
    let doc = clean.json();
    assert_eq!(doc["volumes"][0]["key"], "dbdata", "{doc:#}");
    assert_eq!(doc["volumes"][0]["left_over_from_migration"], to, "{doc:#}");
    // Migrated once; a second time needs a rollback first.
    let again = env.persist(["migrate", "dbdata", "--to", "/srv/elsewhere", "--yes"]);
    again.assert_code(2);
    again.assert_stderr_contains("--rollback");

    // Changes made in the directory go back into the volume.
    exec_db(
        &env,
        "set -e; echo after > \"$1/after-migration\"; rm \"$1/other\"",
        PGDATA,
    );
    let changed = tree_digest_in_container(&env, "db", PGDATA);
    assert_ne!(changed, before);
    let ran = env.persist(["migrate", "--rollback", "dbdata", "--yes", "--path", path]);
    ran.assert_success();
    assert!(ran.stderr().contains("is left in place"), "{ran}");
    assert_eq!(backups_tagged(&env, "pre-rollback").len(), 1, "{ran}");
    assert!(!override_file(&env).exists());
    compose(&env, which, &["up", "-d"]).assert_success();
    let (kind, _, name) = data_mount(&env);
    assert_eq!((kind.as_str(), name.as_str()), ("volume", volume.as_str()));
    assert_eq!(tree_digest_in_container(&env, "db", PGDATA), changed);
    assert!(
        target.join("after-migration").exists(),
        "the directory is left in place"
    );
    assert!(helpers_on(&env, &volume).is_empty());
}

#[test]
fn torture_tree_migrates_with_compose_v1_on_the_fast_path_and_rolls_back() {
    migrate_and_roll_back(Compose::V1, "fast");
}

#[test]
fn torture_tree_migrates_with_compose_v2_on_the_universal_path_and_rolls_back() {
    migrate_and_roll_back(Compose::V2, "universal");
}

fn a_failed_copy_changes_nothing(path: &str) {
    let env = TestEnv::with_static_plugin();
    up_with_torture(&env, Compose::V2);
    let before = tree_digest_in_container(&env, "db", PGDATA);
    let volume = format!("{}_dbdata", env.project);
    let small = SmallTmpfs::new(&env.project_dir.join("small"));
    let target = small.0.join("pgdata");
    let ran = env.persist([
        "migrate",
        "dbdata",
        "--to",
        target.to_str().unwrap(),
        "--yes",
        "--path",
        path,
    ]);
    ran.assert_code(1);
    assert!(ran.stderr().contains("the services use volume"), "{ran}");
    assert!(
        ran.stderr()
            .to_lowercase()
            .contains("no space left on device"),
        "{ran}"
    );
    assert!(ran.stderr().contains("is empty again"), "{ran}");
    still_on_its_volume(&env, &before, &ran);
    assert!(!override_file(&env).exists(), "no Compose change\n{ran}");
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "what was copied is removed\n{ran}"
    );
    assert!(helpers_on(&env, &volume).is_empty());
    let ps = env.docker([
        "ps",
        "-aq",
        "--filter",
        "label=persist.helper=true",
        "--filter",
        &format!("volume={}", target.display()),
    ]);
    assert_eq!(ps.stdout().trim(), "");
    // And the volume still migrates once there is room.
    drop(small);
}

#[test]
fn a_copy_that_fills_the_file_system_leaves_the_service_on_its_volume_on_the_fast_path() {
    a_failed_copy_changes_nothing("fast");
}

#[test]
fn a_copy_that_fills_the_file_system_leaves_the_service_on_its_volume_on_the_universal_path() {
    a_failed_copy_changes_nothing("universal");
}

#[test]
fn migrate_refuses_what_it_cannot_do_safely_and_changes_nothing() {
    let env = TestEnv::new();
    env.write_project(
        r#"
services:
  db:
    image: postgres:16
    volumes:
      - dbdata:/var/lib/postgresql/data
      - shared:/shared
volumes:
  dbdata:
    labels:
      persist.test.run: "{{RUN}}"
  shared:
    external: true
    name: "{{PROJECT}}-shared"
"#,
        None,
    );
    env.volume_create(&format!("{}-shared", env.project));
    env.compose_v2(["up", "-d"]).assert_success();
    exec_db(&env, "echo x > \"$1/file\"", PGDATA);
    let volume = format!("{}_dbdata", env.project);
    let target = env.project_dir.join("full");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("keep"), "mine").unwrap();
    let to = target.to_str().unwrap();

    // A directory with files in it.
    let ran = env.persist(["migrate", "dbdata", "--to", to, "--yes"]);
    ran.assert_code(3);
    ran.assert_stderr_contains("is not empty");
    ran.assert_stderr_contains("--force");
    // An external volume without `--yes`, saying why.
    let empty = env.project_dir.join("empty");
    let ran = env.persist(["migrate", "shared", "--to", empty.to_str().unwrap()]);
    ran.assert_code(3);
    ran.assert_stderr_contains("external volume");
    ran.assert_stderr_contains("other projects or tools");
    // No terminal and no `--yes`.
    let ran = env.persist(["migrate", "dbdata", "--to", empty.to_str().unwrap()]);
    ran.assert_code(3);
    ran.assert_stderr_contains("--yes");
    // Not an absolute path; a system directory.
    env.persist(["migrate", "dbdata", "--to", "data"])
        .assert_code(2);
    let ran = env.persist(["migrate", "dbdata", "--to", "/etc/pg", "--yes"]);
    ran.assert_code(2);
    ran.assert_stderr_contains("system directory");
    // A dry run shows the plan.
    let ran = env.persist([
        "migrate",
        "dbdata",
        "--to",
        empty.to_str().unwrap(),
        "--dry-run",
    ]);
    ran.assert_success();
    ran.assert_stderr_contains("Would migrate `dbdata`");
    // A user's own override file is never edited.
    env.write_file("compose.override.yaml", "# mine\nservices: {}\n");
    let ran = env.persist([
        "migrate",
        "dbdata",
        "--to",
        empty.to_str().unwrap(),
        "--yes",
    ]);
    ran.assert_code(3);
    ran.assert_stderr_contains("your own override file");
    ran.assert_stderr_contains("type: bind");
    assert_eq!(
        std::fs::read_to_string(env.project_dir.join("compose.override.yaml")).unwrap(),
        "# mine\nservices: {}\n"
    );

    // Nothing changed.
    assert!(running(&env));
    let (kind, _, name) = data_mount(&env);
    assert_eq!((kind.as_str(), name.as_str()), ("volume", volume.as_str()));
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 1);
    assert!(!empty.exists(), "no directory created");
    assert!(backups_tagged(&env, "pre-migrate").is_empty());
}

#[test]
fn a_killed_migration_leaves_the_service_to_be_started_again_on_its_volume() {
    use std::os::unix::process::ExitStatusExt as _;
    let env = TestEnv::with_static_plugin();
    up_with_torture(&env, Compose::V2);
    let before = tree_digest_in_container(&env, "db", PGDATA);
    let target = env.project_dir.join("pgdata");
    let mut cmd = env.command(&env.binary);
    cmd.args([
        "migrate",
        "dbdata",
        "--to",
        target.to_str().unwrap(),
        "--yes",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    // The directory is made right before the copy starts: the service is stopped by then.
    let start = std::time::Instant::now();
    while !target.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the migration ended before it copied"
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(60));
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9));
    assert!(!running(&env), "the migration had stopped the service");
    assert!(!override_file(&env).exists(), "no Compose change");

    // The next command starts it again, on its volume, as it was.
    let ls = env.persist(["ls"]);
    ls.assert_success();
    ls.assert_stderr_contains("stopped it and did not finish");
    still_on_its_volume(&env, &before, &ls);
    // A second attempt finishes the job over the partial copy.
    let ran = env.persist([
        "migrate",
        "dbdata",
        "--to",
        target.to_str().unwrap(),
        "--yes",
        "--force",
    ]);
    ran.assert_success();
    assert_eq!(tree_digest_in_container(&env, "db", PGDATA), before);
}

#[test]
fn a_project_loaded_with_f_is_told_what_to_add_and_rolls_back_all_the_same() {
    let env = TestEnv::new();
    env.write_project(PROJECT, None);
    env.compose_v2(["up", "-d"]).assert_success();
    exec_db(
        &env,
        "echo data > \"$1/file\"; chown 999:999 \"$1/file\"",
        PGDATA,
    );
    let before = tree_digest_in_container(&env, "db", PGDATA);
    let target = env.project_dir.join("pgdata");
    let to = target.to_str().unwrap();

    let ran = env.persist([
        "-f",
        "compose.yaml",
        "migrate",
        "dbdata",
        "--to",
        to,
        "--yes",
    ]);
    ran.assert_success();
    ran.assert_stderr_contains("add `-f ");
    // Loaded the way the user loads it, plus the file they were told to add.
    let (kind, source, _) = data_mount(&env);
    assert_eq!((kind.as_str(), source.as_str()), ("bind", to));
    env.compose_v2([
        "-f",
        "compose.yaml",
        "-f",
        "compose.override.yaml",
        "up",
        "-d",
    ])
    .assert_success();
    assert_eq!(data_mount(&env).1, to);
    assert_eq!(tree_digest_in_container(&env, "db", PGDATA), before);

    let ran = env.persist([
        "-f",
        "compose.yaml",
        "migrate",
        "--rollback",
        "dbdata",
        "--yes",
    ]);
    ran.assert_success();
    still_on_its_volume(&env, &before, &ran);
    assert!(!override_file(&env).exists());
}
