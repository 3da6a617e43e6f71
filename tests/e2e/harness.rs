//! The harness itself: the local test image behaves like a service, Compose v1 and v2 bring a project up
//! with the volume names and labels the product relies on, and the guard leaves nothing behind, panics
//! included.
//!
//! Containers a test runs by hand use `--network none`, as the product's helpers do: they need no network,
//! and so they do not depend on the engine's default bridge.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::{
    COMPOSE_PROJECT_LABEL, COMPOSE_VOLUME_LABEL, PROJECT_LABEL, RUN_LABEL, Ran, TestEnv, docker,
    objects_labelled, run_id, test_images,
};

/// A database service with a volume known by its key and one with an explicit `name:`.
const DB_PROJECT: &str = r#"
services:
  db:
    image: postgres:16
    volumes:
      - dbdata:/var/lib/postgresql/data
      - named:/named
volumes:
  dbdata:
    labels:
      persist.test.run: "{{RUN}}"
  named:
    name: "{{PROJECT}}-custom"
    labels:
      persist.test.run: "{{RUN}}"
"#;

/// The one container of the project: its id, after checking there is exactly one and it runs.
#[track_caller]
fn running_container(env: &TestEnv) -> String {
    let ps = env.docker([
        "ps",
        "--all",
        "--quiet",
        "--no-trunc",
        "--filter",
        &format!("label={COMPOSE_PROJECT_LABEL}={}", env.project),
    ]);
    ps.assert_success();
    let ids = ps.stdout_lines();
    assert_eq!(ids.len(), 1, "expected one container\n{ps}");
    let state = env.docker(["inspect", "--format", "{{.State.Running}}", &ids[0]]);
    assert_eq!(
        state.stdout().trim(),
        "true",
        "the container is not running\n{state}"
    );
    ids[0].clone()
}

/// Checks what `up -d` of [`DB_PROJECT`] made; `named_volume_label` is what Compose put in
/// `com.docker.compose.volume` on the volume with an explicit `name:`.
#[track_caller]
fn assert_db_project_volumes(env: &TestEnv, named_volume_label: &str, container_name: &str) {
    let p = &env.project;
    let keyed = format!("{p}_dbdata");
    let named = format!("{p}-custom");
    assert_eq!(
        env.compose_volumes(),
        [named.clone(), keyed.clone()],
        "volumes labelled {COMPOSE_PROJECT_LABEL}={p}"
    );

    let labels = env.volume_labels(&keyed).expect("the keyed volume exists");
    assert_eq!(labels.get(COMPOSE_PROJECT_LABEL), Some(p), "{labels:?}");
    assert_eq!(
        labels.get(COMPOSE_VOLUME_LABEL).map(String::as_str),
        Some("dbdata"),
        "{labels:?}"
    );
    assert_eq!(
        labels.get(RUN_LABEL).map(String::as_str),
        Some(env.run),
        "{labels:?}"
    );

    let labels = env.volume_labels(&named).expect("the named volume exists");
    assert_eq!(labels.get(COMPOSE_PROJECT_LABEL), Some(p), "{labels:?}");
    assert_eq!(
        labels.get(COMPOSE_VOLUME_LABEL).map(String::as_str),
        Some(named_volume_label),
        "{labels:?}"
    );
    assert_eq!(
        labels.get(RUN_LABEL).map(String::as_str),
        Some(env.run),
        "{labels:?}"
    );

    let id = running_container(env);
    let name = env.docker(["inspect", "--format", "{{.Name}}", &id]);
    assert_eq!(
        name.stdout().trim(),
        format!("/{container_name}"),
        "\n{name}"
    );
    let mounts = env.docker([
        "inspect",
        "--format",
        "{{range .Mounts}}{{.Name}}:{{.Destination}}\n{{end}}",
        &id,
    ]);
    let mounts: BTreeSet<String> = mounts.stdout_lines().into_iter().collect();
    let expected: BTreeSet<String> = [
        format!("{keyed}:/var/lib/postgresql/data"),
        format!("{named}:/named"),
    ]
    .into();
    assert_eq!(mounts, expected);

    // The volume holds what the service writes.
    env.docker([
        "exec",
        &id,
        "sh",
        "-c",
        "echo kept > /var/lib/postgresql/data/f",
    ])
    .assert_success();
    let ran = env.docker([
        "run",
        "--rm",
        "--network",
        "none",
        "--label",
        &format!("{PROJECT_LABEL}={p}"),
        "-v",
        &format!("{keyed}:/v:ro"),
        "busybox:latest",
        "cat",
        "/v/f",
    ]);
    ran.assert_success();
    assert_eq!(ran.stdout(), "kept\n");
}

#[test]
fn compose_v1_labels_a_named_volume_with_its_engine_name() {
    let env = TestEnv::new();
    env.write_project(DB_PROJECT, None);
    env.compose_v1(["up", "-d"]).assert_success();
    assert_db_project_volumes(
        &env,
        &format!("{}-custom", env.project),
        &format!("{}_db_1", env.project),
    );
}

#[test]
fn compose_v2_labels_a_named_volume_with_its_key() {
    let env = TestEnv::new();
    env.write_project(DB_PROJECT, None);
    env.compose_v2(["up", "-d"]).assert_success();
    assert_db_project_volumes(&env, "named", &format!("{}-db-1", env.project));
}

/// A service with a keyed volume and an anonymous one; `{{GEN}}` changes its config to force a recreate.
const ANON_PROJECT: &str = r#"
services:
  db:
    image: postgres:16
    environment: {GENERATION: "{{GEN}}"}
    volumes:
      - dbdata:/var/lib/postgresql/data
      - /anon
volumes:
  dbdata:
    labels: {persist.test.run: "{{RUN}}"}
"#;

/// The id of the project's container and the name of the volume mounted at /anon.
#[track_caller]
fn anonymous_volume(env: &TestEnv) -> (String, String) {
    let id = running_container(env);
    let ran = env.docker([
        "inspect",
        "--format",
        r#"{{range .Mounts}}{{if eq .Destination "/anon"}}{{.Name}}{{end}}{{end}}"#,
        &id,
    ]);
    ran.assert_success();
    let volume = ran.stdout().trim().to_owned();
    assert!(!volume.is_empty(), "no volume at /anon\n{ran}");
    (id, volume)
}

/// Compose (v1 and v2) leaves no label on anonymous volumes; `down -v` removes them, except after the
/// container was recreated: the new container gets the old anonymous volume by name, the engine then takes
/// it for a named mount, and `down -v` leaves it behind. The product's `check` and `down` must know this.
fn assert_anonymous_volume_lifecycle(compose: fn(&TestEnv, &[&str]) -> Ran) {
    // Without a recreate: `down -v` removes the anonymous volume.
    let env = TestEnv::new();
    env.write_project(&ANON_PROJECT.replace("{{GEN}}", "1"), None);
    compose(&env, &["up", "-d"]).assert_success();
    let (_, anon) = anonymous_volume(&env);
    env.track_volume(&anon);
    assert_eq!(env.volume_labels(&anon), Some(Default::default()), "{anon}");
    compose(&env, &["down", "-v"]).assert_success();
    assert_eq!(env.volume_labels(&anon), None, "{anon} survived `down -v`");
    assert_eq!(env.compose_volumes(), Vec::<String>::new());
    drop(env);

    // With a recreate: the anonymous volume follows the container and survives `down -v`.
    let env = TestEnv::new();
    env.write_project(&ANON_PROJECT.replace("{{GEN}}", "1"), None);
    compose(&env, &["up", "-d"]).assert_success();
    let (first, anon) = anonymous_volume(&env);
    env.track_volume(&anon);
    env.write_project(&ANON_PROJECT.replace("{{GEN}}", "2"), None);
    compose(&env, &["up", "-d"]).assert_success();
    let (second, anon_after) = anonymous_volume(&env);
    assert_ne!(first, second, "the container was not recreated");
    assert_eq!(
        anon, anon_after,
        "the recreated container has a new anonymous volume"
    );
    compose(&env, &["down", "-v"]).assert_success();
    assert_eq!(env.compose_volumes(), Vec::<String>::new());
    assert_eq!(
        env.volume_labels(&anon),
        Some(Default::default()),
        "{anon} was removed by `down -v` after a recreate"
    );
}

#[test]
fn compose_v1_down_v_leaves_the_anonymous_volume_of_a_recreated_container() {
    assert_anonymous_volume_lifecycle(|env, args| env.compose_v1(args));
}

#[test]
fn compose_v2_down_v_leaves_the_anonymous_volume_of_a_recreated_container() {
    assert_anonymous_volume_lifecycle(|env, args| env.compose_v2(args));
}

#[test]
fn compose_v2_reads_the_env_file_of_the_project() {
    let env = TestEnv::new();
    env.write_project(
        r#"
services:
  cache:
    image: "redis:${REDIS_TAG}"
    volumes: [cache:/data]
volumes:
  cache:
    labels: {persist.test.run: "{{RUN}}"}
"#,
        Some("REDIS_TAG=7\n"),
    );
    env.compose_v2(["up", "-d"]).assert_success();
    let id = running_container(&env);
    let image = env.docker(["inspect", "--format", "{{.Config.Image}}", &id]);
    assert_eq!(image.stdout().trim(), "redis:7", "\n{image}");
    assert_eq!(env.compose_volumes(), [format!("{}_cache", env.project)]);
}

#[test]
fn test_images_are_the_local_busybox_image_and_stop_at_once() {
    let env = TestEnv::new();
    let label = format!("{PROJECT_LABEL}={}", env.project);
    for image in test_images() {
        let ran = env.docker([
            "run",
            "--rm",
            "--network",
            "none",
            "--label",
            &label,
            image,
            "id",
            "-u",
            "postgres",
        ]);
        ran.assert_success();
        assert_eq!(ran.stdout().trim(), "999", "{image}\n{ran}");
    }
    // Their default command is a service that runs until stopped, and stops at once on SIGTERM, so that
    // `docker stop` and `compose down` do not wait 10 s for SIGKILL.
    let run = env.docker([
        "run",
        "--detach",
        "--network",
        "none",
        "--label",
        &label,
        "postgres:16",
    ]);
    run.assert_success();
    let id = run.stdout().trim().to_owned();
    // The script handles SIGTERM once its trap is set, which is before it starts `sleep`: wait for that
    // (on a loaded machine a stop sent at once could still find no handler, and PID 1 ignores it).
    let ready = Instant::now();
    while !env.docker(["top", &id]).stdout().contains("sleep") {
        assert!(
            ready.elapsed() < Duration::from_secs(20),
            "the idle service did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    env.docker(["stop", &id]).assert_success();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "docker stop took {:?}",
        started.elapsed()
    );
    let code = env.docker(["inspect", "--format", "{{.State.ExitCode}}", &id]);
    assert_eq!(code.stdout().trim(), "0", "\n{code}");
}

#[test]
fn project_names_are_unique_and_carry_the_run_id() {
    let a = TestEnv::new();
    let b = TestEnv::new();
    assert_ne!(a.project, b.project);
    for env in [&a, &b] {
        let rest = env
            .project
            .strip_prefix(&format!("dp-{}-", run_id()))
            .unwrap_or_else(|| panic!("{} does not start with dp-<run>-", env.project));
        assert!(rest.parse::<u32>().is_ok(), "{}", env.project);
        // Compose's rule for project names: lowercase letters, digits, `-` and `_`.
        assert!(
            env.project
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'),
            "{}",
            env.project
        );
        // The project directory is named after the project, so commands without `-p` agree with `-p`.
        assert_eq!(
            env.project_dir.file_name().and_then(|n| n.to_str()),
            Some(env.project.as_str())
        );
    }
    assert_eq!(
        a.render("{{PROJECT}} {{RUN}}"),
        format!("{} {}", a.project, run_id())
    );
}

/// Asserts that no container, volume or network of `project` (or made by hand for it) is left.
#[track_caller]
fn assert_nothing_left(project: &str, run: &str) {
    for label in [
        format!("{COMPOSE_PROJECT_LABEL}={project}"),
        format!("{PROJECT_LABEL}={project}"),
    ] {
        let left = objects_labelled(&label);
        assert!(left.is_empty(), "left behind with {label}: {left:?}");
    }
    let ran = docker([
        "volume",
        "ls",
        "--quiet",
        "--filter",
        &format!("label={RUN_LABEL}={run}"),
        "--filter",
        &format!("label={COMPOSE_PROJECT_LABEL}={project}"),
    ]);
    ran.assert_success();
    assert_eq!(ran.stdout().trim(), "", "\n{ran}");
}

#[test]
fn guard_removes_the_objects_of_a_test_when_it_ends() {
    let (project, external) = {
        let env = TestEnv::new();
        env.write_project(DB_PROJECT, None);
        env.compose_v2(["up", "-d"]).assert_success();
        let external = format!("{}-external", env.project);
        env.volume_create(&external);
        // A stopped container keeps its volumes in use; the guard must remove it first.
        env.compose_v2(["stop"]).assert_success();
        let made = objects_labelled(&format!("{COMPOSE_PROJECT_LABEL}={}", env.project));
        assert_eq!(
            made.iter().filter(|o| o.starts_with("volume ")).count(),
            2,
            "{made:?}"
        );
        assert!(made.iter().any(|o| o.starts_with("container ")), "{made:?}");
        assert!(made.iter().any(|o| o.starts_with("network ")), "{made:?}");
        assert!(env.volume_labels(&external).is_some());
        (env.project.clone(), external)
    };
    assert_nothing_left(&project, run_id());
    docker(["volume", "inspect", &external]).assert_failure();
}

#[test]
fn guard_removes_the_objects_of_a_test_that_panics() {
    let made: Mutex<Option<String>> = Mutex::new(None);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let env = TestEnv::new();
        env.write_project(DB_PROJECT, None);
        env.compose_v1(["up", "-d"]).assert_success();
        assert_eq!(env.compose_volumes().len(), 2);
        *made.lock().unwrap_or_else(|e| e.into_inner()) = Some(env.project.clone());
        panic!("deliberate panic: the guard must clean up all the same");
    }));
    assert!(result.is_err(), "the closure was meant to panic");
    let project = made
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .expect("the project came up before the panic");
    assert_nothing_left(&project, run_id());
}
