//! Running commands inside a service's running container through the engine's exec API: hooks (output
//! captured, with a timeout that kills what it started), dump tools (stdout streamed into the backup file,
//! the exit code checked at the end of the stream) and loaders (a dump fed to their stdin).

use std::io;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::{Engine, EngineError, describe, short};

/// Output kept of each stream of a captured command; the rest is counted, not kept.
pub const OUTPUT_CAP: usize = 1024 * 1024;
/// Stderr kept of a streamed command (a dump tool), to explain its failure.
const STDERR_CAP: usize = 64 * 1024;

/// What a command run inside a container did.
#[derive(Debug, Clone, Default)]
pub struct ExecOutcome {
    /// `None` when it was still running when given up on (a timeout).
    pub exit_code: Option<i64>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Bytes of output beyond [`OUTPUT_CAP`] that were dropped.
    pub truncated: u64,
    pub timed_out: bool,
    /// What was done about a command that timed out: killed, or why it could not be.
    pub kill_note: Option<String>,
    pub duration: Duration,
}

impl ExecOutcome {
    pub fn success(&self) -> bool {
        !self.timed_out && self.exit_code == Some(0)
    }
}

/// Appends to `buf` up to `cap` bytes in all; returns how many were dropped.
fn keep(buf: &mut Vec<u8>, chunk: &[u8], cap: usize) -> u64 {
    let room = cap.saturating_sub(buf.len());
    let n = room.min(chunk.len());
    buf.extend_from_slice(&chunk[..n]);
    (chunk.len() - n) as u64
}

impl Engine {
    async fn start_exec_attached(
        &self,
        container: &str,
        argv: &[String],
        env: &[String],
        stdin: bool,
    ) -> Result<
        (
            String,
            std::pin::Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
            std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
        ),
        EngineError,
    > {
        let what = || {
            format!(
                "run `{}` in container `{}`",
                argv.first().map_or("", String::as_str),
                short(container)
            )
        };
        let created = self
            .docker
            .create_exec(
                container,
                CreateExecOptions::<String> {
                    attach_stdin: Some(stdin),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(false),
                    cmd: Some(argv.to_vec()),
                    env: (!env.is_empty()).then(|| env.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| EngineError::api(what(), &e))?;
        let started = self
            .docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: Some(256 * 1024),
                }),
            )
            .await
            .map_err(|e| EngineError::api(what(), &e))?;
        match started {
            StartExecResults::Attached { output, input } => Ok((created.id, output, input)),
            StartExecResults::Detached => Err(EngineError::Api {
                operation: what(),
                message: "the engine did not attach to the command".to_string(),
            }),
        }
    }

    /// The exit code of a finished exec; `None` while it runs.
    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, EngineError> {
        // The output can end a moment before the engine records the exit.
        for _ in 0..50 {
            let inspected =
                self.docker.inspect_exec(exec_id).await.map_err(|e| {
                    EngineError::api(format!("inspect exec `{}`", short(exec_id)), &e)
                })?;
            if inspected.running != Some(true) {
                return Ok(inspected.exit_code);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(None)
    }

    /// Runs `argv` in running container `container` and captures its output (up to [`OUTPUT_CAP`] per
    /// stream). After `timeout` the command is killed where possible ([`ExecOutcome::kill_note`] says how).
    /// `input`, when given, is written to its stdin, which is then closed.
    pub async fn exec_capture(
        &self,
        container: &str,
        argv: &[String],
        env: &[String],
        input: Option<mpsc::Receiver<io::Result<Bytes>>>,
        timeout: Option<Duration>,
    ) -> Result<ExecOutcome, EngineError> {
        let began = Instant::now();
        let (exec_id, mut output, mut stdin) = self
            .start_exec_attached(container, argv, env, input.is_some())
            .await?;
        let mut out = ExecOutcome::default();
        let feed = async {
            if let Some(mut rx) = input {
                while let Some(chunk) = rx.recv().await {
                    let chunk = chunk?;
                    stdin.write_all(&chunk).await?;
                }
                stdin.flush().await?;
                stdin.shutdown().await?;
            }
            Ok::<(), io::Error>(())
        };
        let collect = async {
            while let Some(item) = output.next().await {
                match item {
                    Ok(LogOutput::StdOut { message }) => {
                        out.truncated += keep(&mut out.stdout, &message, OUTPUT_CAP);
                    }
                    Ok(LogOutput::StdErr { message }) => {
                        out.truncated += keep(&mut out.stderr, &message, OUTPUT_CAP);
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        };
        let both = async { tokio::join!(feed, collect) };
        let finished = match timeout {
            Some(t) => tokio::time::timeout(t, both).await.ok(),
            None => Some(both.await),
        };
        match finished {
            Some((fed, collected)) => {
                collected.map_err(|e| {
                    EngineError::api(format!("read the output of exec `{}`", short(&exec_id)), &e)
                })?;
                if let Err(e) = fed {
                    // The command stopped reading its input (it failed); its exit code says more.
                    out.stderr.extend_from_slice(
                        format!("\n(docker persist: writing its input failed: {e})\n").as_bytes(),
                    );
                }
                out.exit_code = self.exec_exit_code(&exec_id).await?;
            }
            None => {
                out.timed_out = true;
                out.kill_note = Some(Box::pin(self.kill_exec(container, &exec_id)).await);
            }
        }
        out.duration = began.elapsed();
        Ok(out)
    }

    /// Runs `argv` in running container `container` and returns its stdout as a stream. The stream ends
    /// with an error, after the last byte, when the command exits non-zero or writes nothing at all; that
    /// error holds the end of its stderr.
    pub async fn exec_stdout(
        &self,
        container: &str,
        argv: &[String],
    ) -> Result<impl Stream<Item = io::Result<Bytes>> + Send + 'static, EngineError> {
        let (exec_id, mut output, _stdin) = self
            .start_exec_attached(container, argv, &[], false)
            .await?;
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(128);
        let engine = self.clone();
        let tool = argv.first().cloned().unwrap_or_default();
        tokio::spawn(async move {
            let mut stderr = Vec::new();
            let mut bytes = 0u64;
            while let Some(item) = output.next().await {
                match item {
                    Ok(LogOutput::StdOut { message }) => {
                        bytes += message.len() as u64;
                        if tx.send(Ok(message)).await.is_err() {
                            return;
                        }
                    }
                    Ok(LogOutput::StdErr { message }) => {
                        keep(&mut stderr, &message, STDERR_CAP);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx
                            .send(Err(io::Error::other(format!(
                                "the output of `{tool}` broke off: {}",
                                describe(&e)
                            ))))
                            .await;
                        return;
                    }
                }
            }
            let code = engine.exec_exit_code(&exec_id).await;
            let stderr = String::from_utf8_lossy(&stderr).trim().to_string();
            let stderr = if stderr.is_empty() {
                String::new()
            } else {
                format!("; its error output:\n{stderr}")
            };
            let failure = match code {
                Ok(Some(0)) if bytes > 0 => None,
                Ok(Some(0)) => Some(format!("`{tool}` wrote nothing{stderr}")),
                Ok(Some(c)) => Some(format!("`{tool}` exited with code {c}{stderr}")),
                Ok(None) => Some(format!("`{tool}` did not report an exit code{stderr}")),
                Err(e) => Some(format!("cannot tell whether `{tool}` succeeded: {e}")),
            };
            if let Some(f) = failure {
                let _ = tx.send(Err(io::Error::other(f))).await;
            }
        });
        Ok(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }

    /// Kills a command started by exec that is still running, with its child processes, and says what
    /// happened. Needs the engine on this machine: the engine reports the command's host process id, and
    /// `/proc` maps it (and its children) to process ids inside the container, which `kill` is run with.
    async fn kill_exec(&self, container: &str, exec_id: &str) -> String {
        let pid = match self.docker.inspect_exec(exec_id).await {
            Ok(i) if i.running == Some(true) => i.pid,
            Ok(_) => return "it had ended by then".to_string(),
            Err(e) => return format!("it could not be killed: {}", describe(&e)),
        };
        let Some(pid) = pid.and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 0) else {
            return format!(
                "it could not be killed (the engine gave no process id); it may still be running in container `{}`",
                short(container)
            );
        };
        let init = match self.docker.inspect_container(container, None).await {
            Ok(c) => c
                .state
                .and_then(|s| s.pid)
                .and_then(|p| u32::try_from(p).ok()),
            Err(_) => None,
        };
        let inner = match (self.is_local(), init) {
            (true, Some(init)) => container_pids(pid, init),
            _ => Vec::new(),
        };
        if inner.is_empty() {
            return format!(
                "it could not be killed (its processes are not visible from this machine); it may still be running in container `{}`",
                short(container)
            );
        }
        let mut kill = vec!["kill".to_string(), "-KILL".to_string()];
        kill.extend(inner.iter().map(u32::to_string));
        match self
            .exec_capture(container, &kill, &[], None, Some(Duration::from_secs(10)))
            .await
        {
            Ok(o) if o.success() => "it was killed".to_string(),
            Ok(o) => format!(
                "killing it failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("killing it failed: {e}"),
        }
    }
}

/// The process ids inside its container of host process `pid` and its descendants, children first;
/// empty when `/proc` does not show `pid` in the pid namespace of the container's first process `init`
/// (an engine in a virtual machine reports ids of another kernel).
fn container_pids(pid: u32, init: u32) -> Vec<u32> {
    let status = |p: u32| std::fs::read_to_string(format!("/proc/{p}/status")).ok();
    let field = |text: &str, name: &str| -> Vec<u32> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| {
                v.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let Some(top) = status(pid) else {
        return Vec::new();
    };
    let namespace = |p: u32| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    let same = matches!((namespace(pid), namespace(init)), (Some(a), Some(b)) if a == b);
    if field(&top, "NSpid:").len() < 2 || !same {
        return Vec::new();
    }
    let mut all: Vec<(u32, u32, u32)> = Vec::new(); // (pid, ppid, inner pid)
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(text) = status(p) {
                let ppid = field(&text, "PPid:").first().copied().unwrap_or(0);
                if let Some(inner) = field(&text, "NSpid:").last().copied() {
                    all.push((p, ppid, inner));
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        if let Some(&(_, _, inner)) = all.iter().find(|(q, _, _)| *q == p) {
            out.insert(0, inner);
        }
        todo.extend(all.iter().filter(|(_, pp, _)| *pp == p).map(|(q, _, _)| *q));
    }
    out
}
