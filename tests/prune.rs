//! `prune` on backup directories, run as the binary with no engine to reach (`DOCKER_HOST` names a socket
//! that does not exist): policies from flags and from the Compose file, the refusals, what is never
//! touched, the conservative floor without an engine, `--json`, and the time 1,000 backups take.
//!
//! The backup files are real ones, written by the archive writer with the times and tags each test needs;
//! the engine's view of the data (`check`'s rule) is covered by the end-to-end tests.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use assert_cmd::Command;
use docker_persist::archive::{BackupName, BackupWriter, EngineInfo, VolumeSpec, WriterOptions};
use docker_persist::compose::Tier;
use docker_persist::compose::classify::DataKind;
use serde_json::Value;

const PROJECT: &str = "shop";

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(compose: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("compose.yaml"), compose).unwrap();
        Project { dir }
    }

    fn plain() -> Project {
        Project::new(&format!("name: {PROJECT}\nservices: {{}}\n"))
    }

    fn backups(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    fn persist(&self) -> Command {
        Command::from(self.persist_std())
    }

    fn persist_std(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin!("docker-persist"));
        let home = self.dir.path().join("home");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_STATE_HOME", home.join("state"))
            .env("DOCKER_CONFIG", home.join(".docker"))
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .env("NO_COLOR", "1")
            .env("COLUMNS", "200")
            .env("TZ", "UTC")
            .current_dir(self.dir.path());
        cmd
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.persist().args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The file names in the backup directory but the `.gitignore` the writer puts there, sorted.
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs_err::read_dir(self.backups())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != ".gitignore")
            .collect();
        names.sort();
        names
    }
}

fn spec(key: &str, tier: Tier) -> VolumeSpec {
    VolumeSpec {
        key: key.into(),
        name: format!("{PROJECT}_{key}"),
        kind: DataKind::Named,
        tier,
        reason: "test".into(),
        driver: "local".into(),
        driver_opts: Default::default(),
        labels: Default::default(),
        users: vec![],
        consistency: "stop".into(),
        stopped: vec![],
        read_at: None,
        tar_prefix: None,
    }
}

fn tiny_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(3);
    b.append_data(&mut h, "./f", &b"abc"[..]).unwrap();
    b.into_inner().unwrap()
}

/// Writes a backup of `project` taken at `stamp` (RFC 3339) holding one volume of `tier`.
fn backup(dir: &Path, project: &str, stamp: &str, tag: Option<&str>, tier: Tier) -> PathBuf {
    let name = BackupName::new(project, stamp.parse().unwrap(), tag).unwrap();
    let mut w = BackupWriter::create(
        dir,
        &name,
        EngineInfo::default(),
        WriterOptions {
            level: 1,
            workers: 0,
        },
    )
    .unwrap();
    w.add_compose_file("compose.yaml", b"services: {}\n")
        .unwrap();
    w.add_volume(spec("cache", tier), &tiny_tar()[..]).unwrap();
    w.finish().unwrap().path
}

fn name_of(stamp: &str, tag: Option<&str>) -> String {
    BackupName::new(PROJECT, stamp.parse().unwrap(), tag)
        .unwrap()
        .file_name()
}

/// A project with a directory destination `usb` (`./usb`), `project` and `usb` added to the
/// `x-persist` and `usb` entries, and backups on 1, 2 and 3 January 2026 in both places; the local
/// backups' names and the `usb` directory.
fn with_usb(project: &str, usb: &str) -> (Project, Vec<String>, PathBuf) {
    let p = Project::new(&format!(
        "name: {PROJECT}\nservices: {{}}\nx-persist:\n{project}  destinations:\n    usb:\n      url: ./usb\n{usb}"
    ));
    let local = dailies(&p, "2026-01-01", 3);
    let dir = p.dir.path().join("usb");
    for day in 1..=3 {
        backup(
            &dir,
            PROJECT,
            &format!("2026-01-0{day}T03:00:00Z"),
            None,
            Tier::Regenerable,
        );
    }
    (p, local, dir)
}

/// Daily backups at 03:00 UTC from `first` (a date) for `days` days.
fn dailies(p: &Project, first: &str, days: i64) -> Vec<String> {
    let start: jiff::civil::Date = first.parse().unwrap();
    (0..days)
        .map(|i| {
            let d = start.checked_add(jiff::Span::new().days(i)).unwrap();
            let stamp = format!("{d}T03:00:00Z");
            backup(&p.backups(), PROJECT, &stamp, None, Tier::Regenerable);
            name_of(&stamp, None)
        })
        .collect()
}

#[test]
fn prune_without_a_policy_is_a_usage_error() {
    let p = Project::plain();
    dailies(&p, "2026-01-01", 3);
    let (code, _, err) = p.run(&["prune", "--yes"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no retention policy"), "{err}");
    assert_eq!(p.files().len(), 3);
}

#[test]
fn a_policy_without_a_rule_is_a_usage_error() {
    let p = Project::plain();
    let (code, _, err) = p.run(&["prune", "--keep-daily", "0", "--yes"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("has no rule"), "{err}");
}

#[test]
fn a_misspelt_retention_key_is_a_usage_error() {
    let p = Project::new(&format!(
        "name: {PROJECT}\nservices: {{}}\nx-persist:\n  retention: {{keep-dialy: 7}}\n"
    ));
    let (code, _, err) = p.run(&["prune"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown key `keep-dialy`"), "{err}");
}

#[test]
fn an_unknown_time_zone_is_a_usage_error() {
    let p = Project::plain();
    let (code, _, err) = p.run(&["prune", "--keep-daily", "7", "--tz", "Mars/Olympus"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Mars/Olympus"), "{err}");
}

#[test]
fn a_policy_of_the_moment_needs_yes_without_a_terminal() {
    let p = Project::plain();
    let all = dailies(&p, "2026-01-01", 5);
    let (code, _, err) = p.run(&["prune", "--keep-last", "2"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("without confirmation"), "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(p.files(), all);
    let (code, _, err) = p.run(&["prune", "--keep-last", "2", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(p.files(), all[3..]);
    assert!(err.contains("Removed 3 backups"), "{err}");
}

#[test]
fn the_configured_policy_runs_without_asking() {
    let p = Project::new(&format!(
        "name: {PROJECT}\nservices: {{}}\nx-persist:\n  retention:\n    keep-daily: 7\n    keep-weekly: 4\n    keep-monthly: 12\n    keep-yearly: unlimited\n"
    ));
    // Two years of daily backups: restic's rules keep 7 days, then 4 weeks, 12 months, every year.
    let all = dailies(&p, "2024-12-01", 400);
    let (code, out, err) = p.run(&["prune", "--json"]);
    assert_eq!(code, 0, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["policy_source"], "`x-persist.retention`");
    let kept: Vec<&str> = json["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["decision"] == "keep")
        .map(|b| b["created"].as_str().unwrap())
        .collect();
    // Newest first: 7 daily (29 Dec 2025 – 4 Jan 2026); weekly adds the Sundays of the three ISO weeks
    // before (the newest week's is a daily); monthly the last days of the eleven months before
    // (January 2026's and December's newest are dailies), back to February 2025; yearly 2024's last.
    assert_eq!(
        kept,
        [
            "2026-01-04T03:00:00Z",
            "2026-01-03T03:00:00Z",
            "2026-01-02T03:00:00Z",
            "2026-01-01T03:00:00Z",
            "2025-12-31T03:00:00Z",
            "2025-12-30T03:00:00Z",
            "2025-12-29T03:00:00Z",
            "2025-12-28T03:00:00Z",
            "2025-12-21T03:00:00Z",
            "2025-12-14T03:00:00Z",
            "2025-11-30T03:00:00Z",
            "2025-10-31T03:00:00Z",
            "2025-09-30T03:00:00Z",
            "2025-08-31T03:00:00Z",
            "2025-07-31T03:00:00Z",
            "2025-06-30T03:00:00Z",
            "2025-05-31T03:00:00Z",
            "2025-04-30T03:00:00Z",
            "2025-03-31T03:00:00Z",
            "2025-02-28T03:00:00Z",
            "2024-12-31T03:00:00Z",
        ]
    );
    assert_eq!(p.files().len(), kept.len());
    assert_eq!(json["removed"], all.len() - kept.len());
    for b in json["backups"].as_array().unwrap() {
        assert_eq!(b["removed"] == true, b["decision"] == "remove", "{b}");
        assert!(!b["why"].as_str().unwrap().is_empty(), "{b}");
    }
}

#[test]
fn flags_replace_the_configured_policy() {
    let p = Project::new(&format!(
        "name: {PROJECT}\nservices: {{}}\nx-persist:\n  retention: {{keep-daily: 30}}\n"
    ));
    let all = dailies(&p, "2026-01-01", 6);
    let (code, _, err) = p.run(&["prune", "--keep-last", "1", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(p.files(), all[5..]);
}

#[test]
fn dry_run_shows_every_backup_and_removes_nothing() {
    let p = Project::plain();
    let all = dailies(&p, "2026-01-01", 4);
    let (code, out, err) = p.run(&["prune", "--keep-last", "1", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(p.files(), all);
    assert_eq!(out.matches("REMOVE").count(), 3, "{out}");
    assert_eq!(out.matches("KEEP").count(), 1, "{out}");
    assert!(out.contains("keep-last; floor: newest backup"), "{out}");
    assert!(out.contains("no rule keeps it"), "{out}");
    assert!(err.contains("Would remove 3 backups"), "{err}");
}

#[test]
fn only_this_projects_backups_are_ever_removed() {
    let p = Project::plain();
    let ours = dailies(&p, "2026-01-01", 3);
    let dir = p.backups();
    // Another project's backup, a file named like ours whose manifest names another project, a damaged
    // file named like ours, a running backup's `.partial`, and a file of the user's.
    backup(
        &dir,
        "other",
        "2026-01-01T00:00:00Z",
        None,
        Tier::Regenerable,
    );
    let impostor = backup(
        &dir,
        "other",
        "2025-06-01T00:00:00Z",
        None,
        Tier::Regenerable,
    );
    fs_err::rename(&impostor, dir.join(name_of("2025-06-01T00:00:00Z", None))).unwrap();
    fs_err::write(
        dir.join(name_of("2025-05-01T00:00:00Z", None)),
        b"not a tar",
    )
    .unwrap();
    let partial = format!("{}.partial", name_of("2026-01-09T00:00:00Z", None));
    fs_err::write(dir.join(&partial), b"being written").unwrap();
    fs_err::write(dir.join("notes.txt"), b"mine").unwrap();
    let before = p.files();
    let (code, _, err) = p.run(&["prune", "--keep-last", "1", "--yes"]);
    assert_eq!(code, 0, "{err}");
    let mut expected: Vec<String> = before
        .into_iter()
        .filter(|f| !ours[..2].contains(f))
        .collect();
    expected.sort();
    assert_eq!(p.files(), expected);
    assert!(p.files().contains(&partial));
    assert!(p.files().contains(&ours[2]));
}

#[test]
fn a_policy_that_keeps_nothing_says_so_and_the_floor_keeps_the_newest() {
    let p = Project::plain();
    let all = dailies(&p, "2026-01-01", 3);
    let (code, _, err) = p.run(&["prune", "--keep-tag", "release", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("keeps none of the 3 backups: only the safety floor keeps any"),
        "{err}"
    );
    assert_eq!(p.files(), all[2..]);
}

#[test]
fn safety_copies_stay_two_weeks_and_the_newest_of_each_tag_always() {
    let p = Project::plain();
    let dir = p.backups();
    let now = jiff::Timestamp::now();
    let ago = |days: i64| {
        now.checked_sub(jiff::SignedDuration::from_hours(24 * days))
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let regular = ago(1);
    backup(&dir, PROJECT, &regular, None, Tier::Regenerable);
    let (recent, old, oldest) = (ago(3), ago(20), ago(40));
    for s in [&recent, &old, &oldest] {
        backup(&dir, PROJECT, s, Some("pre-restore"), Tier::Regenerable);
    }
    let down = ago(100);
    backup(&dir, PROJECT, &down, Some("pre-down"), Tier::Regenerable);
    let (code, out, err) = p.run(&["prune", "--keep-last", "1", "--yes", "--json"]);
    assert_eq!(code, 0, "{err}");
    let mut expected = vec![
        name_of(&regular, None),
        name_of(&recent, Some("pre-restore")),
        name_of(&down, Some("pre-down")),
    ];
    expected.sort();
    assert_eq!(p.files(), expected, "{out}");
}

#[test]
fn without_an_engine_the_floor_keeps_critical_data_down_to_its_newest_verified_backup() {
    let p = Project::plain();
    let dir = p.backups();
    for day in 1..=4 {
        backup(
            &dir,
            PROJECT,
            &format!("2026-01-0{day}T00:00:00Z"),
            None,
            Tier::Critical,
        );
    }
    // Nothing is verified: any of them could be the one `check` relies on.
    let (code, _, err) = p.run(&["prune", "--keep-last", "1", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("cannot reach the engine"), "{err}");
    assert_eq!(p.files().len(), 4);
    // Verified, the second newest bounds it.
    let (code, _, err) = p.run(&[
        "verify",
        dir.join(name_of("2026-01-03T00:00:00Z", None))
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = p.run(&["prune", "--keep-last", "1", "--yes", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        p.files(),
        [
            name_of("2026-01-03T00:00:00Z", None),
            name_of("2026-01-04T00:00:00Z", None)
        ],
        "{out}"
    );
}

#[test]
fn a_destination_prunes_by_its_own_retention() {
    let (p, local, usb) = with_usb(
        "  retention: {keep-daily: 30}\n",
        "      retention: {keep-last: 1}\n",
    );
    // The destination's policy, configured: no question.
    let (code, out, err) = p.run(&["prune", "--from", "usb", "--json"]);
    assert_eq!(code, 0, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        json["policy_source"],
        "the `retention:` of destination `usb`"
    );
    let mut left: Vec<String> = fs_err::read_dir(&usb)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tar"))
        .collect();
    left.sort();
    assert_eq!(left, [name_of("2026-01-03T03:00:00Z", None)]);
    // The project's own directory is another destination, with the project's policy.
    assert_eq!(p.files(), local);
}

#[test]
fn a_destination_that_cannot_be_listed_changes_nothing() {
    let p = Project::plain();
    let all = dailies(&p, "2026-01-01", 3);
    let not_a_dir = p.dir.path().join("file");
    fs_err::write(&not_a_dir, b"x").unwrap();
    let (code, _, err) = p.run(&[
        "prune",
        "--from",
        not_a_dir.to_str().unwrap(),
        "--keep-last",
        "1",
        "--yes",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("failed to list the backups"), "{err}");
    assert_eq!(p.files(), all);
    assert_eq!(fs_err::read(&not_a_dir).unwrap(), b"x");
}

#[test]
fn pruning_a_thousand_backups_leaves_exactly_the_ones_it_says_it_kept() {
    let p = Project::plain();
    let dir = p.backups();
    let start: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
    for i in 0..1000 {
        let t = start
            .checked_add(jiff::SignedDuration::from_hours(7 * i))
            .unwrap();
        backup(&dir, PROJECT, &t.to_string(), None, Tier::Regenerable);
    }
    let started = Instant::now();
    let (code, out, err) = p.run(&[
        "prune",
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--keep-monthly",
        "12",
        "--yes",
        "--json",
    ]);
    let took = started.elapsed();
    assert_eq!(code, 0, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["backups"].as_array().unwrap().len(), 1000);
    let kept = json["kept"].as_u64().unwrap() as usize;
    assert_eq!(p.files().len(), kept);
    assert!(kept < 30, "{kept} kept");
    std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "prune: 1000 backups listed, decided and {} removed in {:.2}s\n",
            1000 - kept,
            took.as_secs_f64()
        )
        .as_bytes(),
    )
    .unwrap();
}

/// The port of a loopback listener just closed: nothing answers there.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tars_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tar"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_place_that_fails_is_reported_and_the_other_places_are_still_pruned() {
    let (p, local, usb) = with_usb("", "");
    let usb_before = tars_in(&usb);
    let not_a_dir = p.dir.path().join("file");
    fs_err::write(&not_a_dir, b"x").unwrap();
    let bucket = format!(
        "s3://offsite/app?endpoint=http://127.0.0.1:{}&region=us-east-1",
        closed_port()
    );
    let started = Instant::now();
    let out = p
        .persist()
        .env("AWS_ACCESS_KEY_ID", "AKIAPERSISTTEST")
        .env("AWS_SECRET_ACCESS_KEY", "persist-test-secret")
        .args([
            "prune",
            "--from",
            "local",
            "--from",
            &bucket,
            "--from",
            not_a_dir.to_str().unwrap(),
            "--from",
            "usb",
            "--keep-last",
            "1",
            "--yes",
            "--json",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let places = json["destinations"].as_array().unwrap();
    let outcomes: Vec<(&str, &str)> = places
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["outcome"].as_str().unwrap()))
        .collect();
    let bucket_name = places[1]["name"].as_str().unwrap();
    let file_name = places[2]["name"].as_str().unwrap();
    assert_eq!(
        outcomes,
        [
            ("local", "pruned"),
            (bucket_name, "failed"),
            (file_name, "failed"),
            ("usb", "pruned")
        ],
        "{json}"
    );
    assert!(bucket_name.starts_with("s3://offsite/app"), "{json}");
    // Each failure is named, with its cause, in the document and on stderr.
    assert!(
        places[1]["error"]
            .as_str()
            .unwrap()
            .contains("failed to list the backups"),
        "{json}"
    );
    assert!(places[1].get("result").is_none(), "{json}");
    assert!(err.contains("could not prune `s3://offsite/app"), "{err}");
    assert!(
        err.contains(&format!("could not prune `{}`", not_a_dir.display())),
        "{err}"
    );
    // The places before and after the failures are pruned; the failed ones are untouched.
    assert_eq!(places[0]["result"]["removed"], 2, "{json}");
    assert_eq!(places[3]["result"]["removed"], 2, "{json}");
    assert_eq!(p.files(), [local[2].clone()]);
    assert_eq!(tars_in(&usb), [usb_before[2].clone()]);
    assert_eq!(fs_err::read(&not_a_dir).unwrap(), b"x");
}

#[test]
fn an_interrupted_prune_leaves_every_file_whole_or_gone_and_no_digest_without_its_backup() {
    use sha2::Digest as _;
    let p = Project::plain();
    // 300 backups, an hour apart, each with its `.sha256` beside it as a destination holds them.
    let pristine = p.dir.path().join("pristine");
    let start: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let mut all = Vec::new();
    for i in 0..300 {
        let t = start
            .checked_add(jiff::SignedDuration::from_hours(i))
            .unwrap();
        let path = backup(&pristine, PROJECT, &t.to_string(), None, Tier::Regenerable);
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let sha = hex::encode(sha2::Sha256::digest(fs_err::read(&path).unwrap()));
        fs_err::write(
            pristine.join(format!("{name}.sha256")),
            format!("{sha}  {name}\n"),
        )
        .unwrap();
        all.push(name);
    }
    all.sort();
    // Ctrl-C lands mid-prune on most tries; a prune that finished first is tried again.
    for attempt in 0..10 {
        let usb = p.dir.path().join(format!("usb{attempt}"));
        fs_err::create_dir_all(&usb).unwrap();
        for e in fs_err::read_dir(&pristine).unwrap() {
            let e = e.unwrap();
            fs_err::copy(e.path(), usb.join(e.file_name())).unwrap();
        }
        let prune = [
            "prune",
            "--from",
            usb.to_str().unwrap(),
            "--keep-last",
            "1",
            "--yes",
            "--json",
        ];
        let mut child = p
            .persist_std()
            .args(prune)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Interrupt as soon as the first backup is gone.
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        while tars_in(&usb).len() == all.len() && child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "prune removed nothing");
        }
        let killed = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let left = tars_in(&usb);
        if out.status.code() == Some(0) {
            assert!(!killed.success() || left.len() == 1, "{err}");
            continue;
        }
        assert_eq!(out.status.code(), Some(130), "{err}");
        assert!(err.contains("interrupted"), "{err}");
        assert!(left.len() > 1 && left.len() < all.len(), "{}", left.len());
        // Oldest first: what is left are the newest backups, and each is byte for byte the file written.
        assert_eq!(left, all[all.len() - left.len()..], "{err}");
        for name in &left {
            assert_eq!(
                fs_err::read(usb.join(name)).unwrap(),
                fs_err::read(pristine.join(name)).unwrap(),
                "{name} changed"
            );
        }
        // No `.sha256` names a backup that is gone, and each still matches its backup; at most the one
        // being removed when Ctrl-C came lacks its `.sha256`.
        let mut digests = 0;
        for e in fs_err::read_dir(&usb).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            let Some(of) = name.strip_suffix(".sha256") else {
                continue;
            };
            digests += 1;
            let line = fs_err::read_to_string(usb.join(&name)).unwrap();
            let sha = hex::encode(sha2::Sha256::digest(fs_err::read(usb.join(of)).unwrap()));
            assert_eq!(line, format!("{sha}  {of}\n"));
        }
        assert!(digests + 1 >= left.len(), "{digests} for {}", left.len());
        // A second prune finds every file left a backup, and finishes the job.
        let (code, out, err) = p.run(&prune);
        assert_eq!(code, 0, "{err}");
        let json: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["backups"].as_array().unwrap().len(), left.len());
        assert_eq!(tars_in(&usb), [all[all.len() - 1].clone()]);
        std::io::Write::write_all(
            &mut std::io::stderr(),
            format!(
                "prune interrupted on try {}: {} of {} backups left\n",
                attempt + 1,
                left.len(),
                all.len()
            )
            .as_bytes(),
        )
        .unwrap();
        return;
    }
    panic!("every prune finished before Ctrl-C reached it");
}
