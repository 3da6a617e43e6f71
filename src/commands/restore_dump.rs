//! Restoring a volume that was backed up as a logical dump (`consistency: dump`): the dump is loaded back
//! into the running service by its loader (`psql`, `mysql`/`mariadb`, `mongorestore --archive --drop`), fed
//! through the engine's exec API. Redis is different: its RDB file is written into the volume with the
//! server stopped, and the server started again loads it.
//!
//! A service that is not running (after `docker compose down -v`, say) is started with
//! `docker compose up -d --no-deps SERVICE` first, and the restore waits until it accepts the tool.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use serde::Serialize;

use super::compose_cli::ComposeCli;
use super::dump::{self, READY_TIMEOUT};
use super::hooks::running_container;
use super::restore::Refused;
use super::{Session, UsageError, consistency};
use crate::archive::{Backup, DumpRecord};
use crate::compose::classify::DataKind;
use crate::compose::{DumpRecipe, Project, Tier};
use crate::engine::helper::HelperMount;
use crate::engine::{ContainerInfo, Engine};
use crate::inventory::Inventory;
use crate::report::{Printer, human_size};

/// One dump to load back.
#[derive(Debug, Clone)]
pub struct DumpTarget {
    pub record: DumpRecord,
    pub recipe: DumpRecipe,
    /// The volume (or host path) that holds the service's data, and whether it exists now.
    pub exists: bool,
    /// The service's running container now, if any.
    pub running: Option<ContainerInfo>,
}

#[derive(Serialize)]
pub struct DumpJson<'a> {
    pub key: &'a str,
    pub name: &'a str,
    pub recipe: &'a str,
    pub service: &'a str,
    pub member: &'a str,
    pub bytes: u64,
    pub replaced_data: bool,
}

impl DumpTarget {
    pub fn json(&self) -> DumpJson<'_> {
        DumpJson {
            key: &self.record.key,
            name: &self.record.name,
            recipe: &self.record.recipe,
            service: &self.record.service,
            member: &self.record.member,
            bytes: self.record.bytes,
            replaced_data: self.exists,
        }
    }
}

/// Splits the volume arguments: the dumps they name (all dumps of the tiers when none is named), and the
/// arguments left for volumes backed up as files.
pub fn select(
    all: &[DumpRecord],
    wanted: &[String],
    tiers: &[Tier],
) -> (Vec<DumpRecord>, Vec<String>) {
    if wanted.is_empty() {
        let chosen = all
            .iter()
            .filter(|d| tiers.is_empty() || tiers.contains(&d.tier))
            .cloned()
            .collect();
        return (chosen, Vec::new());
    }
    let mut chosen: Vec<DumpRecord> = Vec::new();
    let mut rest = Vec::new();
    for w in wanted {
        match all.iter().find(|d| &d.key == w || &d.name == w) {
            Some(d) if !chosen.iter().any(|c| c.key == d.key) => chosen.push(d.clone()),
            Some(_) => {}
            None => rest.push(w.clone()),
        }
    }
    (chosen, rest)
}

/// Looks at each dump's service and volume as they are now.
pub async fn plan(
    engine: &Engine,
    project: &Project,
    records: Vec<DumpRecord>,
) -> anyhow::Result<Vec<DumpTarget>> {
    let mut out = Vec::new();
    for record in records {
        let recipe: DumpRecipe = record.recipe.parse().map_err(|e: String| {
            anyhow::anyhow!(
                "the backup's dump of `{}` has an unknown recipe: {e}",
                record.key
            )
        })?;
        if !project.services.contains_key(&record.service) {
            bail!(UsageError {
                message: format!(
                    "`{}` was dumped from service `{}`, which the project no longer defines",
                    record.key, record.service
                ),
                hint: Some(format!(
                    "load `{}` from the backup by hand: `tar -xOf BACKUP {} | zstd -d`",
                    record.key, record.member
                )),
            });
        }
        let exists = match record.kind {
            DataKind::Bind => std::path::Path::new(&record.name).exists(),
            _ => engine.volume(&record.name).await?.is_some(),
        };
        let running = running_container(engine, &project.name, &record.service).await?;
        out.push(DumpTarget {
            record,
            recipe,
            exists,
            running,
        });
    }
    Ok(out)
}

/// The plan's lines for the dumps.
pub fn print_plan(printer: &Printer, targets: &[DumpTarget]) {
    for t in targets {
        let (_, loader) = dump::tools(t.recipe);
        let start = if t.running.is_none() {
            format!(", starting `{}` first", t.record.service)
        } else {
            String::new()
        };
        printer.status(format!(
            "  `{}`: loading the {} dump `{}` ({}) into service `{}` with {}{start}",
            t.record.key,
            t.recipe,
            t.record.member,
            human_size(t.record.bytes),
            t.record.service,
            if t.recipe == DumpRecipe::Redis {
                loader.to_string()
            } else {
                format!("`{loader}`")
            }
        ));
    }
}

/// Loads one dump back into its service.
pub async fn restore(
    session: &Session<'_>,
    engine: &Engine,
    inventory: &Inventory,
    backup: &Arc<Backup>,
    t: &DumpTarget,
) -> anyhow::Result<()> {
    let printer = session.printer;
    let project = &inventory.project;
    let service = t.record.service.as_str();
    let container = match running_container(engine, &project.name, service).await? {
        Some(c) => c,
        None => {
            let compose = ComposeCli::find(session.globals, project, false)?;
            let args = ["up", "-d", "--no-deps", service];
            printer.status(format!("Starting `{service}` to load the dump into it"));
            compose.run(&args).await.with_context(|| {
                format!(
                    "cannot start `{service}` to load `{}` into it",
                    t.record.key
                )
            })?;
            running_container(engine, &project.name, service)
                .await?
                .with_context(|| {
                    format!(
                        "`{service}` does not run after `{}`",
                        compose.describe(&args)
                    )
                })?
        }
    };
    dump::wait_ready(engine, printer, &container, t.recipe, READY_TIMEOUT).await?;
    if t.recipe == DumpRecipe::Redis {
        return restore_redis(session, engine, inventory, backup, t, &container).await;
    }
    let (_, loader) = dump::tools(t.recipe);
    printer.status(format!(
        "Loading `{}` into `{}` with `{loader}`",
        t.record.member, container.name
    ));
    let started = std::time::Instant::now();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(64);
    let b = Arc::clone(backup);
    let key = t.record.key.clone();
    let producer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        use std::io::Read as _;
        let mut stream = b.dump_stream(&key)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            if crate::cancel::is_cancelled() {
                let _ = tx.blocking_send(Err(crate::cancel::interrupted_error()));
                bail!("interrupted");
            }
            match stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    if tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        bail!("the loader stopped reading its input");
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    let _ = tx.blocking_send(Err(e));
                    bail!("failed to read `{key}` from the backup: {msg}");
                }
            }
        }
    });
    let outcome = engine
        .exec_capture(
            &container.id,
            &dump::load_argv(t.recipe),
            &[],
            Some(rx),
            None,
        )
        .await?;
    let produced = producer
        .await
        .context("the restore reader stopped unexpectedly")?;
    let stderr = String::from_utf8_lossy(&outcome.stderr).into_owned();
    for line in String::from_utf8_lossy(&outcome.stdout)
        .lines()
        .chain(stderr.lines())
    {
        printer.verbose(format!("  {loader} | {line}"));
    }
    produced?;
    if outcome.exit_code != Some(0) {
        bail!(
            "`{loader}` in `{}` exited with code {}: {}",
            container.name,
            outcome
                .exit_code
                .map_or_else(|| "unknown".to_string(), |c| c.to_string()),
            stderr.trim()
        );
    }
    if t.recipe == DumpRecipe::Postgres {
        let errors = dump::psql_errors(&stderr);
        if !errors.is_empty() {
            bail!(
                "`psql` in `{}` reported {} error(s) while loading the dump:\n{}",
                container.name,
                errors.len(),
                errors.join("\n")
            );
        }
    }
    printer.status(format!(
        "Restored `{}` ({} {} dump) into `{}` in {:.1} s",
        t.record.key,
        human_size(t.record.bytes),
        t.recipe,
        container.name,
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Redis: the RDB file goes into the volume while every container using it is stopped; the server loads it
/// as it starts again. Refused while the server uses an append-only file, which it would load instead.
async fn restore_redis(
    session: &Session<'_>,
    engine: &Engine,
    inventory: &Inventory,
    backup: &Arc<Backup>,
    t: &DumpTarget,
    container: &ContainerInfo,
) -> anyhow::Result<()> {
    let printer = session.printer;
    let project = &inventory.project;
    let file = dump::redis_where(engine, container).await?;
    if file.appendonly {
        return Err(Refused {
            message: format!(
                "Redis in `{}` has `appendonly yes`: on start it loads its append-only file, not the RDB file, so restoring `{}` would change nothing",
                container.name, t.record.key
            ),
            hint: format!(
                "run it with `appendonly no` for the restore (e.g. `docker compose exec {} redis-cli CONFIG SET appendonly no`, and remove `--appendonly yes` from its command), restore, then turn it on again",
                t.record.service
            ),
        }
        .into());
    }
    let target = t
        .record
        .users
        .iter()
        .find(|u| u.service == t.record.service)
        .map(|u| u.target.trim_end_matches('/').to_string())
        .with_context(|| {
            format!(
                "the backup does not say where `{}` is mounted in `{}`",
                t.record.key, t.record.service
            )
        })?;
    let relative = file
        .path
        .strip_prefix(&format!("{target}/"))
        .filter(|r| !r.is_empty() && !r.split('/').any(|c| c == ".." || c.is_empty()))
        .with_context(|| {
            format!(
                "Redis in `{}` keeps its RDB file at `{}`, outside `{}` (`{target}`)",
                container.name, file.path, t.record.key
            )
        })?
        .to_string();
    let item = inventory
        .items
        .iter()
        .find(|i| i.name.as_deref() == Some(t.record.name.as_str()))
        .with_context(|| {
            format!(
                "`{}` is not part of project `{}`",
                t.record.name, project.name
            )
        })?;
    let running = consistency::running_users(engine, project, item).await?;
    printer.status(format!(
        "Stopping {} to put the RDB file of `{}` in place",
        super::quoted(running.iter().map(|c| c.name.as_str())),
        t.record.key
    ));
    consistency::stop(session, engine, project, &running).await?;
    let written = write_file(engine, backup, t, &relative, &file).await;
    let started = consistency::start_again(session, engine, &running).await;
    written?;
    started?;
    printer.status(format!(
        "Restored `{}` ({} RDB file at `{}`); Redis loaded it as it started again",
        t.record.key,
        human_size(t.record.bytes),
        file.path
    ));
    Ok(())
}

/// Writes the dump of `t` as the file `relative` of its volume, through a helper container.
async fn write_file(
    engine: &Engine,
    backup: &Arc<Backup>,
    t: &DumpTarget,
    relative: &str,
    file: &dump::RedisFile,
) -> anyhow::Result<()> {
    let mount = match t.record.kind {
        DataKind::Bind => HelperMount::Bind {
            path: t.record.name.clone(),
            read_only: false,
        },
        _ => HelperMount::Volume {
            name: t.record.name.clone(),
            read_only: false,
        },
    };
    let mtime = u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0);
    let (head, tail) = crate::archive::rootfs::single_file_tar(
        relative,
        t.record.bytes,
        0o600,
        file.uid,
        file.gid,
        mtime,
    )?;
    let helper = engine.create_helper(&mount).await?;
    let result = async {
        let (writer, body) = crate::pipe::stream_of();
        let b = Arc::clone(backup);
        let key = t.record.key.clone();
        let producer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            use std::io::Write as _;
            let failer = writer.clone();
            let mut sink = std::io::BufWriter::with_capacity(256 * 1024, writer);
            let copied = (|| -> anyhow::Result<()> {
                sink.write_all(&head)?;
                let mut stream = b.dump_stream(&key)?;
                let n = std::io::copy(&mut stream, &mut sink)?;
                stream.finish()?;
                if n != t_bytes(&b, &key) {
                    bail!("the dump of `{key}` holds {n} bytes, not what the manifest says");
                }
                sink.write_all(&tail)?;
                sink.flush()?;
                Ok(())
            })();
            if let Err(e) = &copied {
                failer.fail(std::io::Error::other(e.to_string()));
            }
            copied
        });
        let upload = engine.with_long_timeout().upload_data(&helper, body).await;
        producer
            .await
            .context("the restore reader stopped unexpectedly")??;
        upload?;
        anyhow::Ok(())
    }
    .await;
    let removed = helper.remove().await;
    result?;
    removed?;
    Ok(())
}

fn t_bytes(backup: &Backup, key: &str) -> u64 {
    backup.manifest().dump(key).map_or(0, |d| d.bytes)
}
