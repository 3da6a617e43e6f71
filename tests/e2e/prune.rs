//! `prune` and `backup --prune` against a real engine: the floor keeps a critical volume's only verified
//! backup whatever the policy, `check`'s protecting backup survives, and `backup --prune` prunes only after
//! a backup that succeeded.

use std::path::{Path, PathBuf};

use crate::support::TestEnv;

/// A database (critical) and a `node_modules` volume (regenerable).
const PROJECT: &str = r#"
services:
  db:
    image: postgres:16
    volumes:
      - dbdata:/var/lib/postgresql/data
  web:
    image: node:20
    volumes:
      - node_modules:/app/node_modules
volumes:
  dbdata:
    labels: {persist.test.run: "{{RUN}}"}
  node_modules:
    labels: {persist.test.run: "{{RUN}}"}
"#;

fn backups(env: &TestEnv) -> Vec<String> {
    let dir = env.project_dir.join("backups");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.ends_with(".tar"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Backs up with `args`, waits past the second (file names have one-second resolution), returns the path.
fn backup(env: &TestEnv, args: &[&str]) -> PathBuf {
    let mut all = vec!["backup"];
    all.extend(args);
    let ran = env.persist(&all);
    ran.assert_success();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    PathBuf::from(ran.stdout_lines().last().unwrap())
}

fn write(env: &TestEnv, service: &str, dir: &str, what: &str) {
    let script = format!("echo {what} > {dir}/note");
    env.compose_v2(["exec", "-T", service, "sh", "-c", script.as_str()])
        .assert_success();
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn the_only_verified_backup_of_a_critical_volume_survives_keep_last_1() {
    let env = TestEnv::new();
    env.write_project(PROJECT, None);
    env.compose_v2(["up", "-d"]).assert_success();
    write(&env, "db", "/var/lib/postgresql/data", "one");
    let oldest = backup(&env, &["dbdata"]);
    write(&env, "db", "/var/lib/postgresql/data", "two");
    let verified = backup(&env, &["dbdata"]);
    env.persist(["verify", verified.to_str().unwrap()])
        .assert_success();
    write(&env, "db", "/var/lib/postgresql/data", "three");
    let newest = backup(&env, &["dbdata"]);
    // The database runs and writes: no backup protects it for `check`, so only the floor's
    // verified-backup rule can keep `verified`.
    env.persist(["check"]).assert_code(3);

    let ran = env.persist(["prune", "--keep-last", "1", "--yes", "--json"]);
    ran.assert_success();
    let json = ran.json();
    let decision = |p: &Path| {
        json["backups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["path"].as_str().unwrap().ends_with(&name(p)))
            .unwrap_or_else(|| panic!("{} not in {json}", p.display()))
            .clone()
    };
    assert_eq!(decision(&newest)["why"], "keep-last; floor: newest backup");
    assert_eq!(
        decision(&verified)["why"],
        "floor: newest verified backup of `dbdata`"
    );
    assert_eq!(decision(&oldest)["decision"], "remove");
    assert_eq!(backups(&env), [name(&verified), name(&newest)]);
    env.compose_v2(["down"]).assert_success();
}

#[test]
fn the_backup_check_counts_as_protecting_survives_any_policy() {
    let env = TestEnv::new();
    env.write_project(PROJECT, None);
    env.compose_v2(["up", "-d"]).assert_success();
    write(&env, "db", "/var/lib/postgresql/data", "one");
    // The database runs again after this one: it protects nothing.
    let stale = backup(&env, &["dbdata"]);
    env.compose_v2(["stop"]).assert_success();
    // Taken with the database stopped, and nothing ran since: it protects `dbdata` (check verifies it).
    let protecting = backup(&env, &["dbdata"]);
    env.persist(["check"]).assert_success();
    // A newer backup of other data only.
    let newest = backup(&env, &["--tier", "regenerable"]);
    let ran = env.persist(["prune", "--keep-last", "1", "--yes", "--json"]);
    ran.assert_success();
    let json = ran.json();
    let why: Vec<String> = json["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["why"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        why,
        [
            "keep-last; floor: newest backup".to_string(),
            "floor: newest verified backup of `dbdata`; floor: protects `dbdata` for `check`"
                .to_string(),
            "no rule keeps it".to_string()
        ]
    );
    assert!(!backups(&env).contains(&name(&stale)));
    assert_eq!(backups(&env), [name(&protecting), name(&newest)]);
    env.persist(["check"]).assert_success();
}

#[test]
fn backup_prune_prunes_by_the_configured_policy_after_a_successful_backup_only() {
    let env = TestEnv::new();
    env.write_project(
        &format!("{PROJECT}x-persist:\n  retention: {{keep-last: 2}}\n"),
        None,
    );
    env.compose_v2(["up", "-d"]).assert_success();
    write(&env, "web", "/app/node_modules", "x");
    let first = backup(&env, &["--tier", "regenerable"]);
    let second = backup(&env, &["--tier", "regenerable"]);
    let third = backup(&env, &["--tier", "regenerable"]);
    assert_eq!(backups(&env).len(), 3);

    // A backup that fails prunes nothing.
    env.persist(["backup", "nosuchvolume", "--prune"])
        .assert_code(2);
    assert_eq!(backups(&env), [name(&first), name(&second), name(&third)]);

    let ran = env.persist(["backup", "--tier", "regenerable", "--prune", "--json"]);
    ran.assert_success();
    let json = ran.json();
    let fourth = json["path"].as_str().unwrap();
    assert_eq!(json["prune"]["removed"], 2, "{json}");
    assert_eq!(json["prune"]["policy_source"], "`x-persist.retention`");
    assert_eq!(
        backups(&env),
        [name(&third), name(Path::new(fourth))],
        "{json}"
    );
    env.compose_v2(["down"]).assert_success();
}

#[test]
fn backup_prune_without_a_policy_is_refused_before_the_backup() {
    let env = TestEnv::new();
    env.write_project(PROJECT, None);
    env.compose_v2(["up", "-d"]).assert_success();
    let ran = env.persist(["backup", "--tier", "regenerable", "--prune"]);
    ran.assert_code(2);
    ran.assert_stderr_contains("no retention policy");
    assert!(backups(&env).is_empty());
    env.compose_v2(["down"]).assert_success();
}
