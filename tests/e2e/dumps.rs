//! Hooks and logical dumps against real containers. The test image is busybox, so the database tools are
//! stand-in shell scripts bind-mounted at `/tools` (first on `PATH`): `pg_dumpall` writes a fixture, `psql`
//! records what it is fed, `redis-cli` answers `LASTSAVE`/`BGSAVE`/`CONFIG GET` and writes an RDB file.
//! The tests check bytes end to end: the dump member decompressed with `zstd` alone is the fixture, and a
//! restore feeds exactly those bytes to the loader (or puts exactly that file in place for Redis).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::Digest as _;

use crate::backup::{
    Running, container_state, dir_names, exec, helpers_of, host_sh, journal_files, manifest,
    member_names, printed_path,
};
use crate::support::TestEnv;

const PATH: &str = "/tools:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Stand-in `pg_dumpall`: records its arguments and `POSTGRES_USER`, then writes the fixture; fails when
/// `/tmp/fail-dump` exists; with `/tmp/slow-dump`, writes 1 MiB and then waits (to be interrupted).
const PG_DUMPALL: &str = r#"#!/bin/sh
echo "$*" > /tmp/pg_dumpall.args
echo "user=${POSTGRES_USER:-}" >> /tmp/pg_dumpall.args
if [ -f /tmp/fail-dump ]; then
  echo 'pg_dumpall: error: connection to server failed: FATAL: the database system is starting up' >&2
  exit 1
fi
if [ -f /tmp/slow-dump ]; then
  head -c 1048576 /dev/zero
  echo $$ > /tmp/slow-dump.pid
  sleep 120
fi
cat /tools/fixture.sql
"#;

/// Stand-in `psql`: `-c` (the readiness probe, `SHOW listen_addresses`) answers `*`; otherwise stdin goes to `/tmp/psql.stdin`, and it
/// reports the error that a `pg_dumpall --clean` script causes by design.
const PSQL: &str = r#"#!/bin/sh
case " $* " in *" -c "*) echo '*'; exit 0;; esac
echo "$*" > /tmp/psql.args
cat > /tmp/psql.stdin
echo 'psql:<stdin>:3: ERROR:  current user cannot be dropped' >&2
"#;

/// Stand-in `redis-cli`: `BGSAVE` copies the fixture to `/data/dump.rdb` a second later and bumps
/// `LASTSAVE`.
const REDIS_CLI: &str = r#"#!/bin/sh
case "$1" in
  LASTSAVE) cat /tmp/lastsave 2>/dev/null || echo 1000 ;;
  BGSAVE)
    ( sleep 1; cp /tools/fixture.rdb /data/dump.rdb; echo $(( $(cat /tmp/lastsave 2>/dev/null || echo 1000) + 1 )) > /tmp/lastsave ) >/dev/null 2>&1 &
    echo "Background saving started" ;;
  INFO) printf '# Persistence\nrdb_bgsave_in_progress:0\nrdb_last_bgsave_status:ok\n' ;;
  CONFIG)
    case "$3" in
      dir) printf 'dir\n/data\n' ;;
      dbfilename) printf 'dbfilename\ndump.rdb\n' ;;
      appendonly) printf 'appendonly\n%s\n' "$(cat /tmp/appendonly 2>/dev/null || echo no)" ;;
    esac ;;
  PING) echo PONG ;;
  *) echo "ERR unknown command '$1'" ; exit 1 ;;
esac
"#;

/// A database with a dump volume, a Redis with one, and an app with hooks around its volume and around the
/// whole backup. The Redis stand-in logs the SHA-256 of its RDB file each time it starts.
pub(crate) const PROJECT: &str = r#"
x-persist:
  hooks:
    pre: [{service: app, command: "echo project-pre >> /tmp/hooks.log"}]
    post: [{service: app, command: "echo project-post >> /tmp/hooks.log"}]
services:
  db:
    image: postgres:16
    environment: {PATH: "{{PATH}}", POSTGRES_USER: appuser}
    volumes:
      - dbdata:/var/lib/postgresql/data
      - ./tools:/tools:ro
  cache:
    image: redis:7
    environment: {PATH: "{{PATH}}"}
    command: ["sh", "-c", "(sha256sum /data/dump.rdb 2>/dev/null || echo none) >> /data/starts.log; exec /bin/persist-test-idle"]
    volumes:
      - cachedata:/data
      - ./tools:/tools:ro
  app:
    image: alpine:3
    depends_on: [db]
    volumes:
      - appdata:/var/lib/postgresql/data
volumes:
  dbdata:
    labels: {persist.test.run: "{{RUN}}"}
    x-persist: {consistency: dump}
  cachedata:
    labels: {persist.test.run: "{{RUN}}"}
    x-persist: {consistency: dump}
  appdata:
    labels: {persist.test.run: "{{RUN}}"}
    x-persist:
      hooks:
        pre:
          - {service: app, command: "echo pre1 $(cut -d' ' -f22 /proc/1/stat) >> /tmp/hooks.log; echo out-pre1"}
          - {service: app, command: ["sh", "-c", "echo pre2 >> /tmp/hooks.log; echo err-pre2 >&2"], timeout: 30s}
        post:
          - {service: app, command: "echo post1 $(cut -d' ' -f22 /proc/1/stat) >> /tmp/hooks.log"}
"#;

/// Deterministic bytes of every value, newlines and NULs included.
fn fixture(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn script(env: &TestEnv, name: &str, text: &str) {
    let path = env.project_dir.join("tools").join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Writes the project, the stand-in tools and the fixtures; starts it. Returns (SQL fixture, RDB fixture).
pub(crate) fn start(env: &TestEnv, compose: &str) -> (Vec<u8>, Vec<u8>) {
    env.write_project(&compose.replace("{{PATH}}", PATH), None);
    script(env, "pg_dumpall", PG_DUMPALL);
    script(env, "psql", PSQL);
    script(env, "redis-cli", REDIS_CLI);
    let sql = fixture(300_000, 7);
    let rdb = fixture(70_000, 11);
    fs::write(env.project_dir.join("tools/fixture.sql"), &sql).unwrap();
    fs::write(env.project_dir.join("tools/fixture.rdb"), &rdb).unwrap();
    env.compose_v2(["up", "-d"]).assert_success();
    (sql, rdb)
}

/// A file inside a service's container, as bytes.
#[track_caller]
fn container_file(env: &TestEnv, service: &str, path: &str) -> Vec<u8> {
    let ran = env.docker(["exec", &env.service_container(service), "cat", path]);
    ran.assert_success();
    ran.output.stdout
}

/// One member of the backup, decompressed with GNU tar and zstd alone.
#[track_caller]
fn dump_bytes(env: &TestEnv, backup: &Path, member: &str) -> Vec<u8> {
    let ran = host_sh(
        env,
        r#"tar -xOf "$1" "$2" | zstd -d -q"#,
        &[backup.to_str().unwrap(), member],
    );
    ran.assert_success();
    ran.output.stdout
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

#[track_caller]
fn dump_record<'a>(m: &'a Value, key: &str) -> &'a Value {
    m["dumps"]
        .as_array()
        .and_then(|d| d.iter().find(|r| r["key"] == key))
        .unwrap_or_else(|| panic!("no dump `{key}` in {m:#}"))
}

fn backup_files(env: &TestEnv) -> Vec<String> {
    dir_names(&env.project_dir.join("backups"))
        .into_iter()
        .filter(|n| n != ".gitignore")
        .collect()
}

#[test]
fn hooks_run_in_order_around_the_stop_with_their_output_in_the_manifest() {
    let env = TestEnv::new();
    start(&env, PROJECT);
    let ran = env.persist(["-v", "backup", "appdata"]);
    let path = printed_path(&ran);

    // Project pre, the volume's pre hooks (before `app` is stopped), its post hook (after it started
    // again: PID 1 started later), project post.
    let log = String::from_utf8(container_file(&env, "app", "/tmp/hooks.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 5, "{log}\n{ran}");
    assert_eq!(lines[0], "project-pre");
    assert!(lines[1].starts_with("pre1 "), "{log}");
    assert_eq!(lines[2], "pre2");
    assert!(lines[3].starts_with("post1 "), "{log}");
    assert_eq!(lines[4], "project-post");
    let started = |l: &str| l.split(' ').nth(1).unwrap().parse::<u64>().unwrap();
    assert!(
        started(lines[3]) > started(lines[1]),
        "the post hook ran in the container as it was before the stop: {log}"
    );

    // Output shown with -v, and kept in the manifest with exit codes and durations.
    ran.assert_stderr_contains("stdout | out-pre1")
        .assert_stderr_contains("stderr | err-pre2");
    let m = manifest(&env, &path);
    let v = crate::support::volume_entry(&m, "appdata");
    assert_eq!(v["consistency"], "stop", "{m:#}");
    let hooks = v["hooks"].as_array().unwrap();
    let summary: Vec<(String, String, i64)> = hooks
        .iter()
        .map(|h| {
            (
                h["phase"].as_str().unwrap().to_string(),
                h["service"].as_str().unwrap().to_string(),
                h["exit_code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("pre".to_string(), "app".to_string(), 0),
            ("pre".to_string(), "app".to_string(), 0),
            ("post".to_string(), "app".to_string(), 0)
        ],
        "{m:#}"
    );
    assert_eq!(hooks[0]["stdout"], "out-pre1\n");
    assert_eq!(hooks[1]["stderr"], "err-pre2\n");
    assert_eq!(
        hooks[1]["command"],
        "sh -c echo pre2 >> /tmp/hooks.log; echo err-pre2 >&2"
    );
    assert!(hooks.iter().all(|h| h["duration_ms"].is_u64()), "{m:#}");
    let project_hooks: Vec<&str> = m["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["phase"].as_str().unwrap())
        .collect();
    assert_eq!(project_hooks, ["pre", "post"], "{m:#}");
}

/// The app's volume with one pre hook and a post hook that leaves a marker.
fn single_hook_project(pre: &str) -> String {
    format!(
        r#"
services:
  app:
    image: postgres:16
    volumes:
      - appdata:/var/lib/postgresql/data
volumes:
  appdata:
    labels: {{persist.test.run: "{{{{RUN}}}}"}}
    x-persist:
      hooks:
        pre:
          - {pre}
        post:
          - {{service: app, command: "date +%s > /tmp/post-ran"}}
"#
    )
}

#[test]
fn a_failing_pre_hook_aborts_the_backup_and_post_hooks_still_run() {
    let env = TestEnv::new();
    start(
        &env,
        &single_hook_project(
            r#"{service: app, command: "echo flushing; echo cannot flush >&2; exit 3"}"#,
        ),
    );
    let app = env.service_container("app");
    let before = container_state(&env, &app);
    let ran = env.persist(["backup", "appdata"]);
    ran.assert_code(1)
        .assert_stderr_contains("pre hook `echo flushing; echo cannot flush >&2; exit 3` of `appdata` (service `app`) exited with code 3")
        .assert_stderr_contains("stderr | cannot flush")
        .assert_stderr_contains("the backup was not written");
    assert!(backup_files(&env).is_empty(), "{:?}", backup_files(&env));
    assert!(!container_file(&env, "app", "/tmp/post-ran").is_empty());
    // It failed before the stop: the app never stopped.
    assert_eq!(container_state(&env, &app), before, "{ran}");
    assert!(journal_files(&env).is_empty());
}

#[test]
fn a_hook_that_times_out_is_killed_and_fails_the_backup_unless_told_to_continue() {
    let env = TestEnv::new();
    start(
        &env,
        &single_hook_project(r#"{service: app, command: "sleep 77", timeout: 1s}"#),
    );
    let began = Instant::now();
    let ran = env.persist(["backup", "appdata"]);
    ran.assert_code(1)
        .assert_stderr_contains("timed out after 1 s; it was killed");
    assert!(began.elapsed() < Duration::from_secs(30), "{ran}");
    assert!(backup_files(&env).is_empty());
    assert!(!container_file(&env, "app", "/tmp/post-ran").is_empty());
    let ps = exec(&env, "app", "ps -o args");
    assert!(
        !ps.stdout().contains("sleep 77"),
        "the hook still runs\n{ps}"
    );

    // With `on_error: continue` the backup goes on and the manifest says what happened.
    env.write_project(
        &single_hook_project(
            r#"{service: app, command: "sleep 78", timeout: 1s, on_error: continue}"#,
        ),
        None,
    );
    let ran = env.persist(["backup", "appdata"]);
    let path = printed_path(&ran);
    ran.assert_stderr_contains("going on (`on_error: continue`)");
    let m = manifest(&env, &path);
    let hook = &crate::support::volume_entry(&m, "appdata")["hooks"][0];
    assert_eq!(hook["timed_out"], true, "{m:#}");
    assert_eq!(hook["on_error"], "continue", "{m:#}");
    assert!(hook.get("exit_code").is_none(), "{m:#}");
}

#[test]
fn a_hook_in_a_service_that_is_not_running_is_a_clear_error() {
    let env = TestEnv::new();
    start(
        &env,
        &single_hook_project(r#"{service: app, command: "true"}"#),
    );
    env.compose_v2(["stop", "app"]).assert_success();
    let ran = env.persist(["backup", "appdata"]);
    ran.assert_code(1)
        .assert_stderr_contains("cannot run: service `app` has no running container");
    assert!(backup_files(&env).is_empty());
}

#[test]
fn postgres_dump_holds_exactly_what_pg_dumpall_wrote_and_restore_feeds_it_to_psql() {
    let env = TestEnv::new();
    let (sql, _) = start(&env, PROJECT);
    let db = env.service_container("db");
    let before = container_state(&env, &db);
    let ran = env.persist(["backup", "--json", "dbdata"]);
    ran.assert_success();
    let path = PathBuf::from(ran.json()["path"].as_str().unwrap());
    assert_eq!(ran.json()["dumps"][0]["key"], "dbdata", "{ran}");
    // Dumped from the running service: it was never stopped.
    assert_eq!(container_state(&env, &db), before);
    assert_eq!(
        String::from_utf8(container_file(&env, "db", "/tmp/pg_dumpall.args")).unwrap(),
        "--clean --if-exists -U appuser\nuser=appuser\n"
    );

    // The member holds exactly the tool's output; no file tree of the volume is stored.
    let names = member_names(&path);
    assert_eq!(
        names,
        ["compose/compose.yaml", "dumps/db.sql.zst", "manifest.json"]
    );
    assert!(dump_bytes(&env, &path, "dumps/db.sql.zst") == sql);
    let m = manifest(&env, &path);
    let d = dump_record(&m, "dbdata");
    assert_eq!(d["consistency"], "dump");
    assert_eq!(d["recipe"], "postgres");
    assert_eq!(d["service"], "db");
    assert_eq!(d["member"], "dumps/db.sql.zst");
    assert_eq!(d["bytes"], sql.len());
    assert_eq!(d["content_sha256"], sha256(&sql));
    let stored = host_sh(
        &env,
        r#"tar -xOf "$1" dumps/db.sql.zst | sha256sum"#,
        &[path.to_str().unwrap()],
    );
    assert!(
        stored.stdout().starts_with(d["sha256"].as_str().unwrap()),
        "{stored}"
    );
    assert!(m["volumes"].as_array().unwrap().is_empty(), "{m:#}");

    // verify checks it.
    let v = env.persist(["verify", "--json", path.to_str().unwrap()]);
    v.assert_success();
    assert_eq!(v.json()["volumes"][0]["key"], "dbdata", "{v}");

    // A dry run says what it would do and changes nothing.
    let dry = env.persist(["restore", "--dry-run", path.to_str().unwrap(), "dbdata"]);
    dry.assert_success()
        .assert_stderr_contains("`dbdata`: loading the postgres dump `dumps/db.sql.zst`")
        .assert_stderr_contains("with `psql`");
    assert!(
        env.docker(["exec", &db, "test", "-e", "/tmp/psql.stdin"])
            .status
            .code()
            == Some(1)
    );

    // Restore into a stopped service: it is started, then fed exactly the dump.
    env.compose_v2(["stop", "db"]).assert_success();
    let ran = env.persist(["restore", "--yes", path.to_str().unwrap(), "dbdata"]);
    ran.assert_success()
        .assert_stderr_contains("Starting `db` to load the dump into it")
        .assert_stderr_contains("Safety backup:");
    assert!(
        container_file(&env, "db", "/tmp/psql.stdin") == sql,
        "{ran}"
    );
    assert_eq!(
        String::from_utf8(container_file(&env, "db", "/tmp/psql.args")).unwrap(),
        "-X -q -v ON_ERROR_STOP=0 -U appuser -d postgres\n"
    );
    assert!(container_state(&env, &db).starts_with("true "));
    // The safety backup of a stopped database holds its files.
    let safety: Vec<String> = backup_files(&env)
        .into_iter()
        .filter(|n| n.contains("pre-restore"))
        .collect();
    assert_eq!(safety.len(), 1, "{:?}", backup_files(&env));
    let sm = manifest(&env, &env.project_dir.join("backups").join(&safety[0]));
    assert_eq!(
        crate::support::volume_entry(&sm, "dbdata")["consistency"],
        "stop"
    );
}

#[test]
fn a_failing_dump_tool_writes_no_backup_and_shows_its_error() {
    let env = TestEnv::new();
    start(&env, PROJECT);
    exec(&env, "db", "touch /tmp/fail-dump");
    let ran = env.persist(["backup", "dbdata"]);
    ran.assert_code(1)
        .assert_stderr_contains("`sh` exited with code 1")
        .assert_stderr_contains("FATAL: the database system is starting up");
    assert!(backup_files(&env).is_empty(), "{:?}", backup_files(&env));

    // A service that is not running cannot be dumped; the hint names the ways out.
    exec(&env, "db", "rm /tmp/fail-dump");
    env.compose_v2(["stop", "db"]).assert_success();
    let ran = env.persist(["backup", "dbdata"]);
    ran.assert_code(2)
        .assert_stderr_contains("`db` is not running")
        .assert_stderr_contains("--consistency stop");
    assert!(backup_files(&env).is_empty());

    // An image without a recipe needs `dump:`.
    let custom = PROJECT.replace("image: postgres:16", "image: busybox:latest");
    env.write_project(&custom.replace("{{PATH}}", PATH), None);
    let ran = env.persist(["backup", "dbdata"]);
    ran.assert_code(2)
        .assert_stderr_contains("no dump recipe fits the image of `db` (`busybox:latest`)")
        .assert_stderr_contains("dump: postgres");
}

#[test]
fn redis_rdb_restore_puts_the_exact_file_in_place_with_the_server_stopped_and_started_again() {
    let env = TestEnv::new();
    let (_, rdb) = start(&env, PROJECT);
    let path = printed_path(&env.persist(["backup", "cachedata"]));
    assert!(dump_bytes(&env, &path, "dumps/cache.rdb.zst") == rdb);
    let m = manifest(&env, &path);
    assert_eq!(dump_record(&m, "cachedata")["recipe"], "redis");

    // The data changes; the restore puts the backed-up file back while Redis is stopped.
    exec(&env, "cache", "echo changed > /data/dump.rdb");
    let cache = env.service_container("cache");
    let before = container_state(&env, &cache);
    let ran = env.persist(["restore", "--yes", path.to_str().unwrap(), "cachedata"]);
    ran.assert_success()
        .assert_stderr_contains("to put the RDB file of `cachedata` in place");
    let after = container_state(&env, &cache);
    assert!(
        after.starts_with("true ") && after != before,
        "`{before}` → `{after}`\n{ran}"
    );
    assert!(container_file(&env, "cache", "/data/dump.rdb") == rdb);
    // The server's last start saw the restored file.
    let starts = String::from_utf8(container_file(&env, "cache", "/data/starts.log")).unwrap();
    assert!(
        starts.lines().last().unwrap().starts_with(&sha256(&rdb)),
        "{starts}\n{ran}"
    );
    assert!(journal_files(&env).is_empty());

    // With the append-only file on, Redis would ignore the RDB file: refused, nothing changed.
    exec(
        &env,
        "cache",
        "echo yes > /tmp/appendonly; echo changed > /data/dump.rdb",
    );
    let ran = env.persist(["restore", "--yes", path.to_str().unwrap(), "cachedata"]);
    ran.assert_code(3).assert_stderr_contains("appendonly yes");
    assert_eq!(
        container_file(&env, "cache", "/data/dump.rdb"),
        b"changed\n"
    );
}

#[test]
fn sigint_during_a_dump_leaves_no_file_the_service_running_and_runs_the_post_hooks() {
    let env = TestEnv::new();
    let compose = PROJECT.replace(
        "    x-persist: {consistency: dump}\n  cachedata:",
        "    x-persist:\n      consistency: dump\n      hooks:\n        post: [{service: db, command: \"touch /tmp/post-ran\"}]\n  cachedata:",
    );
    assert_ne!(compose, PROJECT);
    start(&env, &compose);
    exec(&env, "db", "touch /tmp/slow-dump");
    let db = env.service_container("db");
    let before = container_state(&env, &db);
    let dir = env.project_dir.join("backups");
    let mut backup = Running::start(&env, "backup", &["backup", "dbdata"]);
    let began = Instant::now();
    while env
        .docker(["exec", &db, "test", "-e", "/tmp/slow-dump.pid"])
        .status
        .code()
        != Some(0)
    {
        assert!(backup.is_running(), "{}", backup.output());
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "{}",
            backup.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        dir_names(&dir).iter().any(|n| n.ends_with(".partial")),
        "{:?}",
        dir_names(&dir)
    );
    backup.signal("INT");
    let status = backup.wait(Duration::from_secs(60));
    assert_eq!(
        status.code(),
        Some(130),
        "{status:?} {:?}\n{}",
        status.signal(),
        backup.output()
    );
    assert!(backup_files(&env).is_empty(), "{:?}", dir_names(&dir));
    assert!(helpers_of(&env, backup.pid()).is_empty());
    assert_eq!(container_state(&env, &db), before, "{}", backup.output());
    assert!(
        env.docker(["exec", &db, "test", "-e", "/tmp/post-ran"])
            .status
            .success(),
        "the post hook did not run after Ctrl-C\n{}",
        backup.output()
    );
}

#[test]
fn stop_consistency_stops_in_reverse_dependency_order_and_starts_in_dependency_order() {
    // `web` depends on `api`, which depends on `db`; all mount the critical volume; file order is not
    // dependency order.
    let env = TestEnv::new();
    env.write_project(
        r#"
services:
  web:
    image: alpine:3
    depends_on: [api]
    volumes: [shared:/var/lib/postgresql/data]
  db:
    image: postgres:16
    volumes: [shared:/var/lib/postgresql/data]
  api:
    image: alpine:3
    depends_on: [db]
    volumes: [shared:/var/lib/postgresql/data]
volumes:
  shared:
    labels: {persist.test.run: "{{RUN}}"}
"#,
        None,
    );
    env.compose_v2(["up", "-d"]).assert_success();
    // Events are selected by the second: leave the second of `up`'s own start events behind.
    std::thread::sleep(Duration::from_millis(1100));
    let start_time = jiff_now();
    let path = printed_path(&env.persist(["backup", "shared"]));
    let m = manifest(&env, &path);
    assert_eq!(
        crate::support::volume_entry(&m, "shared")["stopped"],
        serde_json::json!(["db", "api", "web"])
    );
    let until = jiff_now() + 1;
    let events = env.docker([
        "events",
        "--since",
        &start_time.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        &format!("label=com.docker.compose.project={}", env.project),
        "--filter",
        "type=container",
        "--filter",
        "event=stop",
        "--filter",
        "event=start",
        "--format",
        "{{.Action}} {{index .Actor.Attributes \"com.docker.compose.service\"}}",
    ]);
    events.assert_success();
    assert_eq!(
        events.stdout_lines(),
        [
            "stop web",
            "stop api",
            "stop db",
            "start db",
            "start api",
            "start web"
        ],
        "{events}"
    );
}

fn jiff_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Stand-ins for the MySQL and MongoDB tools: each dump tool records its arguments and `MYSQL_PWD`, then
/// writes the fixture; each loader records its arguments and stdin; the probes succeed.
const MYSQL_TOOLS: [(&str, &str); 4] = [
    (
        "mysqldump",
        "#!/bin/sh\necho \"$* pwd=${MYSQL_PWD:-}\" > /tmp/dump.args\ncat /tools/fixture.sql\n",
    ),
    (
        "mysql",
        "#!/bin/sh\ncase \" $* \" in *\" -e \"*) exit 0;; esac\necho \"$* pwd=${MYSQL_PWD:-}\" > /tmp/load.args\ncat > /tmp/load.stdin\n",
    ),
    (
        "mongodump",
        "#!/bin/sh\necho \"$*\" > /tmp/dump.args\ncat /tools/fixture.sql\n",
    ),
    (
        "mongorestore",
        "#!/bin/sh\necho \"$*\" > /tmp/load.args\ncat > /tmp/load.stdin\n",
    ),
];

#[test]
fn mysql_and_mongodb_dumps_round_trip_through_their_tools_with_credentials_from_the_container() {
    let env = TestEnv::new();
    let compose = r#"
services:
  sql:
    image: mysql:8
    environment: {PATH: "{{PATH}}", MYSQL_ROOT_PASSWORD: "s3cret pw"}
    volumes: [sqldata:/var/lib/mysql, ./tools:/tools:ro]
  docs:
    image: mongo:7
    environment: {PATH: "{{PATH}}", MONGO_INITDB_ROOT_USERNAME: root, MONGO_INITDB_ROOT_PASSWORD: pw}
    volumes: [docsdata:/data/db, ./tools:/tools:ro]
volumes:
  sqldata:
    labels: {persist.test.run: "{{RUN}}"}
    x-persist: {consistency: dump}
  docsdata:
    labels: {persist.test.run: "{{RUN}}"}
    x-persist: {consistency: dump}
"#;
    let (sql, _) = start(&env, compose);
    for (name, text) in MYSQL_TOOLS {
        script(&env, name, text);
    }
    script(&env, "mongosh", "#!/bin/sh\nexit 0\n");
    let ran = env.persist(["backup", "sqldata", "docsdata"]);
    let path = printed_path(&ran);
    assert!(!ran.stderr().contains("s3cret"), "{ran}");
    assert!(dump_bytes(&env, &path, "dumps/sql.sql.zst") == sql);
    assert!(dump_bytes(&env, &path, "dumps/docs.archive.zst") == sql);
    assert_eq!(
        String::from_utf8(container_file(&env, "sql", "/tmp/dump.args")).unwrap(),
        "-uroot --all-databases --single-transaction --routines --events --triggers pwd=s3cret pw\n"
    );
    assert_eq!(
        String::from_utf8(container_file(&env, "docs", "/tmp/dump.args")).unwrap(),
        "--archive --username root --password pw --authenticationDatabase admin\n"
    );

    let ran = env.persist(["restore", "--yes", path.to_str().unwrap()]);
    ran.assert_success();
    assert!(
        container_file(&env, "sql", "/tmp/load.stdin") == sql,
        "{ran}"
    );
    assert_eq!(
        String::from_utf8(container_file(&env, "sql", "/tmp/load.args")).unwrap(),
        "-uroot pwd=s3cret pw\n"
    );
    assert!(
        container_file(&env, "docs", "/tmp/load.stdin") == sql,
        "{ran}"
    );
    assert_eq!(
        String::from_utf8(container_file(&env, "docs", "/tmp/load.args")).unwrap(),
        "--archive --drop --username root --password pw --authenticationDatabase admin\n"
    );
}
