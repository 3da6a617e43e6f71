//! How each volume is kept consistent while a backup reads it (DESIGN: "Data path" → Consistency).
//!
//! A file-level copy of a running database is not a backup, so by default (`auto`) the running containers
//! that mount critical or important data are stopped while that data is read and started again right
//! after, before the next volume, in dependency order; regenerable and optional data is read live. The
//! mode comes from `--consistency`, else `x-persist: {consistency: …}` of the volume (or of a bind mount's
//! long-syntax entry), else the top-level `x-persist`, else `auto`. Every container stopped here is written
//! to the intent record first and registered with the session, so that an error, Ctrl-C or a killed process
//! still gets it started again.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Context as _;

use super::{Session, quoted};
use crate::compose::classify::DataKind;
use crate::compose::{Consistency, MountType, PersistSpec, Project, Tier};
use crate::engine::{ContainerInfo, Engine};
use crate::intent::{Step, StepState, StoppedContainer};
use crate::inventory::{DataItem, bind_mounts};

/// The mode a volume gets, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `Stop`, `Live` or `Dump`; never `Auto`.
    pub mode: Consistency,
    pub reason: String,
    /// Where the mode came from, in a word or two for the `ls` table: `auto`, `x-persist`, `flag`, …
    pub source: &'static str,
}

/// The mode for `item`: `flag` > the volume's `x-persist` > the project's `x-persist` > `auto`, where `auto`
/// is `stop` for critical and important data and `live` for the rest.
pub fn resolve(flag: Option<Consistency>, item: &DataItem, project: &Project) -> Resolved {
    let (chosen, source, short) = if let Some(f) = flag {
        (f, Some(format!("--consistency {f}")), "flag")
    } else if let Some(c) = volume_setting(item, project) {
        (c, Some("x-persist of the volume".to_string()), "x-persist")
    } else if let Some(c) = project.consistency {
        (
            c,
            Some("x-persist of the project".to_string()),
            "project x-persist",
        )
    } else {
        (Consistency::Auto, None, "auto")
    };
    if chosen != Consistency::Auto {
        return Resolved {
            mode: chosen,
            reason: source.unwrap_or_default(),
            source: short,
        };
    }
    let tier = item.tier();
    let mode = match tier {
        Tier::Critical | Tier::Important => Consistency::Stop,
        Tier::Regenerable | Tier::Optional => Consistency::Live,
    };
    let reason = match source {
        Some(s) => format!("auto ({s}): {tier} data"),
        None => format!("auto: {tier} data"),
    };
    Resolved {
        mode,
        reason,
        source: "auto",
    }
}

/// `consistency:` in the `x-persist` of the volume itself: the top-level definition of a named volume, or
/// a long-syntax entry that binds the host path.
fn volume_setting(item: &DataItem, project: &Project) -> Option<Consistency> {
    persist_specs(item, project)
        .into_iter()
        .find_map(|p| p.consistency)
}

/// The `x-persist` mappings of the volume itself: the top-level definition of a named volume, or the
/// long-syntax entries that bind the host path, in file order.
pub fn persist_specs<'a>(item: &'a DataItem, project: &'a Project) -> Vec<&'a PersistSpec> {
    match item.kind {
        DataKind::Bind => project
            .services
            .values()
            .flat_map(|s| &s.mounts)
            .filter(|m| m.kind == MountType::Bind && m.source == item.name)
            .filter_map(|m| m.persist.as_ref())
            .collect(),
        _ => item
            .definition
            .as_ref()
            .and_then(|d| d.persist.as_ref())
            .into_iter()
            .collect(),
    }
}

/// The hooks of the volume: those of the first `x-persist` mapping that has any.
pub fn volume_hooks(item: &DataItem, project: &Project) -> crate::compose::Hooks {
    persist_specs(item, project)
        .into_iter()
        .find(|p| !p.hooks.is_empty())
        .map(|p| p.hooks.clone())
        .unwrap_or_default()
}

/// The project's services in the order to start them: every service after the services it depends on,
/// otherwise in file order. Where dependencies form a cycle, the earliest service of the cycle in file
/// order comes first.
pub fn start_order(project: &Project) -> Vec<String> {
    let names: Vec<&str> = project.services.keys().map(String::as_str).collect();
    let deps: Vec<Vec<usize>> = project
        .services
        .values()
        .map(|s| {
            s.depends_on
                .iter()
                .filter_map(|d| names.iter().position(|n| n == d))
                .collect()
        })
        .collect();
    order_by_dependencies(&deps)
        .into_iter()
        .map(|i| names[i].to_string())
        .collect()
}

/// Indices `0..deps.len()`, each after its dependencies (`deps[i]`) where possible, otherwise in index
/// order; always terminates, cycles included.
fn order_by_dependencies(deps: &[Vec<usize>]) -> Vec<usize> {
    let mut placed = vec![false; deps.len()];
    let mut out = Vec::with_capacity(deps.len());
    while out.len() < deps.len() {
        let ready =
            (0..deps.len()).find(|&i| !placed[i] && deps[i].iter().all(|&d| placed[d] || d == i));
        // A cycle: nothing is ready, so the first one left in file order goes next.
        let next = ready.or_else(|| (0..deps.len()).find(|&i| !placed[i]));
        let Some(next) = next else { break };
        placed[next] = true;
        out.push(next);
    }
    out
}

/// Sorts containers into start order: by their service's place in `order`; containers of services the
/// project does not know (another project's, on a shared volume) last, by name.
pub fn sort_for_start(containers: &mut [ContainerInfo], order: &[String]) {
    let rank: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    containers.sort_by_key(|c| {
        (
            c.service
                .as_deref()
                .and_then(|s| rank.get(s).copied())
                .unwrap_or(usize::MAX),
            c.name.clone(),
        )
    });
}

/// The running containers (helpers aside) that mount `item`, in start order: for a volume every
/// container that uses it, for a bind mount the project's containers that bind its host path.
pub async fn running_users(
    engine: &Engine,
    project: &Project,
    item: &DataItem,
) -> anyhow::Result<Vec<ContainerInfo>> {
    let Some(name) = item.name.as_deref() else {
        return Ok(Vec::new());
    };
    let mut found = match item.kind {
        DataKind::Bind => engine
            .project_containers(&project.name)
            .await?
            .into_iter()
            .filter(|c| bind_mounts(c, Path::new(name)).next().is_some())
            .collect(),
        _ => engine.containers_using_volume(name).await?,
    };
    found.retain(|c| c.is_running() && !c.helper);
    let mut seen = HashSet::new();
    found.retain(|c| seen.insert(c.id.clone()));
    sort_for_start(&mut found, &start_order(project));
    Ok(found)
}

/// [`stop`], saying first which containers it stops: for the commands that stop everything they need at
/// once, rather than around one volume's read.
pub async fn stop_saying(
    session: &Session<'_>,
    engine: &Engine,
    project: &Project,
    containers: &[ContainerInfo],
) -> anyhow::Result<()> {
    if !containers.is_empty() {
        session.printer.status(format!(
            "Stopping {}",
            quoted(containers.iter().map(|c| c.name.as_str()))
        ));
    }
    stop(session, engine, project, containers).await
}

/// Stops `containers` (given in start order) in reverse order, after writing them to the intent record and
/// registering them with the session, so that every way out of the command starts them again.
pub async fn stop(
    session: &Session<'_>,
    engine: &Engine,
    project: &Project,
    containers: &[ContainerInfo],
) -> anyhow::Result<()> {
    if containers.is_empty() {
        return Ok(());
    }
    let mut stopping: Vec<StoppedContainer> = Vec::new();
    for c in containers {
        stopping.push(StoppedContainer {
            id: c.id.clone(),
            name: c.name.clone(),
            service: c.service.clone(),
            stop_sent: None,
            grace_secs: engine.stop_grace(&c.id).await,
            compose_v1: is_compose_v1(c),
        });
    }
    let step = session
        .step_begin(
            project,
            Step::Stop {
                containers: stopping,
            },
        )
        .context("cannot record which containers are stopped; nothing was stopped")?;
    for c in containers {
        session.restart_on_interrupt(c.id.clone(), c.name.clone());
    }
    for c in containers.iter().rev() {
        session.journal_stop_sent(step, &c.id);
        engine.stop_container(&c.id, &c.name).await?;
    }
    session.step_mark(step, StepState::Done);
    Ok(())
}

/// A stopped container about to be removed, as the intent record keeps it.
pub fn removed(c: &ContainerInfo) -> crate::intent::RemovedContainer {
    crate::intent::RemovedContainer {
        id: c.id.clone(),
        name: c.name.clone(),
        service: c.service.clone(),
        ran: c.is_running(),
        compose_v1: is_compose_v1(c),
    }
}

/// Whether Compose v1 made the container.
pub fn is_compose_v1(c: &ContainerInfo) -> bool {
    c.compose_version
        .as_deref()
        .is_some_and(|v| v.starts_with("1."))
}

/// Starts `containers` again in order; each one that runs is forgotten by the session and the intent record.
/// Tries them all; the first failure is returned (the session tries again as the command ends).
pub async fn start_again(
    session: &Session<'_>,
    engine: &Engine,
    containers: &[ContainerInfo],
) -> anyhow::Result<()> {
    let mut first_error = None;
    for c in containers {
        if let Err(e) = session.start_again(engine, &c.id, &c.name).await {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// What the manifest records as stopped: service names, or container names outside Compose.
pub fn stopped_names(containers: &[ContainerInfo]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for c in containers {
        let n = c.service.clone().unwrap_or_else(|| c.name.clone());
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::classify::Classification;
    use crate::compose::{Mount, Service, VolumeDef};

    fn persist(c: Consistency) -> Option<PersistSpec> {
        Some(PersistSpec {
            consistency: Some(c),
            ..Default::default()
        })
    }

    fn project(services: &[(&str, &[&str])]) -> Project {
        Project {
            name: "app".into(),
            directory: "/p".into(),
            files: vec![],
            services: services
                .iter()
                .map(|(n, deps)| {
                    (
                        n.to_string(),
                        Service {
                            name: n.to_string(),
                            depends_on: deps.iter().map(|d| d.to_string()).collect(),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            volumes: Default::default(),
            persist: serde_json::Value::Null,
            consistency: None,
            hooks: Default::default(),
            environment: Default::default(),
            warnings: vec![],
        }
    }

    fn item(kind: DataKind, tier: Tier) -> DataItem {
        DataItem {
            key: "data".into(),
            name: Some(if kind == DataKind::Bind {
                "/p/data".into()
            } else {
                "app_data".into()
            }),
            kind,
            classification: Classification {
                tier,
                source: crate::compose::classify::TierSource::Default,
                rule: None,
                reason: String::new(),
            },
            users: vec![],
            size_bytes: None,
            exists: Some(true),
            removed_by_down_v: false,
            declared: true,
            definition: None,
            volume: None,
            migrated_from: None,
            left_over_from_migration: None,
        }
    }

    #[test]
    fn auto_stops_critical_and_important_data_and_reads_the_rest_live() {
        let p = project(&[]);
        for (tier, mode) in [
            (Tier::Critical, Consistency::Stop),
            (Tier::Important, Consistency::Stop),
            (Tier::Regenerable, Consistency::Live),
            (Tier::Optional, Consistency::Live),
        ] {
            let r = resolve(None, &item(DataKind::Named, tier), &p);
            assert_eq!(r.mode, mode, "{tier}");
            assert_eq!(r.reason, format!("auto: {tier} data"));
        }
    }

    #[test]
    fn mode_comes_from_the_flag_then_the_volume_then_the_project() {
        let mut p = project(&[]);
        let mut it = item(DataKind::Named, Tier::Critical);
        p.consistency = Some(Consistency::Live);
        let r = resolve(None, &it, &p);
        assert_eq!(
            (r.mode, r.reason.as_str()),
            (Consistency::Live, "x-persist of the project")
        );
        it.definition = Some(VolumeDef {
            key: "data".into(),
            persist: persist(Consistency::Dump),
            ..Default::default()
        });
        let r = resolve(None, &it, &p);
        assert_eq!(
            (r.mode, r.reason.as_str()),
            (Consistency::Dump, "x-persist of the volume")
        );
        let r = resolve(Some(Consistency::Stop), &it, &p);
        assert_eq!(
            (r.mode, r.reason.as_str()),
            (Consistency::Stop, "--consistency stop")
        );
        assert_eq!(r.source, "flag");
        // `auto` wherever it is written still depends on the tier.
        let r = resolve(Some(Consistency::Auto), &it, &p);
        assert_eq!(r.mode, Consistency::Stop);
        assert_eq!(r.reason, "auto (--consistency auto): critical data");
        p.consistency = Some(Consistency::Auto);
        it.definition = None;
        it.classification.tier = Tier::Regenerable;
        let r = resolve(None, &it, &p);
        assert_eq!(r.mode, Consistency::Live);
        assert_eq!(
            r.reason,
            "auto (x-persist of the project): regenerable data"
        );
    }

    #[test]
    fn a_bind_mount_takes_the_mode_of_the_long_syntax_entry_that_binds_its_path() {
        let mut p = project(&[("web", &[]), ("worker", &[])]);
        let mount = |source: &str, c: Option<Consistency>| Mount {
            kind: MountType::Bind,
            source: Some(source.into()),
            source_as_written: Some(source.into()),
            target: "/data".into(),
            read_only: false,
            persist: c.and_then(persist),
        };
        p.services["web"].mounts = vec![mount("/p/other", Some(Consistency::Stop))];
        p.services["worker"].mounts = vec![
            mount("/p/data", None),
            mount("/p/data", Some(Consistency::Live)),
        ];
        let r = resolve(None, &item(DataKind::Bind, Tier::Critical), &p);
        assert_eq!(
            (r.mode, r.reason.as_str()),
            (Consistency::Live, "x-persist of the volume")
        );
    }

    #[test]
    fn services_start_after_their_dependencies_else_in_file_order() {
        let p = project(&[
            ("web", &["api", "cache"]),
            ("api", &["db"]),
            ("cache", &[]),
            ("db", &["missing"]),
        ]);
        assert_eq!(start_order(&p), ["cache", "db", "api", "web"]);
        let p = project(&[("a", &[]), ("b", &[]), ("c", &[])]);
        assert_eq!(start_order(&p), ["a", "b", "c"]);
    }

    #[test]
    fn dependency_cycles_fall_back_to_file_order_and_end() {
        // web → api → web, and db depends on itself.
        let p = project(&[("web", &["api"]), ("api", &["web", "db"]), ("db", &["db"])]);
        assert_eq!(start_order(&p), ["db", "web", "api"]);
        // 0 → 1 → 2 → 0: 0 goes first, then 2 (whose dependency 0 is placed), then 1.
        let deps = vec![vec![1], vec![2], vec![0]];
        assert_eq!(order_by_dependencies(&deps), [0, 2, 1]);
        assert!(order_by_dependencies(&[]).is_empty());
    }

    #[test]
    fn containers_sort_by_service_order_and_strangers_go_last() {
        let c = |name: &str, service: Option<&str>| ContainerInfo {
            id: name.into(),
            name: name.into(),
            service: service.map(str::to_string),
            image: String::new(),
            state: "running".into(),
            mounts: vec![],
            compose_version: None,
            helper: false,
        };
        let mut list = vec![
            c("other", Some("elsewhere")),
            c("web-1", Some("web")),
            c("db-1", Some("db")),
            c("bare", None),
        ];
        sort_for_start(&mut list, &["db".to_string(), "web".to_string()]);
        let names: Vec<&str> = list.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["db-1", "web-1", "bare", "other"]);
        assert_eq!(stopped_names(&list), ["db", "web", "bare", "elsewhere"]);
    }
}
