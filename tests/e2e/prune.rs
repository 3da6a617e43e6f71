//! `prune` and `backup --prune` against a real engine: the floor keeps a critical volume's only verified
//! backup whatever the policy, `check`'s protecting backup survives, and `backup --prune` prunes only after
//! a backup that succeeded; against a real S3 server (`moto_server`) and a real `sshd`, `prune --from` a
//! bucket and `backup --to … --prune` remove exactly the old backups and their `.sha256` files, by each
//! destination's own `retention:`, and leave foreign files alone.

use std::path::{Path, PathBuf};

use crate::destinations::{KEY_ID, S3Server, SECRET, SshServer, persist_s3, persist_ssh};
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

/// Every file name in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    files
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

/// A running project with an SFTP destination `vault` on a `sshd` of its own: `project` and `vault` are
/// added to the `x-persist` and `vault` entries. Returns the project, the ssh command line, the directory
/// the destination writes to, and the server with its directory (dropped last).
fn vault_up(
    project: &str,
    vault: &str,
) -> (TestEnv, String, PathBuf, (SshServer, tempfile::TempDir)) {
    vault_up_with(project, vault, SshServer::start())
}

/// [`vault_up`] on the server `sshd`.
fn vault_up_with(
    project: &str,
    vault: &str,
    sshd: SshServer,
) -> (TestEnv, String, PathBuf, (SshServer, tempfile::TempDir)) {
    let remote = tempfile::tempdir().unwrap();
    let target = remote.path().join("persist/app");
    let ssh = sshd.ssh_command(&sshd.dir.path().join("known_hosts"));
    let env = TestEnv::new();
    env.write_project(
        &format!(
            "{PROJECT}x-persist:\n{project}  destinations:\n    vault:\n      url: {}\n{vault}",
            sshd.url(&target)
        ),
        None,
    );
    env.compose_v2(["up", "-d"]).assert_success();
    (env, ssh, target, (sshd, remote))
}

#[test]
fn backup_prune_to_an_sftp_destination_prunes_it_by_its_retention() {
    let (env, ssh, target, _servers) = vault_up(
        "  retention: {keep-last: 5}\n",
        "      retention: {keep-last: 1}\n",
    );
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
    let files = files_in(&target);
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

/// The decision on the backup named `file` in a prune's `--json`.
fn decision_of(json: &serde_json::Value, file: &str) -> serde_json::Value {
    json["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["path"].as_str().unwrap().ends_with(&format!("/{file}")))
        .unwrap_or_else(|| panic!("{file} not in {json}"))
        .clone()
}

/// A moto server with the bucket `offsite`, the project running, and the URL of `s3://offsite/app` there.
fn bucket_up() -> (S3Server, TestEnv, String) {
    let s3 = S3Server::start();
    s3.create_bucket("offsite");
    let env = TestEnv::new();
    env.write_project(PROJECT, None);
    env.compose_v2(["up", "-d"]).assert_success();
    let url = format!(
        "s3://offsite/app?endpoint={}&region=us-east-1",
        s3.endpoint()
    );
    (s3, env, url)
}

#[test]
fn in_a_bucket_the_floor_keeps_the_newest_backup_verify_from_found_intact_there() {
    let (s3, env, url) = bucket_up();
    let mut sent = Vec::new();
    for what in ["one", "two", "three"] {
        write(&env, "db", "/var/lib/postgresql/data", what);
        let ran = persist_s3(&env, &["backup", "dbdata", "--to", &url, "--json"]);
        ran.assert_success();
        sent.push(name(Path::new(ran.json()["path"].as_str().unwrap())));
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let prune = [
        "prune",
        "--from",
        &url,
        "--keep-last",
        "1",
        "--yes",
        "--json",
    ];
    // Nothing verified there yet: the floor is the newest backup alone.
    let mut dry = prune.to_vec();
    dry.push("--dry-run");
    let ran = persist_s3(&env, &dry);
    ran.assert_success();
    let json = ran.json();
    assert_eq!(decision_of(&json, &sent[1])["decision"], "remove", "{json}");
    assert_eq!(decision_of(&json, &sent[1])["verified"], false, "{json}");

    // `verify --from` reads the middle one in the bucket and records it intact.
    persist_s3(&env, &["verify", "--from", &url, &sent[1]]).assert_success();
    let ran = persist_s3(&env, &prune);
    ran.assert_success();
    let json = ran.json();
    assert_eq!(
        decision_of(&json, &sent[2])["why"],
        "keep-last; floor: newest backup",
        "{json}"
    );
    let middle = decision_of(&json, &sent[1]);
    assert_eq!(
        middle["why"], "floor: newest verified backup of `dbdata`",
        "{json}"
    );
    assert_eq!(middle["verified"], true, "{json}");
    assert_eq!(
        middle["reasons"],
        serde_json::json!([{"kind": "floor-verified", "volumes": ["dbdata"]}]),
        "{json}"
    );
    let oldest = decision_of(&json, &sent[0]);
    assert_eq!(oldest["decision"], "remove", "{json}");
    assert_eq!(oldest["removed"], true, "{json}");
    assert_eq!(json["removed"], 1, "{json}");
    // The oldest went with its `.sha256`; the two kept have theirs.
    let mut keys = Vec::new();
    for n in &sent[1..] {
        keys.push(format!("app/{n}"));
        keys.push(format!("app/{n}.sha256"));
    }
    assert_eq!(s3.keys("offsite"), keys);
    env.compose_v2(["down"]).assert_success();
}

#[test]
fn a_backup_at_a_default_sftp_destination_that_protects_a_volume_for_check_survives_the_policy() {
    let (env, ssh, target, _servers) = vault_up("", "      default: true\n");
    write(&env, "db", "/var/lib/postgresql/data", "one");
    let take = |args: &[&str]| {
        let mut all = vec!["backup", "--json"];
        all.extend(args);
        let ran = persist_ssh(&env, &ssh, &all);
        ran.assert_success();
        assert_eq!(ran.json()["destinations"][0]["ok"], true, "{}", ran.json());
        std::thread::sleep(std::time::Duration::from_millis(1100));
        name(Path::new(ran.json()["path"].as_str().unwrap()))
    };
    // The database runs again after this one: it protects nothing.
    let stale = take(&["dbdata"]);
    env.compose_v2(["stop"]).assert_success();
    // Taken with the database stopped, and nothing ran since: it protects `dbdata` once verified there.
    let protecting = take(&["dbdata"]);
    let newest = take(&["--tier", "regenerable"]);
    // The machine keeps no copy: only the vault's backups can protect the data.
    for n in backups(&env) {
        std::fs::remove_file(env.project_dir.join("backups").join(n)).unwrap();
    }
    persist_ssh(&env, &ssh, &["verify", "--from", "vault", &protecting]).assert_success();
    let check = persist_ssh(&env, &ssh, &["check", "--json"]);
    check.assert_success();
    let protected_by = check.json()["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["key"] == "dbdata")
        .unwrap()["protected_by"]
        .clone();
    assert!(
        protected_by.as_str().unwrap().starts_with("sftp://")
            && protected_by.as_str().unwrap().ends_with(&protecting),
        "{protected_by}"
    );

    let ran = persist_ssh(
        &env,
        &ssh,
        &[
            "prune",
            "--from",
            "vault",
            "--keep-last",
            "1",
            "--yes",
            "--json",
        ],
    );
    ran.assert_success();
    let json = ran.json();
    assert_eq!(
        decision_of(&json, &newest)["why"],
        "keep-last; floor: newest backup",
        "{json}"
    );
    assert_eq!(
        decision_of(&json, &protecting)["why"],
        "floor: newest verified backup of `dbdata`; floor: protects `dbdata` for `check`",
        "{json}"
    );
    assert_eq!(decision_of(&json, &stale)["removed"], true, "{json}");
    let files = files_in(&target);
    let mut expected = vec![
        protecting.clone(),
        format!("{protecting}.sha256"),
        newest.clone(),
        format!("{newest}.sha256"),
    ];
    expected.sort();
    assert_eq!(files, expected);
    // `check` still finds the data protected.
    persist_ssh(&env, &ssh, &["check"]).assert_success();
}

/// What a bucket holds under `app/`, checked by the server: the backups, the `.sha256` objects, and every
/// problem (a `.sha256` whose backup is gone, a backup whose bytes are not `sha256`).
fn bucket_state(s3: &S3Server, sha256: &str) -> serde_json::Value {
    let out = s3.boto(
        "offsite",
        &format!(
            r#"import hashlib, json
keys = []
for page in s3.get_paginator('list_objects_v2').paginate(Bucket=B, Prefix='app/'):
    keys += [o['Key'] for o in page.get('Contents', [])]
tars = sorted(k for k in keys if k.endswith('.tar'))
digests = sorted(k for k in keys if k.endswith('.sha256'))
bad = [d for d in digests if d[:-len('.sha256')] not in tars]
for k in tars:
    if hashlib.sha256(s3.get_object(Bucket=B, Key=k)['Body'].read()).hexdigest() != {sha256:?}:
        bad.append(k)
print(json.dumps({{'tars': tars, 'digests': digests, 'bad': bad}}))"#
        ),
    );
    serde_json::from_str(out.trim()).unwrap()
}

#[test]
fn ctrl_c_mid_prune_of_a_bucket_leaves_whole_backups_and_no_digest_without_its_backup() {
    use sha2::Digest as _;
    let (s3, env, url) = bucket_up();
    write(&env, "web", "/app/node_modules", "x");
    let one = backup(&env, &["--tier", "regenerable"]);
    let sha256 = hex::encode(sha2::Sha256::digest(std::fs::read(&one).unwrap()));
    let total = 300;
    // Ctrl-C lands mid-prune on most tries; a prune that finished first is tried again.
    for attempt in 0..3 {
        // The same backup under the names of 300 hours (the listing takes times from manifests, so
        // they tie and go in name order), each with its `.sha256` as `backup --to` stores it.
        s3.boto(
            "offsite",
            &format!(
                r#"import datetime
body = open({path:?}, 'rb').read()
for i in range({total}):
    t = datetime.datetime(2026, 1, 1) + datetime.timedelta(hours=i)
    name = '{project}-' + t.strftime('%Y%m%dT%H%M%SZ') + '.tar'
    s3.put_object(Bucket=B, Key='app/' + name, Body=body)
    s3.put_object(Bucket=B, Key='app/' + name + '.sha256', Body=('{sha256}  ' + name + '\n').encode())"#,
                path = one.display().to_string(),
                project = env.project,
            ),
        );
        let all: Vec<String> = bucket_state(&s3, &sha256)["tars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        assert_eq!(all.len(), total);
        let mut cmd = env.command("docker");
        cmd.env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .args([
                "persist",
                "prune",
                "--from",
                &url,
                "--keep-last",
                "1",
                "--yes",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        // Interrupt as soon as the first backup is gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while s3.keys("offsite").len() == 2 * total && child.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "prune removed nothing"
            );
        }
        std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let state = bucket_state(&s3, &sha256);
        assert_eq!(state["bad"], serde_json::json!([]), "{state}\n{err}");
        let left: Vec<String> = state["tars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        if out.status.code() == Some(0) {
            assert_eq!(left, [all[total - 1].clone()], "{err}");
            continue;
        }
        assert_eq!(out.status.code(), Some(130), "{err}");
        assert!(left.len() > 1 && left.len() < total, "{}", left.len());
        // Oldest first: the newest are left. At most the one being removed lacks its `.sha256`.
        assert_eq!(left, all[total - left.len()..], "{err}");
        let digests = state["digests"].as_array().unwrap().len();
        assert!(digests + 1 >= left.len(), "{state}");
        eprintln!(
            "bucket prune interrupted on try {}: {} of {total} backups left, {digests} digests",
            attempt + 1,
            left.len()
        );
        // A second prune finishes the job.
        persist_s3(
            &env,
            &["prune", "--from", &url, "--keep-last", "1", "--yes"],
        )
        .assert_success();
        assert_eq!(
            s3.keys("offsite"),
            [all[total - 1].clone(), format!("{}.sha256", all[total - 1])]
        );
        env.compose_v2(["down"]).assert_success();
        return;
    }
    panic!("every prune finished before Ctrl-C reached it");
}

#[test]
fn backup_prune_reports_a_destination_that_refuses_its_listing_and_still_prunes_the_others() {
    // The server stores files but refuses to list a directory: the backup reaches it, its prune fails.
    let (env, ssh, target, _servers) = vault_up_with(
        "  retention: {keep-last: 1}\n",
        "      retention: {keep-last: 1}\n",
        SshServer::start_with("internal-sftp -P opendir"),
    );
    write(&env, "web", "/app/node_modules", "x");
    let args = ["backup", "--tier", "regenerable", "--to", "vault", "--json"];
    for _ in 0..2 {
        persist_ssh(&env, &ssh, &args).assert_success();
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let mut with_prune = args.to_vec();
    with_prune.push("--prune");
    let ran = persist_ssh(&env, &ssh, &with_prune);
    // The backup asked for succeeded and is complete everywhere: the command succeeds (see the README).
    ran.assert_success();
    ran.assert_stderr_contains("could not prune `vault`");
    let json = ran.json();
    let newest = name(Path::new(json["path"].as_str().unwrap()));
    let places = json["prune"]["destinations"].as_array().unwrap();
    assert_eq!(places[0]["name"], "local", "{json}");
    assert_eq!(places[0]["outcome"], "pruned", "{json}");
    assert_eq!(places[0]["result"]["removed"], 2, "{json}");
    assert_eq!(places[1]["name"], "vault", "{json}");
    assert_eq!(places[1]["outcome"], "failed", "{json}");
    assert!(
        places[1]["error"]
            .as_str()
            .unwrap()
            .contains("failed to list the backups"),
        "{json}"
    );
    assert!(places[1].get("result").is_none(), "{json}");
    assert_eq!(backups(&env), [newest]);
    // Nothing was removed there: three backups and their `.sha256`.
    assert_eq!(files_in(&target).len(), 6, "{:?}", files_in(&target));
    env.compose_v2(["down"]).assert_success();
}
