//! `backup`, `backups` and `verify` against real projects, checked without trusting our own reader: the
//! backup file is opened with GNU `tar` and `zstd`, its trees are compared with what the container's own
//! busybox sees, and the data-safety rules (no half-written file that looks like a backup, no helper left
//! behind, services left running) are checked after interruptions and crashes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::Digest as _;

use crate::support::{
    Ran, TestEnv, TreeEntry, tree_digest_in_container, tree_listing_in_container,
};

/// Where the `db` service of the test projects keeps its data.
const PGDATA: &str = "/var/lib/postgresql/data";

/// One database service with one named volume.
const DB_PROJECT: &str = r#"
services:
  db:
    image: postgres:16
    volumes:
      - dbdata:/var/lib/postgresql/data
volumes:
  dbdata:
    labels:
      persist.test.run: "{{RUN}}"
"#;

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

/// A path as `&str` (test paths are UTF-8).
fn utf8(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Runs a bash script on the host (`set -euo pipefail`) with `args` as `$1…`, in the project directory.
pub(crate) fn host_sh(env: &TestEnv, script: &str, args: &[&str]) -> Ran {
    let mut cmd = env.command("bash");
    cmd.env("TZ", "UTC")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .arg("bash")
        .args(args);
    env.run(cmd)
}

/// Runs `sh -c script` inside the container of `service`; asserts it succeeds.
#[track_caller]
pub(crate) fn exec(env: &TestEnv, service: &str, script: &str) -> Ran {
    let container = env.service_container(service);
    let ran = env.docker(["exec", &container, "sh", "-c", script]);
    ran.assert_success();
    ran
}

/// The path a successful `backup` printed as its last line of stdout.
#[track_caller]
pub(crate) fn printed_path(ran: &Ran) -> PathBuf {
    ran.assert_success();
    let lines = ran.stdout_lines();
    PathBuf::from(
        lines
            .last()
            .unwrap_or_else(|| panic!("backup printed no path\n{ran}")),
    )
}

/// A member of the outer tar, as the `tar` crate finds it.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    data_offset: u64,
    size: u64,
}

/// The members of a backup file's outer tar, in file order.
fn outer_members(path: &Path) -> Vec<Member> {
    let file = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut archive = tar::Archive::new(file);
    archive
        .entries_with_seek()
        .expect("the backup file is a tar")
        .map(|entry| {
            let entry = entry.expect("a readable outer tar member");
            Member {
                name: String::from_utf8(entry.path_bytes().into_owned()).expect("UTF-8 member"),
                data_offset: entry.raw_file_position(),
                size: entry.size(),
            }
        })
        .collect()
}

pub(crate) fn member_names(path: &Path) -> Vec<String> {
    outer_members(path).into_iter().map(|m| m.name).collect()
}

/// `manifest.json` of a backup file, read with GNU tar.
#[track_caller]
pub(crate) fn manifest(env: &TestEnv, backup: &Path) -> Value {
    let ran = host_sh(env, r#"tar -xOf "$1" manifest.json"#, &[utf8(backup)]);
    ran.assert_success();
    serde_json::from_slice(&ran.stdout)
        .unwrap_or_else(|e| panic!("manifest.json is not JSON: {e}\n{ran}"))
}

/// The manifest record of volume `key`.
#[track_caller]
fn record<'a>(manifest: &'a Value, key: &str) -> &'a Value {
    crate::support::volume_entry(manifest, key)
}

/// The volume keys of a manifest or of `backup --json`, sorted.
fn keys(doc: &Value) -> BTreeSet<String> {
    doc["volumes"]
        .as_array()
        .expect("volumes is an array")
        .iter()
        .map(|v| v["key"].as_str().expect("key is a string").to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Extracts a volume member with GNU tar and zstd alone into a new temp dir (as root: owners and modes kept).
#[track_caller]
fn extract_member(env: &TestEnv, backup: &Path, member: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    host_sh(
        env,
        r#"tar -xOf "$1" "$2" | zstd -d -q | tar -x --numeric-owner -C "$3""#,
        &[utf8(backup), member, utf8(dir.path())],
    )
    .assert_success();
    dir
}

/// The contents of one file of a volume member, read with GNU tar and zstd alone.
#[track_caller]
fn member_file(env: &TestEnv, backup: &Path, member: &str, file: &str) -> String {
    let ran = host_sh(
        env,
        r#"tar -xOf "$1" "$2" | zstd -d -q | tar -xO "$3""#,
        &[utf8(backup), member, file],
    );
    ran.assert_success();
    ran.stdout()
}

fn sha256_file(path: &Path) -> String {
    let mut file = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut sha = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
    }
    hex::encode(sha.finalize())
}

/// `YYYYMMDDTHHMMSSZ` → `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339_of_stamp(stamp: &str) -> String {
    let b = stamp.as_bytes();
    assert!(
        b.len() == 16
            && b[8] == b'T'
            && b[15] == b'Z'
            && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit),
        "`{stamp}` is not a YYYYMMDDTHHMMSSZ time"
    );
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    )
}

/// Splits `<project>-<stamp>[-<tag>].tar` into stamp and tag; panics on anything else.
#[track_caller]
fn parse_backup_name(project: &str, file_name: &str) -> (String, Option<String>) {
    let rest = file_name
        .strip_prefix(&format!("{project}-"))
        .and_then(|r| r.strip_suffix(".tar"))
        .unwrap_or_else(|| panic!("`{file_name}` is not `{project}-<time>[-<tag>].tar`"));
    let (stamp, tag) = match rest.split_once('-') {
        Some((s, t)) => (s, Some(t.to_string())),
        None => (rest, None),
    };
    rfc3339_of_stamp(stamp);
    (stamp.to_string(), tag)
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Names in a directory, sorted.
pub(crate) fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read {}: {e}", dir.display()),
    };
    names.sort();
    names
}

/// The `backups --json` list of a directory (`None`: the project's default).
#[track_caller]
fn listed_backups(env: &TestEnv, dir: Option<&Path>) -> Vec<Value> {
    let mut args = vec!["backups".to_string(), "--json".to_string()];
    if let Some(dir) = dir {
        args.push("--dir".to_string());
        args.push(dir.display().to_string());
    }
    let ran = env.persist(&args);
    ran.assert_success();
    let json = ran.json();
    assert_eq!(json["schema_version"], 1, "{ran}");
    json["backups"]
        .as_array()
        .unwrap_or_else(|| panic!("backups is not an array\n{ran}"))
        .clone()
}

/// Helper containers (label `persist.helper=true`) that mount `volume`.
fn helpers_mounting(env: &TestEnv, volume: &str) -> Vec<String> {
    let ran = env.docker([
        "ps",
        "--all",
        "--quiet",
        "--filter",
        "label=persist.helper=true",
        "--filter",
        &format!("volume={volume}"),
    ]);
    ran.assert_success();
    ran.stdout_lines()
}

/// `<hostname>:<pid>`: the owner label docker persist puts on the helpers of process `pid`.
fn helper_owner(pid: u32) -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    format!("{}:{pid}", host.trim())
}

/// Helper containers created by process `pid`.
pub(crate) fn helpers_of(env: &TestEnv, pid: u32) -> Vec<String> {
    let ran = env.docker([
        "ps",
        "--all",
        "--quiet",
        "--filter",
        "label=persist.helper=true",
        "--filter",
        &format!("label=persist.helper.owner={}", helper_owner(pid)),
    ]);
    ran.assert_success();
    ran.stdout_lines()
}

/// `State.Running` and `State.StartedAt` of a container.
pub(crate) fn container_state(env: &TestEnv, id: &str) -> String {
    let ran = env.docker([
        "inspect",
        "--format",
        "{{.State.Running}} {{.State.StartedAt}}",
        id,
    ]);
    ran.assert_success();
    ran.stdout().trim().to_string()
}

/// The sandbox's intent records (`~/.local/state/docker-persist/intents`).
pub(crate) fn journal_files(env: &TestEnv) -> Vec<String> {
    dir_names(&env.home.join(".local/state/docker-persist/intents"))
}

/// A container's name, without the leading `/`.
pub(crate) fn container_name(env: &TestEnv, id: &str) -> String {
    let ran = env.docker(["inspect", "--format", "{{.Name}}", id]);
    ran.assert_success();
    ran.stdout().trim().trim_start_matches('/').to_string()
}

/// The plugin binary started in the background, its output going to files under the sandbox's `HOME`.
pub(crate) struct Running {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    command: String,
}

impl Running {
    pub(crate) fn start(env: &TestEnv, name: &str, args: &[&str]) -> Running {
        let stdout = env.home.join(format!("{name}.stdout"));
        let stderr = env.home.join(format!("{name}.stderr"));
        let mut cmd = env.command(&env.binary);
        cmd.args(args)
            .stdout(Stdio::from(fs::File::create(&stdout).expect("stdout file")))
            .stderr(Stdio::from(fs::File::create(&stderr).expect("stderr file")));
        let child = cmd.spawn().expect("start docker-persist");
        Running {
            child,
            stdout,
            stderr,
            command: format!("docker-persist {}", args.join(" ")),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn output(&self) -> String {
        format!(
            "command: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            fs::read_to_string(&self.stdout)
                .unwrap_or_default()
                .trim_end(),
            fs::read_to_string(&self.stderr)
                .unwrap_or_default()
                .trim_end()
        )
    }

    pub(crate) fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    pub(crate) fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Waits for the process to end; kills it and fails after `limit`.
    pub(crate) fn wait(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "still running after {limit:?}; killed it\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the backup is streaming data: its `.partial` exists in `dir` and its helper container
    /// exists. Fails if the process ends first.
    fn wait_until_streaming(&mut self, env: &TestEnv, dir: &Path) {
        let start = Instant::now();
        loop {
            let partial = dir_names(dir).iter().any(|n| n.ends_with(".tar.partial"));
            if partial && !helpers_of(env, self.pid()).is_empty() {
                return;
            }
            if !self.is_running() {
                panic!(
                    "the backup ended before it was streaming data\n{}",
                    self.output()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the backup did not start streaming within 60 s\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// 1. A torture tree, checked with GNU tar, zstd and the container's busybox
// ---------------------------------------------------------------------------------------------------------

/// Builds the torture tree in `$PGDATA` of a running container (busybox sh).
const TORTURE_SCRIPT: &str = r#"set -eu
umask 022
cd /var/lib/postgresql/data
# Owners: the image's postgres user (999) and a pair with no name.
mkdir -p owned/pg
echo 16 > owned/pg/PG_VERSION
chown -R 999:999 owned
echo other > owned/other.txt
chown 1234:5678 owned/other.txt
chmod 0640 owned/other.txt
# Special and restrictive modes.
printf '#!/bin/sh\n' > suid.bin; chmod 4755 suid.bin
mkdir sgid; chmod 2755 sgid; echo inherit > sgid/inherit
mkdir sticky; chmod 1777 sticky; echo t > sticky/t
echo secret > secret; chown 999:999 secret; chmod 0600 secret
echo ro > readonly; chmod 0444 readonly
touch -d '2001-02-03 04:05:06' readonly
# Links: relative, absolute, dangling; three names of one file.
ln -s owned/pg/PG_VERSION rel-link
ln -s /etc/hostname abs-link
ln -s does/not/exist dangling
ln owned/pg/PG_VERSION hard1
ln owned/pg/PG_VERSION hard2
mkfifo pipe
# Empty directories, long, odd and non-ASCII names, a deep path.
mkdir -p empty/a/b empty-top
touch -d '1999-12-31 23:59:59' empty/a
echo long > "long-$(printf 'x%.0s' $(seq 1 141)).txt"
mkdir café
printf 'ñandú\n' > 'café/ñandú – 日本.txt'
printf 'odd\n' > "sp ace & 'quote'.txt"
d=deep; for i in $(seq -w 1 32); do d="$d/d$i"; done
mkdir -p "$d"; echo bottom > "$d/leaf.txt"
# A sparse 64 MiB file with data at both ends, 8 MiB that do not compress, and a 1 GiB file: a random
# MiB repeated, each copy numbered, so that every MiB differs but the backup stays small.
head -c 1000 /dev/urandom > sparse.img
dd if=/dev/urandom of=sparse.img bs=1M count=1 seek=63 conv=notrunc 2>/dev/null
head -c 8388608 /dev/urandom > random.bin
head -c 1048568 /dev/urandom > /tmp/seed
i=0; while [ $i -lt 1024 ]; do printf '%08d' $i; cat /tmp/seed; i=$((i+1)); done > big.bin
rm /tmp/seed
# The data directory itself, as PostgreSQL wants it.
chown 999:999 .
chmod 0700 .
"#;

/// The 150-character file name of the torture tree.
fn long_name() -> String {
    format!("long-{}.txt", "x".repeat(141))
}

/// The path of the deepest file of the torture tree.
fn deep_leaf() -> String {
    let mut p = String::from("deep");
    for i in 1..=32 {
        p.push_str(&format!("/d{i:02}"));
    }
    p.push_str("/leaf.txt");
    p
}

/// One line of `tar -tv --numeric-owner --full-time --quoting-style=literal` (GNU tar).
#[derive(Debug, Clone)]
struct TarLine {
    /// `-` file, `h` hard link, `d`, `l`, `p`, …
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    /// `YYYY-MM-DD HH:MM:SS` in UTC.
    mtime: String,
    /// Symlink target (raw) or hard link target (normalized).
    link: Option<String>,
}

/// `./a/b/` → `a/b`; `./` → `.`.
fn normalize(path: &str) -> String {
    let p = path.strip_prefix("./").unwrap_or(path);
    let p = p.strip_suffix('/').unwrap_or(p);
    if p.is_empty() || p == "." {
        ".".to_string()
    } else {
        p.to_string()
    }
}

/// `-rwsr-x--T` → `0o4750 | 0o1000`.
fn mode_of_ls(perms: &str) -> u32 {
    let c: Vec<char> = perms.chars().collect();
    assert_eq!(c.len(), 10, "bad permissions {perms:?}");
    let mut mode = 0;
    let triplets = [
        (1, 0o400, 0o4000, 's'),
        (4, 0o040, 0o2000, 's'),
        (7, 0o004, 0o1000, 't'),
    ];
    for (at, r, special, letter) in triplets {
        if c[at] == 'r' {
            mode |= r;
        }
        if c[at + 1] == 'w' {
            mode |= r >> 1;
        }
        match c[at + 2] {
            'x' => mode |= r >> 2,
            '-' => {}
            x if x == letter => mode |= (r >> 2) | special,
            x if x == letter.to_ascii_uppercase() => mode |= special,
            x => panic!("bad permissions {perms:?} ({x})"),
        }
    }
    mode
}

fn parse_tar_listing(listing: &str) -> BTreeMap<String, TarLine> {
    let mut out = BTreeMap::new();
    for line in listing.lines() {
        // perms, owner/group, size, date, time, then the name (with ` -> target` or ` link to target`).
        let mut rest = line;
        let mut fields = Vec::new();
        for _ in 0..5 {
            rest = rest.trim_start_matches(' ');
            let end = rest
                .find(' ')
                .unwrap_or_else(|| panic!("bad line {line:?}"));
            fields.push(&rest[..end]);
            rest = &rest[end..];
        }
        let name = rest.strip_prefix(' ').expect("a space before the name");
        let kind = fields[0].chars().next().expect("a type");
        let (name, link) = match kind {
            'l' => {
                let (n, t) = name.split_once(" -> ").expect("a symlink target");
                (n, Some(t.to_string()))
            }
            'h' => {
                let (n, t) = name.split_once(" link to ").expect("a hard link target");
                (n, Some(normalize(t)))
            }
            _ => (name, None),
        };
        let (uid, gid) = fields[1].split_once('/').expect("uid/gid");
        let previous = out.insert(
            normalize(name),
            TarLine {
                kind,
                mode: mode_of_ls(fields[0]),
                uid: uid.parse().expect("numeric uid"),
                gid: gid.parse().expect("numeric gid"),
                size: fields[2].parse().expect("size"),
                mtime: format!("{} {}", fields[3], fields[4]),
                link,
            },
        );
        assert!(previous.is_none(), "`{name}` is in the tar twice");
    }
    out
}

fn utc(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .expect("a valid time")
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Bytes of regular-file content with each hard-linked file counted once (as the manifest counts them).
fn file_bytes(tree: &[TreeEntry]) -> u64 {
    let mut linked = BTreeSet::new();
    tree.iter()
        .filter(|e| e.kind == 'f')
        .filter(|e| e.nlink == 1 || linked.insert((e.content.clone(), e.size)))
        .map(|e| e.size.unwrap_or(0))
        .sum()
}

#[test]
fn backup_of_a_torture_tree_reads_back_exactly_with_tar_and_zstd_alone() {
    let env = TestEnv::new();
    env.write_project(DB_PROJECT, None);
    env.compose_v2(["up", "-d"]).assert_success();
    exec(&env, "db", TORTURE_SCRIPT);

    // The source is what the test means it to be (so that a no-op `chown` cannot make the test vacuous).
    let tree = tree_listing_in_container(&env, "db", PGDATA);
    let by_path: BTreeMap<&str, &TreeEntry> = tree.iter().map(|e| (e.path.as_str(), e)).collect();
    let long = long_name();
    assert_eq!(long.chars().count(), 150);
    let leaf = deep_leaf();
    assert!(leaf.split('/').count() > 30);
    let expect: &[(&str, char, u32, u32, u32)] = &[
        (".", 'd', 0o700, 999, 999),
        ("owned", 'd', 0o755, 999, 999),
        ("owned/pg", 'd', 0o755, 999, 999),
        ("owned/pg/PG_VERSION", 'f', 0o644, 999, 999),
        ("owned/other.txt", 'f', 0o640, 1234, 5678),
        ("suid.bin", 'f', 0o4755, 0, 0),
        ("sgid", 'd', 0o2755, 0, 0),
        ("sticky", 'd', 0o1777, 0, 0),
        ("secret", 'f', 0o600, 999, 999),
        ("readonly", 'f', 0o444, 0, 0),
        ("pipe", 'p', 0o644, 0, 0),
        ("empty/a/b", 'd', 0o755, 0, 0),
        ("empty-top", 'd', 0o755, 0, 0),
        (&long, 'f', 0o644, 0, 0),
        ("café/ñandú – 日本.txt", 'f', 0o644, 0, 0),
        ("sp ace & 'quote'.txt", 'f', 0o644, 0, 0),
        (&leaf, 'f', 0o644, 0, 0),
        ("sparse.img", 'f', 0o644, 0, 0),
        ("random.bin", 'f', 0o644, 0, 0),
        ("big.bin", 'f', 0o644, 0, 0),
    ];
    for (path, kind, mode, uid, gid) in expect {
        let e = by_path
            .get(path)
            .unwrap_or_else(|| panic!("`{path}` is not in the source tree: {tree:#?}"));
        assert_eq!(
            (e.kind, e.mode, e.uid, e.gid),
            (*kind, *mode, *uid, *gid),
            "source `{path}`: {e:?}"
        );
    }
    for (link, target) in [
        ("rel-link", "owned/pg/PG_VERSION"),
        ("abs-link", "/etc/hostname"),
        ("dangling", "does/not/exist"),
    ] {
        assert_eq!(
            (by_path[link].kind, by_path[link].content.as_str()),
            ('l', target)
        );
    }
    for name in ["owned/pg/PG_VERSION", "hard1", "hard2"] {
        assert_eq!(by_path[name].nlink, 3, "{name}");
    }
    assert_eq!(by_path["readonly"].mtime, 981_173_106);
    assert_eq!(by_path["empty/a"].mtime, 946_684_799);
    assert_eq!(by_path["sparse.img"].size, Some(64 << 20));
    assert_eq!(by_path["big.bin"].size, Some(1 << 30));
    let blocks = exec(&env, "db", &format!("stat -c '%b %B' {PGDATA}/sparse.img"));
    let allocated: u64 = blocks
        .stdout()
        .split_whitespace()
        .map(|n| n.parse::<u64>().expect("a number"))
        .product();
    assert!(
        allocated < 8 << 20,
        "sparse.img is not sparse: {allocated} bytes allocated"
    );

    // Back up.
    let ran = env.persist(["backup"]);
    let backup = printed_path(&ran);
    assert!(
        !ran.stderr().contains("the engine measured"),
        "the engine's size and the streamed bytes should agree on this tree\n{ran}"
    );
    assert!(
        helpers_mounting(&env, &format!("{}_dbdata", env.project)).is_empty(),
        "a helper container is left after a successful backup"
    );
    // Reading the volume changed nothing in it.
    let after = tree_digest_in_container(&env, "db", PGDATA);
    if after != crate::support::tree_digest(&tree) {
        assert_eq!(
            tree_listing_in_container(&env, "db", PGDATA),
            tree,
            "the backup changed the source volume"
        );
        panic!("the tree digest changed although the listing did not");
    }

    // The outer tar: Compose file, the volume, the manifest last.
    assert_eq!(
        member_names(&backup),
        [
            "compose/compose.yaml",
            "volumes/dbdata.tar.zst",
            "manifest.json"
        ]
    );
    let member = "volumes/dbdata.tar.zst";
    let b = backup.to_str().unwrap();
    // Every outer member is a regular file, 0600, owned by 0:0 (docs/format.md).
    let outer = host_sh(&env, r#"tar -tvf "$1" --numeric-owner"#, &[b]);
    outer.assert_success();
    for line in outer.stdout().lines() {
        assert!(
            line.starts_with("-rw------- 0/0 "),
            "outer member: {line}\n{outer}"
        );
    }

    // The inner tar as GNU tar lists it: every entry, with its type, mode, owner, size, mtime and link.
    let listing = host_sh(
        &env,
        r#"tar -xOf "$1" "$2" | zstd -d -q | tar -tv --numeric-owner --full-time --quoting-style=literal"#,
        &[b, member],
    );
    listing.assert_success();
    let tar = parse_tar_listing(&listing.stdout());
    let tar_paths: BTreeSet<&str> = tar.keys().map(String::as_str).collect();
    let tree_paths: BTreeSet<&str> = by_path.keys().copied().collect();
    assert_eq!(tar_paths, tree_paths, "paths in the backup vs the volume");
    let mut hardlinks = Vec::new();
    for e in &tree {
        let t = &tar[&e.path];
        let want_kind = match e.kind {
            'f' if t.kind == 'h' => 'h',
            'f' => '-',
            other => other,
        };
        assert_eq!(t.kind, want_kind, "type of `{}`: {t:?} vs {e:?}", e.path);
        assert_eq!(
            (t.mode, t.uid, t.gid),
            (e.mode, e.uid, e.gid),
            "mode and owner of `{}`: {t:?} vs {e:?}",
            e.path
        );
        assert_eq!(t.mtime, utc(e.mtime), "mtime of `{}`", e.path);
        match t.kind {
            '-' => assert_eq!(Some(t.size), e.size, "size of `{}`", e.path),
            'l' => assert_eq!(t.link.as_deref(), Some(e.content.as_str()), "`{}`", e.path),
            'h' => {
                let target = t.link.as_deref().expect("a hard link target");
                assert_eq!(
                    by_path[target].content, e.content,
                    "`{}` links to `{target}`",
                    e.path
                );
                assert_eq!(tar[target].kind, '-', "`{target}` holds the data");
                hardlinks.push(e.path.as_str());
            }
            _ => {}
        }
    }
    hardlinks.sort();
    assert_eq!(
        hardlinks.len(),
        2,
        "three names of one file: one copy, two links; found links {hardlinks:?}"
    );

    // Extracted with GNU tar: content, modes, owners, links and times are those of the volume.
    let restored = extract_member(&env, &backup, member);
    let count = walkdir::WalkDir::new(restored.path()).into_iter().count();
    assert_eq!(
        count,
        tree.len(),
        "entries extracted vs entries in the volume"
    );
    for e in &tree {
        let path = if e.path == "." {
            restored.path().to_path_buf()
        } else {
            restored.path().join(&e.path)
        };
        let md = fs::symlink_metadata(&path)
            .unwrap_or_else(|err| panic!("`{}` was not extracted: {err}", e.path));
        let ft = md.file_type();
        let kind = if ft.is_symlink() {
            'l'
        } else if ft.is_dir() {
            'd'
        } else if ft.is_file() {
            'f'
        } else if ft.is_fifo() {
            'p'
        } else {
            'o'
        };
        assert_eq!(kind, e.kind, "type of extracted `{}`", e.path);
        assert_eq!(
            (md.mode() & 0o7777, md.uid(), md.gid()),
            (e.mode, e.uid, e.gid),
            "mode and owner of extracted `{}`",
            e.path
        );
        assert_eq!(md.mtime(), e.mtime, "mtime of extracted `{}`", e.path);
        match kind {
            'f' => {
                assert_eq!(Some(md.len()), e.size, "size of extracted `{}`", e.path);
                assert_eq!(md.nlink(), e.nlink, "links of extracted `{}`", e.path);
                assert_eq!(sha256_file(&path), e.content, "content of `{}`", e.path);
            }
            'l' => assert_eq!(
                fs::read_link(&path).expect("readlink").to_str(),
                Some(e.content.as_str()),
                "target of extracted `{}`",
                e.path
            ),
            _ => {}
        }
    }
    drop(restored);

    // The manifest describes what is in the file.
    let m = manifest(&env, &backup);
    let file_name = backup.file_name().unwrap().to_str().unwrap();
    let (stamp, tag) = parse_backup_name(&env.project, file_name);
    assert_eq!(tag, None);
    assert_eq!(m["format"], 1);
    assert_eq!(m["tool"]["name"], "docker-persist");
    assert_eq!(m["project"], env.project.as_str());
    assert_eq!(m["created"], rfc3339_of_stamp(&stamp).as_str());
    assert_eq!(m["compose_files"], serde_json::json!(["compose.yaml"]));
    assert_eq!(m["engine"]["os"], "linux");
    assert_eq!(keys(&m), set(&["dbdata"]));
    let v = record(&m, "dbdata");
    assert_eq!(v["name"], format!("{}_dbdata", env.project).as_str());
    assert_eq!(v["kind"], "named");
    assert_eq!(v["tier"], "critical");
    assert_eq!(v["member"], member);
    assert_eq!(v["driver"], "local");
    assert_eq!(
        v["labels"]["com.docker.compose.project"],
        env.project.as_str()
    );
    assert_eq!(
        v["users"],
        serde_json::json!([{"service": "db", "target": PGDATA, "read_only": false}])
    );
    let member_sha = host_sh(&env, r#"tar -xOf "$1" "$2" | sha256sum"#, &[b, member]);
    member_sha.assert_success();
    assert_eq!(
        v["sha256"].as_str(),
        member_sha.stdout().split_whitespace().next(),
        "sha256 of `{member}`"
    );
    let stored = outer_members(&backup)
        .into_iter()
        .find(|m| m.name == member)
        .expect("the member")
        .size;
    assert_eq!(v["stored_bytes"], stored);
    let tar_bytes = host_sh(
        &env,
        r#"tar -xOf "$1" "$2" | zstd -d -q | wc -c"#,
        &[b, member],
    );
    tar_bytes.assert_success();
    assert_eq!(
        v["uncompressed_bytes"].as_u64(),
        tar_bytes.stdout().trim().parse::<u64>().ok()
    );
    assert_eq!(v["entries"], tree.len() as u64);
    assert_eq!(v["file_bytes"], file_bytes(&tree));
    assert!(
        v["content_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("tree-v2:") && d.len() == 8 + 64),
        "{v:#}"
    );

    // And our own verifier agrees.
    env.persist(["verify", b])
        .assert_success()
        .assert_stderr_contains("is intact");
}

/// The digest the round-trip tests compare must notice every attribute it claims to cover: each change
/// below, made inside the container, gives a digest not seen before.
#[test]
fn tree_digest_in_container_changes_with_every_attribute_it_covers() {
    let env = TestEnv::new();
    env.write_project(DB_PROJECT, None);
    env.compose_v2(["up", "-d"]).assert_success();
    exec(
        &env,
        "db",
        &format!(
            "cd {PGDATA} && mkdir -p dir/empty && echo abc > dir/file && ln -s file dir/link \
             && touch -d '2020-01-01 00:00:00' dir/file dir dir/empty"
        ),
    );
    let mut seen = vec![("initial", tree_digest_in_container(&env, "db", PGDATA))];
    assert_eq!(
        tree_digest_in_container(&env, "db", PGDATA),
        seen[0].1,
        "the digest of an unchanged tree changed"
    );
    let t = "touch -d '2020-01-01 00:00:00'";
    let changes: &[(&str, String)] = &[
        // Same size, same mtime: only the content differs.
        (
            "content",
            format!("printf 'abd\\n' > dir/file && {t} dir/file"),
        ),
        ("mode", format!("chmod 0640 dir/file && {t} dir/file")),
        ("setuid", "chmod 4640 dir/file".to_string()),
        ("owner", "chown 999 dir/file".to_string()),
        ("group", "chown :999 dir/file".to_string()),
        (
            "file mtime",
            "touch -d '2021-01-01 00:00:00' dir/file".to_string(),
        ),
        (
            "directory mtime",
            "touch -d '2021-01-01 00:00:00' dir/empty".to_string(),
        ),
        (
            "symlink target",
            format!("rm dir/link && ln -s elsewhere dir/link && {t} dir"),
        ),
        ("hard link count", format!("ln dir/file hard && {t} . dir")),
        (
            "new empty directory",
            format!("mkdir dir/empty/sub && {t} dir/empty/sub dir/empty"),
        ),
        ("root mode", "chmod 0700 .".to_string()),
    ];
    for (what, script) in changes {
        exec(&env, "db", &format!("cd {PGDATA} && {script}"));
        let digest = tree_digest_in_container(&env, "db", PGDATA);
        if let Some((before, _)) = seen.iter().find(|(_, d)| *d == digest) {
            panic!("changing the {what} gave the digest of the `{before}` state");
        }
        seen.push((what, digest));
    }
}

/// The check happens before anything is read or written: two 16 TB sparse files make the engine measure
/// 32 TB, more than any test machine has free.
#[test]
fn backup_refuses_when_the_destination_cannot_hold_the_data() {
    let env = TestEnv::new();
    env.write_project(DB_PROJECT, None);
    env.compose_v2(["up", "-d"]).assert_success();
    exec(
        &env,
        "db",
        &format!(
            "cd {PGDATA} && truncate -s 16000000000000 huge1 && truncate -s 16000000000000 huge2"
        ),
    );
    let dir = env.home.join("small");
    env.persist(["backup", "--dir", dir.to_str().unwrap()])
        .assert_code(1)
        .assert_stderr_contains("not enough space")
        .assert_stderr_contains(dir.to_str().unwrap());
    assert!(
        !dir.exists(),
        "the refused backup created {}",
        dir.display()
    );
    assert!(helpers_mounting(&env, &format!("{}_dbdata", env.project)).is_empty());
}

// ---------------------------------------------------------------------------------------------------------
// 2. Scope
// ---------------------------------------------------------------------------------------------------------

/// Data of every tier, plus a declared volume no service uses (so Compose never creates it).
const SCOPE_PROJECT: &str = r#"
services:
  db:
    image: postgres:16
    volumes:
      - dbdata:/var/lib/postgresql/data
  cache:
    image: redis:7
    volumes:
      - redisdata:/data
  web:
    image: node:20
    volumes:
      - /app/node_modules
      - ./uploads:/app/uploads
      - assets:/app/static
      - scratch:/scratch
volumes:
  dbdata:
    labels:
      persist.test.run: "{{RUN}}"
  redisdata:
    labels:
      persist.test.run: "{{RUN}}"
  assets:
    labels:
      persist.test.run: "{{RUN}}"
  scratch:
    labels:
      persist.test.run: "{{RUN}}"
    x-persist:
      tier: optional
  later:
    labels:
      persist.test.run: "{{RUN}}"
"#;

/// The member of each volume key of [`SCOPE_PROJECT`] and the marker file written into it.
const SCOPE_MEMBERS: &[(&str, &str)] = &[
    ("dbdata", "volumes/dbdata.tar.zst"),
    ("redisdata", "volumes/redisdata.tar.zst"),
    ("assets", "volumes/assets.tar.zst"),
    ("scratch", "volumes/scratch.tar.zst"),
    (
        "web:/app/node_modules",
        "volumes/web%3A%2Fapp%2Fnode_modules.tar.zst",
    ),
    ("./uploads", "volumes/.%2Fuploads.tar.zst"),
];

/// Backs up with `args` into a directory of its own; returns the `--json` output, the file and stderr.
#[track_caller]
fn scoped_backup(env: &TestEnv, dir: &str, args: &[&str]) -> (Value, PathBuf, String) {
    let dir = env.home.join(dir);
    let mut all = vec!["backup", "--json", "--dir", utf8(&dir)];
    all.extend_from_slice(args);
    let ran = env.persist(&all);
    ran.assert_success();
    let json = ran.json();
    assert_eq!(json["schema_version"], 1, "{ran}");
    let path = PathBuf::from(json["path"].as_str().expect("path"));
    assert_eq!(path.parent(), Some(dir.as_path()), "{ran}");
    assert_eq!(
        json["bytes"].as_u64(),
        Some(fs::metadata(&path).expect("the backup file").len()),
        "{ran}"
    );
    // The file holds what the command said, each volume with its own data.
    let m = manifest(env, &path);
    assert_eq!(keys(&m), keys(&json), "manifest vs --json\n{ran}");
    let names = member_names(&path);
    assert_eq!(
        names.first().map(String::as_str),
        Some("compose/compose.yaml")
    );
    assert_eq!(names.last().map(String::as_str), Some("manifest.json"));
    let volume_members: BTreeSet<&str> = names
        .iter()
        .filter(|n| n.starts_with("volumes/"))
        .map(String::as_str)
        .collect();
    let mut expected_members = BTreeSet::new();
    for key in keys(&json) {
        let (_, member) = SCOPE_MEMBERS
            .iter()
            .find(|(k, _)| *k == key)
            .unwrap_or_else(|| panic!("unexpected volume `{key}`\n{ran}"));
        assert_eq!(record(&m, &key)["member"], *member);
        assert_eq!(
            member_file(env, &path, member, "./marker"),
            format!("{key}\n"),
            "the marker in `{member}`"
        );
        expected_members.insert(*member);
    }
    assert_eq!(volume_members, expected_members);
    (json, path, ran.stderr())
}

#[test]
fn backup_scope_defaults_to_critical_and_important_and_follows_tiers_names_and_all() {
    let env = TestEnv::new();
    env.write_project(SCOPE_PROJECT, None);
    env.write_file("uploads/marker", "./uploads\n");
    env.write_file("uploads/a.bin", &"u".repeat(1234));
    env.write_file("uploads/sub/b.bin", &"v".repeat(766));
    env.compose_v2(["up", "-d"]).assert_success();
    exec(&env, "db", &format!("echo dbdata > {PGDATA}/marker"));
    exec(&env, "cache", "echo redisdata > /data/marker");
    exec(
        &env,
        "web",
        "echo web:/app/node_modules > /app/node_modules/marker && echo assets > /app/static/marker \
         && echo scratch > /scratch/marker",
    );
    let p = &env.project;
    assert!(
        env.volume_labels(&format!("{p}_later")).is_none(),
        "Compose created the unused volume `later`; the test needs it missing"
    );

    // Default: critical and important only; `later` (important, never created) is skipped and named.
    let ran = env.persist(["backup", "--json"]);
    ran.assert_success()
        .assert_stderr_contains("skipping `later`");
    let json = ran.json();
    assert_eq!(
        keys(&json),
        set(&["dbdata", "redisdata", "./uploads"]),
        "{ran}"
    );
    let path = PathBuf::from(json["path"].as_str().unwrap());
    assert_eq!(
        path.parent().map(Path::to_path_buf),
        Some(env.project_dir.join("backups"))
    );
    let m = manifest(&env, &path);
    assert_eq!(keys(&m), keys(&json));
    assert_eq!(record(&m, "dbdata")["tier"], "critical");
    assert_eq!(record(&m, "redisdata")["tier"], "important");
    let uploads = record(&m, "./uploads");
    assert_eq!(uploads["kind"], "bind");
    assert_eq!(uploads["tier"], "critical");
    assert_eq!(
        uploads["name"],
        env.project_dir.join("uploads").to_str().unwrap()
    );
    // The bind mount's files come back from its member.
    let extracted = extract_member(&env, &path, "volumes/.%2Fuploads.tar.zst");
    let mut files: Vec<String> = walkdir::WalkDir::new(extracted.path())
        .min_depth(1)
        .into_iter()
        .map(|e| {
            let e = e.expect("walk");
            e.path()
                .strip_prefix(extracted.path())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    files.sort();
    assert_eq!(files, ["a.bin", "marker", "sub", "sub/b.bin"]);
    assert_eq!(
        fs::read(extracted.path().join("a.bin")).unwrap(),
        "u".repeat(1234).as_bytes()
    );
    assert_eq!(
        fs::read(extracted.path().join("sub/b.bin")).unwrap(),
        "v".repeat(766).as_bytes()
    );
    // The other members, checked in detail (markers, member names, order) in another directory.
    let (json, _, stderr) = scoped_backup(&env, "default", &[]);
    assert_eq!(keys(&json), set(&["dbdata", "redisdata", "./uploads"]));
    assert!(stderr.contains("skipping `later`"), "{stderr}");

    // `--tier regenerable`: the anonymous node_modules and the named `assets` (mounted at `static`).
    let (json, _, _) = scoped_backup(&env, "regenerable", &["--tier", "regenerable"]);
    assert_eq!(keys(&json), set(&["web:/app/node_modules", "assets"]));
    let anon = record(&json, "web:/app/node_modules");
    assert_eq!(anon["kind"], "anonymous");
    assert_eq!(anon["tier"], "regenerable");

    // `--tier` is repeatable.
    let (json, _, _) = scoped_backup(
        &env,
        "two-tiers",
        &["--tier", "optional", "--tier", "critical"],
    );
    assert_eq!(keys(&json), set(&["dbdata", "./uploads", "scratch"]));

    // `--all`: every existing piece of data, whatever its tier.
    let (json, _, stderr) = scoped_backup(&env, "all", &["--all"]);
    assert_eq!(
        keys(&json),
        set(&[
            "dbdata",
            "redisdata",
            "./uploads",
            "web:/app/node_modules",
            "assets",
            "scratch"
        ])
    );
    assert!(stderr.contains("skipping `later`"), "{stderr}");

    // Named volumes: exactly those, an optional one included.
    let (json, _, stderr) = scoped_backup(&env, "named", &["scratch", "redisdata"]);
    assert_eq!(keys(&json), set(&["scratch", "redisdata"]));
    assert!(!stderr.contains("later"), "{stderr}");

    // Nothing to back up: exit 2 with a hint, and no file.
    env.persist(["backup", "later"])
        .assert_code(2)
        .assert_stderr_contains("skipping `later`")
        .assert_stderr_contains("nothing to back up")
        .assert_stderr_contains("hint:");
    env.persist(["backup", "nosuch"])
        .assert_code(2)
        .assert_stderr_contains("`nosuch`");
    let tars: Vec<String> = dir_names(&env.project_dir.join("backups"))
        .into_iter()
        .filter(|n| n.ends_with(".tar") || n.ends_with(".partial"))
        .collect();
    assert_eq!(
        tars.len(),
        1,
        "only the first backup wrote a file: {tars:?}"
    );

    for v in ["dbdata", "redisdata", "assets", "scratch"] {
        assert!(
            helpers_mounting(&env, &format!("{p}_{v}")).is_empty(),
            "{v}"
        );
    }
}

#[test]
fn backup_of_a_project_that_was_never_started_is_a_usage_error() {
    let env = TestEnv::new();
    env.write_project(DB_PROJECT, None);
    env.persist(["backup"])
        .assert_code(2)
        .assert_stderr_contains("skipping `dbdata`")
        .assert_stderr_contains("nothing to back up")
        .assert_stderr_contains("hint:");
    assert_eq!(
        dir_names(&env.project_dir.join("backups")),
        Vec::<String>::new()
    );
}

// ---------------------------------------------------------------------------------------------------------
// 3. File rules and `backups`
// ---------------------------------------------------------------------------------------------------------

/// Sleeps until the wall clock is past the second of `rfc3339` (a backup's creation time).
fn wait_for_next_second_after(rfc3339: &str) {
    let created: jiff::Timestamp = rfc3339.parse().expect("an RFC 3339 time");
    while jiff::Timestamp::now().as_second() <= created.as_second() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn backup_files_are_private_named_by_time_and_tag_and_listed_newest_first() {
    let env = TestEnv::new();
    env.write_project(DB_PROJECT, None);
    env.compose_v2(["up", "-d"]).assert_success();
    exec(&env, "db", &format!("echo hello > {PGDATA}/hello"));
    let dir = env.project_dir.join("backups");

    // Under a permissive umask the file is still 0600 and the directory 0700.
    let started = jiff::Timestamp::now().as_second();
    let mut cmd = env.command("sh");
    cmd.args(["-c", "umask 000 && exec docker persist backup"]);
    let first = printed_path(&env.run(cmd));
    let ended = jiff::Timestamp::now().as_second();
    assert_eq!(first.parent(), Some(dir.as_path()));
    let first_name = first.file_name().unwrap().to_str().unwrap().to_string();
    let (stamp, tag) = parse_backup_name(&env.project, &first_name);
    assert_eq!(tag, None, "{first_name}");
    let first_created = rfc3339_of_stamp(&stamp);
    let t: jiff::Timestamp = first_created.parse().unwrap();
    assert!(
        (started..=ended).contains(&t.as_second()),
        "`{first_name}` is not named after the time it was made"
    );
    assert_eq!(mode_of(&first), 0o600, "backup file mode");
    assert_eq!(mode_of(&dir), 0o700, "backup directory mode");
    assert_eq!(
        fs::read_to_string(dir.join(".gitignore")).unwrap().trim(),
        "*"
    );
    let m = manifest(&env, &first);
    assert_eq!(m["created"], first_created.as_str());
    assert!(m.get("tag").is_none_or(Value::is_null), "{m:#}");

    // A tag goes at the end of the name and into the manifest.
    wait_for_next_second_after(&first_created);
    let second = printed_path(&env.persist(["backup", "--tag", "nightly-1.x"]));
    let second_name = second.file_name().unwrap().to_str().unwrap().to_string();
    let (stamp, tag) = parse_backup_name(&env.project, &second_name);
    assert_eq!(tag.as_deref(), Some("nightly-1.x"), "{second_name}");
    let second_created = rfc3339_of_stamp(&stamp);
    assert_eq!(mode_of(&second), 0o600);
    let m = manifest(&env, &second);
    assert_eq!(m["tag"], "nightly-1.x");
    assert_eq!(m["created"], second_created.as_str());
    assert_eq!(
        dir_names(&dir),
        [".gitignore", first_name.as_str(), second_name.as_str()]
    );

    // `backups --json`: both, newest first, with their fields.
    let listed = listed_backups(&env, None);
    let paths: Vec<&str> = listed.iter().map(|b| b["path"].as_str().unwrap()).collect();
    assert_eq!(paths, [second.to_str().unwrap(), first.to_str().unwrap()]);
    for (b, path, created, tag) in [
        (
            &listed[0],
            &second,
            &second_created,
            Value::from("nightly-1.x"),
        ),
        (&listed[1], &first, &first_created, Value::Null),
    ] {
        assert_eq!(b["created"], created.as_str(), "{b:#}");
        assert_eq!(b["tag"], tag, "{b:#}");
        assert_eq!(b["bytes"], fs::metadata(path).unwrap().len(), "{b:#}");
        assert_eq!(b["volumes"], serde_json::json!(["dbdata"]), "{b:#}");
    }
    let ran = env.persist(["backups", "--json"]);
    let json = ran.json();
    assert_eq!(json["project"], env.project.as_str());
    assert_eq!(json["dir"], dir.to_str().unwrap());

    // The table: newest first too.
    let ran = env.persist(["backups"]);
    ran.assert_success();
    let out = ran.stdout();
    let at = |needle: &str| {
        out.find(needle)
            .unwrap_or_else(|| panic!("`{needle}` not listed\n{ran}"))
    };
    assert!(at(&second_name) < at(&first_name), "newest first\n{ran}");
    assert!(
        out.contains("nightly-1.x") && out.contains("dbdata"),
        "{ran}"
    );

    // `verify` without a file checks the newest.
    env.persist(["verify"])
        .assert_success()
        .assert_stderr_contains(&second_name)
        .assert_stderr_contains("is intact");

    // `--dir` elsewhere: created private with its `.gitignore`; the default directory is left alone.
    let elsewhere = env.home.join("elsewhere/nested");
    let third = printed_path(&env.persist([
        "backup",
        "--dir",
        elsewhere.to_str().unwrap(),
        "--tag",
        "moved",
    ]));
    assert_eq!(third.parent(), Some(elsewhere.as_path()));
    assert_eq!(mode_of(&elsewhere), 0o700);
    assert_eq!(mode_of(&third), 0o600);
    assert_eq!(
        fs::read_to_string(elsewhere.join(".gitignore"))
            .unwrap()
            .trim(),
        "*"
    );
    assert_eq!(dir_names(&dir).len(), 3, "{:?}", dir_names(&dir));
    let listed = listed_backups(&env, Some(&elsewhere));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["path"], third.to_str().unwrap());
    assert_eq!(listed_backups(&env, None).len(), 2);

    assert!(helpers_mounting(&env, &format!("{}_dbdata", env.project)).is_empty());
}

#[test]
fn an_invalid_backup_tag_is_a_usage_error_and_writes_nothing() {
    let env = TestEnv::new();
    env.write_project(DB_PROJECT, None);
    env.compose_v2(["up", "-d"]).assert_success();
    for tag in ["../x", "-dash", "has space", &"t".repeat(65)] {
        env.persist(["backup", &format!("--tag={tag}")])
            .assert_code(2)
            .assert_stderr_contains("tag");
    }
    assert_eq!(
        dir_names(&env.project_dir.join("backups")),
        Vec::<String>::new()
    );
}

/// File names only have seconds, so a backup can find its name taken: a script that runs `backup` twice in
/// a row (`backup && backup --all`) does so whenever both start within one second. The backup must still be
/// written, under another name (a later second's), and must replace nothing. To make the collision certain,
/// the names of the next seconds are taken by copies of a real backup before the backup starts.
#[test]
fn backup_whose_file_name_is_taken_still_succeeds_and_replaces_nothing() {
    let env = TestEnv::new();
    env.write_project(DB_PROJECT, None);
    env.compose_v2(["up", "-d"]).assert_success();
    let first = printed_path(&env.persist(["backup"]));
    let original = fs::read(&first).unwrap();
    let dir = first.parent().unwrap().to_path_buf();
    let now = jiff::Timestamp::now().as_second();
    let mut taken = Vec::new();
    for second in now..now + 3 {
        let stamp = jiff::Timestamp::from_second(second)
            .unwrap()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        let path = dir.join(format!("{}-{stamp}.tar", env.project));
        if !path.exists() {
            fs::copy(&first, &path).unwrap();
            taken.push(path);
        }
    }
    let started = Instant::now();
    let ran = env.persist(["backup"]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the backup waited too long for a free name\n{ran}"
    );
    let made = printed_path(&ran);
    assert!(
        made != first && !taken.contains(&made),
        "`{}` was written over an existing backup",
        made.display()
    );
    for path in taken.iter().chain([&first]) {
        assert!(
            fs::read(path).unwrap() == original,
            "`{}` changed",
            path.display()
        );
    }
    env.persist(["verify", made.to_str().unwrap()])
        .assert_success();
}

// ---------------------------------------------------------------------------------------------------------
// 4. verify
// ---------------------------------------------------------------------------------------------------------

/// Rewrites a backup file member by member with the `tar` crate: `edit` gets each member's name and
/// content and returns the content to write, or `None` to leave the member out.
fn rewrite_backup(src: &Path, dst: &Path, edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>) {
    let mut archive = tar::Archive::new(fs::File::open(src).expect("open the backup"));
    let mut builder = tar::Builder::new(fs::File::create(dst).expect("create the copy"));
    for entry in archive.entries().expect("a tar") {
        let mut entry = entry.expect("a member");
        let name = String::from_utf8(entry.path_bytes().into_owned()).expect("UTF-8");
        let mut header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read a member");
        if let Some(data) = edit(&name, data) {
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, data.as_slice()).expect("append");
        }
    }
    builder.into_inner().expect("finish the copy");
}

/// `verify --json FILE`: exit code and output.
fn verify_json(env: &TestEnv, file: &Path) -> (Ran, Value) {
    let ran = env.persist(["verify", "--json", utf8(file)]);
    let json = if ran.stdout().trim().is_empty() {
        Value::Null
    } else {
        ran.json()
    };
    (ran, json)
}

#[test]
fn verify_accepts_an_intact_backup_and_names_each_kind_of_damage() {
    let env = TestEnv::new();
    env.write_project(DB_PROJECT, None);
    env.compose_v2(["up", "-d"]).assert_success();
    exec(
        &env,
        "db",
        &format!(
            "cd {PGDATA} && head -c 3000000 /dev/urandom > random.bin && echo small > small.txt \
             && mkdir sub && echo nested > sub/nested.txt"
        ),
    );
    let good = printed_path(&env.persist(["backup"]));
    let file_name = good.file_name().unwrap().to_str().unwrap().to_string();
    let member = "volumes/dbdata.tar.zst";

    env.persist(["verify", good.to_str().unwrap()])
        .assert_success()
        .assert_stderr_contains("is intact");
    let (ran, json) = verify_json(&env, &good);
    ran.assert_success();
    assert_eq!(json["ok"], true, "{ran}");
    assert_eq!(json["problems"], serde_json::json!([]), "{ran}");
    assert_eq!(
        json["volumes"],
        serde_json::json!([{"key": "dbdata", "ok": true}])
    );

    // Each damaged copy lives in a directory of its own under the original's name, so that `backups`
    // looks at it as it would at the real one.
    let copy_in = |kind: &str| -> PathBuf {
        let dir = env.home.join("damaged").join(kind);
        fs::create_dir_all(&dir).unwrap();
        dir.join(&file_name)
    };

    // Control: a member-by-member rewrite that changes nothing gives the same bytes, and verifies.
    let same = copy_in("rewritten");
    rewrite_backup(&good, &same, |_, data| Some(data));
    assert!(
        fs::read(&same).unwrap() == fs::read(&good).unwrap(),
        "rewriting with the tar crate changed the file: the damage below would not be the only change"
    );

    let m = outer_members(&good)
        .into_iter()
        .find(|m| m.name == member)
        .expect("the volume member");
    let manifest_json = manifest(&env, &good);
    let real_sha = record(&manifest_json, "dbdata")["sha256"]
        .as_str()
        .unwrap()
        .to_string();

    // One flipped bit in the middle of the volume member.
    let flipped = copy_in("flipped");
    let mut bytes = fs::read(&good).unwrap();
    bytes[(m.data_offset + m.size / 2) as usize] ^= 0x10;
    fs::write(&flipped, &bytes).unwrap();

    // Cut in the middle of the volume member.
    let truncated = copy_in("truncated");
    fs::write(
        &truncated,
        &fs::read(&good).unwrap()[..(m.data_offset + m.size / 2) as usize],
    )
    .unwrap();

    // Only the end-of-archive blocks cut off.
    let no_end = copy_in("no-end");
    let bytes = fs::read(&good).unwrap();
    fs::write(&no_end, &bytes[..bytes.len() - 1024]).unwrap();

    // Rebuilt without `manifest.json`.
    let no_manifest = copy_in("no-manifest");
    rewrite_backup(&good, &no_manifest, |name, data| {
        (name != "manifest.json").then_some(data)
    });
    assert!(!member_names(&no_manifest).contains(&"manifest.json".to_string()));

    // A manifest whose sha256 of the member was altered.
    let fake_sha = hex::encode(sha2::Sha256::digest(b"not the member"));
    let altered = copy_in("altered-sha");
    rewrite_backup(&good, &altered, |name, data| {
        if name != "manifest.json" {
            return Some(data);
        }
        let mut m: Value = serde_json::from_slice(&data).unwrap();
        m["volumes"][0]["sha256"] = Value::from(fake_sha.clone());
        Some(serde_json::to_vec_pretty(&m).unwrap())
    });

    // (file, what the problem must name, whether `verify --json` reports problems: a file that is not a
    // backup at all is an error instead, and `backups` must not list it)
    let cases: [(&Path, &[&str], bool); 5] = [
        (&flipped, &[member, "SHA-256"], true),
        (&truncated, &["truncated"], false),
        (&no_end, &["end-of-archive"], true),
        (&no_manifest, &["manifest.json"], false),
        (&altered, &[member, "SHA-256", &fake_sha, &real_sha], true),
    ];
    let mut listed_damaged = Vec::new();
    for (file, needles, reports) in cases {
        let ran = env.persist(["verify", file.to_str().unwrap()]);
        ran.assert_code(1);
        for needle in needles {
            ran.assert_stderr_contains(needle);
        }
        let (ran, json) = verify_json(&env, file);
        ran.assert_code(1);
        if reports {
            assert_eq!(json["ok"], false, "{ran}");
            let problems = json["problems"].as_array().expect("problems");
            let named = problems.iter().any(|p| {
                let text = p.to_string();
                needles.iter().all(|n| text.contains(n))
            });
            assert!(named, "no problem names {needles:?}\n{ran}");
        }
        let listed = listed_backups(&env, file.parent());
        if !reports {
            // Without a manifest, or cut short, a file is not a backup: never listed.
            assert!(
                listed.is_empty(),
                "{} is listed: {listed:#?}",
                file.display()
            );
        } else if !listed.is_empty() {
            listed_damaged.push(file.parent().unwrap().file_name().unwrap().to_owned());
        }
    }
    // The flipped and altered copies still carry a readable manifest; `backups` does not verify members,
    // so it lists them (there is no verified state column yet).
    eprintln!("damaged copies `backups` lists as backups: {listed_damaged:?}");

    // The altered sha names what it expected and what it found.
    let (_, json) = verify_json(&env, &altered);
    let problem = json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["member"] == member)
        .unwrap_or_else(|| panic!("no problem names `{member}`: {json:#}"));
    assert_eq!(problem["expected"], fake_sha.as_str());
    assert_eq!(problem["found"], real_sha.as_str());

    // The original is untouched by all this.
    env.persist(["verify", good.to_str().unwrap()])
        .assert_success();
}

/// A backup whose only damage is its missing end-of-archive blocks has one problem, and `verify` says one.
#[test]
fn verify_reports_each_problem_once() {
    let env = TestEnv::new();
    env.write_project(DB_PROJECT, None);
    env.compose_v2(["up", "-d"]).assert_success();
    exec(&env, "db", &format!("echo data > {PGDATA}/data.txt"));
    let good = printed_path(&env.persist(["backup"]));
    let cut = env.home.join(good.file_name().unwrap());
    let bytes = fs::read(&good).unwrap();
    fs::write(&cut, &bytes[..bytes.len() - 1024]).unwrap();

    let (ran, json) = verify_json(&env, &cut);
    ran.assert_code(1);
    let problems = json["problems"].as_array().expect("problems");
    let distinct: BTreeSet<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        distinct.len(),
        problems.len(),
        "a problem is reported more than once\n{ran}"
    );
    assert_eq!(problems.len(), 1, "{ran}");
    assert!(
        problems[0]["what"]
            .as_str()
            .unwrap()
            .contains("end-of-archive"),
        "{ran}"
    );
    env.persist(["verify", cut.to_str().unwrap()])
        .assert_code(1)
        .assert_stderr_contains("1 problem");
}

// ---------------------------------------------------------------------------------------------------------
// 5 and 6. Interruptions, crashes and helper containers
// ---------------------------------------------------------------------------------------------------------

/// A database whose volume takes many seconds to read (a 2 GiB sparse file: nothing to write beforehand),
/// and a small volume in a second service.
const BULK_PROJECT: &str = r#"
services:
  db:
    image: postgres:16
    volumes:
      - dbdata:/var/lib/postgresql/data
  app:
    image: alpine:3
    volumes:
      - small:/small
volumes:
  dbdata:
    labels:
      persist.test.run: "{{RUN}}"
  small:
    labels:
      persist.test.run: "{{RUN}}"
"#;

/// Brings up [`BULK_PROJECT`]; returns the id of the `db` container and its state.
fn bulk_project(env: &TestEnv) -> (String, String) {
    env.write_project(BULK_PROJECT, None);
    env.compose_v2(["up", "-d"]).assert_success();
    exec(
        env,
        "db",
        &format!("cd {PGDATA} && echo keep > keep.txt && truncate -s 2G bulk.img"),
    );
    exec(env, "app", "echo small > /small/small.txt");
    let db = env.service_container("db");
    let state = container_state(env, &db);
    assert!(state.starts_with("true "), "db is not running: {state}");
    (db, state)
}

/// Starts `backup dbdata ARGS`, waits until it streams, then sends `signal` half a second later.
fn start_and_signal(env: &TestEnv, signal: &str, args: &[&str]) -> (Running, ExitStatus) {
    let dir = env.project_dir.join("backups");
    let mut backup = Running::start(env, "backup", &[&["backup", "dbdata"], args].concat());
    backup.wait_until_streaming(env, &dir);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        backup.is_running(),
        "the backup ended before the signal; the volume is too small to interrupt it\n{}",
        backup.output()
    );
    backup.signal(signal);
    let status = backup.wait(Duration::from_secs(60));
    (backup, status)
}

/// Interrupts `backup dbdata ARGS` with `signal` mid-stream and checks that nothing is left behind.
pub(crate) fn interrupted_backup_leaves_nothing_behind(env: TestEnv, signal: &str, args: &[&str]) {
    let (db, db_state) = bulk_project(&env);
    let dir = env.project_dir.join("backups");
    let (backup, status) = start_and_signal(&env, signal, args);

    // Every rule is checked, and all that fail are reported together.
    let mut problems = Vec::new();
    if status.code() != Some(130) {
        problems.push(format!("exit status {status}, expected code 130"));
    }
    let files: Vec<String> = dir_names(&dir)
        .into_iter()
        .filter(|n| n != ".gitignore")
        .collect();
    if !files.is_empty() {
        problems.push(format!("files left in the backup directory: {files:?}"));
    }
    let helpers = helpers_of(&env, backup.pid());
    if !helpers.is_empty() {
        problems.push(format!("helper containers left: {helpers:?}"));
    }
    if backup.stderr().contains("left behind") {
        problems.push("it warns that helper containers may be left behind".to_string());
    }
    let listed = listed_backups(&env, None);
    if !listed.is_empty() {
        problems.push(format!("`backups` lists {listed:#?}"));
    }
    // `dbdata` is critical: unless read live, db was stopped for the read and must run again.
    let live = args.windows(2).any(|a| a == ["--consistency", "live"]);
    let state = container_state(&env, &db);
    if live && state != db_state {
        problems.push(format!(
            "the db container changed state though the read was live: `{db_state}` before, `{state}` after"
        ));
    }
    if !live && (!state.starts_with("true ") || state == db_state) {
        problems.push(format!(
            "the db container was not stopped and started again: `{db_state}` before, `{state}` after"
        ));
    }
    let journals = journal_files(&env);
    if !journals.is_empty() {
        problems.push(format!("journal files left: {journals:?}"));
    }
    let keep = env.docker(["exec", &db, "cat", &format!("{PGDATA}/keep.txt")]);
    if keep.stdout() != "keep\n" {
        problems.push(format!("the volume lost data\n{keep}"));
    }
    assert!(
        problems.is_empty(),
        "after SIG{signal} mid-backup:\n- {}\n{}",
        problems.join("\n- "),
        backup.output()
    );
}

#[test]
fn backup_interrupted_by_sigint_exits_130_and_leaves_no_file_and_no_helper() {
    interrupted_backup_leaves_nothing_behind(TestEnv::new(), "INT", &[]);
}

#[test]
fn backup_interrupted_by_sigterm_exits_130_and_leaves_no_file_and_no_helper() {
    interrupted_backup_leaves_nothing_behind(TestEnv::new(), "TERM", &[]);
}

#[test]
fn live_backup_interrupted_by_sigint_leaves_the_database_running_untouched() {
    interrupted_backup_leaves_nothing_behind(TestEnv::new(), "INT", &["--consistency", "live"]);
}

#[test]
fn helpers_of_a_killed_backup_are_removed_by_the_next_backup() {
    let env = TestEnv::new();
    let (db, db_state) = bulk_project(&env);
    let dir = env.project_dir.join("backups");
    let (killed, status) = start_and_signal(&env, "KILL", &[]);
    assert_eq!(status.signal(), Some(9), "{}", killed.output());

    // What a crash leaves: the helper, and a `.partial` that is not a backup.
    let left = helpers_of(&env, killed.pid());
    assert!(
        !left.is_empty(),
        "SIGKILL should leave the helper container (nothing can remove it)"
    );
    let partials: Vec<String> = dir_names(&dir)
        .into_iter()
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert_eq!(partials.len(), 1, "{:?}", dir_names(&dir));
    assert!(listed_backups(&env, None).is_empty());
    let table = env.persist(["backups"]);
    table.assert_success();
    assert!(!table.stdout().contains(".partial"), "{table}");

    // It had stopped db for the read and says so in its journal; the next command starts db again.
    let state = container_state(&env, &db);
    assert!(state.starts_with("false "), "db should be stopped: {state}");
    let journals = journal_files(&env);
    assert!(
        journals.len() == 1 && journals[0].ends_with(&format!("-{}.json", killed.pid())),
        "the killed backup's journal: {journals:?}"
    );
    let ls = env.persist(["ls"]);
    ls.assert_success();
    ls.assert_stderr_contains(&format!(
        "Started `{}` again: a docker persist command (pid {}) stopped it and did not finish",
        container_name(&env, &db),
        killed.pid()
    ));
    let state = container_state(&env, &db);
    assert!(
        state.starts_with("true ") && state != db_state,
        "db was not started again: `{db_state}` before, `{state}` after"
    );
    assert!(journal_files(&env).is_empty(), "{:?}", journal_files(&env));
    let again = env.persist(["ls"]);
    again.assert_success();
    assert!(!again.stderr().contains("again"), "{again}");

    // The next backup removes the dead process's helper, and its own, and the `.partial` the dead process
    // left once it has gone unmodified long enough (aged here; a running writer also holds a lock on it).
    let partial = dir.join(&partials[0]);
    let aged = std::process::Command::new("touch")
        .args(["-d", "-10 minutes"])
        .arg(&partial)
        .status()
        .unwrap();
    assert!(aged.success());
    let ran = env.persist(["backup", "small"]);
    ran.assert_stderr_contains(&format!(
        "Removed `{}`, left by a backup that did not finish",
        partial.display()
    ));
    let next = printed_path(&ran);
    let left = helpers_of(&env, killed.pid());
    assert!(
        left.is_empty(),
        "the killed backup's helpers remain: {left:?}"
    );
    assert!(helpers_mounting(&env, &format!("{}_small", env.project)).is_empty());
    assert!(helpers_mounting(&env, &format!("{}_dbdata", env.project)).is_empty());
    let listed = listed_backups(&env, None);
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["path"], next.to_str().unwrap());
    assert_eq!(listed[0]["volumes"], serde_json::json!(["small"]));
    let left: Vec<String> = dir_names(&dir)
        .into_iter()
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "`.partial` files remain: {left:?}");
}

// ---------------------------------------------------------------------------------------------------------
// 7. Consistency: what is stopped while it is read
// ---------------------------------------------------------------------------------------------------------

/// A database (critical) and a worker that shares its volume and depends on it (listed first, so that file
/// order alone would start it first), a web service whose only volume is regenerable, a stopped service with
/// critical data, and a volume that asks for a dump.
const CONSISTENCY_PROJECT: &str = r#"
services:
  worker:
    image: alpine:3
    depends_on: [db]
    volumes:
      - dbdata:/db
  db:
    image: postgres:16
    volumes:
      - dbdata:/var/lib/postgresql/data
  web:
    image: alpine:3
    depends_on: [db]
    volumes:
      - modules:/app/node_modules
  idle:
    image: alpine:3
    volumes:
      - idledata:/var/lib/mysql
  cache:
    image: redis:7
    volumes:
      - cachedata:/data
volumes:
  dbdata:
    labels:
      persist.test.run: "{{RUN}}"
  modules:
    labels:
      persist.test.run: "{{RUN}}"
  idledata:
    labels:
      persist.test.run: "{{RUN}}"
  cachedata:
    labels:
      persist.test.run: "{{RUN}}"
    x-persist: {consistency: dump}
"#;

#[test]
fn auto_consistency_stops_only_what_mounts_critical_data_and_starts_it_again() {
    let env = TestEnv::new();
    env.write_project(CONSISTENCY_PROJECT, None);
    env.compose_v2(["up", "-d"]).assert_success();
    exec(&env, "db", &format!("echo row > {PGDATA}/row.txt"));
    exec(&env, "web", "echo dep > /app/node_modules/dep.js");
    let db = env.service_container("db");
    let worker = env.service_container("worker");
    let worker_before = container_state(&env, &worker);
    let web = env.service_container("web");
    let idle = env.service_container("idle");
    env.docker(["stop", &idle]).assert_success();
    let (db_before, web_before, idle_before) = (
        container_state(&env, &db),
        container_state(&env, &web),
        container_state(&env, &idle),
    );
    assert!(idle_before.starts_with("false "), "{idle_before}");

    let ran = env.persist(["backup", "dbdata", "modules", "idledata"]);
    let path = printed_path(&ran);
    let m = manifest(&env, &path);
    assert_eq!(record(&m, "dbdata")["consistency"], "stop", "{m:#}");
    // In start order: the worker depends on db.
    assert_eq!(
        record(&m, "dbdata")["stopped"],
        serde_json::json!(["db", "worker"])
    );
    assert_eq!(record(&m, "modules")["consistency"], "live", "{m:#}");
    assert!(record(&m, "modules").get("stopped").is_none(), "{m:#}");
    // Critical, but nothing of it ran: nothing to stop, and nothing started.
    assert_eq!(record(&m, "idledata")["consistency"], "stop", "{m:#}");
    assert!(record(&m, "idledata").get("stopped").is_none(), "{m:#}");
    let db_after = container_state(&env, &db);
    assert!(
        db_after.starts_with("true ") && db_after != db_before,
        "db was not stopped and started again: `{db_before}` → `{db_after}`\n{ran}"
    );
    let worker_after = container_state(&env, &worker);
    assert!(
        worker_after.starts_with("true ") && worker_after != worker_before,
        "worker was not stopped and started again: `{worker_before}` → `{worker_after}`\n{ran}"
    );
    assert_eq!(
        container_state(&env, &web),
        web_before,
        "web was touched\n{ran}"
    );
    assert_eq!(
        container_state(&env, &idle),
        idle_before,
        "idle was started\n{ran}"
    );
    let db_name = container_name(&env, &db);
    let worker_name = container_name(&env, &worker);
    ran.assert_stderr_contains(&format!(
        "Stopping `{db_name}`, `{worker_name}` while `dbdata` is read"
    ))
    .assert_stderr_contains(&format!(
        "Started `{db_name}` again\nStarted `{worker_name}` again"
    ))
    .assert_stderr_contains("Backed up `modules` live, its services running");
    assert!(journal_files(&env).is_empty(), "{:?}", journal_files(&env));

    // `--consistency live` stops nothing, and the manifest says so.
    let ran = env.persist(["backup", "--consistency", "live", "dbdata"]);
    let path = printed_path(&ran);
    let m = manifest(&env, &path);
    assert_eq!(record(&m, "dbdata")["consistency"], "live", "{m:#}");
    assert!(record(&m, "dbdata").get("stopped").is_none(), "{m:#}");
    assert_eq!(
        container_state(&env, &db),
        db_after,
        "db was restarted\n{ran}"
    );

    // `dump` runs the image's recipe inside the service; this stand-in image has no `redis-cli`, so the
    // dump fails, says why, and writes nothing (tests/e2e/dumps.rs gives it one).
    let files_before = dir_names(&env.project_dir.join("backups")).len();
    let ran = env.persist(["backup", "cachedata"]);
    ran.assert_code(1)
        .assert_stderr_contains("`BGSAVE` in")
        .assert_stderr_contains("redis-cli");
    assert_eq!(
        dir_names(&env.project_dir.join("backups")).len(),
        files_before
    );
    let cache = env.service_container("cache");
    let cache_before = container_state(&env, &cache);
    let path = printed_path(&env.persist(["backup", "--consistency", "stop", "cachedata"]));
    let m = manifest(&env, &path);
    assert_eq!(
        record(&m, "cachedata")["stopped"],
        serde_json::json!(["cache"])
    );
    let cache_after = container_state(&env, &cache);
    assert!(
        cache_after.starts_with("true ") && cache_after != cache_before,
        "`{cache_before}` → `{cache_after}`"
    );
}

const SLOW_SHUTDOWN_PROJECT: &str = r#"
services:
  db:
    image: postgres:16
    stop_grace_period: 40s
    # Shuts down the way a database with a long checkpoint does: it needs longer than the engine's default
    # 10 s to finish, and marks a finished shutdown in its data directory.
    command:
      - sh
      - -c
      - |
        rm -f /var/lib/postgresql/data/clean-shutdown
        trap 'sleep 13; echo done > /var/lib/postgresql/data/clean-shutdown; exit 0' TERM INT
        while :; do sleep 1; done
    volumes:
      - dbdata:/var/lib/postgresql/data
volumes:
  dbdata:
    labels:
      persist.test.run: "{{RUN}}"
"#;

#[test]
fn a_stopped_service_gets_its_own_stop_grace_period_before_its_volume_is_read() {
    let env = TestEnv::new();
    env.write_project(SLOW_SHUTDOWN_PROJECT, None);
    env.compose_v2(["up", "-d"]).assert_success();
    let db = env.service_container("db");
    let ran = env.persist(["backup", "dbdata"]);
    let path = printed_path(&ran);
    assert_eq!(
        record(&manifest(&env, &path), "dbdata")["stopped"],
        serde_json::json!(["db"])
    );
    // Killed after 10 s, the service would not have written its marker before the volume was read.
    assert_eq!(
        member_file(&env, &path, "volumes/dbdata.tar.zst", "./clean-shutdown"),
        "done\n",
        "{ran}"
    );
    assert!(container_state(&env, &db).starts_with("true "), "{ran}");
}
