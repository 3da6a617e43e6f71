//! A real PostgreSQL server (Debian's `postgresql-15`, image made by scripts/postgres-image.sh) backed up
//! while a client keeps committing transactions, then lost with `docker compose down -v` and restored.
//!
//! What makes this a proof rather than a smoke test: every transaction writes two rows (tables `a` and `b`,
//! the second derived from the first) and stores `pg_postmaster_start_time()`, the start time of the server
//! that committed it. The default consistency (`auto`) stops the server while its volume is read and starts
//! it again, so the rows committed before the backup carry the first server's start time and those committed
//! after it the second's. The restored database must hold exactly the rows of the first server — every
//! transaction the client saw committed before the stop, none after the restart, no transaction in half —
//! and start from a cleanly shut-down data directory (no crash recovery).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::backup::{container_state, manifest, printed_path};
use crate::support::{POSTGRES_IMAGE, Ran, TestEnv, require_postgres_image, volume_entry};

/// The project: the real server, its data in a named volume (critical by the built-in rules). No network:
/// the client talks to the server over its unix socket, through `docker exec`.
const PROJECT: &str = r#"
services:
  db:
    image: {{IMAGE}}
    network_mode: none
    environment:
      POSTGRES_PASSWORD: not-used-over-the-socket
      POSTGRES_DB: app
    volumes:
      - pgdata:/var/lib/postgresql/data
volumes:
  pgdata:
    labels:
      persist.test.run: "{{RUN}}"
"#;

const SCHEMA: &str = "CREATE TABLE a (n int PRIMARY KEY, payload text NOT NULL, \
                      server_start timestamptz NOT NULL DEFAULT pg_postmaster_start_time()); \
                      CREATE TABLE b (n int PRIMARY KEY REFERENCES a (n), digest text NOT NULL)";

/// Log lines of a server that starts from a data directory that was not shut down cleanly (`init process
/// complete` is added where a restored volume must not be initialized anew).
const CRASH_RECOVERY: &[&str] = &[
    "was interrupted",
    "not properly shut down",
    "automatic recovery in progress",
    "redo starts at",
    "database system was shut down in recovery",
];

/// Writes the project and starts it; returns the id of the `db` container once the server is ready and
/// holds the schema.
fn start_project(env: &TestEnv) -> String {
    require_postgres_image();
    env.write_project(&PROJECT.replace("{{IMAGE}}", POSTGRES_IMAGE), None);
    env.compose_v2(["up", "-d"]).assert_success();
    let db = env.service_container("db");
    wait_until_ready(env, &db);
    psql_ok(env, &db, &[SCHEMA]);
    db
}

/// Waits until the real server (not the entrypoint's temporary one during initdb) accepts connections.
#[track_caller]
fn wait_until_ready(env: &TestEnv, container: &str) -> Duration {
    let started = Instant::now();
    loop {
        let ran = env.docker([
            "exec",
            container,
            "sh",
            "-c",
            // PID 1 is the server itself once the entrypoint has exec'd it.
            r#"pg_isready -q -U postgres -d app && [ "$(cat /proc/1/comm)" = postgres ]"#,
        ]);
        if ran.status.success() {
            return started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(90) {
            panic!(
                "PostgreSQL did not become ready within 90 s\n{ran}\n--- server log ---\n{}",
                server_log(env, container)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the server wrote to its container's stdout and stderr.
fn server_log(env: &TestEnv, container: &str) -> String {
    let ran = env.docker(["logs", container]);
    format!("{}{}", ran.stdout(), ran.stderr())
}

/// Asserts that the server's log holds every line of `present` and none of `absent`.
#[track_caller]
fn assert_server_log(env: &TestEnv, container: &str, present: &[&str], absent: &[&str]) {
    let log = server_log(env, container);
    for needle in present {
        assert!(
            log.contains(needle),
            "no `{needle}` in the server log:\n{log}"
        );
    }
    for needle in absent {
        assert!(
            !log.contains(needle),
            "`{needle}` in the server log:\n{log}"
        );
    }
}

/// `psql` in the container as `postgres` on database `app`, unaligned and tuples only, stopping at the
/// first error; each `-c` is sent on its own, in one session.
fn psql(env: &TestEnv, container: &str, commands: &[&str]) -> Ran {
    let mut args = vec![
        "exec",
        container,
        "psql",
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-U",
        "postgres",
        "-d",
        "app",
    ];
    for c in commands {
        args.extend(["-c", c]);
    }
    env.docker(args)
}

#[track_caller]
fn psql_ok(env: &TestEnv, container: &str, commands: &[&str]) -> String {
    let ran = psql(env, container, commands);
    ran.assert_success();
    ran.stdout().trim().to_string()
}

/// The start time of the running server, as seconds since the epoch (the form the client records).
fn server_start(env: &TestEnv, container: &str) -> String {
    psql_ok(
        env,
        container,
        &["SELECT extract(epoch FROM pg_postmaster_start_time())"],
    )
}

/// One transaction the client tried.
#[derive(Debug)]
struct Attempt {
    n: u32,
    started: Instant,
    /// When committed: the start time of the server that committed it (epoch seconds, as psql printed it).
    committed_by: Option<String>,
    /// When not: why, in a few words.
    error: String,
}

/// The client: one transaction after another, each writing row `n` of `a` and of `b` (derived from `a`'s),
/// each in a fresh `docker exec psql`, until `stop` is set (or a bound is reached). psql exits 0 only when
/// COMMIT succeeded.
fn insert_until(env: &TestEnv, container: &str, stop: &AtomicBool, log: &Mutex<Vec<Attempt>>) {
    let deadline = Instant::now() + Duration::from_secs(300);
    for n in 1..=5000u32 {
        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
            return;
        }
        let started = Instant::now();
        let insert_a = format!("INSERT INTO a (n, payload) VALUES ({n}, repeat(md5('{n}'), 8))");
        let insert_b =
            format!("INSERT INTO b (n, digest) SELECT n, md5(payload) FROM a WHERE n = {n}");
        let ran = psql(
            env,
            container,
            &[
                "BEGIN",
                &insert_a,
                &insert_b,
                "SELECT extract(epoch FROM pg_postmaster_start_time())",
                "COMMIT",
            ],
        );
        let committed = ran.status.success();
        let attempt = Attempt {
            n,
            started,
            committed_by: committed.then(|| ran.stdout().trim().to_string()),
            error: if committed {
                String::new()
            } else {
                ran.stderr().lines().last().unwrap_or_default().to_string()
            },
        };
        log.lock().unwrap_or_else(|e| e.into_inner()).push(attempt);
        if !committed {
            // The server is down (stopped for the backup, or starting): do not spin.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Waits until `enough` holds for the client's log (or panics after `limit`).
#[track_caller]
fn wait_for_log(
    log: &Mutex<Vec<Attempt>>,
    limit: Duration,
    what: &str,
    enough: impl Fn(&[Attempt]) -> bool,
) {
    let started = Instant::now();
    loop {
        {
            let log = log.lock().unwrap_or_else(|e| e.into_inner());
            if enough(&log) {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "the client did not get {what} within {limit:?}; its attempts:\n{:#?}",
                *log
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The rows of `a` joined with `b`: n → (start time of the server that committed it, whether both rows are
/// there and hold what the transaction wrote).
fn rows(env: &TestEnv, container: &str) -> BTreeMap<u32, (String, bool)> {
    let out = psql_ok(
        env,
        container,
        &[
            "SELECT coalesce(a.n, b.n), coalesce(extract(epoch FROM a.server_start)::text, ''), \
           coalesce(a.payload = repeat(md5(a.n::text), 8) AND b.digest = md5(a.payload), false) \
           FROM a FULL JOIN b USING (n) ORDER BY 1",
        ],
    );
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('|').collect();
            assert_eq!(fields.len(), 3, "unexpected row `{line}`");
            let n = fields[0]
                .parse()
                .unwrap_or_else(|e| panic!("row `{line}`: {e}"));
            (n, (fields[1].to_string(), fields[2] == "t"))
        })
        .collect()
}

/// A backup while the client writes: the client commits `before` transactions, `docker persist ARGS` runs
/// while it goes on, and it stops once `after` transactions begun after the backup returned have committed.
struct BackupWhileWriting {
    backup: Ran,
    started: Instant,
    finished: Instant,
    attempts: Vec<Attempt>,
}

fn backup_while_writing(
    env: &TestEnv,
    container: &str,
    args: &[&str],
    before: usize,
    after: usize,
) -> BackupWhileWriting {
    let stop = AtomicBool::new(false);
    let log = Mutex::new(Vec::<Attempt>::new());
    let limit = Duration::from_secs(90);
    let (backup, started, finished) = std::thread::scope(|scope| {
        let client = scope.spawn(|| insert_until(env, container, &stop, &log));
        wait_for_log(&log, limit, &format!("{before} commits"), |l| {
            l.iter().filter(|a| a.committed_by.is_some()).count() >= before
        });
        let started = Instant::now();
        let backup = env.persist(args);
        let finished = Instant::now();
        wait_for_log(
            &log,
            limit,
            &format!("{after} commits after the backup"),
            |l| {
                l.iter()
                    .filter(|a| a.started > finished && a.committed_by.is_some())
                    .count()
                    >= after
            },
        );
        stop.store(true, Ordering::SeqCst);
        client.join().expect("the client thread panicked");
        (backup, started, finished)
    });
    BackupWhileWriting {
        backup,
        started,
        finished,
        attempts: log.into_inner().unwrap_or_else(|e| e.into_inner()),
    }
}

fn committed(log: &[Attempt], server: &str) -> BTreeSet<u32> {
    log.iter()
        .filter(|a| a.committed_by.as_deref() == Some(server))
        .map(|a| a.n)
        .collect()
}

#[test]
fn postgres_backed_up_while_clients_write_restores_every_committed_row_and_starts_cleanly() {
    let env = TestEnv::new();
    let db = start_project(&env);
    let ls = env.persist(["ls", "--json"]);
    ls.assert_success();
    let pgdata = volume_entry(&ls.json(), "pgdata").clone();
    assert_eq!(pgdata["tier"], "critical", "{pgdata:#}");
    assert_eq!(pgdata["consistency"], "stop", "{pgdata:#}");
    let first_server = server_start(&env, &db);
    let state_before = container_state(&env, &db);

    // The client writes before, during and after the backup.
    let BackupWhileWriting {
        backup,
        started: backup_started,
        finished: backup_finished,
        attempts: log,
    } = backup_while_writing(&env, &db, &["backup"], 15, 10);
    let path = printed_path(&backup);
    assert!(path.is_file(), "backup printed {path:?}\n{backup}");

    // The backup stopped the server for the read and started it again.
    let m = manifest(&env, &path);
    let record = volume_entry(&m, "pgdata");
    assert_eq!(record["consistency"], "stop", "{m:#}");
    assert_eq!(record["stopped"], serde_json::json!(["db"]), "{m:#}");
    let state_after = container_state(&env, &db);
    assert!(
        state_after.starts_with("true ") && state_after != state_before,
        "db was not stopped and started again: `{state_before}` → `{state_after}`\n{backup}"
    );
    let ps = env.compose_v2(["ps", "--status", "running", "--services"]);
    assert_eq!(ps.stdout().trim(), "db", "{ps}");
    let second_server = server_start(&env, &db);
    assert_ne!(first_server, second_server, "the server was not restarted");
    // `docker stop` sent the image's stop signal (SIGINT): a fast, clean shutdown, and a start without
    // recovery.
    assert_server_log(
        &env,
        &db,
        &[
            "received fast shutdown request",
            "database system is shut down",
        ],
        CRASH_RECOVERY,
    );

    // What the client saw: commits by the first server, then failures while it was down, then commits by
    // the second; nothing else.
    let before = committed(&log, &first_server);
    let after = committed(&log, &second_server);
    let failed: Vec<&Attempt> = log.iter().filter(|a| a.committed_by.is_none()).collect();
    let others: Vec<&Attempt> = log
        .iter()
        .filter(|a| {
            a.committed_by
                .as_ref()
                .is_some_and(|s| *s != first_server && *s != second_server)
        })
        .collect();
    assert!(others.is_empty(), "commits by a third server: {others:#?}");
    assert!(before.len() >= 15 && after.len() >= 10, "{log:#?}");
    let last_before = *before.last().unwrap();
    let first_after = *after.first().unwrap();
    assert!(last_before < first_after, "{log:#?}");
    assert!(
        failed
            .iter()
            .all(|a| a.n > last_before && a.n < first_after),
        "a transaction failed while the server was up: {failed:#?}"
    );
    assert!(
        log.iter()
            .any(|a| a.started > backup_started && a.started < backup_finished),
        "the client wrote nothing while the backup ran: {log:#?}"
    );
    // The moment of the backup, as the live server records it: the rows the first server committed.
    let live_rows = rows(&env, &db);
    let at_backup: BTreeSet<u32> = live_rows
        .iter()
        .filter(|(_, (server, _))| *server == first_server)
        .map(|(n, _)| *n)
        .collect();
    assert!(before.is_subset(&at_backup), "{live_rows:?}\n{log:#?}");
    // Only the transaction in flight when the server stopped may have committed without the client hearing.
    let unheard: Vec<u32> = at_backup.difference(&before).copied().collect();
    assert!(
        unheard.len() <= 1 && unheard.iter().all(|n| *n == last_before + 1),
        "rows committed before the stop that the client never saw committed: {unheard:?}\n{log:#?}"
    );
    let errors: BTreeSet<&str> = failed.iter().map(|a| a.error.as_str()).collect();
    eprintln!(
        "client: {} transactions committed before the backup stopped the server, {} failed while it was \
         down ({errors:?}), {} committed after it started again; backup took {:.1} s",
        before.len(),
        failed.len(),
        after.len(),
        (backup_finished - backup_started).as_secs_f64()
    );

    // Lose everything, restore, start.
    env.compose_v2(["down", "-v"]).assert_success();
    let volume = format!("{}_pgdata", env.project);
    assert!(
        env.volume_labels(&volume).is_none(),
        "down -v left {volume}"
    );
    let restore = env.persist(["restore", "--yes", path.to_str().unwrap()]);
    restore.assert_success();
    assert!(restore.stderr().contains("Restored `pgdata`"), "{restore}");
    env.compose_v2(["up", "-d"]).assert_success();
    let db = env.service_container("db");
    let ready_in = wait_until_ready(&env, &db);
    eprintln!("restored server ready in {:.1} s", ready_in.as_secs_f64());

    // It started from the restored, cleanly shut-down data directory: no new cluster, no recovery.
    assert_server_log(
        &env,
        &db,
        &["database system was shut down at"],
        &[CRASH_RECOVERY, &["init process complete"]].concat(),
    );

    // Exactly the rows of the backup's moment: every transaction committed before the stop, none of those
    // after the restart, each transaction whole.
    let restored = rows(&env, &db);
    let restored_ns: BTreeSet<u32> = restored.keys().copied().collect();
    assert_eq!(
        restored_ns, at_backup,
        "restored rows differ from the backup's moment"
    );
    assert!(before.is_subset(&restored_ns));
    assert!(
        restored_ns.is_disjoint(&after),
        "rows committed after the restart were restored"
    );
    for (n, (server, whole)) in &restored {
        assert_eq!(
            *server, first_server,
            "row {n} was committed by another server"
        );
        assert!(
            whole,
            "transaction {n} is there only in part, or with other content"
        );
    }
    // The indexes hold every row of the tables (amcheck, from PostgreSQL's contrib).
    psql_ok(
        &env,
        &db,
        &[
            "CREATE EXTENSION amcheck",
            "SELECT bt_index_check('a_pkey', true), bt_index_check('b_pkey', true)",
        ],
    );
    // And it takes writes again.
    psql_ok(
        &env,
        &db,
        &[
            "INSERT INTO a (n, payload) VALUES (1000000, 'after restore')",
            "INSERT INTO b (n, digest) VALUES (1000000, md5('after restore'))",
        ],
    );
}

#[test]
fn postgres_backup_with_live_consistency_leaves_the_server_running_and_says_live() {
    let env = TestEnv::new();
    let db = start_project(&env);
    let server = server_start(&env, &db);
    let state_before = container_state(&env, &db);

    let BackupWhileWriting {
        backup,
        attempts: log,
        ..
    } = backup_while_writing(&env, &db, &["backup", "--consistency", "live"], 5, 5);
    let path = printed_path(&backup);

    // Reported as live, nothing stopped: the same container run, the same server, every transaction committed.
    let m = manifest(&env, &path);
    let record = volume_entry(&m, "pgdata");
    assert_eq!(record["consistency"], "live", "{m:#}");
    assert!(record.get("stopped").is_none(), "{m:#}");
    backup.assert_stderr_contains("Backed up `pgdata` live, its services running");
    assert_eq!(
        container_state(&env, &db),
        state_before,
        "db was restarted\n{backup}"
    );
    assert_eq!(server_start(&env, &db), server, "the server was restarted");
    let failed: Vec<&Attempt> = log.iter().filter(|a| a.committed_by.is_none()).collect();
    assert!(
        failed.is_empty(),
        "transactions failed during a live backup: {failed:#?}"
    );
}
