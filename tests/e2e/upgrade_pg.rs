//! `upgrade` across PostgreSQL major versions, with real servers: Debian's `postgresql-15` and
//! `postgresql-17` (images made by `scripts/postgres-image.sh 15` and `17`). A cluster with several
//! databases, roles with passwords and table privileges, sequences and an extension moves from 15 to 17 by
//! dump and load; `pg_dumpall` of both (by the same 17 client, so that only the server differs) must be
//! equal but for the version lines and `\restrict` keys. `--rollback` goes back to the untouched 15
//! volume, `--finish` removes it, and an image without an extension the databases use is refused before
//! anything changes.

use std::time::{Duration, Instant};

use crate::support::{POSTGRES_IMAGE, Ran, TestEnv, docker, require_postgres_image};

/// The second major version (scripts/postgres-image.sh 17).
const POSTGRES_17: &str = "persist-test/postgres-debian:17";

const PROJECT: &str = r#"
services:
  db:
    image: {{IMAGE}}
    network_mode: none
    environment:
      POSTGRES_USER: admin
      POSTGRES_PASSWORD: admin-secret
      POSTGRES_DB: app
    volumes:
      - pgdata:/var/lib/postgresql/data
volumes:
  pgdata:
    labels:
      persist.test.run: "{{RUN}}"
"#;

const SEED_APP: &str = "CREATE ROLE reader LOGIN PASSWORD 'reader-secret'; \
    CREATE ROLE writer LOGIN PASSWORD 'writer-secret' CREATEDB; \
    CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, born date); \
    INSERT INTO customers (name, born) SELECT 'customer ' || n, DATE '1970-01-01' + n FROM generate_series(1, 500) n; \
    DELETE FROM customers WHERE id > 480; \
    CREATE SEQUENCE invoice_no START 1000 INCREMENT 7; \
    SELECT setval('invoice_no', 4242); \
    GRANT SELECT ON customers TO reader; \
    GRANT SELECT, INSERT, UPDATE ON customers TO writer; \
    GRANT USAGE ON SEQUENCE customers_id_seq TO writer; \
    CREATE VIEW adults AS SELECT * FROM customers WHERE born < DATE '1971-01-01'";

const SEED_SHOP: &str = "CREATE EXTENSION citext; \
    CREATE TABLE products (sku citext PRIMARY KEY, price numeric(10,2) NOT NULL, tags text[]); \
    INSERT INTO products VALUES ('ABC-1', 9.99, '{a,b}'), ('abc-2', 19.50, NULL), ('Ünïcode-3', 0.01, '{}'); \
    CREATE FUNCTION total() RETURNS numeric LANGUAGE sql AS 'SELECT sum(price) FROM products'; \
    ALTER DATABASE shop OWNER TO writer";

fn require_images() {
    require_postgres_image();
    let ran = docker(["image", "inspect", "--format", "{{.Id}}", POSTGRES_17]);
    assert!(
        ran.status.success(),
        "`{POSTGRES_17}` is missing; run `scripts/postgres-image.sh 17` as root (scripts/test.sh does)\n{ran}"
    );
}

fn image_id(tag: &str) -> String {
    let ran = docker(["image", "inspect", "--format", "{{.Id}}", tag]);
    ran.assert_success();
    ran.stdout().trim().to_string()
}

fn psql(env: &TestEnv, db: &str, sql: &str) -> Ran {
    let c = env.service_container("db");
    env.docker([
        "exec",
        &c,
        "psql",
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-U",
        "admin",
        "-d",
        db,
        "-c",
        sql,
    ])
}

/// Waits until the real server of `db` (PID 1, not the entrypoint's temporary one) accepts connections.
fn wait_ready(env: &TestEnv) {
    let started = Instant::now();
    loop {
        let c = env.service_container("db");
        let ran = env.docker([
            "exec",
            &c,
            "sh",
            "-c",
            r#"pg_isready -q -U admin -d app && [ "$(cat /proc/1/comm)" = postgres ]"#,
        ]);
        if ran.status.success() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "PostgreSQL did not become ready\n{ran}\n{}",
            env.docker(["logs", &c]).stderr()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The project on PostgreSQL 15 with the data above.
fn start(env: &TestEnv) {
    require_images();
    env.write_project(&PROJECT.replace("{{IMAGE}}", POSTGRES_IMAGE), None);
    env.compose_v2(["up", "-d"]).assert_success();
    wait_ready(env);
    psql(env, "app", SEED_APP).assert_success();
    psql(env, "app", "CREATE DATABASE shop").assert_success();
    psql(env, "shop", SEED_SHOP).assert_success();
    psql(env, "app", "SELECT nextval('customers_id_seq')").assert_success();
}

/// `pg_dumpall` of the running server by the PostgreSQL 17 client (over the server's loopback), without
/// the lines that name versions and the random keys of `\restrict`.
fn dumpall(env: &TestEnv) -> String {
    let c = env.service_container("db");
    let ran = docker([
        "run",
        "--rm",
        "--label",
        &format!("persist.test.run={}", env.run),
        "--network",
        &format!("container:{c}"),
        "-e",
        "PGPASSWORD=admin-secret",
        "--entrypoint",
        "pg_dumpall",
        POSTGRES_17,
        "-h",
        "127.0.0.1",
        "-U",
        "admin",
    ]);
    ran.assert_success();
    let text: Vec<String> = ran
        .stdout()
        .lines()
        .filter(|l| {
            !(l.starts_with("-- Dumped from database version")
                || l.starts_with("-- Dumped by pg_dump")
                || l.starts_with("\\restrict")
                || l.starts_with("\\unrestrict"))
        })
        // PostgreSQL 16 and later print a view's columns without the table's name where it is not needed
        // (`SELECT id` for 15's `SELECT customers.id`): the same view, deparsed by another server.
        .map(|l| {
            if l.starts_with(' ') {
                l.replace("customers.", "")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(
        text.iter().any(|l| l.contains("CREATE DATABASE shop")),
        "the dump holds no database `shop`:\n{}",
        text.join("\n")
    );
    text.join("\n")
}

/// Asserts that two filtered dumps are equal, showing the lines only one of them has.
#[track_caller]
fn assert_same_dump(before: &str, after: &str, context: &str) {
    if before == after {
        return;
    }
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    let only_before: Vec<&&str> = a.iter().filter(|l| !b.contains(l)).collect();
    let only_after: Vec<&&str> = b.iter().filter(|l| !a.contains(l)).collect();
    panic!(
        "the dumps differ ({} and {} lines)\nonly before:\n{}\nonly after:\n{}\n{context}",
        a.len(),
        b.len(),
        only_before
            .iter()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        only_after
            .iter()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
}

fn pg_version_in(env: &TestEnv, volume: &str) -> String {
    let ran = env.docker([
        "run",
        "--rm",
        "--label",
        &format!("persist.test.run={}", env.run),
        "--network",
        "none",
        "-v",
        &format!("{volume}:/v:ro"),
        "busybox:latest",
        "cat",
        "/v/PG_VERSION",
    ]);
    ran.assert_success();
    ran.stdout().trim().to_string()
}

fn running_image(env: &TestEnv) -> String {
    let c = env.service_container("db");
    let ran = env.docker(["inspect", "--format", "{{.Image}}", &c]);
    ran.assert_success();
    ran.stdout().trim().to_string()
}

fn volume_exists(name: &str) -> bool {
    docker(["volume", "inspect", name]).status.success()
}

/// Upgrades the started project to 17 and checks the data; returns the dump from before.
fn upgrade_to_17(env: &TestEnv) -> String {
    let before = dumpall(env);
    let dry = env.persist(["upgrade", "db", "--image", POSTGRES_17, "--dry-run"]);
    dry.assert_success();
    dry.assert_stdout_contains("15 → 17: dump and load into new volume");
    let ran = env.persist([
        "upgrade",
        "db",
        "--image",
        POSTGRES_17,
        "--yes",
        "--settle",
        "3s",
    ]);
    ran.assert_success();
    ran.assert_stderr_contains("Loaded the dump");
    ran.assert_stderr_contains("superuser `admin`, encoding UTF8");
    assert_eq!(running_image(env), image_id(POSTGRES_17), "{ran}");
    wait_ready(env);
    let version = psql(env, "app", "SHOW server_version_num");
    version.assert_success();
    assert!(version.stdout().trim().starts_with("17"), "{version}");
    let after = dumpall(env);
    assert_same_dump(&before, &after, &ran.to_string());
    // The sequences go on where they were, and the roles log in with their passwords.
    let next = psql(
        env,
        "app",
        "SELECT nextval('customers_id_seq'), nextval('invoice_no')",
    );
    assert_eq!(next.stdout().trim(), "502|4249", "{next}");
    let old = format!("{}_pgdata", env.project);
    let new = format!("{old}-pg17");
    assert_eq!(pg_version_in(env, &old), "15");
    assert!(volume_exists(&new));
    before
}

#[test]
fn postgresql_15_moves_to_17_with_its_data_and_finish_removes_the_old_volume() {
    let env = TestEnv::new();
    start(&env);
    let before = upgrade_to_17(&env);
    let old = format!("{}_pgdata", env.project);
    // The new data is what runs now: undo the sequence step of the check above, compare again.
    let finish = env.persist(["upgrade", "--finish", "db"]);
    finish.assert_code(3);
    assert!(volume_exists(&old));
    let finish = env.persist(["upgrade", "--finish", "db", "--yes"]);
    finish.assert_success();
    assert!(!volume_exists(&old), "{finish}");
    // Compose still runs it on the new volume.
    env.compose_v2(["up", "-d"]).assert_success();
    wait_ready(&env);
    assert_eq!(running_image(&env), image_id(POSTGRES_17));
    let customers = psql(&env, "app", "SELECT count(*), max(id) FROM customers");
    assert_eq!(customers.stdout().trim(), "480|480", "{customers}");
    assert!(!before.is_empty());
}

#[test]
fn postgresql_upgrade_rollback_goes_back_to_the_untouched_15_volume() {
    let env = TestEnv::new();
    start(&env);
    let before = upgrade_to_17(&env);
    let ran = env.persist(["upgrade", "--rollback", "db", "--yes", "--settle", "3s"]);
    ran.assert_success();
    assert_eq!(running_image(&env), image_id(POSTGRES_IMAGE), "{ran}");
    wait_ready(&env);
    let version = psql(&env, "app", "SHOW server_version_num");
    assert!(version.stdout().trim().starts_with("15"), "{version}");
    // The old cluster as it was before the upgrade: the sequence steps taken on 17 are not in it.
    assert_same_dump(&before, &dumpall(&env), &ran.to_string());
}

#[test]
fn an_image_without_an_extension_the_databases_use_is_refused_and_nothing_changes() {
    let env = TestEnv::new();
    start(&env);
    // PostgreSQL 17 without `citext`.
    let tag = format!("persist-test-upgrade/{}:pg17-no-citext", env.project);
    let made = docker([
        "create",
        "--label",
        &format!("persist.test.project={}", env.project),
        "--entrypoint",
        "sh",
        POSTGRES_17,
        "-c",
        "rm /usr/share/postgresql/17/extension/citext*",
    ]);
    made.assert_success();
    let id = made.stdout().trim().to_string();
    docker(["start", "-a", &id]).assert_success();
    let commit = docker([
        "commit",
        "--change",
        "ENTRYPOINT [\"docker-entrypoint.sh\"]",
        "--change",
        "CMD [\"postgres\"]",
        "--change",
        &format!("LABEL persist.test.run={}", env.run),
        &id,
        &tag,
    ]);
    docker(["rm", "-f", "-v", &id]).assert_success();
    commit.assert_success();
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = docker(["rmi", "-f", &self.0]);
        }
    }
    let _image = Remove(tag.clone());

    let before = running_image(&env);
    let ran = env.persist(["upgrade", "db", "--image", &tag, "--yes"]);
    ran.assert_code(3);
    ran.assert_stderr_contains("lacks the extension(s) `citext`");
    assert_eq!(running_image(&env), before);
    assert!(!volume_exists(&format!("{}_pgdata-pg17", env.project)));
    assert!(
        !env.project_dir.join("compose.override.yaml").exists(),
        "{ran}"
    );
    assert!(
        !env.project_dir.join("backups").exists()
            || std::fs::read_dir(env.project_dir.join("backups"))
                .unwrap()
                .all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tar"))
    );
    psql(&env, "shop", "SELECT count(*) FROM products").assert_success();
}

#[test]
fn a_postgresql_17_that_fails_in_the_service_is_rolled_back_onto_the_untouched_15_volume() {
    let env = TestEnv::new();
    start(&env);
    // PostgreSQL 17 that starts as a helper (the data moves) but exits in the service, whose environment
    // has FAIL_ON_START (the helper gets only the POSTGRES_* settings).
    let tag = format!("persist-test-upgrade/{}:pg17-fails", env.project);
    let made = docker([
        "create",
        "--label",
        &format!("persist.test.project={}", env.project),
        "--entrypoint",
        "sh",
        POSTGRES_17,
        "-c",
        r#"printf '#!/bin/sh\nif [ -n "${FAIL_ON_START:-}" ]; then echo "FATAL: cannot start on this data" >&2; exit 3; fi\nexec docker-entrypoint.sh "$@"\n' > /usr/local/bin/failing-entrypoint.sh && chmod 0755 /usr/local/bin/failing-entrypoint.sh"#,
    ]);
    made.assert_success();
    let id = made.stdout().trim().to_string();
    docker(["start", "-a", &id]).assert_success();
    let commit = docker([
        "commit",
        "--change",
        "ENTRYPOINT [\"failing-entrypoint.sh\"]",
        "--change",
        "CMD [\"postgres\"]",
        "--change",
        &format!("LABEL persist.test.run={}", env.run),
        &id,
        &tag,
    ]);
    docker(["rm", "-f", "-v", &id]).assert_success();
    commit.assert_success();
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = docker(["rmi", "-f", &self.0]);
        }
    }
    let _image = Remove(tag.clone());
    env.write_project(
        &PROJECT.replace("{{IMAGE}}", POSTGRES_IMAGE).replace(
            "      POSTGRES_DB: app\n",
            "      POSTGRES_DB: app\n      FAIL_ON_START: \"1\"\n",
        ),
        None,
    );
    env.compose_v2(["up", "-d"]).assert_success();
    wait_ready(&env);
    let before = dumpall(&env);

    let ran = env.persist(["upgrade", "db", "--image", &tag, "--yes", "--settle", "3s"]);
    ran.assert_code(1);
    ran.assert_stderr_contains("Loaded the dump");
    ran.assert_stderr_contains("exited with code 3");
    ran.assert_stderr_contains("FATAL: cannot start on this data");
    ran.assert_stderr_contains("Rolled back");
    assert_eq!(running_image(&env), image_id(POSTGRES_IMAGE), "{ran}");
    wait_ready(&env);
    assert_same_dump(&before, &dumpall(&env), &ran.to_string());
    assert!(
        !volume_exists(&format!("{}_pgdata-pg17", env.project)),
        "{ran}"
    );
}
