//! docker persist's Compose override file as a migration uses it: whether Compose loads it by itself, that
//! it is ours before it is changed, written whole and put back, and the services recreated with it and
//! checked to mount what it says.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;

use anyhow::bail;

use crate::commands::compose_cli::ComposeCli;
use crate::commands::consistency;
use crate::commands::restore::Refused;
use crate::commands::{Session, quoted};
use crate::compose::Project;
use crate::compose::migration::{self, MigratedMount, Migration, OverrideFile};
use crate::engine::{ContainerInfo, Engine};
use crate::inventory::bind_mounts;

/// Whether the project's files were found by Compose's own discovery, which loads the override file.
pub(crate) fn automatic_override(session: &Session<'_>) -> bool {
    session.project_args.files.is_empty()
        && std::env::var_os("COMPOSE_FILE").is_none_or(|v| v.is_empty())
}

/// The current content of our override file (`None`: there is none), or a refusal when an override file
/// exists that docker persist did not write (its comments and formatting would be lost).
pub(crate) fn check_override_is_ours(
    overrides: &OverrideFile,
    all: &[Migration],
) -> anyhow::Result<Option<String>> {
    if overrides.present.len() > 1 {
        return Err(Refused {
            message: format!(
                "the project directory has several override files ({}); Compose v1 refuses to load such a project",
                quoted(overrides.present.iter().filter_map(|p| p.file_name()?.to_str()))
            ),
            hint: "keep one override file, then run the migration again".to_string(),
        }
        .into());
    }
    if overrides.present.is_empty() {
        return Ok(None);
    }
    let text = fs_err::read_to_string(&overrides.path)?;
    if migration::is_ours(&text) {
        return Ok(Some(text));
    }
    Err(Refused {
        message: format!(
            "`{}` is your own override file, and docker persist does not edit your files (their comments and formatting would be lost); after the migration Compose needs:\n{}{}",
            overrides.path.display(),
            migration::services_snippet(all),
            migration::record_snippet(all)
        ),
        hint: format!(
            "move what `{}` holds into your main Compose file (or load it with `-f`), so that docker persist can write its own override file; then run the migration again",
            overrides.path.display()
        ),
    }
    .into())
}

/// Writes a file whole (a temporary file renamed over it), so that Compose never reads half of it.
pub(crate) fn write_override(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("persist-tmp");
    let mut f = fs_err::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    // On disk before it counts: a migration killed by a power cut is resolved from what the file holds.
    f.sync_all()?;
    drop(f);
    fs_err::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs_err::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Puts the override file back as it was: `None` removes it.
pub(crate) fn restore_override(path: &Path, previous: Option<&str>) -> anyhow::Result<()> {
    match previous {
        Some(text) => write_override(path, text),
        None => match fs_err::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        },
    }
}

/// Whether a container mounts `path` (a bind) at every target of `mounts` that belongs to its service.
pub(crate) fn mounts_bind(c: &ContainerInfo, mounts: &[MigratedMount], path: &Path) -> bool {
    mounts
        .iter()
        .filter(|m| c.service.as_deref() == Some(m.service.as_str()))
        .all(|m| bind_mounts(c, path).any(|b| same_target(&b.destination, &m.target)))
}

/// Whether a container mounts volume `name` at every target of `mounts` that belongs to its service.
pub(crate) fn mounts_volume(c: &ContainerInfo, mounts: &[MigratedMount], name: &str) -> bool {
    mounts
        .iter()
        .filter(|m| c.service.as_deref() == Some(m.service.as_str()))
        .all(|m| {
            c.mounts.iter().any(|x| {
                x.kind == "volume"
                    && x.name.as_deref() == Some(name)
                    && same_target(&x.destination, &m.target)
            })
        })
}

pub(super) fn same_target(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Has Compose recreate `services` (whose containers `stopped` this command stopped) with the current
/// Compose files plus `override_file`, and checks that each new container passes `mounted`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn recreate(
    session: &Session<'_>,
    engine: &Engine,
    project: &Project,
    override_file: &Path,
    stopped: &[ContainerInfo],
    services: &BTreeSet<&str>,
    mounted: impl Fn(&ContainerInfo) -> bool,
    mount_text: &str,
) -> anyhow::Result<()> {
    // Containers outside Compose's services (none, normally) are simply started again.
    let loose: Vec<ContainerInfo> = stopped
        .iter()
        .filter(|c| c.service.is_none())
        .cloned()
        .collect();
    consistency::start_again(session, engine, &loose).await?;
    if services.is_empty() {
        return Ok(());
    }
    let mut project = project.clone();
    if override_file.exists() && !project.files.iter().any(|f| f == override_file) {
        project.files.push(override_file.to_path_buf());
    }
    project.files.retain(|f| f.exists());
    let prefer_v1 = stopped.iter().any(|c| {
        c.compose_version
            .as_deref()
            .is_some_and(|v| v.starts_with("1."))
    });
    let compose = ComposeCli::find(session.globals, &project, prefer_v1)?;
    let mut a = vec!["up", "-d", "--no-deps"];
    a.extend(services.iter().copied());
    session.printer.status(format!(
        "Recreating {} with Compose",
        quoted(services.iter().copied())
    ));
    let ran = compose.run(&a).await;
    // The old containers are replaced (or Compose failed): they are not started again by this command.
    for c in stopped.iter().filter(|c| c.service.is_some()) {
        session.forget_restart(&c.id);
        session.journal_started(&c.id);
    }
    ran?;
    let now = engine.project_containers(&project.name).await?;
    for service in services {
        let containers: Vec<&ContainerInfo> = now
            .iter()
            .filter(|c| c.service.as_deref() == Some(*service) && !c.helper)
            .collect();
        if containers.is_empty() || !containers.iter().all(|c| c.is_running()) {
            bail!(
                "service `{service}` is not running after `{}`",
                compose.describe(&a)
            );
        }
        if let Some(c) = containers.iter().find(|c| !mounted(c)) {
            bail!(
                "container `{}` of service `{service}` does not {mount_text} where expected",
                c.name
            );
        }
    }
    Ok(())
}
