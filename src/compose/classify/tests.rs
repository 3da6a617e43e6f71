//! The classification rules, one test per behaviour and per case a rule was fixed for.

use super::words::{image_path, image_words, under};
use super::*;

fn named<'a>(key: &'a str, uses: &'a [Use<'a>]) -> Subject<'a> {
    Subject {
        kind: DataKind::Named,
        key,
        host_path: None,
        host_is_file: None,
        declared: None,
        label: None,
        uses,
        project_images: &[],
    }
}

fn bind<'a>(key: &'a str, host: &'a str, uses: &'a [Use<'a>]) -> Subject<'a> {
    Subject {
        kind: DataKind::Bind,
        key,
        host_path: Some(host),
        host_is_file: None,
        declared: None,
        label: None,
        uses,
        project_images: &[],
    }
}

fn use_<'a>(image: &'a str, target: &'a str, ro: bool) -> Use<'a> {
    Use {
        service: "svc",
        image: Some(image),
        target,
        read_only: ro,
        ..Use::default()
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
fn a_config_dir_the_image_only_reads_is_regenerable_but_unknown_etc_state_is_not() {
    // Prometheus only reads /etc/prometheus (its row says so), writable or not.
    let uses = [use_("prom/prometheus:v2", "/etc/prometheus", false)];
    let c = classify(&bind("./prometheus", "/p/prometheus", &uses));
    assert_eq!(
        (c.tier, c.rule),
        (Tier::Regenerable, Some("image-monitoring-config"))
    );
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

fn helper_use<'a>(image: &'a str, target: &'a str) -> Use<'a> {
    Use {
        service: "init",
        image: Some(image),
        target,
        read_only: false,
        helper: true,
        image_volume: false,
    }
}

#[test]
fn a_chown_helper_mounting_uploads_under_tmp_does_not_make_them_optional() {
    let uses = [
        helper_use("busybox", "/tmp/uploads"),
        use_("example/app:1", "/app/uploads", false),
    ];
    let c = classify(&named("app-files", &uses));
    assert_eq!((c.tier, c.rule), (Tier::Critical, Some("uploads")));
    // Only helpers mount it: their reading is all there is.
    let uses = [helper_use("busybox", "/tmp/scratch")];
    assert_eq!(classify(&named("scratch", &uses)).tier, Tier::Optional);
}

#[test]
fn the_most_valuable_reading_of_all_mounts_wins() {
    // One service mounts it under a cache path, another at its data root: the data root wins.
    let uses = [
        use_("example/app:1", "/var/cache/app", false),
        use_("example/app:1", "/data", false),
    ];
    assert_eq!(classify(&named("shared", &uses)).tier, Tier::Critical);
}

#[test]
fn a_read_only_reader_does_not_lower_what_a_writer_mounts() {
    // nginx serves the volume read-only at its static root; the app writes it: the app's reading counts.
    let uses = [
        use_("example/app:1", "/srv/state", false),
        use_("nginx:1", "/usr/share/nginx/html", true),
    ];
    let c = classify(&named("state", &uses));
    assert_eq!((c.tier, c.source), (Tier::Important, TierSource::Default));
}

#[test]
fn writable_etc_state_of_an_application_is_not_regenerable_configuration() {
    let bind_rw = [use_("example/mailer:1", "/etc/opendkim/keys", false)];
    let c = classify(&bind("./dkim", "/p/dkim", &bind_rw));
    assert_eq!((c.tier, c.rule), (Tier::Important, Some("etc-state")));
    // The well-known rows know GitLab's and Pi-hole's /etc state is critical.
    let gitlab = [use_("gitlab/gitlab-ce:17.0.0-ce.0", "/etc/gitlab", false)];
    assert_eq!(
        classify(&bind("./config", "/p/config", &gitlab)).tier,
        Tier::Critical
    );
    let pihole = [use_("pihole/pihole:latest", "/etc/pihole", false)];
    assert_eq!(
        classify(&bind("./etc-pihole", "/p/etc-pihole", &pihole)).tier,
        Tier::Critical
    );
}

#[test]
fn config_bind_is_only_for_read_only_directories_and_single_files() {
    let ro = [use_("example/app:1", "/etc/app", true)];
    assert_eq!(
        classify(&bind("./app", "/p/app", &ro)).rule,
        Some("config-bind")
    );
    let file = [use_("example/app:1", "/etc/app/app.conf", false)];
    assert_eq!(
        classify(&bind("./app.conf", "/p/app.conf", &file)).rule,
        Some("single-file")
    );
    let mut dir = bind("./app", "/p/app", &ro);
    let rw = [use_("example/app:1", "/etc/app", false)];
    dir.uses = &rw;
    assert_ne!(classify(&dir).tier, Tier::Regenerable);
}

#[test]
fn the_host_says_whether_a_bind_is_a_file() {
    // `/etc/app/settings` has no extension; the host knows it is a file.
    let uses = [use_("example/app:1", "/etc/app/settings", false)];
    let mut s = bind("./settings", "/p/settings", &uses);
    s.host_is_file = Some(true);
    assert_eq!(classify(&s).rule, Some("single-file"));
    s.host_is_file = Some(false);
    assert_eq!(classify(&s).rule, Some("etc-state"));
}

#[test]
fn script_and_template_single_file_binds_are_regenerable() {
    for target in [
        "/docker-entrypoint.sh",
        "/app/templates/mail.html.j2",
        "/srv/Caddyfile",
    ] {
        let uses = [use_("example/app:1", target, false)];
        let c = classify(&bind("./f", "/p/f", &uses));
        assert_eq!(c.tier, Tier::Regenerable, "{target}: {c:?}");
    }
    // A database or key file is not configuration.
    let uses = [use_("example/app:1", "/app/db.sqlite3", false)];
    assert_eq!(
        classify(&bind("./db.sqlite3", "/p/db.sqlite3", &uses)).tier,
        Tier::Critical
    );
    let uses = [use_("traefik:3", "/acme.json", false)];
    assert_eq!(
        classify(&bind("./acme.json", "/p/acme.json", &uses)).tier,
        Tier::Important
    );
}

#[test]
fn an_image_volume_declaration_marks_data() {
    let mut u = use_("example/app:1", "/var/opt/app/state", false);
    assert_eq!(classify(&named("state", &[u])).source, TierSource::Default);
    u.image_volume = true;
    let c = classify(&named("state", &[u]));
    assert_eq!((c.tier, c.rule), (Tier::Critical, Some("image-volume")));
}

#[test]
fn acme_challenge_webroots_are_regenerable_not_certificate_stores() {
    let uses = [use_("nginx:1", "/var/www/certbot", false)];
    assert_eq!(
        classify(&bind("./certbot/www", "/p/www", &uses)).tier,
        Tier::Regenerable
    );
    let uses = [use_(
        "example/proxy:1",
        "/srv/.well-known/acme-challenge",
        false,
    )];
    assert_eq!(
        classify(&named("acme-webroot", &uses)).rule,
        Some("acme-challenge")
    );
}

#[test]
fn socket_directories_under_run_are_regenerable() {
    let uses = [
        use_("mariadb:11", "/var/run/mysqld", false),
        use_("example/php:8", "/var/run/mysqld", false),
    ];
    let c = classify(&named("mysql-socket", &uses));
    assert_eq!((c.tier, c.rule), (Tier::Regenerable, Some("socket-dir")));
}

#[test]
fn downloaded_models_are_regenerable() {
    let uses = [use_("ollama/ollama:latest", "/root/.ollama", false)];
    assert_eq!(classify(&named("ollama", &uses)).tier, Tier::Regenerable);
    let uses = [use_("example/ai:1", "/app/models", false)];
    assert_eq!(
        classify(&named("weights", &uses)).rule,
        Some("downloaded-models")
    );
}

#[test]
fn rebuilt_search_indexes_are_regenerable() {
    let uses = [use_("example/chat:1", "/app/bleve-indexes", false)];
    assert_eq!(
        classify(&bind("./idx", "/p/idx", &uses)).rule,
        Some("search-index")
    );
}

#[test]
fn directories_an_entrypoint_copies_from_the_image_are_regenerable() {
    let uses = [use_(
        "netboxcommunity/netbox:v4",
        "/etc/netbox-nginx",
        false,
    )];
    assert_eq!(
        classify(&named("nginx-config", &uses)).tier,
        Tier::Regenerable
    );
}

#[test]
fn the_word_db_in_a_signature_cache_name_is_not_a_database() {
    let uses = [use_("example/clamd:1", "/var/lib/clamav", false)];
    let c = classify(&named("clamd-db-vol", &uses));
    assert_eq!(
        (c.tier, c.rule),
        (Tier::Regenerable, Some("clamav-signatures"))
    );
    // `db` alone or with data words still names a database.
    let uses = [use_("example/app:1", "/srv/x", false)];
    assert_eq!(
        classify(&named("db_data", &uses)).rule,
        Some("database-name")
    );
    assert_ne!(
        classify(&named("geoip-db", &uses)).rule,
        Some("database-name")
    );
}

#[test]
fn an_image_name_fragment_is_not_the_image() {
    let uses = [use_(
        "opensearchproject/opensearch-dashboards:2",
        "/usr/share/opensearch-dashboards/data",
        false,
    )];
    assert_ne!(
        classify(&named("dash", &uses)).rule,
        Some("stateful-service-image")
    );
    let uses = [use_("opensearchproject/opensearch:2", "/srv/os", false)];
    assert_eq!(
        classify(&named("os", &uses)).rule,
        Some("stateful-service-image")
    );
    let uses = [use_("clickhouse/clickhouse-server:24", "/srv/ch", false)];
    assert_eq!(classify(&named("ch", &uses)).rule, Some("database-image"));
}

#[test]
fn the_data_root_of_a_long_running_service_is_critical() {
    for target in [
        "/data",
        "/app/data",
        "/var/lib/example",
        "/srv/app/storage",
        "/var/lib/ghost/content",
    ] {
        let uses = [use_("example/app:1", target, false)];
        let c = classify(&named("appdata", &uses));
        assert_eq!(c.tier, Tier::Critical, "{target}: {c:?}");
    }
    // Read-only, or by a helper only: no data-root reading.
    let ro = [use_("example/app:1", "/data", true)];
    assert_eq!(classify(&named("appdata", &ro)).source, TierSource::Default);
    let helper = [helper_use("busybox", "/data")];
    assert_eq!(
        classify(&named("appdata", &helper)).source,
        TierSource::Default
    );
}

#[test]
fn a_read_only_host_directory_outside_the_project_is_not_configuration() {
    let uses = [use_("example/archive:1", "/archive", true)];
    assert_eq!(
        classify(&bind("/srv/archive", "/srv/archive", &uses)).source,
        TierSource::Default
    );
    assert_eq!(
        classify(&bind("./archive", "/p/archive", &uses)).rule,
        Some("read-only-bind")
    );
}

#[test]
fn project_source_binds_are_regenerable() {
    for (key, target) in [
        (".", "/code"),
        ("..", "/home/dev/project"),
        ("./frontend", "/app"),
        ("./superset", "/app/superset"),
        ("./src/lib", "/opt/lib"),
    ] {
        let uses = [use_("example/app:1", target, false)];
        let c = classify(&bind(key, "/p/x", &uses));
        assert_eq!(c.rule, Some("source-bind"), "{key}:{target}");
    }
    // A data directory mirrored into the app's root is data.
    let uses = [use_("example/app:1", "/app/data", false)];
    assert_ne!(
        classify(&bind("./data", "/p/data", &uses)).rule,
        Some("source-bind")
    );
}

#[test]
fn well_known_images_cite_what_they_protect_and_there_are_at_least_sixty() {
    let mut images = std::collections::BTreeSet::new();
    for r in RULES {
        if let Matcher::ImagePath { images: is, paths } = r.matcher {
            assert!(!paths.is_empty(), "{}", r.id);
            assert!(
                r.reason.contains('(') && r.reason.ends_with(')'),
                "{}: the reason cites its source",
                r.id
            );
            images.extend(is.iter().copied());
        }
    }
    assert!(images.len() >= 60, "{} well-known images", images.len());
}

#[test]
fn image_paths_drop_registry_library_and_tag() {
    assert_eq!(image_path("docker.io/library/ghost:5-alpine"), "ghost");
    assert_eq!(
        image_path("ghcr.io/immich-app/immich-server:v1.2"),
        "immich-app/immich-server"
    );
    assert_eq!(image_path("localhost:5000/app:1"), "app");
    assert_eq!(image_path("postgres@sha256:abc"), "postgres");
    assert_eq!(
        image_path("lscr.io/linuxserver/sonarr"),
        "linuxserver/sonarr"
    );
}

#[test]
fn one_shot_services_are_found_from_the_compose_file() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "services:
  app:
    image: example/app:1
    restart: always
    depends_on:
      migrate: {condition: service_completed_successfully}
      cache: {condition: service_started}
  migrate: {image: example/app:1}
  cache: {image: redis:7}
  fix-perms:
    image: busybox
    command: [sh, -c, 'chown -R 1000:1000 /data']
  db-init: {image: example/app:1, restart: 'no'}
  worker:
    image: busybox
    command: sh -c 'while true; do work; done'
";
    std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
    let p = crate::compose::load_project(&crate::compose::ProjectOptions {
        working_dir: dir.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    let one_shot: Vec<String> = one_shot_services(&p).into_iter().collect();
    assert_eq!(one_shot, ["db-init", "fix-perms", "migrate"]);
}

fn in_project<'a>(key: &'a str, uses: &'a [Use<'a>], images: &'a [&'a str]) -> Subject<'a> {
    Subject {
        project_images: images,
        ..named(key, uses)
    }
}

#[test]
fn search_indexes_of_applications_that_rebuild_them_are_regenerable() {
    // GeoNetwork (compose-corpus-2 07): its Elasticsearch index is rebuilt from the database.
    let es = [use_(
        "elasticsearch:8.14.3",
        "/usr/share/elasticsearch/data",
        false,
    )];
    let images = ["geonetwork:4", "elasticsearch:8.14.3", "postgres:16"];
    let c = classify(&in_project("esdata", &es, &images));
    assert_eq!(c.rule, Some("app-search-index"));
    assert_eq!(c.tier, Tier::Regenerable);
    assert!(c.reason.contains("beside `geonetwork:4`"), "{}", c.reason);
    // Karakeep (compose-corpus-2 19): Meilisearch is reindexed from the bookmarks.
    let meili = [use_("getmeili/meilisearch:v1.41.0", "/meili_data", false)];
    let images = [
        "ghcr.io/karakeep-app/karakeep:release",
        "getmeili/meilisearch:v1.41.0",
    ];
    assert_eq!(
        classify(&in_project("meilisearch", &meili, &images)).tier,
        Tier::Regenerable
    );
    // The same index beside an unknown application keeps its value.
    let images = ["example/app:1", "elasticsearch:8.14.3"];
    assert_eq!(
        classify(&in_project("esdata", &es, &images)).tier,
        Tier::Important
    );
}

#[test]
fn stores_an_application_keeps_its_own_data_in_follow_that_application() {
    // Tube Archivist (compose-corpus-2 36): Elasticsearch is the archive's only database.
    let es = [use_(
        "bbilly1/tubearchivist-es",
        "/usr/share/elasticsearch/data",
        false,
    )];
    let images = ["bbilly1/tubearchivist", "bbilly1/tubearchivist-es", "redis"];
    let c = classify(&in_project("es", &es, &images));
    assert_eq!(
        (c.tier, c.rule),
        (Tier::Critical, Some("app-archive-index"))
    );
    // mailcow (compose-corpus-2 25) keeps DKIM keys in Redis; SearXNG (34) only limiter counters.
    let redis = [use_("redis:7.4.6-alpine", "/data", false)];
    let images = ["ghcr.io/mailcow/dovecot:2.3", "redis:7.4.6-alpine"];
    assert_eq!(
        classify(&in_project("redis-vol-1", &redis, &images)).tier,
        Tier::Critical
    );
    let valkey = [use_("docker.io/valkey/valkey:8-alpine", "/data", false)];
    let images = [
        "docker.io/searxng/searxng:latest",
        "docker.io/valkey/valkey:8-alpine",
    ];
    assert_eq!(
        classify(&in_project("valkey-data2", &valkey, &images)).tier,
        Tier::Regenerable
    );
}

/// Each `(image, target, tier)`: a volume that image mounts at target gets that tier from a rule.
fn assert_rule_tiers(cases: &[(&str, &str, Tier)]) {
    for &(image, target, tier) in cases {
        let uses = [use_(image, target, false)];
        let c = classify(&named("vol", &uses));
        assert_eq!(c.tier, tier, "{image} at {target}: {c:?}");
        assert_eq!(c.source, TierSource::Rule, "{image} at {target}");
    }
}

#[test]
fn documented_data_paths_of_applications_without_a_generic_reading() {
    assert_rule_tiers(&[
        // compose-corpus-2 09, 10, 15, 29, 30: application state that fell to `important`.
        ("flowiseai/flowise:latest", "/root/.flowise", Tier::Critical),
        ("asonix/pictrs:0.5", "/mnt", Tier::Critical),
        (
            "frappe/erpnext:v16.32.3",
            "/home/frappe/frappe-bench/sites",
            Tier::Critical,
        ),
        (
            "ghcr.io/nextcloud-releases/all-in-one:latest",
            "/mnt/docker-aio-config",
            Tier::Critical,
        ),
        (
            "passbolt/passbolt:latest-ce",
            "/etc/passbolt/gpg",
            Tier::Critical,
        ),
        // compose-corpus-2 18, 26: `/config` rated too high.
        ("ghcr.io/jitsi/web:unstable", "/config", Tier::Regenerable),
        ("ghcr.io/jitsi/web:unstable", "/storage", Tier::Important),
        ("makeplane/plane-proxy:stable", "/config", Tier::Regenerable),
        ("makeplane/plane-proxy:stable", "/data", Tier::Important),
        (
            "mintplexlabs/anythingllm",
            "/app/collector/hotdir",
            Tier::Regenerable,
        ),
        // compose-corpus-2 25, compose-corpus 10: `/var/lib/<x>` caches rated too high.
        (
            "ghcr.io/mailcow/postfix-tlspol:1.8.23",
            "/var/lib/postfix-tlspol",
            Tier::Regenerable,
        ),
        (
            "ghcr.io/plausible/community-edition:v2.1.3",
            "/var/lib/plausible",
            Tier::Important,
        ),
    ]);
}

#[test]
fn rspamd_statistics_are_important_whichever_service_mounts_them() {
    // compose-corpus-2 25: postfix, dovecot and php-fpm mount rspamd's volume at its own path.
    let uses = [
        use_("ghcr.io/mailcow/rspamd:4.1.4-1", "/var/lib/rspamd", false),
        use_(
            "ghcr.io/mailcow/postfix:3.10.12-1",
            "/var/lib/rspamd",
            false,
        ),
    ];
    let c = classify(&named("rspamd-vol-1", &uses));
    assert_eq!(
        (c.tier, c.rule),
        (Tier::Important, Some("rspamd-statistics"))
    );
    // Another service's state under `/var/lib/<name>` stays critical.
    let uses = [use_(
        "woodpeckerci/woodpecker-server",
        "/var/lib/woodpecker",
        false,
    )];
    let c = classify(&named("woodpecker-server-data", &uses));
    assert_eq!((c.tier, c.rule), (Tier::Critical, Some("var-lib-state")));
}

#[test]
fn media_libraries_are_critical() {
    // compose-corpus-2 12: audiobookshelf's libraries fell to `important`.
    for (key, target) in [("./audiobooks", "/audiobooks"), ("./podcasts", "/podcasts")] {
        let uses = [use_("ghcr.io/advplyr/audiobookshelf", target, false)];
        let c = classify(&bind(key, "/srv/p/x", &uses));
        assert_eq!((c.tier, c.rule), (Tier::Critical, Some("uploads")), "{key}");
    }
    // A library mounted read-only is the user's media, not configuration the service reads.
    let uses = [use_("deluan/navidrome", "/music", true)];
    for key in ["./music", "/srv/music"] {
        let c = classify(&bind(key, "/srv/music", &uses));
        assert_eq!(c.tier, Tier::Critical, "{key}: {c:?}");
    }
}

#[test]
fn a_mail_index_is_regenerable_and_backups_are_important_not_uploads() {
    // compose-corpus-2 25: `vmail-index-vol-1` read as mail, `sogo-userdata-backup-vol-1` as uploads.
    let uses = [use_(
        "ghcr.io/mailcow/dovecot:2.3",
        "/var/vmail_index",
        false,
    )];
    let c = classify(&named("vmail-index-vol-1", &uses));
    assert_eq!((c.tier, c.rule), (Tier::Regenerable, Some("search-index")));
    let uses = [use_("ghcr.io/mailcow/sogo:5", "/sogo_backup", false)];
    let c = classify(&named("sogo-userdata-backup-vol-1", &uses));
    assert_eq!((c.tier, c.rule), (Tier::Important, Some("backups")));
}

#[test]
fn hook_script_binds_are_regenerable() {
    // compose-corpus-2 25: `./data/hooks/unbound:/hooks` fell to `important`.
    let uses = [use_("ghcr.io/mailcow/unbound:1", "/hooks", false)];
    let c = classify(&bind(
        "./data/hooks/unbound",
        "/srv/m/data/hooks/unbound",
        &uses,
    ));
    assert_eq!((c.tier, c.rule), (Tier::Regenerable, Some("hook-scripts")));
}

#[test]
fn a_config_file_with_a_variant_suffix_is_a_single_file() {
    // compose-corpus-2 25: `rspamd.conf.local` was taken for a directory of `/etc` state.
    let uses = [use_(
        "ghcr.io/mailcow/rspamd:4",
        "/etc/rspamd/rspamd.conf.local",
        false,
    )];
    let c = classify(&bind(
        "./data/conf/rspamd/rspamd.conf.local",
        "/srv/m/data/conf/rspamd/rspamd.conf.local",
        &uses,
    ));
    assert_eq!((c.tier, c.rule), (Tier::Regenerable, Some("single-file")));
    // `conf.d` directories are still directories.
    let uses = [use_("example/app:1", "/etc/app/x.conf.d", false)];
    let c = classify(&bind("./x.conf.d", "/srv/p/x.conf.d", &uses));
    assert_eq!(c.rule, Some("etc-state"));
}

#[test]
fn program_files_shared_through_a_volume_are_regenerable() {
    // compose-corpus-2 25: SOGo copies its web resources into a volume nginx serves.
    let uses = [
        use_("ghcr.io/mailcow/sogo:5", "/sogo_web", false),
        use_(
            "ghcr.io/mailcow/nginx:1",
            "/usr/local/lib/GNUstep/SOGo",
            false,
        ),
    ];
    let c = classify(&named("sogo-web-vol-1", &uses));
    assert_eq!((c.tier, c.rule), (Tier::Regenerable, Some("program-files")));
}

#[test]
fn keys_and_certificates_in_a_web_servers_config_dir_are_not_configuration() {
    // compose-corpus-3 02: AppFlowy's nginx TLS key was read as nginx configuration (regenerable).
    for target in [
        "/etc/nginx/ssl/private_key.key",
        "/etc/nginx/ssl/certificate.crt",
    ] {
        let uses = [use_("nginx", target, false)];
        let c = classify(&bind("./nginx/ssl/x", "/srv/p/nginx/ssl/x", &uses));
        assert_eq!(
            (c.tier, c.rule),
            (Tier::Important, Some("key-file")),
            "{target}"
        );
    }
    let uses = [use_("nginx", "/etc/nginx/nginx.conf", false)];
    let c = classify(&bind(
        "./nginx/nginx.conf",
        "/srv/p/nginx/nginx.conf",
        &uses,
    ));
    assert_eq!(c.tier, Tier::Regenerable);
}

#[test]
fn documented_data_paths_found_missing_on_the_third_corpus() {
    assert_rule_tiers(&[
        // compose-corpus-3 08, 06, 20, 21, 28, 31.
        ("cryptpad/cryptpad:latest", "/cryptpad/blob", Tier::Critical),
        (
            "cryptpad/cryptpad:latest",
            "/cryptpad/datastore",
            Tier::Critical,
        ),
        (
            "cryptpad/cryptpad:latest",
            "/cryptpad/onlyoffice-conf",
            Tier::Regenerable,
        ),
        ("twinproduction/gatus:latest", "/config", Tier::Regenerable),
        (
            "ghcr.io/pterodactyl/panel:latest",
            "/app/var",
            Tier::Critical,
        ),
        ("rustdesk/rustdesk-server:latest", "/root", Tier::Critical),
        (
            "ghcr.io/wg-easy/wg-easy:15",
            "/etc/wireguard",
            Tier::Critical,
        ),
        (
            "matrixdotorg/dendrite-monolith:latest",
            "/etc/dendrite",
            Tier::Critical,
        ),
        // compose-corpus-3 14: PGDATA at `/data/postgres` of a PostgreSQL image with another name.
        (
            "getlago/postgres-partman:15.0-alpine",
            "/data/postgres",
            Tier::Critical,
        ),
        // compose-corpus-3 09: changedetection.io's `/datastore`.
        (
            "ghcr.io/dgtlmoon/changedetection.io",
            "/datastore",
            Tier::Critical,
        ),
    ]);
}

#[test]
fn userfiles_are_uploads() {
    // compose-corpus-3 04: Leantime's `userfiles` fell to `important`.
    let uses = [use_(
        "leantime/leantime:latest",
        "/var/www/html/userfiles",
        false,
    )];
    let c = classify(&named("userfiles", &uses));
    assert_eq!((c.tier, c.rule), (Tier::Critical, Some("uploads")));
}

#[test]
fn a_pnpm_store_is_a_dependency_cache() {
    // compose-corpus-3 13: Etherpad's development file mounts the pnpm store in a volume.
    let uses = [use_(
        "etherpad/etherpad",
        "/home/etherpad/.local/share/pnpm/store/v3",
        false,
    )];
    let c = classify(&named("pnpm-store", &uses));
    assert_eq!((c.tier, c.rule), (Tier::Regenerable, Some("build-output")));
}
