//! `verify [BACKUP]`: checks a backup file end to end — outer structure, manifest, the sha256 of every
//! member, zstd frames, inner tars and content digests — and names every problem it finds.

use serde::Serialize;

use super::backups::{backup_dir, from_destination, listing, locate_backup, open_backup};
use super::restore::restore_into_scratch;
use super::{ExitStatus, Session, UsageError};
use crate::archive::Problem;
use crate::cli::VerifyArgs;
use crate::report::human_size;

#[derive(Serialize)]
struct VerifyJson<'a> {
    schema_version: u32,
    path: &'a std::path::Path,
    ok: bool,
    volumes: Vec<VolumeJson<'a>>,
    problems: Vec<ProblemJson<'a>>,
}

#[derive(Serialize)]
struct VolumeJson<'a> {
    key: &'a str,
    ok: bool,
}

#[derive(Serialize)]
struct ProblemJson<'a> {
    member: Option<&'a str>,
    what: &'a str,
    expected: Option<&'a str>,
    found: Option<&'a str>,
}

pub async fn run(session: &Session<'_>, args: &VerifyArgs) -> anyhow::Result<ExitStatus> {
    let printer = session.printer;
    let from = match &args.from {
        Some(_) => {
            let project = session.load_project()?;
            from_destination(&args.dir, &project, &args.from)?
        }
        None => None,
    };
    let path = match &args.backup {
        Some(p) => locate_backup(from.as_ref(), p),
        None => {
            let project = session.load_project()?;
            let dir = backup_dir(&args.dir, &project.directory);
            let (newest, place) = match &from {
                Some(d) => (
                    d.list(&project.name).await?.backups.into_iter().next(),
                    d.url().to_string(),
                ),
                None => (
                    listing(&dir, &project.name)?.backups.into_iter().next(),
                    dir.display().to_string(),
                ),
            };
            match newest {
                Some(b) => b.path,
                None => {
                    return Err(UsageError {
                        message: format!(
                            "project `{}` has no backups in `{}`",
                            project.name, place
                        ),
                        hint: Some("`docker persist backup` takes one".to_string()),
                    }
                    .into());
                }
            }
        }
    };
    printer.status(format!("Verifying `{}`", path.display()));
    let opened = open_backup(from.as_ref(), &path).await?;
    let (manifest, report) = tokio::task::spawn_blocking(move || {
        let report = opened.verify()?;
        Ok::<_, crate::archive::ArchiveError>((opened.manifest().clone(), report))
    })
    .await??;
    // Recorded for `backups` and `check`; a failed record only means verifying again later.
    if let Err(e) = super::verified::record(&path, &manifest, report.is_ok()) {
        printer.verbose(format!("cannot record the verification: {e}"));
    }
    if printer.json_mode() {
        printer.json(&VerifyJson {
            schema_version: 1,
            path: &path,
            ok: report.is_ok(),
            volumes: report
                .volumes
                .iter()
                .map(|v| VolumeJson {
                    key: &v.key,
                    ok: v.ok,
                })
                .collect(),
            problems: report.problems.iter().map(problem_json).collect(),
        })?;
    } else {
        for v in &report.volumes {
            let detail = match (
                &v.summary,
                v.member.starts_with(crate::archive::format::DUMPS_DIR),
            ) {
                (Some(s), _) => format!("{} entries, {}", s.entries, human_size(s.file_bytes)),
                (None, true) => format!("dump `{}`", v.member),
                (None, false) => String::new(),
            };
            printer.status(format!(
                "  {} `{}` {detail}",
                if v.ok { "ok     " } else { "FAILED " },
                v.key
            ));
        }
        for p in &report.problems {
            printer.warn(problem_text(p));
        }
    }
    if report.is_ok() && args.restore_test {
        let engine = session.connect().await?;
        engine.remove_leftover_helpers().await?;
        let backup = std::sync::Arc::new({
            let b = open_backup(from.as_ref(), &path).await?;
            tokio::task::spawn_blocking(move || {
                b.verify()?;
                Ok::<_, crate::archive::ArchiveError>(b)
            })
            .await??
        });
        let records = backup.manifest().volumes.clone();
        let fast = crate::fastpath::select(&engine, printer, args.data_path).await?;
        let mut failed = Vec::new();
        for r in &records {
            match restore_into_scratch(&engine, printer, fast.as_ref(), &backup, r).await {
                Ok(d) => printer.status(format!(
                    "  restored `{}` into a scratch volume: digest {d} matches",
                    r.key
                )),
                Err(e) => {
                    printer.warn(format!("`{}`: restore test failed: {e:#}", r.key));
                    failed.push(r.key.clone());
                }
            }
        }
        for d in &backup.manifest().dumps {
            printer.status(format!(
                "  `{}` is a {} dump: checked, but not restore-tested (that needs a {} server; `docker persist restore` loads it into the service)",
                d.key, d.recipe, d.recipe
            ));
        }
        if !failed.is_empty() {
            anyhow::bail!(
                "`{}` did not restore exactly: {}",
                path.display(),
                failed
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    if report.is_ok() {
        printer.status(format!(
            "`{}` is intact: {} volume(s), every checksum and digest matches",
            path.display(),
            report.volumes.len()
        ));
        Ok(ExitStatus::Success)
    } else {
        anyhow::bail!(
            "`{}` is damaged: {} problem(s) found",
            path.display(),
            report.problems.len()
        )
    }
}

fn problem_json(p: &Problem) -> ProblemJson<'_> {
    ProblemJson {
        member: p.member.as_deref(),
        what: &p.what,
        expected: p.expected.as_deref(),
        found: p.found.as_deref(),
    }
}

/// "`volumes/db.tar.zst`: sha256 mismatch (expected …, found …)".
pub fn problem_text(p: &Problem) -> String {
    let mut s = match &p.member {
        Some(m) => format!("`{m}`: {}", p.what),
        None => p.what.clone(),
    };
    match (&p.expected, &p.found) {
        (Some(e), Some(f)) => s.push_str(&format!(" (expected {e}, found {f})")),
        (Some(e), None) => s.push_str(&format!(" (expected {e})")),
        (None, Some(f)) => s.push_str(&format!(" (found {f})")),
        (None, None) => {}
    }
    s
}
