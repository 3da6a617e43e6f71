//! Writing one volume or directory from a backup member, on either data path, with its content digest
//! checked; putting data back from a safety backup; restoring into scratch volumes (`--restore-test`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use futures_util::TryStreamExt;

use crate::archive::{
    Backup, ContentDigest, DigestOptions, VolumeRecord, VolumeStream, digest::digest_tar,
    rebase_tar,
};
use crate::cancel::CancellableReader;
use crate::compose::classify::DataKind;
use crate::engine::Engine;
use crate::engine::helper::HelperMount;
use crate::fastpath::{self, FastPath, HelperRun, Op};
use crate::report::Printer;
use crate::report::progress::Progress;

use super::{SCRATCH_LABEL, Target};

type MemberReader = CancellableReader<VolumeStream, Box<dyn FnMut(u64) + Send>>;
/// Recreates (for a volume) and fills one target, then checks its content digest.
pub(super) async fn restore_one(
    engine: &Engine,
    printer: &Printer,
    fast: Option<&FastPath>,
    backup: &Arc<Backup>,
    t: &Target,
) -> anyhow::Result<ContentDigest> {
    let mount = if t.is_bind() {
        if t.has_data {
            empty_host_dir(Path::new(&t.name))?;
        } else {
            fs_err::create_dir_all(&t.name)?;
        }
        HelperMount::Bind {
            path: t.name.clone(),
            read_only: false,
        }
    } else {
        let (driver, opts, labels) = match &t.existing {
            Some(v) => (v.driver.clone(), v.options.clone(), v.labels.clone()),
            None => (
                if t.record.driver.is_empty() {
                    "local".to_string()
                } else {
                    t.record.driver.clone()
                },
                t.record.driver_opts.clone(),
                t.record.labels.clone(),
            ),
        };
        if t.existing.is_some() {
            engine.remove_volume(&t.name).await?;
        }
        // A volume this restore creates carries its mark until it is complete (see `crate::intent`).
        let mut labels = labels;
        if t.existing.is_none() && !labels.contains_key(SCRATCH_LABEL) {
            labels.insert(
                crate::intent::RESTORING_LABEL.to_string(),
                crate::intent::Owner::this().tag(),
            );
        }
        engine
            .create_volume(&t.name, &driver, &opts, &labels)
            .await?;
        HelperMount::Volume {
            name: t.name.clone(),
            read_only: false,
        }
    };
    if let Some((run, socket)) = fastpath::launch(
        fast,
        printer,
        Op::Unpack(t.record.digest_version()),
        &mount,
        t.record.tar_prefix.as_deref(),
    )
    .await?
    {
        printer.verbose(format!("writing `{}` on the fast path", t.record.key));
        return restore_fast(printer, backup, t, run, socket).await;
    }
    printer.verbose(format!(
        "writing `{}` through the engine's archive API",
        t.record.key
    ));
    let helper = engine.create_helper(&mount).await?;

    // The helper goes whatever happens, before anything else is done with the volume.
    let result = async {
        // decoded member → re-rooted under `data/` → channel → the engine.
        let (writer, body) = crate::pipe::stream_of();
        let (progress, member) = MemberSource::new(printer, backup, t);
        let producer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let failer = writer.clone();
            let fail =
                |e: &dyn std::fmt::Display| failer.fail(std::io::Error::other(e.to_string()));
            let mut reader = member.open()?;
            let sink = std::io::BufWriter::with_capacity(256 * 1024, writer);
            let rebased =
                rebase_tar(&mut reader, sink, "data").and_then(|mut w| w.flush().map(|()| w));
            let w = match rebased {
                Ok(w) => w,
                Err(e) => {
                    fail(&e);
                    return Err(e.into());
                }
            };
            // The member's checksum is checked before the upload stream ends.
            if let Err(e) = reader.into_inner().finish() {
                fail(&e);
                return Err(e.into());
            }
            drop(w);
            Ok(())
        });
        let upload = engine.with_long_timeout().upload_root(&helper, body).await;
        let produced = producer
            .await
            .context("the restore reader stopped unexpectedly")?;
        progress.finish();
        produced.with_context(|| format!("failed to read `{}` from the backup", t.record.key))?;
        upload?;

        // Read it back from the engine and compare.
        let stream = engine
            .with_long_timeout()
            .download_data(&helper)
            .map_err(std::io::Error::other);
        let reader = crate::pipe::reader_of(stream);
        // The digest of the version the manifest has: a backup written before `tree-v2` has `tree-v1`.
        let options = DigestOptions::default().with_version(t.record.digest_version());
        let summary = tokio::task::spawn_blocking(move || digest_tar(reader, &options)).await??;
        anyhow::Ok(summary)
    }
    .await;
    let removed = helper.remove().await;
    let summary = result?;
    removed?;
    checked_digest(t, summary.digest, "the engine")
}

/// The digest of what a restore wrote, or an error naming `writer` when it is not the backup's.
pub(super) fn checked_digest(
    t: &Target,
    found: ContentDigest,
    writer: &str,
) -> anyhow::Result<ContentDigest> {
    if Some(found) != t.record.content_digest {
        bail!(
            "the restored content of `{}` differs from the backup (digest {found} instead of {}): {writer} did not write it exactly",
            t.name,
            t.record.digest_text()
        );
    }
    Ok(found)
}

/// What opens the decoded member of one target on the blocking thread that streams it, counting bytes on
/// the target's progress bar.
pub(super) struct MemberSource {
    backup: Arc<Backup>,
    key: String,
    unverified: bool,
    bar: Progress,
}

impl MemberSource {
    fn new(printer: &Printer, backup: &Arc<Backup>, t: &Target) -> (Progress, MemberSource) {
        let progress = Progress::bytes(
            printer.progress_enabled(),
            &t.record.key,
            Some(t.record.uncompressed_bytes),
        );
        let source = MemberSource {
            backup: Arc::clone(backup),
            key: t.record.key.clone(),
            unverified: t.verified_as_it_streams(),
            bar: progress.clone(),
        };
        (progress, source)
    }

    fn open(self) -> Result<MemberReader, crate::archive::ArchiveError> {
        let stream = if self.unverified {
            self.backup.volume_stream_unverified(&self.key)?
        } else {
            self.backup.volume_stream(&self.key)?
        };
        let bar = self.bar;
        Ok(CancellableReader::new(
            stream,
            Box::new(move |n| bar.inc(n)),
        ))
    }
}

/// The fast path of [`restore_one`]: the decoded member goes over the helper's socket, the helper unpacks
/// it on disk and digests what landed there.
pub(super) async fn restore_fast(
    printer: &Printer,
    backup: &Arc<Backup>,
    t: &Target,
    run: HelperRun,
    socket: std::os::unix::net::UnixStream,
) -> anyhow::Result<ContentDigest> {
    let (progress, member) = MemberSource::new(printer, backup, t);
    let producer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let sent = (|| -> anyhow::Result<()> {
            let mut reader = member.open()?;
            let mut sink = std::io::BufWriter::with_capacity(1024 * 1024, &socket);
            std::io::copy(&mut reader, &mut sink)
                .context("failed to send the data to the helper")?;
            sink.flush()
                .context("failed to send the data to the helper")?;
            drop(sink);
            // The member's checksum is checked before the stream ends: a damaged member never looks
            // complete to the helper.
            reader.into_inner().finish()?;
            Ok(())
        })();
        let how = if sent.is_ok() {
            std::net::Shutdown::Write
        } else {
            std::net::Shutdown::Both
        };
        let _ = socket.shutdown(how);
        sent
    });
    let produced = producer
        .await
        .context("the restore reader stopped unexpectedly")?;
    progress.finish();
    let report = run.finish().await;
    produced.with_context(|| format!("failed to read `{}` from the backup", t.record.key))?;
    let report = report?;
    let digest = report
        .digest
        .context("the helper did not report the restored content's digest")?;
    checked_digest(t, digest, "the helper")
}

/// Puts `key` of the backup `file` back into `name`, a volume (recreated with `spec`'s driver, options
/// and labels) or a host directory (emptied first), and checks its digest: how a killed restore is undone
/// from its safety backup.
pub(crate) async fn put_back(
    engine: &Engine,
    printer: &Printer,
    file: &Path,
    key: &str,
    name: &str,
    bind: bool,
    spec: crate::engine::VolumeInfo,
) -> anyhow::Result<ContentDigest> {
    let backup = {
        let p = file.to_path_buf();
        Arc::new(tokio::task::spawn_blocking(move || Backup::open(&p)).await??)
    };
    let record = backup
        .manifest()
        .volumes
        .iter()
        .find(|r| r.key == key)
        .cloned()
        .with_context(|| format!("`{}` holds no `{key}`", file.display()))?;
    let report = {
        let b = Arc::clone(&backup);
        let k = key.to_string();
        tokio::task::spawn_blocking(move || b.verify_volumes(&[k.as_str()])).await??
    };
    if !report.is_ok() {
        bail!("`{}` is damaged", file.display());
    }
    let fast = fastpath::select(engine, printer, None).await?;
    let target = Target {
        kind: if bind { DataKind::Bind } else { record.kind },
        name: name.to_string(),
        // Recreated with what it had (the resolution does not mark it: it is being put back).
        existing: (!bind).then_some(spec),
        has_data: bind && Path::new(name).exists(),
        containers: Vec::new(),
        record,
    };
    restore_one(engine, printer, fast.as_ref(), &backup, &target).await
}

/// Restores one volume of a verified backup into a new scratch volume, reads it back through the engine
/// and returns the digest found; the scratch volume is removed whatever happens.
pub async fn restore_into_scratch(
    engine: &Engine,
    printer: &Printer,
    fast: Option<&FastPath>,
    backup: &Arc<Backup>,
    record: &VolumeRecord,
) -> anyhow::Result<ContentDigest> {
    let name = format!(
        "persist-scratch-{}-{}",
        std::process::id(),
        crate::archive::member_for_key(&record.key)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(40)
            .collect::<String>()
    );
    let mut scratch = record.clone();
    scratch.kind = DataKind::Named;
    scratch.driver = "local".to_string();
    scratch.driver_opts = BTreeMap::new();
    scratch.labels = BTreeMap::from([(SCRATCH_LABEL.to_string(), "true".to_string())]);
    let target = Target {
        record: scratch,
        name: name.clone(),
        kind: DataKind::Named,
        existing: None,
        has_data: false,
        containers: Vec::new(),
    };
    let result = restore_one(engine, printer, fast, backup, &target).await;
    let removed = engine.remove_volume(&name).await;
    let digest = result?;
    removed?;
    Ok(digest)
}

/// Empties a local host directory before a bind mount is restored into it (a safety backup holds what was
/// there).
pub(super) fn empty_host_dir(path: &Path) -> anyhow::Result<()> {
    for entry in fs_err::read_dir(path)? {
        let entry = entry?;
        let p = entry.path();
        if entry.file_type()?.is_dir() {
            fs_err::remove_dir_all(&p)?;
        } else {
            fs_err::remove_file(&p)?;
        }
    }
    Ok(())
}
