//! What runs inside a fast-path helper container: this same executable, started as `docker-persist
//! __helper OP …` with the volume at `/data` and docker persist's private socket directory at `/io`.
//!
//! It connects to the socket, sends its nonce (so docker persist knows the right helper connected), then
//! packs `/data` into a tar written to the socket (backup), unpacks the tar it reads into `/data` and
//! digests what landed on disk (restore), or empties `/data` (the partial copy of a failed migration).
//! Either way it writes a [`HelperReport`] as JSON to `--result` and exits 0, or 1 with the error in the
//! report. It has no engine, no terminal and no network; the container has no log output, so the report
//! file is how it speaks.

use std::ffi::OsString;
use std::io::{BufReader, BufWriter, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

use super::HelperReport;
use crate::archive::tree::{digest_tree, pack_tree, unpack_tree};
use crate::cli::{HelperCli, HelperOp};

/// Socket buffers: large reads and writes, few system calls.
const BUFFER: usize = 1024 * 1024;

/// Runs a helper operation; `args` are the arguments after `__helper`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match HelperCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let result_path = cli.op.args().result.clone();
    let report = run(&cli.op).unwrap_or_else(|e| HelperReport {
        error: Some(format!("{e:#}")),
        ..HelperReport::default()
    });
    let failed = report.error.is_some();
    // Written whole under another name, then renamed: docker persist never reads half a report.
    let written = serde_json::to_vec(&report)
        .map_err(std::io::Error::other)
        .and_then(|json| {
            let tmp = result_path.with_extension("tmp");
            std::fs::write(&tmp, json)?;
            std::fs::rename(&tmp, &result_path)
        });
    if let Err(e) = written {
        eprintln!(
            "error: failed to write the report `{}`: {e}",
            result_path.display()
        );
        return ExitCode::FAILURE;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn run(op: &HelperOp) -> anyhow::Result<HelperReport> {
    let args = op.args();
    let stream = UnixStream::connect(&args.socket)
        .with_context(|| format!("failed to connect to `{}`", args.socket.display()))?;
    (&stream)
        .write_all(format!("{}\n", args.nonce).as_bytes())
        .context("failed to greet docker persist")?;
    match op {
        HelperOp::Pack(_) => {
            let mut out = BufWriter::with_capacity(BUFFER, &stream);
            let stats = pack_tree(&args.root, &mut out)
                .with_context(|| format!("failed to pack `{}`", args.root.display()))?;
            out.flush().context("failed to send the tar")?;
            drop(out);
            stream
                .shutdown(std::net::Shutdown::Write)
                .context("failed to end the tar stream")?;
            Ok(HelperReport {
                entries: stats.entries,
                file_bytes: stats.file_bytes,
                skipped_sockets: stats.skipped_sockets,
                ..HelperReport::default()
            })
        }
        HelperOp::Clear(_) => {
            let entries = clear(&args.root)
                .with_context(|| format!("failed to empty `{}`", args.root.display()))?;
            Ok(HelperReport {
                entries,
                ..HelperReport::default()
            })
        }
        HelperOp::Unpack(_) => {
            let mut input = BufReader::with_capacity(BUFFER, &stream);
            let stats = unpack_tree(&mut input, &args.root, args.strip_prefix.as_deref())
                .with_context(|| format!("failed to unpack into `{}`", args.root.display()))?;
            // What follows the end-of-archive marker (padding) is read too, so the sender never sees its
            // last write refused.
            std::io::copy(&mut input.by_ref(), &mut std::io::sink())
                .context("failed to read the end of the tar stream")?;
            let summary = digest_tree(&args.root, args.digest)
                .with_context(|| format!("failed to read back `{}`", args.root.display()))?;
            Ok(HelperReport {
                entries: stats.entries,
                file_bytes: stats.file_bytes,
                skipped_sockets: stats.skipped_sockets,
                digest: Some(summary.digest),
                digest_entries: summary.entries,
                ..HelperReport::default()
            })
        }
    }
}

/// Removes everything below `root`, symlinks as links (never followed); `root` itself stays. Returns how
/// many entries directly below it were removed.
fn clear(root: &std::path::Path) -> std::io::Result<u64> {
    let mut removed = 0;
    for entry in fs_err::read_dir(root)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            fs_err::remove_dir_all(&path)?;
        } else {
            fs_err::remove_file(&path)?;
        }
        removed += 1;
    }
    Ok(removed)
}
