//! The official Compose v2 is the oracle for the loader: for every corpus file it accepts and for the fixture
//! projects under `tests/fixtures/compose/`, `docker compose config --format json` must see the same mounts
//! per service — (type, source, target, read-only) — and the same engine name per top-level volume as
//! `load_project`. The corpus is `tests/fixtures/compose-corpus` (its INDEX.md names each file's source and
//! licence), or the directory `$DOCKER_PERSIST_CORPUS` names.
//!
//! Compose v2 is found through `DOCKER_PERSIST_COMPOSE_V2` (the path of the `docker-compose` v2 binary, set
//! by `scripts/test.sh`), else `docker compose` on `PATH`. Without either the test fails: it never passes by
//! skipping.
//!
//! Compose refuses some corpus files for reasons that have nothing to do with data: an `env_file:` that does
//! not exist next to the file, empty numeric fields, consistency rules (`depends_on` an undefined service,
//! `network_mode` with `networks`). The harness copies each file to a scratch directory, creates the missing
//! env files there (empty), passes the variables the project's `.env` would set, and runs `config` with
//! `--no-consistency` and `--profile '*'` (every service, as the loader sees them). Files it still refuses
//! must be listed in `KNOWN_REFUSED` with the reason.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use docker_persist::compose::{MountType, Project, ProjectOptions, load_project};
use serde_json::Value;

/// Corpus files Compose v2 refuses even with the harness's help, and why.
const KNOWN_REFUSED: &[(&str, &str)] = &[(
    "09-nextcloud-docker-nginx-proxy-letsencrypt.yml",
    "repeats the `environment:` key; Compose v2 rejects duplicate keys, the loader keeps the last one",
)];

const PROJECT: &str = "oraclecheck";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("DOCKER_PERSIST_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("tests/fixtures/compose-corpus"));
    assert!(
        dir.is_dir(),
        "the Compose corpus is missing: `{}` is not a directory (set DOCKER_PERSIST_CORPUS to it)",
        dir.display()
    );
    dir
}

fn fixtures_dir() -> PathBuf {
    manifest_dir().join("tests/fixtures/compose")
}

/// How to run Compose v2: a program and the arguments before Compose's own.
struct Oracle {
    program: PathBuf,
    prefix: Vec<String>,
}

impl Oracle {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.prefix);
        cmd
    }

    fn works(&self) -> bool {
        self.command()
            .arg("version")
            .output()
            .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("v2."))
            .unwrap_or(false)
    }
}

fn oracle() -> Oracle {
    if let Some(path) = std::env::var_os("DOCKER_PERSIST_COMPOSE_V2") {
        let o = Oracle {
            program: PathBuf::from(path),
            prefix: Vec::new(),
        };
        assert!(
            o.works(),
            "DOCKER_PERSIST_COMPOSE_V2=`{}` does not run as Compose v2 (`version` failed or is not v2)",
            o.program.display()
        );
        return o;
    }
    let o = Oracle {
        program: PathBuf::from("docker"),
        prefix: vec!["compose".to_string()],
    };
    assert!(
        o.works(),
        "Compose v2 not found: neither DOCKER_PERSIST_COMPOSE_V2 is set nor does `docker compose version` work. \
         Run the tests through `scripts/test.sh`, which locates Compose v2 and exports DOCKER_PERSIST_COMPOSE_V2, \
         or set DOCKER_PERSIST_COMPOSE_V2 to a docker-compose v2 binary"
    );
    o
}

/// Runs `config --format json` in `dir`. Missing `env_file:` files named in Compose's error are created
/// (empty) inside `dir` and the command retried; any other failure is returned as the error text.
fn run_config(
    oracle: &Oracle,
    dir: &Path,
    files: &[String],
    project: Option<&str>,
    env: &BTreeMap<String, String>,
    stub_env_files: bool,
) -> Result<Value, String> {
    for _ in 0..20 {
        let mut cmd = oracle.command();
        if let Some(p) = project {
            cmd.args(["-p", p]);
        }
        for f in files {
            cmd.args(["-f", f]);
        }
        cmd.args([
            "--profile",
            "*",
            "config",
            "--no-consistency",
            "--format",
            "json",
        ])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env);
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run Compose v2: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if out.status.success() {
            return serde_json::from_slice(&out.stdout)
                .map_err(|e| format!("Compose v2 printed invalid JSON: {e}"));
        }
        let missing = stderr
            .split("env file ")
            .nth(1)
            .and_then(|rest| rest.split(" not found").next())
            .map(PathBuf::from);
        match missing {
            Some(path) if stub_env_files && path.starts_with(dir) && !path.exists() => {
                if let Some(parent) = path.parent() {
                    fs_err::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                fs_err::write(&path, "").map_err(|e| e.to_string())?;
            }
            _ => return Err(stderr.trim().to_string()),
        }
    }
    Err("too many missing env files".to_string())
}

/// (type, source, target, read-only) — how both sides are compared.
type MountKey = (String, Option<String>, String, bool);

fn v2_type(t: &str) -> String {
    match t {
        "npipe" | "cluster" | "image" => "other".to_string(),
        other => other.to_string(),
    }
}

fn v2_mounts(service: &Value) -> Vec<MountKey> {
    let mut out = Vec::new();
    if let Some(vols) = service.get("volumes").and_then(Value::as_array) {
        for v in vols {
            out.push((
                v2_type(v["type"].as_str().unwrap_or_default()),
                v.get("source")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
                v["target"].as_str().unwrap_or_default().to_string(),
                v.get("read_only").and_then(Value::as_bool).unwrap_or(false),
            ));
        }
    }
    let tmpfs: Vec<String> = match service.get("tmpfs") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    for t in tmpfs {
        let target = t.split(':').next().unwrap_or_default().to_string();
        out.push(("tmpfs".to_string(), None, target, false));
    }
    out.sort();
    out
}

fn our_mounts(project: &Project, service: &str) -> Vec<MountKey> {
    let mut out: Vec<MountKey> = project.services[service]
        .mounts
        .iter()
        .map(|m| {
            let kind = match m.kind {
                MountType::Volume => "volume",
                MountType::Bind => "bind",
                MountType::Tmpfs => "tmpfs",
                MountType::Other => "other",
            };
            (
                kind.to_string(),
                m.source.clone(),
                m.target.clone(),
                m.read_only,
            )
        })
        .collect();
    out.sort();
    out
}

/// Compares the loader's project with Compose's JSON; returns every difference found.
fn compare(label: &str, ours: &Project, v2: &Value, check_name: bool) -> Vec<String> {
    let mut diffs = Vec::new();
    if check_name && v2["name"].as_str() != Some(ours.name.as_str()) {
        diffs.push(format!(
            "{label}: project name: v2 {} vs ours {:?}",
            v2["name"], ours.name
        ));
    }
    let empty = serde_json::Map::new();
    let v2_services = v2["services"].as_object().unwrap_or(&empty);
    let theirs: BTreeSet<&str> = v2_services.keys().map(String::as_str).collect();
    let mine: BTreeSet<&str> = ours.services.keys().map(String::as_str).collect();
    if theirs != mine {
        diffs.push(format!(
            "{label}: services differ: v2 {theirs:?} vs ours {mine:?}"
        ));
    }
    for (name, svc) in v2_services {
        if !ours.services.contains_key(name) {
            continue;
        }
        let (a, b) = (v2_mounts(svc), our_mounts(ours, name));
        if a != b {
            diffs.push(format!(
                "{label}: service `{name}` mounts differ:\n    v2:   {a:?}\n    ours: {b:?}"
            ));
        }
    }
    let v2_volumes = v2["volumes"].as_object().unwrap_or(&empty);
    for (key, def) in v2_volumes {
        let Some(ours_def) = ours.volumes.get(key) else {
            diffs.push(format!("{label}: volume `{key}` is missing from ours"));
            continue;
        };
        if let Some(name) = def.get("name").and_then(Value::as_str) {
            let mine = ours.engine_volume_name(key);
            if mine.as_deref() != Some(name) {
                diffs.push(format!(
                    "{label}: volume `{key}` engine name: v2 {name:?} vs ours {mine:?}"
                ));
            }
        }
        let ext = def
            .get("external")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if ext != ours_def.external {
            diffs.push(format!(
                "{label}: volume `{key}` external: v2 {ext} vs ours {}",
                ours_def.external
            ));
        }
    }
    // Compose prints only the volumes services use; each of those the loader sees must be there.
    for svc in ours.services.values() {
        for m in &svc.mounts {
            if let (MountType::Volume, Some(src)) = (m.kind, &m.source)
                && !v2_volumes.contains_key(src)
            {
                diffs.push(format!(
                    "{label}: volume `{src}` used by `{}` is not in v2's output",
                    svc.name
                ));
            }
        }
    }
    diffs
}

fn corpus_needs() -> Value {
    let text = fs_err::read_to_string(fixtures_dir().join("corpus-env.json"))
        .expect("corpus-env.json is readable");
    serde_json::from_str(&text).expect("corpus-env.json is valid JSON")
}

fn env_for(needs: &Value, file: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for section in [&needs["defaults"], &needs["files"][file]] {
        if let Some(vars) = section.get("env").and_then(Value::as_object) {
            for (k, v) in vars {
                env.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
        }
    }
    env
}

fn extra_files(needs: &Value, file: &str) -> Vec<String> {
    needs["files"][file]["extra_files"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn loader_matches_compose_v2_on_the_corpus() {
    let oracle = oracle();
    let corpus = corpus_dir();
    let needs = corpus_needs();
    let mut files: Vec<String> = fs_err::read_dir(&corpus)
        .expect("corpus dir is readable")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml") || n.ends_with(".yaml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no Compose files in `{}`",
        corpus.display()
    );

    let mut compared = Vec::new();
    let mut refused = Vec::new();
    let mut diffs = Vec::new();
    for file in &files {
        let scratch = tempfile::tempdir().expect("temp dir");
        let dir = fs_err::canonicalize(scratch.path()).expect("canonical temp dir");
        fs_err::copy(corpus.join(file), dir.join(file)).expect("copy corpus file");
        let mut args = vec![file.clone()];
        for extra in extra_files(&needs, file) {
            fs_err::copy(fixtures_dir().join(&extra), dir.join(&extra)).expect("copy extra file");
            args.push(extra);
        }
        let env = env_for(&needs, file);
        let v2 = match run_config(&oracle, &dir, &args, Some(PROJECT), &env, true) {
            Ok(v) => v,
            Err(e) => {
                refused.push((file.clone(), e));
                continue;
            }
        };
        let opts = ProjectOptions {
            files: args.iter().map(PathBuf::from).collect(),
            project_name: Some(PROJECT.to_string()),
            working_dir: dir.clone(),
            os_env: env,
            ..Default::default()
        };
        let ours = load_project(&opts)
            .unwrap_or_else(|e| panic!("{file}: Compose v2 loads it but the loader fails: {e}"));
        diffs.extend(compare(file, &ours, &v2, true));
        compared.push(file.clone());
    }

    let unexpected: Vec<&(String, String)> = refused
        .iter()
        .filter(|(f, _)| !KNOWN_REFUSED.iter().any(|(k, _)| k == f))
        .collect();
    assert!(
        unexpected.is_empty(),
        "Compose v2 refused files not listed in KNOWN_REFUSED:\n{}",
        unexpected
            .iter()
            .map(|(f, e)| format!("  {f}: {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        diffs.is_empty(),
        "the loader disagrees with Compose v2:\n{}",
        diffs.join("\n")
    );
    assert!(
        compared.len() >= 30,
        "only {} corpus files were compared (refused: {:?})",
        compared.len(),
        refused.iter().map(|(f, _)| f).collect::<Vec<_>>()
    );
    eprintln!(
        "compared {} corpus files with Compose v2; refused by v2: {:?}",
        compared.len(),
        refused.iter().map(|(f, _)| f).collect::<Vec<_>>()
    );
}

/// Loads a fixture project both ways from `dir` (discovery, `.env`, no `-p`) and compares.
fn check_fixture(oracle: &Oracle, name: &str, files: &[&str]) -> Project {
    let dir = fs_err::canonicalize(fixtures_dir().join(name)).expect("fixture dir");
    let env: BTreeMap<String, String> = [("HOME".to_string(), "/home/oracle".to_string())].into();
    let args: Vec<String> = files.iter().map(|f| f.to_string()).collect();
    let v2 = run_config(oracle, &dir, &args, None, &env, false)
        .unwrap_or_else(|e| panic!("{name}: Compose v2 refuses the fixture: {e}"));
    let opts = ProjectOptions {
        files: args.iter().map(PathBuf::from).collect(),
        working_dir: dir.clone(),
        os_env: env,
        ..Default::default()
    };
    let ours = load_project(&opts).unwrap_or_else(|e| panic!("{name}: the loader fails: {e}"));
    let diffs = compare(name, &ours, &v2, true);
    assert!(
        diffs.is_empty(),
        "the loader disagrees with Compose v2:\n{}",
        diffs.join("\n")
    );
    ours
}

fn mount<'a>(p: &'a Project, service: &str, target: &str) -> &'a docker_persist::compose::Mount {
    p.services[service]
        .mounts
        .iter()
        .find(|m| m.target == target)
        .unwrap_or_else(|| panic!("service `{service}` has no mount at `{target}`"))
}

#[test]
fn fixture_merge_override_matches_compose_v2() {
    let p = check_fixture(&oracle(), "merge-override", &[]);
    assert_eq!(p.name, "mergedemo");
    assert_eq!(p.files.len(), 2, "{:?}", p.files);
    let web = &p.services["web"];
    assert_eq!(web.image.as_deref(), Some("web:2"));
    assert_eq!(web.container_name.as_deref(), Some("web-1"));
    assert_eq!(web.depends_on, ["db", "cache"]);
    assert_eq!(web.profiles, ["frontend", "debug"]);
    let code = mount(&p, "web", "/code");
    assert_eq!(code.source_as_written.as_deref(), Some("./src"));
    assert!(code.read_only);
    assert_eq!(
        p.volumes["data"].labels,
        BTreeMap::from([
            ("owner".to_string(), "ops".to_string()),
            ("team".to_string(), "web".to_string())
        ])
    );
}

#[test]
fn fixture_dotenv_interpolation_matches_compose_v2() {
    let p = check_fixture(&oracle(), "dotenv-interpolation", &[]);
    assert_eq!(p.name, "dotenv_demo");
    assert_eq!(p.services["db"].image.as_deref(), Some("postgres:16"));
    assert_eq!(
        mount(&p, "db", "/var/lib/postgresql/data")
            .source_as_written
            .as_deref(),
        Some("./var/db")
    );
    assert_eq!(p.engine_volume_name("media").as_deref(), Some("app-media"));
    assert_eq!(
        p.environment.get("GREETING").map(String::as_str),
        Some("hello # not a comment")
    );
    assert_eq!(
        p.environment.get("HASHED").map(String::as_str),
        Some("abc#def")
    );
}

#[test]
fn fixture_long_syntax_matches_compose_v2() {
    let p = check_fixture(&oracle(), "long-syntax", &[]);
    let ssh = mount(&p, "app", "/root/.ssh");
    assert_eq!(ssh.source.as_deref(), Some("/home/oracle/.ssh"));
    assert_eq!(ssh.source_as_written.as_deref(), Some("~/.ssh"));
    assert!(ssh.read_only);
    assert_eq!(mount(&p, "app", "/scratch").source, None);
    assert_eq!(mount(&p, "app", "/cache").kind, MountType::Tmpfs);
    assert_eq!(mount(&p, "app", "/tmp").kind, MountType::Tmpfs);
    assert_eq!(mount(&p, "app", "/opt/alpine").kind, MountType::Other);
}

#[test]
fn fixture_external_volumes_match_compose_v2() {
    let p = check_fixture(&oracle(), "external-volumes", &[]);
    let v = &p.volumes["local-bind"];
    assert_eq!(v.driver.as_deref(), Some("local"));
    assert_eq!(
        v.driver_opts.get("device").map(String::as_str),
        Some("/srv/data/db")
    );
    assert_eq!(
        v.labels.get("com.example.note").map(String::as_str),
        Some("bind=backed")
    );
    assert!(p.volumes["legacy"].external);
    assert_eq!(
        p.volumes["legacy"].name.as_deref(),
        Some("legacy-real-name")
    );
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("external.name is deprecated")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn fixture_x_persist_and_anchors_match_compose_v2() {
    let p = check_fixture(&oracle(), "x-persist-anchors", &[]);
    assert_eq!(
        p.persist,
        serde_json::json!({"dir": "./backups", "retention": {"daily": 7, "weekly": 4}})
    );
    let media = p.volumes["media"]
        .persist
        .as_ref()
        .expect("media x-persist");
    assert_eq!(media.tier, Some(docker_persist::compose::Tier::Critical));
    assert_eq!(media.raw["consistency"], "stop");
    let uploads = mount(&p, "worker", "/uploads");
    let spec = uploads.persist.as_ref().expect("mount x-persist");
    assert_eq!(spec.tier, Some(docker_persist::compose::Tier::Critical));
    assert_eq!(spec.raw["consistency"], "live");
    assert_eq!(p.services["worker"].image.as_deref(), Some("base:1"));
    assert_eq!(p.services["remote"].image.as_deref(), Some("tmpl:2"));
}

#[test]
fn fixture_multi_file_matches_compose_v2() {
    let p = check_fixture(&oracle(), "multi-file", &["deploy/base.yml", "prod.yml"]);
    assert_eq!(p.name, "multi");
    assert!(p.directory.ends_with("multi-file/deploy"));
    assert!(mount(&p, "api", "/state").read_only);
}
