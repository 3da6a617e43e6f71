//! restic itself is the oracle for the retention rules: snapshots with the same times as a generated
//! history go into a throwaway local restic repository (`restic backup --time`), `restic forget --dry-run
//! --json` runs with a policy, and [`apply_policy`] must keep exactly the snapshots restic keeps.
//!
//! The times are made to hit the cases that break age-based pruning and naive bucketing: random gaps from
//! minutes to months over a decade, both daylight-saving changes of Europe/Berlin hour by hour (the
//! skipped hour and the repeated one), two year boundaries whose last week is ISO week 53 (2020, 2026),
//! and midnights. Every restic command runs with `TZ=Europe/Berlin`, and the core evaluates in that zone;
//! the times compared are the ones restic recorded (read back with `restic snapshots --json`), so a wall
//! clock that a daylight-saving change makes ambiguous is the same instant on both sides.
//!
//! Making a snapshot costs a restic process (a key derivation, a lock), so one pool of snapshots serves
//! every history: each snapshot carries the tags `hN` of the histories it belongs to, and `forget --tag hN`
//! evaluates one history. restic is found on `PATH` (Debian: `apt-get install restic`); without it the
//! test fails, it never passes by skipping.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use docker_persist::retention::{Count, Dated, Policy, Within, apply_policy};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::Value;

const ZONE: &str = "Europe/Berlin";
const PASSWORD: &str = "retention-oracle";
/// The tag restic's `--keep-tag` and ours are asked to keep.
const KEEP_TAG: &str = "release";
const SEED: u64 = 0x5eed_2026;
const HISTORIES: usize = 14;
const POLICIES_PER_HISTORY: usize = 3;
/// Snapshots in the pool.
const POOL: usize = 150;

struct Restic<'a> {
    repo: &'a Path,
}

impl Restic<'_> {
    fn command(&self) -> Command {
        let mut cmd = Command::new("restic");
        cmd.env("RESTIC_REPOSITORY", self.repo)
            .env("RESTIC_PASSWORD", PASSWORD)
            .env("TZ", ZONE)
            .env_remove("RESTIC_PASSWORD_FILE")
            .env_remove("RESTIC_PASSWORD_COMMAND")
            .args(["--no-cache", "--quiet"]);
        cmd
    }

    fn run(&self, args: &[String]) -> String {
        let out = self.command().args(args).output().unwrap_or_else(|e| {
            panic!("cannot run restic (Debian: `apt-get install restic`): {e}")
        });
        assert!(
            out.status.success(),
            "restic {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// The pool of snapshot times, UTC, whole seconds, distinct, oldest first.
fn pool_times(rng: &mut fastrand::Rng) -> Vec<Timestamp> {
    let at = |s: &str| s.parse::<Timestamp>().unwrap().as_second();
    let mut secs: BTreeSet<i64> = BTreeSet::new();
    // Both daylight-saving changes of 2026, about every 20 minutes for six hours around each.
    for centre in ["2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z"] {
        let mut s = at(centre) - 3 * 3600;
        while s < at(centre) + 3 * 3600 {
            secs.insert(s + rng.i64(0..300));
            s += rng.i64(600..2400);
        }
    }
    // Two year ends with an ISO week 53, about daily, some days skipped, some twice.
    for centre in ["2021-01-01T00:00:00Z", "2027-01-01T00:00:00Z"] {
        let mut s = at(centre) - 12 * 86400;
        while s < at(centre) + 12 * 86400 {
            secs.insert(s + rng.i64(0..86400));
            s += rng.i64(3600..2 * 86400);
        }
    }
    // Around local midnights: 22:30 to 01:30 Berlin time.
    for day in ["2024-02-28", "2024-02-29", "2025-06-30", "2025-12-31"] {
        let midnight = at(&format!("{day}T23:00:00Z"));
        secs.insert(midnight - 1800 + rng.i64(0..3600 * 2));
    }
    // A decade of random gaps, from minutes to months, sampled down to what the pool has room for.
    let mut decade = Vec::new();
    let mut s = at("2015-01-01T00:00:00Z");
    let end = at("2026-11-01T00:00:00Z");
    while s < end {
        decade.push(s);
        let scale = [600, 3 * 3600, 86400, 7 * 86400, 40 * 86400][rng.usize(0..5)];
        s += rng.i64(60..scale * 2);
    }
    rng.shuffle(&mut decade);
    let room = POOL.saturating_sub(secs.len());
    secs.extend(decade.into_iter().take(room));
    secs.into_iter()
        .map(|s| Timestamp::from_second(s).unwrap())
        .collect()
}

fn random_policy(rng: &mut fastrand::Rng) -> Policy {
    loop {
        let mut count = || -> Count {
            match rng.u32(0..10) {
                0..=5 => Count::OFF,
                6 => Count::UNLIMITED,
                _ => Count::new(rng.u32(1..16)),
            }
        };
        let mut p = Policy {
            keep_last: count(),
            keep_hourly: count(),
            keep_daily: count(),
            keep_weekly: count(),
            keep_monthly: count(),
            keep_yearly: count(),
            ..Policy::default()
        };
        if rng.u32(0..10) < 3 {
            p.keep_within = Within {
                years: if rng.bool() { 0 } else { rng.u32(0..2) },
                months: if rng.bool() { 0 } else { rng.u32(0..13) },
                days: if rng.bool() { 0 } else { rng.u32(0..40) },
                hours: if rng.bool() { 0 } else { rng.u32(0..72) },
            };
        }
        if rng.u32(0..10) < 2 {
            p.keep_tags.push(KEEP_TAG.to_string());
        }
        if !p.is_empty() {
            return p;
        }
    }
}

/// restic's `forget` options for `p`; restic 0.14 has no `unlimited`, a count above any history's length
/// means the same.
fn restic_args(p: &Policy) -> Vec<String> {
    let mut args = Vec::new();
    let count = |c: Count| {
        if c.is_unlimited() {
            "100000".to_string()
        } else {
            c.to_string()
        }
    };
    for (flag, c) in [
        ("--keep-last", p.keep_last),
        ("--keep-hourly", p.keep_hourly),
        ("--keep-daily", p.keep_daily),
        ("--keep-weekly", p.keep_weekly),
        ("--keep-monthly", p.keep_monthly),
        ("--keep-yearly", p.keep_yearly),
    ] {
        if !c.is_off() {
            args.extend([flag.to_string(), count(c)]);
        }
    }
    if !p.keep_within.is_zero() {
        args.extend(["--keep-within".to_string(), p.keep_within.to_string()]);
    }
    for t in &p.keep_tags {
        args.extend(["--keep-tag".to_string(), t.clone()]);
    }
    args
}

struct Snapshot {
    id: String,
    time: Timestamp,
    tags: Vec<String>,
}

impl Snapshot {
    fn real_tag(&self) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| *t == KEEP_TAG)
            .map(String::as_str)
    }
}

#[test]
fn prune_keeps_exactly_what_restic_forget_keeps() {
    let started = std::time::Instant::now();
    let version = Command::new("restic").arg("version").output().unwrap_or_else(|e| {
        panic!("restic is the oracle of this test and is not on PATH (Debian: `apt-get install restic`): {e}")
    });
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let tz = TimeZone::get(ZONE).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let repo = scratch.path().join("repo");
    let data = scratch.path().join("data");
    fs_err::create_dir_all(&data).unwrap();
    fs_err::write(data.join("f"), b"retention oracle\n").unwrap();
    let restic = Restic { repo: &repo };
    restic.run(&["init".to_string()]);

    let mut rng = fastrand::Rng::with_seed(SEED);
    let times = pool_times(&mut rng);
    // Membership: history 0 is the whole pool; the others are random subsets and random windows.
    let mut members: Vec<Vec<String>> = vec![vec!["h0".to_string()]; times.len()];
    for h in 1..HISTORIES {
        let (lo, hi) = if h % 2 == 0 {
            let a = rng.usize(0..times.len());
            let b = rng.usize(0..times.len());
            (a.min(b), a.max(b))
        } else {
            (0, times.len())
        };
        let p = rng.u32(20..90);
        for (i, m) in members.iter_mut().enumerate() {
            if (lo..hi).contains(&i) && rng.u32(0..100) < p {
                m.push(format!("h{h}"));
            }
        }
    }
    for m in &mut members {
        if rng.u32(0..100) < 12 {
            m.push(KEEP_TAG.to_string());
        }
    }

    // Two restic processes at a time: each spends most of its time in key derivation and lock waits.
    let jobs: Vec<(Timestamp, Vec<String>)> = times.iter().copied().zip(members).collect();
    std::thread::scope(|s| {
        for chunk in jobs.chunks(jobs.len().div_ceil(2)) {
            let restic = &restic;
            let tz = &tz;
            let data = &data;
            s.spawn(move || {
                for (t, tags) in chunk {
                    let wall = t
                        .to_zoned(tz.clone())
                        .strftime("%Y-%m-%d %H:%M:%S")
                        .to_string();
                    let mut args = vec![
                        "backup".to_string(),
                        "--time".to_string(),
                        wall,
                        "--host".to_string(),
                        "oracle".to_string(),
                        "--tag".to_string(),
                        tags.join(","),
                    ];
                    args.push(data.display().to_string());
                    restic.run(&args);
                }
            });
        }
    });

    let listed: Value =
        serde_json::from_str(&restic.run(&["snapshots".to_string(), "--json".to_string()]))
            .unwrap();
    let snapshots: Vec<Snapshot> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Snapshot {
            id: s["id"].as_str().unwrap().to_string(),
            time: s["time"].as_str().unwrap().parse().unwrap(),
            tags: s["tags"]
                .as_array()
                .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
                .unwrap_or_default(),
        })
        .collect();
    assert_eq!(snapshots.len(), times.len(), "restic lost snapshots");
    let distinct: BTreeSet<i64> = snapshots.iter().map(|s| s.time.as_second()).collect();
    assert_eq!(
        distinct.len(),
        snapshots.len(),
        "two snapshots of the same second: the oracle cannot tell which one restic keeps"
    );

    let mut fixed = vec![
        Policy {
            keep_daily: Count::new(7),
            keep_weekly: Count::new(4),
            keep_monthly: Count::new(12),
            keep_yearly: Count::UNLIMITED,
            ..Policy::default()
        },
        Policy {
            keep_hourly: Count::new(30),
            ..Policy::default()
        },
        Policy {
            keep_weekly: Count::new(60),
            ..Policy::default()
        },
        Policy {
            keep_within: "1m3d".parse().unwrap(),
            keep_last: Count::new(3),
            ..Policy::default()
        },
    ];
    let mut compared = 0;
    let mut decisions = 0;
    for h in 0..HISTORIES {
        let tag = format!("h{h}");
        let history: Vec<&Snapshot> = snapshots.iter().filter(|s| s.tags.contains(&tag)).collect();
        if history.is_empty() {
            continue;
        }
        for _ in 0..POLICIES_PER_HISTORY {
            let policy = fixed.pop().unwrap_or_else(|| random_policy(&mut rng));
            let mut args = vec![
                "forget".to_string(),
                "--dry-run".to_string(),
                "--no-lock".to_string(),
                "--json".to_string(),
                "--tag".to_string(),
                tag.clone(),
            ];
            args.extend(restic_args(&policy));
            let out: Value = serde_json::from_str(&restic.run(&args)).unwrap();
            let groups = out.as_array().unwrap();
            assert_eq!(groups.len(), 1, "one group per history: {out}");
            let restic_keeps: BTreeSet<&str> = groups[0]["keep"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap())
                .collect();

            let dated: Vec<Dated<'_>> = history
                .iter()
                .map(|s| Dated {
                    created: s.time,
                    tag: s.real_tag(),
                })
                .collect();
            let rules = apply_policy(&policy, &tz, Timestamp::now(), &dated);
            let ours: BTreeSet<&str> = history
                .iter()
                .zip(&rules)
                .filter(|(_, r)| !r.is_empty())
                .map(|(s, _)| s.id.as_str())
                .collect();
            if ours != restic_keeps {
                let line = |s: &Snapshot| {
                    format!(
                        "{} {} {:>9} ours={} restic={}",
                        &s.id[..8],
                        s.time
                            .to_zoned(tz.clone())
                            .strftime("%Y-%m-%d %H:%M:%S %Z %a W%V"),
                        s.real_tag().unwrap_or(""),
                        ours.contains(s.id.as_str()),
                        restic_keeps.contains(s.id.as_str())
                    )
                };
                let mut sorted = history.clone();
                sorted.sort_by_key(|s| std::cmp::Reverse(s.time));
                panic!(
                    "history {h} ({} snapshots), policy `{policy}` (restic {:?}): we keep {}, restic keeps {}\n{}",
                    history.len(),
                    restic_args(&policy),
                    ours.len(),
                    restic_keeps.len(),
                    sorted
                        .iter()
                        .map(|s| line(s))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            compared += 1;
            decisions += history.len();
        }
    }
    assert!(
        compared >= HISTORIES,
        "too few histories compared: {compared}"
    );
    // Written to the process's stderr directly, past the test harness's capture, so every run shows it.
    writeln!(
        std::io::stderr(),
        "retention oracle: {compared} histories × policies compared with {version}: {} snapshots in the pool, {decisions} keep/remove decisions, all equal ({:.1}s)",
        snapshots.len(),
        started.elapsed().as_secs_f64()
    )
    .unwrap();
}
