//! `destinations`: what the project can send backups to — `local` and `x-persist.destinations` — and, for
//! each, whether it is reachable and writable and how much room it has where that is known.

use serde::Serialize;

use super::{ExitStatus, Session};
use crate::cli::DestinationsArgs;
use crate::destination::{Destination, Health};
use crate::report::{human_size, table};

#[derive(Serialize)]
struct DestinationsJson {
    schema_version: u32,
    destinations: Vec<DestinationJson>,
}

#[derive(Serialize)]
struct DestinationJson {
    name: String,
    url: String,
    default: bool,
    health: Option<Health>,
}

pub async fn run(session: &Session<'_>, args: &DestinationsArgs) -> anyhow::Result<ExitStatus> {
    let printer = session.printer;
    let project = session.load_project()?;
    let destinations = super::backups::destinations(&args.dir, &project)?;
    let mut all: Vec<(Destination, bool)> = vec![(destinations.local(), false)];
    for c in destinations.configured() {
        all.push((destinations.resolve(&c.name)?, c.default));
    }
    let healths: Vec<Option<Health>> = if args.no_check {
        all.iter().map(|_| None).collect()
    } else {
        futures_util::future::join_all(
            all.iter()
                .map(|(d, _)| async move { Some(d.check().await) }),
        )
        .await
    };
    let bad = healths
        .iter()
        .flatten()
        .any(|h| !h.reachable || !h.writable);
    if printer.json_mode() {
        printer.json(&DestinationsJson {
            schema_version: 1,
            destinations: all
                .iter()
                .zip(healths)
                .map(|((d, default), health)| DestinationJson {
                    name: d.name().to_string(),
                    url: d.url().to_string(),
                    default: *default,
                    health,
                })
                .collect(),
        })?;
    } else {
        let rows: Vec<Vec<String>> = all
            .iter()
            .zip(&healths)
            .map(|((d, default), h)| {
                let (reach, write, free) = match h {
                    None => ("-".into(), "-".into(), "-".into()),
                    Some(h) => (
                        if h.reachable { "yes" } else { "NO" }.to_string(),
                        if h.writable { "yes" } else { "NO" }.to_string(),
                        h.free_bytes
                            .map(human_size)
                            .unwrap_or_else(|| "unknown".into()),
                    ),
                };
                vec![
                    d.name().to_string(),
                    d.url().to_string(),
                    if *default { "yes" } else { "" }.to_string(),
                    reach,
                    write,
                    free,
                ]
            })
            .collect();
        printer.data(table::render(
            &["NAME", "URL", "DEFAULT", "REACHABLE", "WRITABLE", "FREE"],
            &rows,
        ));
        for ((d, _), h) in all.iter().zip(&healths) {
            if let Some(Health { error: Some(e), .. }) = h {
                printer.warn(format!("{}: {e}", d.describe()));
            }
        }
    }
    Ok(if bad {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}
