//! `upgrade`: a service moved to a new image with its data backed up first, and rolled back — data and
//! image — when the new version fails or the upgrade is interrupted.
//!
//! The versions are images made here from the local busybox test image with `docker commit` (each a new
//! image id): `v1` and `v2` run the idle process; `v2` writes a marker into the data first, so that a
//! rollback that did not restore the data would show; `bad` overwrites the data and exits with code 3, as a
//! server that cannot start on the old data does.

use std::time::{Duration, Instant};

use crate::backup::Running;
use crate::support::{Ran, TestEnv, docker, tree_digest, tree_listing_of_volume};

const PROJECT: &str = r#"
services:
  app:
    image: {{V1}}
    volumes:
      - appdata:/srv/app
volumes:
  appdata:
    labels:
      persist.test.run: "{{RUN}}"
    x-persist:
      tier: critical
"#;

/// Test images made with `docker commit`, removed when dropped.
pub(crate) struct Images {
    tags: Vec<String>,
}

impl Images {
    /// `name` from the busybox test image, with `cmd` as its command (a shell script) and a label of the
    /// run.
    pub(crate) fn commit(&mut self, env: &TestEnv, name: &str, cmd: &str) -> String {
        let tag = format!("persist-test-upgrade/{}:{name}", env.project);
        let created = docker([
            "create",
            "--label",
            &format!("persist.test.project={}", env.project),
            "busybox:latest",
            "true",
        ]);
        created.assert_success();
        let id = created.stdout().trim().to_string();
        let commit = docker([
            "commit",
            "--change",
            &format!(
                r#"CMD ["sh", "-c", {}]"#,
                serde_json::Value::String(cmd.to_string())
            ),
            "--change",
            &format!(
                "LABEL persist.test.run={} persist.test.version={name}",
                env.run
            ),
            &id,
            &tag,
        ]);
        docker(["rm", "-f", "-v", &id]).assert_success();
        commit.assert_success();
        self.tags.push(tag.clone());
        tag
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        for t in &self.tags {
            let _ = docker(["rmi", "-f", t]);
        }
    }
}

pub(crate) fn image_id(tag: &str) -> String {
    let ran = docker(["image", "inspect", "--format", "{{.Id}}", tag]);
    ran.assert_success();
    ran.stdout().trim().to_string()
}

/// The image id the container of `app` runs, and whether it runs.
pub(crate) fn running_image(env: &TestEnv) -> (String, String) {
    let c = env.service_container("app");
    let ran = env.docker(["inspect", "--format", "{{.Image}} {{.State.Status}}", &c]);
    ran.assert_success();
    let out = ran.stdout();
    let mut parts = out.split_whitespace();
    (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    )
}

/// A project running `v1` with data in `appdata`; returns the images and the data's digest.
pub(crate) fn start(env: &TestEnv) -> (Images, String, String) {
    let mut images = Images { tags: Vec::new() };
    let v1 = images.commit(env, "v1", "exec /bin/persist-test-idle");
    env.write_project(&PROJECT.replace("{{V1}}", &v1), None);
    env.compose_v2(["up", "-d"]).assert_success();
    let c = env.service_container("app");
    env.docker([
        "exec",
        &c,
        "sh",
        "-c",
        "mkdir -p /srv/app/db && echo 'rows of v1' > /srv/app/db/table && ln -s db/table /srv/app/link && chown -R 999:999 /srv/app/db",
    ])
    .assert_success();
    let digest = tree_digest(&tree_listing_of_volume(env, &volume(env)));
    (images, v1, digest)
}

pub(crate) fn volume(env: &TestEnv) -> String {
    format!("{}_appdata", env.project)
}

fn pre_upgrade_backups(env: &TestEnv) -> Vec<String> {
    std::fs::read_dir(env.project_dir.join("backups"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with("-pre-upgrade.tar"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn upgrade_to_a_healthy_image_keeps_the_data_and_pins_the_new_image_in_the_override() {
    let env = TestEnv::new();
    let (mut images, v1, digest) = start(&env);
    let v2 = images.commit(&env, "v2", "exec /bin/persist-test-idle");

    let dry = env.persist(["upgrade", "app", "--image", &v2, "--dry-run"]);
    dry.assert_success();
    dry.assert_stdout_contains(&format!("{v1} ("));
    dry.assert_stdout_contains(&format!("{v2} ("));
    dry.assert_stderr_contains("Would back up `appdata` (critical");
    assert_eq!(running_image(&env).0, image_id(&v1));
    assert!(!env.project_dir.join("compose.override.yaml").exists());
    let json = env.persist(["upgrade", "app", "--image", &v2, "--dry-run", "--json"]);
    json.assert_success();
    let doc = json.json();
    assert_eq!(doc["result"], "planned", "{json}");
    assert_eq!(doc["services"][0]["service"], "app", "{json}");
    assert_eq!(
        doc["services"][0]["from_id"],
        image_id(&v1).as_str(),
        "{json}"
    );
    assert_eq!(doc["services"][0]["to_image"], v2.as_str(), "{json}");
    assert_eq!(doc["services"][0]["pull"], false, "{json}");

    let refused = env.persist(["upgrade", "app", "--image", &v2]);
    refused.assert_code(3);
    assert_eq!(running_image(&env).0, image_id(&v1));

    let ran = env.persist(["upgrade", "app", "--image", &v2, "--yes", "--settle", "2s"]);
    ran.assert_success();
    ran.assert_stderr_contains("Backed up and verified 1 volume");
    ran.assert_stderr_contains(&format!("Upgraded `app`: `{v1}`"));
    assert_eq!(running_image(&env), (image_id(&v2), "running".to_string()));
    assert_eq!(
        tree_digest(&tree_listing_of_volume(&env, &volume(&env))),
        digest
    );
    assert_eq!(pre_upgrade_backups(&env).len(), 1);
    let text = std::fs::read_to_string(env.project_dir.join("compose.override.yaml")).unwrap();
    assert!(text.contains(&format!("image: \"{v2}\"")), "{text}");
    // Compose itself sees the new image from now on.
    let config = env.compose_v2(["config", "--format", "json"]);
    config.assert_success();
    assert_eq!(config.json()["services"]["app"]["image"], v2.as_str());

    // Once it runs the new image, there is nothing left to do.
    let again = env.persist(["upgrade", "app", "--yes"]);
    again.assert_success();
    again.assert_stderr_contains("nothing to upgrade");
    assert_eq!(pre_upgrade_backups(&env).len(), 1);
}

/// Asserts what a rollback leaves: `v1` running again, the data as it was, the previous image pinned.
#[track_caller]
fn assert_rolled_back(env: &TestEnv, v1: &str, digest: &str, ran: &str) {
    assert_eq!(
        running_image(env),
        (image_id(v1), "running".to_string()),
        "{ran}"
    );
    assert_eq!(
        tree_digest(&tree_listing_of_volume(env, &volume(env))),
        digest,
        "the data differs from before the upgrade\n{ran}"
    );
    let text = std::fs::read_to_string(env.project_dir.join("compose.override.yaml")).unwrap();
    assert!(
        text.contains(&format!("image: \"{}\"", image_id(v1))),
        "{text}"
    );
    assert_eq!(pre_upgrade_backups(env).len(), 1, "{ran}");
}

#[test]
fn a_new_image_that_exits_is_rolled_back_with_the_data_and_the_previous_image() {
    let env = TestEnv::new();
    let (mut images, v1, digest) = start(&env);
    let bad = images.commit(
        &env,
        "bad",
        "echo 'rows rewritten by bad' > /srv/app/db/table; echo 'FATAL: database files are incompatible with server' >&2; exit 3",
    );
    let ran = env.persist(["upgrade", "app", "--image", &bad, "--yes", "--settle", "3s"]);
    ran.assert_code(1);
    ran.assert_stderr_contains("exited with code 3");
    ran.assert_stderr_contains("FATAL: database files are incompatible with server");
    ran.assert_stderr_contains(&format!("Rolled back: `app` runs `{v1}`"));
    ran.assert_stderr_contains("failed (");
    assert_rolled_back(&env, &v1, &digest, &ran.to_string());
}

#[test]
fn a_new_image_that_keeps_restarting_is_rolled_back() {
    let env = TestEnv::new();
    let (mut images, v1, digest) = start(&env);
    let bad = images.commit(&env, "crashloop", "sleep 1; exit 1");
    env.write_file(
        "compose.yaml",
        &PROJECT.replace("{{V1}}", &v1).replace(
            "    volumes:\n      - appdata",
            "    restart: always\n    volumes:\n      - appdata",
        ),
    );
    env.compose_v2(["up", "-d"]).assert_success();
    let ran = env.persist(["upgrade", "app", "--image", &bad, "--yes", "--settle", "5s"]);
    ran.assert_code(1);
    assert!(
        ran.stderr().contains("keeps restarting") || ran.stderr().contains("exited with code 1"),
        "{ran}"
    );
    assert_rolled_back(&env, &v1, &digest, &ran.to_string());
}

#[test]
fn an_upgrade_interrupted_while_the_new_version_starts_is_rolled_back() {
    let env = TestEnv::new();
    let (mut images, v1, digest) = start(&env);
    let v2 = images.commit(
        &env,
        "v2",
        "echo 'migrated by v2' > /srv/app/db/table; exec /bin/persist-test-idle",
    );
    let mut upgrade = Running::start(
        &env,
        "upgrade",
        &[
            "upgrade", "app", "--image", &v2, "--yes", "--settle", "120s",
        ],
    );
    let started = Instant::now();
    while !upgrade.stderr().contains("to be healthy") {
        assert!(
            upgrade.is_running() && started.elapsed() < Duration::from_secs(120),
            "the upgrade did not reach the health check\n{}",
            upgrade.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The new version runs (and has changed the data) when the user interrupts.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(running_image(&env).0, image_id(&v2), "{}", upgrade.output());
    upgrade.signal("INT");
    let status = upgrade.wait(Duration::from_secs(180));
    let output = upgrade.output();
    assert_eq!(status.code(), Some(130), "{output}");
    assert!(output.contains("rolling back"), "{output}");
    assert_rolled_back(&env, &v1, &digest, &output);
}

#[test]
fn upgrade_refuses_an_image_for_several_services_and_unknown_services() {
    let env = TestEnv::new();
    let (_images, _v1, _digest) = start(&env);
    let ran: Ran = env.persist(["upgrade", "nope", "--yes"]);
    ran.assert_code(2);
    ran.assert_stderr_contains("has no service `nope`");
    let missing = env.persist([
        "upgrade",
        "app",
        "--image",
        "persist-test-upgrade/none:1",
        "--yes",
    ]);
    missing.assert_code(1);
    missing.assert_stderr_contains("nothing was changed");
    assert!(!env.project_dir.join("compose.override.yaml").exists());
    assert!(pre_upgrade_backups(&env).is_empty());
}
