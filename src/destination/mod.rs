//! Where backup files live. A **destination** is a place that holds backup files (format 1, the same bytes
//! everywhere): the project's local backup directory (the destination `local`, always there), another
//! directory, an S3-compatible bucket, or a directory on an SFTP server. Every command that finds, reads,
//! writes or removes backup files goes through this module, so each of them works with every kind.
//!
//! # Naming a destination
//! - a URL: `/mnt/usb/persist`, `./relative`, `file:///mnt/usb/persist`, `s3://bucket/prefix?endpoint=…&region=…`,
//!   `sftp://user@host[:port]/path` ([`DestinationUrl::parse`]);
//! - a name from the Compose file's `x-persist: {destinations: {NAME: {url: …, …}}}` ([`Destinations`]);
//! - `local`: the project's backup directory (`--dir`, else `backups/` in the project directory).
//!
//! # The interface
//! [`Destination`] offers, for every kind:
//! - [`Destination::list`]: the backups of a project, newest first ([`crate::archive::BackupListing`]). Only
//!   what identifies a backup is read: for a remote destination the object listing and, for each candidate,
//!   the manifest from the file's tail with one ranged read ([`crate::archive::read_tail_manifest`]).
//!   `BackupSummary::path` is the file's place ([`Destination::locate`]): a path for a directory, a URL
//!   (`s3://bucket/prefix/app-….tar`) otherwise; its `file_name()` is the backup's name;
//! - [`Destination::open`]: a backup opened for reading ([`crate::archive::Backup`]) by byte ranges, streamed
//!   from where it lives (no local copy); verify it and stream its volumes as with a local file;
//! - [`Destination::put_file`]: stores a complete local backup file under its name. It is streamed in one
//!   pass, visible under its final name only once complete (a directory or SFTP: `.partial`, then rename;
//!   S3: a multipart upload completed last, aborted on any failure or cancellation), and its SHA-256 is
//!   computed on the way, stored beside it as `<name>.sha256` (`sha256sum -c` format) and compared with the
//!   local file's;
//! - [`Destination::follow`]: the same, for a backup file while it is written (`backup --to`): the
//!   destination's copy follows the local file as it grows ([`stream`]), so the local file and every
//!   destination are written in one pass over the data;
//! - [`Destination::remove`]: removes a backup's `.sha256`, then the backup, so that an interrupted
//!   removal never leaves a `.sha256` without its backup; in a bucket or on SFTP a backup already gone is
//!   no error (the removal wanted it gone);
//! - [`Destination::check`]: reachable, writable (a probe is written and removed), free space where known.
//!
//! Errors ([`DestinationError`]) always name the destination by its URL without credentials; credentials
//! never appear in a URL, an argument, a child's argv, a manifest or a message.
//!
//! All methods are `async`; reading an opened [`crate::archive::Backup`] is blocking, as for local files
//! (use it from `spawn_blocking`).

pub mod local;
pub mod s3;
pub mod sftp;
pub mod stream;
pub mod unfinished;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::archive::growing::Growing;
use crate::archive::{ArchiveError, Backup, BackupListing};

/// The name of the project's own backup directory as a destination.
pub const LOCAL: &str = "local";

/// Where a destination is, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationUrl {
    /// A directory on this machine.
    Dir(PathBuf),
    /// An S3-compatible bucket.
    S3(S3Url),
    /// A directory on an SFTP server.
    Sftp(SftpUrl),
}

/// `s3://bucket/prefix?endpoint=URL&region=R&profile=P&path_style=true&part_size=16MiB&max_parts=10000`.
/// Serialized in the records of unfinished uploads ([`unfinished`]): it holds no credential.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct S3Url {
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
    /// Custom endpoint (MinIO, Garage, Ceph, B2, R2, Wasabi…); else `AWS_ENDPOINT_URL`, else AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Profile of `~/.aws/credentials` and `~/.aws/config`; else `AWS_PROFILE`, else `default`.
    pub profile: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`); default: on with a custom endpoint, off for AWS.
    pub path_style: Option<bool>,
    /// Size of a multipart upload's parts; default: 5 MiB, raised so that any file stays within `max_parts`.
    pub part_size: Option<u64>,
    /// The provider's part-count limit; default 10,000 (AWS).
    pub max_parts: Option<u64>,
}

/// `sftp://[user@]host[:port]/path?identity=/path/to/key`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SftpUrl {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// The directory on the server: absolute (`sftp://h//abs` or `sftp://h/abs` → `/abs`)
    pub path: String,
    /// A key file for ssh (`-i`); else the ssh agent and ssh's own configuration.
    pub identity: Option<PathBuf>,
}

impl DestinationUrl {
    /// Parses a destination URL; relative directory paths resolve against `base`. A URL that carries a
    /// password or keys is refused without repeating them.
    pub fn parse(url: &str, base: &Path) -> Result<DestinationUrl, DestinationError> {
        let bad = |reason: String| DestinationError::BadUrl {
            url: redact(url),
            reason,
        };
        if let Some(rest) = url.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(bad("a `file://` URL needs an absolute path".into()));
            }
            return Ok(DestinationUrl::Dir(PathBuf::from(percent_decode(rest))));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (main, query) = split_query(rest);
            let (authority, prefix) = main.split_once('/').unwrap_or((main, ""));
            if authority.contains('@') {
                return Err(bad(
                    "credentials do not go in the URL: use `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (or their `_FILE` variants) or a profile of `~/.aws/credentials`".into(),
                ));
            }
            if authority.is_empty() {
                return Err(bad("it names no bucket".into()));
            }
            let mut s3 = S3Url {
                bucket: authority.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
                ..S3Url::default()
            };
            for (k, v) in query {
                s3.set(&k, &v).map_err(&bad)?;
            }
            return Ok(DestinationUrl::S3(s3));
        }
        if let Some(rest) = url.strip_prefix("sftp://") {
            let (main, query) = split_query(rest);
            let (authority, path) = main
                .split_once('/')
                .ok_or_else(|| bad("it names no directory on the server".into()))?;
            let (user, hostport) = match authority.rsplit_once('@') {
                Some((user, _)) if user.contains(':') => {
                    return Err(bad(
                        "a password does not go in the URL: use the ssh agent or a key file (`?identity=…`)".into(),
                    ));
                }
                Some((user, host)) => (Some(percent_decode(user)), host),
                None => (None, authority),
            };
            let (host, port) = match hostport.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
                    let port = p
                        .parse::<u16>()
                        .map_err(|_| bad(format!("`{p}` is not a port")))?;
                    (h, Some(port))
                }
                _ => (hostport, None),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(bad("it names no host".into()));
            }
            let path = percent_decode(path.trim_end_matches('/'));
            let mut sftp = SftpUrl {
                user,
                host: host.to_string(),
                port,
                path: format!("/{}", path.trim_start_matches('/')),
                identity: None,
            };
            for (k, v) in query {
                match k.as_str() {
                    "identity" | "key" => sftp.identity = Some(PathBuf::from(v)),
                    other => return Err(bad(format!("unknown option `{other}` for SFTP"))),
                }
            }
            return Ok(DestinationUrl::Sftp(sftp));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(bad(format!(
                "`{scheme}://` is not a kind of destination (a directory, `file://`, `s3://` or `sftp://`)"
            )));
        }
        if url.is_empty() {
            return Err(bad("it is empty".into()));
        }
        let path = Path::new(url);
        Ok(DestinationUrl::Dir(if path.is_absolute() {
            path.to_path_buf()
        } else {
            base.join(path)
        }))
    }
}

impl S3Url {
    /// Sets one option (`endpoint`, `region`, `profile`, `path_style`, `part_size`, `max_parts`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "endpoint" => self.endpoint = Some(value.to_string()),
            "region" => self.region = Some(value.to_string()),
            "profile" => self.profile = Some(value.to_string()),
            "path_style" | "path-style" | "force_path_style" => {
                self.path_style = Some(
                    parse_bool(value)
                        .ok_or_else(|| format!("`{key}` is `true` or `false`, not `{value}`"))?,
                );
            }
            "part_size" | "part-size" => self.part_size = Some(parse_size(value)?),
            "max_parts" | "max-parts" => {
                let n: u64 = value
                    .parse()
                    .map_err(|_| format!("`max_parts` is a number, not `{value}`"))?;
                if n == 0 {
                    return Err("`max_parts` must be at least 1".into());
                }
                self.max_parts = Some(n);
            }
            "access_key_id" | "secret_access_key" | "session_token" => {
                return Err(format!(
                    "`{key}` does not go in the URL or the Compose file: use the AWS environment variables, their `_FILE` variants or a profile"
                ));
            }
            other => return Err(format!("unknown option `{other}` for S3")),
        }
        Ok(())
    }
}

impl fmt::Display for DestinationUrl {
    /// The URL without credentials (there are none to hide: they are refused), as messages show it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DestinationUrl::Dir(p) => write!(f, "{}", p.display()),
            DestinationUrl::S3(s) if s.prefix.is_empty() => write!(f, "s3://{}", s.bucket),
            DestinationUrl::S3(s) => write!(f, "s3://{}/{}", s.bucket, s.prefix),
            DestinationUrl::Sftp(s) => {
                f.write_str("sftp://")?;
                if let Some(u) = &s.user {
                    write!(f, "{u}@")?;
                }
                if s.host.contains(':') {
                    write!(f, "[{}]", s.host)?;
                } else {
                    f.write_str(&s.host)?;
                }
                if let Some(p) = s.port {
                    write!(f, ":{p}")?;
                }
                write!(f, "{}", s.path)
            }
        }
    }
}

/// A URL as it may be shown: anything between `://` and `@` (where a password would be) is dropped.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://…@{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
    .split('?')
    .next()
    .unwrap_or_default()
    .to_string()
}

fn split_query(s: &str) -> (&str, Vec<(String, String)>) {
    match s.split_once('?') {
        None => (s, Vec::new()),
        Some((main, q)) => (
            main,
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, "true"));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        ),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" | "yes" | "1" | "on" => Some(true),
        "false" | "no" | "0" | "off" => Some(false),
        _ => None,
    }
}

/// `16MiB`, `5MB`, `8388608`.
pub fn parse_size(v: &str) -> Result<u64, String> {
    let t = v.trim();
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &t[digits.len()..];
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("`{v}` is not a size (like `16MiB`)"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1 << 20,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1 << 30,
        _ => return Err(format!("`{v}` is not a size (like `16MiB`)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{v}` is too large"))
}

/// One destination of `x-persist: {destinations: {NAME: …}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationConfig {
    pub name: String,
    pub url: DestinationUrl,
    /// `default: true`: `backup` sends to it without `--to`.
    pub default: bool,
    /// The whole entry as written (`retention:`, `encrypt:`, … for the commands that read them).
    pub raw: serde_json::Value,
}

/// The destinations a project knows: `local` and those of `x-persist.destinations`.
#[derive(Debug, Clone)]
pub struct Destinations {
    local: PathBuf,
    base: PathBuf,
    configured: Vec<DestinationConfig>,
}

impl Destinations {
    /// From the project's top-level `x-persist` value; `local` is the project's backup directory and
    /// relative directories resolve against `project_dir`.
    pub fn from_config(
        persist: &serde_json::Value,
        local: PathBuf,
        project_dir: &Path,
    ) -> Result<Destinations, DestinationError> {
        let mut configured = Vec::new();
        let bad = |name: &str, reason: String| DestinationError::Config {
            name: name.to_string(),
            reason,
        };
        match persist.get("destinations") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(map)) => {
                for (name, entry) in map {
                    if name == LOCAL {
                        return Err(bad(
                            name,
                            "`local` is the project's backup directory; choose another name".into(),
                        ));
                    }
                    let obj = match entry {
                        serde_json::Value::String(url) => {
                            let mut o = serde_json::Map::new();
                            o.insert("url".into(), serde_json::Value::String(url.clone()));
                            o
                        }
                        serde_json::Value::Object(o) => o.clone(),
                        _ => {
                            return Err(bad(
                                name,
                                "is neither a URL nor a mapping with `url:`".into(),
                            ));
                        }
                    };
                    let url = obj
                        .get("url")
                        .and_then(|u| u.as_str())
                        .ok_or_else(|| bad(name, "has no `url:`".into()))?;
                    let mut parsed = DestinationUrl::parse(url, project_dir)?;
                    let default = match obj.get("default") {
                        None => false,
                        Some(serde_json::Value::Bool(b)) => *b,
                        Some(_) => return Err(bad(name, "`default:` is `true` or `false`".into())),
                    };
                    for (k, v) in &obj {
                        let value = match v {
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Number(n) => n.to_string(),
                            serde_json::Value::Bool(b) => b.to_string(),
                            _ => continue,
                        };
                        match (&mut parsed, k.as_str()) {
                            (_, "url" | "default") => {}
                            (DestinationUrl::S3(s3), key) if S3_KEYS.contains(&key) => {
                                s3.set(key, &value).map_err(|r| bad(name, r))?;
                            }
                            (DestinationUrl::Sftp(sftp), "identity" | "key") => {
                                sftp.identity = Some(match value.strip_prefix("~/") {
                                    Some(rest) => std::env::var_os("HOME")
                                        .map(PathBuf::from)
                                        .unwrap_or_default()
                                        .join(rest),
                                    None => project_dir.join(value),
                                });
                            }
                            (
                                _,
                                key @ ("access_key_id" | "secret_access_key" | "session_token"
                                | "password"),
                            ) => {
                                return Err(bad(
                                    name,
                                    format!(
                                        "`{key}` does not belong in the Compose file: use the environment (or a `_FILE` variable) or a profile"
                                    ),
                                ));
                            }
                            // `retention:`, `encrypt:` and what later versions add are read by their commands.
                            _ => {}
                        }
                    }
                    configured.push(DestinationConfig {
                        name: name.clone(),
                        url: parsed,
                        default,
                        raw: serde_json::Value::Object(obj),
                    });
                }
            }
            Some(_) => {
                return Err(bad(
                    "destinations",
                    "`x-persist.destinations` is a mapping of names to destinations".into(),
                ));
            }
        }
        Ok(Destinations {
            local,
            base: project_dir.to_path_buf(),
            configured,
        })
    }

    /// The project's backup directory.
    pub fn local_dir(&self) -> &Path {
        &self.local
    }

    /// The destination `local`.
    pub fn local(&self) -> Destination {
        Destination::new(LOCAL, DestinationUrl::Dir(self.local.clone()))
    }

    /// The configured destinations, in file order (without `local`).
    pub fn configured(&self) -> &[DestinationConfig] {
        &self.configured
    }

    /// Those marked `default: true`.
    pub fn defaults(&self) -> Vec<Destination> {
        self.configured
            .iter()
            .filter(|c| c.default)
            .map(|c| Destination::new(&c.name, c.url.clone()))
            .collect()
    }

    /// `local`, a configured name, or a URL.
    pub fn resolve(&self, spec: &str) -> Result<Destination, DestinationError> {
        if spec == LOCAL {
            return Ok(self.local());
        }
        if let Some(c) = self.configured.iter().find(|c| c.name == spec) {
            return Ok(Destination::new(&c.name, c.url.clone()));
        }
        let looks_like_name = !spec.is_empty()
            && !spec.contains('/')
            && !spec.contains(':')
            && !spec.starts_with('.');
        if looks_like_name {
            let mut known: Vec<&str> = vec![LOCAL];
            known.extend(self.configured.iter().map(|c| c.name.as_str()));
            return Err(DestinationError::UnknownName {
                name: spec.to_string(),
                known: known.join("`, `"),
            });
        }
        let url = DestinationUrl::parse(spec, &self.base)?;
        Ok(Destination::new(&url.to_string(), url))
    }
}

const S3_KEYS: &[&str] = &[
    "endpoint",
    "region",
    "profile",
    "path_style",
    "path-style",
    "force_path_style",
    "part_size",
    "part-size",
    "max_parts",
    "max-parts",
];

/// A backup stored at a destination by [`Destination::put_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Where it is ([`Destination::locate`]).
    pub location: PathBuf,
    pub bytes: u64,
    /// SHA-256 of the whole file, lowercase hex.
    pub sha256: String,
    /// `true` when an identical file (same size and recorded SHA-256) was already there and nothing was sent.
    pub already_there: bool,
}

/// What [`Destination::check`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    pub reachable: bool,
    pub writable: bool,
    /// Free bytes where the destination says (a directory, an SFTP server with `statvfs`); `None` for buckets.
    pub free_bytes: Option<u64>,
    /// Why it is not reachable or not writable.
    pub error: Option<String>,
}

/// A destination ready to use.
#[derive(Debug, Clone)]
pub struct Destination {
    name: String,
    url: DestinationUrl,
    backend: Arc<Backend>,
}

#[derive(Debug)]
enum Backend {
    Dir(local::DirDestination),
    S3(s3::S3Destination),
    Sftp(sftp::SftpDestination),
}

impl Destination {
    /// A destination named `name` (`local`, a configured name, or its URL when given as one).
    pub fn new(name: &str, url: DestinationUrl) -> Destination {
        let backend = match &url {
            DestinationUrl::Dir(p) => Backend::Dir(local::DirDestination::new(p.clone())),
            DestinationUrl::S3(u) => Backend::S3(s3::S3Destination::new(u.clone())),
            DestinationUrl::Sftp(u) => Backend::Sftp(sftp::SftpDestination::new(u.clone())),
        };
        Destination {
            name: name.to_string(),
            url,
            backend: Arc::new(backend),
        }
    }

    /// `local`, the configured name, or the URL.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self) -> &DestinationUrl {
        &self.url
    }

    /// `true` for the project's own backup directory.
    pub fn is_local(&self) -> bool {
        self.name == LOCAL
    }

    /// The directory, when the destination is one on this machine.
    pub fn dir(&self) -> Option<&Path> {
        match &self.url {
            DestinationUrl::Dir(p) => Some(p),
            _ => None,
        }
    }

    /// Where the backup file `file_name` is (or would be): a path for a directory, else a URL.
    pub fn locate(&self, file_name: &str) -> PathBuf {
        match &self.url {
            DestinationUrl::Dir(p) => p.join(file_name),
            other => PathBuf::from(format!(
                "{}/{file_name}",
                other.to_string().trim_end_matches('/')
            )),
        }
    }

    /// `name` (`url`) for messages, or the URL alone when the name is the URL.
    pub fn describe(&self) -> String {
        let url = self.url.to_string();
        if self.name == url {
            format!("`{url}`")
        } else {
            format!("`{}` ({url})", self.name)
        }
    }

    /// The backups of `project` here, newest first; files that look like backups by name but are not are in
    /// `skipped`. A destination that does not exist yet holds no backups.
    pub async fn list(&self, project: &str) -> Result<BackupListing, DestinationError> {
        match &*self.backend {
            Backend::Dir(d) => d.list(project).map_err(|e| self.archive_err(e)),
            Backend::S3(d) => d
                .list(project)
                .await
                .map_err(|source| DestinationError::List {
                    destination: self.describe(),
                    source: s3::describe(source),
                }),
            Backend::Sftp(d) => d
                .list(project)
                .await
                .map_err(|source| DestinationError::List {
                    destination: self.describe(),
                    source,
                }),
        }
    }

    /// The backup `file_name`, opened for reading by ranges (its index and manifest are read now).
    pub async fn open(&self, file_name: &str) -> Result<Backup, DestinationError> {
        check_file_name(file_name).map_err(|reason| self.io_err(Op::Read, file_name, reason))?;
        match &*self.backend {
            Backend::Dir(d) => {
                let path = d.path(file_name);
                tokio::task::spawn_blocking(move || Backup::open(path))
                    .await
                    .map_err(|e| self.io_err(Op::Read, file_name, e.to_string()))?
                    .map_err(|e| self.archive_err(e))
            }
            Backend::Sftp(d) => d
                .open(file_name)
                .await
                .map_err(|e| self.wrap(Op::Read, file_name, e)),
            Backend::S3(d) => d
                .open(file_name)
                .await
                .map_err(|e| self.wrap(Op::Read, file_name, s3::describe(e))),
        }
    }

    /// Stores the complete local backup file `local` here under its file name (see the module's doc).
    pub async fn put_file(&self, local: &Path) -> Result<Stored, DestinationError> {
        let file_name = local
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                self.io_err(
                    Op::Write,
                    &local.display().to_string(),
                    "not a file name".into(),
                )
            })?
            .to_string();
        check_file_name(&file_name).map_err(|reason| self.io_err(Op::Write, &file_name, reason))?;
        match &*self.backend {
            Backend::Dir(d) => d
                .put_file(local, &file_name)
                .await
                .map_err(|e| self.wrap(Op::Write, &file_name, e)),
            Backend::Sftp(d) => d
                .put_file(local, &file_name)
                .await
                .map_err(|e| self.wrap(Op::Write, &file_name, e)),
            Backend::S3(d) => d
                .put_file(local, &file_name)
                .await
                .map_err(|e| self.wrap(Op::Write, &file_name, s3::describe(e))),
        }
    }

    /// Stores the backup file that `growing` follows here while it is written (`backup --to`), in the same
    /// way as [`Destination::put_file`]; `size_hint` (at most what the file will hold) chooses the S3 part
    /// size. When the file is abandoned, nothing is left here.
    pub async fn follow(
        &self,
        growing: &Growing,
        size_hint: Option<u64>,
    ) -> Result<Stored, DestinationError> {
        let result = match &*self.backend {
            Backend::Dir(d) => d.follow(growing).await,
            Backend::Sftp(d) => d.follow(growing).await,
            Backend::S3(d) => d.follow(growing, size_hint).await.map_err(s3::describe),
        };
        result.map_err(|e| {
            let name = growing.file_name().unwrap_or_else(|| "the backup".into());
            self.wrap(Op::Write, &name, e)
        })
    }

    /// Removes the backup `file_name` and its `.sha256`: the `.sha256` goes first, then the backup, each in one step (`unlink`, one `DELETE`). Cut short anywhere (Ctrl-C, a dropped
    /// connection), what is left is what a reader already meets while a file is being stored: a whole
    /// backup without its `.sha256` (listed, verified and restored as any other; `push` writes the
    /// `.sha256` again), never a `.sha256` whose backup is gone (`sha256sum -c` would report a missing
    /// file as a failure) nor a partial backup.
    pub async fn remove(&self, file_name: &str) -> Result<(), DestinationError> {
        check_file_name(file_name).map_err(|reason| self.io_err(Op::Remove, file_name, reason))?;
        match &*self.backend {
            Backend::Dir(d) => d
                .remove(file_name)
                .map_err(|e| self.wrap(Op::Remove, file_name, e)),
            Backend::Sftp(d) => d
                .remove(file_name)
                .await
                .map_err(|e| self.wrap(Op::Remove, file_name, e)),
            Backend::S3(d) => d
                .remove(file_name)
                .await
                .map_err(|e| self.wrap(Op::Remove, file_name, s3::describe(e))),
        }
    }

    /// Whether it can be reached and written, and its free space where known.
    pub async fn check(&self) -> Health {
        match &*self.backend {
            Backend::Dir(d) => d.check(),
            Backend::S3(d) => d.check().await,
            Backend::Sftp(d) => d.check().await,
        }
    }

    fn archive_err(&self, source: ArchiveError) -> DestinationError {
        DestinationError::Archive {
            destination: self.describe(),
            source,
        }
    }

    fn io_err(&self, op: Op, file: &str, reason: String) -> DestinationError {
        DestinationError::Failed {
            op,
            destination: self.describe(),
            file: file.to_string(),
            source: reason.into(),
        }
    }

    fn wrap(
        &self,
        op: Op,
        file: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> DestinationError {
        DestinationError::Failed {
            op,
            destination: self.describe(),
            file: file.to_string(),
            source: source.into(),
        }
    }
}

/// A backup's file name as a destination accepts it: one plain path component.
fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." || name.contains('\0') {
        return Err(format!("`{name}` is not a backup file name"));
    }
    Ok(())
}

/// What a destination was asked to do when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    List,
    Read,
    Write,
    Remove,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::List => "list",
            Op::Read => "read",
            Op::Write => "store",
            Op::Remove => "remove",
        })
    }
}

/// Everything that can go wrong with a destination, naming it (never with credentials).
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("`{url}` is not a destination: {reason}")]
    BadUrl { url: String, reason: String },

    #[error("destination `{name}` in `x-persist.destinations`: {reason}")]
    Config { name: String, reason: String },

    #[error("no destination is named `{name}` (known: `{known}`)")]
    UnknownName { name: String, known: String },

    #[error("failed to {op} `{file}` at {destination}")]
    Failed {
        op: Op,
        destination: String,
        file: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("failed to list backups at {destination}")]
    List {
        destination: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("at {destination}")]
    Archive {
        destination: String,
        #[source]
        source: ArchiveError,
    },
}

static CLEANUPS: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// Registers a cleanup started when a transfer's future was dropped (an S3 upload to abort, an SFTP
/// `.partial` to remove), for [`finish_cleanups`].
pub(crate) fn register_cleanup(task: tokio::task::JoinHandle<()>) {
    if let Ok(mut c) = CLEANUPS.lock() {
        c.push(task);
    }
}

/// Waits, up to `limit`, for the cleanups of transfers an interruption cut short: call it before the
/// process exits after Ctrl-C, so that no multipart upload is left to bill.
/// A cleanup may register others (a stopped upload task, once its future is dropped, registers the abort
/// of its upload): they are waited for too, within the same limit.
pub async fn finish_cleanups(limit: std::time::Duration) {
    let _ = tokio::time::timeout(limit, async {
        loop {
            let tasks: Vec<_> = CLEANUPS
                .lock()
                .map(|mut c| std::mem::take(&mut *c))
                .unwrap_or_default();
            if tasks.is_empty() {
                break;
            }
            futures_util::future::join_all(tasks).await;
        }
    })
    .await;
}

/// The entry of `x-persist.destinations` as a map of option names to strings, for messages and tests.
pub fn options_of(raw: &serde_json::Value) -> BTreeMap<String, String> {
    raw.as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<DestinationUrl, DestinationError> {
        DestinationUrl::parse(url, Path::new("/proj"))
    }

    #[test]
    fn directories_parse_absolute_relative_and_file_urls() {
        assert_eq!(
            parse("/mnt/usb").unwrap(),
            DestinationUrl::Dir("/mnt/usb".into())
        );
        assert_eq!(
            parse("./b").unwrap(),
            DestinationUrl::Dir("/proj/./b".into())
        );
        assert_eq!(
            parse("file:///mnt/a%20b").unwrap(),
            DestinationUrl::Dir("/mnt/a b".into())
        );
        assert!(parse("file://relative").is_err());
        assert!(parse("ftp://h/x").is_err());
    }

    #[test]
    fn s3_urls_carry_bucket_prefix_and_options() {
        let DestinationUrl::S3(s) =
            parse("s3://bkt/a/b/?endpoint=http://127.0.0.1:9000&region=eu-1&path_style=true&part_size=8MiB&max_parts=1000").unwrap()
        else {
            panic!()
        };
        assert_eq!(s.bucket, "bkt");
        assert_eq!(s.prefix, "a/b");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s.region.as_deref(), Some("eu-1"));
        assert_eq!(s.path_style, Some(true));
        assert_eq!(s.part_size, Some(8 << 20));
        assert_eq!(s.max_parts, Some(1000));
        assert_eq!(parse("s3://bkt").unwrap().to_string(), "s3://bkt");
        assert_eq!(parse("s3://bkt/p/").unwrap().to_string(), "s3://bkt/p");
    }

    #[test]
    fn credentials_in_urls_are_refused_without_repeating_them() {
        for url in [
            "s3://AKIA:supersecret@bkt/p",
            "sftp://user:supersecret@host/p",
            "s3://bkt/p?secret_access_key=supersecret",
        ] {
            let e = parse(url).unwrap_err().to_string();
            assert!(!e.contains("supersecret"), "{e}");
        }
    }

    #[test]
    fn sftp_urls_have_user_host_port_and_path() {
        let DestinationUrl::Sftp(s) = parse("sftp://bob@backup.example:2222/srv/persist/").unwrap()
        else {
            panic!()
        };
        assert_eq!(s.user.as_deref(), Some("bob"));
        assert_eq!((s.host.as_str(), s.port), ("backup.example", Some(2222)));
        assert_eq!(s.path, "/srv/persist");
        let DestinationUrl::Sftp(s) = parse("sftp://[::1]:22/x?identity=/k").unwrap() else {
            panic!()
        };
        assert_eq!((s.host.as_str(), s.port), ("::1", Some(22)));
        assert_eq!(s.identity, Some(PathBuf::from("/k")));
        assert_eq!(
            parse("sftp://bob@h:2222/srv").unwrap().to_string(),
            "sftp://bob@h:2222/srv"
        );
        assert!(parse("sftp://host").is_err());
    }

    #[test]
    fn named_destinations_resolve_and_unknown_names_say_what_is_known() {
        let persist = serde_json::json!({"destinations": {
            "offsite": {"url": "s3://bkt/p", "region": "eu-1", "default": true, "retention": {"keep_daily": 7}},
            "usb": "/mnt/usb",
        }});
        let d = Destinations::from_config(&persist, "/proj/backups".into(), Path::new("/proj"))
            .unwrap();
        assert_eq!(d.configured().len(), 2);
        let off = d.resolve("offsite").unwrap();
        let DestinationUrl::S3(s) = off.url() else {
            panic!()
        };
        assert_eq!(s.region.as_deref(), Some("eu-1"));
        assert_eq!(d.defaults().len(), 1);
        assert_eq!(
            d.resolve("local").unwrap().dir(),
            Some(Path::new("/proj/backups"))
        );
        assert_eq!(
            d.resolve("./x").unwrap().dir(),
            Some(Path::new("/proj/./x"))
        );
        let e = d.resolve("ofsite").unwrap_err().to_string();
        assert!(e.contains("`local`, `offsite`, `usb`"), "{e}");
        let bad = serde_json::json!({"destinations": {"x": {"url": "s3://b", "secret_access_key": "s3cr3t"}}});
        let e = Destinations::from_config(&bad, "/b".into(), Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("5MB").unwrap(), 5_000_000);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("lots").is_err());
    }
}
