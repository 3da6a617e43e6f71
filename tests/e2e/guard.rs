//! The guard against `down -v` and cleaning by tier, against real projects: `down -v` is refused and
//! removes nothing while critical or important data is unprotected; `down --backup -v` removes everything
//! and `restore` brings it back exactly; `check` follows the freshness rule through stop, backup and
//! start; `clean` removes exactly the chosen tier and needs a fresh backup for critical data; the shell
//! function stops the plain `docker compose down -v`.

use std::path::PathBuf;

use crate::support::{Ran, TestEnv, tree_digest, tree_listing_of_volume};

/// A database (critical), a cache (important) and a `node_modules` volume (regenerable).
const PROJECT: &str = r#"
services:
  db:
    image: postgres:16
    volumes:
      - dbdata:/var/lib/postgresql/data
  cache:
    image: redis:7
    volumes:
      - cachedata:/data
  web:
    image: node:20
    volumes:
      - node_modules:/app/node_modules
volumes:
  dbdata:
    labels: {persist.test.run: "{{RUN}}"}
  cachedata:
    labels: {persist.test.run: "{{RUN}}"}
  node_modules:
    labels: {persist.test.run: "{{RUN}}"}
"#;

type Compose = fn(&TestEnv, &[&str]) -> Ran;

fn v1(env: &TestEnv, args: &[&str]) -> Ran {
    env.compose_v1(args)
}

fn v2(env: &TestEnv, args: &[&str]) -> Ran {
    env.compose_v2(args)
}

fn volume(env: &TestEnv, key: &str) -> String {
    format!("{}_{key}", env.project)
}

/// Brings the project up and writes some data into every volume.
fn up_with_data(env: &TestEnv, compose: Compose) {
    env.write_project(PROJECT, None);
    compose(env, &["up", "-d"]).assert_success();
    for (service, dir) in [
        ("db", "/var/lib/postgresql/data"),
        ("cache", "/data"),
        ("web", "/app/node_modules"),
    ] {
        compose(
            env,
            &[
                "exec",
                "-T",
                service,
                "sh",
                "-c",
                "set -e; cd \"$1\"; mkdir -p sub; head -c 30000 /dev/urandom > sub/blob; echo hello > note; ln -s note link",
                "sh",
                dir,
            ],
        )
        .assert_success();
    }
}

fn all_volumes(env: &TestEnv) -> Vec<String> {
    let mut v: Vec<String> = ["cachedata", "dbdata", "node_modules"]
        .iter()
        .map(|k| volume(env, k))
        .collect();
    v.sort();
    v
}

fn digest_of(env: &TestEnv, key: &str) -> String {
    tree_digest(&tree_listing_of_volume(env, &volume(env, key)))
}

fn project_containers(env: &TestEnv) -> Vec<String> {
    env.docker([
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={}", env.project),
    ])
    .stdout_lines()
}

fn check_json(env: &TestEnv, code: i32) -> serde_json::Value {
    let ran = env.persist(["check", "--json"]);
    ran.assert_code(code);
    let doc = ran.json();
    assert_eq!(doc["schema_version"], 1, "{ran}");
    assert_eq!(doc["project"], env.project.as_str(), "{ran}");
    doc
}

fn entry<'a>(doc: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    doc["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|e| e["key"] == key))
        .unwrap_or_else(|| panic!("no `{key}` in {doc:#}"))
}

fn refusal_leaves_every_volume(compose: Compose) {
    let env = TestEnv::new();
    up_with_data(&env, compose);
    let before = digest_of(&env, "dbdata");
    let containers = project_containers(&env);

    let ran = env.persist(["down", "-v"]);
    ran.assert_code(3);
    let err = ran.stderr();
    for needle in ["`dbdata`", "`cachedata`", "--backup", "nothing was removed"] {
        assert!(err.contains(needle), "no {needle:?} in the refusal\n{ran}");
    }
    assert!(
        !err.contains("would be lost: `node_modules`"),
        "regenerable data is not called lost\n{ran}"
    );
    assert_eq!(env.compose_volumes(), all_volumes(&env), "{ran}");
    assert_eq!(project_containers(&env), containers, "containers stay");
    assert_eq!(digest_of(&env, "dbdata"), before);

    // `--force` without a terminal needs `--yes` too.
    let ran = env.persist(["down", "--force", "-v"]);
    ran.assert_code(3);
    ran.assert_stderr_contains("--yes");
    assert_eq!(env.compose_volumes(), all_volumes(&env), "{ran}");

    // Long and combined spellings of `-v` are guarded as well.
    for args in [
        &["down", "--volumes"][..],
        &["down", "--rmi", "local", "-v"],
    ] {
        let ran = env.persist(args);
        ran.assert_code(3);
        assert_eq!(env.compose_volumes(), all_volumes(&env), "{ran}");
    }

    // `check` says the same, in JSON.
    let doc = check_json(&env, 3);
    assert_eq!(doc["safe"], false);
    let db = entry(&doc, "dbdata");
    assert_eq!(db["tier"], "critical");
    assert_eq!(db["protected"], false);
    assert_eq!(db["needs_protection"], true);
    assert_eq!(db["why"], "no backup holds it");
    let nm = entry(&doc, "node_modules");
    assert_eq!(nm["tier"], "regenerable");
    assert_eq!(nm["needs_protection"], false);
    assert_eq!(nm["protected"], true);
}

#[test]
fn compose_v2_down_v_is_refused_and_leaves_every_volume() {
    refusal_leaves_every_volume(v2);
}

#[test]
fn compose_v1_down_v_is_refused_and_leaves_every_volume() {
    refusal_leaves_every_volume(v1);
}

fn down_backup_then_restore(compose: Compose) {
    let env = TestEnv::new();
    up_with_data(&env, compose);
    let db = digest_of(&env, "dbdata");
    let cache = digest_of(&env, "cachedata");

    let dry = env.persist(["down", "--backup", "--dry-run", "-v"]);
    dry.assert_success();
    dry.assert_stderr_contains("Would stop");
    assert_eq!(env.compose_volumes(), all_volumes(&env), "{dry}");

    let ran = env.persist(["down", "--backup", "-v"]);
    ran.assert_success();
    assert_eq!(env.compose_volumes(), Vec::<String>::new(), "{ran}");
    assert_eq!(project_containers(&env), Vec::<String>::new(), "{ran}");

    // One backup, tagged, verified, holding the critical and important volumes.
    let backups = env.persist(["backups", "--json"]);
    backups.assert_success();
    let doc = backups.json();
    let list = doc["backups"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{backups}");
    assert_eq!(list[0]["tag"], "pre-down");
    assert_eq!(list[0]["verified"], true, "{backups}");
    let mut keys: Vec<&str> = list[0]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, ["cachedata", "dbdata"]);
    let file = PathBuf::from(list[0]["path"].as_str().unwrap());

    let ran = env.persist(["restore", "--yes", "--no-start", file.to_str().unwrap()]);
    ran.assert_success();
    assert_eq!(digest_of(&env, "dbdata"), db, "{ran}");
    assert_eq!(digest_of(&env, "cachedata"), cache, "{ran}");
}

#[test]
fn compose_v2_down_backup_v_removes_everything_and_restore_brings_it_back() {
    down_backup_then_restore(v2);
}

#[test]
fn compose_v1_down_backup_v_removes_everything_and_restore_brings_it_back() {
    down_backup_then_restore(v1);
}

#[test]
fn a_failed_backup_in_down_removes_nothing_and_starts_the_services_again() {
    let env = TestEnv::new();
    up_with_data(&env, v2);
    let running = |env: &TestEnv| {
        let mut s = env
            .compose_v2(["ps", "--services", "--status", "running"])
            .stdout_lines();
        s.sort();
        s
    };
    let before = running(&env);
    assert_eq!(before, ["cache", "db", "web"]);
    // The backup directory cannot be made: a file is in the way.
    env.write_file("blocked", "a file, not a directory\n");
    let ran = env.persist(["down", "--backup", "--dir", "blocked/backups", "-v"]);
    assert!(
        !ran.status.success() && ran.status.code() != Some(3),
        "the backup cannot succeed\n{ran}"
    );
    ran.assert_stderr_contains("nothing was removed");
    // They were stopped for the backup, and started again.
    ran.assert_stderr_contains("Stopping");
    ran.assert_stderr_contains("Started `");
    assert_eq!(env.compose_volumes(), all_volumes(&env), "{ran}");
    assert_eq!(running(&env), before, "the services run again\n{ran}");
}

#[test]
fn down_without_v_runs_compose_down_and_keeps_the_volumes() {
    let env = TestEnv::new();
    up_with_data(&env, v2);
    let ran = env.persist(["down", "--remove-orphans"]);
    ran.assert_success();
    assert_eq!(project_containers(&env), Vec::<String>::new(), "{ran}");
    assert_eq!(env.compose_volumes(), all_volumes(&env), "{ran}");
}

#[test]
fn check_follows_freshness_through_stop_backup_and_start() {
    let env = TestEnv::new();
    up_with_data(&env, v2);
    // A backup taken while the services run (stopped and started again for it) protects nothing once
    // they run again.
    env.persist(["backup"]).assert_success();
    let doc = check_json(&env, 3);
    let why = entry(&doc, "dbdata")["why"].as_str().unwrap().to_string();
    assert!(why.contains("is running"), "{why}");

    env.compose_v2(["stop"]).assert_success();
    // Stopped after the backup: the containers started again after it, so it is stale.
    let doc = check_json(&env, 3);
    let why = entry(&doc, "dbdata")["why"].as_str().unwrap().to_string();
    assert!(why.contains("ran after the backup"), "{why}");

    // A backup with everything stopped protects.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let ran = env.persist(["backup"]);
    ran.assert_success();
    let file = ran.stdout().lines().last().unwrap().trim().to_string();
    let doc = check_json(&env, 0);
    assert_eq!(doc["safe"], true);
    let db = entry(&doc, "dbdata");
    assert_eq!(db["protected"], true);
    assert_eq!(db["protected_by"], file.as_str());
    let table = env.persist(["check"]);
    table.assert_success();
    table.assert_stdout_contains("PROTECTED");
    // `backups` shows that `check` verified it.
    let b = env.persist(["backups", "--json"]).json();
    let newest = &b["backups"][0];
    assert_eq!(newest["path"], file.as_str());
    assert_eq!(newest["verified"], true);

    // A damaged backup protects nothing (the file changed, so its record no longer counts).
    let bytes = std::fs::read(&file).unwrap();
    let mut damaged = bytes.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0xff;
    std::fs::write(&file, &damaged).unwrap();
    let doc = check_json(&env, 3);
    let why = entry(&doc, "dbdata")["why"].as_str().unwrap().to_string();
    assert!(why.contains("failed verification"), "{why}");
    std::fs::write(&file, &bytes).unwrap();
    check_json(&env, 0);

    // Started again: the data can change, so it is unprotected.
    env.compose_v2(["start", "db"]).assert_success();
    let doc = check_json(&env, 3);
    assert_eq!(entry(&doc, "dbdata")["protected"], false);
    assert_eq!(entry(&doc, "cachedata")["protected"], true);
}

#[test]
fn a_writer_removed_since_the_backup_breaks_protection() {
    let env = TestEnv::new();
    up_with_data(&env, v2);
    env.compose_v2(["stop"]).assert_success();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.persist(["backup"]).assert_success();
    check_json(&env, 0);
    // A container that is gone now changes a file without changing its size.
    env.docker([
        "run",
        "--rm",
        "--label",
        &format!("persist.test.project={}", env.project),
        "-v",
        &format!("{}:/data", volume(&env, "dbdata")),
        "busybox:latest",
        "sh",
        "-c",
        "printf 'HELLO\\n' > /data/note",
    ])
    .assert_success();
    let doc = check_json(&env, 3);
    let db = entry(&doc, "dbdata");
    assert_eq!(db["protected"], false);
    let why = db["why"].as_str().unwrap();
    assert!(
        why.contains("mounted it read-write after the backup"),
        "{why}"
    );
    assert_eq!(entry(&doc, "cachedata")["protected"], true);
}

#[test]
fn clean_tier_regenerable_removes_exactly_the_regenerable_volumes() {
    let env = TestEnv::new();
    up_with_data(&env, v2);
    let nm = volume(&env, "node_modules");

    let dry = env.persist(["clean", "--tier", "regenerable", "--dry-run"]);
    dry.assert_success();
    dry.assert_stdout_contains("node_modules");
    assert!(!dry.stdout().contains("dbdata"), "{dry}");
    dry.assert_stderr_contains("Would remove 1 volume");
    assert_eq!(env.compose_volumes(), all_volumes(&env), "{dry}");

    // Without a terminal, `--yes` is needed.
    let ran = env.persist(["clean", "--tier", "regenerable"]);
    ran.assert_code(3);
    ran.assert_stderr_contains("--yes");
    assert_eq!(env.compose_volumes(), all_volumes(&env), "{ran}");

    let ran = env.persist(["clean", "--tier", "regenerable", "--yes", "--json"]);
    ran.assert_success();
    let doc = ran.json();
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["volumes"][0]["key"], "node_modules");
    let mut left = all_volumes(&env);
    left.retain(|v| *v != nm);
    assert_eq!(env.compose_volumes(), left, "{ran}");
    // Only the container that held it went; the others still run.
    let running = env
        .compose_v2(["ps", "--services", "--status", "running"])
        .stdout_lines();
    assert_eq!(running.len(), 2, "{running:?}");
    assert!(!running.contains(&"web".to_string()), "{running:?}");
    // Compose recreates both.
    env.compose_v2(["up", "-d"]).assert_success();
    assert_eq!(env.compose_volumes(), all_volumes(&env));
}

#[test]
fn clean_refuses_bind_mounts_and_external_volumes() {
    let env = TestEnv::new();
    env.write_project(
        "services:\n  app:\n    image: busybox:latest\n    volumes: [./data:/data]\n",
        None,
    );
    let ran = env.persist(["clean", "./data", "--yes"]);
    ran.assert_code(2);
    ran.assert_stderr_contains("never removes bind mounts");
    let ran = env.persist(["clean", "--yes"]);
    ran.assert_code(2);
    ran.assert_stderr_contains("--tier");
}

#[test]
fn critical_clean_is_refused_without_a_fresh_backup_and_proceeds_with_one() {
    let env = TestEnv::new();
    up_with_data(&env, v2);
    let db = volume(&env, "dbdata");

    let ran = env.persist(["clean", "dbdata", "--yes"]);
    ran.assert_code(3);
    ran.assert_stderr_contains("fresh, verified backup");
    ran.assert_stderr_contains("docker persist backup dbdata");
    assert!(env.volume_labels(&db).is_some(), "{ran}");

    // A backup taken while `db` runs is not fresh once it runs again.
    env.persist(["backup", "dbdata"]).assert_success();
    let ran = env.persist(["clean", "dbdata", "--yes"]);
    ran.assert_code(3);
    assert!(env.volume_labels(&db).is_some(), "{ran}");

    env.compose_v2(["stop", "db"]).assert_success();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.persist(["backup", "dbdata"]).assert_success();
    // Off a terminal, `--yes` is still required.
    let ran = env.persist(["clean", "dbdata"]);
    ran.assert_code(3);
    assert!(env.volume_labels(&db).is_some(), "{ran}");

    let ran = env.persist(["clean", "dbdata", "--yes"]);
    ran.assert_success();
    assert!(env.volume_labels(&db).is_none(), "{ran}");
    let mut left = all_volumes(&env);
    left.retain(|v| *v != db);
    assert_eq!(env.compose_volumes(), left, "{ran}");
}

fn shell_guard(env: &TestEnv) -> PathBuf {
    let ran = env.persist(["shell-init", "bash"]);
    ran.assert_success();
    env.write_file("guard.sh", &ran.stdout())
}

fn bash(env: &TestEnv, guard: &std::path::Path, line: &str) -> Ran {
    let mut cmd = env.command("bash");
    cmd.arg("-c")
        .arg(format!("source '{}'; {line}", guard.display()));
    env.run(cmd)
}

#[test]
fn shell_guard_stops_plain_down_v_in_bash() {
    let env = TestEnv::new();
    up_with_data(&env, v2);
    let guard = shell_guard(&env);
    // Project options before `down` reach `check`.
    let ran = bash(
        &env,
        &guard,
        &format!("docker compose -f compose.yaml -p {} down -v", env.project),
    );
    ran.assert_code(3);
    ran.assert_stderr_contains("refusing `docker compose down -v`");
    ran.assert_stdout_contains("");
    assert!(ran.stderr().contains("dbdata"), "{ran}");
    assert_eq!(env.compose_volumes(), all_volumes(&env), "{ran}");

    // Compose v1 is guarded too.
    let ran = bash(
        &env,
        &guard,
        &format!("docker-compose -p {} down --volumes", env.project),
    );
    ran.assert_code(3);
    assert_eq!(env.compose_volumes(), all_volumes(&env), "{ran}");

    // Other commands pass straight through.
    let ran = bash(&env, &guard, "docker volume ls -q");
    ran.assert_success();
    assert!(ran.stdout().contains(&volume(&env, "dbdata")), "{ran}");
    let ran = bash(
        &env,
        &guard,
        &format!("docker compose -p {} down", env.project),
    );
    ran.assert_success();
    assert_eq!(project_containers(&env), Vec::<String>::new(), "{ran}");
    assert_eq!(env.compose_volumes(), all_volumes(&env), "{ran}");

    // Once protected, `down -v` goes through.
    env.persist(["backup"]).assert_success();
    let ran = bash(
        &env,
        &guard,
        &format!("docker compose -p {} down -v", env.project),
    );
    ran.assert_success();
    assert_eq!(env.compose_volumes(), Vec::<String>::new(), "{ran}");
}

/// Runs the guard of `shell` against a stub `docker`/`docker-compose` that logs its arguments (`persist …
/// check` exits with the given code), and checks which commands reach them.
fn guard_routes_arguments_exactly(shell: &str) {
    let env = TestEnv::new();
    assert!(
        std::process::Command::new(shell)
            .arg("-c")
            .arg("true")
            .status()
            .is_ok_and(|s| s.success()),
        "`{shell}` is needed for the shell guard tests (Debian: apt-get install zsh fish; .ci/run does)"
    );
    let ran = env.persist(["shell-init", shell]);
    ran.assert_success();
    let guard = env.write_file(format!("guard.{shell}"), &ran.stdout());
    // A stub `docker`/`docker-compose` that logs its arguments; `persist … check` exits with $CHECK_RC.
    let bin = env.project_dir.join("stub-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["docker", "docker-compose"] {
        let path = bin.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{name} $*\" >> \"$LOG\"\ncase \" $* \" in *\" persist \"*) exit \"$CHECK_RC\";; esac\n"
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let log = env.project_dir.join("log");
    let run = |rc: &str, line: &str| -> (i32, Vec<String>) {
        let _ = std::fs::remove_file(&log);
        let mut cmd = env.command(shell);
        cmd.env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("LOG", &log)
        .env("CHECK_RC", rc)
        .arg("-c")
        .arg(format!("source '{}'; {line}", guard.display()));
        let ran = env.run(cmd);
        let lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        (ran.status.code().unwrap_or(-1), lines)
    };
    assert_eq!(
        run("3", "docker compose -f x.yml -p name down -v"),
        (3, vec!["docker persist -f x.yml -p name check".to_string()])
    );
    assert_eq!(
        run(
            "0",
            "docker --context c compose --project-name=n down --rmi all -v"
        ),
        (
            0,
            vec![
                "docker --context c persist --project-name=n check".to_string(),
                "docker --context c compose --project-name=n down --rmi all -v".to_string()
            ]
        )
    );
    assert_eq!(
        run("3", "docker-compose --file a.yml down -t 5 --volumes"),
        (3, vec!["docker persist --file a.yml check".to_string()])
    );
    // A failing check (not installed, no engine) stops `down -v` as well.
    assert_eq!(run("1", "docker compose down -v").0, 3);
    for line in [
        "docker compose down",
        "docker compose down -t 5",
        "docker compose down --volumes=false",
        "docker compose -p v up -d",
        "docker ps -a",
        "docker-compose logs -f",
    ] {
        assert_eq!(run("3", line), (0, vec![line.to_string()]), "{line}");
    }
}

#[test]
fn shell_guard_routes_arguments_exactly_in_bash() {
    guard_routes_arguments_exactly("bash");
}

#[test]
fn shell_guard_routes_arguments_exactly_in_zsh() {
    guard_routes_arguments_exactly("zsh");
}

#[test]
fn shell_guard_routes_arguments_exactly_in_fish() {
    guard_routes_arguments_exactly("fish");
}

/// `docker persist ARGS` on a terminal of its own (util-linux `script` gives it a pseudo-terminal): types
/// `answer` once the output shows `prompt`, and returns the exit code and everything the terminal showed.
fn persist_on_a_terminal(env: &TestEnv, args: &str, prompt: &str, answer: &str) -> (i32, String) {
    use std::io::{Read, Write};
    use std::process::Stdio;
    let mut cmd = env.command("script");
    cmd.args([
        "-q",
        "-e",
        "-f",
        "-c",
        &format!("docker persist {args}"),
        "/dev/null",
    ])
    .env("TERM", "dumb")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("`script` (util-linux) runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut shown = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut answered = false;
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(chunk) => shown.extend(chunk),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if !answered && String::from_utf8_lossy(&shown).contains(prompt) {
            stdin.write_all(format!("{answer}\r").as_bytes()).unwrap();
            stdin.flush().unwrap();
            answered = true;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no end within 2 minutes:\n{}",
            String::from_utf8_lossy(&shown)
        );
    }
    reader.join().unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    let shown = String::from_utf8_lossy(&shown).into_owned();
    assert!(answered, "the prompt `{prompt}` never showed:\n{shown}");
    (status.code().unwrap_or(-1), shown)
}

#[test]
fn critical_clean_on_a_terminal_removes_only_after_the_project_name_is_typed() {
    let env = TestEnv::new();
    up_with_data(&env, v2);
    let db = volume(&env, "dbdata");
    env.compose_v2(["stop", "db"]).assert_success();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.persist(["backup", "dbdata"]).assert_success();

    let prompt = "Type the project name";
    let (code, shown) = persist_on_a_terminal(&env, "clean dbdata", prompt, "not-the-name");
    assert_eq!(code, 3, "{shown}");
    assert!(shown.contains("Nothing was removed"), "{shown}");
    assert!(env.volume_labels(&db).is_some(), "{shown}");

    let (code, shown) = persist_on_a_terminal(&env, "clean dbdata", prompt, &env.project);
    assert_eq!(code, 0, "{shown}");
    assert!(env.volume_labels(&db).is_none(), "{shown}");
    let mut left = all_volumes(&env);
    left.retain(|v| *v != db);
    assert_eq!(env.compose_volumes(), left, "{shown}");
}

#[test]
fn forced_down_v_on_a_terminal_runs_only_after_the_project_name_is_typed() {
    let env = TestEnv::new();
    up_with_data(&env, v2);
    let before = all_volumes(&env);

    let (code, shown) =
        persist_on_a_terminal(&env, "down --force -v", "Type the project name", "no");
    assert_eq!(code, 3, "{shown}");
    assert_eq!(env.compose_volumes(), before, "{shown}");

    let (code, shown) = persist_on_a_terminal(
        &env,
        "down --force -v",
        "Type the project name",
        &env.project,
    );
    assert_eq!(code, 0, "{shown}");
    assert!(env.compose_volumes().is_empty(), "{shown}");
}
