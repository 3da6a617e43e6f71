//! Schedules checked against systemd's own tools (Debian's `systemd` package): the next run times this
//! program computes equal `systemd-analyze calendar --iterations=5` on the `OnCalendar=` it writes, for
//! every way of asking for a schedule; and the unit files `schedule set` writes pass
//! `systemd-analyze verify`, as system and as user units (a broken one does not).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use docker_persist::calendar::Calendar;

/// `systemd-analyze`, with a message naming the package when it is missing.
fn systemd_analyze() -> Command {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "systemd-analyze is not installed (Debian: apt-get install systemd); these tests need it"
    );
    let mut cmd = Command::new("systemd-analyze");
    cmd.env("TZ", "UTC").env("SYSTEMD_COLORS", "0");
    cmd
}

/// The next five elapses systemd computes for `spec` after `base` (UTC), as `Www YYYY-MM-DD HH:MM:SS`.
fn systemd_next(spec: &str, base: &str) -> Vec<String> {
    systemd_next_in(spec, base, "UTC")
        .into_iter()
        .map(|s| s.trim_end_matches(" UTC").to_string())
        .collect()
}

/// The same in time zone `tz`, as `Www YYYY-MM-DD HH:MM:SS ZONE` (`CEST`).
fn systemd_next_in(spec: &str, base: &str, tz: &str) -> Vec<String> {
    let out = systemd_analyze()
        .env("TZ", tz)
        .args([
            "calendar",
            "--iterations=5",
            &format!("--base-time={base}"),
            spec,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "systemd-analyze calendar `{spec}` failed: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            let k = k.trim();
            (k == "Next elapse" || k.starts_with("Iter. #")).then(|| v.trim().to_string())
        })
        .collect()
}

fn ours(c: &Calendar, base: &str) -> Vec<String> {
    let base = base.trim_end_matches(" UTC");
    let after: jiff::Zoned = format!("{}[UTC]", base.replace(' ', "T")).parse().unwrap();
    c.next_runs(&after, 5)
        .iter()
        .map(|z| z.strftime("%a %Y-%m-%d %H:%M:%S").to_string())
        .collect()
}

#[test]
fn next_runs_match_systemd_analyze_calendar() {
    let cases: Vec<Calendar> = vec![
        Calendar::daily("03:15").unwrap(),
        Calendar::daily("00:00").unwrap(),
        Calendar::hourly(),
        Calendar::every(std::time::Duration::from_secs(15 * 60)).unwrap(),
        Calendar::every(std::time::Duration::from_secs(6 * 3600)).unwrap(),
        Calendar::cron("30 2 * * mon-fri").unwrap(),
        Calendar::cron("0 9-17/4 * jan,jul *").unwrap(),
        Calendar::cron("5 4 1,15 * *").unwrap(),
        Calendar::cron("0 0 29 2 *").unwrap(),
        Calendar::cron("@weekly").unwrap(),
        Calendar::cron("*/7 1 * * sun").unwrap(),
    ];
    for base in ["2026-12-03 10:20:00 UTC", "2027-02-27 23:59:00 UTC"] {
        for c in &cases {
            let spec = c.on_calendar();
            assert_eq!(
                ours(c, base),
                systemd_next(&spec, base),
                "cron `{}` = OnCalendar `{spec}` after {base}",
                c.cron
            );
        }
    }
}

/// Runs the built program with a fixed environment in `dir`.
fn persist(dir: &Path, home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_docker-persist"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("DOCKER_HOST", "unix:///var/run/docker.sock")
        .env("NO_COLOR", "1")
        .current_dir(dir)
        .output()
        .unwrap()
}

/// `schedule set --systemd --dry-run --json ARGS` in a fresh project; the files it would write.
fn planned_units(args: &[&str]) -> (tempfile::TempDir, Vec<(String, String)>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  db:\n    image: postgres:16\n    volumes: [dbdata:/var/lib/postgresql/data]\nvolumes:\n  dbdata: {}\n",
    )
    .unwrap();
    let mut all = vec!["schedule", "set", "--systemd", "--dry-run", "--json"];
    all.extend(args);
    let out = persist(&dir, tmp.path(), &all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let files = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let name = Path::new(f["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, f["content"].as_str().unwrap().to_string())
        })
        .collect();
    (tmp, files)
}

/// `systemd-analyze [--user] verify` on the files written into a directory of their own.
fn verify(files: &[(String, String)], user: bool) -> (bool, String) {
    let units = tempfile::tempdir().unwrap();
    let runtime = tempfile::tempdir().unwrap();
    let mut cmd = systemd_analyze();
    if user {
        // The user manager needs a runtime directory.
        cmd.arg("--user").env("XDG_RUNTIME_DIR", runtime.path());
    }
    cmd.arg("verify");
    for (name, content) in files {
        let path = units.path().join(name);
        std::fs::write(&path, content).unwrap();
        cmd.arg(path);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn unit_files_pass_systemd_analyze_verify() {
    for (args, user) in [
        (&["--daily", "03:15"][..], false),
        (&["--every", "15m", "--user", "--verify"], true),
        (
            &[
                "--cron",
                "30 2 * * mon-fri",
                "--notify",
                "https://hc.example/ping/a?b=1&c=50%",
                "--",
                "--all",
                "--tag",
                "nightly",
            ],
            false,
        ),
    ] {
        let (_tmp, files) = planned_units(args);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["docker-persist-app.service", "docker-persist-app.timer"]
        );
        let (ok, output) = verify(&files, user);
        assert!(
            ok,
            "{args:?}: systemd-analyze verify failed:\n{output}\n{files:#?}"
        );
        let timer = &files[1].1;
        assert!(timer.contains("Persistent=true\n") && timer.contains("RandomizedDelaySec="));
    }
    // The check can fail: a unit with an impossible calendar does not pass.
    let (_tmp, mut files) = planned_units(&["--daily", "03:15"]);
    files[1].1 = files[1]
        .1
        .replace("OnCalendar=*-*-* 03:15:00", "OnCalendar=*-*-* 03:99:00");
    let (ok, output) = verify(&files, false);
    assert!(!ok, "a broken timer passed:\n{output}");
}

#[test]
fn the_scheduled_command_keeps_the_project_options_and_the_engine() {
    let (_tmp, files) = planned_units(&["--daily", "03:15", "--to", "offsite", "--prune"]);
    let service = &files[0].1;
    let exec = service
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .unwrap();
    assert!(
        exec.ends_with(
            " --host unix:///var/run/docker.sock persist -p app backup --to offsite --prune"
        ) || exec.contains(
            "docker-persist --host unix:///var/run/docker.sock -p app backup --to offsite --prune"
        ),
        "{exec}"
    );
    assert!(service.contains("WorkingDirectory=/"), "{service}");
}

#[test]
fn the_crontab_line_runs_at_the_times_cron_would() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yaml"), "services:\n  db:\n    image: x\n").unwrap();
    let out = persist(
        &dir,
        tmp.path(),
        &[
            "schedule",
            "set",
            "--cron",
            "*/20 1-2 * * *",
            "--dry-run",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Where systemd does not run (this machine, CI), the plan is a crontab line.
    let line = json["crontab_line"].as_str().unwrap();
    assert!(line.starts_with("*/20 1-2 * * * cd "), "{line}");
    // The next runs it reports are those of the cron expression: 01:00, 01:20, … 02:40, then tomorrow.
    let runs: Vec<String> = json["next_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let times: Vec<&str> = runs.iter().map(|r| r.split(' ').nth(1).unwrap()).collect();
    let cycle = ["01:00", "01:20", "01:40", "02:00", "02:20", "02:40"];
    let start = cycle.iter().position(|t| *t == times[0]).unwrap();
    for (i, t) in times.iter().enumerate() {
        assert_eq!(*t, cycle[(start + i) % cycle.len()], "{runs:?}");
    }
    let c = Calendar::cron("*/20 1-2 * * *").unwrap();
    assert_eq!(
        ours(&c, "2026-12-03 02:30:00"),
        systemd_next(&c.on_calendar(), "2026-12-03 02:30:00 UTC")
    );
}

#[test]
fn next_runs_across_daylight_saving_changes_match_systemd() {
    // Europe/Berlin: 02:00–03:00 is skipped on 2027-03-28 and repeated on 2027-10-31.
    let tz = "Europe/Berlin";
    for (cron, base) in [
        ("30 2 * * *", "2027-03-27 12:00:00"),
        ("30 2 * * *", "2027-10-30 12:00:00"),
        ("0 * * * *", "2027-10-31 00:30:00"),
        ("30 * * * *", "2027-03-28 00:30:00"),
    ] {
        let c = Calendar::cron(cron).unwrap();
        let after: jiff::Zoned = format!("{}[{tz}]", base.replace(' ', "T")).parse().unwrap();
        let got: Vec<String> = c
            .next_runs(&after, 5)
            .iter()
            .map(|z| z.strftime("%a %Y-%m-%d %H:%M:%S %Z").to_string())
            .collect();
        assert_eq!(
            got,
            systemd_next_in(&c.on_calendar(), base, tz),
            "`{cron}` after {base} in {tz}"
        );
    }
}
