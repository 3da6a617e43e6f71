//! Logical dumps (`consistency: dump`): the database's own tool, run inside the running service through the
//! engine's exec API, writes the backup of the volume; its output streams into the backup file as
//! `dumps/<service>.<ext>.zst`. A restore feeds it back to the service's loader.
//!
//! The recipe comes from `x-persist: {dump: …}`, else from the image of a service that mounts the volume.
//! The volume's file tree is not stored as well: a file copy of a running database is not a backup, and the
//! dump is. Credentials are read inside the container from its own environment (`POSTGRES_USER`,
//! `MYSQL_ROOT_PASSWORD`, `REDIS_PASSWORD`, …) by `sh`, so no password appears on this machine's command
//! lines.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::UsageError;
use super::consistency::persist_specs;
use crate::compose::{DumpRecipe, Project};
use crate::engine::{ContainerInfo, Engine};
use crate::inventory::DataItem;
use crate::report::Printer;

/// How long a restore waits for a service it started to accept its tool.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long Redis gets to finish a `BGSAVE`.
const BGSAVE_TIMEOUT_SECS: u32 = 600;

/// The recipe, and the service that runs it, for one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpChoice {
    pub recipe: DumpRecipe,
    pub service: String,
    pub image: String,
    /// Why this recipe: "image `postgres:16`" or "x-persist `dump: postgres`".
    pub reason: String,
}

/// The recipe for an image, by the last component of its repository: `postgres:16`,
/// `docker.io/bitnami/postgresql`, `timescale/timescaledb-ha:pg16`, …
pub fn recipe_for_image(image: &str) -> Option<DumpRecipe> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let repo = last.split(':').next().unwrap_or(last).to_ascii_lowercase();
    let recipe = match repo.as_str() {
        "postgres" | "postgresql" | "postgis" | "timescaledb" | "timescaledb-ha"
        | "postgresql-repmgr" => DumpRecipe::Postgres,
        "mysql" | "percona" | "percona-server" | "mysql-server" => DumpRecipe::Mysql,
        "mariadb" | "mariadb-galera" => DumpRecipe::Mariadb,
        "redis" | "valkey" | "redis-stack" | "redis-stack-server" => DumpRecipe::Redis,
        "mongo" | "mongodb" | "mongodb-community-server" | "mongodb-enterprise-server" => {
            DumpRecipe::Mongodb
        }
        _ => return None,
    };
    Some(recipe)
}

/// Chooses the recipe and the service for `item`: `x-persist: {dump: …}` wins, else the first service
/// mounting it whose image has a recipe.
pub fn choose(item: &DataItem, project: &Project) -> Result<DumpChoice, UsageError> {
    let explicit = persist_specs(item, project)
        .into_iter()
        .find_map(|p| p.dump);
    let mut users: Vec<(&str, String)> = Vec::new();
    for u in &item.users {
        if !users.iter().any(|(s, _)| *s == u.service) {
            let image = u
                .image
                .clone()
                .or_else(|| project.services.get(&u.service)?.image.clone())
                .unwrap_or_default();
            users.push((u.service.as_str(), image));
        }
    }
    if users.is_empty() {
        return Err(UsageError {
            message: format!(
                "`{}` asks for `consistency: dump`, and no service mounts it to dump it from",
                item.key
            ),
            hint: Some(
                "mount it in the database's service, or use `consistency: stop`".to_string(),
            ),
        });
    }
    if let Some(recipe) = explicit {
        let (service, image) = users
            .iter()
            .find(|(_, img)| recipe_for_image(img) == Some(recipe))
            .unwrap_or(&users[0]);
        return Ok(DumpChoice {
            recipe,
            service: service.to_string(),
            image: image.clone(),
            reason: format!("x-persist `dump: {recipe}`"),
        });
    }
    for (service, image) in &users {
        if let Some(recipe) = recipe_for_image(image) {
            return Ok(DumpChoice {
                recipe,
                service: service.to_string(),
                image: image.clone(),
                reason: format!("image `{image}`"),
            });
        }
    }
    Err(UsageError {
        message: format!(
            "`{}` asks for `consistency: dump`, and no dump recipe fits the image of {}",
            item.key,
            users
                .iter()
                .map(|(s, i)| format!("`{s}` (`{}`)", if i.is_empty() { "no image" } else { i }))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        hint: Some(
            "name the recipe: `x-persist: {consistency: dump, dump: postgres}` (or mysql, mariadb, redis, mongodb)"
                .to_string(),
        ),
    })
}

/// The file extension of a recipe's dump.
pub fn ext(recipe: DumpRecipe) -> &'static str {
    match recipe {
        DumpRecipe::Postgres | DumpRecipe::Mysql | DumpRecipe::Mariadb => "sql",
        DumpRecipe::Redis => "rdb",
        DumpRecipe::Mongodb => "archive",
    }
}

/// The tools a recipe uses to dump and to load, for messages.
pub fn tools(recipe: DumpRecipe) -> (&'static str, &'static str) {
    match recipe {
        DumpRecipe::Postgres => ("pg_dumpall", "psql"),
        DumpRecipe::Mysql => ("mysqldump", "mysql"),
        DumpRecipe::Mariadb => ("mariadb-dump", "mariadb"),
        DumpRecipe::Redis => ("redis-cli BGSAVE", "the RDB file, with the server stopped"),
        DumpRecipe::Mongodb => ("mongodump --archive", "mongorestore --archive --drop"),
    }
}

const MYSQL_ENV: &str =
    r#"export MYSQL_PWD="${MYSQL_PWD:-${MYSQL_ROOT_PASSWORD:-${MARIADB_ROOT_PASSWORD:-}}}"; "#;
const MONGO_AUTH: &str = r#"set --; if [ -n "${MONGO_INITDB_ROOT_USERNAME:-}" ]; then set -- --username "$MONGO_INITDB_ROOT_USERNAME" --password "${MONGO_INITDB_ROOT_PASSWORD:-}" --authenticationDatabase admin; fi; "#;
const REDIS_AUTH: &str =
    r#"if [ -n "${REDIS_PASSWORD:-}" ]; then export REDISCLI_AUTH="$REDIS_PASSWORD"; fi; "#;

fn sh(script: String) -> Vec<String> {
    vec!["sh".to_string(), "-c".to_string(), script]
}

/// The command that writes the dump to stdout (not for Redis, whose file is copied: [`redis_save`]).
pub fn dump_argv(recipe: DumpRecipe) -> Vec<String> {
    sh(match recipe {
        DumpRecipe::Postgres => {
            r#"exec pg_dumpall --clean --if-exists -U "${POSTGRES_USER:-postgres}""#.to_string()
        }
        DumpRecipe::Mysql => format!(
            "{MYSQL_ENV}exec mysqldump -uroot --all-databases --single-transaction --routines --events --triggers"
        ),
        DumpRecipe::Mariadb => format!(
            "{MYSQL_ENV}if command -v mariadb-dump >/dev/null 2>&1; then exec mariadb-dump -uroot --all-databases --single-transaction --routines --events --triggers; else exec mysqldump -uroot --all-databases --single-transaction --routines --events --triggers; fi"
        ),
        DumpRecipe::Mongodb => format!(r#"{MONGO_AUTH}exec mongodump --archive "$@""#),
        DumpRecipe::Redis => "cat \"$1\"".to_string(),
    })
}

/// The command that loads a dump from stdin into the running server (not for Redis).
pub fn load_argv(recipe: DumpRecipe) -> Vec<String> {
    sh(match recipe {
        // pg_dumpall's script is written to run without ON_ERROR_STOP: with `--clean` it drops and
        // recreates roles and databases, and the statements for the role it connects as fail by design
        // (PostgreSQL's own comment: "it won't hurt for the CREATE to fail"). Errors are checked afterwards
        // ([`psql_errors`]).
        DumpRecipe::Postgres => {
            r#"exec psql -X -q -v ON_ERROR_STOP=0 -U "${POSTGRES_USER:-postgres}" -d postgres"#
                .to_string()
        }
        DumpRecipe::Mysql => format!("{MYSQL_ENV}exec mysql -uroot"),
        DumpRecipe::Mariadb => format!(
            "{MYSQL_ENV}if command -v mariadb >/dev/null 2>&1; then exec mariadb -uroot; else exec mysql -uroot; fi"
        ),
        DumpRecipe::Mongodb => {
            format!(r#"{MONGO_AUTH}exec mongorestore --archive --drop "$@""#)
        }
        DumpRecipe::Redis => "false".to_string(),
    })
}

/// A command that succeeds once the server accepts its tool.
pub fn ready_argv(recipe: DumpRecipe) -> Vec<String> {
    sh(match recipe {
        DumpRecipe::Postgres => {
            r#"exec psql -X -q -U "${POSTGRES_USER:-postgres}" -d postgres -c 'SELECT 1'"#
                .to_string()
        }
        DumpRecipe::Mysql => format!("{MYSQL_ENV}exec mysql -uroot -e 'SELECT 1'"),
        DumpRecipe::Mariadb => format!(
            "{MYSQL_ENV}if command -v mariadb >/dev/null 2>&1; then exec mariadb -uroot -e 'SELECT 1'; else exec mysql -uroot -e 'SELECT 1'; fi"
        ),
        DumpRecipe::Mongodb => format!(
            r#"{MONGO_AUTH}if command -v mongosh >/dev/null 2>&1; then exec mongosh --quiet "$@" --eval 'db.adminCommand({{ping: 1}})'; else exec mongo --quiet "$@" --eval 'db.adminCommand({{ping: 1}})'; fi"#
        ),
        DumpRecipe::Redis => format!(r#"{REDIS_AUTH}test "$(redis-cli PING)" = PONG"#),
    })
}

/// Redis: `BGSAVE`, wait for `LASTSAVE` to change and for the save to have succeeded, then print where the
/// RDB file is and whether the append-only file is on.
fn redis_save_script() -> String {
    format!(
        r#"{REDIS_AUTH}set -e
before=$(redis-cli LASTSAVE)
case "$before" in ''|*[!0-9]*) echo "LASTSAVE answered: $before" >&2; exit 1;; esac
if [ "$before" = "$(date +%s)" ]; then sleep 1; fi
reply=$(redis-cli BGSAVE)
case "$reply" in *"saving started"*|*"saving scheduled"*) ;; *) echo "BGSAVE answered: $reply" >&2; exit 1;; esac
n=0
while [ "$(redis-cli LASTSAVE)" = "$before" ]; do
  n=$((n+1))
  if [ "$n" -gt {limit} ]; then echo "BGSAVE did not finish within {BGSAVE_TIMEOUT_SECS} s" >&2; exit 1; fi
  sleep 0.2
done
if ! redis-cli INFO persistence | grep -q 'rdb_last_bgsave_status:ok'; then echo "BGSAVE failed: $(redis-cli INFO persistence | grep rdb_last_bgsave_status)" >&2; exit 1; fi
{REDIS_WHERE}"#,
        limit = BGSAVE_TIMEOUT_SECS * 5,
    )
}

/// Prints `file=<rdb path>`, `appendonly=<yes|no>` and `owner=<uid>:<gid>` of the RDB file (or its directory).
const REDIS_WHERE: &str = r#"dir=$(redis-cli CONFIG GET dir | sed -n 2p)
file=$(redis-cli CONFIG GET dbfilename | sed -n 2p)
path="${dir:-/data}/${file:-dump.rdb}"
echo "file=$path"
echo "appendonly=$(redis-cli CONFIG GET appendonly | sed -n 2p)"
echo "owner=$(stat -c %u:%g "$path" 2>/dev/null || stat -c %u:%g "${dir:-/data}" 2>/dev/null || echo 0:0)"
"#;

/// Where a Redis server keeps its RDB file, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisFile {
    pub path: String,
    pub appendonly: bool,
    pub uid: u64,
    pub gid: u64,
}

fn parse_redis_file(output: &str) -> Option<RedisFile> {
    let get = |k: &str| {
        output
            .lines()
            .find_map(|l| l.trim().strip_prefix(k))
            .map(str::trim)
    };
    let path = get("file=")?.to_string();
    if !path.starts_with('/') {
        return None;
    }
    let appendonly = get("appendonly=").is_some_and(|v| v.eq_ignore_ascii_case("yes"));
    let (uid, gid) = get("owner=")
        .and_then(|o| o.split_once(':'))
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
        .unwrap_or((0, 0));
    Some(RedisFile {
        path,
        appendonly,
        uid,
        gid,
    })
}

/// Runs `script` in `container`, failing with its output when it does not succeed.
async fn run_checked(
    engine: &Engine,
    container: &ContainerInfo,
    argv: Vec<String>,
    what: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let o = engine
        .exec_capture(&container.id, &argv, &[], None, Some(timeout))
        .await?;
    if !o.success() {
        let why = if o.timed_out {
            format!("timed out after {} s", timeout.as_secs())
        } else {
            format!("exited with code {}", o.exit_code.unwrap_or(-1))
        };
        bail!(
            "{what} in `{}` {why}: {}",
            container.name,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Redis: saves a fresh RDB file with `BGSAVE` and says where it is.
pub async fn redis_save(engine: &Engine, container: &ContainerInfo) -> anyhow::Result<RedisFile> {
    let out = run_checked(
        engine,
        container,
        sh(redis_save_script()),
        "`BGSAVE`",
        Duration::from_secs(u64::from(BGSAVE_TIMEOUT_SECS) + 30),
    )
    .await?;
    parse_redis_file(&out).with_context(|| {
        format!(
            "cannot tell where Redis in `{}` keeps its RDB file: {out}",
            container.name
        )
    })
}

/// Redis: where the running server keeps its RDB file.
pub async fn redis_where(engine: &Engine, container: &ContainerInfo) -> anyhow::Result<RedisFile> {
    let out = run_checked(
        engine,
        container,
        sh(format!("{REDIS_AUTH}{REDIS_WHERE}")),
        "asking Redis where its RDB file is",
        Duration::from_secs(30),
    )
    .await?;
    parse_redis_file(&out).with_context(|| {
        format!(
            "cannot tell where Redis in `{}` keeps its RDB file: {out}",
            container.name
        )
    })
}

/// The argv that writes the dump of `recipe` to stdout; for Redis, after a fresh `BGSAVE`, the RDB file.
pub async fn dump_command(
    engine: &Engine,
    printer: &Printer,
    container: &ContainerInfo,
    recipe: DumpRecipe,
) -> anyhow::Result<Vec<String>> {
    if recipe == DumpRecipe::Redis {
        printer.verbose(format!("`BGSAVE` in `{}`", container.name));
        let file = redis_save(engine, container).await?;
        printer.verbose(format!("copying `{}` from `{}`", file.path, container.name));
        return Ok(vec!["cat".to_string(), file.path]);
    }
    Ok(dump_argv(recipe))
}

/// Waits until `container` accepts the recipe's tool, for a service that was just started.
pub async fn wait_ready(
    engine: &Engine,
    printer: &Printer,
    container: &ContainerInfo,
    recipe: DumpRecipe,
    timeout: Duration,
) -> anyhow::Result<()> {
    let began = Instant::now();
    let argv = ready_argv(recipe);
    loop {
        let last = match engine
            .exec_capture(
                &container.id,
                &argv,
                &[],
                None,
                Some(Duration::from_secs(10)),
            )
            .await
        {
            Ok(o) if o.success() => {
                printer.verbose(format!(
                    "`{}` accepts connections after {:.1} s",
                    container.name,
                    began.elapsed().as_secs_f64()
                ));
                return Ok(());
            }
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => e.to_string(),
        };
        if began.elapsed() >= timeout {
            bail!(
                "`{}` did not accept connections within {} s{}",
                container.name,
                timeout.as_secs(),
                if last.is_empty() {
                    String::new()
                } else {
                    format!(": {last}")
                }
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The `ERROR:` lines of psql's output that are not the ones a `pg_dumpall --clean` script causes by
/// design when it runs as the role it recreates, or into a server that has the role already.
pub fn psql_errors(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains("ERROR:"))
        .filter(|l| {
            !(l.contains("current user cannot be dropped")
                || (l.contains("role \"") && l.contains("already exists")))
        })
        .map(|l| l.trim().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipes_follow_the_last_component_of_the_repository() {
        for (image, recipe) in [
            ("postgres:16", Some(DumpRecipe::Postgres)),
            ("postgres", Some(DumpRecipe::Postgres)),
            (
                "docker.io/library/postgres:16-alpine",
                Some(DumpRecipe::Postgres),
            ),
            ("postgis/postgis:16-3.4", Some(DumpRecipe::Postgres)),
            (
                "timescale/timescaledb:latest-pg16",
                Some(DumpRecipe::Postgres),
            ),
            ("bitnami/postgresql:16", Some(DumpRecipe::Postgres)),
            ("registry:5000/mysql:8@sha256:abcd", Some(DumpRecipe::Mysql)),
            ("percona:8", Some(DumpRecipe::Mysql)),
            ("mariadb:11", Some(DumpRecipe::Mariadb)),
            ("redis:7-alpine", Some(DumpRecipe::Redis)),
            ("valkey/valkey:8", Some(DumpRecipe::Redis)),
            ("redis/redis-stack:latest", Some(DumpRecipe::Redis)),
            ("bitnami/redis", Some(DumpRecipe::Redis)),
            ("mongo:7", Some(DumpRecipe::Mongodb)),
            (
                "mongodb/mongodb-community-server:7.0-ubi8",
                Some(DumpRecipe::Mongodb),
            ),
            ("bitnami/mongodb:7", Some(DumpRecipe::Mongodb)),
            ("myorg/postgres-app:1", None),
            ("nginx", None),
            ("", None),
        ] {
            assert_eq!(recipe_for_image(image), recipe, "{image}");
        }
    }

    #[test]
    fn every_recipe_has_an_extension_and_runs_under_sh() {
        assert_eq!(ext(DumpRecipe::Postgres), "sql");
        assert_eq!(ext(DumpRecipe::Redis), "rdb");
        assert_eq!(ext(DumpRecipe::Mongodb), "archive");
        for r in DumpRecipe::ALL {
            for argv in [dump_argv(r), load_argv(r), ready_argv(r)] {
                assert_eq!(argv[..2], ["sh", "-c"], "{r}");
            }
        }
        assert!(dump_argv(DumpRecipe::Postgres)[2].contains("pg_dumpall --clean --if-exists"));
        assert!(dump_argv(DumpRecipe::Mysql)[2].contains("--all-databases --single-transaction"));
        // The password is read inside the container, never written into the command.
        assert!(
            dump_argv(DumpRecipe::Mysql)[2]
                .contains("MYSQL_PWD=\"${MYSQL_PWD:-${MYSQL_ROOT_PASSWORD")
        );
    }

    #[test]
    fn redis_location_is_parsed() {
        let f = parse_redis_file("file=/data/dump.rdb\nappendonly=no\nowner=999:1000\n").unwrap();
        assert_eq!(
            f,
            RedisFile {
                path: "/data/dump.rdb".into(),
                appendonly: false,
                uid: 999,
                gid: 1000
            }
        );
        assert!(
            parse_redis_file("file=/d/x.rdb\nappendonly=yes\n")
                .unwrap()
                .appendonly
        );
        assert!(parse_redis_file("file=relative.rdb\n").is_none());
        assert!(parse_redis_file("nothing").is_none());
    }

    #[test]
    fn psql_errors_leave_out_the_ones_pg_dumpall_causes_by_design() {
        let stderr = "psql:<stdin>:14: ERROR:  current user cannot be dropped\n\
                      psql:<stdin>:20: ERROR:  role \"postgres\" already exists\n\
                      psql:<stdin>:90: ERROR:  database \"app\" is being accessed by other users\n\
                      NOTICE: something\n";
        assert_eq!(
            psql_errors(stderr),
            ["psql:<stdin>:90: ERROR:  database \"app\" is being accessed by other users"]
        );
    }
}
