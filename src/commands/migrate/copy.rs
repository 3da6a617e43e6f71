//! Copying a volume's tree into a host directory through helper containers (fast or universal path),
//! emptying a directory again, undoing a failed copy, and the content digest of a tree read back.

use std::io::Write as _;

use anyhow::{Context as _, bail};
use futures_util::TryStreamExt;

use crate::archive::digest::{digest_tar, digest_tar_into};
use crate::archive::{ContentDigest, DigestOptions, DigestVersion, rebase_tar};
use crate::engine::Engine;
use crate::engine::helper::HelperMount;
use crate::fastpath::{self, FastPath, Op};
use crate::report::Printer;

/// After a failed copy into `path`: removes what was copied when the directory was empty or created by
/// this command, and says what is there now.
pub(super) async fn undo_copy(
    engine: &Engine,
    printer: &Printer,
    fast: Option<&FastPath>,
    path: &str,
    existed: bool,
    clean_target: bool,
) {
    if !clean_target {
        printer.warn(format!(
            "`{path}` was not empty before and may now also hold part of the copy; nothing else was changed"
        ));
        return;
    }
    match clear_dir(engine, printer, fast, path).await {
        Ok(()) if existed => printer.status(format!("`{path}` is empty again")),
        Ok(()) => printer.status(format!(
            "`{path}` was created by this migration and is empty again (the directory itself is left)"
        )),
        Err(c) => printer.warn(format!(
            "`{path}` may hold part of the copy and could not be emptied ({c:#}); remove what is in it before migrating again"
        )),
    }
}

/// Empties a host directory through a fast helper: the universal path has no way to remove files, so
/// this needs the fast path's preconditions even when the copy took the universal path.
pub(crate) async fn clear_dir(
    engine: &Engine,
    printer: &Printer,
    fast: Option<&FastPath>,
    path: &str,
) -> anyhow::Result<()> {
    let own;
    let fast = match fast {
        Some(f) => Some(f),
        None => {
            own = fastpath::select(engine, printer, None).await?;
            own.as_ref()
        }
    };
    let mount = HelperMount::Bind {
        path: path.to_string(),
        read_only: false,
    };
    let Some((run, socket)) = fastpath::launch(fast, printer, Op::Clear, &mount, None).await?
    else {
        bail!("emptying a directory needs the fast path, which cannot work here");
    };
    drop(socket);
    run.finish().await?;
    Ok(())
}

/// Copies the tree at `from` into `to` (which it may replace entries of) through helper containers, and
/// checks that `to` read back has the content digest of what was read from `from`. Returns that digest.
pub(super) async fn copy_tree(
    engine: &Engine,
    printer: &Printer,
    fast: Option<&FastPath>,
    from: &HelperMount,
    to: &HelperMount,
    what: &str,
) -> anyhow::Result<ContentDigest> {
    let started = std::time::Instant::now();
    let version = DigestVersion::default();
    if let Some((pack, pack_socket)) = fastpath::launch(fast, printer, Op::Pack, from, None).await?
    {
        match fastpath::launch(fast, printer, Op::Unpack(version), to, None).await {
            Ok(Some((unpack, unpack_socket))) => {
                printer.verbose(format!("copying {what} on the fast path"));
                let sent = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                    let result = (|| {
                        let mut sink =
                            std::io::BufWriter::with_capacity(1024 * 1024, &unpack_socket);
                        let summary = digest_tar_into(
                            std::io::BufReader::with_capacity(1024 * 1024, &pack_socket),
                            &mut sink,
                            &DigestOptions::default().with_version(version),
                        )?;
                        sink.flush()?;
                        anyhow::Ok(summary)
                    })();
                    let how = if result.is_ok() {
                        std::net::Shutdown::Write
                    } else {
                        std::net::Shutdown::Both
                    };
                    let _ = unpack_socket.shutdown(how);
                    let _ = pack_socket.shutdown(std::net::Shutdown::Both);
                    result
                })
                .await
                .context("the copy stopped unexpectedly")?;
                let (packed, unpacked) = (pack.finish().await, unpack.finish().await);
                // The helpers' own explanations first, the writing one's when the stream could not be
                // passed on to it, else the reading one's: the stream only shows that it stopped.
                if let Err(e) = &sent {
                    let writing = matches!(
                        e.downcast_ref::<crate::archive::DigestError>(),
                        Some(crate::archive::DigestError::Sink(_))
                    ) || e.downcast_ref::<std::io::Error>().is_some();
                    if !writing {
                        packed
                            .as_ref()
                            .map_err(|p| anyhow::anyhow!("{p:#}"))
                            .context("failed to read the source")?;
                    }
                }
                let unpacked = unpacked.context("failed to write the copy")?;
                packed.context("failed to read the source")?;
                let summary = sent.context("failed to copy")?;
                let found = unpacked
                    .digest
                    .context("the helper did not report the copy's content digest")?;
                printer.verbose(format!(
                    "copied {what} in {:.2} s",
                    started.elapsed().as_secs_f64()
                ));
                return checked(summary.digest, found, what);
            }
            Ok(None) => {
                drop(pack_socket);
                let _ = pack.finish().await;
            }
            Err(e) => {
                drop(pack_socket);
                let _ = pack.finish().await;
                return Err(e);
            }
        }
    }
    printer.verbose(format!("copying {what} through the engine's archive API"));
    let source = engine.create_helper(from).await?;
    let target = engine.create_helper(to).await?;
    let result = async {
        let download = engine
            .with_long_timeout()
            .download_data(&source)
            .map_err(std::io::Error::other);
        let reader = crate::pipe::reader_of(download);
        let (writer, body) = crate::pipe::stream_of();
        let producer = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let failer = writer.clone();
            let (pipe_reader, pipe_writer) = std::io::pipe()?;
            // The tree read from the source is digested on this thread and re-rooted under `data/` on
            // another, so that the directory's own owner, mode and times are set too.
            let rebaser = std::thread::spawn(move || {
                let mut pipe_reader = pipe_reader;
                let sink = std::io::BufWriter::with_capacity(256 * 1024, writer);
                let mut sink = rebase_tar(&mut pipe_reader, sink, "data")?;
                sink.flush()?;
                // The padding after the end of the archive is read too, so the digest never sees its
                // last writes refused.
                std::io::copy(&mut pipe_reader, &mut std::io::sink()).map(|_| ())
            });
            let digested = digest_tar_into(
                reader,
                pipe_writer,
                &DigestOptions::default().with_version(version),
            );
            let rebased = rebaser
                .join()
                .map_err(|_| anyhow::anyhow!("the copy stopped unexpectedly"))?;
            let failed: anyhow::Error = match (digested, rebased) {
                (Ok(summary), Ok(())) => return Ok(summary),
                // The digest could not pass the tree on: why is the re-rooting's to say.
                (Err(crate::archive::DigestError::Sink(_)), Err(e)) => e.into(),
                (Err(e), _) => e.into(),
                (Ok(_), Err(e)) => e.into(),
            };
            failer.fail(std::io::Error::other(failed.to_string()));
            Err(failed)
        });
        let upload = engine.with_long_timeout().upload_root(&target, body).await;
        let produced = producer.await.context("the copy stopped unexpectedly")?;
        upload.context("failed to write the copy")?;
        let summary = produced.context("failed to read the source")?;
        let back = engine
            .with_long_timeout()
            .download_data(&target)
            .map_err(std::io::Error::other);
        let reader = crate::pipe::reader_of(back);
        let options = DigestOptions::default().with_version(version);
        let found = tokio::task::spawn_blocking(move || digest_tar(reader, &options)).await??;
        anyhow::Ok((summary.digest, found.digest))
    }
    .await;
    let removed = (source.remove().await, target.remove().await);
    let (expected, found) = result?;
    removed.0?;
    removed.1?;
    printer.verbose(format!(
        "copied {what} in {:.2} s",
        started.elapsed().as_secs_f64()
    ));
    checked(expected, found, what)
}

pub(super) fn checked(
    expected: ContentDigest,
    found: ContentDigest,
    what: &str,
) -> anyhow::Result<ContentDigest> {
    if expected != found {
        bail!("the copy {what} differs from the source (digest {found} instead of {expected})");
    }
    Ok(found)
}

/// The content digest of a tree, read through a helper.
pub(crate) async fn tree_digest(
    engine: &Engine,
    printer: &Printer,
    fast: Option<&FastPath>,
    mount: &HelperMount,
) -> anyhow::Result<ContentDigest> {
    let options = DigestOptions::default();
    if let Some((run, socket)) = fastpath::launch(fast, printer, Op::Pack, mount, None).await? {
        let digested = tokio::task::spawn_blocking(move || {
            digest_tar(
                std::io::BufReader::with_capacity(1024 * 1024, &socket),
                &options,
            )
        })
        .await?;
        run.finish().await?;
        return Ok(digested?.digest);
    }
    let helper = engine.create_helper(mount).await?;
    let stream = engine
        .with_long_timeout()
        .download_data(&helper)
        .map_err(std::io::Error::other);
    let reader = crate::pipe::reader_of(stream);
    let digested = tokio::task::spawn_blocking(move || digest_tar(reader, &options)).await?;
    helper.remove().await?;
    Ok(digested?.digest)
}
