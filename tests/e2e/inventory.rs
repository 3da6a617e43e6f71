//! `ls` and `inspect` against real projects: before `up`, after Compose v2 and v1 bring them up, with
//! external, anonymous, bind and orphan data; and how bad input is reported.

use serde_json::Value;

use crate::support::{COMPOSE_PROJECT_LABEL, RUN_LABEL, TestEnv};

/// A project with one of every kind of data, and a tier from each source.
const SHOP: &str = r#"
services:
  db:
    image: postgres:16
    volumes:
      - dbdata:/var/lib/postgresql/data
      - ./init.sql:/docker-entrypoint-initdb.d/init.sql:ro
  cache:
    image: redis:7
    volumes:
      - redisdata:/data
  web:
    image: node:20
    volumes:
      - /app/node_modules
      - ./uploads:/app/uploads
      - scratch:/scratch
      - shared:/shared:ro
      - type: bind
        source: ./state
        target: /srv/state
        x-persist: { tier: critical, consistency: live }
  proxy:
    image: nginx:1
    volumes:
      - ./nginx.conf:/etc/nginx/nginx.conf:ro
      - shared:/usr/share/nginx/html
volumes:
  dbdata:
    labels:
      persist.test.run: "{{RUN}}"
  redisdata:
    labels:
      persist.test.run: "{{RUN}}"
  scratch:
    labels:
      persist.test.run: "{{RUN}}"
    x-persist:
      tier: optional
  shared:
    name: "{{PROJECT}}-shared"
    labels:
      persist.test.run: "{{RUN}}"
  ext:
    external: true
    name: "{{PROJECT}}-ext"
"#;

fn write_shop(env: &TestEnv) {
    env.write_project(SHOP, None);
    env.write_file("init.sql", "create table t (x int);\n");
    env.write_file("nginx.conf", "events {}\n");
    env.write_file("uploads/a.bin", &"u".repeat(1234));
    env.write_file("uploads/sub/b.bin", &"v".repeat(766));
    env.write_file("state/s", "state\n");
}

/// The `ls --json` entry with `key`.
#[track_caller]
fn item<'a>(ls: &'a Value, key: &str) -> &'a Value {
    crate::support::volume_entry(ls, key)
}

fn keys(ls: &Value) -> Vec<String> {
    ls["volumes"]
        .as_array()
        .expect("volumes is an array")
        .iter()
        .map(|v| v["key"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn ls_before_up_lists_every_piece_of_data_with_tier_and_reason() {
    let env = TestEnv::new();
    write_shop(&env);
    let ls = env.persist(["ls", "--json"]);
    ls.assert_success();
    let ls = ls.json();
    assert_eq!(ls["schema_version"], 1);
    assert_eq!(ls["project"], env.project.as_str());
    let p = &env.project;
    let dir = env.project_dir.display().to_string();

    let expect = [
        // key, engine name, kind, tier, tier_source, removed by down -v
        (
            "dbdata",
            format!("{p}_dbdata"),
            "named",
            "critical",
            "rule",
            true,
        ),
        (
            "redisdata",
            format!("{p}_redisdata"),
            "named",
            "important",
            "rule",
            true,
        ),
        (
            "scratch",
            format!("{p}_scratch"),
            "named",
            "optional",
            "x-persist",
            true,
        ),
        (
            "shared",
            format!("{p}-shared"),
            "named",
            "important",
            "default",
            true,
        ),
        (
            "ext",
            format!("{p}-ext"),
            "external",
            "important",
            "default",
            false,
        ),
        (
            "./uploads",
            format!("{dir}/uploads"),
            "bind",
            "critical",
            "rule",
            false,
        ),
        (
            "./state",
            format!("{dir}/state"),
            "bind",
            "critical",
            "x-persist",
            false,
        ),
        (
            "./init.sql",
            format!("{dir}/init.sql"),
            "bind",
            "regenerable",
            "rule",
            false,
        ),
        (
            "./nginx.conf",
            format!("{dir}/nginx.conf"),
            "bind",
            "regenerable",
            "rule",
            false,
        ),
    ];
    for (key, name, kind, tier, source, removed) in &expect {
        let i = item(&ls, key);
        assert_eq!(i["name"], name.as_str(), "{key}: {i:#}");
        assert_eq!(i["kind"], *kind, "{key}: {i:#}");
        assert_eq!(i["tier"], *tier, "{key}: {i:#}");
        assert_eq!(i["tier_source"], *source, "{key}: {i:#}");
        assert_eq!(i["removed_by_down_v"], *removed, "{key}: {i:#}");
        assert!(
            i["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{key}: {i:#}"
        );
    }
    // Nothing exists on the engine yet; the bind mounts exist on this machine.
    for key in ["dbdata", "redisdata", "scratch", "shared", "ext"] {
        assert_eq!(item(&ls, key)["exists"], false, "{key}");
        assert_eq!(item(&ls, key)["size_bytes"], Value::Null, "{key}");
    }
    assert_eq!(item(&ls, "./uploads")["exists"], true);
    assert_eq!(item(&ls, "./uploads")["size_bytes"], 2000);

    let anon = item(&ls, "web:/app/node_modules");
    assert_eq!(anon["kind"], "anonymous");
    assert_eq!(anon["tier"], "regenerable");
    assert_eq!(anon["name"], Value::Null);
    assert_eq!(anon["removed_by_down_v"], true);

    // Reasons name their evidence; users list service, target and mode.
    assert_eq!(
        item(&ls, "dbdata")["reason"],
        "database data directory (`/var/lib/postgresql/data` in `db`)"
    );
    assert_eq!(
        item(&ls, "shared")["users"],
        serde_json::json!([
            {"service": "web", "target": "/shared", "read_only": true},
            {"service": "proxy", "target": "/usr/share/nginx/html", "read_only": false}
        ])
    );
    // How a backup would read each, and why.
    for (key, mode, why) in [
        ("dbdata", "stop", "auto: critical data"),
        ("redisdata", "stop", "auto: important data"),
        ("./state", "live", "x-persist of the volume"),
        ("web:/app/node_modules", "live", "auto: regenerable data"),
        ("scratch", "live", "auto: optional data"),
    ] {
        assert_eq!(item(&ls, key)["consistency"], mode, "{key}");
        assert_eq!(item(&ls, key)["consistency_reason"], why, "{key}");
    }
    // Most valuable first.
    let tiers: Vec<&str> = ls["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["tier"].as_str().unwrap())
        .collect();
    let rank = |t: &str| {
        ["critical", "important", "regenerable", "optional"]
            .iter()
            .position(|x| *x == t)
    };
    assert!(
        tiers.windows(2).all(|w| rank(w[0]) <= rank(w[1])),
        "{tiers:?}"
    );
    assert_eq!(keys(&ls).len(), expect.len() + 1);
}

#[test]
fn ls_table_before_up() {
    let env = TestEnv::new();
    write_shop(&env);
    let ran = env.persist(["ls"]);
    ran.assert_success();
    let dir = env.project_dir.display().to_string();
    let text = ran
        .stdout()
        .replace(&dir, "[DIR]")
        .replace(&env.project, "[PROJECT]");
    // Columns are aligned to the widest cell, which depends on the temp path; squeeze runs of spaces.
    let squeezed: String = text
        .lines()
        .map(|l| {
            l.split("   ")
                .filter(|c| !c.is_empty())
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!(squeezed);
    let summary = ran.stderr().replace(&env.project, "[PROJECT]");
    assert_eq!(
        summary.trim(),
        "Project `[PROJECT]`: 10 pieces of data (3 critical, 3 important, 3 regenerable, 1 optional); `docker compose down -v` would remove 5"
    );
}

#[test]
fn ls_json_before_up() {
    let env = TestEnv::new();
    write_shop(&env);
    let ran = env.persist(["ls", "--json"]);
    ran.assert_success();
    let dir = env.project_dir.display().to_string();
    let text = ran
        .stdout()
        .replace(&dir, "[DIR]")
        .replace(&env.project, "[PROJECT]");
    insta::assert_snapshot!(text);
}

#[test]
fn ls_after_compose_v2_up_reports_engine_state_and_sizes() {
    let env = TestEnv::new();
    write_shop(&env);
    env.volume_create(&format!("{}-ext", env.project));
    env.compose_v2(["up", "-d"]).assert_success();
    // 300 kB of data in the database volume.
    env.compose_v2([
        "exec",
        "-T",
        "db",
        "sh",
        "-c",
        "head -c 300000 /dev/zero > /var/lib/postgresql/data/blob",
    ])
    .assert_success();

    let ls = env.persist(["ls", "--json"]);
    ls.assert_success();
    let ls = ls.json();
    for key in ["dbdata", "redisdata", "scratch", "shared", "ext"] {
        assert_eq!(item(&ls, key)["exists"], true, "{key}: {ls:#}");
        assert_eq!(item(&ls, key)["declared"], true, "{key}");
    }
    let db = item(&ls, "dbdata");
    let size = db["size_bytes"]
        .as_u64()
        .expect("the engine reports a size");
    assert!((300_000..400_000).contains(&size), "size {size}");

    // The anonymous volume now has the engine's name for it.
    let anon = item(&ls, "web:/app/node_modules");
    let name = anon["name"].as_str().expect("anonymous volume has a name");
    assert_eq!(name.len(), 64, "{name}");
    assert!(name.chars().all(|c| c.is_ascii_hexdigit()), "{name}");
    assert_eq!(anon["exists"], true);
    env.track_volume(name);
    // No project volume appears twice or as an orphan.
    assert!(
        ls["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["declared"] == true),
        "{ls:#}"
    );

    // `--tier` filters.
    let critical = env.persist(["ls", "--json", "--tier", "critical"]);
    critical.assert_success();
    let mut k = keys(&critical.json());
    k.sort();
    assert_eq!(k, ["./state", "./uploads", "dbdata"]);
}

#[test]
fn ls_after_compose_v1_up_finds_volumes_v1_labels_by_name() {
    let env = TestEnv::new();
    write_shop(&env);
    env.volume_create(&format!("{}-ext", env.project));
    env.compose_v1(["up", "-d"]).assert_success();
    let ls = env.persist(["ls", "--json"]);
    ls.assert_success();
    let ls = ls.json();
    let shared = item(&ls, "shared");
    assert_eq!(shared["name"], format!("{}-shared", env.project).as_str());
    assert_eq!(shared["exists"], true);
    assert_eq!(shared["declared"], true);
    let anon = item(&ls, "web:/app/node_modules");
    assert_eq!(anon["exists"], true, "{ls:#}");
    env.track_volume(anon["name"].as_str().unwrap());
    assert!(
        ls["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["declared"] == true),
        "{ls:#}"
    );
}

#[test]
fn volumes_the_files_no_longer_declare_are_listed_and_not_removed_by_down_v() {
    let env = TestEnv::new();
    env.write_project(
        "services:\n  app:\n    image: busybox:latest\n    volumes: [data:/data]\nvolumes:\n  data:\n    labels: {persist.test.run: \"{{RUN}}\"}\n",
        None,
    );
    let orphan = format!("{}_old-uploads", env.project);
    env.docker([
        "volume",
        "create",
        "--label",
        &format!("{COMPOSE_PROJECT_LABEL}={}", env.project),
        "--label",
        "com.docker.compose.volume=old-uploads",
        "--label",
        &format!("{RUN_LABEL}={}", env.run),
        &orphan,
    ])
    .assert_success();
    let ls = env.persist(["ls", "--json"]);
    ls.assert_success();
    let ls = ls.json();
    let o = item(&ls, "old-uploads");
    assert_eq!(o["name"], orphan.as_str());
    assert_eq!(o["declared"], false);
    assert_eq!(o["exists"], true);
    assert_eq!(o["removed_by_down_v"], false);
    assert_eq!(o["tier"], "critical");
    assert!(
        o["reason"]
            .as_str()
            .unwrap()
            .starts_with("not in the Compose files; user uploads"),
        "{o:#}"
    );
}

#[test]
fn engine_label_sets_the_tier_when_the_file_does_not() {
    let env = TestEnv::new();
    env.write_project(
        "services:\n  db:\n    image: postgres:16\n    volumes: [pg:/var/lib/postgresql/data]\nvolumes:\n  pg:\n    labels: {persist.tier: regenerable, persist.test.run: \"{{RUN}}\"}\n",
        None,
    );
    env.compose_v2(["up", "-d"]).assert_success();
    let ls = env.persist(["ls", "--json"]);
    ls.assert_success();
    let pg = item(&ls.json(), "pg").clone();
    assert_eq!(pg["tier"], "regenerable");
    assert_eq!(pg["tier_source"], "label");
}

#[test]
fn inspect_shows_where_data_lives_and_which_containers_use_it() {
    let env = TestEnv::new();
    write_shop(&env);
    env.volume_create(&format!("{}-ext", env.project));
    env.compose_v2(["up", "-d"]).assert_success();
    let p = &env.project;

    let by_key = env.persist(["inspect", "dbdata", "--json"]);
    by_key.assert_success();
    let v = by_key.json();
    assert_eq!(v["schema_version"], 1);
    let vol = &v["volume"];
    assert_eq!(vol["name"], format!("{p}_dbdata").as_str());
    assert_eq!(vol["tier"], "critical");
    assert_eq!(vol["driver"], "local");
    assert!(
        vol["mountpoint"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{p}_dbdata/_data")),
        "{vol:#}"
    );
    assert_eq!(vol["labels"][COMPOSE_PROJECT_LABEL], p.as_str());
    let containers = vol["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{vol:#}");
    assert_eq!(containers[0]["service"], "db");
    assert_eq!(containers[0]["state"], "running");
    assert_eq!(containers[0]["target"], "/var/lib/postgresql/data");

    // The engine name finds the same volume; the shared one lists both of its containers.
    let by_name = env.persist(["inspect", &format!("{p}_dbdata"), "--json"]);
    by_name.assert_success();
    assert_eq!(by_name.json()["volume"]["key"], "dbdata");
    let shared = env.persist(["inspect", "shared", "--json"]);
    shared.assert_success();
    let mut services: Vec<String> = shared.json()["volume"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["service"].as_str().unwrap().to_string())
        .collect();
    services.sort();
    assert_eq!(services, ["proxy", "web"]);

    // A bind mount by its path, as written or absolute.
    let bind = env.persist(["inspect", "./uploads", "--json"]);
    bind.assert_success();
    let b = bind.json();
    assert_eq!(b["volume"]["kind"], "bind");
    assert_eq!(b["volume"]["size_bytes"], 2000);
    assert_eq!(b["volume"]["containers"][0]["service"], "web");

    // Human output names the same facts.
    let human = env.persist(["inspect", "dbdata"]);
    human.assert_success();
    let text = human.stdout();
    assert!(
        text.contains("Name:") && text.contains(&format!("{p}_dbdata")),
        "{human}"
    );
    assert!(
        text.contains("critical") && text.contains("running"),
        "{human}"
    );
    let anon = env.persist(["ls", "--json"]).json();
    env.track_volume(
        item(&anon, "web:/app/node_modules")["name"]
            .as_str()
            .unwrap(),
    );
}

#[test]
fn inspect_of_an_unknown_volume_is_a_usage_error_listing_the_keys() {
    let env = TestEnv::new();
    write_shop(&env);
    let ran = env.persist(["inspect", "nope"]);
    ran.assert_code(2);
    assert!(ran.stdout().is_empty(), "{ran}");
    let err = ran.stderr();
    assert!(
        err.starts_with(&format!(
            "error: project `{}` has no volume or bind mount `nope`\nhint: `docker persist ls` lists them: `dbdata`",
            env.project
        )),
        "{ran}"
    );
}

#[test]
fn broken_compose_file_names_file_line_and_column() {
    let env = TestEnv::new();
    env.write_project("services:\n  db:\n    image: [unclosed\n", None);
    let ran = env.persist(["ls"]);
    ran.assert_code(1);
    let path = env.project_dir.join("compose.yaml");
    let err = ran.stderr();
    assert!(
        err.starts_with(&format!(
            "error: invalid YAML in `{}` at line ",
            path.display()
        )),
        "{ran}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{ran}"
    );
}

#[test]
fn missing_required_variable_is_named_with_its_message() {
    let env = TestEnv::new();
    env.write_project(
        "services:\n  db:\n    image: postgres:16\n    environment:\n      PASSWORD: ${DB_PASSWORD:?set the database password}\n",
        None,
    );
    let ran = env.persist(["ls"]);
    ran.assert_code(1);
    assert!(
        ran.stderr().contains("`DB_PASSWORD`")
            && ran.stderr().contains("set the database password"),
        "{ran}"
    );
    assert!(ran.stderr().contains("hint: set `DB_PASSWORD`"), "{ran}");
    // With the variable in `.env`, it loads.
    env.write_file(".env", "DB_PASSWORD=secret\n");
    env.persist(["ls"]).assert_success();
}

#[test]
fn no_compose_file_is_a_clear_error() {
    let env = TestEnv::new();
    let ran = env.persist(["ls"]);
    ran.assert_code(1);
    assert!(
        ran.stderr().starts_with("error: no Compose file found in"),
        "{ran}"
    );
    assert!(ran.stderr().contains("hint: "), "{ran}");
}

#[test]
fn compose_options_select_files_project_and_env() {
    let env = TestEnv::new();
    env.write_file(
        "deploy/base.yml",
        "services:\n  db:\n    image: postgres:16\n    volumes: [\"${DATA_KEY:-data}:/var/lib/postgresql/data\"]\nvolumes:\n  data: {}\n  other: {}\n",
    );
    env.write_file(
        "deploy/prod.yml",
        "services:\n  db:\n    volumes: [\"other:/var/lib/postgresql/data\"]\n",
    );
    env.write_file("deploy/prod.env", "UNUSED=1\n");
    let ran = env.persist([
        "-f",
        "deploy/base.yml",
        "-f",
        "deploy/prod.yml",
        "-p",
        "shop_prod",
        "--env-file",
        "deploy/prod.env",
        "ls",
        "--json",
    ]);
    ran.assert_success();
    let ls = ran.json();
    assert_eq!(ls["project"], "shop_prod");
    // The override replaced the mount at the same target.
    assert_eq!(item(&ls, "other")["users"][0]["service"], "db");
    assert_eq!(item(&ls, "data")["users"], serde_json::json!([]));
    assert_eq!(item(&ls, "other")["name"], "shop_prod_other");
}

#[test]
fn host_flag_and_contexts_choose_the_engine() {
    let env = TestEnv::new();
    write_shop(&env);
    env.volume_create(&format!("{}-ext", env.project));
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());

    // -H before `persist`, as the Docker CLI passes it.
    let ran = env.persist_with_docker_flags(&["-H", &host], &["ls", "--json"]);
    ran.assert_success();
    assert_eq!(item(&ran.json(), "ext")["exists"], true);

    // An engine that is not there: one error line and a hint, exit 1.
    let ran = env.persist_with_docker_flags(&["-H", "unix:///nonexistent/docker.sock"], &["ls"]);
    ran.assert_code(1);
    let err = ran.stderr();
    assert!(
        err.starts_with(
            "error: cannot connect to the Docker engine at `unix:///nonexistent/docker.sock`"
        ),
        "{ran}"
    );
    assert!(
        err.contains("hint: is the Docker daemon running? `docker context ls` shows where docker persist connects"),
        "{ran}"
    );

    // A context made by `docker context create`, chosen by --context and by DOCKER_CONTEXT.
    let ctx = format!("dp-{}", env.project);
    env.docker([
        "context",
        "create",
        &ctx,
        "--docker",
        &format!("host={host}"),
    ])
    .assert_success();
    let ran = env.persist_with_docker_flags(&["--context", &ctx], &["ls", "--json"]);
    ran.assert_success();
    assert_eq!(item(&ran.json(), "ext")["exists"], true);
    let mut cmd = env.command(crate::support::plugin_binary());
    cmd.env_remove("DOCKER_HOST")
        .env("DOCKER_CONTEXT", &ctx)
        .args(["ls", "--json", "-v"]);
    let ran = env.run(cmd);
    ran.assert_success();
    assert!(ran.stderr().contains(&format!("context `{ctx}`")), "{ran}");

    // A context that points nowhere.
    let dead = format!("dead-{}", env.project);
    env.docker([
        "context",
        "create",
        &dead,
        "--docker",
        "host=unix:///nonexistent/docker.sock",
    ])
    .assert_success();
    let ran = env.persist_with_docker_flags(&["--context", &dead], &["ls"]);
    ran.assert_code(1);
    assert!(
        ran.stderr().contains("hint: is the Docker daemon running?"),
        "{ran}"
    );

    // A context that does not exist (run directly: the Docker CLI itself refuses before the plugin).
    let ran = env.plugin(["--context", "no-such-context", "ls"]);
    ran.assert_code(1);
    assert!(
        ran.stderr()
            .contains("context `no-such-context` does not exist")
            || ran.stderr().contains("`no-such-context`"),
        "{ran}"
    );
    assert!(ran.stderr().contains("hint: `docker context ls`"), "{ran}");
}

/// A private engine on `tcp://127.0.0.1:PORT` with mutual TLS (`scripts/tls-dockerd.sh`), stopped when
/// dropped.
struct TlsEngine {
    dir: std::path::PathBuf,
    port: u16,
}

impl TlsEngine {
    fn start(env: &TestEnv) -> TlsEngine {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir = env.home.join("tls-engine");
        let engine = TlsEngine { dir, port };
        let ran = env.run(engine.script("start"));
        ran.assert_success();
        engine
    }

    fn script(&self, verb: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(crate::support::repo_root().join("scripts/tls-dockerd.sh"))
            .arg(verb)
            .env("PERSIST_TLS_DIR", &self.dir)
            .env("PERSIST_TLS_PORT", self.port.to_string())
            .env("PERSIST_TLS_BRIDGE", format!("dptls{}", self.port));
        cmd
    }

    fn host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn client(&self, file: &str) -> String {
        self.dir.join("client").join(file).display().to_string()
    }
}

impl Drop for TlsEngine {
    fn drop(&mut self) {
        let _ = self.script("stop").output();
    }
}

#[test]
fn tcp_engine_with_tls_by_flags_environment_and_context() {
    let env = TestEnv::new();
    write_shop(&env);
    // The external volume exists on the usual engine only: seen from the TLS engine it does not.
    env.volume_create(&format!("{}-ext", env.project));
    let tls = TlsEngine::start(&env);
    let (ca, cert, key) = (
        tls.client("ca.pem"),
        tls.client("cert.pem"),
        tls.client("key.pem"),
    );

    let flags = [
        "-H",
        &tls.host(),
        "--tlsverify",
        "--tlscacert",
        &ca,
        "--tlscert",
        &cert,
        "--tlskey",
        &key,
    ];
    let ran = env.persist_with_docker_flags(&flags, &["ls", "--json"]);
    ran.assert_success();
    assert_eq!(item(&ran.json(), "ext")["exists"], false, "{ran}");

    // The same through DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH.
    let mut cmd = env.command(crate::support::plugin_binary());
    cmd.env("DOCKER_HOST", tls.host())
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", tls.dir.join("client"))
        .args(["ls", "--json"]);
    let ran = env.run(cmd);
    ran.assert_success();
    assert_eq!(item(&ran.json(), "ext")["exists"], false, "{ran}");

    // A context with TLS material, as `docker context create` stores it.
    let ctx = format!("tls-{}", env.project);
    env.docker([
        "context",
        "create",
        &ctx,
        "--docker",
        &format!("host={},ca={ca},cert={cert},key={key}", tls.host()),
    ])
    .assert_success();
    let ran = env.persist_with_docker_flags(&["--context", &ctx], &["ls", "--json"]);
    ran.assert_success();
    assert_eq!(item(&ran.json(), "ext")["exists"], false, "{ran}");

    // Without a client certificate the engine refuses: one error, a hint about certificates, exit 1.
    let nocert = tls.dir.join("client-nocert/ca.pem").display().to_string();
    let ran = env.persist_with_docker_flags(
        &["-H", &tls.host(), "--tlsverify", "--tlscacert", &nocert],
        &["ls"],
    );
    ran.assert_code(1);
    assert!(
        ran.stderr()
            .starts_with("error: cannot connect to the Docker engine at"),
        "{ran}"
    );
    assert!(
        ran.stderr().contains("hint: check the certificates"),
        "{ran}"
    );
}

/// Removes an image the test made, whatever happens.
struct ImageGuard(String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = crate::support::docker(["image", "rm", "--force", self.0.as_str()]);
    }
}

#[test]
fn an_image_volume_declaration_marks_data_and_classification_works_without_the_image() {
    let env = TestEnv::new();
    let image = format!("persist-test/volume-decl-{}:1", env.project);
    let guard = ImageGuard(image.clone());
    // An image that declares `VOLUME /var/opt/app/state`, made from the local test image.
    let created = env.docker([
        "create",
        "--label",
        &format!("{RUN_LABEL}={}", crate::support::run_id()),
        "busybox:latest",
        "true",
    ]);
    created.assert_success();
    let container = created.stdout().trim().to_string();
    env.docker([
        "commit",
        "--change",
        "VOLUME /var/opt/app/state",
        "--change",
        &format!("LABEL {RUN_LABEL}={}", crate::support::run_id()),
        container.as_str(),
        image.as_str(),
    ])
    .assert_success();
    env.docker(["rm", "--force", container.as_str()])
        .assert_success();
    env.write_project(
        &format!(
            "services:\n  app:\n    image: {image}\n    volumes:\n      - state:/var/opt/app/state\nvolumes:\n  state:\n    labels:\n      {RUN_LABEL}: \"{{{{RUN}}}}\"\n"
        ),
        None,
    );

    let ls = env.persist(["ls", "--json"]);
    ls.assert_success();
    let ls = ls.json();
    assert_eq!(item(&ls, "state")["tier"], "critical", "{ls:#}");
    assert_eq!(item(&ls, "state")["rule"], "image-volume", "{ls:#}");

    // Without the image (before `pull`), the same path is unknown data: important by default.
    drop(guard);
    let ls = env.persist(["ls", "--json"]);
    ls.assert_success();
    let ls = ls.json();
    assert_eq!(item(&ls, "state")["tier"], "important", "{ls:#}");
    assert_eq!(item(&ls, "state")["tier_source"], "default", "{ls:#}");
}
