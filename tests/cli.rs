//! CLI snapshot tests: help texts, the rules table, usage errors and the plugin protocol. These run the
//! binary with a fixed environment (no colour, fixed width, temp HOME and DOCKER_CONFIG).

#![allow(clippy::unwrap_used)]

use std::path::Path;

use assert_cmd::Command;

fn persist(home: &Path) -> Command {
    let mut cmd = Command::cargo_bin("docker-persist").expect("binary is built");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .current_dir(home);
    cmd
}

fn run(args: &[&str]) -> (i32, String, String) {
    let home = tempfile::tempdir().unwrap();
    let out = persist(home.path()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(stdout);
}

#[test]
fn help_as_a_docker_plugin() {
    // The Docker CLI passes its own argv: global flags, then `persist`.
    let (code, stdout, _) = run(&["-H", "unix:///nowhere.sock", "persist", "--help"]);
    assert_eq!(code, 0);
    assert_eq!(stdout, run(&["--help"]).1);
}

#[test]
fn ls_help() {
    let (code, stdout, _) = run(&["ls", "--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(stdout);
}

#[test]
fn down_help() {
    let (code, stdout, _) = run(&["down", "--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(stdout);
}

#[test]
fn backup_help() {
    let (code, stdout, _) = run(&["backup", "--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(stdout);
}

#[test]
fn status_help() {
    let (code, stdout, _) = run(&["status", "--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(stdout);
}

#[test]
fn schedule_help() {
    let (code, stdout, _) = run(&["schedule", "--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(stdout);
}

#[test]
fn schedule_set_help() {
    let (code, stdout, _) = run(&["schedule", "set", "--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(stdout);
}

#[test]
fn notify_test_help() {
    let (code, stdout, _) = run(&["notify", "test", "--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(stdout);
}

#[test]
fn schedule_set_needs_exactly_one_calendar() {
    let (code, _, stderr) = run(&["schedule", "set"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = run(&["schedule", "set", "--daily", "03:00", "--hourly"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[test]
fn clean_help() {
    let (code, stdout, _) = run(&["clean", "--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(stdout);
}

#[test]
fn shell_init_prints_functions_bash_parses() {
    let (code, stdout, _) = run(&["shell-init", "bash"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("docker() {") && stdout.contains("docker-compose() {"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("guard.sh");
    std::fs::write(&file, &stdout).unwrap();
    let status = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success(), "bash cannot parse the guard:\n{stdout}");
    let (code, fish, _) = run(&["shell-init", "fish"]);
    assert_eq!(code, 0);
    assert!(fish.contains("function docker --wraps docker"));
}

#[test]
fn inspect_help() {
    let (code, stdout, _) = run(&["inspect", "--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(stdout);
}

#[test]
fn migrate_help() {
    let (code, stdout, _) = run(&["migrate", "--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(stdout);
}

#[test]
fn upgrade_help() {
    let (code, stdout, _) = run(&["upgrade", "--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(stdout);
}

#[test]
fn rules() {
    let (code, stdout, _) = run(&["rules"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(stdout);
}

#[test]
fn rules_json_lists_every_rule_with_a_tier() {
    let (code, stdout, _) = run(&["rules", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["schema_version"], 1);
    let rules = v["rules"].as_array().unwrap();
    assert_eq!(rules.len(), docker_persist::compose::classify::RULES.len());
    assert_eq!(rules[0]["id"], "host-system");
    assert!(
        rules
            .iter()
            .all(|r| r["tier"].is_string() && r["reason"].is_string())
    );
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let (code, stdout, stderr) = run(&["ls", "--bogus"]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    insta::assert_snapshot!(stderr);
}

#[test]
fn invalid_tier_is_a_usage_error() {
    let (code, _, stderr) = run(&["ls", "--tier", "precious"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("`precious` is not a tier"), "{stderr}");
}

#[test]
fn docker_flag_without_value_is_a_usage_error() {
    let (code, _, stderr) = run(&["-H"]);
    assert_eq!(code, 2);
    assert_eq!(stderr, "error: flag `-H` needs an argument\n");
}

#[test]
fn metadata_is_the_plugin_metadata_file() {
    let (code, stdout, _) = run(&["docker-cli-plugin-metadata"]);
    assert_eq!(code, 0);
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/plugin-metadata")).unwrap();
    assert_eq!(stdout.trim_end(), file.trim_end());
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["SchemaVersion"], "0.1.0");
    assert_eq!(v["Version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn readme_shows_the_rules_table_of_the_code() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = docker_persist::compose::classify::rules_markdown();
    assert!(
        readme.contains(&table),
        "README.md's tier rules table is out of date; replace it with:\n{table}"
    );
}

#[test]
fn prune_help() {
    let (code, stdout, _) = run(&["prune", "--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(stdout);
}
