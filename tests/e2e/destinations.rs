//! Destinations against real servers: an S3-compatible server (`moto_server`, started here on a free
//! loopback port) and OpenSSH's `sshd` (started here with its own config, host key and authorised key).
//! Objects and files are checked through the servers themselves (boto3 against moto; the SFTP directory on
//! disk), never through our own reader alone; faults (an unreachable endpoint, missing credentials, a
//! connection cut mid-upload, Ctrl-C) must leave the local file complete, nothing under a final name, no
//! multipart upload open, and exit 1 (130 for Ctrl-C).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::Digest as _;

use crate::restore::{PROJECT, backups_in, exec_db, tree_digest, up_with_data};
use crate::support::{Ran, SmallTmpfs, TestEnv};

const PGDATA: &str = "/var/lib/postgresql/data";
pub(crate) const KEY_ID: &str = "AKIAPERSISTTEST";
pub(crate) const SECRET: &str = "persist-test-secret-never-printed";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `moto_server` on a free loopback port, killed on drop.
pub(crate) struct S3Server {
    child: Child,
    port: u16,
}

impl S3Server {
    pub(crate) fn start() -> S3Server {
        S3Server::start_checking_keys(None)
    }

    /// With `Some(n)`, the server checks credentials after its first `n` requests (moto's
    /// `INITIAL_NO_AUTH_ACTION_COUNT`): the test's keys are then unknown to it, as a revoked key is.
    pub(crate) fn start_checking_keys(after: Option<u32>) -> S3Server {
        S3Server::start_with(after, None)
    }

    /// With its storage in `storage`: moto keeps every object and part of more than ≈5 MiB in a temporary
    /// file (Python's `tempfile`, `TMPDIR`), so a small file system there is a server whose storage is
    /// full, as a bucket over its quota refuses what is sent to it.
    pub(crate) fn start_with_storage(storage: &Path) -> S3Server {
        S3Server::start_with(None, Some(storage))
    }

    fn start_with(after: Option<u32>, storage: Option<&Path>) -> S3Server {
        let port = free_port();
        let mut cmd = Command::new("moto_server");
        if let Some(n) = after {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        if let Some(dir) = storage {
            cmd.env("TMPDIR", dir);
        }
        let mut child = cmd
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (PyPI `moto[server]`) must be installed: scripts/test.sh and .ci/run install it");
        wait_for_port(port, "moto_server", &mut child);
        S3Server { child, port }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs a boto3 snippet against the server; `s3` is the client, `B` the bucket. Prints what it returns.
    pub(crate) fn boto(&self, bucket: &str, code: &str) -> String {
        boto_at(&self.endpoint(), bucket, code)
    }

    pub(crate) fn create_bucket(&self, bucket: &str) {
        self.boto(bucket, "s3.create_bucket(Bucket=B)");
    }

    /// Keys in the bucket, sorted.
    pub(crate) fn keys(&self, bucket: &str) -> Vec<String> {
        let out = self.boto(
            bucket,
            "r = s3.list_objects_v2(Bucket=B)\nprint('\\n'.join(sorted(o['Key'] for o in r.get('Contents', []))))",
        );
        out.lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Multipart uploads still open (parts that would be billed).
    fn open_uploads(&self, bucket: &str) -> usize {
        self.boto(
            bucket,
            "print(len(s3.list_multipart_uploads(Bucket=B).get('Uploads', [])))",
        )
        .trim()
        .parse()
        .unwrap()
    }

    fn object(&self, bucket: &str, key: &str) -> Vec<u8> {
        let hex = self.boto(
            bucket,
            &format!("print(s3.get_object(Bucket=B, Key={key:?})['Body'].read().hex())"),
        );
        hex::decode(hex.trim()).unwrap()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn boto_at(endpoint: &str, bucket: &str, code: &str) -> String {
    let script = format!(
        "import boto3\ns3 = boto3.client('s3', endpoint_url={endpoint:?}, region_name='us-east-1', aws_access_key_id={KEY_ID:?}, aws_secret_access_key={SECRET:?})\nB = {bucket:?}\n{code}\n"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `docker persist ARGS` with S3 credentials in the environment (never on the command line).
pub(crate) fn persist_s3(env: &TestEnv, args: &[&str]) -> Ran {
    let mut cmd = env.command("docker");
    cmd.env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .arg("persist")
        .args(args);
    env.run(cmd)
}

fn s3_url(server_endpoint: &str, bucket: &str, extra: &str) -> String {
    format!("s3://{bucket}/nightly?endpoint={server_endpoint}&region=us-east-1{extra}")
}

fn assert_no_secret(ran: &Ran) {
    for text in [ran.stdout(), ran.stderr()] {
        assert!(!text.contains(SECRET), "the secret was printed: {text}");
    }
}

#[test]
fn backup_to_s3_lists_verifies_and_restores_from_the_bucket_alone() {
    let s3 = S3Server::start();
    s3.create_bucket("persist");
    let env = TestEnv::new();
    up_with_data(&env);
    let before = tree_digest(&env, PGDATA);
    let url = s3_url(&s3.endpoint(), "persist", "");

    let ran = persist_s3(&env, &["backup", "--to", &url, "--json"]);
    ran.assert_success();
    assert_no_secret(&ran);
    let doc = ran.json();
    let local = PathBuf::from(doc["path"].as_str().unwrap());
    let name = local.file_name().unwrap().to_str().unwrap().to_string();
    let bytes = std::fs::read(&local).unwrap();
    assert_eq!(doc["destinations"][0]["ok"], true, "{doc}");
    assert_eq!(doc["destinations"][0]["sha256"], sha256_hex(&bytes));

    // The server holds the same bytes under the final name, a sha256sum line beside it, and nothing else.
    assert_eq!(
        s3.keys("persist"),
        vec![format!("nightly/{name}"), format!("nightly/{name}.sha256")]
    );
    assert_eq!(s3.object("persist", &format!("nightly/{name}")), bytes);
    assert_eq!(
        String::from_utf8(s3.object("persist", &format!("nightly/{name}.sha256"))).unwrap(),
        format!("{}  {name}\n", sha256_hex(&bytes))
    );
    assert_eq!(s3.open_uploads("persist"), 0);

    // The local copy goes; the bucket alone lists, verifies and restores.
    std::fs::remove_file(&local).unwrap();
    let listed = persist_s3(&env, &["backups", "--from", &url, "--json"]);
    listed.assert_success();
    let listed = listed.json();
    assert_eq!(listed["backups"].as_array().unwrap().len(), 1, "{listed}");
    assert!(
        listed["backups"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with(&name)
    );
    persist_s3(&env, &["verify", "--from", &url]).assert_success();

    exec_db(
        &env,
        "rm -rf \"$1\"/café \"$1\"/random.bin; echo changed > \"$1\"/new",
        PGDATA,
    );
    assert_ne!(tree_digest(&env, PGDATA), before);
    persist_s3(&env, &["restore", "--from", &url, &name, "--yes"]).assert_success();
    assert_eq!(tree_digest(&env, PGDATA), before);
    // The safety copy of the replaced data is local, as for any restore.
    assert!(
        backups_in(&env.project_dir.join("backups"))
            .iter()
            .any(|p| p.to_string_lossy().contains("pre-restore"))
    );
}

#[test]
fn named_s3_destination_with_a_profile_and_file_variables_and_push_sends_only_once() {
    let s3 = S3Server::start();
    s3.create_bucket("offsite");
    let env = TestEnv::new();
    env.write_project(
        &format!(
            r#"
services:
  db:
    image: postgres:16
    volumes:
      - dbdata:/var/lib/postgresql/data
volumes:
  dbdata:
    labels:
      persist.test.run: "{{{{RUN}}}}"
x-persist:
  destinations:
    offsite:
      url: s3://offsite/app
      endpoint: {}
      region: us-east-1
      profile: backup
"#,
            s3.endpoint()
        ),
        None,
    );
    std::fs::create_dir_all(env.home.join(".aws")).unwrap();
    std::fs::write(
        env.home.join(".aws/credentials"),
        format!("[backup]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    env.compose_v2(["up", "-d"]).assert_success();
    exec_db(&env, "echo hello > \"$1\"/f", PGDATA);

    let ran = env.persist(["backup", "--json"]);
    ran.assert_success();
    let local = PathBuf::from(ran.json()["path"].as_str().unwrap().to_string());
    let name = local.file_name().unwrap().to_str().unwrap().to_string();
    // Nothing is `default: true`: the backup stayed local.
    assert!(s3.keys("offsite").is_empty());

    let pushed = env.persist(["push", &name, "--to", "offsite", "--json"]);
    pushed.assert_success();
    assert_no_secret(&pushed);
    assert_eq!(pushed.json()["destinations"][0]["already_there"], false);
    assert_eq!(
        s3.object("offsite", &format!("app/{name}")),
        std::fs::read(&local).unwrap()
    );
    let again = env.persist(["push", &name, "--to", "offsite", "--json"]);
    again.assert_success();
    assert_eq!(again.json()["destinations"][0]["already_there"], true);

    // `_FILE` variables instead of the profile.
    let key_file = env.home.join("secret");
    std::fs::write(&key_file, format!("{SECRET}\n")).unwrap();
    let mut cmd = env.command("docker");
    cmd.env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY_FILE", &key_file)
        .args([
            "persist",
            "backups",
            "--from",
            &s3_url(&s3.endpoint(), "offsite", "").replace("/nightly", "/app"),
            "--json",
        ]);
    let listed = env.run(cmd);
    listed.assert_success();
    assert_eq!(listed.json()["backups"].as_array().unwrap().len(), 1);

    let d = env.persist(["destinations", "--json"]);
    d.assert_success();
    let d = d.json();
    assert_eq!(d["destinations"][0]["name"], "local");
    assert_eq!(d["destinations"][1]["name"], "offsite");
    assert_eq!(d["destinations"][1]["health"]["writable"], true, "{d}");
    // The probe is gone again.
    assert_eq!(s3.keys("offsite").len(), 2);
}

#[test]
fn unreachable_endpoint_missing_credentials_and_missing_bucket_fail_clearly_and_keep_the_local_file()
 {
    let s3 = S3Server::start();
    let env = TestEnv::new();
    env.write_project(PROJECT, None);
    std::fs::create_dir_all(env.project_dir.join("uploads")).unwrap();
    env.compose_v2(["up", "-d"]).assert_success();
    exec_db(&env, "echo hello > \"$1\"/f", PGDATA);
    let closed = format!("http://127.0.0.1:{}", free_port());

    for (url, with_keys, says) in [
        (s3_url(&closed, "persist", ""), true, "s3://persist/nightly"),
        (
            s3_url(&s3.endpoint(), "persist", ""),
            false,
            "no credentials",
        ),
        (
            s3_url(&s3.endpoint(), "no-such-bucket", ""),
            true,
            "s3://no-such-bucket/nightly",
        ),
    ] {
        let started = Instant::now();
        let ran = if with_keys {
            persist_s3(&env, &["backup", "--to", &url, "--json"])
        } else {
            env.persist(["backup", "--to", &url, "--json"])
        };
        ran.assert_code(1);
        assert_no_secret(&ran);
        ran.assert_stderr_contains(says);
        ran.assert_stderr_contains("is complete and kept");
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "took {:?}",
            started.elapsed()
        );
        let doc = ran.json();
        let local = PathBuf::from(doc["path"].as_str().unwrap());
        assert_eq!(doc["destinations"][0]["ok"], false);
        // The local file is a complete, verifiable backup.
        env.persist(["verify", local.to_str().unwrap()])
            .assert_success();
        // The service runs again.
        let ps = env.compose_v2(["ps", "--status", "running", "-q", "db"]);
        assert!(!ps.stdout().trim().is_empty(), "db is not running");
    }
    // A bad URL is a usage error before anything happens.
    env.persist(["backup", "--to", "nowhere"]).assert_code(2);
}

/// After a `backup --to … --json` whose one destination failed: the destination is reported as failed and
/// the local file holds more than `more_than` bytes and verifies.
fn assert_kept_locally(env: &TestEnv, ran: &Ran, more_than: u64) {
    let doc = ran.json();
    assert_eq!(doc["destinations"][0]["ok"], false, "{doc}");
    let local = PathBuf::from(doc["path"].as_str().unwrap());
    assert!(std::fs::metadata(&local).unwrap().len() > more_than);
    env.persist(["verify", local.to_str().unwrap()])
        .assert_success();
}

/// The project up, with bucket `persist` of `s3` as its destination `offsite`.
fn up_with_offsite(s3: &S3Server) -> TestEnv {
    s3.create_bucket("persist");
    let env = TestEnv::new();
    let url = s3_url(&s3.endpoint(), "persist", "");
    env.write_project(
        &format!("{PROJECT}x-persist:\n  destinations:\n    offsite:\n      url: \"{url}\"\n"),
        None,
    );
    std::fs::create_dir_all(env.project_dir.join("uploads")).unwrap();
    env.compose_v2(["up", "-d"]).assert_success();
    env
}

/// Keys the server does not accept (a revoked or mistyped key): `backup --to`, `backups --from` and
/// `destinations` each say that the server refused the credentials, with S3's code and no raw XML or
/// request line, the local file is complete and kept, the service runs again, and nothing is stored.
#[test]
fn credentials_the_server_refuses_are_said_plainly_and_keep_the_local_file() {
    let s3 = S3Server::start_checking_keys(Some(1));
    let env = up_with_offsite(&s3);
    exec_db(&env, "echo hello > \"$1\"/f", PGDATA);
    let refused = "the server refused the credentials (HTTP 403 InvalidAccessKeyId";

    let ran = persist_s3(&env, &["backup", "--to", "offsite", "--json"]);
    ran.assert_code(1);
    assert_no_secret(&ran);
    // Its first request is a HEAD, whose answer has no body to say which of S3's codes it is.
    ran.assert_stderr_contains("the server refused the credentials or what they may do (HTTP 403)")
        .assert_stderr_contains("check AWS_ACCESS_KEY_ID")
        .assert_stderr_contains("`offsite`")
        .assert_stderr_contains("is complete and kept");
    assert!(!ran.stderr().contains("<?xml"), "{ran}");
    let doc = ran.json();
    assert_eq!(doc["destinations"][0]["ok"], false, "{doc}");
    let local = PathBuf::from(doc["path"].as_str().unwrap());
    env.persist(["verify", local.to_str().unwrap()])
        .assert_success();
    let ps = env.compose_v2(["ps", "--status", "running", "-q", "db"]);
    assert!(!ps.stdout().trim().is_empty(), "db is not running");

    let listed = persist_s3(&env, &["backups", "--from", "offsite"]);
    listed.assert_code(1).assert_stderr_contains(refused);
    assert!(!listed.stderr().contains("<?xml"), "{listed}");
    let health = persist_s3(&env, &["destinations", "--json"]);
    let d = health.json();
    assert_eq!(d["destinations"][1]["name"], "offsite", "{d}");
    assert_eq!(d["destinations"][1]["health"]["writable"], false, "{d}");
    let error = d["destinations"][1]["health"]["error"].as_str().unwrap();
    assert!(error.starts_with(refused), "{error}");
    assert_no_secret(&health);
}

/// A bucket whose server has no room left (its storage a full 2 MiB file system) refuses the parts of
/// `backup --to`: the error names the destination and says that the server failed, the local
/// file is complete and kept, the multipart upload is aborted (no parts left to bill), no object is under
/// the backup's name, and the service runs again.
#[test]
fn a_server_without_room_for_the_backup_leaves_nothing_in_the_bucket() {
    let storage = tempfile::tempdir().unwrap();
    let full = SmallTmpfs::new(&storage.path().join("storage"));
    let s3 = S3Server::start_with_storage(&full.0);
    let env = up_with_offsite(&s3);
    // Several parts' worth, incompressible: more than the server's storage holds.
    exec_db(
        &env,
        "head -c 12582912 /dev/urandom > \"$1\"/big.bin",
        PGDATA,
    );

    let ran = persist_s3(&env, &["backup", "--to", "offsite", "--json"]);
    ran.assert_code(1)
        .assert_stderr_contains("`offsite`")
        .assert_stderr_contains("the server failed (HTTP 500): it may be out of storage")
        .assert_stderr_contains("is complete and kept");
    assert_no_secret(&ran);
    assert!(!ran.stderr().contains("<!doctype"), "{ran}");
    assert_kept_locally(&env, &ran, 12 << 20);
    let keys = s3.keys("persist");
    assert!(
        keys.iter().all(|k| !k.ends_with(".tar")),
        "a backup is in the bucket: {keys:?}"
    );
    assert_eq!(s3.open_uploads("persist"), 0, "the upload was left open");
    let ps = env.compose_v2(["ps", "--status", "running", "-q", "db"]);
    assert!(!ps.stdout().trim().is_empty(), "db is not running");
}

/// A TCP proxy to `upstream` that forwards at `rate` bytes/s and, with `cut_after`, drops every connection
/// once that many bytes went upstream and refuses new ones.
struct Proxy {
    port: u16,
    dead: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: u16, rate: u64, cut_after: Option<u64>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let dead = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let d = dead.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if d.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (d1, sent1) = (d.clone(), sent.clone());
                std::thread::spawn(move || pump(client, server, rate, cut_after, d1, sent1));
                let d2 = d.clone();
                std::thread::spawn(move || pump(s2, c2, u64::MAX, None, d2, Arc::default()));
            }
        });
        Proxy { port, dead }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.dead.store(true, Ordering::SeqCst);
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    rate: u64,
    cut: Option<u64>,
    dead: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    from.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    loop {
        if dead.load(Ordering::SeqCst) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => break,
        };
        let total = sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
        if cut.is_some_and(|c| total > c) {
            dead.store(true, Ordering::SeqCst);
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if rate != u64::MAX {
            std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// A project whose backup is large enough for several 5 MiB parts (random data does not compress).
fn up_with_big_data(env: &TestEnv) {
    env.write_project(PROJECT, None);
    std::fs::create_dir_all(env.project_dir.join("uploads")).unwrap();
    env.compose_v2(["up", "-d"]).assert_success();
    exec_db(env, "head -c 16000000 /dev/urandom > \"$1\"/big", PGDATA);
}

#[test]
fn network_cut_mid_upload_leaves_no_object_and_the_local_file_complete() {
    let s3 = S3Server::start();
    s3.create_bucket("persist");
    let proxy = Proxy::start(s3.port, u64::MAX, Some(7 << 20));
    let env = TestEnv::new();
    up_with_big_data(&env);
    let url = s3_url(
        &format!("http://127.0.0.1:{}", proxy.port),
        "persist",
        "&part_size=5MiB",
    );
    let ran = persist_s3(&env, &["backup", "--to", &url, "--json"]);
    ran.assert_code(1);
    ran.assert_stderr_contains("s3://persist/nightly");
    let local = PathBuf::from(ran.json()["path"].as_str().unwrap().to_string());
    env.persist(["verify", local.to_str().unwrap()])
        .assert_success();
    // Through the server directly: nothing under a final name.
    assert!(s3.keys("persist").is_empty(), "{:?}", s3.keys("persist"));
    // The cut connection could not carry the abort; `push` sends it again once the network is back.
    let url = s3_url(&s3.endpoint(), "persist", "&part_size=5MiB");
    persist_s3(&env, &["push", local.to_str().unwrap(), "--to", &url]).assert_success();
    let name = local.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        s3.object("persist", &format!("nightly/{name}")),
        std::fs::read(&local).unwrap()
    );
}

#[test]
fn ctrl_c_mid_upload_aborts_the_multipart_upload() {
    let s3 = S3Server::start();
    s3.create_bucket("persist");
    // 1 MB/s: the ≈16 MB upload takes ≈16 s, long enough to interrupt.
    let proxy = Proxy::start(s3.port, 1_000_000, None);
    let env = TestEnv::new();
    up_with_big_data(&env);
    let url = s3_url(
        &format!("http://127.0.0.1:{}", proxy.port),
        "persist",
        "&part_size=5MiB",
    );
    let mut cmd = env.command("docker");
    cmd.env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .args(["persist", "backup", "--to", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    // Wait for the local file, then for the upload to be under way.
    let dir = env.project_dir.join("backups");
    let deadline = Instant::now() + Duration::from_secs(120);
    while backups_in(&dir).is_empty() {
        assert!(Instant::now() < deadline, "no local backup appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    while s3.open_uploads("persist") == 0 {
        assert!(Instant::now() < deadline, "no upload under way");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1000));
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
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
        s3.open_uploads("persist"),
        0,
        "the multipart upload was left open"
    );
    assert!(s3.keys("persist").is_empty());
    let local = &backups_in(&dir)[0];
    env.persist(["verify", local.to_str().unwrap()])
        .assert_success();
    let ps = env.compose_v2(["ps", "--status", "running", "-q", "db"]);
    assert!(!ps.stdout().trim().is_empty(), "db is not running");
}

/// An `sshd` on a free loopback port with its own host key and one authorised key; its SFTP root is the
/// machine's file system, so files are checked on disk.
pub(crate) struct SshServer {
    child: Child,
    port: u16,
    pub(crate) dir: tempfile::TempDir,
}

impl SshServer {
    pub(crate) fn start() -> SshServer {
        SshServer::start_with("internal-sftp")
    }

    /// With `sftp` as the SFTP subsystem's command (`internal-sftp -P opendir` refuses listings).
    pub(crate) fn start_with(sftp: &str) -> SshServer {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let keygen = |path: &Path| {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .status()
                .unwrap();
            assert!(ok.success());
        };
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let port = free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\nUsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nSubsystem sftp {sftp}\n",
                d = d.display()
            ),
        )
        .unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("sshd (Debian `openssh-server`) must be installed: .ci/run installs it");
        let mut child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, "sshd", &mut child);
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_pub}"),
        )
        .unwrap();
        SshServer { child, port, dir }
    }

    /// The ssh command line the plugin runs (`DOCKER_PERSIST_SSH`): our key and known_hosts, strict.
    pub(crate) fn ssh_command(&self, known_hosts: &Path) -> String {
        format!(
            "ssh -F none -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentityFile={} -o IdentitiesOnly=yes",
            known_hosts.display(),
            self.dir.path().join("client_key").display()
        )
    }

    pub(crate) fn url(&self, remote: &Path) -> String {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        format!("sftp://{user}@127.0.0.1:{}{}", self.port, remote.display())
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn persist_ssh(env: &TestEnv, ssh: &str, args: &[&str]) -> Ran {
    let mut cmd = env.command("docker");
    cmd.env("DOCKER_PERSIST_SSH", ssh).arg("persist").args(args);
    env.run(cmd)
}

/// An SFTP server whose disk fills up mid-upload: `backup --to` says there is no space left on the
/// server, names the destination, keeps the local file complete, leaves neither a `.partial` nor a backup
/// there, and the service runs again.
#[test]
fn a_full_disk_at_an_sftp_destination_is_said_and_leaves_nothing_there() {
    let sshd = SshServer::start();
    let remote = tempfile::tempdir().unwrap();
    let disk = SmallTmpfs::new(&remote.path().join("disk"));
    let url = sshd.url(&disk.0);
    let ssh = sshd.ssh_command(&sshd.dir.path().join("known_hosts"));
    let env = TestEnv::new();
    up_with_data(&env);
    // More than the disk holds, and incompressible.
    exec_db(
        &env,
        "head -c 4194304 /dev/urandom > \"$1\"/big.bin",
        PGDATA,
    );

    let ran = persist_ssh(&env, &ssh, &["backup", "--to", &url, "--json"]);
    ran.assert_code(1)
        .assert_stderr_contains("no space left on the server")
        .assert_stderr_contains(&url)
        .assert_stderr_contains("is complete and kept");
    assert_kept_locally(&env, &ran, 4 << 20);
    let left: Vec<_> = std::fs::read_dir(&disk.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left on the server: {left:?}");
    let ps = env.compose_v2(["ps", "--status", "running", "-q", "db"]);
    assert!(!ps.stdout().trim().is_empty(), "db is not running");
}

#[test]
fn backup_to_sftp_lists_and_restores_and_a_changed_host_key_is_refused() {
    let sshd = SshServer::start();
    let remote = tempfile::tempdir().unwrap();
    let target = remote.path().join("persist/app");
    let url = sshd.url(&target);
    let ssh = sshd.ssh_command(&sshd.dir.path().join("known_hosts"));
    let env = TestEnv::new();
    up_with_data(&env);
    let before = tree_digest(&env, PGDATA);

    let ran = persist_ssh(&env, &ssh, &["backup", "--to", &url, "--json"]);
    ran.assert_success();
    let local = PathBuf::from(ran.json()["path"].as_str().unwrap().to_string());
    let name = local.file_name().unwrap().to_str().unwrap().to_string();
    let bytes = std::fs::read(&local).unwrap();
    // On the server's disk: the same bytes, the sha256sum line, no `.partial`.
    assert_eq!(std::fs::read(target.join(&name)).unwrap(), bytes);
    assert_eq!(
        std::fs::read_to_string(target.join(format!("{name}.sha256"))).unwrap(),
        format!("{}  {name}\n", sha256_hex(&bytes))
    );
    let mut names: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec![name.clone(), format!("{name}.sha256")]);

    std::fs::remove_file(&local).unwrap();
    let listed = persist_ssh(&env, &ssh, &["backups", "--from", &url, "--json"]);
    listed.assert_success();
    assert_eq!(listed.json()["backups"].as_array().unwrap().len(), 1);
    exec_db(&env, "echo changed > \"$1\"/new", PGDATA);
    persist_ssh(&env, &ssh, &["restore", "--from", &url, "--yes"]).assert_success();
    assert_eq!(tree_digest(&env, PGDATA), before);
    persist_ssh(&env, &ssh, &["verify", "--from", &url, &name]).assert_success();

    // Another host key for that address: ssh refuses, and so do we, naming the destination.
    let other = sshd.dir.path().join("other_key");
    Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    let wrong = sshd.dir.path().join("wrong_known_hosts");
    std::fs::write(
        &wrong,
        format!(
            "[127.0.0.1]:{} {}",
            sshd.port,
            std::fs::read_to_string(other.with_extension("pub")).unwrap()
        ),
    )
    .unwrap();
    let ran = persist_ssh(&env, &sshd.ssh_command(&wrong), &["backup", "--to", &url]);
    ran.assert_code(1);
    ran.assert_stderr_contains(&url);
    let err = ran.stderr().to_lowercase();
    assert!(
        err.contains("host key") || err.contains("host identification"),
        "{err}"
    );
    let files = std::fs::read_dir(&target).unwrap().count();
    assert_eq!(files, 2, "nothing new on the server");
}
