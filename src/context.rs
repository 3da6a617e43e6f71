//! Resolves the engine endpoint exactly as the Docker CLI does, so that `docker persist` talks to the same
//! engine as `docker ps` in the same shell: `--context` > `--host` > `DOCKER_HOST` > `DOCKER_CONTEXT` >
//! `currentContext` in config.json > the default socket, with Docker's TLS flags and its context store.
//!
//! The rules follow docker/cli (`cli/command/cli.go`, `cli/flags/options.go`, `cli/context/store`,
//! `opts/hosts.go`). Everything is read from the arguments and the files they point to; the environment
//! is passed in as a map, so that tests are hermetic.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::cli::DockerGlobals;

/// The name of Docker's built-in context: flags and `DOCKER_*` variables instead of a stored context.
pub const DEFAULT_CONTEXT: &str = "default";
/// Where the engine listens when nothing else is configured.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// Docker's default when TLS is on and no host is given at all (`docker --tlsverify version`).
const DEFAULT_TLS_HOST: &str = "tcp://localhost:2376";
const DEFAULT_UNIX_SOCKET: &str = "/var/run/docker.sock";
/// Docker adds this port to a `tcp://` host without one, with or without TLS (`opts.ParseTCPAddr`).
const DEFAULT_TCP_PORT: u16 = 2375;

/// Where and how to reach the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `unix:///var/run/docker.sock`, `tcp://host:2376`, `ssh://user@host`, …
    pub host: String,
    /// TLS material for `tcp://`, when TLS is on.
    pub tls: Option<TlsMaterial>,
    /// The context this came from (`default` when none was named).
    pub context: String,
    /// Why this endpoint was chosen, for `--verbose` and hints: "--host flag", "DOCKER_HOST", "context `x`".
    pub source: String,
}

/// TLS settings for a `tcp://` endpoint.
///
/// Paths are only set for files that exist (Docker drops missing default files; a missing file that was
/// named explicitly is a [`ContextError::TlsFile`] while resolving). A client certificate is presented
/// only when both `cert` and `key` are set, as Docker does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsMaterial {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Verify the server's certificate (`--tlsverify`, `DOCKER_TLS_VERIFY`, a context without `SkipTLSVerify`).
    pub verify: bool,
}

/// A parsed engine address (see [`Endpoint::address`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAddr {
    /// `unix://PATH`
    Unix(PathBuf),
    /// `tcp://HOST:PORT[/PATH]`; `host` has no brackets (`::1`), `path` is a base path or empty.
    Tcp {
        host: String,
        port: u16,
        path: String,
    },
    /// `ssh://[USER@]HOST[:PORT][/SOCKET]`; a path names the engine's socket on the remote machine.
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        path: String,
    },
}

impl HostAddr {
    /// True for a unix socket, or TCP to a loopback address, `localhost` or `0.0.0.0`: the engine runs
    /// on this machine, so paths it reports can be read here. ssh is never local, even to localhost (the
    /// remote user and mount namespace may differ).
    pub fn is_local(&self) -> bool {
        match self {
            HostAddr::Unix(_) => true,
            HostAddr::Tcp { host, .. } => {
                host.eq_ignore_ascii_case("localhost")
                    || host
                        .parse::<IpAddr>()
                        // connecting to 0.0.0.0 or :: reaches this machine too
                        .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
            }
            HostAddr::Ssh { .. } => false,
        }
    }
}

impl Endpoint {
    /// Parses [`Endpoint::host`]. Endpoints made by [`resolve`] always parse.
    pub fn address(&self) -> Result<HostAddr, ContextError> {
        let normalized = parse_host(&self.host, false)?;
        let (proto, rest) = normalized
            .split_once("://")
            .ok_or_else(|| invalid_host(&self.host, "missing scheme"))?;
        match proto {
            "unix" => Ok(HostAddr::Unix(PathBuf::from(rest))),
            "tcp" => {
                let (authority, path) = match rest.find('/') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, ""),
                };
                let (host, port) = split_host_port(authority)
                    .ok_or_else(|| invalid_host(&self.host, "invalid address"))?;
                let port = port
                    .parse()
                    .map_err(|_| invalid_host(&self.host, "invalid port"))?;
                Ok(HostAddr::Tcp {
                    host: host.to_string(),
                    port,
                    path: path.trim_end_matches('/').to_string(),
                })
            }
            "ssh" => {
                let spec = parse_ssh(&normalized)?;
                Ok(HostAddr::Ssh {
                    user: spec.user,
                    host: spec.host,
                    port: spec.port,
                    path: spec.path,
                })
            }
            _ => Err(unsupported(
                &self.host,
                "expected unix://, tcp:// or ssh://",
            )),
        }
    }

    /// True when the engine runs on this machine (see [`HostAddr::is_local`]).
    pub fn is_local(&self) -> bool {
        self.address().is_ok_and(|a| a.is_local())
    }
}

/// Errors while resolving the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("context `{name}` (from {chosen_by}) does not exist: no `{}`", path.display())]
    NotFound {
        name: String,
        /// "--context", "DOCKER_CONTEXT" or "`currentContext` in config.json".
        chosen_by: String,
        /// The meta.json that was looked for.
        path: PathBuf,
    },
    #[error("failed to read Docker context `{name}` from `{}`", path.display())]
    ReadMeta {
        name: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid Docker context metadata in `{}`: {message}", path.display())]
    InvalidMeta { path: PathBuf, message: String },
    #[error("failed to read Docker config file `{}`", path.display())]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid Docker config file `{}`: {message}", path.display())]
    InvalidConfig { path: PathBuf, message: String },
    #[error("conflicting options: either specify --host or --context, not both")]
    HostAndContext,
    #[error("unsupported engine address `{host}`: {reason}")]
    UnsupportedScheme { host: String, reason: String },
    #[error("invalid engine address `{host}`: {message}")]
    InvalidHost { host: String, message: String },
    #[error("cannot use TLS file `{}` ({origin})", path.display())]
    TlsFile {
        path: PathBuf,
        /// Where the path came from: "--tlscacert", "DOCKER_CERT_PATH", "default certificate directory".
        origin: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot find the Docker config directory: neither DOCKER_CONFIG nor HOME is set (use --config)"
    )]
    NoConfigDir,
}

/// How the context name was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameOrigin {
    Flag,
    Env,
    ConfigFile,
    /// Not named: `--host`, `DOCKER_HOST` or nothing at all selects the default context.
    Implicit,
}

impl fmt::Display for NameOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameOrigin::Flag => "--context",
            NameOrigin::Env => "DOCKER_CONTEXT",
            NameOrigin::ConfigFile => "config.json",
            NameOrigin::Implicit => "default",
        })
    }
}

/// Resolves the endpoint from Docker's global flags and the environment (`DOCKER_HOST`, `DOCKER_CONTEXT`,
/// `DOCKER_CONFIG`, `DOCKER_TLS`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`, `HOME`).
///
/// Differences from the Docker CLI, all deliberate:
/// - an invalid config.json is an error ([`ContextError::InvalidConfig`]); Docker warns and carries on
///   with the default context, which could point a backup at the wrong engine. It is read only when no
///   flag or variable has already chosen the context.
/// - `npipe://` and `fd://` are refused here rather than failing later.
/// - `--tlsverify=false` cannot be told apart from no flag (the split of the globals keeps booleans only);
///   Docker turns TLS on without verification for it.
pub fn resolve(
    globals: &DockerGlobals,
    env: &BTreeMap<String, String>,
) -> Result<Endpoint, ContextError> {
    if globals.context.as_deref().is_some_and(|c| !c.is_empty()) && globals.host.is_some() {
        return Err(ContextError::HostAndContext);
    }
    let config_dir = match &globals.config {
        Some(dir) if !dir.as_os_str().is_empty() => dir.clone(),
        _ => env_config_dir(env)?,
    };
    let (name, origin) = context_name(globals, env, &config_dir)?;
    if name == DEFAULT_CONTEXT {
        default_endpoint(globals, env, origin)
    } else {
        stored_endpoint(&config_dir, &name, origin)
    }
}

fn var<'a>(env: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    env.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// Docker's `config.Dir()` before `--config` is applied: `DOCKER_CONFIG`, else `$HOME/.docker`.
fn env_config_dir(env: &BTreeMap<String, String>) -> Result<PathBuf, ContextError> {
    if let Some(dir) = var(env, "DOCKER_CONFIG") {
        return Ok(PathBuf::from(dir));
    }
    var(env, "HOME")
        .map(|home| Path::new(home).join(".docker"))
        .ok_or(ContextError::NoConfigDir)
}

/// docker/cli `resolveContextName`.
fn context_name(
    globals: &DockerGlobals,
    env: &BTreeMap<String, String>,
    config_dir: &Path,
) -> Result<(String, NameOrigin), ContextError> {
    if let Some(name) = globals.context.as_deref().filter(|c| !c.is_empty()) {
        return Ok((name.to_string(), NameOrigin::Flag));
    }
    if globals.host.is_some() || var(env, "DOCKER_HOST").is_some() {
        return Ok((DEFAULT_CONTEXT.to_string(), NameOrigin::Implicit));
    }
    if let Some(name) = var(env, "DOCKER_CONTEXT") {
        return Ok((name.to_string(), NameOrigin::Env));
    }
    if let Some(name) = current_context(&config_dir.join("config.json"))? {
        return Ok((name, NameOrigin::ConfigFile));
    }
    Ok((DEFAULT_CONTEXT.to_string(), NameOrigin::Implicit))
}

/// `currentContext` from config.json; a missing file means none.
fn current_context(path: &Path) -> Result<Option<String>, ContextError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ContextError::ReadConfig {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let invalid = |message: String| ContextError::InvalidConfig {
        path: path.to_path_buf(),
        message,
    };
    // Docker treats an empty (or whitespace-only) file as an empty config.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    let Value::Object(map) = &value else {
        return Err(invalid("expected a JSON object".to_string()));
    };
    match go_field(map, "currentContext") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid("`currentContext` is not a string".to_string())),
    }
}

/// A struct field as Go's encoding/json finds it: the exact key, else any key equal ignoring case.
fn go_field<'a>(map: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The directory name Docker's context store uses for a context: the hex SHA-256 of its name.
pub fn context_dir_name(name: &str) -> String {
    hex::encode(Sha256::digest(name.as_bytes()))
}

/// A context from the store under `<config>/contexts/`.
fn stored_endpoint(
    config_dir: &Path,
    name: &str,
    origin: NameOrigin,
) -> Result<Endpoint, ContextError> {
    let id = context_dir_name(name);
    let store = config_dir.join("contexts");
    let meta_path = store.join("meta").join(&id).join("meta.json");
    let bytes = match std::fs::read(&meta_path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ContextError::NotFound {
                name: name.to_string(),
                chosen_by: match origin {
                    NameOrigin::ConfigFile => format!(
                        "`currentContext` in {}",
                        config_dir.join("config.json").display()
                    ),
                    other => other.to_string(),
                },
                path: meta_path,
            });
        }
        Err(source) => {
            return Err(ContextError::ReadMeta {
                name: name.to_string(),
                path: meta_path,
                source,
            });
        }
    };
    let invalid = |message: &str| ContextError::InvalidMeta {
        path: meta_path.clone(),
        message: message.to_string(),
    };
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| invalid(&e.to_string()))?;
    let docker = value
        .as_object()
        .and_then(|m| go_field(m, "Endpoints"))
        .and_then(Value::as_object)
        .and_then(|eps| eps.get("docker"))
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("the context has no docker endpoint (`Endpoints.docker`)"))?;
    let host = match go_field(docker, "Host") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(invalid("`Endpoints.docker.Host` is not a string")),
    };
    let skip_verify = match go_field(docker, "SkipTLSVerify") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("`Endpoints.docker.SkipTLSVerify` is not a boolean")),
    };

    // TLS is on when the context has a TLS directory for its docker endpoint (even an empty one), or
    // when it skips verification (docker/cli `Endpoint.tlsConfig`).
    let tls_dir = store.join("tls").join(&id).join("docker");
    let tls = if tls_dir.is_dir() || skip_verify {
        let file = |f: &str| Some(tls_dir.join(f)).filter(|p| p.is_file());
        Some(TlsMaterial {
            ca: file("ca.pem"),
            cert: file("cert.pem"),
            key: file("key.pem"),
            verify: !skip_verify,
        })
    } else {
        None
    };
    let host = if host.trim().is_empty() {
        DEFAULT_HOST.to_string()
    } else {
        parse_host(host, tls.is_some())?
    };
    Ok(Endpoint {
        host,
        tls,
        context: name.to_string(),
        source: format!("context `{name}` ({origin})"),
    })
}

/// The default context: `--host` / `DOCKER_HOST` and the TLS flags (docker/cli
/// `resolveDefaultDockerEndpoint` and `ClientOptions.SetDefaultOptions`).
fn default_endpoint(
    globals: &DockerGlobals,
    env: &BTreeMap<String, String>,
    origin: NameOrigin,
) -> Result<Endpoint, ContextError> {
    let verify = globals.tls_verify || var(env, "DOCKER_TLS_VERIFY").is_some();
    let tls_on = verify || globals.tls || var(env, "DOCKER_TLS").is_some();

    let (raw, mut source) = if let Some(h) = &globals.host {
        (h.as_str(), "--host flag".to_string())
    } else if let Some(h) = var(env, "DOCKER_HOST") {
        (h, "DOCKER_HOST".to_string())
    } else if tls_on {
        (
            "",
            "default TLS address (TLS is on, no host given)".to_string(),
        )
    } else {
        ("", "default socket".to_string())
    };
    let host = parse_host(raw, tls_on)?;
    if origin != NameOrigin::Implicit {
        source = format!("{source}; context `{DEFAULT_CONTEXT}` ({origin})");
    }

    let tls = if tls_on {
        Some(default_tls(globals, env, verify)?)
    } else {
        None
    };
    Ok(Endpoint {
        host,
        tls,
        context: DEFAULT_CONTEXT.to_string(),
        source,
    })
}

/// TLS files for the default context. The CA file must exist (Docker reads it whenever TLS is on);
/// a certificate or key named by a flag must exist; default ones are used only if they exist.
fn default_tls(
    globals: &DockerGlobals,
    env: &BTreeMap<String, String>,
    verify: bool,
) -> Result<TlsMaterial, ContextError> {
    // Docker computes the default directory before `--config` is applied, so `--config` does not move it.
    let (cert_dir, dir_origin) = match var(env, "DOCKER_CERT_PATH") {
        Some(dir) => (Ok(PathBuf::from(dir)), "DOCKER_CERT_PATH"),
        None => (env_config_dir(env), "default certificate directory"),
    };
    let pick = |flag: &Option<PathBuf>,
                flag_name: &str,
                file: &str,
                required: bool|
     -> Result<Option<PathBuf>, ContextError> {
        let (path, origin) = match flag {
            Some(p) => (trim_quotes(p), flag_name.to_string()),
            None => match &cert_dir {
                Ok(dir) => (dir.join(file), dir_origin.to_string()),
                Err(_) if !required => return Ok(None),
                Err(_) => return Err(ContextError::NoConfigDir),
            },
        };
        let explicit = flag.is_some();
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => Err(ContextError::TlsFile {
                path,
                origin,
                source: io::Error::other("is a directory"),
            }),
            Ok(_) => Ok(Some(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !explicit && !required => Ok(None),
            Err(source) => Err(ContextError::TlsFile {
                path,
                origin,
                source,
            }),
        }
    };
    Ok(TlsMaterial {
        ca: pick(&globals.tls_ca_cert, "--tlscacert", "ca.pem", true)?,
        cert: pick(&globals.tls_cert, "--tlscert", "cert.pem", false)?,
        key: pick(&globals.tls_key, "--tlskey", "key.pem", false)?,
        verify,
    })
}

/// Docker strips one pair of matching quotes from the `--tls*` flag values.
fn trim_quotes(p: &Path) -> PathBuf {
    let Some(s) = p.to_str() else {
        return p.to_path_buf();
    };
    for q in ['\'', '"'] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return PathBuf::from(&s[1..s.len() - 1]);
        }
    }
    p.to_path_buf()
}

fn invalid_host(host: &str, message: &str) -> ContextError {
    ContextError::InvalidHost {
        host: host.to_string(),
        message: message.to_string(),
    }
}

fn unsupported(host: &str, reason: &str) -> ContextError {
    ContextError::UnsupportedScheme {
        host: host.to_string(),
        reason: reason.to_string(),
    }
}

/// Normalizes an engine address as docker/cli `opts.ParseHost` does: `unix://` → the default socket,
/// `tcp://host` → port 2375, `host:port` and `:port` → `tcp://`, a path (`/…`, `./…`) → `unix://`, an
/// empty address → the default socket (or `tcp://localhost:2376` with TLS). `ssh://` is checked as
/// Docker's ssh connection helper does. `npipe://` and `fd://` cannot be used from here.
pub fn parse_host(val: &str, default_to_tls: bool) -> Result<String, ContextError> {
    let addr = val.trim();
    if addr.is_empty() {
        return Ok(if default_to_tls {
            DEFAULT_TLS_HOST
        } else {
            DEFAULT_HOST
        }
        .to_string());
    }
    let (proto, rest) = match addr.split_once("://") {
        Some((p, r)) => (p, r),
        None if addr.starts_with('/') || addr.starts_with("./") => ("unix", addr),
        None => ("tcp", addr),
    };
    match proto {
        "tcp" => parse_tcp(rest, addr),
        "unix" => {
            let path = rest.strip_prefix("unix://").unwrap_or(rest);
            if path.contains("://") {
                return Err(invalid_host(addr, "invalid proto, expected unix"));
            }
            let path = if path.is_empty() {
                DEFAULT_UNIX_SOCKET
            } else {
                path
            };
            Ok(format!("unix://{path}"))
        }
        "ssh" => parse_ssh(addr).map(|_| addr.to_string()),
        "npipe" => Err(unsupported(
            addr,
            "named pipes (npipe://) exist only on Windows; use unix://, tcp:// or ssh://",
        )),
        "fd" => Err(unsupported(
            addr,
            "fd:// is a socket the engine itself listens on (systemd socket activation); \
             clients connect with unix://, tcp:// or ssh://",
        )),
        _ => Err(unsupported(addr, "expected unix://, tcp:// or ssh://")),
    }
}

/// docker/cli `opts.ParseTCPAddr` with the default `tcp://localhost:2375`.
fn parse_tcp(try_addr: &str, original: &str) -> Result<String, ContextError> {
    if try_addr.is_empty() {
        return Ok(format!("tcp://localhost:{DEFAULT_TCP_PORT}"));
    }
    let addr = try_addr.strip_prefix("tcp://").unwrap_or(try_addr);
    if addr.is_empty() || addr.contains("://") {
        return Err(invalid_host(original, "invalid proto, expected tcp"));
    }
    let mut addr = addr.to_string();
    if addr.ends_with("]:") {
        addr.push_str(&DEFAULT_TCP_PORT.to_string());
    }
    // What Go's url.Parse("tcp://" + addr) keeps: the authority without user info, and the path.
    let end = addr.find(['/', '?', '#']).unwrap_or(addr.len());
    let (authority, tail) = addr.split_at(end);
    let path = if tail.starts_with('/') {
        tail.split(['?', '#']).next().unwrap_or("")
    } else {
        ""
    };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if !authority.chars().all(is_host_char) {
        return Err(invalid_host(original, "invalid character in host name"));
    }
    let (host, port) = match split_host_port(authority) {
        Some((h, p)) => (h.to_string(), p.to_string()),
        None => {
            // "try port addition once": a host without a port (also a bare IPv6 address).
            if authority.starts_with('[') {
                return Err(invalid_host(original, "invalid bind address format"));
            }
            (authority.to_string(), DEFAULT_TCP_PORT.to_string())
        }
    };
    if host.contains(['[', ']']) {
        return Err(invalid_host(original, "invalid bind address format"));
    }
    let host = if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    };
    let port = if port.is_empty() {
        DEFAULT_TCP_PORT.to_string()
    } else {
        port
    };
    if port.parse::<u16>().is_err() {
        return Err(invalid_host(original, "invalid port"));
    }
    Ok(format!("tcp://{}{path}", join_host_port(&host, &port)))
}

fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:[]%".contains(c)
}

/// Go's `net.SplitHostPort`: `host:port` or `[v6]:port`; `None` when there is no port or it is ambiguous.
fn split_host_port(hostport: &str) -> Option<(&str, &str)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = hostport.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host, port))
}

fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

struct SshSpec {
    user: Option<String>,
    host: String,
    port: Option<u16>,
    path: String,
}

/// docker/cli `connhelper/ssh.ParseURL`: no password, a host, no query or fragment; a path is the
/// engine socket on the remote machine.
fn parse_ssh(addr: &str) -> Result<SshSpec, ContextError> {
    let bad = |m: &str| invalid_host(addr, &format!("invalid ssh URL: {m}"));
    let rest = addr
        .strip_prefix("ssh://")
        .ok_or_else(|| bad("expected ssh://"))?;
    if let Some((_, q)) = rest.split_once('?') {
        let q = q.split('#').next().unwrap_or("");
        if !q.is_empty() {
            return Err(bad(&format!("query parameters are not allowed: \"{q}\"")));
        }
    }
    if let Some((_, f)) = rest.split_once('#')
        && !f.is_empty()
    {
        return Err(bad(&format!("fragments are not allowed: \"{f}\"")));
    }
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if user.is_some_and(|u| u.contains(':')) {
        return Err(bad("plain-text password is not supported"));
    }
    let (host, port) = match split_host_port(hostport) {
        Some((h, p)) => (h, Some(p)),
        None => (hostport.trim_start_matches('[').trim_end_matches(']'), None),
    };
    if host.is_empty() {
        return Err(bad("hostname is empty"));
    }
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(p.parse::<u16>().map_err(|_| bad("invalid port"))?),
    };
    Ok(SshSpec {
        user: user.filter(|u| !u.is_empty()).map(str::to_string),
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::fs;

    /// A temp HOME with `.docker/` and an environment map pointing at it.
    struct Fixture {
        dir: tempfile::TempDir,
        env: BTreeMap<String, String>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join(".docker")).unwrap();
            let mut env = BTreeMap::new();
            env.insert("HOME".to_string(), dir.path().display().to_string());
            Fixture { dir, env }
        }

        fn config_dir(&self) -> PathBuf {
            self.dir.path().join(".docker")
        }

        fn set(&mut self, k: &str, v: &str) -> &mut Self {
            self.env.insert(k.to_string(), v.to_string());
            self
        }

        fn write_config(&self, text: &str) {
            fs::write(self.config_dir().join("config.json"), text).unwrap();
        }

        /// Writes a context the way `docker context create` does; docker 28.2 wrote exactly
        /// `{"Name":"tlsctx","Metadata":{},"Endpoints":{"docker":{"Host":"tcp://…","SkipTLSVerify":false}}}`.
        fn add_context(&self, config_dir: &Path, name: &str, host: &str, skip_verify: bool) {
            let dir = config_dir
                .join("contexts/meta")
                .join(context_dir_name(name));
            fs::create_dir_all(&dir).unwrap();
            let meta = serde_json::json!({
                "Name": name,
                "Metadata": {},
                "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": skip_verify}}
            });
            fs::write(dir.join("meta.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
        }

        fn add_context_tls(&self, config_dir: &Path, name: &str, files: &[&str]) -> PathBuf {
            let dir = config_dir
                .join("contexts/tls")
                .join(context_dir_name(name))
                .join("docker");
            fs::create_dir_all(&dir).unwrap();
            for f in files {
                fs::write(dir.join(f), format!("pem of {f}")).unwrap();
            }
            dir
        }

        fn resolve(&self, g: &DockerGlobals) -> Result<Endpoint, ContextError> {
            resolve(g, &self.env)
        }
    }

    fn globals() -> DockerGlobals {
        DockerGlobals::default()
    }

    fn with_host(h: &str) -> DockerGlobals {
        DockerGlobals {
            host: Some(h.to_string()),
            ..DockerGlobals::default()
        }
    }

    fn with_context(c: &str) -> DockerGlobals {
        DockerGlobals {
            context: Some(c.to_string()),
            ..DockerGlobals::default()
        }
    }

    #[test]
    fn nothing_configured_is_the_default_socket() {
        let f = Fixture::new();
        let ep = f.resolve(&globals()).unwrap();
        assert_eq!(ep.host, "unix:///var/run/docker.sock");
        assert_eq!(ep.context, "default");
        assert_eq!(ep.source, "default socket");
        assert_eq!(ep.tls, None);
    }

    #[test]
    fn context_and_host_together_conflict() {
        let f = Fixture::new();
        let g = DockerGlobals {
            host: Some("tcp://h:1".into()),
            context: Some("x".into()),
            ..globals()
        };
        assert!(matches!(f.resolve(&g), Err(ContextError::HostAndContext)));
    }

    #[test]
    fn context_flag_wins_over_docker_host_and_docker_context() {
        let mut f = Fixture::new();
        let cfg = f.config_dir();
        f.add_context(&cfg, "remote", "tcp://10.0.0.5:2375", false);
        f.add_context(&cfg, "other", "tcp://10.0.0.6:2375", false);
        f.set("DOCKER_HOST", "tcp://env:2375")
            .set("DOCKER_CONTEXT", "other");
        let ep = f.resolve(&with_context("remote")).unwrap();
        assert_eq!(ep.host, "tcp://10.0.0.5:2375");
        assert_eq!(ep.context, "remote");
        assert_eq!(ep.source, "context `remote` (--context)");
    }

    #[test]
    fn host_flag_wins_over_env_and_selects_default_context() {
        let mut f = Fixture::new();
        let cfg = f.config_dir();
        f.add_context(&cfg, "other", "tcp://10.0.0.6:2375", false);
        f.set("DOCKER_HOST", "tcp://env:2375")
            .set("DOCKER_CONTEXT", "other");
        let ep = f.resolve(&with_host("unix:///tmp/x.sock")).unwrap();
        assert_eq!(ep.host, "unix:///tmp/x.sock");
        assert_eq!(ep.context, "default");
        assert_eq!(ep.source, "--host flag");
    }

    #[test]
    fn docker_host_wins_over_docker_context_and_config() {
        let mut f = Fixture::new();
        let cfg = f.config_dir();
        f.add_context(&cfg, "other", "tcp://10.0.0.6:2375", false);
        f.write_config(r#"{"currentContext": "other"}"#);
        f.set("DOCKER_HOST", "tcp://env.example:2375")
            .set("DOCKER_CONTEXT", "other");
        let ep = f.resolve(&globals()).unwrap();
        assert_eq!(ep.host, "tcp://env.example:2375");
        assert_eq!(ep.context, "default");
        assert_eq!(ep.source, "DOCKER_HOST");
    }

    #[test]
    fn empty_docker_host_counts_as_unset() {
        let mut f = Fixture::new();
        let cfg = f.config_dir();
        f.add_context(&cfg, "other", "tcp://10.0.0.6:2375", false);
        f.set("DOCKER_HOST", "").set("DOCKER_CONTEXT", "other");
        let ep = f.resolve(&globals()).unwrap();
        assert_eq!(ep.context, "other");
    }

    #[test]
    fn docker_context_wins_over_config_json() {
        let mut f = Fixture::new();
        let cfg = f.config_dir();
        f.add_context(&cfg, "envctx", "ssh://me@env-host", false);
        f.add_context(&cfg, "cfgctx", "tcp://cfg:2375", false);
        f.write_config(r#"{"currentContext": "cfgctx"}"#);
        f.set("DOCKER_CONTEXT", "envctx");
        let ep = f.resolve(&globals()).unwrap();
        assert_eq!(ep.host, "ssh://me@env-host");
        assert_eq!(ep.source, "context `envctx` (DOCKER_CONTEXT)");
    }

    #[test]
    fn config_json_current_context_is_used_last() {
        let f = Fixture::new();
        let cfg = f.config_dir();
        f.add_context(&cfg, "cfgctx", "tcp://cfg:2375", false);
        f.write_config(r#"{"auths": {}, "currentContext": "cfgctx", "psFormat": "x"}"#);
        let ep = f.resolve(&globals()).unwrap();
        assert_eq!(ep.host, "tcp://cfg:2375");
        assert_eq!(ep.context, "cfgctx");
        assert_eq!(ep.source, "context `cfgctx` (config.json)");
    }

    #[test]
    fn config_json_keys_match_ignoring_case_like_go() {
        let f = Fixture::new();
        let cfg = f.config_dir();
        f.add_context(&cfg, "c1", "tcp://c1:2375", false);
        f.write_config(r#"{"CurrentContext": "c1"}"#);
        assert_eq!(f.resolve(&globals()).unwrap().context, "c1");
    }

    #[test]
    fn missing_config_json_is_fine_and_empty_current_context_is_default() {
        let f = Fixture::new();
        assert_eq!(f.resolve(&globals()).unwrap().context, "default");
        f.write_config(r#"{"currentContext": ""}"#);
        assert_eq!(f.resolve(&globals()).unwrap().context, "default");
        f.write_config("");
        assert_eq!(f.resolve(&globals()).unwrap().context, "default");
    }

    #[test]
    fn invalid_config_json_is_an_error_naming_the_file() {
        let f = Fixture::new();
        f.write_config("{bad");
        let err = f.resolve(&globals()).unwrap_err();
        let ContextError::InvalidConfig { path, .. } = &err else {
            panic!("expected InvalidConfig, got {err:?}");
        };
        assert_eq!(path, &f.config_dir().join("config.json"));
        f.write_config(r#"{"currentContext": 3}"#);
        assert!(matches!(
            f.resolve(&globals()),
            Err(ContextError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn invalid_config_json_is_not_read_when_the_context_is_already_chosen() {
        let f = Fixture::new();
        f.write_config("{bad");
        let ep = f.resolve(&with_host("tcp://h:1")).unwrap();
        assert_eq!(ep.host, "tcp://h:1");
    }

    #[test]
    fn the_name_default_is_the_default_context_from_every_source() {
        let mut f = Fixture::new();
        let ep = f.resolve(&with_context("default")).unwrap();
        assert_eq!(ep.host, DEFAULT_HOST);
        assert_eq!(ep.source, "default socket; context `default` (--context)");
        f.set("DOCKER_CONTEXT", "default");
        assert_eq!(f.resolve(&globals()).unwrap().context, "default");
        f.env.remove("DOCKER_CONTEXT");
        f.write_config(r#"{"currentContext": "default"}"#);
        let ep = f.resolve(&globals()).unwrap();
        assert_eq!(ep.context, "default");
        assert_eq!(ep.source, "default socket; context `default` (config.json)");
    }

    #[test]
    fn context_default_still_uses_docker_host() {
        let mut f = Fixture::new();
        f.set("DOCKER_HOST", "tcp://1.2.3.4:2375");
        let ep = f.resolve(&with_context("default")).unwrap();
        assert_eq!(ep.host, "tcp://1.2.3.4:2375");
        assert_eq!(ep.source, "DOCKER_HOST; context `default` (--context)");
    }

    #[test]
    fn missing_named_context_is_not_found_with_its_origin() {
        let mut f = Fixture::new();
        let err = f.resolve(&with_context("nope")).unwrap_err();
        let ContextError::NotFound {
            name,
            chosen_by,
            path,
        } = &err
        else {
            panic!("expected NotFound, got {err:?}");
        };
        assert_eq!(name, "nope");
        assert_eq!(chosen_by, "--context");
        assert_eq!(
            path,
            &f.config_dir()
                .join("contexts/meta")
                .join(context_dir_name("nope"))
                .join("meta.json")
        );
        f.set("DOCKER_CONTEXT", "nope");
        let err = f.resolve(&globals()).unwrap_err();
        assert!(err.to_string().contains("(from DOCKER_CONTEXT)"), "{err}");
    }

    #[test]
    fn missing_current_context_from_config_json_is_an_error_too() {
        let f = Fixture::new();
        f.write_config(r#"{"currentContext": "gone"}"#);
        let err = f.resolve(&globals()).unwrap_err();
        assert!(
            matches!(&err, ContextError::NotFound { name, .. } if name == "gone"),
            "{err:?}"
        );
        assert!(err.to_string().contains("`currentContext` in"), "{err}");
    }

    #[test]
    fn invalid_meta_json_is_reported() {
        let f = Fixture::new();
        let dir = f
            .config_dir()
            .join("contexts/meta")
            .join(context_dir_name("broken"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("meta.json"), "not json").unwrap();
        assert!(matches!(
            f.resolve(&with_context("broken")),
            Err(ContextError::InvalidMeta { .. })
        ));
        fs::write(
            dir.join("meta.json"),
            r#"{"Name":"broken","Endpoints":{"kubernetes":{}}}"#,
        )
        .unwrap();
        let err = f.resolve(&with_context("broken")).unwrap_err();
        assert!(err.to_string().contains("no docker endpoint"), "{err}");
    }

    #[test]
    fn context_directory_is_the_sha256_of_the_name() {
        // docker 28.2 reported `contexts/meta/ca3704aa…dce/meta.json` for `DOCKER_CONTEXT=nope`.
        assert_eq!(
            context_dir_name("nope"),
            "ca3704aa0b06f5954c79ee837faa152d84d6b2d42838f0637a15eda8337dbdce"
        );
        assert_eq!(
            context_dir_name("remote"),
            "b71199ebd070b36beab7317920c2c2f1d777df8d05e5527d8458fda57cb17a7a"
        );
    }

    #[test]
    fn config_flag_moves_the_context_store_and_config_json() {
        let f = Fixture::new();
        let other = f.dir.path().join("elsewhere");
        fs::create_dir_all(&other).unwrap();
        f.add_context(&other, "there", "tcp://there:2375", false);
        fs::write(other.join("config.json"), r#"{"currentContext":"there"}"#).unwrap();
        let g = DockerGlobals {
            config: Some(other.clone()),
            ..globals()
        };
        let ep = f.resolve(&g).unwrap();
        assert_eq!(ep.host, "tcp://there:2375");
        // and without the flag, the same store is not seen
        assert_eq!(f.resolve(&globals()).unwrap().context, "default");
    }

    #[test]
    fn docker_config_env_moves_the_store_and_flag_wins_over_it() {
        let mut f = Fixture::new();
        let env_dir = f.dir.path().join("envcfg");
        let flag_dir = f.dir.path().join("flagcfg");
        f.add_context(&env_dir, "c", "tcp://from-env:2375", false);
        f.add_context(&flag_dir, "c", "tcp://from-flag:2375", false);
        f.set("DOCKER_CONFIG", env_dir.to_str().unwrap());
        assert_eq!(
            f.resolve(&with_context("c")).unwrap().host,
            "tcp://from-env:2375"
        );
        let g = DockerGlobals {
            config: Some(flag_dir),
            context: Some("c".into()),
            ..globals()
        };
        assert_eq!(f.resolve(&g).unwrap().host, "tcp://from-flag:2375");
    }

    #[test]
    fn no_home_and_no_docker_config_is_an_error() {
        let env = BTreeMap::new();
        assert!(matches!(
            resolve(&globals(), &env),
            Err(ContextError::NoConfigDir)
        ));
    }

    #[test]
    fn named_context_tls_files_come_from_the_tls_store() {
        let f = Fixture::new();
        let cfg = f.config_dir();
        f.add_context(&cfg, "secure", "tcp://secure.example:2376", false);
        let tls_dir = f.add_context_tls(&cfg, "secure", &["ca.pem", "cert.pem", "key.pem"]);
        let ep = f.resolve(&with_context("secure")).unwrap();
        assert_eq!(
            ep.tls,
            Some(TlsMaterial {
                ca: Some(tls_dir.join("ca.pem")),
                cert: Some(tls_dir.join("cert.pem")),
                key: Some(tls_dir.join("key.pem")),
                verify: true,
            })
        );
    }

    #[test]
    fn named_context_with_some_tls_files_has_only_those() {
        let f = Fixture::new();
        let cfg = f.config_dir();
        f.add_context(&cfg, "caonly", "tcp://h:2376", false);
        let tls_dir = f.add_context_tls(&cfg, "caonly", &["ca.pem"]);
        let tls = f.resolve(&with_context("caonly")).unwrap().tls.unwrap();
        assert_eq!(tls.ca, Some(tls_dir.join("ca.pem")));
        assert_eq!((tls.cert, tls.key), (None, None));
        assert!(tls.verify);
    }

    #[test]
    fn named_context_without_tls_dir_is_plain_unless_skip_verify() {
        let f = Fixture::new();
        let cfg = f.config_dir();
        f.add_context(&cfg, "plain", "tcp://h:2375", false);
        assert_eq!(f.resolve(&with_context("plain")).unwrap().tls, None);
        f.add_context(&cfg, "skip", "tcp://h:2376", true);
        assert_eq!(
            f.resolve(&with_context("skip")).unwrap().tls,
            Some(TlsMaterial {
                verify: false,
                ..TlsMaterial::default()
            })
        );
    }

    #[test]
    fn context_meta_keys_match_ignoring_case_like_go() {
        let f = Fixture::new();
        let dir = f
            .config_dir()
            .join("contexts/meta")
            .join(context_dir_name("lc"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("meta.json"),
            r#"{"name":"lc","endpoints":{"docker":{"host":"tcp://lc:2375","skipTLSVerify":true}}}"#,
        )
        .unwrap();
        let ep = f.resolve(&with_context("lc")).unwrap();
        assert_eq!(ep.host, "tcp://lc:2375");
        assert_eq!(ep.tls.map(|t| t.verify), Some(false));
    }

    fn write_certs(dir: &Path, files: &[&str]) {
        fs::create_dir_all(dir).unwrap();
        for f in files {
            fs::write(dir.join(f), "pem").unwrap();
        }
    }

    #[test]
    fn tls_is_off_without_tls_flags_or_env() {
        let f = Fixture::new();
        write_certs(&f.config_dir(), &["ca.pem", "cert.pem", "key.pem"]);
        assert_eq!(f.resolve(&with_host("tcp://h:2376")).unwrap().tls, None);
    }

    #[test]
    fn tlsverify_flag_uses_default_cert_files_in_the_config_dir() {
        let f = Fixture::new();
        let cfg = f.config_dir();
        write_certs(&cfg, &["ca.pem", "cert.pem", "key.pem"]);
        let g = DockerGlobals {
            tls_verify: true,
            ..with_host("tcp://h:2376")
        };
        let ep = f.resolve(&g).unwrap();
        assert_eq!(
            ep.tls,
            Some(TlsMaterial {
                ca: Some(cfg.join("ca.pem")),
                cert: Some(cfg.join("cert.pem")),
                key: Some(cfg.join("key.pem")),
                verify: true,
            })
        );
    }

    #[test]
    fn tls_flag_alone_turns_tls_on_without_verification() {
        let f = Fixture::new();
        write_certs(&f.config_dir(), &["ca.pem"]);
        let g = DockerGlobals {
            tls: true,
            ..with_host("tcp://h:2376")
        };
        let tls = f.resolve(&g).unwrap().tls.unwrap();
        assert!(!tls.verify);
        assert_eq!(tls.ca, Some(f.config_dir().join("ca.pem")));
        // missing default cert and key are dropped, as Docker does
        assert_eq!((tls.cert, tls.key), (None, None));
    }

    #[test]
    fn docker_tls_verify_and_docker_tls_env_turn_tls_on() {
        let mut f = Fixture::new();
        write_certs(&f.config_dir(), &["ca.pem"]);
        f.set("DOCKER_HOST", "tcp://h:2376");
        f.set("DOCKER_TLS_VERIFY", "1");
        assert_eq!(
            f.resolve(&globals()).unwrap().tls.map(|t| t.verify),
            Some(true)
        );
        f.env.remove("DOCKER_TLS_VERIFY");
        f.set("DOCKER_TLS", "1");
        assert_eq!(
            f.resolve(&globals()).unwrap().tls.map(|t| t.verify),
            Some(false)
        );
        f.set("DOCKER_TLS", "");
        assert_eq!(f.resolve(&globals()).unwrap().tls, None);
    }

    #[test]
    fn docker_cert_path_wins_over_the_config_dir() {
        let mut f = Fixture::new();
        write_certs(&f.config_dir(), &["ca.pem", "cert.pem", "key.pem"]);
        let certs = f.dir.path().join("certs");
        write_certs(&certs, &["ca.pem", "cert.pem", "key.pem"]);
        f.set("DOCKER_CERT_PATH", certs.to_str().unwrap())
            .set("DOCKER_TLS_VERIFY", "1");
        let tls = f.resolve(&with_host("tcp://h:2376")).unwrap().tls.unwrap();
        assert_eq!(tls.ca, Some(certs.join("ca.pem")));
        assert_eq!(tls.cert, Some(certs.join("cert.pem")));
        assert_eq!(tls.key, Some(certs.join("key.pem")));
    }

    #[test]
    fn tls_flags_win_over_docker_cert_path() {
        let mut f = Fixture::new();
        let certs = f.dir.path().join("certs");
        write_certs(&certs, &["ca.pem", "cert.pem", "key.pem"]);
        let mine = f.dir.path().join("mine");
        write_certs(&mine, &["myca.pem", "mycert.pem", "mykey.pem"]);
        f.set("DOCKER_CERT_PATH", certs.to_str().unwrap());
        let g = DockerGlobals {
            tls_verify: true,
            tls_ca_cert: Some(mine.join("myca.pem")),
            tls_cert: Some(mine.join("mycert.pem")),
            tls_key: Some(mine.join("mykey.pem")),
            ..with_host("tcp://h:2376")
        };
        let tls = f.resolve(&g).unwrap().tls.unwrap();
        assert_eq!(tls.ca, Some(mine.join("myca.pem")));
        assert_eq!(tls.cert, Some(mine.join("mycert.pem")));
        assert_eq!(tls.key, Some(mine.join("mykey.pem")));
    }

    #[test]
    fn config_flag_does_not_move_the_default_cert_dir() {
        // Docker fixes the default certificate directory before it reads --config.
        let f = Fixture::new();
        write_certs(&f.config_dir(), &["ca.pem"]);
        let other = f.dir.path().join("other");
        write_certs(&other, &["ca.pem"]);
        let g = DockerGlobals {
            config: Some(other),
            tls_verify: true,
            ..with_host("tcp://h:2376")
        };
        let tls = f.resolve(&g).unwrap().tls.unwrap();
        assert_eq!(tls.ca, Some(f.config_dir().join("ca.pem")));
    }

    #[test]
    fn missing_ca_is_an_error_when_tls_is_on() {
        let f = Fixture::new();
        let g = DockerGlobals {
            tls_verify: true,
            ..with_host("tcp://h:2376")
        };
        let err = f.resolve(&g).unwrap_err();
        let ContextError::TlsFile { path, origin, .. } = &err else {
            panic!("expected TlsFile, got {err:?}");
        };
        assert_eq!(path, &f.config_dir().join("ca.pem"));
        assert_eq!(origin, "default certificate directory");
    }

    #[test]
    fn missing_file_named_by_a_flag_is_an_error() {
        let f = Fixture::new();
        write_certs(&f.config_dir(), &["ca.pem"]);
        let g = DockerGlobals {
            tls_verify: true,
            tls_cert: Some(f.dir.path().join("nope.pem")),
            ..with_host("tcp://h:2376")
        };
        let err = f.resolve(&g).unwrap_err();
        assert!(
            matches!(&err, ContextError::TlsFile { origin, .. } if origin == "--tlscert"),
            "{err:?}"
        );
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }

    #[test]
    fn tls_flag_values_lose_surrounding_quotes() {
        let f = Fixture::new();
        write_certs(&f.config_dir(), &["ca.pem"]);
        let quoted = format!("\"{}\"", f.config_dir().join("ca.pem").display());
        let g = DockerGlobals {
            tls: true,
            tls_ca_cert: Some(PathBuf::from(quoted)),
            ..with_host("tcp://h:2376")
        };
        let tls = f.resolve(&g).unwrap().tls.unwrap();
        assert_eq!(tls.ca, Some(f.config_dir().join("ca.pem")));
    }

    #[test]
    fn tls_without_any_host_goes_to_localhost_2376() {
        let f = Fixture::new();
        write_certs(&f.config_dir(), &["ca.pem"]);
        let g = DockerGlobals {
            tls_verify: true,
            ..globals()
        };
        let ep = f.resolve(&g).unwrap();
        assert_eq!(ep.host, "tcp://localhost:2376");
        assert!(
            ep.source.starts_with("default TLS address"),
            "{}",
            ep.source
        );
    }

    #[test]
    fn host_parsing_follows_docker() {
        let table: &[(&str, bool, &str)] = &[
            ("", false, "unix:///var/run/docker.sock"),
            ("  ", false, "unix:///var/run/docker.sock"),
            ("", true, "tcp://localhost:2376"),
            ("unix://", false, "unix:///var/run/docker.sock"),
            ("unix:///run/docker.sock", false, "unix:///run/docker.sock"),
            ("unix://path/to/socket", false, "unix://path/to/socket"),
            (
                "/run/user/1000/docker.sock",
                false,
                "unix:///run/user/1000/docker.sock",
            ),
            ("./docker.sock", false, "unix://./docker.sock"),
            ("tcp://", false, "tcp://localhost:2375"),
            ("tcp://host:", false, "tcp://host:2375"),
            ("tcp://host", false, "tcp://host:2375"),
            // Docker adds 2375 to a host without port even with TLS; 2376 only when there is no host
            ("tcp://host", true, "tcp://host:2375"),
            ("tcp://:2376", false, "tcp://localhost:2376"),
            ("tcp://0.0.0.0:8080", false, "tcp://0.0.0.0:8080"),
            ("tcp://192.168:8080", false, "tcp://192.168:8080"),
            (" tcp://:7777/path ", false, "tcp://localhost:7777/path"),
            ("tcp://docker.com:2375", false, "tcp://docker.com:2375"),
            ("0.0.0.1:", false, "tcp://0.0.0.1:2375"),
            ("0.0.0.1:5555", false, "tcp://0.0.0.1:5555"),
            ("0.0.0.1:5555/path", false, "tcp://0.0.0.1:5555/path"),
            ("[::1]:", false, "tcp://[::1]:2375"),
            ("[::1]:5555/path", false, "tcp://[::1]:5555/path"),
            ("[0:0:0:0:0:0:0:1]:", false, "tcp://[0:0:0:0:0:0:0:1]:2375"),
            (":6666", false, "tcp://localhost:6666"),
            (":6666/path", false, "tcp://localhost:6666/path"),
            ("localhost:", false, "tcp://localhost:2375"),
            ("localhost:5555", false, "tcp://localhost:5555"),
            ("ssh://example.com", false, "ssh://example.com"),
            (
                "ssh://me@example.com:2222",
                false,
                "ssh://me@example.com:2222",
            ),
            (
                "ssh://me@example.com/run/docker.sock",
                false,
                "ssh://me@example.com/run/docker.sock",
            ),
        ];
        for (input, tls, want) in table {
            let got = parse_host(input, *tls);
            assert_eq!(
                got.as_deref().ok(),
                Some(*want),
                "parse_host({input:?}, tls={tls}) = {got:?}"
            );
        }
    }

    #[test]
    fn invalid_hosts_are_rejected() {
        for input in [
            "something with spaces",
            "://",
            "unknown://",
            "udp://127.0.0.1:2375",
            "tcp://:port",
            "tcp://invalid:port",
            "tcp://unix:///run/docker.sock",
            "unix://tcp://127.0.0.1",
            "ssh://",
            "ssh://me:secret@host",
            "ssh://host?x=1",
            "ssh://host#frag",
            "ssh://host:notaport",
        ] {
            let got = parse_host(input, false);
            assert!(
                matches!(
                    got,
                    Err(ContextError::InvalidHost { .. } | ContextError::UnsupportedScheme { .. })
                ),
                "parse_host({input:?}) = {got:?}"
            );
        }
    }

    #[test]
    fn npipe_and_fd_are_unsupported_with_a_reason() {
        for (input, needle) in [
            ("npipe:////./pipe/docker_engine", "Windows"),
            ("fd://", "systemd socket activation"),
        ] {
            let err = parse_host(input, false).unwrap_err();
            let ContextError::UnsupportedScheme { host, reason } = &err else {
                panic!("expected UnsupportedScheme for {input}, got {err:?}");
            };
            assert_eq!(host, input);
            assert!(reason.contains(needle), "{reason}");
        }
        let f = Fixture::new();
        assert!(matches!(
            f.resolve(&with_host("npipe://")),
            Err(ContextError::UnsupportedScheme { .. })
        ));
    }

    #[test]
    fn addresses_parse_into_parts() {
        let ep = |h: &str| Endpoint {
            host: h.to_string(),
            tls: None,
            context: "default".into(),
            source: "test".into(),
        };
        assert_eq!(
            ep("unix:///var/run/docker.sock").address().unwrap(),
            HostAddr::Unix(PathBuf::from("/var/run/docker.sock"))
        );
        assert_eq!(
            ep("tcp://[::1]:2376").address().unwrap(),
            HostAddr::Tcp {
                host: "::1".into(),
                port: 2376,
                path: String::new()
            }
        );
        assert_eq!(
            ep("tcp://h:2375/base/").address().unwrap(),
            HostAddr::Tcp {
                host: "h".into(),
                port: 2375,
                path: "/base".into()
            }
        );
        assert_eq!(
            ep("ssh://me@box:2222/run/docker.sock").address().unwrap(),
            HostAddr::Ssh {
                user: Some("me".into()),
                host: "box".into(),
                port: Some(2222),
                path: "/run/docker.sock".into()
            }
        );
        assert_eq!(
            ep("ssh://box").address().unwrap(),
            HostAddr::Ssh {
                user: None,
                host: "box".into(),
                port: None,
                path: String::new()
            }
        );
    }

    #[test]
    fn local_means_unix_or_loopback_tcp() {
        let ep = |h: &str| Endpoint {
            host: h.to_string(),
            tls: None,
            context: "default".into(),
            source: "test".into(),
        };
        for local in [
            "unix:///var/run/docker.sock",
            "tcp://127.0.0.1:2375",
            "tcp://localhost:2376",
            "tcp://LOCALHOST:2376",
            "tcp://[::1]:2375",
            "tcp://127.0.0.2:2375",
            "tcp://0.0.0.0:2375",
        ] {
            assert!(ep(local).is_local(), "{local} should be local");
        }
        for remote in [
            "tcp://10.0.0.5:2375",
            "tcp://docker.example.com:2376",
            "ssh://localhost",
            "ssh://me@server",
        ] {
            assert!(!ep(remote).is_local(), "{remote} should not be local");
        }
    }
}
