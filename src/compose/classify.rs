//! The tier of every piece of data, and why: `x-persist: {tier: …}` in the Compose file, then the engine
//! label `persist.tier`, then the first matching rule of one built-in table ([`RULES`]), then `important`
//! (unknown data is treated as valuable).
//!
//! The table is the single source of truth: `docker persist rules` prints it and the README copies it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::model::Tier;

/// The engine volume label that sets a tier.
pub const TIER_LABEL: &str = "persist.tier";

/// What kind of data a row of the inventory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    /// A project volume Compose creates and `down -v` removes.
    Named,
    /// A volume declared `external: true`; Compose never creates or removes it.
    External,
    /// A volume without a name, created per container.
    Anonymous,
    /// A host directory or file.
    Bind,
}

impl DataKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::Named => "named",
            DataKind::External => "external",
            DataKind::Anonymous => "anonymous",
            DataKind::Bind => "bind",
        }
    }
}

impl fmt::Display for DataKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One service mount of the data being classified.
#[derive(Debug, Clone, Copy)]
pub struct Use<'a> {
    pub service: &'a str,
    pub image: Option<&'a str>,
    pub target: &'a str,
    pub read_only: bool,
}

/// Everything classification looks at.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub kind: DataKind,
    /// The volume key, or for a bind mount the host path as written (`./data`).
    pub key: &'a str,
    /// For a bind mount, the absolute host path.
    pub host_path: Option<&'a str>,
    /// `x-persist: {tier}` from the Compose file.
    pub declared: Option<Tier>,
    /// The engine label `persist.tier`, as found on the volume.
    pub label: Option<&'a str>,
    pub uses: &'a [Use<'a>],
}

/// Where a tier came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TierSource {
    XPersist,
    Label,
    Rule,
    Default,
}

/// A tier and the reason for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    pub tier: Tier,
    pub source: TierSource,
    /// The id of the rule that matched, when `source` is `Rule`.
    pub rule: Option<&'static str>,
    /// Human explanation: "database data directory (`/var/lib/postgresql/data` in `db`)".
    pub reason: String,
}

/// What a rule looks at.
#[derive(Debug, Clone, Copy)]
pub enum Matcher {
    /// A bind mount whose host path is one of these or lies under one of them.
    HostPath(&'static [&'static str]),
    /// A mount target equal to one of these or under one of them.
    Target(&'static [&'static str]),
    /// A bind mount that every service mounts read-only.
    ReadOnlyBind,
    /// A bind mount that every service mounts at or under one of these paths.
    BindTarget(&'static [&'static str]),
    /// A word of the volume key, the bind path or a mount target (split at `/`, `-`, `_`, `.`).
    Word(&'static [&'static str]),
    /// The image of a service that mounts it (its name without registry, path or tag, split at `-`).
    Image(&'static [&'static str]),
    /// An anonymous volume.
    Anonymous,
}

impl Matcher {
    /// What the README and `rules` show in the "matches" column.
    pub fn describe(&self) -> String {
        let list = |xs: &[&str]| {
            xs.iter()
                .map(|x| format!("`{x}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Matcher::HostPath(xs) => format!("bind of host path {}", list(xs)),
            Matcher::Target(xs) => format!("mounted at {}", list(xs)),
            Matcher::ReadOnlyBind => "bind mounted read-only by every service".to_string(),
            Matcher::BindTarget(xs) => format!("bind mounted at {} by every service", list(xs)),
            Matcher::Word(xs) => format!("name or path contains the word {}", list(xs)),
            Matcher::Image(xs) => format!("used by image {}", list(xs)),
            Matcher::Anonymous => "anonymous volume".to_string(),
        }
    }
}

/// One built-in rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub id: &'static str,
    pub matcher: Matcher,
    pub tier: Tier,
    pub reason: &'static str,
}

/// The built-in rules, first match wins. Specific evidence (where data is mounted) comes before general
/// evidence (names, images), so a database's init scripts or config file are not taken for its data.
pub const RULES: &[Rule] = &[
    Rule {
        id: "host-system",
        matcher: Matcher::HostPath(&[
            "/",
            "/proc",
            "/sys",
            "/dev",
            "/run",
            "/var/run",
            "/var/lib/docker",
            "/etc/localtime",
            "/etc/timezone",
            "/etc/hostname",
            "/etc/hosts",
            "/etc/machine-id",
            "/lib/modules",
            "/usr/share/zoneinfo",
            "/tmp/.X11-unix",
        ]),
        tier: Tier::Optional,
        reason: "host system path, not project data",
    },
    Rule {
        id: "database-dir",
        matcher: Matcher::Target(&[
            "/var/lib/postgresql",
            "/var/lib/pgsql",
            "/var/lib/mysql",
            "/var/lib/mariadb",
            "/data/db",
            "/data/configdb",
            "/var/lib/mongodb",
            "/bitnami/postgresql",
            "/bitnami/mysql",
            "/bitnami/mariadb",
            "/bitnami/mongodb",
            "/var/lib/clickhouse",
            "/var/lib/influxdb",
            "/var/lib/influxdb2",
            "/var/lib/cassandra",
            "/var/lib/couchdb",
            "/opt/couchdb/data",
            "/var/lib/neo4j/data",
            "/cockroach/cockroach-data",
            "/var/opt/mssql",
            "/home/postgres/pgdata",
        ]),
        tier: Tier::Critical,
        reason: "database data directory",
    },
    Rule {
        id: "service-state-dir",
        matcher: Matcher::Target(&[
            "/var/lib/redis",
            "/bitnami/redis",
            "/var/lib/rabbitmq",
            "/bitnami/rabbitmq",
            "/var/lib/kafka",
            "/bitnami/kafka",
            "/var/lib/zookeeper",
            "/usr/share/elasticsearch/data",
            "/usr/share/opensearch/data",
            "/bitnami/elasticsearch",
            "/meili_data",
            "/prometheus",
            "/var/lib/grafana",
            "/etc/letsencrypt",
            "/var/lib/letsencrypt",
        ]),
        tier: Tier::Important,
        reason: "state of a queue, search index, metrics store or certificate store",
    },
    Rule {
        id: "init-scripts",
        matcher: Matcher::Target(&["/docker-entrypoint-initdb.d"]),
        tier: Tier::Regenerable,
        reason: "database initialization scripts, kept with the project's source",
    },
    Rule {
        id: "read-only-bind",
        matcher: Matcher::ReadOnlyBind,
        tier: Tier::Regenerable,
        reason: "read-only everywhere: configuration or source the services only read",
    },
    Rule {
        id: "config-bind",
        matcher: Matcher::BindTarget(&["/etc", "/usr/local/etc", "/docker-entrypoint.d"]),
        tier: Tier::Regenerable,
        reason: "configuration files, kept with the project's source",
    },
    Rule {
        id: "logs",
        matcher: Matcher::Word(&["log", "logs"]),
        tier: Tier::Optional,
        reason: "logs",
    },
    Rule {
        id: "log-dir",
        matcher: Matcher::Target(&["/var/log"]),
        tier: Tier::Optional,
        reason: "logs",
    },
    Rule {
        id: "temporary",
        matcher: Matcher::Word(&["tmp", "temp"]),
        tier: Tier::Optional,
        reason: "temporary files",
    },
    Rule {
        id: "build-output",
        matcher: Matcher::Word(&[
            "node_modules",
            "cache",
            "caches",
            "build",
            "dist",
            "static",
            "staticfiles",
            "packs",
            "bundle",
            "__pycache__",
            "next",
        ]),
        tier: Tier::Regenerable,
        reason: "dependencies, build output or cache, rebuilt from source",
    },
    Rule {
        id: "uploads",
        matcher: Matcher::Word(&[
            "media",
            "mediafiles",
            "upload",
            "uploads",
            "attachments",
            "userdata",
        ]),
        tier: Tier::Critical,
        reason: "user uploads",
    },
    Rule {
        id: "certificates",
        matcher: Matcher::Word(&["certs", "certificates", "letsencrypt", "acme"]),
        tier: Tier::Important,
        reason: "certificates and keys",
    },
    Rule {
        id: "database-image",
        matcher: Matcher::Image(&[
            "postgres",
            "postgresql",
            "postgis",
            "pgvecto",
            "pgvector",
            "timescaledb",
            "mysql",
            "mariadb",
            "percona",
            "mongo",
            "mongodb",
            "couchdb",
            "cassandra",
            "scylla",
            "clickhouse",
            "influxdb",
            "neo4j",
            "cockroach",
            "minio",
            "mssql",
            "questdb",
            "surrealdb",
            "arangodb",
            "rethinkdb",
        ]),
        tier: Tier::Critical,
        reason: "used by a database or object store",
    },
    Rule {
        id: "stateful-service-image",
        matcher: Matcher::Image(&[
            "redis",
            "valkey",
            "keydb",
            "dragonfly",
            "rabbitmq",
            "kafka",
            "zookeeper",
            "nats",
            "elasticsearch",
            "opensearch",
            "meilisearch",
            "typesense",
            "solr",
            "prometheus",
            "grafana",
            "loki",
            "vault",
            "consul",
            "etcd",
        ]),
        tier: Tier::Important,
        reason: "used by a queue, cache with state, search index or metrics store",
    },
    Rule {
        id: "database-name",
        matcher: Matcher::Word(&[
            "db",
            "database",
            "pgdata",
            "dbdata",
            "postgres",
            "postgresql",
            "mysql",
            "mariadb",
            "mongo",
            "mongodb",
        ]),
        tier: Tier::Critical,
        reason: "named as database data",
    },
    Rule {
        id: "anonymous",
        matcher: Matcher::Anonymous,
        tier: Tier::Regenerable,
        reason: "anonymous volume: Compose gives each new container a fresh one",
    },
];

/// Image words that mark a tool beside a database rather than the database itself.
const TOOL_IMAGE_WORDS: &[&str] = &[
    "exporter",
    "express",
    "commander",
    "admin",
    "ui",
    "insight",
    "backup",
];

/// The reason given when no rule matches.
pub const DEFAULT_REASON: &str = "no rule matched: unknown data is treated as valuable";

/// Classifies one piece of data.
pub fn classify(subject: &Subject<'_>) -> Classification {
    if let Some(tier) = subject.declared {
        return Classification {
            tier,
            source: TierSource::XPersist,
            rule: None,
            reason: "set by `x-persist` in the Compose file".to_string(),
        };
    }
    if let Some(tier) = subject.label.and_then(|l| l.parse::<Tier>().ok()) {
        return Classification {
            tier,
            source: TierSource::Label,
            rule: None,
            reason: format!("engine label `{TIER_LABEL}`"),
        };
    }
    for rule in RULES {
        if let Some(evidence) = matches(&rule.matcher, subject) {
            return Classification {
                tier: rule.tier,
                source: TierSource::Rule,
                rule: Some(rule.id),
                reason: match evidence {
                    Some(e) => format!("{} ({e})", rule.reason),
                    None => rule.reason.to_string(),
                },
            };
        }
    }
    Classification {
        tier: Tier::Important,
        source: TierSource::Default,
        rule: None,
        reason: DEFAULT_REASON.to_string(),
    }
}

/// The rules as a Markdown table, as the README shows them.
pub fn rules_markdown() -> String {
    let mut out = String::from("| # | rule | tier | matches | reason |\n|---|---|---|---|---|\n");
    for (n, r) in RULES.iter().enumerate() {
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} |\n",
            n + 1,
            r.id,
            r.tier,
            r.matcher.describe(),
            r.reason
        ));
    }
    out
}

/// `Some(evidence)` when the matcher applies; the evidence names what matched.
fn matches(matcher: &Matcher, s: &Subject<'_>) -> Option<Option<String>> {
    match matcher {
        Matcher::HostPath(paths) => {
            let host = s.host_path.filter(|_| s.kind == DataKind::Bind)?;
            let hit = paths.iter().find(|p| {
                if **p == "/" {
                    host == "/"
                } else {
                    under(host, p)
                }
            })?;
            Some(Some(format!("`{hit}`")))
        }
        Matcher::Target(prefixes) => s.uses.iter().find_map(|u| {
            prefixes
                .iter()
                .any(|p| under(u.target, p))
                .then(|| Some(format!("`{}` in `{}`", u.target, u.service)))
        }),
        Matcher::ReadOnlyBind => {
            (s.kind == DataKind::Bind && !s.uses.is_empty() && s.uses.iter().all(|u| u.read_only))
                .then_some(None)
        }
        Matcher::BindTarget(prefixes) => (s.kind == DataKind::Bind
            && !s.uses.is_empty()
            && s.uses
                .iter()
                .all(|u| prefixes.iter().any(|p| under(u.target, p))))
        .then(|| {
            s.uses
                .first()
                .map(|u| format!("`{}` in `{}`", u.target, u.service))
        }),
        Matcher::Word(words) => {
            let own = words_of(s.key);
            if let Some(w) = own.iter().find(|w| words.contains(&w.as_str())) {
                return Some(Some(format!("`{w}` in `{}`", s.key)));
            }
            s.uses.iter().find_map(|u| {
                words_of(u.target)
                    .into_iter()
                    .find(|w| words.contains(&w.as_str()))
                    .map(|w| Some(format!("`{w}` in `{}`", u.target)))
            })
        }
        Matcher::Image(names) => s.uses.iter().find_map(|u| {
            let image = u.image?;
            let ws = image_words(image);
            if ws.iter().any(|w| TOOL_IMAGE_WORDS.contains(&w.as_str())) {
                return None;
            }
            ws.iter()
                .any(|w| names.contains(&w.as_str()))
                .then(|| Some(format!("image `{image}` in `{}`", u.service)))
        }),
        Matcher::Anonymous => (s.kind == DataKind::Anonymous).then_some(None),
    }
}

/// `path` is `prefix` or lies under it (component-wise; trailing slashes ignored).
fn under(path: &str, prefix: &str) -> bool {
    let path = path.trim_end_matches('/');
    let prefix = prefix.trim_end_matches('/');
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Lower-case words of a name or path: split at `/`, `-`, `_`, `.`, `:` and spaces. `node_modules` and
/// `__pycache__` are kept whole as well.
fn words_of(s: &str) -> Vec<String> {
    let lower = s.to_ascii_lowercase();
    let mut out: Vec<String> = lower
        .split(['/', '-', '_', '.', ':', ' '])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    for whole in ["node_modules", "__pycache__"] {
        if lower.contains(whole) {
            out.push(whole.to_string());
        }
    }
    out
}

/// Words of an image's name: registry, namespace, tag and digest dropped (`ghcr.io/x/postgres-ha:16` →
/// `postgres`, `ha`).
fn image_words(image: &str) -> Vec<String> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let name = last.split(':').next().unwrap_or(last);
    name.to_ascii_lowercase()
        .split(['-', '_', '.'])
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_end_matches(|c: char| c.is_ascii_digit()).to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named<'a>(key: &'a str, uses: &'a [Use<'a>]) -> Subject<'a> {
        Subject {
            kind: DataKind::Named,
            key,
            host_path: None,
            declared: None,
            label: None,
            uses,
        }
    }

    fn bind<'a>(key: &'a str, host: &'a str, uses: &'a [Use<'a>]) -> Subject<'a> {
        Subject {
            kind: DataKind::Bind,
            key,
            host_path: Some(host),
            declared: None,
            label: None,
            uses,
        }
    }

    fn use_<'a>(image: &'a str, target: &'a str, ro: bool) -> Use<'a> {
        Use {
            service: "svc",
            image: Some(image),
            target,
            read_only: ro,
        }
    }

    #[test]
    fn x_persist_wins_over_label_and_rules() {
        let uses = [use_("postgres:16", "/var/lib/postgresql/data", false)];
        let mut s = named("pg", &uses);
        s.declared = Some(Tier::Optional);
        s.label = Some("important");
        let c = classify(&s);
        assert_eq!((c.tier, c.source), (Tier::Optional, TierSource::XPersist));
    }

    #[test]
    fn label_wins_over_rules_and_invalid_label_is_ignored() {
        let uses = [use_("postgres:16", "/var/lib/postgresql/data", false)];
        let mut s = named("pg", &uses);
        s.label = Some("regenerable");
        assert_eq!(classify(&s).tier, Tier::Regenerable);
        s.label = Some("bogus");
        assert_eq!(classify(&s).rule, Some("database-dir"));
    }

    #[test]
    fn database_data_dir_is_critical_with_evidence() {
        let uses = [use_("postgres:16", "/var/lib/postgresql/data", false)];
        let c = classify(&named("pgdata", &uses));
        assert_eq!(c.tier, Tier::Critical);
        assert_eq!(
            c.reason,
            "database data directory (`/var/lib/postgresql/data` in `svc`)"
        );
    }

    #[test]
    fn database_image_makes_an_unusual_path_critical() {
        let uses = [use_("docker.io/library/mariadb:11", "/srv/data", false)];
        let c = classify(&named("stuff", &uses));
        assert_eq!((c.tier, c.rule), (Tier::Critical, Some("database-image")));
    }

    #[test]
    fn tool_images_beside_a_database_are_not_databases() {
        let uses = [use_("mongo-express:1", "/srv/state", false)];
        assert_eq!(classify(&named("state", &uses)).source, TierSource::Default);
    }

    #[test]
    fn init_scripts_of_a_database_are_regenerable() {
        let uses = [use_(
            "postgres:16",
            "/docker-entrypoint-initdb.d/init.sql",
            false,
        )];
        let c = classify(&bind("./init.sql", "/p/init.sql", &uses));
        assert_eq!((c.tier, c.rule), (Tier::Regenerable, Some("init-scripts")));
    }

    #[test]
    fn read_only_config_bind_is_not_critical() {
        let uses = [use_("postgres:16", "/etc/postgresql/postgresql.conf", true)];
        let c = classify(&bind("./pg.conf", "/p/pg.conf", &uses));
        assert_eq!(c.tier, Tier::Regenerable);
    }

    #[test]
    fn writable_config_bind_is_regenerable_but_a_named_volume_there_is_not() {
        let uses = [use_("prom/prometheus:v2", "/etc/prometheus", false)];
        let c = classify(&bind("./prometheus", "/p/prometheus", &uses));
        assert_eq!((c.tier, c.rule), (Tier::Regenerable, Some("config-bind")));
        let uses = [use_("myapp:1", "/etc/myapp/secrets", false)];
        assert_eq!(classify(&named("secrets", &uses)).tier, Tier::Important);
        // Certificates under /etc are state, not configuration.
        let uses = [use_("certbot:1", "/etc/letsencrypt", false)];
        assert_eq!(
            classify(&bind("./le", "/p/le", &uses)).tier,
            Tier::Important
        );
    }

    #[test]
    fn data_dir_bind_into_a_database_is_critical() {
        let uses = [use_("mongo:7", "/data/db", false)];
        let c = classify(&bind("./data", "/p/data", &uses));
        assert_eq!(c.tier, Tier::Critical);
    }

    #[test]
    fn host_system_paths_are_optional() {
        let uses = [use_("traefik:3", "/var/run/docker.sock", true)];
        let c = classify(&bind("/var/run/docker.sock", "/var/run/docker.sock", &uses));
        assert_eq!((c.tier, c.rule), (Tier::Optional, Some("host-system")));
        // `/` only matches itself, not every path.
        let uses = [use_("app:1", "/data", false)];
        let c = classify(&bind("/srv/app", "/srv/app", &uses));
        assert_ne!(c.rule, Some("host-system"));
    }

    #[test]
    fn names_decide_when_mounts_say_nothing() {
        let uses = [use_("myapp:1", "/app/x", false)];
        assert_eq!(classify(&named("media_volume", &uses)).tier, Tier::Critical);
        assert_eq!(
            classify(&named("static_volume", &uses)).tier,
            Tier::Regenerable
        );
        assert_eq!(classify(&named("mail-logs", &uses)).tier, Tier::Optional);
        assert_eq!(classify(&named("certs", &uses)).tier, Tier::Important);
        assert_eq!(classify(&named("db_data", &uses)).tier, Tier::Critical);
        let nm = [use_("node:20", "/app/node_modules", false)];
        assert_eq!(classify(&named("deps", &nm)).tier, Tier::Regenerable);
    }

    #[test]
    fn stateful_services_are_important() {
        let uses = [use_("redis:7-alpine", "/data", false)];
        let c = classify(&named("redisdata", &uses));
        assert_eq!(
            (c.tier, c.rule),
            (Tier::Important, Some("stateful-service-image"))
        );
        let uses = [use_(
            "confluentinc/cp-kafka:7.5.0",
            "/var/lib/kafka/data",
            false,
        )];
        assert_eq!(classify(&named("k", &uses)).tier, Tier::Important);
    }

    #[test]
    fn anonymous_volumes_default_to_regenerable_unless_they_hold_a_database() {
        let uses = [use_("myapp:1", "/app/vendor", false)];
        let mut s = named("web:/app/vendor", &uses);
        s.kind = DataKind::Anonymous;
        assert_eq!(classify(&s).tier, Tier::Regenerable);
        let uses = [use_("postgres:16", "/var/lib/postgresql/data", false)];
        let mut s = named("db:/var/lib/postgresql/data", &uses);
        s.kind = DataKind::Anonymous;
        assert_eq!(classify(&s).tier, Tier::Critical);
    }

    #[test]
    fn unknown_data_is_important_by_default() {
        let uses = [use_("myapp:1", "/srv/state", false)];
        let c = classify(&named("state", &uses));
        assert_eq!((c.tier, c.source), (Tier::Important, TierSource::Default));
        assert_eq!(c.reason, DEFAULT_REASON);
    }

    #[test]
    fn path_prefixes_match_whole_components() {
        assert!(under("/var/lib/mysql", "/var/lib/mysql"));
        assert!(under("/var/lib/mysql/", "/var/lib/mysql"));
        assert!(under("/var/lib/mysql/data", "/var/lib/mysql"));
        assert!(!under("/var/lib/mysql-files", "/var/lib/mysql"));
    }

    #[test]
    fn image_words_drop_registry_tag_and_version_digits() {
        assert_eq!(
            image_words("ghcr.io/org/postgres-ha:16@sha256:ab"),
            ["postgres", "ha"]
        );
        assert_eq!(
            image_words("clickhouse/clickhouse-server"),
            ["clickhouse", "server"]
        );
        assert_eq!(image_words("pgvector/pgvector:pg16"), ["pgvector"]);
        assert_eq!(image_words("influxdb2"), ["influxdb"]);
    }

    #[test]
    fn rule_ids_are_unique() {
        let mut ids: Vec<_> = RULES.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
    }
}
