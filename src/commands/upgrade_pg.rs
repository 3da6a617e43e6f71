//! PostgreSQL major versions for `upgrade`: a server of a new major version refuses the data directory of
//! an older one ("database files are incompatible with server"), so the data moves by dump and load into
//! a new volume, and the old volume is kept untouched until `upgrade --finish`.
//!
//! Order, so that nothing is lost and a refusal changes nothing: before anything stops, the old server is
//! asked for its data directory's `PG_VERSION`, its bootstrap superuser, encoding and locale, the
//! extensions its databases use and the room left next to the data; a new volume is initialised by the
//! new image with the same superuser, encoding and locale, in a helper container without network, and is
//! asked whether it has every extension (a missing one refuses the upgrade, and the new volume goes).
//! Then, the service stopped and backed up, a second helper runs the old image on the old volume (no
//! network: nothing can write meanwhile), `pg_dumpall` streams from it into `psql` in the new server,
//! `ANALYZE` runs, both helpers stop cleanly, and the service is switched to the new volume and image
//! through docker persist's override file. A failure before the switch removes the new volume and starts
//! the service again on its old one.

use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use futures_util::StreamExt;

use super::dump::{self, READY_TIMEOUT};
use super::restore::Refused;
use super::upgrade::{ServicePlan, wait_healthy};
use super::{ExitStatus, Session, UsageError, quoted};
use crate::cli::UpgradeArgs;
use crate::compose::classify::DataKind;
use crate::compose::migration::{self, OverrideFile, Pin, SwitchedVolume};
use crate::compose::{DumpRecipe, Project};
use crate::engine::helper::{HelperContainer, volume_mount};
use crate::engine::{ContainerInfo, ContainerStatus, Engine, ImageInfo};
use crate::inventory::Inventory;
use crate::report::{Printer, human_size, prompt};

/// Where the official image and its kin keep the data when `PGDATA` is not set.
const DEFAULT_PGDATA: &str = "/var/lib/postgresql/data";
/// The PostgreSQL 18 image's mount point: it keeps the data in `/var/lib/postgresql/18/docker`.
const PG18_MOUNT: &str = "/var/lib/postgresql";
/// The new volumes this process made and has not handed to a service yet: what an interruption removes.
static CREATED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Removes the new volumes made by an upgrade that was interrupted before the services used them.
pub async fn remove_unused_new_volumes(engine: &Engine, printer: &Printer) {
    let names: Vec<String> = CREATED
        .lock()
        .map(|mut c| std::mem::take(&mut *c))
        .unwrap_or_default();
    for n in names {
        match engine.remove_volume(&n).await {
            Ok(()) => printer.status(format!("Removed volume `{n}`, made for the upgrade")),
            Err(e) => printer.warn(format!(
                "could not remove volume `{n}`, made for the upgrade: {e}; `docker volume rm {n}` removes it"
            )),
        }
    }
}

/// The volumes made for the upgrade are the services' own now.
pub fn handed_over() {
    if let Ok(mut c) = CREATED.lock() {
        c.clear();
    }
}

/// Room a second copy needs beyond the size of the data directory: the new cluster's own files.
const ROOM_MARGIN: f64 = 1.1;

/// A PostgreSQL service whose data directory holds another major version than its new image.
#[derive(Debug, Clone)]
pub struct PgMove {
    pub from_major: String,
    pub to_major: String,
    /// The volume key, engine name and mount target of the old data.
    pub key: String,
    pub old_name: String,
    pub target: String,
    /// The new volume's key (in the override) and engine name.
    pub new_key: String,
    pub new_name: String,
    /// `PGDATA` for the new server, and whether the override must set it.
    pub new_pgdata: String,
    pub pgdata_env: Option<String>,
    /// The old cluster's bootstrap superuser, encoding and locale.
    pub superuser: String,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    /// Extensions the old databases use (`plpgsql` aside).
    pub extensions: Vec<String>,
    /// Size of the data directory and room left next to it.
    pub data_bytes: u64,
    pub free_bytes: u64,
    /// The old container's configuration, to run its server again on the old volume.
    pub old_env: Vec<String>,
    pub old_cmd: Vec<String>,
    pub old_image_id: String,
    /// The new image.
    pub new_image: String,
}

impl PgMove {
    pub fn describe(&self) -> String {
        format!(
            "{} → {}: dump and load into new volume `{}`",
            self.from_major, self.to_major, self.new_name
        )
    }

    /// The pin that switches the service to the new volume and image.
    pub fn pin(&self, service: &str) -> Pin {
        Pin {
            service: service.to_string(),
            image: self.new_image.clone(),
            why: "upgrade".to_string(),
            at: jiff::Timestamp::now().to_string(),
            environment: self
                .pgdata_env
                .iter()
                .map(|p| ("PGDATA".to_string(), p.clone()))
                .collect(),
            volume: Some(SwitchedVolume {
                key: self.key.clone(),
                old_name: self.old_name.clone(),
                new_key: self.new_key.clone(),
                new_name: self.new_name.clone(),
                target: self.target.clone(),
                previous_image: self.old_image_id.clone(),
                from_major: self.from_major.clone(),
                to_major: self.to_major.clone(),
                finished: false,
            }),
        }
    }
}

/// What the old server says about itself (one `key=value` per line).
const SURVEY: &str = r#"d="${PGDATA:-/var/lib/postgresql/data}"
u="${POSTGRES_USER:-postgres}"
echo "pgdata=$d"
echo "version=$(cat "$d/PG_VERSION")"
q() { psql -X -q -A -t -v ON_ERROR_STOP=1 -U "$u" "$@"; }
q -d postgres -c "select 'superuser=' || rolname from pg_roles where oid = 10" \
  -c "select 'encoding=' || pg_encoding_to_char(encoding) from pg_database where datname = 'template1'" \
  -c "select 'collate=' || datcollate from pg_database where datname = 'template1'" \
  -c "select 'ctype=' || datctype from pg_database where datname = 'template1'" || exit 1
q -d postgres -c "select datname from pg_database where datallowconn" | while IFS= read -r db; do
  q -d "$db" -c "select 'extension=' || extname from pg_extension where extname <> 'plpgsql'" || exit 1
done || exit 1
echo "du=$(du -sk "$d" | cut -f1)"
echo "avail=$(df -Pk "$d" | awk 'NR == 2 { print $4 }')"
"#;

fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::trim)
}

/// Whether `pgdata` lies at or below `target`.
fn under(pgdata: &str, target: &str) -> bool {
    let t = target.trim_end_matches('/');
    let p = pgdata.trim_end_matches('/');
    p == t || p.starts_with(&format!("{t}/"))
}

/// The `PGDATA` the new server uses, and the value the override must set (when the new image's own
/// data path lies outside the service's mount, as the PostgreSQL 18 image's does for a mount at
/// `/var/lib/postgresql/data`).
fn new_pgdata(
    old_env_pgdata: Option<&str>,
    old_image_pgdata: Option<&str>,
    new_image_pgdata: Option<&str>,
    target: &str,
) -> (String, Option<String>) {
    // Set by the service itself (Compose's `environment:`): it applies to the new container too.
    if let Some(p) = old_env_pgdata
        && Some(p) != old_image_pgdata
    {
        return (p.to_string(), None);
    }
    let image = new_image_pgdata.unwrap_or(DEFAULT_PGDATA);
    if under(image, target) {
        (image.to_string(), None)
    } else {
        (target.to_string(), Some(target.to_string()))
    }
}

/// Whether `service` moves to another PostgreSQL major version, and how; `None` when it does not.
pub async fn plan(
    engine: &Engine,
    inventory: &Inventory,
    service: &str,
    status: &ContainerStatus,
    new_image_name: &str,
    new_image: Option<&ImageInfo>,
) -> anyhow::Result<Option<PgMove>> {
    let Some(new) = new_image else {
        return Ok(None);
    };
    let Some(to_major) = new.env_var("PG_MAJOR").map(|m| major_of(m).to_string()) else {
        return Ok(None);
    };
    let old_image = engine.image(&status.image_id).await?;
    if old_image
        .as_ref()
        .and_then(|i| i.env_var("PG_MAJOR"))
        .is_none()
        && dump::recipe_for_image(&status.image) != Some(DumpRecipe::Postgres)
    {
        return Ok(None);
    }
    if !status.running {
        bail!(UsageError {
            message: format!(
                "`{service}` moves to PostgreSQL {to_major}, and its server must run to tell which major version its data holds (and to be dumped)"
            ),
            hint: Some(format!("`docker compose up -d {service}` starts it")),
        });
    }
    let out = engine
        .exec_capture(
            &status.id,
            &["sh".to_string(), "-c".to_string(), SURVEY.to_string()],
            &[],
            None,
            Some(Duration::from_secs(120)),
        )
        .await?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.success() {
        bail!(
            "cannot ask the PostgreSQL server in `{}` about its data: {}",
            status.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let get = |k: &str| field(&text, k).unwrap_or_default().to_string();
    let from_major = get("version");
    if from_major.is_empty() || from_major == to_major {
        return Ok(None);
    }
    let from_n: u32 = from_major.parse().unwrap_or(0);
    let to_n: u32 = to_major.parse().unwrap_or(0);
    if to_n < from_n {
        bail!(UsageError {
            message: format!(
                "`{new_image_name}` is PostgreSQL {to_major}, older than the {from_major} data of `{service}`: a major version cannot be downgraded"
            ),
            hint: Some("choose an image of PostgreSQL {from_major} or newer".to_string()),
        });
    }
    let pgdata = get("pgdata");
    let item = inventory
        .items
        .iter()
        .find(|i| {
            i.users
                .iter()
                .any(|u| u.service == service && under(&pgdata, &u.target))
        })
        .with_context(|| {
            format!("no volume of `{service}` holds its PostgreSQL data directory `{pgdata}`")
        })?;
    if item.kind != DataKind::Named || item.name.is_none() {
        bail!(UsageError {
            message: format!(
                "the PostgreSQL data of `{service}` is in `{}`, a {} mount: the major upgrade loads it into a new named volume, and needs the old one to be a named volume too",
                item.key, item.kind
            ),
            hint: Some(
                "move it into a named volume first, or upgrade by hand with `pg_dumpall`"
                    .to_string()
            ),
        });
    }
    let target = item
        .users
        .iter()
        .find(|u| u.service == service && under(&pgdata, &u.target))
        .map(|u| u.target.clone())
        .unwrap_or_default();
    let old_name = item.name.clone().unwrap_or_default();
    let (new_pgdata, pgdata_env) = new_pgdata(
        status.env_var("PGDATA"),
        old_image.as_ref().and_then(|i| i.env_var("PGDATA")),
        new.env_var("PGDATA"),
        &target,
    );
    let mut extensions: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("extension="))
        .map(|e| e.trim().to_string())
        .collect();
    extensions.sort();
    extensions.dedup();
    Ok(Some(PgMove {
        from_major,
        to_major: to_major.clone(),
        key: item.key.clone(),
        new_key: format!("{}-pg{to_major}", item.key),
        new_name: format!("{old_name}-pg{to_major}"),
        old_name,
        target,
        new_pgdata,
        pgdata_env,
        superuser: get("superuser"),
        encoding: get("encoding"),
        collate: get("collate"),
        ctype: get("ctype"),
        extensions,
        data_bytes: get("du").parse::<u64>().unwrap_or(0) * 1024,
        free_bytes: get("avail").parse::<u64>().unwrap_or(u64::MAX / 1024) * 1024,
        old_env: status.env.clone(),
        old_cmd: status.cmd.clone(),
        old_image_id: status.image_id.clone(),
        new_image: new_image_name.to_string(),
    }))
}

/// `17`, `17.2`, `9.6` → `17`, `17`, `9.6`.
fn major_of(version: &str) -> &str {
    let v = version.trim();
    match v.split_once('.') {
        Some((m, _)) if m.parse::<u32>().is_ok_and(|n| n >= 10) => m,
        _ => v,
    }
}

/// A server helper container: its container and a [`ContainerInfo`] to exec in it.
pub struct Server {
    helper: HelperContainer,
    info: ContainerInfo,
}

impl Server {
    /// Stops the server cleanly (its image's stop signal), then removes the container.
    async fn stop(self, engine: &Engine) -> anyhow::Result<()> {
        let stopped = engine.stop_container(&self.info.id, &self.info.name).await;
        self.helper.remove().await?;
        stopped?;
        Ok(())
    }
}

/// Starts `image` as a PostgreSQL server on volume `volume` at `target`, without network, and waits
/// until it accepts connections.
#[allow(clippy::too_many_arguments)]
async fn start_server(
    engine: &Engine,
    printer: &Printer,
    image: &str,
    cmd: Option<Vec<String>>,
    env: Vec<String>,
    volume: &str,
    target: &str,
    what: &str,
) -> anyhow::Result<Server> {
    let helper = engine
        .create_server(image, cmd, env, vec![volume_mount(volume, target)], what)
        .await?;
    let info = ContainerInfo {
        id: helper.id().to_string(),
        name: format!("{what} ({})", crate::engine::short(helper.id())),
        service: None,
        image: image.to_string(),
        state: "running".to_string(),
        mounts: Vec::new(),
        compose_version: None,
        helper: true,
    };
    helper.start().await?;
    let server = Server { helper, info };
    if let Err(e) = wait_ready(engine, printer, &server.info).await {
        let log = engine
            .log_tail(&server.info.id, 15)
            .await
            .unwrap_or_default();
        let _ = server.helper.remove().await;
        return Err(e.context(format!(
            "{what} did not start; its log ends with:\n{}",
            log.trim_end()
        )));
    }
    Ok(server)
}

/// Waits until the server accepts connections, failing at once when its container stops.
async fn wait_ready(
    engine: &Engine,
    printer: &Printer,
    info: &ContainerInfo,
) -> anyhow::Result<()> {
    let ready = dump::wait_ready(engine, printer, info, DumpRecipe::Postgres, READY_TIMEOUT);
    let exited = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match engine.container_status(&info.id).await {
                Ok(Some(s)) if s.running => {}
                Ok(Some(s)) => {
                    return anyhow::anyhow!(
                        "it exited with code {}",
                        s.exit_code.unwrap_or_default()
                    );
                }
                Ok(None) => return anyhow::anyhow!("its container is gone"),
                Err(e) => return e.into(),
            }
        }
    };
    tokio::select! {
        r = ready => r,
        e = exited => Err(e),
    }
}

/// Runs `script` with `sh -c` in the server as root and returns its stdout, or an error with its stderr.
async fn sh_in(engine: &Engine, server: &Server, script: &str) -> anyhow::Result<String> {
    let out = engine
        .exec_capture(
            &server.info.id,
            &["sh".to_string(), "-c".to_string(), script.to_string()],
            &[],
            None,
            Some(Duration::from_secs(3600)),
        )
        .await?;
    if !out.success() {
        bail!(
            "`{script}` in {} failed: {}",
            server.info.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The new servers of the PostgreSQL moves, initialised and checked, before anything stops.
pub struct Prepared {
    servers: Vec<(String, Server)>,
}

/// For every PostgreSQL move: checks the room for a second copy, creates the new volume, initialises it
/// with the new image (same superuser, encoding, locale) and checks that it has every extension the old
/// databases use. A refusal removes what it made and changes nothing else. The new volumes carry `mark`
/// as their [`crate::intent::RESTORING_LABEL`], so that the resolution of a killed upgrade may remove them.
pub async fn prepare(
    engine: &Engine,
    printer: &Printer,
    project: &Project,
    plans: &[ServicePlan],
    mark: &str,
) -> anyhow::Result<Prepared> {
    let mut prepared = Prepared {
        servers: Vec::new(),
    };
    for p in plans {
        let Some(pg) = &p.pg else { continue };
        let made = prepare_one(engine, printer, project, &p.service, pg, mark).await;
        match made {
            Ok(server) => prepared.servers.push((p.service.clone(), server)),
            Err(e) => {
                discard(engine, printer, prepared, plans).await;
                return Err(e);
            }
        }
    }
    Ok(prepared)
}

async fn prepare_one(
    engine: &Engine,
    printer: &Printer,
    project: &Project,
    service: &str,
    pg: &PgMove,
    mark: &str,
) -> anyhow::Result<Server> {
    let needed = (pg.data_bytes as f64 * ROOM_MARGIN) as u64;
    if pg.free_bytes < needed {
        return Err(Refused {
            message: format!(
                "`{service}`: the PostgreSQL {} data measures {}, and only {} is free next to it; the upgrade needs room for a second copy (about {}); nothing was changed",
                pg.from_major,
                human_size(pg.data_bytes),
                human_size(pg.free_bytes),
                human_size(needed)
            ),
            hint: "free some space on the engine's disk (`docker system df` shows what uses it), then upgrade again".to_string(),
        }
        .into());
    }
    if engine.volume(&pg.new_name).await?.is_some() {
        return Err(Refused {
            message: format!(
                "volume `{}`, where the PostgreSQL {} data of `{service}` would go, exists already; nothing was changed",
                pg.new_name, pg.to_major
            ),
            hint: format!(
                "if it is left over from an upgrade that did not finish, remove it (`docker volume rm {}`) and upgrade again",
                pg.new_name
            ),
        }
        .into());
    }
    let old = engine.volume(&pg.old_name).await?;
    let mut labels = old.as_ref().map(|v| v.labels.clone()).unwrap_or_default();
    labels.insert(
        crate::engine::state::PROJECT_LABEL.to_string(),
        project.name.clone(),
    );
    labels.insert(
        crate::engine::state::VOLUME_LABEL.to_string(),
        pg.new_key.clone(),
    );
    labels.remove("com.docker.compose.config-hash");
    labels.insert(crate::intent::RESTORING_LABEL.to_string(), mark.to_string());
    printer.status(format!(
        "Initialising volume `{}` with `{}` (PostgreSQL {}; superuser `{}`, encoding {}, locale {})",
        pg.new_name, pg.new_image, pg.to_major, pg.superuser, pg.encoding, pg.collate
    ));
    engine
        .create_volume(&pg.new_name, "local", &Default::default(), &labels)
        .await?;
    if let Ok(mut c) = CREATED.lock() {
        c.push(pg.new_name.clone());
    }
    let result = async {
        let server = start_server(
            engine,
            printer,
            &pg.new_image,
            None,
            new_server_env(pg),
            &pg.new_name,
            &pg.target,
            &format!("the new PostgreSQL {} server", pg.to_major),
        )
        .await?;
        let available = sh_in(
            engine,
            &server,
            r#"psql -X -q -A -t -v ON_ERROR_STOP=1 -U "${POSTGRES_USER:-postgres}" -d postgres -c 'select name from pg_available_extensions'"#,
        )
        .await;
        let available = match available {
            Ok(a) => a,
            Err(e) => {
                let _ = server.stop(engine).await;
                return Err(e);
            }
        };
        let have: Vec<&str> = available.lines().map(str::trim).collect();
        let missing: Vec<&str> = pg
            .extensions
            .iter()
            .map(String::as_str)
            .filter(|e| !have.contains(e))
            .collect();
        if !missing.is_empty() {
            let _ = server.stop(engine).await;
            return Err(Refused {
                message: format!(
                    "`{}` lacks the extension(s) {} that the databases of `{service}` use, so their dump would not load; nothing was changed",
                    pg.new_image,
                    quoted(missing.iter().copied())
                ),
                hint: "choose an image of the new version that has them (e.g. `postgis/postgis` for PostGIS), or build one".to_string(),
            }
            .into());
        }
        anyhow::Ok(server)
    }
    .await;
    if result.is_err()
        && let Err(e) = engine.remove_volume(&pg.new_name).await
    {
        printer.warn(format!("could not remove volume `{}`: {e}", pg.new_name));
    }
    result
}

/// The new server's environment: the old container's `POSTGRES_*` settings (password, authentication),
/// its superuser, encoding and locale for initdb, and the `PGDATA` it uses; no database but `postgres`:
/// the dump brings them.
fn new_server_env(pg: &PgMove) -> Vec<String> {
    let mut env: Vec<String> = pg
        .old_env
        .iter()
        .filter(|e| e.starts_with("POSTGRES_"))
        .filter(|e| {
            !e.starts_with("POSTGRES_DB=")
                && !e.starts_with("POSTGRES_USER=")
                && !e.starts_with("POSTGRES_INITDB_ARGS=")
        })
        .cloned()
        .collect();
    let user_args = pg
        .old_env
        .iter()
        .find_map(|e| e.strip_prefix("POSTGRES_INITDB_ARGS="))
        .unwrap_or_default();
    env.push(format!("POSTGRES_USER={}", pg.superuser));
    // No database of its own: every database comes from the dump (the entrypoint creates POSTGRES_DB,
    // which defaults to the user's name, unless it is `postgres`).
    env.push("POSTGRES_DB=postgres".to_string());
    env.push(format!(
        "POSTGRES_INITDB_ARGS={user_args} --encoding={} --lc-collate={} --lc-ctype={}",
        pg.encoding, pg.collate, pg.ctype
    ));
    env.push(format!("PGDATA={}", pg.new_pgdata));
    env
}

/// With the services stopped: runs each old server again on its untouched volume, without network, and
/// streams `pg_dumpall` from it into the new server; then `ANALYZE`, and both servers stop cleanly. A
/// failure removes every new volume.
pub async fn move_data(
    engine: &Engine,
    printer: &Printer,
    plans: &[ServicePlan],
    prepared: Prepared,
) -> anyhow::Result<()> {
    let mut servers = prepared.servers;
    while let Some((service, new_server)) = servers.pop() {
        let Some(pg) = plans
            .iter()
            .find(|p| p.service == service)
            .and_then(|p| p.pg.as_ref())
        else {
            continue;
        };
        let moved = move_one(engine, printer, &service, pg, &new_server).await;
        let stopped = new_server.stop(engine).await;
        if let Err(e) = moved.and(stopped) {
            discard(engine, printer, Prepared { servers }, plans).await;
            return Err(e.context(format!(
                "the PostgreSQL {} data of `{service}` could not be moved; its volume `{}` is untouched",
                pg.from_major, pg.old_name
            )));
        }
    }
    Ok(())
}

async fn move_one(
    engine: &Engine,
    printer: &Printer,
    service: &str,
    pg: &PgMove,
    new_server: &Server,
) -> anyhow::Result<()> {
    let old = start_server(
        engine,
        printer,
        &pg.old_image_id,
        (!pg.old_cmd.is_empty()).then(|| pg.old_cmd.clone()),
        pg.old_env.clone(),
        &pg.old_name,
        &pg.target,
        &format!("the old PostgreSQL {} server", pg.from_major),
    )
    .await?;
    let result = async {
        printer.status(format!(
            "Dumping the PostgreSQL {} data of `{service}` with `pg_dumpall` into PostgreSQL {}",
            pg.from_major, pg.to_major
        ));
        let started = std::time::Instant::now();
        let mut stream = Box::pin(
            engine
                .with_long_timeout()
                .exec_stdout(&old.info.id, &dump::dump_argv(DumpRecipe::Postgres))
                .await?,
        );
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(64);
        let forward = tokio::spawn(async move {
            let mut bytes = 0u64;
            while let Some(chunk) = stream.next().await {
                let failed = chunk.is_err();
                if let Ok(c) = &chunk {
                    bytes += c.len() as u64;
                }
                if tx.send(chunk).await.is_err() || failed {
                    break;
                }
            }
            bytes
        });
        let loaded = engine
            .with_long_timeout()
            .exec_capture(
                &new_server.info.id,
                &dump::load_argv(DumpRecipe::Postgres),
                &[],
                Some(rx),
                None,
            )
            .await?;
        let bytes = forward.await.unwrap_or(0);
        let stderr = String::from_utf8_lossy(&loaded.stderr).into_owned();
        if loaded.exit_code != Some(0) {
            bail!(
                "`psql` in the new server exited with code {}: {}",
                loaded.exit_code.unwrap_or(-1),
                stderr.trim()
            );
        }
        let errors = dump::psql_errors(&stderr);
        if !errors.is_empty() {
            bail!(
                "`psql` reported {} error(s) loading the dump into PostgreSQL {}:\n{}",
                errors.len(),
                pg.to_major,
                errors.join("\n")
            );
        }
        printer.status(format!(
            "Loaded the dump ({}) into PostgreSQL {} in {:.1} s; running `ANALYZE`",
            human_size(bytes),
            pg.to_major,
            started.elapsed().as_secs_f64()
        ));
        sh_in(
            engine,
            new_server,
            r#"vacuumdb --all --analyze-only --quiet -U "${POSTGRES_USER:-postgres}""#,
        )
        .await?;
        anyhow::Ok(())
    }
    .await;
    let stopped = old.stop(engine).await;
    result?;
    stopped
}

/// Removes what [`prepare`] made when the upgrade stops before the data moves.
pub async fn move_aborted(
    engine: &Engine,
    printer: &Printer,
    prepared: Prepared,
    plans: &[ServicePlan],
) {
    if !prepared.servers.is_empty() {
        discard(engine, printer, prepared, plans).await;
    }
}

/// Removes what [`prepare`] made: its servers and the new volumes.
async fn discard(engine: &Engine, printer: &Printer, prepared: Prepared, plans: &[ServicePlan]) {
    for (_, s) in prepared.servers {
        let _ = s.stop(engine).await;
    }
    discard_new(engine, printer, plans).await;
}

/// Removes the new volumes of the PostgreSQL moves in `plans` (the old ones are untouched).
pub async fn discard_new(engine: &Engine, printer: &Printer, plans: &[ServicePlan]) {
    for pg in plans.iter().filter_map(|p| p.pg.as_ref()) {
        if let Ok(mut c) = CREATED.lock() {
            c.retain(|n| *n != pg.new_name);
        }
        if let Err(e) = engine.remove_volume(&pg.new_name).await {
            printer.warn(format!(
                "could not remove volume `{}`, made for the upgrade: {e}",
                pg.new_name
            ));
        }
    }
}

pub fn report_success(printer: &Printer, service: &str, pg: &PgMove) {
    printer.status(format!(
        "`{service}` keeps its PostgreSQL {} data in volume `{}` now (a dump of the {} cluster, loaded and analysed); volume `{}` is left untouched: `docker persist upgrade --finish {service}` removes it, `docker persist upgrade --rollback {service}` goes back to it",
        pg.to_major, pg.new_name, pg.from_major, pg.old_name
    ));
    if let Some(p) = &pg.pgdata_env {
        printer.status(format!(
            "`{}` keeps its data outside `{}` by default (PostgreSQL 18 images use `{PG18_MOUNT}/{}/docker`, mounted at `{PG18_MOUNT}`), so the override sets `PGDATA={p}`; to follow the image's layout, mount the volume at `{PG18_MOUNT}` in your Compose file instead",
            pg.new_image, pg.target, pg.to_major
        ));
    }
}

/// `upgrade --finish SERVICE` and `upgrade --rollback SERVICE`, after a PostgreSQL major upgrade.
pub async fn after(session: &Session<'_>, args: &UpgradeArgs) -> anyhow::Result<ExitStatus> {
    let printer = session.printer;
    let flag = if args.finish {
        "--finish"
    } else {
        "--rollback"
    };
    let [service] = args.services.as_slice() else {
        bail!(UsageError {
            message: format!("`upgrade {flag}` takes one service"),
            hint: Some(format!("`docker persist upgrade {flag} SERVICE`")),
        });
    };
    let (engine, inventory) = session.inventory().await?;
    let project = &inventory.project;
    let (migrations, _) = migration::recorded(project);
    let (pins, _) = migration::recorded_pins(project);
    let Some(pin) = pins
        .iter()
        .find(|p| &p.service == service && p.volume.is_some())
        .cloned()
    else {
        bail!(UsageError {
            message: format!("no PostgreSQL major upgrade of `{service}` is recorded"),
            hint: Some(
                "`docker persist upgrade SERVICE` records one when the new image is a newer major"
                    .to_string()
            ),
        });
    };
    let Some(v) = pin.volume.clone() else {
        unreachable!("the pin was chosen for its volume")
    };
    let overrides = OverrideFile::locate(project)
        .context("the project has no Compose file next to which an override could be")?;
    if v.finished {
        bail!(UsageError {
            message: format!(
                "the upgrade of `{service}` to PostgreSQL {} is finished: volume `{}` was removed",
                v.to_major, v.old_name
            ),
            hint: None,
        });
    }
    if args.finish {
        let question = format!(
            "Remove volume `{}` (the PostgreSQL {} data of `{service}` before the upgrade) for good?",
            v.old_name, v.from_major
        );
        if args.dry_run {
            printer.status(format!("Would remove volume `{}`", v.old_name));
            return Ok(ExitStatus::Success);
        }
        if !args.yes {
            if !prompt::interactive() {
                return Err(Refused {
                    message: format!("refusing without confirmation: {question}"),
                    hint: "run it in a terminal to answer, or pass `--yes`".to_string(),
                }
                .into());
            }
            if !prompt::confirm(&question)? {
                printer.status("Nothing was changed");
                return Ok(ExitStatus::Refused);
            }
        }
        let users: Vec<String> = engine
            .containers_using_volume(&v.old_name)
            .await?
            .into_iter()
            .filter(|c| !c.helper)
            .map(|c| c.name)
            .collect();
        if !users.is_empty() {
            return Err(Refused {
                message: format!(
                    "volume `{}` is still used by {}; nothing was removed",
                    v.old_name,
                    quoted(users.iter().map(String::as_str))
                ),
                hint: "remove those containers first".to_string(),
            }
            .into());
        }
        engine.remove_volume(&v.old_name).await?;
        let mut rest = pins.clone();
        for p in rest.iter_mut().filter(|p| &p.service == service) {
            if let Some(vol) = p.volume.as_mut() {
                vol.finished = true;
            }
        }
        super::migrate::write_override(
            &overrides.path,
            &migration::render_all(&migrations, &rest),
        )?;
        printer.status(format!(
            "Removed volume `{}`; `{service}` keeps PostgreSQL {} in `{}` (set in `{}`)",
            v.old_name,
            v.to_major,
            v.new_name,
            overrides.path.display()
        ));
        return Ok(ExitStatus::Success);
    }

    // --rollback: the old image by id, on the old volume, which the upgrade never changed.
    if args.dry_run {
        printer.status(format!(
            "Would start `{service}` again on volume `{}` with image {}; volume `{}` would be kept",
            v.old_name,
            super::upgrade::short_id(&v.previous_image),
            v.new_name
        ));
        return Ok(ExitStatus::Success);
    }
    if !args.yes && !prompt::interactive() {
        return Err(Refused {
            message: format!(
                "refusing without confirmation: `{service}` would go back to PostgreSQL {} on volume `{}`, and what was written since the upgrade stays in `{}` only",
                v.from_major, v.old_name, v.new_name
            ),
            hint: "run it in a terminal to answer, or pass `--yes`".to_string(),
        }
        .into());
    }
    if !args.yes
        && !prompt::confirm(&format!(
            "Go back to PostgreSQL {} on volume `{}`? What was written since the upgrade stays in `{}` only",
            v.from_major, v.old_name, v.new_name
        ))?
    {
        printer.status("Nothing was changed");
        return Ok(ExitStatus::Refused);
    }
    let mut rest: Vec<Pin> = pins
        .iter()
        .filter(|p| &p.service != service)
        .cloned()
        .collect();
    rest.push(Pin {
        service: service.clone(),
        image: v.previous_image.clone(),
        why: "rollback".to_string(),
        at: jiff::Timestamp::now().to_string(),
        environment: Default::default(),
        volume: None,
    });
    rest.sort_by(|a, b| a.service.cmp(&b.service));
    super::migrate::write_override(&overrides.path, &migration::render_all(&migrations, &rest))?;
    let mut with_override = project.clone();
    if !with_override.files.contains(&overrides.path) {
        with_override.files.push(overrides.path.clone());
    }
    let compose = super::compose_cli::ComposeCli::find(session.globals, &with_override, false)?
        .env_files(&session.project_args.env_files);
    let a = ["up", "-d", "--no-deps", service.as_str()];
    printer.status(format!(
        "Starting `{service}` on volume `{}` with its previous image",
        v.old_name
    ));
    compose.run(&a).await?;
    if let Err(f) = wait_healthy(
        &engine,
        &project.name,
        &[service.as_str()],
        args.timeout,
        args.settle,
    )
    .await?
    {
        bail!(
            "`{service}` is not healthy on its old volume: {}; the override file `{}` pins image {}",
            f.why,
            overrides.path.display(),
            v.previous_image
        );
    }
    printer.status(format!(
        "Rolled back: `{service}` runs PostgreSQL {} on volume `{}` again; volume `{}` (PostgreSQL {}) is kept with what was written since the upgrade: `docker volume rm {}` removes it",
        v.from_major, v.old_name, v.new_name, v.to_major, v.new_name
    ));
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_are_read_from_pg_major_values() {
        assert_eq!(major_of("17"), "17");
        assert_eq!(major_of("17.2"), "17");
        assert_eq!(major_of("9.6"), "9.6");
    }

    #[test]
    fn a_data_directory_below_the_mount_is_under_it() {
        assert!(under(
            "/var/lib/postgresql/data",
            "/var/lib/postgresql/data/"
        ));
        assert!(under(
            "/var/lib/postgresql/18/docker",
            "/var/lib/postgresql"
        ));
        assert!(!under(
            "/var/lib/postgresql/18/docker",
            "/var/lib/postgresql/data"
        ));
        assert!(!under(
            "/var/lib/postgresql/database",
            "/var/lib/postgresql/data"
        ));
    }

    #[test]
    fn the_postgresql_18_layout_gets_pgdata_at_the_old_mount() {
        // The official 18 image: PGDATA=/var/lib/postgresql/18/docker, the service mounts …/data.
        let (p, env) = new_pgdata(
            Some("/var/lib/postgresql/data"),
            Some("/var/lib/postgresql/data"),
            Some("/var/lib/postgresql/18/docker"),
            "/var/lib/postgresql/data",
        );
        assert_eq!(p, "/var/lib/postgresql/data");
        assert_eq!(env.as_deref(), Some("/var/lib/postgresql/data"));
        // Mounted at /var/lib/postgresql already: the image's own path is inside the mount.
        let (p, env) = new_pgdata(
            Some("/var/lib/postgresql/data"),
            Some("/var/lib/postgresql/data"),
            Some("/var/lib/postgresql/18/docker"),
            "/var/lib/postgresql",
        );
        assert_eq!(p, "/var/lib/postgresql/18/docker");
        assert_eq!(env, None);
        // Set by the service itself: kept, and Compose sets it for the new container too.
        let (p, env) = new_pgdata(
            Some("/pg/here"),
            Some("/var/lib/postgresql/data"),
            Some("/var/lib/postgresql/data"),
            "/pg",
        );
        assert_eq!(p, "/pg/here");
        assert_eq!(env, None);
    }

    #[test]
    fn the_new_server_gets_the_old_settings_but_not_the_database_to_create() {
        let pg = PgMove {
            from_major: "15".into(),
            to_major: "17".into(),
            key: "pgdata".into(),
            old_name: "app_pgdata".into(),
            target: "/var/lib/postgresql/data".into(),
            new_key: "pgdata-pg17".into(),
            new_name: "app_pgdata-pg17".into(),
            new_pgdata: "/var/lib/postgresql/data".into(),
            pgdata_env: None,
            superuser: "admin".into(),
            encoding: "UTF8".into(),
            collate: "C.UTF-8".into(),
            ctype: "C.UTF-8".into(),
            extensions: vec![],
            data_bytes: 0,
            free_bytes: 0,
            old_env: vec![
                "PATH=/usr/lib/postgresql/15/bin:/usr/bin".into(),
                "PG_MAJOR=15".into(),
                "POSTGRES_PASSWORD=secret".into(),
                "POSTGRES_USER=admin".into(),
                "POSTGRES_DB=app".into(),
                "POSTGRES_INITDB_ARGS=--data-checksums".into(),
            ],
            old_cmd: vec![],
            old_image_id: "sha256:old".into(),
            new_image: "postgres:17".into(),
        };
        assert_eq!(
            new_server_env(&pg),
            vec![
                "POSTGRES_PASSWORD=secret".to_string(),
                "POSTGRES_USER=admin".to_string(),
                "POSTGRES_DB=postgres".to_string(),
                "POSTGRES_INITDB_ARGS=--data-checksums --encoding=UTF8 --lc-collate=C.UTF-8 --lc-ctype=C.UTF-8".to_string(),
                "PGDATA=/var/lib/postgresql/data".to_string(),
            ]
        );
    }
}
