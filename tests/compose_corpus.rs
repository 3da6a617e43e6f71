//! Every file of the Compose corpus (`$DOCKER_PERSIST_CORPUS`, else `tests/fixtures/compose-corpus`) must load,
//! with the variables its project's `.env` would set (`tests/fixtures/compose/corpus-env.json`), and a few
//! facts about each are checked. The negative cases of the corpus INDEX.md ("Expected behaviour notes") are
//! checked too: a missing `${VAR:?message}` names the variable and the message, and a source left empty by
//! an unset variable is a clear error naming the service and the spec.
//!
//! A file added to the corpus without facts here fails the test, so the list stays complete.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use docker_persist::compose::{
    ComposeError, Mount, MountType, Project, ProjectOptions, Tier, load_project,
};
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("DOCKER_PERSIST_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose-corpus")
        });
    assert!(
        dir.is_dir(),
        "the Compose corpus is missing: `{}` is not a directory (set DOCKER_PERSIST_CORPUS to it)",
        dir.display()
    );
    fs_err::canonicalize(&dir).expect("canonical corpus dir")
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose")
}

fn needs() -> Value {
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

fn extra_files(needs: &Value, file: &str) -> Vec<PathBuf> {
    needs["files"][file]["extra_files"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|f| fixtures_dir().join(f))
                .collect()
        })
        .unwrap_or_default()
}

fn try_load(
    file: &str,
    env: BTreeMap<String, String>,
    extra: Vec<PathBuf>,
) -> Result<Project, ComposeError> {
    let dir = corpus_dir();
    let mut files = vec![dir.join(file)];
    files.extend(extra);
    load_project(&ProjectOptions {
        files,
        working_dir: dir,
        os_env: env,
        ..Default::default()
    })
}

/// Loads a corpus file with everything it needs.
fn load(file: &str) -> Project {
    let needs = needs();
    try_load(file, env_for(&needs, file), extra_files(&needs, file))
        .unwrap_or_else(|e| panic!("{file} does not load: {e}"))
}

/// The project name the corpus directory gives a file without `name:`.
fn dir_project_name() -> String {
    let base = corpus_dir()
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    base.chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect::<String>()
        .trim_start_matches(['_', '-'])
        .to_string()
}

fn mount<'a>(p: &'a Project, service: &str, target: &str) -> &'a Mount {
    let svc = p
        .services
        .get(service)
        .unwrap_or_else(|| panic!("no service `{service}`"));
    svc.mounts
        .iter()
        .find(|m| m.target == target)
        .unwrap_or_else(|| {
            panic!(
                "service `{service}` has no mount at `{target}`: {:?}",
                svc.mounts
            )
        })
}

/// Asserts a bind mount of `service` at `target` from `source` (relative to the corpus dir unless absolute).
fn assert_bind(p: &Project, service: &str, target: &str, source: &str, read_only: bool) {
    let m = mount(p, service, target);
    assert_eq!(m.kind, MountType::Bind, "{service} {target}");
    let expected = if source.starts_with('/') {
        source.to_string()
    } else if source == "." {
        corpus_dir().to_string_lossy().into_owned()
    } else {
        corpus_dir().join(source).to_string_lossy().into_owned()
    };
    assert_eq!(
        m.source.as_deref(),
        Some(expected.as_str()),
        "{service} {target}"
    );
    assert_eq!(m.read_only, read_only, "{service} {target} read-only");
}

/// Asserts a named volume `key` mounted by `service` at `target`.
fn assert_named(p: &Project, service: &str, target: &str, key: &str, read_only: bool) {
    let m = mount(p, service, target);
    assert_eq!(m.kind, MountType::Volume, "{service} {target}");
    assert_eq!(m.source.as_deref(), Some(key), "{service} {target}");
    assert_eq!(m.read_only, read_only, "{service} {target} read-only");
    assert!(p.volumes.contains_key(key), "volume `{key}` is declared");
}

fn engine(p: &Project, key: &str) -> String {
    p.engine_volume_name(key)
        .unwrap_or_else(|| panic!("no top-level volume `{key}`"))
}

fn default_engine(p: &Project, key: &str) -> String {
    format!("{}_{key}", p.name)
}

fn keys(p: &Project) -> Vec<&str> {
    p.volumes.keys().map(String::as_str).collect()
}

type Check = fn(&Project);

const CHECKS: &[(&str, Check)] = &[
    ("01-mastodon-mastodon-prod.yml", |p| {
        assert_eq!(p.name, dir_project_name());
        assert!(p.volumes.is_empty());
        assert_bind(p, "db", "/var/lib/postgresql/data", "postgres14", false);
        assert_bind(p, "redis", "/data", "redis", false);
        assert_bind(p, "web", "/mastodon/public/system", "public/system", false);
        assert_eq!(p.services.len(), 5);
    }),
    ("02-immich-app-immich-server.yml", |p| {
        assert_eq!(p.name, "immich");
        assert_eq!(keys(p), ["model-cache"]);
        assert_eq!(engine(p, "model-cache"), "immich_model-cache");
        assert_bind(p, "immich-server", "/data", "library", false);
        assert_eq!(
            mount(p, "immich-server", "/data")
                .source_as_written
                .as_deref(),
            Some("./library")
        );
        assert_bind(p, "immich-server", "/etc/localtime", "/etc/localtime", true);
        assert_bind(p, "database", "/var/lib/postgresql/data", "postgres", false);
    }),
    ("03-apache-airflow-celery.yml", |p| {
        assert_eq!(keys(p), ["postgres-db-volume"]);
        assert_named(
            p,
            "postgres",
            "/var/lib/postgresql/data",
            "postgres-db-volume",
            false,
        );
        // x-airflow-common is merged into every airflow service; ${AIRFLOW_PROJ_DIR:-.} defaults to `.`.
        for svc in [
            "airflow-webserver",
            "airflow-scheduler",
            "airflow-worker",
            "flower",
        ] {
            assert_bind(p, svc, "/opt/airflow/dags", "dags", false);
            assert_eq!(
                mount(p, svc, "/opt/airflow/logs")
                    .source_as_written
                    .as_deref(),
                Some("./logs")
            );
        }
        assert_eq!(p.services["flower"].profiles, ["flower"]);
        assert_eq!(
            p.services["airflow-worker"].image.as_deref(),
            Some("apache/airflow:|version|")
        );
    }),
    ("04-getsentry-self-hosted-main.yml", |p| {
        assert_eq!(p.volumes.len(), 15);
        assert_eq!(p.services.len(), 59);
        assert!(p.volumes["sentry-data"].external);
        assert_eq!(engine(p, "sentry-data"), "sentry-data");
        assert_eq!(engine(p, "sentry-postgres"), "sentry-postgres");
        assert!(!p.volumes["sentry-vroom"].external);
        assert_eq!(engine(p, "sentry-vroom"), default_engine(p, "sentry-vroom"));
        assert_named(
            p,
            "postgres",
            "/var/lib/postgresql/data",
            "sentry-postgres",
            false,
        );
        assert_bind(p, "postgres", "/opt/sentry", "postgres", true);
        assert_named(p, "web", "/data", "sentry-data", false);
        assert_named(p, "kafka", "/var/lib/kafka/log", "sentry-kafka-log", false);
    }),
    ("05-paperless-ngx-paperless-ngx-postgres-tika.yml", |p| {
        assert_eq!(keys(p), ["data", "media", "pgdata", "redisdata"]);
        assert_named(p, "webserver", "/usr/src/paperless/media", "media", false);
        assert_bind(p, "webserver", "/usr/src/paperless/export", "export", false);
        assert_bind(
            p,
            "webserver",
            "/usr/src/paperless/consume",
            "consume",
            false,
        );
        assert_named(p, "db", "/var/lib/postgresql/data", "pgdata", false);
    }),
    ("06-supabase-supabase-selfhost.yml", |p| {
        assert_eq!(p.name, "supabase");
        assert_eq!(keys(p), ["db-config", "deno-cache"]);
        assert_bind(p, "storage", "/var/lib/storage", "volumes/storage", false);
        assert_bind(
            p,
            "vector",
            "/var/run/docker.sock",
            "/var/run/docker.sock",
            true,
        );
        assert_bind(
            p,
            "db",
            "/var/lib/postgresql/data",
            "volumes/db/data",
            false,
        );
        assert_named(p, "db", "/etc/postgresql-custom", "db-config", false);
        assert_named(p, "functions", "/root/.cache/deno", "deno-cache", false);
    }),
    ("07-mattermost-docker-main.yml", |p| {
        assert!(p.volumes.is_empty());
        assert_bind(
            p,
            "mattermost",
            "/mattermost/config",
            "volumes/app/mattermost/config",
            false,
        );
        assert_bind(
            p,
            "mattermost",
            "/mattermost/data",
            "volumes/app/mattermost/data",
            false,
        );
        assert_eq!(mount(p, "mattermost", "/tmp").kind, MountType::Tmpfs);
    }),
    ("08-outline-outline-dev.yml", |p| {
        assert_eq!(keys(p), ["outline-data", "postgres-data"]);
        assert_named(p, "outline", "/var/lib/outline/data", "outline-data", false);
        assert_named(
            p,
            "postgres",
            "/var/lib/postgresql/data",
            "postgres-data",
            false,
        );
        assert_eq!(p.services["outline"].profiles, ["ecr"]);
    }),
    ("09-nextcloud-docker-nginx-proxy-letsencrypt.yml", |p| {
        assert_eq!(p.volumes.len(), 6);
        assert_named(p, "app", "/var/www/html", "nextcloud", false);
        assert_bind(p, "proxy", "/tmp/docker.sock", "/var/run/docker.sock", true);
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("services.app.environment") && w.contains("more than once")),
            "duplicate `environment:` is reported: {:?}",
            p.warnings
        );
    }),
    ("10-plausible-community-edition-main.yml", |p| {
        assert_eq!(
            keys(p),
            ["db-data", "event-data", "event-logs", "plausible-data"]
        );
        assert_named(
            p,
            "plausible_events_db",
            "/var/log/clickhouse-server",
            "event-logs",
            false,
        );
        assert_bind(
            p,
            "plausible_events_db",
            "/etc/clickhouse-server/config.d/logs.xml",
            "clickhouse/logs.xml",
            true,
        );
    }),
    ("11-goauthentik-authentik-main.yml", |p| {
        assert_eq!(keys(p), ["database", "redis"]);
        assert_eq!(p.volumes["database"].driver.as_deref(), Some("local"));
        assert_named(
            p,
            "postgresql",
            "/var/lib/postgresql/data",
            "database",
            false,
        );
        assert_bind(p, "server", "/media", "media", false);
        assert_bind(
            p,
            "worker",
            "/var/run/docker.sock",
            "/var/run/docker.sock",
            false,
        );
        assert_bind(p, "worker", "/certs", "certs", false);
    }),
    ("12-n8n-io-n8n-hosting-postgres.yml", |p| {
        assert_eq!(keys(p), ["db_storage", "n8n_storage"]);
        assert_named(p, "n8n", "/home/node/.n8n", "n8n_storage", false);
        assert_bind(
            p,
            "postgres",
            "/docker-entrypoint-initdb.d/init-data.sh",
            "init-data.sh",
            false,
        );
    }),
    ("13-stefanprodan-dockprom-monitoring.yml", |p| {
        assert_eq!(keys(p), ["prometheus_data", "grafana_data"]);
        assert_named(p, "prometheus", "/prometheus", "prometheus_data", false);
        assert_named(p, "grafana", "/var/lib/grafana", "grafana_data", false);
        assert_bind(p, "nodeexporter", "/host/proc", "/proc", true);
    }),
    ("14-deviantony-docker-elk-elk.yml", |p| {
        // Long syntax; an absolute source is kept exactly as written, trailing slash included.
        assert_bind(
            p,
            "logstash",
            "/usr/share/logstash/logs",
            "/Users/asim/Downloads/logs/",
            false,
        );
        assert_bind(
            p,
            "logstash",
            "/usr/share/logstash/config/logstash.yml",
            "logstash/config/logstash.yml",
            true,
        );
        assert_named(
            p,
            "elasticsearch",
            "/usr/share/elasticsearch/data",
            "elasticsearch",
            false,
        );
    }),
    ("15-minio-minio-distributed.yml", |p| {
        assert_eq!(
            keys(p),
            [
                "data1-1", "data1-2", "data2-1", "data2-2", "data3-1", "data3-2", "data4-1",
                "data4-2"
            ]
        );
        assert_named(p, "minio4", "/data2", "data4-2", false);
    }),
    ("16-wmnnd-nginx-certbot-letsencrypt.yml", |p| {
        assert!(p.volumes.is_empty());
        assert_bind(p, "nginx", "/etc/letsencrypt", "certbot/letsencrypt", true);
        assert_bind(
            p,
            "certbot",
            "/etc/letsencrypt",
            "certbot/letsencrypt",
            false,
        );
    }),
    ("17-sameersbn-docker-gitlab-main.yml", |p| {
        assert!(p.volumes.is_empty());
        assert_bind(
            p,
            "redis",
            "/var/lib/redis",
            "/srv/docker/gitlab/redis",
            false,
        );
        assert_bind(
            p,
            "postgresql",
            "/var/lib/postgresql",
            "/srv/docker/gitlab/postgresql",
            false,
        );
        assert_bind(
            p,
            "gitlab",
            "/home/git/data",
            "/srv/docker/gitlab/gitlab",
            false,
        );
    }),
    ("18-testdrivenio-django-on-docker-prod.yml", |p| {
        assert_eq!(keys(p), ["postgres_data", "static_volume", "media_volume"]);
        assert_eq!(p.services["web"].image, None, "build-only service");
        assert_named(
            p,
            "nginx",
            "/home/app/web/mediafiles",
            "media_volume",
            false,
        );
    }),
    ("19-confluentinc-cp-all-in-one-kafka.yml", |p| {
        assert!(p.volumes.is_empty());
        assert!(p.services.len() >= 5);
        assert!(p.services.values().all(|s| s.mounts.is_empty()));
    }),
    ("20-testdrivenio-django-on-docker-base.yml", |p| {
        assert_eq!(keys(p), ["postgres_data", "static_volume", "media_volume"]);
        // `./app/:/usr/src/app/`: trailing slashes are cleaned on both sides.
        assert_bind(p, "web", "/usr/src/app", "app", false);
        assert_eq!(
            mount(p, "web", "/usr/src/app").source_as_written.as_deref(),
            Some("./app/")
        );
    }),
    ("21-apache-superset-dev.yml", |p| {
        assert_eq!(keys(p), ["superset_home", "db_home", "redis"]);
        assert!(!p.volumes["db_home"].external);
        let nm = mount(
            p,
            "superset-websocket",
            "/home/superset-websocket/node_modules",
        );
        assert_eq!((nm.kind, nm.source.as_deref()), (MountType::Volume, None));
        assert_bind(p, "superset-worker", "/app/superset", "superset", false);
        assert_named(p, "superset", "/app/superset_home", "superset_home", false);
    }),
    ("22-docker-awesome-compose-react-express-mongodb.yml", |p| {
        assert!(p.volumes.is_empty());
        assert_bind(p, "db", "/data/db", "data", false);
        assert_bind(p, "frontend", "/app", "frontend", false);
        assert!(p.services.contains_key("backend") || p.services.contains_key("Backend"));
    }),
    ("23-docker-awesome-compose-wordpress-mysql.yml", |p| {
        assert_eq!(keys(p), ["db_data", "wp_data"]);
        assert_named(p, "db", "/var/lib/mysql", "db_data", false);
        assert!(p.services["wordpress"].mounts.is_empty());
    }),
    ("24-0xMoham-inception-driver-opts.yml", |p| {
        assert_eq!(keys(p), ["wp", "db"]);
        let wp = &p.volumes["wp"];
        assert_eq!(wp.driver.as_deref(), Some("local"));
        assert_eq!(wp.driver_opts.get("o").map(String::as_str), Some("bind"));
        assert_eq!(
            wp.driver_opts.get("device").map(String::as_str),
            Some("/home/mel-kada/data/wordpress")
        );
        let users = p
            .services
            .values()
            .filter(|s| s.mounts.iter().any(|m| m.source.as_deref() == Some("wp")))
            .count();
        assert_eq!(users, 5);
    }),
    ("25-saleor-saleor-platform-dev.yml", |p| {
        assert_eq!(keys(p), ["saleor-db", "saleor-redis", "saleor-media"]);
        let nm = mount(p, "storefront", "/app/node_modules");
        assert_eq!((nm.kind, nm.source.as_deref()), (MountType::Volume, None));
        assert_named(p, "api", "/app/media", "saleor-media", false);
        assert_named(p, "worker", "/app/media", "saleor-media", false);
        assert_bind(p, "api", "/app/saleor", "saleor/saleor", false);
    }),
    ("26-penpot-penpot-selfhost.yml", |p| {
        assert_eq!(keys(p), ["penpot_postgres_v15", "penpot_assets"]);
        assert_named(
            p,
            "penpot-frontend",
            "/opt/data/assets",
            "penpot_assets",
            false,
        );
        assert_named(
            p,
            "penpot-backend",
            "/opt/data/assets",
            "penpot_assets",
            false,
        );
    }),
    ("27-netbox-community-netbox-docker-main.yml", |p| {
        assert_eq!(p.volumes.len(), 6);
        assert_eq!(
            p.services["netbox"].image.as_deref(),
            Some("ninech/netbox:latest")
        );
        // netbox-worker is `<<: *netbox`: it has the same mounts.
        assert_named(
            p,
            "netbox-worker",
            "/opt/netbox/netbox/media",
            "netbox-media-files",
            false,
        );
        assert_named(
            p,
            "nginx",
            "/opt/netbox/netbox/static",
            "netbox-static-files",
            true,
        );
    }),
    ("28-zammad-zammad-docker-compose-base.yml", |p| {
        assert_eq!(
            keys(p),
            ["backup-zammad", "data-zammad", "data-elasticsearch"]
        );
        assert_named(
            p,
            "zammad-backup",
            "/var/tmp/zammad",
            "backup-zammad",
            false,
        );
        assert_named(
            p,
            "zammad-elasticsearch",
            "/usr/share/elasticsearch/data",
            "data-elasticsearch",
            false,
        );
    }),
    ("29-zammad-zammad-docker-compose-override.yml", |p| {
        assert!(p.volumes.is_empty());
        assert_eq!(p.services.keys().collect::<Vec<_>>(), ["zammad-nginx"]);
        assert!(p.services["zammad-nginx"].mounts.is_empty());
    }),
    ("30-coollabsio-coolify-base.yml", |p| {
        assert!(p.volumes.is_empty());
        assert_eq!(p.services["coolify"].image, None);
        assert!(p.services["coolify"].mounts.is_empty());
    }),
    ("31-coollabsio-coolify-prod.yml", |p| {
        assert_eq!(engine(p, "coolify-db"), "coolify-db");
        assert_eq!(engine(p, "coolify-redis"), "coolify-redis");
        assert_bind(
            p,
            "coolify",
            "/var/www/html/.env",
            "/data/coolify/source/.env",
            true,
        );
        assert_named(
            p,
            "postgres",
            "/var/lib/postgresql/data",
            "coolify-db",
            false,
        );
    }),
    ("32-traefik-traefik-acme-tls.yml", |p| {
        assert_bind(p, "traefik", "/letsencrypt", "letsencrypt", false);
        assert_bind(
            p,
            "traefik",
            "/var/run/docker.sock",
            "/var/run/docker.sock",
            true,
        );
    }),
    ("33-elastic-elasticsearch-tls-cluster.yml", |p| {
        assert_eq!(
            keys(p),
            ["certs", "esdata01", "esdata02", "esdata03", "kibanadata"]
        );
        for svc in ["setup", "es01", "es02", "es03"] {
            assert_named(
                p,
                svc,
                "/usr/share/elasticsearch/config/certs",
                "certs",
                false,
            );
        }
        assert_named(
            p,
            "kibana",
            "/usr/share/kibana/config/certs",
            "certs",
            false,
        );
    }),
    ("34-bitnami-containers-discourse.yml", |p| {
        assert_eq!(keys(p), ["postgresql_data", "redis_data", "discourse_data"]);
        assert_named(
            p,
            "discourse",
            "/bitnami/discourse",
            "discourse_data",
            false,
        );
        assert_named(p, "sidekiq", "/bitnami/discourse", "discourse_data", false);
    }),
    ("35-keycloak-keycloak-containers-postgres.yml", |p| {
        assert_eq!(keys(p), ["postgres_data"]);
        assert_eq!(p.volumes["postgres_data"].driver.as_deref(), Some("local"));
        assert_named(
            p,
            "postgres",
            "/var/lib/postgresql/data",
            "postgres_data",
            false,
        );
    }),
    ("36-docker-mailserver-docker-mailserver-main.yml", |p| {
        assert!(p.volumes.is_empty());
        assert_bind(
            p,
            "mailserver",
            "/var/mail",
            "docker-data/dms/mail-data",
            false,
        );
        assert_bind(
            p,
            "mailserver",
            "/var/log/mail",
            "docker-data/dms/mail-logs",
            false,
        );
        assert_bind(p, "mailserver", "/etc/localtime", "/etc/localtime", true);
    }),
    ("37-evilmartians-ruby-on-whales-rails-dev.yml", |p| {
        assert_eq!(p.volumes.len(), 8);
        // `..:/app:cached` is the parent of the project directory.
        let parent = corpus_dir()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        assert_bind(p, "rails", "/app", &parent.to_string_lossy(), false);
        assert_named(p, "web", "/app/public/packs", "packs", false);
        assert_named(p, "sidekiq", "/app/node_modules", "node_modules", false);
        // The tmpfs list comes from the x-backend anchor through nested merges.
        assert_eq!(mount(p, "rails", "/tmp").kind, MountType::Tmpfs);
        assert_eq!(mount(p, "rails", "/app/tmp/pids").kind, MountType::Tmpfs);
        assert_bind(p, "postgres", "/root/.psqlrc", ".psqlrc", true);
    }),
    ("38-ory-kratos-quickstart.yml", |p| {
        assert_eq!(keys(p), ["kratos-sqlite"]);
        assert_named(
            p,
            "kratos-migrate",
            "/var/lib/sqlite",
            "kratos-sqlite",
            false,
        );
        assert_named(p, "kratos", "/var/lib/sqlite", "kratos-sqlite", false);
        assert_bind(
            p,
            "kratos",
            "/etc/config/kratos",
            "contrib/quickstart/kratos/email-password",
            false,
        );
    }),
    ("39-compose-spec-compose-go-full-example.yml", |p| {
        assert_eq!(p.name, "full_example_project_name");
        assert_eq!(engine(p, "some-volume"), default_engine(p, "some-volume"));
        assert_eq!(engine(p, "another-volume"), "user_specified_name");
        assert_eq!(engine(p, "external-volume"), "external-volume");
        assert_eq!(engine(p, "other-external-volume"), "my-cool-volume");
        assert_eq!(engine(p, "external-volume3"), "this-is-volume3");
        let other = &p.volumes["other-volume"];
        assert_eq!(other.driver.as_deref(), Some("flocker"));
        assert_eq!(other.driver_opts.get("baz").map(String::as_str), Some("1"));
        assert_eq!(other.labels.get("foo").map(String::as_str), Some("bar"));
        let anon = mount(p, "foo", "/var/lib/anonymous");
        assert_eq!(
            (anon.kind, anon.source.as_deref()),
            (MountType::Volume, None)
        );
        assert_bind(p, "foo", "/var/lib/data", "/opt/data", false);
        assert_bind(p, "foo", "/code", ".", false);
        assert_bind(p, "foo", "/etc/configs", "/home/oracle/configs", true);
        assert_eq!(
            mount(p, "foo", "/etc/configs").source_as_written.as_deref(),
            Some("~/configs")
        );
        assert_bind(p, "foo", "/opt/cached", "opt", false);
        assert_eq!(mount(p, "foo", "/opt/tmpfs").kind, MountType::Tmpfs);
        assert_named(p, "foo", "/var/lib/volume", "datavolume", false);
    }),
    ("40-taigaio-taiga-docker-main.yml", |p| {
        assert_eq!(p.volumes.len(), 5);
        assert_named(
            p,
            "taiga-back",
            "/taiga-back/media",
            "taiga-media-data",
            false,
        );
        assert_named(
            p,
            "taiga-async",
            "/taiga-back/media",
            "taiga-media-data",
            false,
        );
        assert_named(
            p,
            "taiga-gateway",
            "/taiga/media",
            "taiga-media-data",
            false,
        );
        assert_named(
            p,
            "taiga-async-rabbitmq",
            "/var/lib/rabbitmq",
            "taiga-async-rabbitmq-data",
            false,
        );
    }),
    ("41-nezhar-wordpress-docker-compose-mysql.yml", |p| {
        assert_eq!(keys(p), ["db_data"]);
        assert_bind(p, "wp", "/var/www/html", "wp-app", false);
        assert_bind(
            p,
            "wp",
            "/usr/local/etc/php/conf.d/conf.ini",
            "config/php.conf.ini",
            false,
        );
        assert_bind(p, "db", "/docker-entrypoint-initdb.d", "wp-data", false);
        assert_named(p, "db", "/var/lib/mysql", "db_data", false);
    }),
    ("42-opf-openproject-dev.yml", |p| {
        assert_eq!(p.volumes.len(), 9);
        assert_bind(p, "backend", "/home/dev/openproject", ".", false);
        assert_named(p, "backend", "/var/openproject/assets", "opdata", false);
        // ${CKEDITOR_BUILD_DIR:-./frontend/src/vendor/ckeditor/} with the variable unset.
        assert_bind(
            p,
            "frontend",
            "/home/dev/openproject/frontend/src/vendor/ckeditor",
            "frontend/src/vendor/ckeditor",
            false,
        );
        assert_eq!(p.services["db"].image.as_deref(), Some("postgres:13"));
    }),
];

#[test]
fn every_corpus_file_loads_with_the_expected_facts() {
    let dir = corpus_dir();
    let mut files: Vec<String> = fs_err::read_dir(&dir)
        .expect("corpus dir is readable")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml") || n.ends_with(".yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 42,
        "expected the 42 corpus files, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let Some((_, check)) = CHECKS.iter().find(|(name, _)| name == file) else {
            failures.push(format!(
                "{file}: no facts listed in CHECKS for this corpus file"
            ));
            continue;
        };
        let project = load(file);
        if let Err(panic) = std::panic::catch_unwind(|| check(&project)) {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{file}: {msg}"));
        }
    }
    assert!(
        failures.is_empty(),
        "corpus failures:\n{}",
        failures.join("\n")
    );
}

fn base_env() -> BTreeMap<String, String> {
    env_for(&needs(), "")
}

#[test]
fn authentik_without_its_secrets_names_the_variable_and_message() {
    let err = try_load("11-goauthentik-authentik-main.yml", base_env(), Vec::new()).unwrap_err();
    match &err {
        ComposeError::MissingVariable { name, message } => {
            assert_eq!(name, "PG_PASS");
            assert_eq!(message, "database password required");
        }
        other => panic!("expected a missing-variable error, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "required variable `PG_PASS` is missing a value: database password required"
    );
    let mut env = base_env();
    env.insert("PG_PASS".into(), "x".into());
    match try_load("11-goauthentik-authentik-main.yml", env, Vec::new()).unwrap_err() {
        ComposeError::MissingVariable { name, message } => {
            assert_eq!(name, "AUTHENTIK_SECRET_KEY");
            assert_eq!(message, "secret key required");
        }
        other => panic!("expected a missing-variable error, got {other:?}"),
    }
    // `:?` also refuses an empty value.
    let mut env = base_env();
    env.insert("PG_PASS".into(), String::new());
    assert!(matches!(
        try_load("11-goauthentik-authentik-main.yml", env, Vec::new()),
        Err(ComposeError::MissingVariable { ref name, .. }) if name == "PG_PASS"
    ));
}

#[test]
fn openproject_without_local_dev_check_names_the_variable_and_message() {
    match try_load("42-opf-openproject-dev.yml", base_env(), Vec::new()).unwrap_err() {
        ComposeError::MissingVariable { name, message } => {
            assert_eq!(name, "LOCAL_DEV_CHECK");
            assert_eq!(
                message,
                "The docker-compose file for OpenProject has moved to https://github.com/opf/openproject-deploy"
            );
        }
        other => panic!("expected a missing-variable error, got {other:?}"),
    }
}

fn assert_empty_source(file: &str, service: &str, spec: &str) {
    let err = try_load(file, base_env(), Vec::new()).unwrap_err();
    match &err {
        ComposeError::InvalidMount {
            service: s,
            spec: sp,
            message,
        } => {
            assert_eq!(s, service, "{err}");
            assert_eq!(sp, spec, "{err}");
            assert!(
                message.contains("empty section between colons"),
                "{message}"
            );
            assert!(message.contains("source is empty"), "{message}");
        }
        other => panic!("{file}: expected an invalid-mount error, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&format!("service `{service}`")), "{text}");
    assert!(text.contains(spec), "{text}");
}

#[test]
fn immich_without_its_locations_is_a_clear_empty_source_error() {
    assert_empty_source("02-immich-app-immich-server.yml", "immich-server", ":/data");
}

#[test]
fn supabase_without_the_socket_location_is_a_clear_empty_source_error() {
    assert_empty_source(
        "06-supabase-supabase-selfhost.yml",
        "vector",
        ":/var/run/docker.sock:ro,z",
    );
}

#[test]
fn mattermost_without_its_paths_is_a_clear_empty_source_error() {
    assert_empty_source(
        "07-mattermost-docker-main.yml",
        "mattermost",
        ":/mattermost/config:rw",
    );
}

#[test]
fn compose_go_full_example_alone_loads_with_a_warning_about_its_undefined_volume() {
    let p = try_load(
        "39-compose-spec-compose-go-full-example.yml",
        base_env(),
        Vec::new(),
    )
    .unwrap();
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("service `foo` refers to undefined volume `datavolume`")),
        "{:?}",
        p.warnings
    );
    let v = &p.volumes["datavolume"];
    assert!(!v.external);
    assert_eq!(v.engine_name(&p.name), format!("{}_datavolume", p.name));
}

#[test]
fn unset_variables_are_warned_about_like_compose() {
    let p = load("04-getsentry-self-hosted-main.yml");
    assert!(
        p.warnings
            .iter()
            .any(|w| w == "The \"SENTRY_EVENT_RETENTION_DAYS\" variable is not set. Defaulting to a blank string."),
        "{:?}",
        p.warnings
    );
    // Each warning appears once even though the variable is used many times.
    let n = p
        .warnings
        .iter()
        .filter(|w| w.contains("\"SENTRY_EVENT_RETENTION_DAYS\""))
        .count();
    assert_eq!(n, 1);
}

#[test]
fn project_name_option_overrides_name_key() {
    let dir = corpus_dir();
    let p = load_project(&ProjectOptions {
        files: vec![dir.join("02-immich-app-immich-server.yml")],
        project_name: Some("photos".into()),
        working_dir: dir.clone(),
        os_env: env_for(&needs(), "02-immich-app-immich-server.yml"),
        ..Default::default()
    })
    .expect("loads");
    assert_eq!(p.name, "photos");
    assert_eq!(engine(&p, "model-cache"), "photos_model-cache");
    assert_eq!(
        p.environment
            .get("COMPOSE_PROJECT_NAME")
            .map(String::as_str),
        Some("photos")
    );
}

#[test]
fn x_persist_tiers_are_parsed_from_fixtures() {
    let dir = fs_err::canonicalize(fixtures_dir().join("x-persist-anchors")).expect("fixture");
    let p = load_project(&ProjectOptions {
        working_dir: dir,
        os_env: base_env(),
        ..Default::default()
    })
    .expect("fixture loads");
    assert_eq!(
        p.volumes["cache"].persist.as_ref().and_then(|s| s.tier),
        Some(Tier::Regenerable)
    );
}
