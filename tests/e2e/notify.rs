//! Runs that report: notifications of real backups against the tests' own HTTP server on 127.0.0.1
//! (healthchecks-style pings, ntfy, a webhook, a command), the run records they leave, `status` exit codes
//! on top of them, and `schedule` with a cron file.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::backup::{bulk_project, start_and_signal};
use crate::support::TestEnv;
use crate::support::http::{HttpRecorder, Received};

/// One database service with one named volume.
use crate::backup::DB_PROJECT as PROJECT;

/// Brings up [`PROJECT`] with a little data and a secret in `.env`.
fn project(env: &TestEnv) {
    env.write_project(PROJECT, Some("POSTGRES_PASSWORD=sup3rs3cret-value\n"));
    env.compose_v2(["up", "-d"]).assert_success();
    let db = env.service_container("db");
    env.docker([
        "exec",
        &db,
        "sh",
        "-c",
        "echo hello > /var/lib/postgresql/data/f",
    ])
    .assert_success();
}

/// The run records of the sandbox's project, newest first.
fn run_records(env: &TestEnv) -> Vec<Value> {
    let dir = env
        .home
        .join(".local/state/docker-persist/runs")
        .join(&env.project);
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|r| r.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    names.sort();
    names.reverse();
    names
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

fn paths(received: &[Received]) -> Vec<String> {
    received.iter().map(|r| r.path().to_string()).collect()
}

#[test]
fn a_successful_backup_pings_start_then_success_and_notifies_every_target() {
    let env = TestEnv::new();
    project(&env);
    let server = HttpRecorder::start(200);
    let env_file = env.home.join("notify.env");
    let ran = env.persist([
        "backup",
        "--notify",
        &server.url("/ping/abc"),
        "--notify",
        &format!("ntfy+http://127.0.0.1:{}/alerts", server.port()),
        "--notify",
        &format!("webhook+http://127.0.0.1:{}/hook", server.port()),
        "--notify-on",
        "always",
        "--notify-command",
        &format!("env | grep ^DOCKER_PERSIST_ > {}", env_file.display()),
    ]);
    ran.assert_success();
    let got = server.received();
    assert_eq!(got.len(), 4, "{got:#?}\n{ran}");
    // The start ping comes first, before anything else; the others once the backup is written.
    assert_eq!(got[0].path(), "/ping/abc/start", "{got:#?}");
    let mut rest = paths(&got[1..]);
    rest.sort();
    assert_eq!(rest, ["/alerts", "/hook", "/ping/abc"], "{got:#?}");
    let rid = got[0].query("rid").expect("the start ping has a run id");
    let ping = got.iter().find(|r| r.path() == "/ping/abc").unwrap();
    assert_eq!(
        ping.query("rid"),
        Some(rid.clone()),
        "one run id for the run"
    );
    assert!(
        ping.body.contains("success") && ping.body.contains("dbdata"),
        "{}",
        ping.body
    );

    let hook = got.iter().find(|r| r.path() == "/hook").unwrap().json();
    assert_eq!(hook["project"], env.project.as_str());
    assert_eq!(hook["command"], "backup");
    assert_eq!(hook["result"], "success");
    assert_eq!(hook["run_id"], rid.as_str());
    assert_eq!(hook["volumes"][0]["key"], "dbdata");
    assert!(
        hook["volumes"][0]["bytes"].as_u64().unwrap() >= 6,
        "{hook:#}"
    );
    assert!(hook["stored_bytes"].as_u64().unwrap() > 0, "{hook:#}");
    assert_eq!(hook["downtime"][0]["service"], "db", "{hook:#}");
    assert!(hook["seconds"].as_f64().unwrap() > 0.0);
    let ntfy = got.iter().find(|r| r.path() == "/alerts").unwrap();
    assert_eq!(ntfy.header("priority"), Some("default"));
    assert!(ntfy.header("title").unwrap().contains("success"));

    let vars = std::fs::read_to_string(&env_file).expect("the notify command ran");
    for line in [
        "DOCKER_PERSIST_RESULT=success".to_string(),
        format!("DOCKER_PERSIST_PROJECT={}", env.project),
        "DOCKER_PERSIST_COMMAND=backup".to_string(),
        "DOCKER_PERSIST_VOLUMES=dbdata".to_string(),
        format!("DOCKER_PERSIST_RUN_ID={rid}"),
    ] {
        assert!(vars.lines().any(|l| l == line), "{line} in\n{vars}");
    }

    // The run record says the same.
    let records = run_records(&env);
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r["result"], "success");
    assert_eq!(r["id"], rid.as_str());
    assert_eq!(r["volumes"][0]["key"], "dbdata");
    assert_eq!(r["destinations"][0]["name"], "local");
    assert_eq!(r["destinations"][0]["ok"], true);
    assert_eq!(r["downtime"][0]["service"], "db");
    assert!(
        r["downtime"][0]["started"].is_string(),
        "db ran again: {r:#}"
    );
    assert_eq!(
        r["notifications"].as_array().unwrap().len(),
        5,
        "start ping, three finish targets, the command: {r:#}"
    );
    assert!(
        r["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["ok"] == true)
    );
    assert!(r["backup"].as_str().unwrap().ends_with(".tar"), "{r:#}");

    // Fresh: exit 0.
    let status = env.persist(["status", "--json"]);
    status.assert_code(0);
    let s = status.json();
    assert_eq!(s["state"], "fresh");
    assert_eq!(s["last_run"]["result"], "success");
    assert_eq!(s["last_backup"]["path"], r["backup"]);
    assert_eq!(s["destinations"][0]["count"], 1);
    assert_eq!(s["max_age_seconds"], 26 * 3600);
    assert_eq!(s["downtime_seconds"], r["downtime"][0]["seconds"]);
}

#[test]
fn a_failed_backup_pings_fail_with_the_error_and_no_secret() {
    let env = TestEnv::new();
    project(&env);
    let server = HttpRecorder::start(200);
    // The volume asked for is named like the secret, so that the error names it.
    let ran = env.persist([
        "backup",
        "sup3rs3cret-value",
        "--notify",
        &server.url("/ping/abc"),
        "--notify",
        &format!("webhook+http://127.0.0.1:{}/hook", server.port()),
    ]);
    ran.assert_code(2);
    let got = server.received();
    assert_eq!(got[0].path(), "/ping/abc/start", "{got:#?}");
    let mut rest = paths(&got[1..]);
    rest.sort();
    assert_eq!(rest, ["/hook", "/ping/abc/fail"], "{got:#?}");
    let fail = got.iter().find(|r| r.path() == "/ping/abc/fail").unwrap();
    assert!(
        fail.body.contains("failure") && fail.body.contains("has no volume"),
        "{}",
        fail.body
    );
    for r in &got {
        assert!(
            !r.body.contains("sup3rs3cret"),
            "a secret in {}: {}",
            r.url,
            r.body
        );
    }
    let hook = got.iter().find(|r| r.path() == "/hook").unwrap().json();
    assert_eq!(hook["result"], "failure");
    assert!(
        hook["error"].as_str().unwrap().contains("`***`"),
        "{hook:#}"
    );

    let records = run_records(&env);
    assert_eq!(records[0]["result"], "failure");
    assert_eq!(records[0]["exit_code"], 2);
    // Failed: exit 2, even though no backup at all would only be stale.
    let status = env.persist(["status"]);
    status.assert_code(2);
    status.assert_stdout_contains("FAILED");
}

#[test]
fn an_interrupted_backup_pings_fail_and_status_says_failed() {
    let env = TestEnv::new();
    let (_db, _) = bulk_project(&env);
    let server = HttpRecorder::start(200);
    let url = server.url("/ping/xyz");
    let (backup, status) = start_and_signal(&env, "INT", &["--notify", &url]);
    assert_eq!(status.code(), Some(130), "{}", backup.output());
    let got = server.received();
    assert_eq!(
        paths(&got),
        ["/ping/xyz/start", "/ping/xyz/fail"],
        "{got:#?}"
    );
    assert_eq!(got[0].query("rid"), got[1].query("rid"));
    assert!(got[1].body.contains("interrupted"), "{}", got[1].body);
    let records = run_records(&env);
    assert_eq!(records[0]["result"], "interrupted", "{:#?}", records[0]);
    assert_eq!(records[0]["exit_code"], 130);
    // The database was stopped for the read and started again during the cleanup: both are recorded.
    assert_eq!(
        records[0]["downtime"][0]["service"], "db",
        "{:#?}",
        records[0]
    );
    assert!(
        records[0]["downtime"][0]["started"].is_string(),
        "{:#?}",
        records[0]
    );
    env.persist(["status"]).assert_code(2);
}

#[test]
fn a_notification_that_cannot_be_delivered_is_a_warning_and_the_backup_succeeds() {
    let env = TestEnv::new();
    project(&env);
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = HttpRecorder::start(500);
    let ran = env.persist([
        "backup",
        "--notify",
        &format!("http://127.0.0.1:{port}/ping/gone"),
        "--notify",
        &server.url("/ping/err"),
    ]);
    ran.assert_success();
    ran.assert_stderr_contains("could not notify ping http://127.0.0.1:");
    ran.assert_stderr_contains("500");
    let r = &run_records(&env)[0];
    assert_eq!(r["result"], "warning", "{r:#}");
    let failed: Vec<&Value> = r["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["ok"] == false)
        .collect();
    assert_eq!(failed.len(), 4, "two targets, start and finish each: {r:#}");
    // The secret path of a ping URL is not recorded.
    assert!(!r.to_string().contains("/ping/gone"), "{r:#}");
    // A backup that worked with warnings is fresh.
    env.persist(["status"]).assert_code(0);
}

#[test]
fn status_is_stale_without_a_backup_and_when_the_newest_is_older_than_max_age() {
    let env = TestEnv::new();
    project(&env);
    let none = env.persist(["status", "--json"]);
    none.assert_code(1);
    assert_eq!(none.json()["state"], "stale");
    assert!(none.json()["last_backup"].is_null());
    env.persist(["backup"]).assert_success();
    env.persist(["status", "--max-age", "1h"]).assert_code(0);
    std::thread::sleep(Duration::from_millis(2100));
    let stale = env.persist(["status", "--max-age", "1s"]);
    stale.assert_code(1);
    stale.assert_stdout_contains("STALE: the newest backup is");
    env.persist(["status", "--max-age", "soon"]).assert_code(2);
}

#[test]
fn notify_test_sends_one_to_the_targets_of_the_compose_file() {
    let env = TestEnv::new();
    let server = HttpRecorder::start(200);
    env.write_project(
        &format!(
            "{PROJECT}x-persist:\n  notify:\n    urls: [\"webhook+http://127.0.0.1:{}/hook\"]\n    on: failure\n",
            server.port()
        ),
        None,
    );
    let ran = env.persist(["notify", "test", "--json"]);
    ran.assert_success();
    let got = server.received();
    assert_eq!(paths(&got), ["/hook"], "{got:#?}");
    assert_eq!(got[0].json()["event"], "test");
    assert_eq!(ran.json()["deliveries"][0]["ok"], true);
    drop(server);
    // Nobody listens any more: exit 1.
    env.persist(["notify", "test"]).assert_code(1);
}

#[test]
fn schedule_with_a_cron_file_is_shown_counted_by_status_and_removed() {
    let env = TestEnv::new();
    project(&env);
    let cron = env.home.join("cron.d/docker-persist-test");
    let ran = env.persist([
        "schedule",
        "set",
        "--daily",
        "03:15",
        "--cron-file",
        cron.to_str().unwrap(),
        "--verify",
        "--",
        "--all",
    ]);
    ran.assert_success();
    let text = std::fs::read_to_string(&cron).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("15 3 * * * "))
        .unwrap_or_else(|| panic!("no schedule line in\n{text}"));
    assert!(
        line.contains(&format!("persist -p {} backup --all", env.project))
            && line.contains(&format!("persist -p {} verify", env.project))
            && line.contains(&format!("cd {}", env.project_dir.display())),
        "{line}"
    );
    // The line runs: `sh` executes it as cron would (a real backup, then its verification).
    // Five time fields, the user, then the command.
    let command = line.splitn(7, ' ').nth(6).unwrap().replace("\\%", "%");
    let mut sh = env.command("sh");
    sh.arg("-c").arg(&command);
    env.run(sh).assert_success();
    let records = run_records(&env);
    let commands: Vec<&str> = records
        .iter()
        .map(|r| r["command"].as_str().unwrap())
        .collect();
    assert_eq!(commands, ["verify", "backup"], "{records:#?}");

    let show = env.persist(["schedule", "show", "--json"]);
    show.assert_success();
    let s = show.json();
    assert_eq!(s["schedule"]["backend"], "cron-file");
    assert_eq!(s["schedule"]["cron"], "15 3 * * *");
    assert_eq!(s["next_runs"].as_array().unwrap().len(), 5);
    let status = env.persist(["status", "--json"]).json();
    assert_eq!(status["schedule"]["cron"], "15 3 * * *");
    assert_eq!(status["max_age_seconds"], 26 * 3600);
    assert!(status["last_verification"]["ok"] == true, "{status:#}");
    assert_eq!(status["state"], "fresh");

    env.persist(["schedule", "remove"]).assert_success();
    assert!(!cron.exists());
    assert!(env.persist(["schedule", "show", "--json"]).json()["schedule"].is_null());
}

#[test]
fn status_reports_the_newest_backup_of_every_destination() {
    let env = TestEnv::new();
    env.write_project(
        &format!("{PROJECT}x-persist:\n  destinations:\n    usb: {{url: ./usb}}\n"),
        None,
    );
    env.compose_v2(["up", "-d"]).assert_success();
    env.persist(["backup", "--to", "usb"]).assert_success();
    // The run record names both places the file reached.
    let r = &run_records(&env)[0];
    let reached: Vec<(&str, bool)> = r["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap(), d["ok"] == true))
        .collect();
    assert_eq!(reached, [("local", true), ("usb", true)], "{r:#}");
    let local = env.project_dir.join("backups");
    let file = std::fs::read_dir(&local)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "tar"))
        .unwrap();
    let usb = env.project_dir.join("usb");
    let s = env.persist(["status", "--json"]).json();
    let names: Vec<&str> = s["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["local", "usb"], "{s:#}");
    assert_eq!(s["destinations"][1]["count"], 1, "{s:#}");
    let newest = PathBuf::from(s["destinations"][1]["newest"]["path"].as_str().unwrap());
    assert_eq!(
        newest.canonicalize().unwrap(),
        usb.join(file.file_name().unwrap()).canonicalize().unwrap()
    );
    // The local copy pruned: the copy on the other destination still counts.
    std::fs::remove_file(&file).unwrap();
    let ran = env.persist(["status"]);
    ran.assert_code(0);
    ran.assert_stdout_contains("Destination local:");
    ran.assert_stdout_contains("no backups");
    ran.assert_stdout_contains("Destination usb:");
}

#[test]
fn a_second_backup_of_the_project_waits_for_the_first() {
    let env = TestEnv::new();
    let _ = bulk_project(&env);
    let dir = env.project_dir.join("backups");
    let mut first = crate::backup::Running::start(&env, "first", &["backup", "dbdata"]);
    // Once the first streams, it holds the lock.
    let start = std::time::Instant::now();
    while !crate::backup::dir_names(&dir)
        .iter()
        .any(|n| n.ends_with(".tar.partial"))
    {
        assert!(first.is_running(), "{}", first.output());
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            first.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // One that may not wait long gives up, with exit 1, and changes nothing.
    let impatient = env.persist(["backup", "small", "--lock-timeout", "1s"]);
    impatient.assert_code(1);
    impatient.assert_stderr_contains("another backup of project");
    impatient.assert_stderr_contains("still runs after waiting 1s");
    // One that waits runs once the first is done.
    let second = env.persist(["backup", "small"]);
    second.assert_success();
    second.assert_stderr_contains("Waiting for another backup of");
    let status = first.wait(Duration::from_secs(120));
    assert!(status.success(), "{}", first.output());
    let records = run_records(&env);
    let results: Vec<&str> = records
        .iter()
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["success", "failure", "success"], "{records:#?}");
    // The second ended after the first: they did not overlap.
    assert!(
        records[0]["ended"].as_str().unwrap() > records[2]["ended"].as_str().unwrap(),
        "{records:#?}"
    );
}

#[test]
fn status_fails_when_a_verification_found_the_newest_backup_damaged() {
    let env = TestEnv::new();
    project(&env);
    env.persist(["backup"]).assert_success();
    env.persist(["status"]).assert_code(0);
    let file = std::fs::read_dir(env.project_dir.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "tar"))
        .unwrap();
    // One byte flipped inside the volume's member (after its 512-byte tar header); the manifest at the
    // end is intact, so the file is still listed as a backup.
    let mut bytes = std::fs::read(&file).unwrap();
    let name = b"volumes/dbdata.tar.zst";
    let header = bytes
        .windows(name.len())
        .position(|w| w == name)
        .expect("the volume's member");
    bytes[header + 512 + 16] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    env.persist(["verify", file.to_str().unwrap()])
        .assert_code(1);
    let ran = env.persist(["status"]);
    ran.assert_code(2);
    ran.assert_stdout_contains("a verification found the newest backup damaged");
}
