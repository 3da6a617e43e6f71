//! Kill points: `backup`, `restore` over live data, `restore` into a volume `down -v` removed, `migrate`
//! and `down --backup -v`, each killed with SIGKILL right after every write of its intent record (the
//! debug build's `DOCKER_PERSIST_KILL_AT=N` hook) and at seeded random moments (the whole process group,
//! Compose included), on both data paths. After each kill one plain `docker persist ls` runs, and then:
//! every service that ran before runs again on data equal by digest to the data before (or to the backup,
//! when the restore had committed); no helper container is left; no volume the killed run created is left
//! unfinished; no record is left; every file that `backups` lists verifies.

use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::restore::helpers_on;
use crate::support::{TestEnv, tree_digest, tree_digest_in_container, tree_listing_of_volume};

const PGDATA: &str = "/var/lib/postgresql/data";

const PROJECT: &str = r#"
services:
  db:
    image: postgres:16
    volumes:
      - dbdata:/var/lib/postgresql/data
volumes:
  dbdata:
    labels:
      persist.test.run: "{{RUN}}"
"#;

/// A service whose container ignores its stop signal, so the engine needs its whole grace period.
const SLOW_STOP_PROJECT: &str = r#"
services:
  db:
    image: postgres:16
    stop_signal: SIGUSR1
    stop_grace_period: 3s
    volumes:
      - dbdata:/var/lib/postgresql/data
volumes:
  dbdata:
    labels:
      persist.test.run: "{{RUN}}"
"#;

/// Writes a small tree whose digest depends only on `$2` (fixed owners and times).
const DATA_SCRIPT: &str = r#"set -eu
d="$1"
find "$d" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
mkdir -p "$d/base/sub"
echo "state $2" > "$d/state.txt"
i=0
while [ $i -lt 40 ]; do echo "file $i of state $2" > "$d/base/f$i"; i=$((i+1)); done
head -c 300000 /dev/zero | tr '\0' "$2" > "$d/base/sub/big"
ln -s ../state.txt "$d/base/link"
chown -R 999:999 "$d"
find "$d" -exec touch -h -d "2026-01-01 00:00:00" {} +
"#;

/// The random kills per command and data path; the seed makes them repeatable.
const RANDOM_KILLS: usize = 3;
const SEED: u64 = 0x5eed_2026;

/// A small deterministic generator (xorshift64*), so that a failing random point can be run again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Backup,
    RestoreLive,
    RestoreNew,
    Migrate,
    DownBackup,
}

/// How a killed run ended.
enum Kill {
    /// By SIGKILL; the intent record it left, if any.
    Killed(Option<serde_json::Value>),
    /// It finished first (exit code).
    Finished(i32),
}

struct Harness {
    env: TestEnv,
    path: &'static str,
    scenario: Scenario,
    backup: PathBuf,
    /// The digest of the data the services run on before each kill.
    before: String,
    /// The digest of the data in `backup`.
    backed_up: String,
    iteration: usize,
    tried: usize,
    held: usize,
    problems: Vec<String>,
}

impl Harness {
    fn new(path: &'static str, scenario: Scenario) -> Harness {
        let env = if path == "fast" {
            TestEnv::with_static_plugin()
        } else {
            TestEnv::new()
        };
        env.write_project(PROJECT, None);
        env.compose_v2(["up", "-d"]).assert_success();
        let mut h = Harness {
            env,
            path,
            scenario,
            backup: PathBuf::new(),
            before: String::new(),
            backed_up: String::new(),
            iteration: 0,
            tried: 0,
            held: 0,
            problems: Vec::new(),
        };
        h.write_data("a");
        h.backed_up = h.digest();
        let ran = h.env.persist(["backup", "--path", path]);
        ran.assert_success();
        h.backup = PathBuf::from(ran.stdout().lines().last().unwrap_or_default().trim());
        assert!(h.backup.is_file(), "{ran}");
        h.write_data("b");
        h.before = h.digest();
        assert_ne!(h.before, h.backed_up);
        if scenario == Scenario::RestoreNew {
            h.env.compose_v2(["down", "-v"]).assert_success();
        }
        h
    }

    fn volume(&self) -> String {
        format!("{}_dbdata", self.env.project)
    }

    fn write_data(&self, state: &str) {
        self.env
            .compose_v2([
                "exec",
                "-T",
                "db",
                "sh",
                "-c",
                DATA_SCRIPT,
                "sh",
                PGDATA,
                state,
            ])
            .assert_success();
    }

    fn digest(&self) -> String {
        tree_digest_in_container(&self.env, "db", PGDATA)
    }

    fn target(&self) -> PathBuf {
        self.env
            .project_dir
            .join(format!("pgdata-{}", self.iteration))
    }

    fn args(&self) -> Vec<String> {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let b = self.backup.to_str().unwrap();
        match self.scenario {
            Scenario::Backup => s(&["backup", "--path", self.path]),
            Scenario::RestoreLive | Scenario::RestoreNew => {
                s(&["restore", "--yes", b, "dbdata", "--path", self.path])
            }
            Scenario::Migrate => s(&[
                "migrate",
                "dbdata",
                "--to",
                self.target().to_str().unwrap(),
                "--yes",
                "--path",
                self.path,
            ]),
            Scenario::DownBackup => s(&["down", "--backup", "-v"]),
        }
    }

    fn records(&self) -> Vec<PathBuf> {
        records_of(&self.env)
    }

    /// Runs the command, killed at the `at`-th record write, or at `after` by SIGKILL to its group.
    fn run_killed(&self, at: Option<usize>, after: Option<Duration>) -> (Kill, Duration, String) {
        run_killed(&self.env, &self.args(), self.iteration, at, after)
    }

    /// One kill, one plain command, then every rule; resets the state for the next kill.
    fn kill_and_check(&mut self, at: Option<usize>, after: Option<Duration>) -> Option<Duration> {
        self.iteration += 1;
        let (kill, took, err) = self.run_killed(at, after);
        let point = match (at, after) {
            (Some(n), _) => format!("write {n}"),
            (_, Some(d)) => format!("{} ms", d.as_millis()),
            _ => "none".to_string(),
        };
        let what = format!(
            "{:?} on the {} path, killed at {point}",
            self.scenario, self.path
        );
        eprintln!("kill point: {what} ({} ms)", took.as_millis());
        let record = match kill {
            Kill::Finished(code) => {
                assert_eq!(code, 0, "{what}: the command failed\n{err}");
                None
            }
            Kill::Killed(record) => {
                self.tried += 1;
                Some(record)
            }
        };
        let mut committed = match &record {
            Some(Some(r)) => committed(r),
            // Killed with no record: before its first write (it changed nothing) or after it deleted the
            // record (it finished); which one is told by the state below.
            Some(None) => false,
            None => true,
        };
        let ls = self.env.persist(["ls"]);
        let mut problems = Vec::new();
        if ls.output.status.code() != Some(0) {
            problems.push(format!("`ls` failed\n{ls}"));
        }
        let left = self.records();
        if !left.is_empty() {
            problems.push(format!(
                "records left: {}",
                left.iter()
                    .map(|p| std::fs::read_to_string(p).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
        if !helpers_on(&self.env, &self.volume()).is_empty() {
            problems.push("a helper container is left".to_string());
        }
        let mut state = self.check_state(committed);
        if !state.is_empty() && matches!(record, Some(None)) && self.check_state(true).is_empty() {
            committed = true;
            state.clear();
        }
        problems.extend(state);
        problems.extend(self.check_backups());
        if problems.is_empty() {
            if record.is_some() {
                self.held += 1;
            }
        } else {
            eprintln!("DID NOT HOLD: {what}: {}", problems.join("; "));
            self.problems.push(format!(
                "{what} (record: {}):\n  - {}\n--- killed run's stderr ---\n{err}--- ls ---\n{ls}",
                record
                    .as_ref()
                    .and_then(|r| r.as_ref())
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                problems.join("\n  - ")
            ));
        }
        self.reset(committed);
        record.is_none().then_some(took)
    }

    /// What must hold after the plain command, for a run that `committed` (or finished) or not.
    fn check_state(&self, committed: bool) -> Vec<String> {
        let mut p = Vec::new();
        let volume = self.volume();
        match self.scenario {
            Scenario::RestoreNew => {
                let exists = self
                    .env
                    .docker(["volume", "inspect", &volume])
                    .output
                    .status
                    .success();
                if exists != committed {
                    p.push(format!(
                        "volume `{volume}` exists: {exists}, the restore committed: {committed}"
                    ));
                }
                if exists {
                    let d = tree_digest(&tree_listing_of_volume(&self.env, &volume));
                    if d != self.backed_up {
                        p.push("the restored volume differs from the backup".to_string());
                    }
                }
            }
            Scenario::DownBackup if committed => {
                let ps = self.env.compose_v2(["ps", "-aq"]);
                if !ps.stdout().trim().is_empty() {
                    p.push(format!("containers left after a finished down\n{ps}"));
                }
                if self
                    .env
                    .docker(["volume", "inspect", &volume])
                    .output
                    .status
                    .success()
                {
                    p.push("the volume is left after a finished down -v".to_string());
                }
            }
            _ => {
                let ps = self
                    .env
                    .compose_v2(["ps", "--status", "running", "--services"]);
                if ps.stdout().trim() != "db" {
                    p.push(format!("db does not run\n{ps}"));
                    return p;
                }
                let expected = if committed && self.scenario == Scenario::RestoreLive {
                    &self.backed_up
                } else {
                    &self.before
                };
                if self.digest() != *expected {
                    p.push("db runs on other data than expected".to_string());
                }
                if self.scenario == Scenario::Migrate {
                    let overridden = self.env.project_dir.join("compose.override.yaml").exists();
                    if overridden != committed {
                        p.push(format!(
                            "override file present: {overridden}, the migration committed: {committed}"
                        ));
                    }
                    let t = self.target();
                    if !committed
                        && t.exists()
                        && std::fs::read_dir(&t).map(|d| d.count()).unwrap_or(0) > 0
                    {
                        p.push(format!("`{}` keeps part of the copy", t.display()));
                    }
                }
            }
        }
        p
    }

    /// Every listed backup verifies.
    fn check_backups(&self) -> Vec<String> {
        let listed = self.env.persist(["backups", "--json"]);
        let Some(all) = listed.json()["backups"].as_array().cloned() else {
            return vec![format!("`backups --json` gave no list\n{listed}")];
        };
        let mut p = Vec::new();
        for b in all {
            let path = b["path"].as_str().unwrap_or_default().to_string();
            if !self.verified(&path) {
                p.push(format!(
                    "`{path}` is listed as a backup and does not verify"
                ));
            }
        }
        p
    }

    fn verified(&self, path: &str) -> bool {
        thread_local! {
            static GOOD: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        if GOOD.with(|g| g.borrow().iter().any(|p| p == path)) {
            return true;
        }
        let ok = self.env.persist(["verify", path]).output.status.success();
        if ok {
            GOOD.with(|g| g.borrow_mut().push(path.to_string()));
        }
        ok
    }

    /// Puts the project back where the next kill starts from.
    fn reset(&mut self, committed: bool) {
        match self.scenario {
            Scenario::RestoreLive if committed => self.write_data("b"),
            Scenario::RestoreNew => {
                let _ = self.env.docker(["volume", "rm", &self.volume()]);
            }
            Scenario::Migrate if committed => {
                self.env
                    .persist(["migrate", "--rollback", "dbdata", "--yes"])
                    .assert_success();
            }
            Scenario::DownBackup if committed => {
                self.env.compose_v2(["up", "-d"]).assert_success();
                self.write_data("b");
            }
            _ => {}
        }
    }

    fn report(self) {
        eprintln!(
            "kill points: {:?} on the {} path: {} kills tried, {} held",
            self.scenario, self.path, self.tried, self.held
        );
        assert!(
            self.problems.is_empty(),
            "{} of {} kills did not hold:\n{}",
            self.problems.len(),
            self.tried,
            self.problems.join("\n\n")
        );
        assert!(self.tried > 0, "no kill was tried");
    }
}

/// The intent records in the test's state directory.
fn records_of(env: &TestEnv) -> Vec<PathBuf> {
    let dir = env.home.join(".local/state/docker-persist/intents");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "json"));
    v
}

/// Runs docker persist with `args`, killed at the `at`-th record write, or at `after` by SIGKILL to its
/// group.
fn run_killed(
    env: &TestEnv,
    args: &[String],
    iteration: usize,
    at: Option<usize>,
    after: Option<Duration>,
) -> (Kill, Duration, String) {
    let stderr = env.home.join(format!("kill-{iteration}.stderr"));
    // A temporary directory of the killed runs' own: a run killed on the fast path leaves the private
    // directory of its helper's socket there, which other tests' leftover checks must not see.
    let tmp = env.home.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut cmd = env.command(&env.binary);
    cmd.env("TMPDIR", &tmp)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
        .process_group(0);
    if let Some(n) = at {
        cmd.env("DOCKER_PERSIST_KILL_AT", n.to_string());
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start docker-persist");
    if let Some(delay) = after {
        while started.elapsed() < delay {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = std::process::Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", child.id())])
            .status();
    }
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the command did not end within 180 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    let err = std::fs::read_to_string(&stderr).unwrap_or_default();
    if status.signal() == Some(9) {
        let record = records_of(env)
            .first()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).expect("a record is JSON"));
        (Kill::Killed(record), took, err)
    } else {
        (Kill::Finished(status.code().unwrap_or(-1)), took, err)
    }
}

/// Whether the killed run had passed its commit point, so that it is finished rather than undone.
fn committed(record: &serde_json::Value) -> bool {
    record["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["state"] != "settled")
        .any(|s| match s["step"].as_str() {
            Some("committed" | "compose_down" | "remove_volumes") => true,
            Some("override") => {
                let now = std::fs::read_to_string(s["path"].as_str().unwrap_or_default()).ok();
                now.as_deref() == s["next"].as_str()
            }
            _ => false,
        })
}

/// Every kill point of `scenario` on `path`: each record write in turn until a run finishes, then the
/// seeded random moments within that run's duration.
fn kill_points(scenario: Scenario, path: &'static str) {
    let mut h = Harness::new(path, scenario);
    let mut full = None;
    for n in 1..64 {
        if let Some(took) = h.kill_and_check(Some(n), None) {
            full = Some(took);
            break;
        }
    }
    let full = full.expect("the command finished within 64 kill points");
    let mut rng = Rng(SEED ^ (scenario as u64) << 8 ^ u64::from(path == "fast"));
    for _ in 0..RANDOM_KILLS {
        // Within the first four fifths: the last moments are the process ending.
        let ms = rng.next() % (full.as_millis() as u64 * 4 / 5).max(1);
        h.kill_and_check(None, Some(Duration::from_millis(ms)));
    }
    h.report();
}

#[test]
fn kill_points_of_backup_hold_on_the_universal_path() {
    kill_points(Scenario::Backup, "universal");
}

#[test]
fn kill_points_of_backup_hold_on_the_fast_path() {
    kill_points(Scenario::Backup, "fast");
}

#[test]
fn kill_points_of_restore_over_live_data_hold_on_the_universal_path() {
    kill_points(Scenario::RestoreLive, "universal");
}

#[test]
fn kill_points_of_restore_over_live_data_hold_on_the_fast_path() {
    kill_points(Scenario::RestoreLive, "fast");
}

#[test]
fn kill_points_of_restore_after_down_v_hold_on_the_universal_path() {
    kill_points(Scenario::RestoreNew, "universal");
}

#[test]
fn kill_points_of_restore_after_down_v_hold_on_the_fast_path() {
    kill_points(Scenario::RestoreNew, "fast");
}

#[test]
fn kill_points_of_migrate_hold_on_the_universal_path() {
    kill_points(Scenario::Migrate, "universal");
}

#[test]
fn kill_points_of_migrate_hold_on_the_fast_path() {
    kill_points(Scenario::Migrate, "fast");
}

#[test]
fn kill_points_of_down_backup_hold_on_the_universal_path() {
    kill_points(Scenario::DownBackup, "universal");
}

#[test]
fn kill_points_of_down_backup_hold_on_the_fast_path() {
    kill_points(Scenario::DownBackup, "fast");
}

/// A backup killed while the engine is still stopping a slow container: the next command waits for the
/// stop to end and starts it again, instead of finding it running and forgetting it.
#[test]
fn a_container_the_engine_is_still_stopping_is_started_again_once_it_stopped() {
    let env = TestEnv::new();
    env.write_project(SLOW_STOP_PROJECT, None);
    env.compose_v2(["up", "-d"]).assert_success();
    let intents = env.home.join(".local/state/docker-persist/intents");
    let mut cmd = env.command(&env.binary);
    cmd.args(["backup"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    // Its stop is sent: the record says so.
    loop {
        let sent = std::fs::read_dir(&intents)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .any(|t| t.contains("stop_sent"))
            })
            .unwrap_or(false);
        if sent {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended early"
        );
        assert!(start.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    let ps = env.compose_v2(["ps", "--status", "running", "--services"]);
    assert_eq!(
        ps.stdout().trim(),
        "db",
        "the engine is still stopping db\n{ps}"
    );

    let ls = env.persist(["ls"]);
    ls.assert_success();
    ls.assert_stderr_contains("waiting for the engine to finish stopping");
    ls.assert_stderr_contains("stopped it and did not finish");
    let ps = env.compose_v2(["ps", "--status", "running", "--services"]);
    assert_eq!(ps.stdout().trim(), "db", "db was not started again\n{ls}");
    assert!(!intents.exists() || std::fs::read_dir(&intents).unwrap().count() == 0);
}

/// A record whose resolution cannot finish (its safety backup is gone) stays: `ls` shows it, commands
/// that change the project refuse with exit 3, and a restore of the data named resolves it.
#[test]
fn an_unresolvable_record_is_shown_and_blocks_changes_until_a_restore_fixes_it() {
    let h = Harness::new("universal", Scenario::RestoreLive);
    let env = &h.env;
    // Kill right after the data step began, then take away its safety backup.
    let mut killed = None;
    for n in 1..32 {
        let mut cmd = env.command(&env.binary);
        cmd.args(h.args())
            .env("DOCKER_PERSIST_KILL_AT", n.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = cmd.status().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "the restore finished before its data step"
        );
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&h.records()[0]).unwrap()).unwrap();
        let last = record["steps"].as_array().unwrap().last().unwrap().clone();
        if last["step"] == "replace_data" {
            killed = Some(last);
            break;
        }
        // Not there yet: let the next command undo it, then go one write further.
        env.persist(["ls"]).assert_success();
    }
    let step = killed.expect("a kill point at the data step");
    let safety = PathBuf::from(step["safety"].as_str().expect("a safety backup"));
    std::fs::remove_file(&safety).unwrap();

    let ls = env.persist(["ls"]);
    ls.assert_success();
    ls.assert_stderr_contains("UNRESOLVED");
    ls.assert_stderr_contains(&format!("docker persist restore {}", h.backup.display()));
    let json = env.persist(["ls", "--json"]);
    assert_eq!(json.json()["unresolved"][0]["command"], "restore", "{json}");
    let down = env.persist(["down", "--backup", "-v"]);
    down.assert_code(3);
    down.assert_stderr_contains("was killed and what it changed could not be finished or undone");
    assert_eq!(h.records().len(), 1);

    // The restore it names puts the data there and resolves the record: the service runs again.
    env.persist(["restore", "--yes", h.backup.to_str().unwrap(), "dbdata"])
        .assert_success();
    assert!(h.records().is_empty(), "the record is resolved");
    let ps = env.compose_v2(["ps", "--status", "running", "--services"]);
    assert_eq!(ps.stdout().trim(), "db", "{ps}");
    assert_eq!(h.digest(), h.backed_up);
    assert!(Path::new(&h.backup).is_file());
}

/// `upgrade --image` to a version that writes into the data as it starts: killed at every record write
/// until a run finishes, then at seeded random moments. After one plain `ls`, the service runs the previous
/// image on data equal by digest to before, the override file is as before, and no record, helper or
/// container of the new version is left — or, when the upgrade had completed, the new image runs.
#[test]
fn kill_points_of_upgrade_hold() {
    use crate::upgrade::{image_id, running_image, start, volume};
    let env = TestEnv::new();
    let (mut images, v1, _) = start(&env);
    let v2 = images.commit(
        &env,
        "v2",
        "echo 'v2 was here' > /srv/app/marker && exec /bin/persist-test-idle",
    );
    let (old_id, new_id) = (image_id(&v1), image_id(&v2));
    let overrides = env.project_dir.join("compose.override.yaml");
    let args: Vec<String> = ["upgrade", "app", "--image", &v2, "--yes", "--settle", "1s"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    let digest = || tree_digest(&tree_listing_of_volume(&env, &volume(&env)));
    let (mut tried, mut held, mut problems) = (0, 0, Vec::new());
    let mut full = None;
    let mut rng = Rng(SEED ^ (0x75 << 16));
    let mut points: Vec<(Option<usize>, Option<Duration>)> =
        (1..64).map(|n| (Some(n), None)).collect();
    let mut i = 0;
    while i < points.len() {
        let (at, after) = points[i];
        i += 1;
        let before = digest();
        let override_before = std::fs::read_to_string(&overrides).ok();
        let (kill, took, err) = run_killed(&env, &args, i, at, after);
        let what = match (at, after) {
            (Some(n), _) => format!("upgrade killed at write {n}"),
            (_, Some(d)) => format!("upgrade killed at {} ms", d.as_millis()),
            _ => unreachable!(),
        };
        eprintln!("kill point: {what} ({} ms)", took.as_millis());
        // Whether the upgrade may have completed: it finished, or it was killed with nothing left open.
        let (killed, may_have_completed) = match &kill {
            Kill::Finished(code) => {
                assert_eq!(*code, 0, "{what}: the upgrade failed\n{err}");
                (false, true)
            }
            Kill::Killed(None) => (true, true),
            Kill::Killed(Some(r)) => (
                true,
                r["steps"]
                    .as_array()
                    .is_some_and(|s| s.iter().all(|s| s["state"] == "settled")),
            ),
        };
        let ls = env.persist(["ls"]);
        let mut p = Vec::new();
        if ls.output.status.code() != Some(0) {
            p.push(format!("`ls` failed\n{ls}"));
        }
        for r in records_of(&env) {
            p.push(format!(
                "record left: {}",
                std::fs::read_to_string(r).unwrap_or_default()
            ));
        }
        if !helpers_on(&env, &volume(&env)).is_empty() {
            p.push("a helper container is left".to_string());
        }
        let containers = env.compose_v2(["ps", "-aq"]);
        if containers.stdout().lines().count() != 1 {
            p.push(format!("not exactly one container of app\n{containers}"));
        }
        let (image, state) = running_image(&env);
        let completed = may_have_completed && image == new_id;
        if state != "running" {
            p.push(format!("app is {state}"));
        }
        if completed {
            if std::fs::read_to_string(&overrides).ok() == override_before {
                p.push("the upgrade completed and its override file is not written".to_string());
            }
        } else {
            if image != old_id {
                p.push(format!("app runs {image}, not the previous {old_id}"));
            }
            if digest() != before {
                p.push("app runs on other data than before".to_string());
            }
            if std::fs::read_to_string(&overrides).ok() != override_before {
                p.push("the override file is not as before".to_string());
            }
        }
        if killed {
            tried += 1;
            if p.is_empty() {
                held += 1;
            }
        }
        if !p.is_empty() {
            eprintln!("DID NOT HOLD: {what}: {}", p.join("; "));
            problems.push(format!(
                "{what}:\n  - {}\n--- killed run's stderr ---\n{err}--- ls ---\n{ls}",
                p.join("\n  - ")
            ));
        }
        if completed {
            // Back to the previous version for the next kill.
            let _ = std::fs::remove_file(&overrides);
            env.compose_v2(["up", "-d"]).assert_success();
        }
        if !killed && full.is_none() {
            full = Some(took);
            // The seeded random moments, within the first four fifths of a whole run.
            points.truncate(i);
            for _ in 0..RANDOM_KILLS {
                let ms = rng.next() % (took.as_millis() as u64 * 4 / 5).max(1);
                points.push((None, Some(Duration::from_millis(ms))));
            }
        }
    }
    assert!(full.is_some(), "the upgrade finished within 64 kill points");
    eprintln!("kill points: upgrade --image: {tried} kills tried, {held} held");
    assert!(
        problems.is_empty(),
        "{} of {tried} kills did not hold:\n{}",
        problems.len(),
        problems.join("\n\n")
    );
    assert!(tried > 0, "no kill was tried");
}
