//! The harness of the end-to-end tests. They run the real `docker` CLI, the real Compose v1 and v2 and the
//! built plugin against a real engine, so each test works in a sandbox of its own: a [`TestEnv`] with a
//! unique project name, a temp `HOME` and `DOCKER_CONFIG` (holding only our plugin and Compose v2), and a
//! guard that removes every engine object of the test when the `TestEnv` is dropped, panics included.
//!
//! Labels tie engine objects to tests:
//! - `com.docker.compose.project=<project>`: whatever Compose makes for the test's project;
//! - `persist.test.project=<project>`: what a test makes by hand (see [`TestEnv::volume_create`]);
//! - `persist.test.run=<run id>`: everything a test process makes; Compose files put it on their volumes
//!   (`labels: {persist.test.run: "{{RUN}}"}`, rendered by [`TestEnv::render`]).
//!
//! A `TestEnv`'s drop removes its project's objects (the first two labels). When the last live `TestEnv` of
//! the process drops, the guard also sweeps everything labelled with the run id, so that nothing a test made
//! outlives the run even if it forgot a project label; tests running in parallel are never swept from under
//! each other, because the sweep only happens while no `TestEnv` is alive. `PERSIST_TEST_KEEP=1` keeps the
//! objects (and temp dirs) for debugging and prints how to remove them.
//!
//! Everything that must exist (an engine, the local test images, Compose v2) is checked when a `TestEnv` is
//! created and missing pieces make the test fail with a hint: an e2e test never passes by skipping.
//! `scripts/test.sh` prepares all of it.

#![allow(dead_code)] // Helpers are used by some test modules and not others.

pub mod http;

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::ffi::OsStr;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Label with the id of the test process that made an object.
pub const RUN_LABEL: &str = "persist.test.run";
/// Label with the project of the test that made an object by hand.
pub const PROJECT_LABEL: &str = "persist.test.project";
/// Label Compose puts on everything it makes for a project.
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";
/// Label Compose puts on the volumes it makes.
pub const COMPOSE_VOLUME_LABEL: &str = "com.docker.compose.volume";
/// Label of the local test image (scripts/test-images.sh).
pub const TEST_IMAGE_LABEL: &str = "persist.test";

/// The image names tests may use, all tagging the one local busybox image.
const TEST_IMAGES: &str = include_str!("../../../scripts/test-images.txt");

/// The repository root (where `plugin-metadata` and `scripts/` are).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The plugin binary cargo built for these tests.
pub fn plugin_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_docker-persist"))
}

/// The statically linked build of the plugin (scripts/test.sh builds it and sets
/// `DOCKER_PERSIST_STATIC_BIN`): the only kind of build that can take the local fast path.
pub fn static_plugin_binary() -> PathBuf {
    let path = std::env::var_os("DOCKER_PERSIST_STATIC_BIN").unwrap_or_else(|| {
        panic!(
            "DOCKER_PERSIST_STATIC_BIN is not set: the fast-path tests need a static build of the plugin; run them \
             with scripts/test.sh, which builds one"
        )
    });
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "DOCKER_PERSIST_STATIC_BIN={} is not a file; scripts/test.sh builds it",
        path.display()
    );
    path
}

/// The image names from `scripts/test-images.txt`.
pub fn test_images() -> Vec<&'static str> {
    TEST_IMAGES
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The id of this test process: unique per run, lowercase hex, usable in names and labels.
/// `PERSIST_TEST_RUN_PREFIX` (set by scripts/test.sh) is put in front so that a script can find what a run
/// left behind.
pub fn run_id() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        let prefix: String = std::env::var("PERSIST_TEST_RUN_PREFIX")
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            .take(8)
            .collect();
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        format!("{prefix}{:08x}", h.finish() as u32)
    })
}

/// A project name no other test (of this or another run) uses: `dp-<run>-<n>`.
pub fn unique_project() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    format!("dp-{}-{}", run_id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The engine endpoint the tests use, resolved once with the caller's Docker config: `DOCKER_HOST` if set,
/// else the host of the current context, so that a temp `DOCKER_CONFIG` reaches the same engine.
fn docker_host() -> Option<&'static str> {
    static HOST: OnceLock<Option<String>> = OnceLock::new();
    HOST.get_or_init(|| {
        if let Ok(host) = std::env::var("DOCKER_HOST")
            && !host.is_empty()
        {
            return Some(host);
        }
        let out = Command::new("docker")
            .args([
                "context",
                "inspect",
                "--format",
                "{{.Endpoints.docker.Host}}",
            ])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let host = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !host.is_empty()).then_some(host)
    })
    .as_deref()
}

/// A command with a clean environment: only what the tools need from ours, plus the fixed settings
/// tests rely on. Callers set `HOME` and `DOCKER_CONFIG`.
fn clean_command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for key in [
        "PATH",
        "TMPDIR",
        "LANG",
        "LC_ALL",
        "RUST_BACKTRACE",
        "RUST_LOG",
        "LLVM_PROFILE_FILE",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
    ] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    if let Some(host) = docker_host() {
        cmd.env("DOCKER_HOST", host);
    }
    cmd.env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .stdin(Stdio::null());
    cmd
}

/// Runs `docker ARGS` outside any `TestEnv` (the caller's `HOME`, the tests' engine).
pub fn docker<I, S>(args: I) -> Ran
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = clean_command("docker");
    if let Some(home) = std::env::var_os("HOME") {
        cmd.env("HOME", home);
    }
    cmd.args(args);
    Ran::run(cmd)
}

/// The output of a finished command, with the command line, for assertions that show everything on failure.
pub struct Ran {
    pub command: String,
    pub output: Output,
}

impl Ran {
    fn run(mut cmd: Command) -> Ran {
        let command = describe(&cmd);
        let output = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
        Ran { command, output }
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Non-empty trimmed lines of stdout.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.output.status.success(), "expected success\n{self}");
        self
    }

    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert!(!self.output.status.success(), "expected failure\n{self}");
        self
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.output.status.code(),
            Some(code),
            "expected exit code {code}\n{self}"
        );
        self
    }

    #[track_caller]
    pub fn assert_stdout_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout().contains(needle),
            "expected stdout to contain {needle:?}\n{self}"
        );
        self
    }

    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr().contains(needle),
            "expected stderr to contain {needle:?}\n{self}"
        );
        self
    }

    /// Stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.output.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{self}"))
    }
}

impl Deref for Ran {
    type Target = Output;
    fn deref(&self) -> &Output {
        &self.output
    }
}

impl fmt::Display for Ran {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.command)?;
        writeln!(f, "status:  {}", self.output.status)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout().trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr().trim_end())
    }
}

impl fmt::Debug for Ran {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    if let Some(dir) = cmd.get_current_dir() {
        s.push_str(&format!("  (in {})", dir.display()));
    }
    s
}

/// Checks once per process that the engine answers and the test images are the local ones.
fn preflight() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        let info = docker(["info", "--format", "{{.ServerVersion}}"]);
        if !info.status.success() {
            return Err(format!(
                "no Docker Engine answers; run the tests with scripts/test.sh, which starts one\n{info}"
            ));
        }
        let images = test_images();
        let mut args = vec!["image", "inspect", "--format"];
        let format = format!("{{{{index .Config.Labels \"{TEST_IMAGE_LABEL}\"}}}}");
        args.push(&format);
        args.extend(images.iter().copied());
        let inspect = docker(&args);
        let all_local = inspect.status.success()
            && inspect.stdout_lines().len() == images.len()
            && inspect.stdout_lines().iter().all(|l| l == "true");
        if !all_local {
            return Err(format!(
                "the local test images ({}) are missing or not the ones scripts/test-images.sh makes; run \
                 scripts/test-images.sh (scripts/test.sh does)\n{inspect}",
                images.join(", ")
            ));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The real PostgreSQL server image: Debian's `postgresql-15` in a minbase rootfs, made locally by
/// scripts/postgres-image.sh (not to be confused with `postgres:16`, the busybox stand-in).
pub const POSTGRES_IMAGE: &str = "persist-test/postgres-debian:15";

/// Fails the test, naming the script that makes it, when the real PostgreSQL image is missing.
#[track_caller]
pub fn require_postgres_image() {
    let ran = docker([
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"persist.test.image\"}}",
        POSTGRES_IMAGE,
    ]);
    assert!(
        ran.status.success() && ran.stdout().trim() == "postgres-debian",
        "the real PostgreSQL image `{POSTGRES_IMAGE}` is missing or not the one scripts/postgres-image.sh makes; run \
         scripts/postgres-image.sh as root (scripts/test.sh does)\n{ran}"
    );
}

/// The Compose v2 plugin binary (`DOCKER_PERSIST_COMPOSE_V2`, set by scripts/compose-v2.sh).
fn compose_v2_binary() -> PathBuf {
    let path = std::env::var_os("DOCKER_PERSIST_COMPOSE_V2").unwrap_or_else(|| {
        panic!(
            "DOCKER_PERSIST_COMPOSE_V2 is not set: the e2e tests need Compose v2; run them with scripts/test.sh, \
             or `source scripts/compose-v2.sh` first"
        )
    });
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "DOCKER_PERSIST_COMPOSE_V2={} is not a file; `source scripts/compose-v2.sh` installs it",
        path.display()
    );
    path
}

/// How many `TestEnv`s are alive in this process; the run sweep happens, under this lock, when it drops to 0.
static LIVE: Mutex<usize> = Mutex::new(0);

fn live() -> MutexGuard<'static, usize> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

fn keep_objects() -> bool {
    std::env::var("PERSIST_TEST_KEEP").is_ok_and(|v| v == "1")
}

/// One test's sandbox: a unique project name, a project directory, a temp `HOME` and `DOCKER_CONFIG` with
/// our plugin and Compose v2 in `cli-plugins/`. Dropping it removes the engine objects of the project.
pub struct TestEnv {
    pub project: String,
    /// The plugin executable `docker persist` runs in this sandbox.
    pub binary: PathBuf,
    pub run: &'static str,
    /// `<tmp>/<project>`: Compose files go here; commands run here. Named after the project so that a
    /// command without `-p` derives the same project name.
    pub project_dir: PathBuf,
    pub home: PathBuf,
    pub docker_config: PathBuf,
    /// Volumes without a label of ours that the test asked the guard to remove (see [`track_volume`]).
    ///
    /// [`track_volume`]: Self::track_volume
    tracked_volumes: Mutex<Vec<String>>,
    tmp: Option<tempfile::TempDir>,
}

impl TestEnv {
    /// A sandbox whose `docker persist` is the dynamically linked test build (the universal path only).
    #[track_caller]
    pub fn new() -> TestEnv {
        TestEnv::with_plugin(plugin_binary())
    }

    /// A sandbox whose `docker persist` is the static build, which can take the local fast path.
    #[track_caller]
    pub fn with_static_plugin() -> TestEnv {
        TestEnv::with_plugin(&static_plugin_binary())
    }

    #[track_caller]
    fn with_plugin(binary: &Path) -> TestEnv {
        preflight();
        let compose_v2 = compose_v2_binary();
        let project = unique_project();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{project}."))
            .tempdir()
            .expect("create a temp dir");
        let project_dir = tmp.path().join(&project);
        let home = tmp.path().join("home");
        let docker_config = tmp.path().join("docker-config");
        let plugins = docker_config.join("cli-plugins");
        for dir in [&project_dir, &home, &plugins] {
            std::fs::create_dir_all(dir).expect("create a test dir");
        }
        symlink(binary, &plugins.join("docker-persist"));
        symlink(&compose_v2, &plugins.join("docker-compose"));
        *live() += 1;
        TestEnv {
            project,
            binary: binary.to_path_buf(),
            run: run_id(),
            project_dir,
            home,
            docker_config,
            tracked_volumes: Mutex::new(Vec::new()),
            tmp: Some(tmp),
        }
    }

    /// Fills in `{{RUN}}` (the run id) and `{{PROJECT}}` (the project name).
    pub fn render(&self, template: &str) -> String {
        template
            .replace("{{RUN}}", self.run)
            .replace("{{PROJECT}}", &self.project)
    }

    /// Writes `compose.yaml` (rendered, see [`render`](Self::render)) and, if given, `.env` into the project
    /// directory; returns the directory.
    pub fn write_project(&self, compose: &str, dotenv: Option<&str>) -> &Path {
        self.write_file("compose.yaml", compose);
        if let Some(env) = dotenv {
            self.write_file(".env", env);
        }
        &self.project_dir
    }

    /// Writes a file (rendered) under the project directory, creating parent directories.
    pub fn write_file(&self, relative: impl AsRef<Path>, content: &str) -> PathBuf {
        let path = self.project_dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dir");
        }
        std::fs::write(&path, self.render(content))
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// A command with this sandbox's environment, run in the project directory.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = clean_command(program);
        cmd.env("HOME", &self.home)
            .env("DOCKER_CONFIG", &self.docker_config)
            .current_dir(&self.project_dir);
        cmd
    }

    /// Runs a prepared command (from [`command`](Self::command)).
    pub fn run(&self, cmd: Command) -> Ran {
        Ran::run(cmd)
    }

    /// `docker persist ARGS` through the real Docker CLI, in the project directory.
    pub fn persist<I, S>(&self, args: I) -> Ran
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command("docker");
        cmd.arg("persist").args(args);
        Ran::run(cmd)
    }

    /// `docker FLAGS persist ARGS`: Docker's global flags before the plugin's name, as users type them.
    /// `DOCKER_HOST` is left out of the environment, so the flags alone choose the engine.
    pub fn persist_with_docker_flags(&self, flags: &[&str], args: &[&str]) -> Ran {
        let mut cmd = self.command("docker");
        cmd.env_remove("DOCKER_HOST")
            .args(flags)
            .arg("persist")
            .args(args);
        Ran::run(cmd)
    }

    /// The plugin binary run directly (as the Docker CLI would, without it).
    pub fn plugin<I, S>(&self, args: I) -> Ran
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(&self.binary);
        cmd.args(args);
        Ran::run(cmd)
    }

    /// `docker ARGS` with this sandbox's environment.
    pub fn docker<I, S>(&self, args: I) -> Ran
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command("docker");
        cmd.args(args);
        Ran::run(cmd)
    }

    /// Compose v1: `docker-compose -p PROJECT ARGS`.
    pub fn compose_v1<I, S>(&self, args: I) -> Ran
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command("docker-compose");
        cmd.args(["-p", &self.project]).args(args);
        Ran::run(cmd)
    }

    /// Compose v2: `docker compose -p PROJECT ARGS`.
    pub fn compose_v2<I, S>(&self, args: I) -> Ran
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command("docker");
        cmd.args(["compose", "-p", &self.project]).args(args);
        Ran::run(cmd)
    }

    /// Creates a volume outside Compose (an "external" one), labelled for this test and run.
    #[track_caller]
    pub fn volume_create(&self, name: &str) {
        self.docker([
            "volume",
            "create",
            "--label",
            &format!("{RUN_LABEL}={}", self.run),
            "--label",
            &format!("{PROJECT_LABEL}={}", self.project),
            name,
        ])
        .assert_success();
    }

    /// Has the guard remove a volume that carries none of our labels, e.g. an anonymous volume the engine
    /// made for a Compose service (Compose does not label those) that outlives its container.
    pub fn track_volume(&self, name: &str) {
        self.tracked_volumes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.to_owned());
    }

    /// The labels of an engine volume, or `None` if it does not exist.
    pub fn volume_labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let ran = self.docker(["volume", "inspect", "--format", "{{json .Labels}}", name]);
        if !ran.status.success() {
            return None;
        }
        let labels: Option<BTreeMap<String, String>> = serde_json::from_slice(&ran.stdout)
            .unwrap_or_else(|e| panic!("volume labels are not a JSON map: {e}\n{ran}"));
        Some(labels.unwrap_or_default())
    }

    /// Names of the engine volumes labelled as this project's by Compose, sorted.
    pub fn compose_volumes(&self) -> Vec<String> {
        let mut names = list_names(
            "volume",
            &format!("{COMPOSE_PROJECT_LABEL}={}", self.project),
        );
        names.sort();
        names
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        TestEnv::new()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if keep_objects() {
            let tmp = self.tmp.take().map(tempfile::TempDir::keep);
            eprintln!(
                "PERSIST_TEST_KEEP=1: kept the objects of project `{}` (remove them with: docker rm -fv $(docker ps \
                 -aq --filter label={COMPOSE_PROJECT_LABEL}={p}); docker volume rm $(docker volume ls -q --filter \
                 label={RUN_LABEL}={r})) and its dir {}",
                self.project,
                tmp.as_deref()
                    .map(Path::display)
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                p = self.project,
                r = self.run,
            );
        } else {
            let mut problems = remove_project_objects(&self.project);
            let tracked = std::mem::take(
                &mut *self
                    .tracked_volumes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            );
            if !tracked.is_empty() {
                let ran = docker(
                    ["volume", "rm", "--force"]
                        .into_iter()
                        .chain(tracked.iter().map(String::as_str)),
                );
                if !ran.status.success() {
                    problems.push(format!(
                        "could not remove volumes {tracked:?}: {}",
                        ran.stderr().trim()
                    ));
                }
            }
            for problem in problems {
                eprintln!("warning: cleaning up project `{}`: {problem}", self.project);
            }
        }
        let mut live = live();
        *live = live.saturating_sub(1);
        if *live == 0 && !keep_objects() {
            for problem in remove_labelled(&format!("{RUN_LABEL}={}", self.run)) {
                eprintln!("warning: cleaning up run `{}`: {problem}", self.run);
            }
        }
    }
}

#[track_caller]
fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link)
        .unwrap_or_else(|e| panic!("symlink {} -> {}: {e}", link.display(), target.display()));
}

/// Ids (containers, networks) or names (volumes) of the objects of a kind with a label `key=value`.
fn list_names(kind: &str, label: &str) -> Vec<String> {
    let args: Vec<&str> = match kind {
        "container" => vec!["ps", "--all", "--quiet", "--no-trunc", "--filter"],
        "volume" => vec!["volume", "ls", "--quiet", "--filter"],
        "network" => vec!["network", "ls", "--quiet", "--no-trunc", "--filter"],
        other => panic!("unknown object kind {other}"),
    };
    let filter = format!("label={label}");
    let ran = docker(args.iter().copied().chain([filter.as_str()]));
    if !ran.status.success() {
        return Vec::new();
    }
    ran.stdout_lines()
}

/// Removes every container (with its anonymous volumes), volume and network labelled `label`; returns the
/// problems it met (it never panics: it runs during unwinding).
pub fn remove_labelled(label: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (kind, rm) in [
        ("container", &["rm", "--force", "--volumes"][..]),
        ("volume", &["volume", "rm", "--force"][..]),
        ("network", &["network", "rm"][..]),
    ] {
        let names = list_names(kind, label);
        if names.is_empty() {
            continue;
        }
        let ran = docker(rm.iter().copied().chain(names.iter().map(String::as_str)));
        if !ran.status.success() {
            problems.push(format!(
                "could not remove {kind}s labelled {label}: {}",
                ran.stderr().trim()
            ));
        }
    }
    problems
}

/// Removes what Compose made for `project` and what the test labelled as the project's.
pub fn remove_project_objects(project: &str) -> Vec<String> {
    let mut problems = remove_labelled(&format!("{COMPOSE_PROJECT_LABEL}={project}"));
    problems.extend(remove_labelled(&format!("{PROJECT_LABEL}={project}")));
    problems
}

/// Everything (containers, volumes, networks) still labelled `label`, as `kind name` lines.
pub fn objects_labelled(label: &str) -> Vec<String> {
    ["container", "volume", "network"]
        .iter()
        .flat_map(|kind| {
            list_names(kind, label)
                .into_iter()
                .map(move |n| format!("{kind} {n}"))
        })
        .collect()
}

impl TestEnv {
    /// The id of the one container of `service` in this project, running or not (Compose v1 and v2 label
    /// their containers alike).
    #[track_caller]
    pub fn service_container(&self, service: &str) -> String {
        let ran = self.docker([
            "ps",
            "--all",
            "--quiet",
            "--no-trunc",
            "--filter",
            &format!("label={COMPOSE_PROJECT_LABEL}={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ]);
        ran.assert_success();
        match ran.stdout_lines().as_slice() {
            [id] => id.clone(),
            other => panic!(
                "expected one container of service `{service}` in project `{}`, found {other:?}",
                self.project
            ),
        }
    }
}

/// One entry of [`tree_listing_in_container`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Relative to the listed directory, without `./`; the directory itself is `.`.
    pub path: String,
    /// `f` file, `d` directory, `l` symlink, `p` fifo, `c`/`b` device, `s` socket, `o` other.
    pub kind: char,
    /// Permission bits with setuid, setgid and sticky (`stat -c %a`), e.g. `0o4755`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Bytes (`stat -c %s`; a symlink's target length); `None` for directories, whose size depends on the
    /// file system's history rather than on their content.
    pub size: Option<u64>,
    /// Hard link count.
    pub nlink: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// SHA-256 (hex) of a file's content, a symlink's target, `major:minor` (hex) of a device, else `-`.
    pub content: String,
}

/// Lists a tree with the container's own busybox: one line per entry, sorted by path,
/// `path TAB type TAB mode uid gid size nlink mtime TAB content` (see [`TreeEntry`]).
const TREE_LISTING_SCRIPT: &str = r#"set -o pipefail
cd "$1" || exit 1
find . | LC_ALL=C sort | while IFS= read -r p; do
  if [ -L "$p" ]; then t=l; c=$(readlink "$p") || exit 1
  elif [ -d "$p" ]; then t=d; c=-
  elif [ -f "$p" ]; then t=f; c=$(sha256sum < "$p") || exit 1; c=${c%% *}
  elif [ -p "$p" ]; then t=p; c=-
  elif [ -c "$p" ]; then t=c; c=$(stat -c '%t:%T' "$p") || exit 1
  elif [ -b "$p" ]; then t=b; c=$(stat -c '%t:%T' "$p") || exit 1
  elif [ -S "$p" ]; then t=s; c=-
  else t=o; c=-
  fi
  if [ "$t" = d ]; then s=$(stat -c '%a %u %g - %h %Y' "$p") || exit 1
  else s=$(stat -c '%a %u %g %s %h %Y' "$p") || exit 1
  fi
  printf '%s\t%s\t%s\t%s\n' "${p#./}" "$t" "$s" "$c"
done
"#;

/// The tree under `path` inside the running container of `service`, listed by the container's busybox
/// (`find`, `stat`, `sha256sum`, `readlink`) and not by any code of ours: path, type, mode (with setuid,
/// setgid, sticky), owner, size, hard link count, mtime, and a file's SHA-256 or a symlink's target. Two
/// listings are equal exactly when the trees are, up to atimes, ctimes, inode numbers and directory sizes.
#[track_caller]
pub fn tree_listing_in_container(env: &TestEnv, service: &str, path: &str) -> Vec<TreeEntry> {
    let container = env.service_container(service);
    let ran = env.docker([
        "exec",
        &container,
        "sh",
        "-c",
        TREE_LISTING_SCRIPT,
        "sh",
        path,
    ]);
    parse_tree_listing(ran, &format!("`{path}` in `{service}`"))
}

/// The same listing as [`tree_listing_in_container`], of a volume that no running container mounts (a
/// throwaway container of the test image mounts it read-only).
#[track_caller]
pub fn tree_listing_of_volume(env: &TestEnv, volume: &str) -> Vec<TreeEntry> {
    let ran = env.docker([
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{volume}:/v:ro"),
        "postgres:16",
        "sh",
        "-c",
        TREE_LISTING_SCRIPT,
        "sh",
        "/v",
    ]);
    parse_tree_listing(ran, &format!("volume `{volume}`"))
}

#[track_caller]
fn parse_tree_listing(ran: Ran, what: &str) -> Vec<TreeEntry> {
    ran.assert_success();
    let entries: Vec<TreeEntry> = ran
        .stdout()
        .lines()
        .map(|line| {
            parse_tree_line(line).unwrap_or_else(|| panic!("bad listing line {line:?}\n{ran}"))
        })
        .collect();
    assert!(
        entries
            .first()
            .is_some_and(|e| e.path == "." && e.kind == 'd'),
        "the listing of {what} does not start with its root\n{ran}"
    );
    entries
}

fn parse_tree_line(line: &str) -> Option<TreeEntry> {
    let mut fields = line.splitn(4, '\t');
    let path = fields.next()?.to_string();
    let kind = fields.next()?.chars().next()?;
    let stat: Vec<&str> = fields.next()?.split(' ').collect();
    let content = fields.next()?.to_string();
    let [mode, uid, gid, size, nlink, mtime] = stat.as_slice() else {
        return None;
    };
    Some(TreeEntry {
        path,
        kind,
        mode: u32::from_str_radix(mode, 8).ok()?,
        uid: uid.parse().ok()?,
        gid: gid.parse().ok()?,
        size: if *size == "-" {
            None
        } else {
            Some(size.parse().ok()?)
        },
        nlink: nlink.parse().ok()?,
        mtime: mtime.parse().ok()?,
        content,
    })
}

/// A digest of the tree under `path` inside the running container of `service`: SHA-256 (hex) of its
/// [`tree_listing_in_container`] — content, type, mode, owner, size, link target, hard link count and mtime
/// of every entry. Equal digests before a backup and after a restore mean the data came back as it was.
#[track_caller]
pub fn tree_digest_in_container(env: &TestEnv, service: &str, path: &str) -> String {
    tree_digest(&tree_listing_in_container(env, service, path))
}

/// The digest [`tree_digest_in_container`] computes, of a listing taken earlier.
pub fn tree_digest(entries: &[TreeEntry]) -> String {
    use sha2::Digest as _;
    let mut sha = sha2::Sha256::new();
    for e in entries {
        sha.update(format!("{e:?}\n").as_bytes());
    }
    hex::encode(sha.finalize())
}

/// The entry with `key` in the `volumes` array of a JSON document: `ls --json`, a backup's manifest,
/// `backup --json`.
#[track_caller]
pub fn volume_entry<'a>(doc: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    doc["volumes"]
        .as_array()
        .expect("volumes is an array")
        .iter()
        .find(|v| v["key"] == key)
        .unwrap_or_else(|| panic!("no `{key}` in the volumes of:\n{doc:#}"))
}

/// A 2 MiB tmpfs mounted at a directory for one test (a file system to fill: a migration's copy, an SFTP
/// server's disk), unmounted when dropped. The tests run as root, as the engine needs.
pub struct SmallTmpfs(pub PathBuf);

impl SmallTmpfs {
    pub fn new(dir: &Path) -> SmallTmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs (the tests run as root)");
        SmallTmpfs(dir.to_path_buf())
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}
