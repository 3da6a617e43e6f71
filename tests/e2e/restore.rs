//! `restore` and `verify --restore-test` against real projects: a torture tree comes back bit for bit after
//! `down -v`, a restore over changed data is exact and keeps a safety copy, and a damaged backup or a
//! missing confirmation changes nothing.

use std::path::{Path, PathBuf};

use crate::support::{
    COMPOSE_PROJECT_LABEL, Ran, TestEnv, tree_digest as tree_digest_of, tree_digest_in_container,
    tree_listing_of_volume,
};

pub(crate) const PROJECT: &str = r#"
services:
  db:
    image: postgres:16
    volumes:
      - dbdata:/var/lib/postgresql/data
      - ./uploads:/uploads
volumes:
  dbdata:
    labels:
      persist.test.run: "{{RUN}}"
"#;

/// Builds a tree with every kind of entry that tends to get lost at `dir` inside the `db` service.
pub(crate) const TORTURE: &str = r#"
set -e
d="$1"
cd "$d"
mkdir -p empty deep sticky setgid "café" ro
chmod 1777 sticky
chmod 2755 setgid
echo secret > owned && chown 999:999 owned && chmod 0600 owned
echo other > other && chown 1234:5678 other
echo run > suid && chmod 4755 suid
echo ro > ro/file && chmod 0444 ro/file
printf 'ñandú\n' > "café/ñandú – 日本.txt"
head -c 20000 /dev/urandom > random.bin
ln random.bin hard-link
ln -s random.bin sym-link
ln -s /nonexistent/target dangling
mkfifo pipe
long=$(printf 'n%.0s' $(seq 1 150))
echo long > "$long"
p=deep; for i in $(seq 1 32); do p="$p/d$i"; done; mkdir -p "$p" && echo bottom > "$p/file"
dd if=/dev/zero of=sparse bs=1 count=0 seek=64M 2>/dev/null
echo tail >> sparse
chown 999:999 "$d"
chmod 0700 "$d"
"#;

pub(crate) fn exec_db(env: &TestEnv, script: &str, arg: &str) -> Ran {
    let ran = env.compose_v2(["exec", "-T", "db", "sh", "-c", script, "sh", arg]);
    ran.assert_success();
    ran
}

pub(crate) fn tree_digest(env: &TestEnv, dir: &str) -> String {
    tree_digest_in_container(env, "db", dir)
}

pub(crate) fn backups_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "tar"));
    v.sort();
    v
}

/// Brings the project up with Compose v2 and fills the volume and the bind mount.
pub(crate) fn up_with_data(env: &TestEnv) {
    env.write_project(PROJECT, None);
    std::fs::create_dir_all(env.project_dir.join("uploads")).unwrap();
    env.compose_v2(["up", "-d"]).assert_success();
    exec_db(env, TORTURE, "/var/lib/postgresql/data");
    exec_db(
        env,
        "set -e; cd \"$1\"; mkdir -p a/b; head -c 5000 /dev/urandom > a/b/photo.jpg; echo hi > note",
        "/uploads",
    );
}

fn backup(env: &TestEnv) -> PathBuf {
    let ran = env.persist(["backup"]);
    ran.assert_success();
    let path = PathBuf::from(ran.stdout().lines().last().unwrap_or_default().trim());
    assert!(path.is_file(), "backup printed {path:?}\n{ran}");
    path
}

#[test]
fn torture_tree_comes_back_exactly_after_down_v() {
    let env = TestEnv::new();
    up_with_data(&env);
    let before_db = tree_digest(&env, "/var/lib/postgresql/data");
    let before_up = tree_digest(&env, "/uploads");
    let file = backup(&env);

    env.compose_v2(["down", "-v"]).assert_success();
    let volume = format!("{}_dbdata", env.project);
    assert!(
        env.volume_labels(&volume).is_none(),
        "down -v removed the volume"
    );
    // The bind mount's files are gone too (as after a lost disk).
    std::fs::remove_dir_all(env.project_dir.join("uploads")).unwrap();

    let ran = env.persist(["restore", "--yes", file.to_str().unwrap()]);
    ran.assert_success();
    assert!(ran.stderr().contains("Restored `dbdata`"), "{ran}");
    // Compose still owns the volume: same labels as it made them, and `up` does not complain.
    let labels = env.volume_labels(&volume).expect("the volume exists again");
    assert_eq!(
        labels.get(COMPOSE_PROJECT_LABEL),
        Some(&env.project),
        "{labels:?}"
    );
    assert_eq!(
        labels.get("com.docker.compose.volume").map(String::as_str),
        Some("dbdata")
    );
    let up = env.compose_v2(["up", "-d"]);
    up.assert_success();
    assert!(
        !up.stderr().contains("already exists but was not created"),
        "{up}"
    );

    assert_eq!(tree_digest(&env, "/var/lib/postgresql/data"), before_db);
    assert_eq!(tree_digest(&env, "/uploads"), before_up);
    assert_eq!(helpers_on(&env, &volume), "");
}

#[test]
fn restore_over_changed_data_is_exact_and_keeps_a_safety_copy() {
    let env = TestEnv::new();
    up_with_data(&env);
    let original = tree_digest(&env, "/var/lib/postgresql/data");
    let file = backup(&env);
    exec_db(
        &env,
        "set -e; cd \"$1\"; echo new > added; rm random.bin; chmod 0644 owned; chown 0:0 other",
        "/var/lib/postgresql/data",
    );
    let changed = tree_digest(&env, "/var/lib/postgresql/data");
    assert_ne!(changed, original);

    let ran = env.persist(["restore", "--yes", file.to_str().unwrap(), "dbdata"]);
    ran.assert_success();
    assert_eq!(tree_digest(&env, "/var/lib/postgresql/data"), original);
    // The service runs again (recreated by Compose).
    let ps = env.compose_v2(["ps", "--status", "running", "--services"]);
    assert_eq!(ps.stdout().trim(), "db", "{ps}");

    // The safety copy holds the changed data: restoring it elsewhere gives the changed tree.
    let dir = env.project_dir.join("backups");
    let safety: Vec<PathBuf> = backups_in(&dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("-pre-restore.tar"))
        .collect();
    assert_eq!(safety.len(), 1, "{:?}", backups_in(&dir));
    let copy = format!("{}-copy", env.project);
    env.track_volume(&copy);
    env.persist([
        "restore",
        "--yes",
        safety[0].to_str().unwrap(),
        "dbdata",
        "--as",
        &copy,
    ])
    .assert_success();
    assert_eq!(
        tree_digest_of(&tree_listing_of_volume(&env, &copy)),
        changed
    );
    // `--as` left the original alone.
    assert_eq!(tree_digest(&env, "/var/lib/postgresql/data"), original);

    // Without a file named, "the newest backup" is the newest real one, not the newer safety copy
    // (that would undo the restore).
    let ran = env.persist(["restore", "--yes", "--dry-run"]);
    ran.assert_success();
    ran.assert_stderr_contains(&format!("Using the newest backup, `{}`", file.display()));
}

#[test]
fn damaged_backup_or_missing_confirmation_changes_nothing() {
    let env = TestEnv::new();
    up_with_data(&env);
    let file = backup(&env);
    exec_db(
        &env,
        "echo changed > \"$1/changed\"",
        "/var/lib/postgresql/data",
    );
    let current = tree_digest(&env, "/var/lib/postgresql/data");
    let before = backups_in(&env.project_dir.join("backups"));

    // No terminal, no --yes: refused with exit 3.
    let ran = env.persist(["restore", file.to_str().unwrap()]);
    ran.assert_code(3);
    assert!(
        ran.stderr()
            .contains("hint: run it in a terminal to answer, or pass `--yes`"),
        "{ran}"
    );

    // One flipped byte in the middle of the volume member: refused before any change.
    let mut bytes = std::fs::read(&file).unwrap();
    let member_start = find(&bytes, b"volumes/dbdata.tar.zst").expect("member header") + 512;
    bytes[member_start + 700] ^= 0x20;
    let damaged = env.project_dir.join("damaged.tar");
    std::fs::write(&damaged, &bytes).unwrap();
    let ran = env.persist(["restore", "--yes", damaged.to_str().unwrap()]);
    ran.assert_code(1);
    assert!(ran.stderr().contains("nothing was changed"), "{ran}");

    // A truncated copy.
    let truncated = env.project_dir.join("truncated.tar");
    std::fs::write(&truncated, &std::fs::read(&file).unwrap()[..4096]).unwrap();
    env.persist(["restore", "--yes", truncated.to_str().unwrap()])
        .assert_code(1);

    assert_eq!(tree_digest(&env, "/var/lib/postgresql/data"), current);
    assert_eq!(
        backups_in(&env.project_dir.join("backups")),
        before,
        "no safety backup was needed"
    );
    let ps = env.compose_v2(["ps", "--status", "running", "--services"]);
    assert_eq!(ps.stdout().trim(), "db", "{ps}");
}

#[test]
fn verify_restore_test_restores_into_scratch_volumes_and_removes_them() {
    let env = TestEnv::new();
    up_with_data(&env);
    let file = backup(&env);
    let ran = env.persist(["verify", "--restore-test", file.to_str().unwrap()]);
    ran.assert_success();
    assert!(
        ran.stderr()
            .contains("restored `dbdata` into a scratch volume"),
        "{ran}"
    );
    let left = env.docker([
        "volume",
        "ls",
        "-q",
        "--filter",
        "label=persist.scratch=true",
    ]);
    assert!(left.stdout().trim().is_empty(), "{left}");
}

/// Helper containers that mount `volume` (other tests run their own helpers at the same time).
pub(crate) fn helpers_on(env: &TestEnv, volume: &str) -> String {
    let ran = env.docker([
        "ps",
        "-aq",
        "--filter",
        "label=persist.helper=true",
        "--filter",
        &format!("volume={volume}"),
    ]);
    ran.assert_success();
    ran.stdout().trim().to_string()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn interrupted_restore_says_what_state_it_left_and_a_second_restore_finishes_it() {
    use std::io::BufRead;

    let env = TestEnv::new();
    env.write_project(PROJECT, None);
    std::fs::create_dir_all(env.project_dir.join("uploads")).unwrap();
    env.compose_v2(["up", "-d"]).assert_success();
    // Enough incompressible data that the upload takes a few seconds.
    exec_db(
        &env,
        "head -c 400000000 /dev/urandom > \"$1/big\" && chown -R 999:999 \"$1\"",
        "/var/lib/postgresql/data",
    );
    let original = tree_digest(&env, "/var/lib/postgresql/data");
    let file = backup(&env);

    let mut cmd = env.command(crate::support::plugin_binary());
    cmd.args(["restore", "--yes", file.to_str().unwrap(), "dbdata"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            // The service is stopped before the safety backup; the upload follows it.
            if line.starts_with("Safety backup:") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(std::time::Duration::from_secs(120))
        .expect("the restore took its safety backup, with the service stopped");
    std::thread::sleep(std::time::Duration::from_millis(700));
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("warning: interrupted"), "{stderr}");
    assert!(
        stderr.contains("the data as it was before this restore is in"),
        "{stderr}"
    );
    assert!(stderr.contains("may be only partly restored"), "{stderr}");
    assert!(
        stderr.contains("`docker compose up -d` recreates them"),
        "{stderr}"
    );
    assert_eq!(helpers_on(&env, &format!("{}_dbdata", env.project)), "");
    // No unfinished file looks like a backup.
    for p in backups_in(&env.project_dir.join("backups")) {
        env.persist(["verify", p.to_str().unwrap()])
            .assert_success();
    }

    // Running the restore again finishes the job; Compose brings the service back.
    env.persist([
        "restore",
        "--yes",
        file.to_str().unwrap(),
        "dbdata",
        "--no-safety-backup",
    ])
    .assert_success();
    env.compose_v2(["up", "-d"]).assert_success();
    let ps = env.compose_v2(["ps", "--status", "running", "--services"]);
    assert_eq!(ps.stdout().trim(), "db", "{ps}");
    assert_eq!(tree_digest(&env, "/var/lib/postgresql/data"), original);
}
