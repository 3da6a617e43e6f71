//! Connecting to the engine at a resolved [`Endpoint`]: unix, tcp (plain or TLS) and ssh, with a short
//! liveness check, API version negotiation and errors a person can act on.
//!
//! Transports:
//! - `unix://` and plain `tcp://` use bollard's own connectors.
//! - TLS `tcp://` uses a rustls configuration built here (through bollard's custom transport), because
//!   bollard's built-in TLS needs all three of CA, certificate and key and cannot skip verification,
//!   while Docker allows both. Decisions:
//!   - with verification, the CA file is the only trust root when given (as Docker's contexts do);
//!     without one (a context with only cert/key), the system's roots are used;
//!   - a client certificate is presented only when both `cert.pem` and `key.pem` are there;
//!   - `--tls` without `--tlsverify`, `DOCKER_TLS`, and contexts with `SkipTLSVerify` skip the server
//!     certificate check like Docker's `InsecureSkipVerify`, but handshake signatures are still verified.
//! - `ssh://` runs `ssh [-l USER] [-p PORT] -o ConnectTimeout=30 -T -- HOST docker system dial-stdio`
//!   for each connection, exactly the command Docker's connection helper runs (with
//!   `docker --host=unix://PATH system dial-stdio` when the URL has a path). bollard's own ssh connector
//!   is not used: it drops the port of `ssh://host:2222` and cannot name a remote socket.

use std::error::Error as StdError;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::{API_DEFAULT_VERSION, BollardRequest, Docker};
use hyper::body::Incoming;
use hyper::header::{HOST, HeaderValue};
use hyper::{Response, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::{ConnectFailure, EngineError};
use crate::context::{Endpoint, HostAddr, TlsMaterial};

/// bollard's default timeout for one request (seconds); kept for normal calls.
const DEFAULT_TIMEOUT_SECS: u64 = 120;
/// How long the first ping may take on a local or TCP endpoint.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// ssh needs a key exchange and a remote `docker` process first.
const SSH_PING_TIMEOUT: Duration = Duration::from_secs(15);
/// The request timeout of [`Engine::with_long_timeout`], for archive uploads that take as long as they
/// take (bollard's timeout covers a request until the response head arrives, so a whole upload).
pub const LONG_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// A connected engine.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) docker: Docker,
    pub(crate) endpoint: Endpoint,
}

/// What the engine says about itself (`GET /version`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineVersion {
    /// Engine release, e.g. `20.10.24+dfsg1`.
    pub version: String,
    /// Highest API version the engine speaks, e.g. `1.41`.
    pub api_version: String,
    /// `linux` or `windows`.
    pub os: String,
    /// `amd64`, `arm64`, …
    pub arch: String,
}

impl Engine {
    /// Connects to `endpoint`, checks that the engine answers, and negotiates the API version.
    pub async fn connect(endpoint: &Endpoint) -> Result<Engine, EngineError> {
        let timeout = match endpoint.address() {
            Ok(HostAddr::Ssh { .. }) => SSH_PING_TIMEOUT,
            _ => PING_TIMEOUT,
        };
        Engine::connect_with_ping_timeout(endpoint, timeout).await
    }

    async fn connect_with_ping_timeout(
        endpoint: &Endpoint,
        ping_timeout: Duration,
    ) -> Result<Engine, EngineError> {
        let docker = client_for(endpoint)?;
        let fail = |kind, message| EngineError::Connect {
            host: endpoint.host.clone(),
            message,
            kind,
        };
        let timed_out = || {
            fail(
                ConnectFailure::Timeout,
                format!("no answer within {} s", ping_timeout.as_secs_f32()),
            )
        };
        match tokio::time::timeout(ping_timeout, docker.ping()).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(e)) => {
                let (kind, message) = describe(&e);
                if matches!(kind, ConnectFailure::Protocol | ConnectFailure::Other)
                    && let Some(refusal) = tls_refusal(endpoint).await
                {
                    return Err(fail(ConnectFailure::Tls, describe_tls(&refusal)));
                }
                return Err(fail(kind, message));
            }
            Ok(Ok(_)) => {}
        }
        let docker = match tokio::time::timeout(ping_timeout, docker.negotiate_version()).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(e)) => {
                let (_, message) = describe(&e);
                return Err(fail(
                    ConnectFailure::Protocol,
                    format!("API version negotiation failed: {message}"),
                ));
            }
            Ok(Ok(d)) => d,
        };
        Ok(Engine {
            docker,
            endpoint: endpoint.clone(),
        })
    }

    /// The endpoint this engine was reached at.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The API version requests use after negotiation, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        let v = self.docker.client_version();
        format!("{}.{}", v.major_version, v.minor_version)
    }

    /// The engine's version, API version, OS and architecture.
    pub async fn version(&self) -> Result<EngineVersion, EngineError> {
        let v = self
            .docker
            .version()
            .await
            .map_err(|e| EngineError::api("read the engine version", &e))?;
        Ok(EngineVersion {
            version: v.version.unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
            os: v.os.unwrap_or_default(),
            arch: v.arch.unwrap_or_default(),
        })
    }

    /// True when the engine runs on this machine (a unix socket, or TCP to a loopback address or
    /// `localhost`), so host paths it reports can be read here.
    pub fn is_local(&self) -> bool {
        self.endpoint.is_local()
    }

    /// The same connection with a request timeout of `timeout` instead of bollard's 2 minutes.
    pub fn with_timeout(&self, timeout: Duration) -> Engine {
        Engine {
            docker: self.docker.clone().with_timeout(timeout),
            endpoint: self.endpoint.clone(),
        }
    }

    /// The same connection with a request timeout of [`LONG_TIMEOUT`], for long archive uploads.
    pub fn with_long_timeout(&self) -> Engine {
        self.with_timeout(LONG_TIMEOUT)
    }
}

/// A bollard client for `endpoint`; no I/O yet.
fn client_for(endpoint: &Endpoint) -> Result<Docker, EngineError> {
    let invalid = |message: String| EngineError::InvalidEndpoint {
        host: endpoint.host.clone(),
        message,
    };
    let addr = endpoint.address().map_err(|e| invalid(e.to_string()))?;
    match addr {
        HostAddr::Unix(path) => {
            let path_str = path.to_string_lossy();
            Docker::connect_with_unix(&path_str, DEFAULT_TIMEOUT_SECS, API_DEFAULT_VERSION).map_err(
                |e| {
                    let (kind, message) = describe(&e);
                    EngineError::Connect {
                        host: endpoint.host.clone(),
                        message,
                        kind,
                    }
                },
            )
        }
        HostAddr::Tcp { host, port, path } => {
            if !path.is_empty() {
                return Err(invalid(format!(
                    "a base path (`{path}`) in a tcp:// address is not supported"
                )));
            }
            let authority = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            match &endpoint.tls {
                None => Docker::connect_with_http(
                    &format!("tcp://{authority}"),
                    DEFAULT_TIMEOUT_SECS,
                    API_DEFAULT_VERSION,
                )
                .map_err(|e| invalid(describe(&e).1)),
                Some(tls) => {
                    let config = tls_config(tls).map_err(invalid)?;
                    tls_client(config, &authority).map_err(|e| invalid(describe(&e).1))
                }
            }
        }
        HostAddr::Ssh {
            user,
            host,
            port,
            path,
        } => {
            let args = ssh_args(user.as_deref(), &host, port, &path);
            ssh_client(args).map_err(|e| invalid(describe(&e).1))
        }
    }
}

/// Why a TLS engine closed the connection, when the request's own error does not say: with TLS 1.3 an
/// engine that requires a client certificate sends its refusal after the handshake has completed, and the
/// request then fails as a closed connection or not at all as a TLS error, depending on timing. A fresh
/// connection that only reads gets the engine's alert. `None` when the endpoint is not TLS or this finds
/// nothing.
async fn tls_refusal(endpoint: &Endpoint) -> Option<rustls::Error> {
    let tls = endpoint.tls.as_ref()?;
    let HostAddr::Tcp { host, port, .. } = endpoint.address().ok()? else {
        return None;
    };
    let config = tls_config(tls).ok()?;
    let name = ServerName::try_from(host.clone()).ok()?;
    let probe = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        let mut byte = [0u8; 1];
        stream.read(&mut byte).await.map(|_| ())
    };
    let failed = tokio::time::timeout(Duration::from_secs(2), probe)
        .await
        .ok()?
        .err()?;
    failed.get_ref()?.downcast_ref::<rustls::Error>().cloned()
}

/// A client whose requests go through rustls with `config`.
fn tls_client(config: rustls::ClientConfig, authority: &str) -> Result<Docker, BollardError> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnector::from((http, config));
    let mut builder = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
    // like bollard's own transports: a connection per request
    builder.pool_max_idle_per_host(0);
    let client = Arc::new(builder.build(https));
    Docker::connect_with_custom_transport(
        move |req: BollardRequest| {
            let client = Arc::clone(&client);
            async move { client.request(req).await.map_err(BollardError::from) }
        },
        Some(format!("https://{authority}")),
        DEFAULT_TIMEOUT_SECS,
        API_DEFAULT_VERSION,
    )
}

/// The rustls configuration for `tls` (see the module documentation for the decisions).
fn tls_config(tls: &TlsMaterial) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let builder = if tls.verify {
        let mut roots = RootCertStore::empty();
        match &tls.ca {
            Some(ca) => {
                for cert in read_certs(ca, "CA certificate")? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("invalid CA certificate `{}`: {e}", ca.display()))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    // a system store with a few unusable certificates still serves
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(
                        "TLS verification needs a CA certificate (ca.pem), and the system \
                                has no trusted roots"
                            .to_string(),
                    );
                }
            }
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipServerVerification(provider)))
    };
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let certs = read_certs(cert, "client certificate")?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
                rustls_pki_types::pem::Error::NoItemsFound => format!(
                    "no private key in `{}` (encrypted keys are not supported)",
                    key.display()
                ),
                e => format!("cannot read private key `{}`: {e}", key.display()),
            })?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| format!("invalid client certificate or key: {e}"))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read {what} `{}`: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "no certificate in {what} `{}` (expected PEM)",
            path.display()
        ));
    }
    Ok(certs)
}

/// Docker's `InsecureSkipVerify`: any server certificate is accepted, but the handshake signatures are
/// still checked, so the connection is encrypted to whoever holds that certificate's key.
#[derive(Debug)]
struct SkipServerVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The arguments Docker's ssh connection helper gives `ssh`.
fn ssh_args(user: Option<&str>, host: &str, port: Option<u16>, path: &str) -> Vec<String> {
    let mut args: Vec<String> = ["-o", "ConnectTimeout=30", "-T"].map(String::from).to_vec();
    if let Some(user) = user {
        args.extend(["-l".to_string(), user.to_string()]);
    }
    if let Some(port) = port {
        args.extend(["-p".to_string(), port.to_string()]);
    }
    args.extend(["--".to_string(), host.to_string(), "docker".to_string()]);
    if !path.trim_matches('/').is_empty() {
        // ssh hands the command to the remote shell: quote the socket path for it
        args.push(shell_quote(&format!("--host=unix://{path}")));
    }
    args.extend(["system".to_string(), "dial-stdio".to_string()]);
    args
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A client whose connections are `ssh … docker system dial-stdio` processes.
fn ssh_client(args: Vec<String>) -> Result<Docker, BollardError> {
    let args = Arc::new(args);
    Docker::connect_with_custom_transport(
        move |req: BollardRequest| {
            let args = Arc::clone(&args);
            async move { ssh_request(&args, req).await }
        },
        Some("http://docker"),
        DEFAULT_TIMEOUT_SECS,
        API_DEFAULT_VERSION,
    )
}

/// ssh's own words when it could not connect or run the remote command.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SshFailure(String);

fn ssh_failure(message: String) -> BollardError {
    BollardError::IOError {
        err: io::Error::other(SshFailure(message)),
    }
}

async fn ssh_request(
    args: &[String],
    req: BollardRequest,
) -> Result<Response<Incoming>, BollardError> {
    let mut child = Command::new("ssh")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ssh_failure(format!("cannot run `ssh`: {e}")))?;
    let (Some(stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(ssh_failure("cannot talk to `ssh`: no pipes".to_string()));
    };
    // Keep what ssh (or the remote docker) says, to explain a failure.
    let (said_tx, said_rx) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut buf).await;
        let _ = said_tx.send(String::from_utf8_lossy(&buf).trim().to_string());
    });
    let stream = ChildStream {
        _child: child,
        stdin,
        stdout,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // the process lives as long as the connection (or the upgraded stream) does
        let _ = conn.with_upgrades().await;
    });
    let (mut parts, body) = req.into_parts();
    if let Some(pq) = parts.uri.path_and_query()
        && let Ok(origin) = Uri::try_from(pq.as_str())
    {
        parts.uri = origin;
    }
    parts
        .headers
        .insert(HOST, HeaderValue::from_static("docker"));
    match sender
        .send_request(hyper::Request::from_parts(parts, body))
        .await
    {
        Ok(resp) => Ok(resp),
        Err(e) => {
            let said = tokio::time::timeout(Duration::from_secs(3), said_rx)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            // ssh's notices about known_hosts are not the reason
            let said: Vec<&str> = said
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
                .collect();
            if said.is_empty() {
                Err(BollardError::from(e))
            } else {
                let said = said.join("; ");
                Err(ssh_failure(if said.starts_with("ssh:") {
                    said
                } else {
                    format!("ssh: {said}")
                }))
            }
        }
    }
}

/// The pipes of an `ssh` process as one byte stream; the process is killed when it is dropped.
struct ChildStream {
    _child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

impl AsyncRead for ChildStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stdout).poll_read(cx, buf)
    }
}

impl AsyncWrite for ChildStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stdin).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stdin).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stdin).poll_shutdown(cx)
    }
}

/// Turns a bollard error into a kind and a sentence, looking through its causes for the I/O, TLS or ssh
/// error underneath. Never a Debug dump.
pub(crate) fn describe(err: &BollardError) -> (ConnectFailure, String) {
    match err {
        BollardError::SocketNotFoundError(path) => {
            return (ConnectFailure::NoSocket, format!("no such socket `{path}`"));
        }
        BollardError::RequestTimeoutError => {
            return (
                ConnectFailure::Timeout,
                "the engine did not answer in time".to_string(),
            );
        }
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => {
            if message.contains("HTTP request to an HTTPS server") {
                return (
                    ConnectFailure::Tls,
                    "the engine expects TLS: use --tlsverify (or --tls), or set DOCKER_TLS_VERIFY=1"
                        .to_string(),
                );
            }
            let message = message.trim();
            let message = if message.is_empty() {
                "(no message)".to_string()
            } else if message.starts_with('<') {
                "an HTML page; is this a Docker engine?".to_string()
            } else {
                let line = message.lines().next().unwrap_or_default();
                match line.char_indices().nth(300) {
                    Some((i, _)) => format!("{}…", &line[..i]),
                    None => line.to_string(),
                }
            };
            return (
                ConnectFailure::Protocol,
                format!("the engine answered {status_code}: {message}"),
            );
        }
        _ => {}
    }
    // bollard's transparent variants hide the error they wrap from source(); start from that one
    let mut cause: Option<&(dyn StdError + 'static)> = match err {
        BollardError::IOError { err } => Some(err),
        BollardError::HyperResponseError { err } => Some(err),
        err => Some(err),
    };
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return (ConnectFailure::Tls, describe_tls(tls));
        }
        if let Some(io_err) = e.downcast_ref::<io::Error>() {
            if let Some(inner) = io_err.get_ref() {
                if let Some(ssh) = inner.downcast_ref::<SshFailure>() {
                    return (ConnectFailure::Ssh, ssh.0.clone());
                }
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return (ConnectFailure::Tls, describe_tls(tls));
                }
            }
            if let Some(found) = describe_io(io_err) {
                return found;
            }
            // io::Error::source() skips the error it wraps; look at that one next
            if let Some(inner) = io_err.get_ref() {
                cause = Some(inner);
                continue;
            }
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && h.is_incomplete_message()
        {
            return (
                ConnectFailure::Protocol,
                "the connection closed before the engine answered (a TLS engine reached without \
                 TLS, or not a Docker engine?)"
                    .to_string(),
            );
        }
        cause = e.source();
    }
    (ConnectFailure::Other, flatten(err))
}

fn describe_io(e: &io::Error) -> Option<(ConnectFailure, String)> {
    use io::ErrorKind::*;
    Some(match e.kind() {
        NotFound => (ConnectFailure::NoSocket, "no such socket".to_string()),
        PermissionDenied => (
            ConnectFailure::PermissionDenied,
            "permission denied (is this user in the `docker` group?)".to_string(),
        ),
        ConnectionRefused => (
            ConnectFailure::Refused,
            "connection refused (nothing listens there)".to_string(),
        ),
        TimedOut => (ConnectFailure::Timeout, "connection timed out".to_string()),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => (
            ConnectFailure::Protocol,
            format!("the connection was closed: {e}"),
        ),
        _ => return None,
    })
}

fn describe_tls(e: &rustls::Error) -> String {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "TLS: the engine's certificate is not signed by the trusted CA (check --tlscacert, \
             DOCKER_CERT_PATH or the context's ca.pem)"
                .to_string()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "TLS: the engine's certificate is not valid for this host name or address".to_string(),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "TLS: the engine's certificate has expired".to_string(),
        rustls::Error::AlertReceived(
            A::BadCertificate | A::CertificateRequired | A::UnknownCA | A::CertificateUnknown,
        ) => {
            "TLS: the engine refused the client certificate; it probably runs with --tlsverify and \
              needs cert.pem and key.pem signed by its CA (--tlscert/--tlskey or DOCKER_CERT_PATH)"
                .to_string()
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            format!("TLS handshake failed ({e}); does the engine at this address speak TLS?")
        }
        e => format!("TLS handshake failed: {e}"),
    }
}

/// "a: b: c" from an error and its causes, without repeating a cause a message already includes.
fn flatten(err: &dyn StdError) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = e.source();
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cli::DockerGlobals;
    use std::collections::BTreeMap;

    fn endpoint(host: &str, tls: Option<TlsMaterial>) -> Endpoint {
        Endpoint {
            host: host.to_string(),
            tls,
            context: "default".to_string(),
            source: "test".to_string(),
        }
    }

    /// The engine `docker` itself would use from this environment (the test environment always has one).
    fn local_endpoint() -> Endpoint {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        crate::context::resolve(&DockerGlobals::default(), &env).unwrap()
    }

    #[tokio::test]
    async fn connects_to_the_local_engine_and_reads_its_version() {
        let ep = local_endpoint();
        let engine = Engine::connect(&ep)
            .await
            .unwrap_or_else(|e| panic!("no engine reachable at {}: {e}", ep.host));
        let v = engine.version().await.unwrap();
        assert_eq!(v.os, "linux");
        assert!(!v.version.is_empty());
        assert!(!v.arch.is_empty());
        // negotiation never asks for more than the engine speaks
        let parse = |s: &str| -> (u32, u32) {
            let (a, b) = s.split_once('.').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        };
        assert!(parse(&engine.api_version()) <= parse(&v.api_version));
        assert_eq!(engine.endpoint(), &ep);
    }

    #[tokio::test]
    async fn long_timeout_is_a_separate_client() {
        let engine = Engine::connect(&local_endpoint()).await.unwrap();
        let long = engine.with_long_timeout();
        assert_eq!(long.docker.timeout(), LONG_TIMEOUT);
        assert_eq!(
            engine.docker.timeout(),
            Duration::from_secs(DEFAULT_TIMEOUT_SECS)
        );
        // and it still works
        assert_eq!(long.version().await.unwrap().os, "linux");
    }

    #[tokio::test]
    async fn missing_unix_socket_is_a_connect_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("nope.sock");
        let ep = endpoint(&format!("unix://{}", sock.display()), None);
        let err = Engine::connect(&ep).await.unwrap_err();
        assert_eq!(err.connect_failure(), Some(ConnectFailure::NoSocket));
        let EngineError::Connect { host, message, .. } = &err else {
            panic!("expected Connect, got {err:?}");
        };
        assert_eq!(host, &ep.host);
        assert!(
            message.contains(&sock.display().to_string()),
            "message does not name the socket: {message}"
        );
        assert!(!err.to_string().contains("SocketNotFoundError"), "{err}");
    }

    #[tokio::test]
    async fn socket_without_listener_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("dead.sock");
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        let ep = endpoint(&format!("unix://{}", sock.display()), None);
        let err = Engine::connect(&ep).await.unwrap_err();
        assert_eq!(
            err.connect_failure(),
            Some(ConnectFailure::Refused),
            "{err}"
        );
        assert!(err.to_string().contains("connection refused"), "{err}");
    }

    #[tokio::test]
    async fn tcp_port_without_listener_is_refused() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let ep = endpoint(&format!("tcp://127.0.0.1:{port}"), None);
        let err = Engine::connect(&ep).await.unwrap_err();
        assert_eq!(
            err.connect_failure(),
            Some(ConnectFailure::Refused),
            "{err}"
        );
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s); // accept and never answer
            }
        });
        let ep = endpoint(&format!("tcp://127.0.0.1:{port}"), None);
        let err = Engine::connect_with_ping_timeout(&ep, Duration::from_millis(300))
            .await
            .unwrap_err();
        hold.abort();
        assert_eq!(
            err.connect_failure(),
            Some(ConnectFailure::Timeout),
            "{err}"
        );
        assert!(err.to_string().contains("no answer within 0.3 s"), "{err}");
    }

    #[tokio::test]
    async fn unreadable_ca_is_an_invalid_endpoint_not_a_connect_failure() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let tls = TlsMaterial {
            ca: Some(ca.clone()),
            verify: true,
            ..TlsMaterial::default()
        };
        let err = Engine::connect(&endpoint("tcp://127.0.0.1:1", Some(tls)))
            .await
            .unwrap_err();
        assert_eq!(err.connect_failure(), None);
        let EngineError::InvalidEndpoint { message, .. } = &err else {
            panic!("expected InvalidEndpoint, got {err:?}");
        };
        assert!(message.contains(&ca.display().to_string()), "{message}");
        assert!(message.contains("no certificate"), "{message}");
    }

    #[test]
    fn skip_verify_needs_no_files() {
        let config = tls_config(&TlsMaterial::default()).unwrap();
        assert!(!config.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn ssh_arguments_are_dockers() {
        assert_eq!(
            ssh_args(Some("me"), "box", Some(2222), ""),
            [
                "-o",
                "ConnectTimeout=30",
                "-T",
                "-l",
                "me",
                "-p",
                "2222",
                "--",
                "box",
                "docker",
                "system",
                "dial-stdio"
            ]
        );
        assert_eq!(
            ssh_args(None, "box", None, "/run/my docker.sock"),
            [
                "-o",
                "ConnectTimeout=30",
                "-T",
                "--",
                "box",
                "docker",
                "'--host=unix:///run/my docker.sock'",
                "system",
                "dial-stdio"
            ]
        );
    }

    #[test]
    fn tls_error_nested_in_io_errors_is_found() {
        // hyper-rustls hands rustls errors up as an io::Error inside an io::Error
        let tls = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let inner = io::Error::new(io::ErrorKind::InvalidData, tls);
        let err = BollardError::IOError {
            err: io::Error::other(inner),
        };
        let (kind, message) = describe(&err);
        assert_eq!(kind, ConnectFailure::Tls);
        assert!(
            message.contains("not signed by the trusted CA"),
            "{message}"
        );
    }

    #[test]
    fn ssh_failure_text_is_shown_as_is() {
        let err = ssh_failure("ssh: Permission denied (publickey).".to_string());
        assert_eq!(
            describe(&err),
            (
                ConnectFailure::Ssh,
                "ssh: Permission denied (publickey).".to_string()
            )
        );
    }

    #[test]
    fn server_error_for_plain_http_to_tls_port_says_to_use_tls() {
        let err = BollardError::DockerResponseServerError {
            status_code: 400,
            message: "Client sent an HTTP request to an HTTPS server.".to_string(),
        };
        let (kind, message) = describe(&err);
        assert_eq!(kind, ConnectFailure::Tls);
        assert!(message.contains("--tlsverify"), "{message}");
    }
}
