//! The plugin seen through the Docker CLI: discovery, metadata, help.

use crate::support::{TestEnv, repo_root};

fn metadata_file() -> serde_json::Value {
    let path = repo_root().join("plugin-metadata");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

#[test]
fn metadata_printed_by_the_binary_equals_the_plugin_metadata_file() {
    let env = TestEnv::new();
    let ran = env.plugin(["docker-cli-plugin-metadata"]);
    ran.assert_success();
    assert_eq!(ran.json(), metadata_file(), "\n{ran}");
}

#[test]
fn docker_help_lists_persist_with_its_short_description() {
    let env = TestEnv::new();
    let description = metadata_file()["ShortDescription"]
        .as_str()
        .expect("ShortDescription is a string")
        .to_owned();
    let ran = env.docker(["--help"]);
    ran.assert_success();
    // The CLI lists a plugin as `  persist*   <ShortDescription> (<Vendor>)`; a plugin whose metadata it
    // cannot read goes under "Invalid Plugins" with the error instead.
    let listed = ran.stdout().lines().any(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|word| word.trim_end_matches('*') == "persist")
            && line.contains(&description)
    });
    assert!(
        listed,
        "`docker --help` does not list `persist` with {description:?}\n{ran}"
    );
}

#[test]
fn persist_help_exits_zero_and_mentions_ls() {
    let env = TestEnv::new();
    let ran = env.persist(["--help"]);
    ran.assert_success();
    // `ls` as a listed subcommand (`  ls  <about>`), not as part of another word.
    let lists_ls = ran
        .stdout()
        .lines()
        .any(|line| line.split_whitespace().next() == Some("ls"));
    assert!(
        lists_ls,
        "`docker persist --help` does not list `ls`\n{ran}"
    );
}
