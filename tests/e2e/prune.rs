//! `prune` and `backup --prune` against a real engine: the floor keeps a critical volume's only verified
//! backup whatever the policy, `check`'s protecting backup survives, and `backup --prune` prunes only after
//! a backup that succeeded; against a real S3 server (`moto_server`) and a real `sshd`, `prune --from` a
//! bucket and `backup --to … --prune` remove exactly the old backups and their `.sha256` files, by each
//! destination's own `retention:`, and leave foreign files alone.

use std::path::{Path, PathBuf};

use crate::destinations::{S3Server, SshServer, persist_s3, persist_ssh};
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

/// The project with a bucket destination `offsite` (keep-last 1) and a local policy (keep-last 3).
fn with_bucket(endpoint: &str) -> String {
    format!(
        "{PROJECT}x-persist:\n  retention: {{keep-last: 3}}\n  destinations:\n    offsite:\n      url: s3://offsite/app\n      endpoint: {endpoint}\n      region: us-east-1\n      retention: {{keep-last: 1}}\n"
    )
}

/// Backs up the regenerable volume locally and to `offsite`; returns the file name.
fn backup_to_bucket(env: &TestEnv) -> String {
    let ran = persist_s3(
        env,
        &[
            "backup",
            "--tier",
            "regenerable",
            "--to",
            "offsite",
            "--json",
        ],
    );
    ran.assert_success();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    name(Path::new(ran.json()["path"].as_str().unwrap()))
}

fn with_side_files(names: &[&String]) -> Vec<String> {
    let mut keys = vec!["app/README.txt".to_string()];
    for n in names {
        keys.push(format!("app/{n}"));
        keys.push(format!("app/{n}.sha256"));
    }
    keys.sort();
    keys
}

#[test]
fn prune_from_a_bucket_and_backup_prune_to_it_remove_exactly_the_old_backups_and_their_digests() {
    let s3 = S3Server::start();
    s3.create_bucket("offsite");
    let env = TestEnv::new();
    env.write_project(&with_bucket(&s3.endpoint()), None);
    env.compose_v2(["up", "-d"]).assert_success();
    write(&env, "web", "/app/node_modules", "x");
    let first = backup_to_bucket(&env);
    let second = backup_to_bucket(&env);
    let third = backup_to_bucket(&env);
    // A file of someone else's in the same prefix.
    s3.boto(
        "offsite",
        "s3.put_object(Bucket=B, Key='app/README.txt', Body=b'not a backup')",
    );
    assert_eq!(
        s3.keys("offsite"),
        with_side_files(&[&first, &second, &third])
    );

    // A dry run removes nothing.
    let ran = persist_s3(&env, &["prune", "--from", "offsite", "--dry-run", "--json"]);
    ran.assert_success();
    assert_eq!(ran.json()["removed"], 0);
    assert_eq!(
        s3.keys("offsite"),
        with_side_files(&[&first, &second, &third])
    );

    // A side file already gone is no obstacle to removing its backup.
    s3.boto(
        "offsite",
        &format!("s3.delete_object(Bucket=B, Key='app/{second}.sha256')"),
    );
    // The destination's own `retention:` (keep-last 1), not the project's (keep-last 3).
    let ran = persist_s3(&env, &["prune", "--from", "offsite", "--json"]);
    ran.assert_success();
    let json = ran.json();
    assert_eq!(
        json["policy_source"], "the `retention:` of destination `offsite`",
        "{json}"
    );
    assert_eq!(json["removed"], 2, "{json}");
    assert_eq!(s3.keys("offsite"), with_side_files(&[&third]));
    // The local directory is another place: untouched.
    assert_eq!(
        backups(&env),
        [first.clone(), second.clone(), third.clone()]
    );

    // Again: nothing left to remove.
    let ran = persist_s3(&env, &["prune", "--from", "offsite", "--json"]);
    ran.assert_success();
    assert_eq!(ran.json()["removed"], 0);

    // `backup --to offsite --prune`: the directory by keep-last 3, the bucket by keep-last 1.
    let ran = persist_s3(
        &env,
        &[
            "backup",
            "--tier",
            "regenerable",
            "--to",
            "offsite",
            "--prune",
            "--json",
        ],
    );
    ran.assert_success();
    let json = ran.json();
    let fourth = name(Path::new(json["path"].as_str().unwrap()));
    // The local prune stays where it was in the document.
    assert_eq!(json["prune"]["removed"], 1, "{json}");
    assert_eq!(json["prune"]["policy_source"], "`x-persist.retention`");
    let places = json["prune"]["destinations"].as_array().unwrap();
    assert_eq!(places.len(), 2, "{json}");
    assert_eq!(places[0]["name"], "local");
    assert_eq!(places[0]["outcome"], "pruned");
    assert_eq!(places[1]["name"], "offsite");
    assert_eq!(places[1]["outcome"], "pruned", "{json}");
    assert_eq!(places[1]["result"]["removed"], 1, "{json}");
    assert_eq!(s3.keys("offsite"), with_side_files(&[&fourth]));
    assert_eq!(backups(&env), [second, third, fourth]);
    env.compose_v2(["down"]).assert_success();
}

#[test]
fn backup_prune_skips_a_destination_without_a_policy_with_a_note() {
    let s3 = S3Server::start();
    s3.create_bucket("offsite");
    let env = TestEnv::new();
    // `offsite` has a policy; `plain` (a second prefix) has none, and neither has the project.
    env.write_project(
        &format!(
            "{PROJECT}x-persist:\n  destinations:\n    offsite:\n      url: s3://offsite/app\n      endpoint: {e}\n      region: us-east-1\n      retention: {{keep-last: 1}}\n    plain:\n      url: s3://offsite/plain\n      endpoint: {e}\n      region: us-east-1\n",
            e = s3.endpoint()
        ),
        None,
    );
    env.compose_v2(["up", "-d"]).assert_success();
    write(&env, "web", "/app/node_modules", "x");
    let args = [
        "backup",
        "--tier",
        "regenerable",
        "--to",
        "offsite",
        "--to",
        "plain",
        "--prune",
    ];
    persist_s3(&env, &args).assert_success();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let ran = persist_s3(&env, &json_args);
    ran.assert_success();
    let json = ran.json();
    let places = json["prune"]["destinations"].as_array().unwrap();
    let outcome: Vec<(&str, &str)> = places
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcome,
        [
            ("local", "skipped"),
            ("offsite", "pruned"),
            ("plain", "skipped")
        ],
        "{json}"
    );
    assert!(
        json["prune"].get("removed").is_none(),
        "no local prune: {json}"
    );
    let keys = s3.keys("offsite");
    assert_eq!(
        keys.iter().filter(|k| k.starts_with("app/")).count(),
        2,
        "{keys:?}"
    );
    assert_eq!(
        keys.iter().filter(|k| k.starts_with("plain/")).count(),
        4,
        "{keys:?}"
    );
    assert_eq!(backups(&env).len(), 2);

    env.compose_v2(["down"]).assert_success();
}

#[test]
fn backup_prune_to_an_sftp_destination_prunes_it_by_its_retention() {
    let sshd = SshServer::start();
    let remote = tempfile::tempdir().unwrap();
    let target = remote.path().join("persist/app");
    let ssh = sshd.ssh_command(&sshd.dir.path().join("known_hosts"));
    let env = TestEnv::new();
    env.write_project(
        &format!(
            "{PROJECT}x-persist:\n  retention: {{keep-last: 5}}\n  destinations:\n    vault:\n      url: {}\n      retention: {{keep-last: 1}}\n",
            sshd.url(&target)
        ),
        None,
    );
    env.compose_v2(["up", "-d"]).assert_success();
    write(&env, "web", "/app/node_modules", "x");
    let args = ["backup", "--tier", "regenerable", "--to", "vault", "--json"];
    let mut sent = Vec::new();
    for _ in 0..2 {
        let ran = persist_ssh(&env, &ssh, &args);
        ran.assert_success();
        sent.push(name(Path::new(ran.json()["path"].as_str().unwrap())));
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    std::fs::write(target.join("README.txt"), "not a backup").unwrap();
    // A side file already gone is no obstacle.
    std::fs::remove_file(target.join(format!("{}.sha256", sent[0]))).unwrap();

    let mut with_prune = args.to_vec();
    with_prune.push("--prune");
    let ran = persist_ssh(&env, &ssh, &with_prune);
    ran.assert_success();
    let json = ran.json();
    let newest = name(Path::new(json["path"].as_str().unwrap()));
    let places = json["prune"]["destinations"].as_array().unwrap();
    assert_eq!(places[1]["name"], "vault", "{json}");
    assert_eq!(places[1]["outcome"], "pruned", "{json}");
    assert_eq!(places[1]["result"]["removed"], 2, "{json}");
    assert_eq!(json["prune"]["removed"], 0, "keep-last 5 locally: {json}");
    let mut files: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "README.txt".to_string(),
            newest.clone(),
            format!("{newest}.sha256")
        ]
    );
    assert_eq!(backups(&env).len(), 3);
    env.compose_v2(["down"]).assert_success();
}
