//! `backup --to` writes the local file and each destination in one pass: the upload runs while the backup
//! is written, not after it. Checked against a real S3 server (`moto_server`) through a counting TCP proxy
//! on loopback: how many bytes had gone to the server when the local file got its final name, what the
//! server holds afterwards, and that an interrupted backup leaves no multipart upload open. A slow
//! destination must not keep the services of a stopped volume waiting.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::destinations::{KEY_ID, S3Server, SECRET};
use crate::restore::{PROJECT, backups_in, exec_db};
use crate::support::TestEnv;

const PGDATA: &str = "/var/lib/postgresql/data";

/// A loopback TCP proxy to `upstream` that counts the bytes sent upstream and forwards them at most at
/// `rate` bytes/s.
struct CountingProxy {
    port: u16,
    upstream_bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl CountingProxy {
    fn start(upstream: u16, rate: Option<u64>) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream_bytes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (upstream_bytes.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let count = count.clone();
                std::thread::spawn(move || forward(client, server, rate, Some(count)));
                std::thread::spawn(move || forward(s2, c2, None, None));
            }
        });
        CountingProxy {
            port,
            upstream_bytes,
            stop,
        }
    }

    fn sent(&self) -> u64 {
        self.upstream_bytes.load(Ordering::SeqCst)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn forward(
    mut from: TcpStream,
    mut to: TcpStream,
    rate: Option<u64>,
    count: Option<Arc<AtomicU64>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(c) = &count {
            c.fetch_add(n as u64, Ordering::SeqCst);
        }
        if let Some(rate) = rate {
            std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

fn port_of(endpoint: &str) -> u16 {
    endpoint.rsplit(':').next().unwrap().parse().unwrap()
}

/// 16 MB of random bytes in the database's volume: four 5 MiB parts, and slow to compress at level 19.
fn up_with_random_data(env: &TestEnv) {
    env.write_project(PROJECT, None);
    std::fs::create_dir_all(env.project_dir.join("uploads")).unwrap();
    env.compose_v2(["up", "-d"]).assert_success();
    exec_db(env, "head -c 16000000 /dev/urandom > \"$1\"/big", PGDATA);
}

/// An S3 server with the bucket `persist`, a proxy to it, a project with random data, and the URL of
/// `s3://persist/nightly` through the proxy (5 MiB parts).
fn set_up(rate: Option<u64>) -> (S3Server, CountingProxy, TestEnv, String) {
    let s3 = S3Server::start();
    s3.create_bucket("persist");
    let proxy = CountingProxy::start(port_of(&s3.endpoint()), rate);
    let env = TestEnv::new();
    up_with_random_data(&env);
    let url = format!(
        "s3://persist/nightly?endpoint=http://127.0.0.1:{}&region=us-east-1&part_size=5MiB",
        proxy.port
    );
    (s3, proxy, env, url)
}

/// The `--json` document of a command that must succeed.
fn succeeded(child: std::process::Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn open_uploads(s3: &S3Server, bucket: &str) -> usize {
    s3.boto(
        bucket,
        "print(len(s3.list_multipart_uploads(Bucket=B).get('Uploads', [])))",
    )
    .trim()
    .parse()
    .unwrap()
}

fn object(s3: &S3Server, bucket: &str, key: &str) -> Vec<u8> {
    let hex = s3.boto(
        bucket,
        &format!("print(s3.get_object(Bucket=B, Key={key:?})['Body'].read().hex())"),
    );
    hex::decode(hex.trim()).unwrap()
}

fn backup_command(env: &TestEnv, args: &[&str]) -> Command {
    let mut cmd = env.command("docker");
    cmd.env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .arg("persist")
        .arg("backup")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn partials_in(dir: &Path) -> Vec<PathBuf> {
    let all: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    all.into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".partial"))
        .collect()
}

fn db_running(env: &TestEnv) -> bool {
    !env.compose_v2(["ps", "--status", "running", "-q", "db"])
        .stdout()
        .trim()
        .is_empty()
}

#[test]
fn the_upload_runs_while_the_backup_is_written_and_the_object_is_the_local_file() {
    let (s3, proxy, env, url) = set_up(None);
    // Level 19 on one thread: the 16 MB take seconds to compress, while the parts can leave at once.
    let child = backup_command(
        &env,
        &["--to", &url, "--level", "19", "--threads", "0", "--json"],
    )
    .spawn()
    .unwrap();
    let dir = env.project_dir.join("backups");
    let deadline = Instant::now() + Duration::from_secs(300);
    while backups_in(&dir).is_empty() {
        assert!(Instant::now() < deadline, "no local backup appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    // When the local file got its final name, the parts after the first (which holds the volume's header,
    // rewritten last) had gone to the server already.
    let sent_when_local_done = proxy.sent();
    let doc = succeeded(child);
    assert!(
        sent_when_local_done >= 8 << 20,
        "only {sent_when_local_done} bytes had been sent when the local file was complete"
    );
    let local = PathBuf::from(doc["path"].as_str().unwrap());
    let name = local.file_name().unwrap().to_str().unwrap().to_string();
    let bytes = std::fs::read(&local).unwrap();
    assert_eq!(object(&s3, "persist", &format!("nightly/{name}")), bytes);
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    assert_eq!(doc["destinations"][0]["sha256"], sha.as_str());
    assert_eq!(
        String::from_utf8(object(&s3, "persist", &format!("nightly/{name}.sha256"))).unwrap(),
        format!("{sha}  {name}\n")
    );
    assert_eq!(open_uploads(&s3, "persist"), 0);
    env.persist(["verify", local.to_str().unwrap()])
        .assert_success();
}

#[test]
fn ctrl_c_while_the_backup_is_written_aborts_the_upload_and_leaves_no_file() {
    let (s3, proxy, env, url) = set_up(None);
    let child = backup_command(&env, &["--to", &url, "--level", "19", "--threads", "0"])
        .spawn()
        .unwrap();
    let dir = env.project_dir.join("backups");
    // Interrupt once a part is on its way and the backup is still being written.
    let deadline = Instant::now() + Duration::from_secs(300);
    while proxy.sent() < 6 << 20 {
        assert!(Instant::now() < deadline, "no part went to the server");
        assert!(
            backups_in(&dir).is_empty(),
            "the backup ended before a part was sent"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(backups_in(&dir).is_empty());
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        open_uploads(&s3, "persist"),
        0,
        "the multipart upload was left open; the command said:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s3.keys("persist").is_empty(), "{:?}", s3.keys("persist"));
    // No file that looks like a backup, no `.partial`, and the database runs again.
    assert!(backups_in(&dir).is_empty(), "{:?}", backups_in(&dir));
    assert!(partials_in(&dir).is_empty(), "{:?}", partials_in(&dir));
    assert!(db_running(&env), "db is not running");
}

#[test]
fn a_slow_destination_does_not_keep_the_services_stopped_and_every_copy_is_the_local_file() {
    // 1.5 MB/s: the upload takes ≈11 s, the backup itself about one.
    let (s3, _proxy, env, url) = set_up(Some(1_500_000));
    let usb = env.project_dir.join("usb");
    let child = backup_command(
        &env,
        &["--to", &url, "--to", usb.to_str().unwrap(), "--json"],
    )
    .spawn()
    .unwrap();
    let mut child = child;
    let dir = env.project_dir.join("backups");
    let deadline = Instant::now() + Duration::from_secs(300);
    while backups_in(&dir).is_empty() {
        assert!(Instant::now() < deadline, "no local backup appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The local file is complete, the upload is not: the database already runs again.
    let mut seen_running_while_uploading = false;
    while child.try_wait().unwrap().is_none() {
        if db_running(&env) && child.try_wait().unwrap().is_none() {
            seen_running_while_uploading = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let doc = succeeded(child);
    assert!(
        seen_running_while_uploading,
        "the database was not running again before the upload ended"
    );
    let local = PathBuf::from(doc["path"].as_str().unwrap());
    let name = local.file_name().unwrap().to_str().unwrap().to_string();
    let bytes = std::fs::read(&local).unwrap();
    assert_eq!(object(&s3, "persist", &format!("nightly/{name}")), bytes);
    assert_eq!(std::fs::read(usb.join(&name)).unwrap(), bytes);
    assert!(partials_in(&usb).is_empty());
    assert_eq!(open_uploads(&s3, "persist"), 0);
}

/// The records of unfinished uploads in the test's state directory.
fn upload_records(env: &TestEnv) -> Vec<PathBuf> {
    let dir = env.home.join(".local/state/docker-persist/intents/uploads");
    std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// `kill -9` while a part is on its way: the multipart upload stays open (nothing ran to abort it) and
/// its record says so; the next command (`ls`, which uses no destination) aborts it, says so, and starts
/// the stopped database again; no object, no open upload and no record are left.
#[test]
fn a_backup_killed_mid_upload_leaves_an_upload_the_next_command_aborts() {
    use std::os::unix::process::CommandExt as _;
    let (s3, proxy, env, url) = set_up(Some(4 << 20));
    let mut cmd = env.command(&env.binary);
    cmd.env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .args([
            "persist",
            "backup",
            "--to",
            &url,
            "--level",
            "19",
            "--threads",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while proxy.sent() < 6 << 20 || upload_records(&env).is_empty() {
        assert!(Instant::now() < deadline, "no part went to the server");
        assert!(child.try_wait().unwrap().is_none(), "the backup ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    child.wait().unwrap();
    assert_eq!(open_uploads(&s3, "persist"), 1, "the killed run's upload");
    let record = std::fs::read_to_string(&upload_records(&env)[0]).unwrap();
    assert!(record.contains("\"kind\": \"s3_upload\""), "{record}");
    assert!(!record.contains(SECRET), "{record}");

    let mut next = env.command("docker");
    next.env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .args(["persist", "ls"]);
    let ran = env.run(next);
    ran.assert_success()
        .assert_stderr_contains("was killed while it sent")
        .assert_stderr_contains("unfinished multipart upload is removed");
    assert_eq!(open_uploads(&s3, "persist"), 0, "the upload is still open");
    assert!(s3.keys("persist").is_empty(), "{:?}", s3.keys("persist"));
    assert!(
        upload_records(&env).is_empty(),
        "{:?}",
        upload_records(&env)
    );
    assert!(db_running(&env), "db is not running");
    // A local `.partial` of the killed run is not a backup.
    assert!(backups_in(&env.project_dir.join("backups")).is_empty());
}
