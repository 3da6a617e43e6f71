//! Reads, interpolates and merges Compose files into a [`Project`](super::Project).
//!
//! The pipeline follows Compose v2 (compose-go): [`discover`](super::discovery::discover) the files and the
//! environment; parse every YAML document (anchors, aliases and `<<` merge keys resolved; a repeated key keeps
//! its last value with a warning instead of failing); settle the project name; interpolate each document;
//! turn it into a typed layer of what concerns data (services' image, container name, profiles, dependencies,
//! volumes and tmpfs; top-level volumes; `x-persist`), resolving `extends`; merge the layers in order
//! (service volumes by target, `!reset`/`!override` honoured); and check the result (named sources must be
//! declared, `x-persist` tiers must be tiers). Everything else in the files is ignored.
//!
//! The steps live in files of their own: YAML reading (`yaml.rs`), the typed layer of one document and
//! `extends` (`loader.rs`), the short volume syntax (`short.rs`), the merge of the layers (`merge.rs`) and
//! the `x-persist` mappings (`persist.rs`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

use super::discovery;
use super::interpolate::{self, substitute};
use super::model::Project;
use super::{ComposeError, ProjectOptions};

mod loader;
mod merge;
mod persist;
mod short;
mod yaml;

use loader::{FileCtx, Loader};
use merge::Merged;
pub(crate) use persist::parse_timeout;
pub use short::{ShortVolume, clean_target, is_file_path, parse_short_volume, resolve_bind};
pub use yaml::parse_documents;
use yaml::{read_documents, scalar_string};

/// Loads the project described by `opts` the way `docker compose` would.
pub fn load_project(opts: &ProjectOptions) -> Result<Project, ComposeError> {
    let found = discovery::discover(opts)?;
    let mut warnings = found.warnings;
    let project_dir = found.project_dir;
    let home = opts.os_env.get("HOME").cloned();

    let mut docs = Vec::new();
    for file in &found.files {
        for map in read_documents(file, &mut warnings)? {
            docs.push(Doc {
                file: file.clone(),
                map,
            });
        }
    }
    if docs
        .iter()
        .all(|d| d.map.keys().all(|k| k.as_str() == Some("version")))
    {
        let path = found.files.first().cloned().unwrap_or_default();
        return Err(ComposeError::Structure {
            path,
            message: "empty compose file".to_string(),
        });
    }
    for doc in &docs {
        if doc.map.contains_key("version") {
            warnings.push(format!(
                "{}: the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion",
                doc.file.display()
            ));
        }
    }

    let mut environment = found.environment;
    let mut unset = Vec::new();
    let name = project_name(opts, &environment, &docs, &project_dir, &mut unset)?;
    environment
        .entry("COMPOSE_PROJECT_NAME".to_string())
        .or_insert_with(|| name.clone());

    let mut loader = Loader {
        environment: &environment,
        home: home.as_deref(),
        warnings: &mut warnings,
        unset: &mut unset,
        extended_files: HashMap::new(),
    };
    let mut merged = Merged::default();
    for doc in docs {
        let ctx = FileCtx {
            file: doc.file.clone(),
            base_dir: project_dir.clone(),
        };
        let layer = loader.layer(Value::Mapping(doc.map), &ctx)?;
        let layer = loader.resolve_extends(layer, &ctx)?;
        merged.apply(layer);
    }

    let project = merged.finish(name, project_dir, found.files, environment)?;
    let mut seen = std::collections::HashSet::new();
    let mut all_warnings = Vec::new();
    for w in warnings
        .into_iter()
        .chain(unset.iter().map(|name| interpolate::unset_warning(name)))
        .chain(project.warnings.iter().cloned())
    {
        if seen.insert(w.clone()) {
            all_warnings.push(w);
        }
    }
    Ok(Project {
        warnings: all_warnings,
        ..project
    })
}

/// One YAML document of one file.
struct Doc {
    file: PathBuf,
    map: Mapping,
}

/// The Compose project-name rules: lowercase, only `[a-z0-9_-]`, not starting with `_` or `-`.
pub fn normalize_project_name(name: &str) -> String {
    let lowered: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    lowered.trim_start_matches(['_', '-']).to_string()
}

fn check_explicit_name(name: &str) -> Result<String, ComposeError> {
    if normalize_project_name(name) == name {
        Ok(name.to_string())
    } else {
        Err(ComposeError::ProjectName {
            name: name.to_string(),
            message: "must consist only of lowercase alphanumeric characters, hyphens, and underscores as well as start with a letter or number".to_string(),
        })
    }
}

/// `-p` > `COMPOSE_PROJECT_NAME` > `name:` (last file that sets it, interpolated and normalized) > the
/// project directory's name (normalized). An explicit name that is not already normal is an error.
fn project_name(
    opts: &ProjectOptions,
    environment: &BTreeMap<String, String>,
    docs: &[Doc],
    project_dir: &Path,
    unset: &mut Vec<String>,
) -> Result<String, ComposeError> {
    if let Some(p) = opts.project_name.as_deref().filter(|p| !p.is_empty()) {
        return check_explicit_name(p);
    }
    if let Some(p) = environment
        .get("COMPOSE_PROJECT_NAME")
        .filter(|p| !p.is_empty())
    {
        return check_explicit_name(p);
    }
    let mut from_yaml = None;
    for doc in docs {
        if let Some(raw) = doc.map.get("name").and_then(scalar_string)
            && !raw.is_empty()
        {
            from_yaml = Some((raw, &doc.file));
        }
    }
    if let Some((raw, file)) = from_yaml {
        let lookup = |k: &str| environment.get(k).cloned();
        let done =
            substitute(&raw, &lookup).map_err(|e| e.into_compose_error(file, "name", &raw))?;
        unset.extend(done.unset);
        let normalized = normalize_project_name(&done.value);
        if !normalized.is_empty() {
            return Ok(normalized);
        }
    }
    let dir_name = project_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let normalized = normalize_project_name(&dir_name);
    if normalized.is_empty() {
        return Err(ComposeError::ProjectName {
            name: dir_name,
            message: "project name must not be empty (the directory name has no usable character); use `-p` or `name:`".to_string(),
        });
    }
    Ok(normalized)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::compose::model::{
        Consistency, DEFAULT_HOOK_TIMEOUT, DumpRecipe, Hook, HookCommand, MountType, OnError, Tier,
    };

    #[test]
    fn project_name_normalization() {
        assert_eq!(normalize_project_name("MyProj"), "myproj");
        assert_eq!(normalize_project_name("Hello World!"), "helloworld");
        assert_eq!(normalize_project_name("__-app.v2"), "appv2");
        assert_eq!(normalize_project_name("été-2"), "t-2");
        assert_eq!(normalize_project_name("..."), "");
        assert!(check_explicit_name("my_app-1").is_ok());
        let err = check_explicit_name("My.App").unwrap_err();
        assert!(
            err.to_string().contains("invalid project name `My.App`"),
            "{err}"
        );
        assert!(check_explicit_name("-app").is_err());
    }

    /// Writes `files` (relative path → content) into a temp dir and loads it from there.
    fn load_in(
        files: &[(&str, &str)],
        tweak: impl FnOnce(&mut ProjectOptions),
    ) -> (tempfile::TempDir, Result<Project, ComposeError>) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("My_App");
        for (name, text) in files {
            let path = root.join(name);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(&path, text).unwrap();
        }
        fs_err::create_dir_all(&root).unwrap();
        let mut opts = ProjectOptions {
            working_dir: root,
            os_env: [("HOME".to_string(), "/home/u".to_string())].into(),
            ..Default::default()
        };
        tweak(&mut opts);
        let result = load_project(&opts);
        (tmp, result)
    }

    fn ok(files: &[(&str, &str)]) -> Project {
        let (_tmp, result) = load_in(files, |_| {});
        result.unwrap()
    }

    fn err(files: &[(&str, &str)]) -> ComposeError {
        let (_tmp, result) = load_in(files, |_| {});
        result.unwrap_err()
    }

    const WEB: &str =
        "services:\n  web:\n    image: web\n    volumes: [data:/data]\nvolumes:\n  data:\n";

    #[test]
    fn project_name_comes_from_the_directory_normalized() {
        let p = ok(&[("compose.yaml", WEB)]);
        assert_eq!(p.name, "my_app");
        assert_eq!(p.engine_volume_name("data").as_deref(), Some("my_app_data"));
        assert_eq!(p.directory.file_name().unwrap(), "My_App");
    }

    #[test]
    fn project_name_precedence() {
        let named = "name: From-Yaml\nservices: {}\n";
        assert_eq!(ok(&[("compose.yaml", named)]).name, "from-yaml");
        let (_t, p) = load_in(
            &[
                ("compose.yaml", named),
                (".env", "COMPOSE_PROJECT_NAME=from_env\n"),
            ],
            |_| {},
        );
        assert_eq!(p.unwrap().name, "from_env");
        let (_t, p) = load_in(
            &[
                ("compose.yaml", named),
                (".env", "COMPOSE_PROJECT_NAME=from_env\n"),
            ],
            |o| o.project_name = Some("from-flag".into()),
        );
        assert_eq!(p.unwrap().name, "from-flag");
        // The last file that sets `name:` wins; it is interpolated.
        let (_t, p) = load_in(
            &[("a.yml", named), ("b.yml", "name: ${SECOND:-second}\n")],
            |o| o.files = vec!["a.yml".into(), "b.yml".into()],
        );
        assert_eq!(p.unwrap().name, "second");
    }

    #[test]
    fn explicit_invalid_project_names_are_errors() {
        let (_t, r) = load_in(&[("compose.yaml", WEB)], |o| {
            o.project_name = Some("My.App".into())
        });
        assert!(matches!(r, Err(ComposeError::ProjectName { ref name, .. }) if name == "My.App"));
        let (_t, r) = load_in(&[("compose.yaml", WEB)], |o| {
            o.os_env
                .insert("COMPOSE_PROJECT_NAME".into(), "MyApp".into());
        });
        assert!(matches!(r, Err(ComposeError::ProjectName { ref name, .. }) if name == "MyApp"));
    }

    #[test]
    fn compose_project_name_is_available_for_interpolation() {
        let p = ok(&[(
            "compose.yaml",
            "name: demo\nservices:\n  web:\n    image: ${COMPOSE_PROJECT_NAME}-web\n",
        )]);
        assert_eq!(p.services["web"].image.as_deref(), Some("demo-web"));
        assert_eq!(
            p.environment
                .get("COMPOSE_PROJECT_NAME")
                .map(String::as_str),
            Some("demo")
        );
    }

    #[test]
    fn os_environment_wins_over_dotenv_in_interpolation() {
        let files = [
            (
                "compose.yaml",
                "services:\n  web:\n    image: app:${TAG}\n    volumes: [\"${DATA}:/data\"]\n",
            ),
            (".env", "TAG=dotenv\nDATA=./from-dotenv\n"),
        ];
        let (_t, p) = load_in(&files, |o| {
            o.os_env.insert("TAG".into(), "os".into());
        });
        let p = p.unwrap();
        assert_eq!(p.services["web"].image.as_deref(), Some("app:os"));
        let m = &p.services["web"].mounts[0];
        assert_eq!(m.source_as_written.as_deref(), Some("./from-dotenv"));
        assert!(
            m.source
                .as_deref()
                .unwrap()
                .ends_with("/My_App/from-dotenv")
        );
    }

    #[test]
    fn multi_file_merge_by_target_and_volume_fields() {
        let base = "services:\n  web:\n    image: web:1\n    volumes:\n      - data:/data\n      - ./code:/code\n\
                    volumes:\n  data:\n    labels: {a: \"1\"}\n    driver_opts: {o: bind}\n    x-persist: {tier: critical, keep: {daily: 7}}\n";
        let over = "services:\n  web:\n    volumes:\n      - ./other:/code:ro\n      - /srv/logs:/logs\n\
                    volumes:\n  data:\n    name: shared\n    labels: [b=2]\n    driver: local\n    x-persist: {keep: {weekly: 4}}\n";
        let (_t, p) = load_in(&[("base.yml", base), ("over.yml", over)], |o| {
            o.files = vec!["base.yml".into(), "over.yml".into()];
        });
        let p = p.unwrap();
        let mounts: Vec<(&str, Option<&str>, bool)> = p.services["web"]
            .mounts
            .iter()
            .map(|m| {
                (
                    m.target.as_str(),
                    m.source_as_written.as_deref(),
                    m.read_only,
                )
            })
            .collect();
        assert_eq!(
            mounts,
            vec![
                ("/data", Some("data"), false),
                ("/code", Some("./other"), true),
                ("/logs", Some("/srv/logs"), false)
            ]
        );
        let data = &p.volumes["data"];
        assert_eq!(data.name.as_deref(), Some("shared"));
        assert_eq!(data.driver.as_deref(), Some("local"));
        assert_eq!(data.labels.len(), 2);
        assert_eq!(data.driver_opts.get("o").map(String::as_str), Some("bind"));
        let persist = data.persist.as_ref().unwrap();
        assert_eq!(persist.tier, Some(Tier::Critical));
        assert_eq!(
            persist.raw,
            serde_json::json!({"tier": "critical", "keep": {"daily": 7, "weekly": 4}})
        );
        assert_eq!(p.engine_volume_name("data").as_deref(), Some("shared"));
    }

    #[test]
    fn reset_and_override_tags() {
        let base = "services:\n  web:\n    image: web\n    container_name: c1\n    depends_on: [db]\n\
                    \x20   volumes: [./a:/a, ./b:/b]\n    tmpfs: [/t1]\n  db:\n    image: db\nvolumes:\n  gone:\n  kept:\n";
        let over = "services:\n  web:\n    container_name: !reset null\n    depends_on: !reset []\n\
                    \x20   volumes: !override\n      - ./c:/c\n    tmpfs: !reset []\nvolumes:\n  gone: !reset\n";
        let p = ok(&[("compose.yaml", base), ("compose.override.yaml", over)]);
        let web = &p.services["web"];
        assert_eq!(web.container_name, None);
        assert!(web.depends_on.is_empty());
        let targets: Vec<&str> = web.mounts.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/c"]);
        assert_eq!(p.volumes.keys().collect::<Vec<_>>(), ["kept"]);
    }

    #[test]
    fn tmpfs_key_and_long_syntax_give_tmpfs_mounts() {
        let p = ok(&[(
            "compose.yaml",
            "services:\n  a:\n    image: x\n    tmpfs: /run:size=1m\n    volumes:\n      - type: tmpfs\n        target: /cache/\n",
        )]);
        let kinds: Vec<(MountType, &str)> = p.services["a"]
            .mounts
            .iter()
            .map(|m| (m.kind, m.target.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [(MountType::Tmpfs, "/cache"), (MountType::Tmpfs, "/run")]
        );
    }

    #[test]
    fn long_syntax_errors_name_the_service() {
        for (entry, needle) in [
            ("{source: ./a, target: /a}", "needs `type`"),
            ("{type: bind, target: /a}", "needs a `source`"),
            ("{type: volume, source: data}", "missing a mount target"),
            (
                "{type: bogus, source: a, target: /a}",
                "unknown type `bogus`",
            ),
            (
                "{type: bind, source: ./a, target: /a, read_only: maybe}",
                "`read_only` must be a boolean",
            ),
        ] {
            let e = err(&[(
                "compose.yaml",
                &format!("services:\n  web:\n    image: x\n    volumes: [{entry}]\n"),
            )]);
            match e {
                ComposeError::InvalidMount {
                    service, message, ..
                } => {
                    assert_eq!(service, "web");
                    assert!(message.contains(needle), "{entry}: {message}");
                }
                other => panic!("{entry}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn invalid_x_persist_names_where() {
        let e = err(&[(
            "compose.yaml",
            "services: {}\nvolumes:\n  db:\n    x-persist: {tier: gold}\n",
        )]);
        assert_eq!(
            e.to_string(),
            "invalid `x-persist` in volume `db`: `gold` is not a tier (expected one of: critical, important, regenerable, optional)"
        );
        let e = err(&[(
            "compose.yaml",
            "services:\n  web:\n    image: x\n    volumes:\n      - type: bind\n        source: ./d\n        target: /data\n        x-persist: {tier: 3}\n",
        )]);
        match e {
            ComposeError::InvalidPersist { location, .. } => {
                assert_eq!(location, "service `web` mount `/data`")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn undefined_named_volume_is_a_warning_and_an_implicit_volume() {
        let p = ok(&[(
            "compose.yaml",
            "services:\n  web:\n    image: x\n    volumes: [data:/data]\n",
        )]);
        assert!(
            p.warnings[0].starts_with("service `web` refers to undefined volume `data`"),
            "{:?}",
            p.warnings
        );
        assert_eq!(
            p.volumes["data"].engine_name(&p.name),
            format!("{}_data", p.name)
        );
    }

    #[test]
    fn top_level_volume_forms() {
        let p = ok(&[(
            "compose.yaml",
            "services: {}\nvolumes:\n  nul:\n  empty: {}\n  ext: {external: true}\n  exts: {external: \"true\"}\n\
             \x20 legacy: {external: {name: real}}\n  named: {name: \"${N:-custom}\"}\n  blank: {name: \"\"}\n",
        )]);
        let names: Vec<(String, String)> = p
            .volumes
            .keys()
            .map(|k| (k.clone(), p.engine_volume_name(k).unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                ("nul", "my_app_nul"),
                ("empty", "my_app_empty"),
                ("ext", "ext"),
                ("exts", "exts"),
                ("legacy", "real"),
                ("named", "custom"),
                ("blank", "my_app_blank"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert!(p.volumes["legacy"].external);
        let e = err(&[(
            "compose.yaml",
            "services: {}\nvolumes:\n  v: {name: a, external: {name: b}}\n",
        )]);
        assert!(
            matches!(e, ComposeError::InvalidVolume { ref volume, .. } if volume == "v"),
            "{e}"
        );
    }

    #[test]
    fn extends_in_the_same_file_and_another_file() {
        let p = ok(&[
            (
                "compose.yaml",
                "services:\n  base:\n    image: b\n    volumes: [./a:/a, v1:/v]\n  child:\n    extends: base\n    volumes: [./c:/a]\n\
                 \x20 grandchild:\n    extends: {service: child}\n    image: g\n\
                 \x20 remote:\n    extends: {file: lib/common.yaml, service: tmpl}\nvolumes:\n  v1:\n  v2:\n",
            ),
            (
                "lib/common.yaml",
                "services:\n  tmpl:\n    image: t\n    volumes: [./data:/d, v2:/v2]\n",
            ),
        ]);
        let sources = |svc: &str| -> Vec<String> {
            p.services[svc]
                .mounts
                .iter()
                .map(|m| format!("{}<-{}", m.target, m.source.as_deref().unwrap_or("")))
                .collect()
        };
        let root = p.directory.to_string_lossy().into_owned();
        assert_eq!(
            sources("child"),
            [format!("/a<-{root}/c"), "/v<-v1".to_string()]
        );
        assert_eq!(p.services["grandchild"].image.as_deref(), Some("g"));
        assert_eq!(sources("grandchild"), sources("child"));
        assert_eq!(p.services["remote"].image.as_deref(), Some("t"));
        // Relative paths of the extended file resolve against that file's directory.
        assert_eq!(
            sources("remote"),
            [format!("/d<-{root}/lib/data"), "/v2<-v2".to_string()]
        );
    }

    #[test]
    fn extends_errors() {
        let e = err(&[(
            "compose.yaml",
            "services:\n  a:\n    extends: b\n  b:\n    extends: a\n",
        )]);
        assert!(e.to_string().contains("circular `extends`"), "{e}");
        let e = err(&[("compose.yaml", "services:\n  a:\n    extends: nope\n")]);
        assert!(
            e.to_string().contains("cannot extend service `nope`"),
            "{e}"
        );
    }

    #[test]
    fn empty_project_is_an_error_but_an_empty_override_is_not() {
        for text in ["", "# nothing\n", "version: '3'\n", "{}\n"] {
            let e = err(&[("compose.yaml", text)]);
            assert!(
                matches!(e, ComposeError::Structure { ref message, .. } if message == "empty compose file"),
                "{text:?}: {e}"
            );
        }
        let p = ok(&[("compose.yaml", WEB), ("compose.override.yml", "")]);
        assert_eq!(p.files.len(), 2);
        assert_eq!(p.services.len(), 1);
    }

    #[test]
    fn structure_errors_name_the_file() {
        let e = err(&[("compose.yaml", "services:\n")]);
        assert!(
            matches!(e, ComposeError::Structure { ref message, .. } if message == "services must be a mapping"),
            "{e}"
        );
        let e = err(&[("compose.yaml", "services:\n  web: [a]\n")]);
        assert!(
            e.to_string().contains("services.web must be a mapping"),
            "{e}"
        );
        let e = err(&[("compose.yaml", "- a\n")]);
        assert!(e.to_string().contains("compose.yaml"), "{e}");
    }

    #[test]
    fn yaml_error_from_a_file_has_its_location() {
        let e = err(&[(
            "compose.yaml",
            "services:\n  web:\n    image: x\n   bad: [\n",
        )]);
        match e {
            ComposeError::Yaml { path, line, .. } => {
                assert!(path.ends_with("My_App/compose.yaml"));
                assert!(line >= 4, "line {line}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn interpolation_errors_name_file_and_value() {
        let e = err(&[(
            "compose.yaml",
            "services:\n  web:\n    image: \"app:${TAG\"\n",
        )]);
        match &e {
            ComposeError::Interpolation {
                path,
                value,
                message,
            } => {
                assert!(path.ends_with("compose.yaml"));
                assert_eq!(value, "app:${TAG");
                assert!(message.contains("services.web.image"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = err(&[(
            "compose.yaml",
            "services:\n  web:\n    image: \"${TAG:?}\"\n",
        )]);
        assert_eq!(e.to_string(), "required variable `TAG` is missing a value");
    }

    #[test]
    fn x_persist_hooks_and_dump_parse_with_defaults() {
        let p = ok(&[(
            "compose.yaml",
            "x-persist:\n  hooks:\n    post: [{service: db, command: [redis-cli, 1], on_error: Continue}]\nservices:\n  db:\n    image: x\n    volumes:\n      - type: bind\n        source: ./d\n        target: /data\n        x-persist: {hooks: {pre: [{service: db, command: sync, timeout: 500ms}]}}\nvolumes:\n  data:\n    x-persist:\n      consistency: dump\n      dump: Postgres\n      hooks:\n        pre:\n          - {service: db, command: \"psql -c 'CHECKPOINT'\", timeout: 2m}\n          - {service: db, command: x, timeout: 90}\n",
        )]);
        assert_eq!(
            p.hooks.post,
            [Hook {
                service: "db".into(),
                command: HookCommand::Exec(vec!["redis-cli".into(), "1".into()]),
                timeout: DEFAULT_HOOK_TIMEOUT,
                on_error: OnError::Continue,
            }]
        );
        assert!(p.hooks.pre.is_empty());
        let data = p.volumes["data"].persist.as_ref().unwrap();
        assert_eq!(data.dump, Some(DumpRecipe::Postgres));
        assert_eq!(data.hooks.pre.len(), 2);
        assert_eq!(
            data.hooks.pre[0].command,
            HookCommand::Shell("psql -c 'CHECKPOINT'".into())
        );
        assert_eq!(
            data.hooks.pre[0].command.argv(),
            ["sh", "-c", "psql -c 'CHECKPOINT'"]
        );
        assert_eq!(
            data.hooks.pre[0].timeout,
            std::time::Duration::from_secs(120)
        );
        assert_eq!(data.hooks.pre[0].on_error, OnError::Fail);
        assert_eq!(
            data.hooks.pre[1].timeout,
            std::time::Duration::from_secs(90)
        );
        let bind = p.services["db"].mounts[0].persist.as_ref().unwrap();
        assert_eq!(
            bind.hooks.pre[0].timeout,
            std::time::Duration::from_millis(500)
        );
    }

    #[test]
    fn invalid_hooks_and_dump_name_where_and_what() {
        for (yaml, message) in [
            (
                "services: {db: {image: x}}\nvolumes:\n  v:\n    x-persist: {dump: sqlite}\n",
                "invalid `x-persist` in volume `v`: `sqlite` is not a dump recipe (expected one of: postgres, mysql, mariadb, redis, mongodb)",
            ),
            (
                "services: {db: {image: x}}\nvolumes:\n  v:\n    x-persist: {hooks: [{service: db, command: x}]}\n",
                "invalid `x-persist` in volume `v`: `hooks` must be a mapping with `pre` and/or `post`, not `[{\"service\":\"db\",\"command\":\"x\"}]`",
            ),
            (
                "services: {db: {image: x}}\nvolumes:\n  v:\n    x-persist: {hooks: {before: []}}\n",
                "invalid `x-persist` in volume `v`: `hooks` has an unknown key `before` (expected `pre` and/or `post`)",
            ),
            (
                "services: {db: {image: x}}\nvolumes:\n  v:\n    x-persist: {hooks: {pre: [{command: x}]}}\n",
                "invalid `x-persist` in volume `v`: `hooks.pre[0]`: `service` must name the service whose container runs the hook",
            ),
            (
                "services: {db: {image: x}}\nvolumes:\n  v:\n    x-persist: {hooks: {post: [{service: db, command: []}]}}\n",
                "invalid `x-persist` in volume `v`: `hooks.post[0]`: `command` must be a non-empty string (run with `sh -c`) or list (run as is)",
            ),
            (
                "services: {db: {image: x}}\nvolumes:\n  v:\n    x-persist: {hooks: {pre: [{service: db, command: x, timeout: 3 days}]}}\n",
                "invalid `x-persist` in volume `v`: `hooks.pre[0]`: `timeout` must be a duration like `30s`, `2m` or `1h` (or seconds), not `\"3 days\"`",
            ),
            (
                "services: {db: {image: x}}\nvolumes:\n  v:\n    x-persist: {hooks: {pre: [{service: db, command: x, timeout: 0s}]}}\n",
                "invalid `x-persist` in volume `v`: `hooks.pre[0]`: `timeout` must be a duration like `30s`, `2m` or `1h` (or seconds), not `\"0s\"`",
            ),
            (
                "services: {db: {image: x}}\nvolumes:\n  v:\n    x-persist: {hooks: {pre: [{service: db, command: x, on_error: ignore}]}}\n",
                "invalid `x-persist` in volume `v`: `hooks.pre[0]`: `on_error` must be `fail` or `continue`, not `ignore`",
            ),
            (
                "services: {db: {image: x}}\nvolumes:\n  v:\n    x-persist: {hooks: {pre: [{service: db, command: x, retries: 3}]}}\n",
                "invalid `x-persist` in volume `v`: `hooks.pre[0]`: unknown key `retries` (expected service, command, timeout, on_error)",
            ),
            (
                "x-persist: {hooks: {post: [{service: web, command: x}]}}\nservices: {db: {image: x}}\n",
                "invalid `x-persist` in the top-level `x-persist`: the hook runs in service `web`, which the project does not define",
            ),
        ] {
            assert_eq!(
                err(&[("compose.yaml", yaml)]).to_string(),
                message,
                "{yaml}"
            );
        }
    }

    #[test]
    fn x_persist_consistency_is_validated_like_tiers() {
        let p = ok(&[(
            "compose.yaml",
            "x-persist: {consistency: Live}\nservices:\n  web:\n    image: x\n    volumes:\n      - type: bind\n        source: ./d\n        target: /data\n        x-persist: {consistency: stop}\nvolumes:\n  db:\n    x-persist: {consistency: dump}\n",
        )]);
        assert_eq!(p.consistency, Some(Consistency::Live));
        assert_eq!(
            p.volumes["db"].persist.as_ref().unwrap().consistency,
            Some(Consistency::Dump)
        );
        assert_eq!(
            p.services["web"].mounts[0]
                .persist
                .as_ref()
                .unwrap()
                .consistency,
            Some(Consistency::Stop)
        );
        let e = err(&[(
            "compose.yaml",
            "services: {}\nvolumes:\n  db:\n    x-persist: {consistency: snapshot}\n",
        )]);
        assert_eq!(
            e.to_string(),
            "invalid `x-persist` in volume `db`: `snapshot` is not a consistency mode (expected one of: auto, stop, live, dump)"
        );
        let e = err(&[(
            "compose.yaml",
            "x-persist: {consistency: [stop]}\nservices: {}\n",
        )]);
        assert_eq!(
            e.to_string(),
            "invalid `x-persist` in the top-level `x-persist`: `consistency` must be one of auto, stop, live, dump, not `[\"stop\"]`"
        );
    }

    #[test]
    fn x_extensions_are_interpolated_and_top_level_persist_kept() {
        let p = ok(&[(
            "compose.yaml",
            "x-persist:\n  dir: ${BACKUPS:-./backups}\n  keep: 3\nservices: {}\n",
        )]);
        assert_eq!(
            p.persist,
            serde_json::json!({"dir": "./backups", "keep": 3})
        );
        let e = err(&[(
            "compose.yaml",
            "x-other:\n  a: ${NEEDED?set NEEDED}\nservices: {}\n",
        )]);
        assert!(
            matches!(e, ComposeError::MissingVariable { ref name, .. } if name == "NEEDED"),
            "{e}"
        );
        let p = ok(&[("compose.yaml", WEB)]);
        assert_eq!(p.persist, serde_json::Value::Null);
    }

    #[test]
    fn warnings_are_collected_once() {
        let p = ok(&[(
            "compose.yaml",
            "version: '3'\nservices:\n  a:\n    image: ${NOPE}\n  b:\n    image: ${NOPE}\n",
        )]);
        let unset: Vec<&String> = p.warnings.iter().filter(|w| w.contains("NOPE")).collect();
        assert_eq!(
            unset,
            ["The \"NOPE\" variable is not set. Defaulting to a blank string."]
        );
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("`version` is obsolete"))
        );
    }

    #[test]
    fn discovery_found_files_are_absolute_and_ordered() {
        let (_t, p) = load_in(
            &[
                ("compose.yml", WEB),
                ("docker-compose.yml", WEB),
                ("compose.override.yaml", "services: {}\n"),
            ],
            |o| o.working_dir = o.working_dir.join("sub/dir"),
        );
        // The start dir does not exist; discovery still walks up from it.
        let p = p.unwrap();
        let names: Vec<String> = p
            .files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["compose.yml", "compose.override.yaml"]);
        assert!(p.files.iter().all(|f| f.is_absolute()));
        assert!(
            p.warnings
                .iter()
                .any(|w| w.starts_with("Found multiple config files"))
        );
    }

    #[test]
    fn missing_file_option_is_a_read_error_naming_it() {
        let (_t, r) = load_in(&[("compose.yaml", WEB)], |o| {
            o.files = vec!["nope.yml".into()]
        });
        match r {
            Err(ComposeError::Read { path, .. }) => {
                assert!(path.ends_with("My_App/nope.yml"), "{path:?}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
