//! Notifications: tell someone when a backup fails (or, on request, when it warns or always), and ping a
//! dead man's switch so that a backup that silently stops running is noticed too.
//!
//! Targets (`--notify URL`, repeatable, and `x-persist: {notify: …}`), told apart by their URL:
//! - `ntfy://host/topic` (HTTPS), `ntfy+http://host/topic`, or an `http(s)://` URL whose host is `ntfy.sh`
//!   or starts with `ntfy.`: an ntfy topic. The message is the summary, `Priority: high` on failure;
//!   `ntfy://user:pass@host/topic` sends basic auth, `ntfy://TOKEN@host/topic` a bearer token.
//! - `webhook+https://…`, `webhook+http://…`: a JSON POST of the run (project, command, result, volumes,
//!   sizes, durations, downtime, error).
//! - Any other `http(s)://` URL: a healthchecks-style ping URL. It is a heartbeat, so it hears of every
//!   run whatever `--notify-on` says: `URL/start` when the backup begins, `URL` on success, `URL/fail` with
//!   a short body on failure or interruption, each with the run's id as `?rid=`.
//! - `--notify-command CMD`: `sh -c CMD` with the result in `DOCKER_PERSIST_*` environment variables.
//!
//! ntfy, webhooks and the command hear of a run when its result reaches `--notify-on`: `failure` (the
//! default: failed or interrupted), `warning` (also succeeded with warnings) or `always`. Every request has
//! a short timeout ([`TIMEOUT`]); one that fails is a warning, recorded in the run record, and never the
//! reason a backup that worked reports failure. No secret of the project reaches a body: values of the
//! project's environment whose names look secret (`*PASSWORD*`, `*TOKEN*`, `*SECRET*`, `*KEY*`, …) and the
//! password of any `user:password@` in a URL are replaced by `***` in every text that is sent.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use serde::Serialize;

use crate::runs::{Delivery, Downtime, RunResult, VolumeRun};

/// How long one notification may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long `--notify-command` may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an error or of warnings a ping's body carries.
const PING_BODY_LIMIT: usize = 10_000;

/// Which results reach ntfy, webhooks and the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// Failed or interrupted runs
    #[default]
    Failure,
    /// Also runs that succeeded with warnings
    Warning,
    /// Every run
    Always,
}

impl NotifyOn {
    pub fn wants(self, result: RunResult) -> bool {
        match self {
            NotifyOn::Always => true,
            NotifyOn::Warning => result != RunResult::Success,
            NotifyOn::Failure => matches!(result, RunResult::Failure | RunResult::Interrupted),
        }
    }
}

impl std::str::FromStr for NotifyOn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "failure" => Ok(NotifyOn::Failure),
            "warning" => Ok(NotifyOn::Warning),
            "always" => Ok(NotifyOn::Always),
            _ => Err(format!("`{s}` is not one of failure, warning, always")),
        }
    }
}

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A healthchecks-style ping URL.
    Ping(url::Url),
    /// An ntfy topic (the URL is the `http(s)` one to POST to).
    Ntfy(url::Url),
    /// A JSON webhook (the `http(s)` URL).
    Webhook(url::Url),
}

impl Target {
    /// Reads a target URL (see the module documentation).
    pub fn parse(text: &str) -> Result<Target, String> {
        let bad = |why: &str| format!("notification URL `{}`: {why}", redact_url(text));
        let (kind, rest) = if let Some(r) = text.strip_prefix("ntfy://") {
            ("ntfy", format!("https://{r}"))
        } else if let Some(r) = text.strip_prefix("ntfy+") {
            ("ntfy", r.to_string())
        } else if let Some(r) = text.strip_prefix("webhook+") {
            ("webhook", r.to_string())
        } else {
            ("", text.to_string())
        };
        let url = url::Url::parse(&rest).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(
                "use http(s):// (a ping URL), ntfy://host/topic, or webhook+https://…",
            ));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if host.is_empty() {
            return Err(bad("it has no host"));
        }
        Ok(match kind {
            "ntfy" => Target::Ntfy(url),
            "webhook" => Target::Webhook(url),
            _ if host == "ntfy.sh" || host.starts_with("ntfy.") => Target::Ntfy(url),
            _ => Target::Ping(url),
        })
    }

    fn url(&self) -> &url::Url {
        match self {
            Target::Ping(u) | Target::Ntfy(u) | Target::Webhook(u) => u,
        }
    }

    /// The target as it may be printed or recorded: its kind, scheme and host, never its path (a ping
    /// URL's path is its secret) or credentials.
    pub fn describe(&self) -> String {
        let kind = match self {
            Target::Ping(_) => "ping",
            Target::Ntfy(_) => "ntfy",
            Target::Webhook(_) => "webhook",
        };
        let u = self.url();
        let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "{kind} {}://{}{port}/…",
            u.scheme(),
            u.host_str().unwrap_or_default()
        )
    }
}

/// Everything that is notified about, for one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub targets: Vec<Target>,
    pub on: NotifyOn,
    pub command: Option<String>,
    pub redactor: Redactor,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty() && self.command.is_none()
    }
}

/// The `x-persist: {notify: …}` of a project: a URL, a list of URLs, or a mapping `{urls: […], on: …,
/// command: …}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectNotify {
    pub urls: Vec<String>,
    pub on: Option<NotifyOn>,
    pub command: Option<String>,
}

impl ProjectNotify {
    pub fn from_persist(persist: &serde_json::Value) -> Result<ProjectNotify, String> {
        use serde_json::Value;
        let strings = |v: &Value| -> Result<Vec<String>, String> {
            match v {
                Value::Null => Ok(Vec::new()),
                Value::String(s) => Ok(vec![s.clone()]),
                Value::Array(a) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| "`x-persist.notify` URLs must be strings".to_string())
                    })
                    .collect(),
                _ => Err("`x-persist.notify` URLs must be a string or a list".to_string()),
            }
        };
        match persist.get("notify") {
            None | Some(Value::Null) => Ok(ProjectNotify::default()),
            Some(Value::Object(m)) => {
                for k in m.keys() {
                    if !matches!(k.as_str(), "urls" | "url" | "on" | "command") {
                        return Err(format!(
                            "`x-persist.notify` has an unknown key `{k}` (urls, on, command)"
                        ));
                    }
                }
                let mut urls = strings(m.get("urls").unwrap_or(&Value::Null))?;
                urls.extend(strings(m.get("url").unwrap_or(&Value::Null))?);
                let on = match m.get("on") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(
                        s.parse()
                            .map_err(|e| format!("`x-persist.notify.on`: {e}"))?,
                    ),
                    Some(_) => return Err("`x-persist.notify.on` must be a string".to_string()),
                };
                let command = match m.get("command") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => {
                        return Err("`x-persist.notify.command` must be a string".to_string());
                    }
                };
                Ok(ProjectNotify { urls, on, command })
            }
            Some(other) => Ok(ProjectNotify {
                urls: strings(other)?,
                ..Default::default()
            }),
        }
    }
}

/// Replaces secrets by `***` in texts that leave the machine.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

/// Parts of variable names that mark their values as secret.
const SECRET_NAMES: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "PASS",
    "PWD",
    "SECRET",
    "TOKEN",
    "KEY",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
    "DSN",
    "DATABASE_URL",
    "CONNECTION",
];

impl Redactor {
    /// Secrets from the project's environment (OS environment and `.env`): values of variables whose
    /// names look secret. Values shorter than 4 characters are left (they would mangle every text).
    pub fn from_environment<'a>(
        env: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Redactor {
        let mut secrets: Vec<String> = env
            .into_iter()
            .filter(|(k, v)| {
                let k = k.to_ascii_uppercase();
                v.chars().count() >= 4
                    && k != "PWD"
                    && k != "OLDPWD"
                    && SECRET_NAMES.iter().any(|s| k.contains(s))
            })
            .map(|(_, v)| v.clone())
            .collect();
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = redact_url(text);
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

/// Replaces the password of every `scheme://user:password@` in `text` by `***`.
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '`' || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => out.push_str(&format!("{user}:***@")),
                    None => out.push_str("***@"),
                }
                out.push_str(&authority[at + 1..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// What a notification says about a run (the webhook's JSON, the text of the others).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub event: &'static str,
    pub run_id: String,
    pub project: String,
    pub command: String,
    pub result: Option<RunResult>,
    pub host: String,
    pub started: jiff::Timestamp,
    pub ended: Option<jiff::Timestamp>,
    pub seconds: Option<f64>,
    pub backup: Option<String>,
    pub backup_bytes: Option<u64>,
    pub volumes: Vec<VolumeRun>,
    pub bytes: u64,
    pub stored_bytes: u64,
    pub downtime: Vec<Downtime>,
    pub downtime_seconds: f64,
    pub error: Option<String>,
    pub warnings: Vec<String>,
}

impl Report {
    /// One line: `backup of app: failure after 3.2 s: error…`.
    pub fn title(&self) -> String {
        match self.result {
            None => format!(
                "docker persist {} of `{}` started",
                self.command, self.project
            ),
            Some(r) => format!("docker persist {} of `{}`: {r}", self.command, self.project),
        }
    }

    /// A few lines people read: what happened, sizes, durations, the error.
    pub fn text(&self) -> String {
        let mut lines = vec![self.title()];
        if let Some(s) = self.seconds {
            lines.push(format!("host {}, {:.1} s", self.host, s));
        }
        if !self.volumes.is_empty() {
            lines.push(format!(
                "volumes: {} ({} stored as {})",
                self.volumes
                    .iter()
                    .map(|v| v.key.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                crate::report::human_size(self.bytes),
                crate::report::human_size(self.stored_bytes)
            ));
        }
        if let Some(b) = &self.backup {
            lines.push(format!("file: {b}"));
        }
        if !self.downtime.is_empty() {
            lines.push(format!(
                "services stopped: {}",
                self.downtime
                    .iter()
                    .map(|d| format!("{} {:.1} s", d.service, d.seconds))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(e) = &self.error {
            lines.push(format!("error: {e}"));
        }
        for w in &self.warnings {
            lines.push(format!("warning: {w}"));
        }
        lines.join("\n")
    }

    /// Passes every free text through the redactor.
    pub fn redacted(mut self, r: &Redactor) -> Report {
        self.error = self.error.map(|e| r.redact(&e));
        self.warnings = self.warnings.iter().map(|w| r.redact(w)).collect();
        self
    }
}

/// What one delivery is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Start,
    Finish,
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

fn client() -> anyhow::Result<Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("failed to set up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https),
    )
}

/// One HTTP request to build.
struct Request {
    url: url::Url,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

/// The requests a target gets for `event` (none when it does not hear of it).
fn requests(target: &Target, event: Event, report: &Report, on: NotifyOn) -> Vec<Request> {
    let result = report.result;
    match target {
        Target::Ping(url) => {
            let (suffix, body) = match (event, result) {
                (Event::Start, _) => (Some("start"), String::new()),
                (Event::Finish, Some(r)) if r.succeeded() => (None, limit(&report.text())),
                (Event::Finish, _) => (Some("fail"), limit(&report.text())),
            };
            vec![Request {
                url: ping_url(url, suffix, &report.run_id),
                headers: vec![("content-type", "text/plain; charset=utf-8".to_string())],
                body: body.into_bytes(),
            }]
        }
        Target::Ntfy(url) => {
            let Some(r) = result.filter(|r| event == Event::Finish && on.wants(*r)) else {
                return Vec::new();
            };
            let (priority, tags) = match r {
                RunResult::Failure | RunResult::Interrupted => ("high", "rotating_light"),
                RunResult::Warning => ("default", "warning"),
                RunResult::Success => ("default", "white_check_mark"),
            };
            let mut headers = vec![
                ("title", report.title().replace('`', "")),
                ("priority", priority.to_string()),
                ("tags", tags.to_string()),
            ];
            if let Some(auth) = auth_header(url) {
                headers.push(("authorization", auth));
            }
            vec![Request {
                url: without_credentials(url),
                headers,
                body: report.text().into_bytes(),
            }]
        }
        Target::Webhook(url) => {
            if !(event == Event::Finish && result.is_some_and(|r| on.wants(r))) {
                return Vec::new();
            }
            let mut headers = vec![("content-type", "application/json".to_string())];
            if let Some(auth) = auth_header(url) {
                headers.push(("authorization", auth));
            }
            vec![Request {
                url: without_credentials(url),
                headers,
                body: serde_json::to_vec(report).unwrap_or_default(),
            }]
        }
    }
}

fn limit(text: &str) -> String {
    if text.len() <= PING_BODY_LIMIT {
        return text.to_string();
    }
    let mut end = PING_BODY_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// `URL[/suffix]?rid=ID`, keeping a query the URL already has.
fn ping_url(url: &url::Url, suffix: Option<&str>, rid: &str) -> url::Url {
    let mut u = url.clone();
    if let Some(s) = suffix {
        let path = u.path().trim_end_matches('/').to_string();
        u.set_path(&format!("{path}/{s}"));
    }
    u.query_pairs_mut().append_pair("rid", rid);
    u
}

fn without_credentials(url: &url::Url) -> url::Url {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u
}

/// `user:pass@` → basic auth; `token@` → a bearer token.
fn auth_header(url: &url::Url) -> Option<String> {
    use base64::Engine as _;
    let user = percent_decode(url.username());
    match url.password() {
        Some(p) => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{user}:{}", percent_decode(p)))
        )),
        None if !user.is_empty() => Some(format!("Bearer {user}")),
        None => None,
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn send(client: &Client, req: Request) -> Result<(), String> {
    let mut builder = hyper::Request::post(req.url.as_str());
    for (k, v) in &req.headers {
        builder = builder.header(*k, v);
    }
    builder = builder.header(
        "user-agent",
        concat!("docker-persist/", env!("CARGO_PKG_VERSION")),
    );
    let request = builder
        .body(Full::new(Bytes::from(req.body)))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(TIMEOUT, client.request(request))
        .await
        .map_err(|_| format!("no answer within {} s", TIMEOUT.as_secs()))?
        .map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the server answered {status}"))
    }
}

/// Runs `--notify-command` with the report in `DOCKER_PERSIST_*` variables.
async fn run_command(command: &str, report: &Report) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in command_env(report) {
        cmd.env(k, v);
    }
    let status = tokio::time::timeout(COMMAND_TIMEOUT, cmd.status())
        .await
        .map_err(|_| {
            format!(
                "still running after {} s; killed",
                COMMAND_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("cannot run `sh`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("it exited with {status}"))
    }
}

/// The environment of `--notify-command`.
pub fn command_env(report: &Report) -> Vec<(&'static str, String)> {
    vec![
        ("DOCKER_PERSIST_EVENT", report.event.to_string()),
        (
            "DOCKER_PERSIST_RESULT",
            report.result.map(|r| r.to_string()).unwrap_or_default(),
        ),
        ("DOCKER_PERSIST_PROJECT", report.project.clone()),
        ("DOCKER_PERSIST_COMMAND", report.command.clone()),
        ("DOCKER_PERSIST_RUN_ID", report.run_id.clone()),
        ("DOCKER_PERSIST_HOST", report.host.clone()),
        (
            "DOCKER_PERSIST_VOLUMES",
            report
                .volumes
                .iter()
                .map(|v| v.key.as_str())
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("DOCKER_PERSIST_BYTES", report.bytes.to_string()),
        (
            "DOCKER_PERSIST_STORED_BYTES",
            report.stored_bytes.to_string(),
        ),
        (
            "DOCKER_PERSIST_SECONDS",
            report
                .seconds
                .map(|s| format!("{s:.3}"))
                .unwrap_or_default(),
        ),
        (
            "DOCKER_PERSIST_DOWNTIME_SECONDS",
            format!("{:.3}", report.downtime_seconds),
        ),
        (
            "DOCKER_PERSIST_BACKUP",
            report.backup.clone().unwrap_or_default(),
        ),
        (
            "DOCKER_PERSIST_ERROR",
            report.error.clone().unwrap_or_default(),
        ),
        ("DOCKER_PERSIST_WARNINGS", report.warnings.join("\n")),
        ("DOCKER_PERSIST_MESSAGE", report.text()),
    ]
}

/// Sends `event` to every target of `plan` that hears of it, all at once, each within [`TIMEOUT`];
/// returns one [`Delivery`] per attempt. Never fails: what cannot be delivered is a delivery with
/// `ok: false`.
pub async fn deliver(plan: &Plan, event: Event, report: &Report) -> Vec<Delivery> {
    let report = report.clone().redacted(&plan.redactor);
    let event_name = match (event, report.result) {
        (Event::Start, _) => "start".to_string(),
        (Event::Finish, Some(r)) => r.to_string(),
        (Event::Finish, None) => "finish".to_string(),
    };
    let mut jobs: Vec<(String, Vec<Request>)> = plan
        .targets
        .iter()
        .map(|t| (t.describe(), requests(t, event, &report, plan.on)))
        .filter(|(_, r)| !r.is_empty())
        .collect();
    let mut out = Vec::new();
    if !jobs.is_empty() {
        match client() {
            Ok(client) => {
                let sends = jobs.drain(..).map(|(name, reqs)| {
                    let client = client.clone();
                    async move {
                        let mut result = Ok(());
                        for r in reqs {
                            result = send(&client, r).await;
                            if result.is_err() {
                                break;
                            }
                        }
                        (name, result)
                    }
                });
                for (target, result) in futures_util::future::join_all(sends).await {
                    out.push(Delivery {
                        target,
                        event: event_name.clone(),
                        ok: result.is_ok(),
                        error: result.err().map(|e| plan.redactor.redact(&e)),
                    });
                }
            }
            Err(e) => {
                for (target, _) in jobs {
                    out.push(Delivery {
                        target,
                        event: event_name.clone(),
                        ok: false,
                        error: Some(format!("{e:#}")),
                    });
                }
            }
        }
    }
    if let Some(cmd) = &plan.command
        && event == Event::Finish
        && report.result.is_some_and(|r| plan.on.wants(r))
    {
        let result = run_command(cmd, &report).await;
        out.push(Delivery {
            target: "command".to_string(),
            event: event_name.clone(),
            ok: result.is_ok(),
            error: result.err(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(result: Option<RunResult>) -> Report {
        Report {
            schema_version: 1,
            event: if result.is_some() { "finish" } else { "start" },
            run_id: "0b5c1f8e-0000-4000-8000-000000000001".into(),
            project: "app".into(),
            command: "backup".into(),
            result,
            host: "h".into(),
            started: jiff::Timestamp::UNIX_EPOCH,
            ended: None,
            seconds: Some(1.0),
            backup: None,
            backup_bytes: None,
            volumes: vec![],
            bytes: 0,
            stored_bytes: 0,
            downtime: vec![],
            downtime_seconds: 0.0,
            error: Some("pg_dump: password hunter22 rejected".into()),
            warnings: vec![],
        }
    }

    #[test]
    fn targets_are_told_apart_by_their_url() {
        let t = |s: &str| Target::parse(s).unwrap();
        assert!(matches!(t("https://hc-ping.com/abc"), Target::Ping(_)));
        assert!(matches!(t("http://127.0.0.1:8080/ping/x"), Target::Ping(_)));
        assert!(matches!(t("https://ntfy.sh/alerts"), Target::Ntfy(_)));
        assert!(matches!(
            t("https://ntfy.example.org/alerts"),
            Target::Ntfy(_)
        ));
        match t("ntfy://push.example.org/alerts") {
            Target::Ntfy(u) => assert_eq!(u.as_str(), "https://push.example.org/alerts"),
            other => panic!("{other:?}"),
        }
        match t("ntfy+http://127.0.0.1:9/alerts") {
            Target::Ntfy(u) => assert_eq!(u.as_str(), "http://127.0.0.1:9/alerts"),
            other => panic!("{other:?}"),
        }
        match t("webhook+https://example.org/hook") {
            Target::Webhook(u) => assert_eq!(u.as_str(), "https://example.org/hook"),
            other => panic!("{other:?}"),
        }
        for bad in ["ftp://x/y", "not a url", "webhook+mailto:x@y"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        // The printed form hides the path (a ping URL's secret) and credentials.
        assert_eq!(
            t("https://u:p@hc-ping.com/secret-uuid").describe(),
            "ping https://hc-ping.com/…"
        );
    }

    #[test]
    fn ping_urls_get_start_success_and_fail_with_the_run_id() {
        let target = Target::parse("https://hc.example/ping/abc").unwrap();
        let on = NotifyOn::Failure;
        let urls = |event, result| -> Vec<String> {
            requests(&target, event, &report(result), on)
                .into_iter()
                .map(|r| r.url.to_string())
                .collect()
        };
        let rid = "rid=0b5c1f8e-0000-4000-8000-000000000001";
        assert_eq!(
            urls(Event::Start, None),
            [format!("https://hc.example/ping/abc/start?{rid}")]
        );
        assert_eq!(
            urls(Event::Finish, Some(RunResult::Success)),
            [format!("https://hc.example/ping/abc?{rid}")]
        );
        assert_eq!(
            urls(Event::Finish, Some(RunResult::Interrupted)),
            [format!("https://hc.example/ping/abc/fail?{rid}")]
        );
    }

    #[test]
    fn ntfy_webhooks_and_commands_follow_notify_on() {
        let ntfy = Target::parse("ntfy://n.example/t").unwrap();
        let hook = Target::parse("webhook+https://w.example/h").unwrap();
        for (on, result, sent) in [
            (NotifyOn::Failure, RunResult::Success, false),
            (NotifyOn::Failure, RunResult::Warning, false),
            (NotifyOn::Failure, RunResult::Failure, true),
            (NotifyOn::Failure, RunResult::Interrupted, true),
            (NotifyOn::Warning, RunResult::Warning, true),
            (NotifyOn::Warning, RunResult::Success, false),
            (NotifyOn::Always, RunResult::Success, true),
        ] {
            for t in [&ntfy, &hook] {
                let n = requests(t, Event::Finish, &report(Some(result)), on).len();
                assert_eq!(n == 1, sent, "{t:?} {on:?} {result:?}");
                assert!(requests(t, Event::Start, &report(None), NotifyOn::Always).is_empty());
            }
        }
        let r = &requests(
            &ntfy,
            Event::Finish,
            &report(Some(RunResult::Failure)),
            NotifyOn::Failure,
        )[0];
        assert!(r.headers.contains(&("priority", "high".to_string())));
    }

    #[test]
    fn credentials_in_urls_become_auth_headers_and_leave_the_url() {
        let t = Target::parse("ntfy://tk_secret@n.example/t").unwrap();
        let r = &requests(
            &t,
            Event::Finish,
            &report(Some(RunResult::Failure)),
            NotifyOn::Failure,
        )[0];
        assert_eq!(r.url.as_str(), "https://n.example/t");
        assert!(
            r.headers
                .contains(&("authorization", "Bearer tk_secret".to_string()))
        );
        let t = Target::parse("webhook+https://u:p%40ss@w.example/h").unwrap();
        let r = &requests(
            &t,
            Event::Finish,
            &report(Some(RunResult::Failure)),
            NotifyOn::Failure,
        )[0];
        // base64("u:p@ss")
        assert!(
            r.headers
                .contains(&("authorization", "Basic dTpwQHNz".to_string()))
        );
    }

    #[test]
    fn secrets_of_the_project_never_reach_a_body() {
        let env: std::collections::BTreeMap<String, String> = [
            ("POSTGRES_PASSWORD", "hunter22"),
            ("API_TOKEN", "tok-123456"),
            ("PATH", "/usr/bin"),
            ("SHORT_KEY", "abc"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let r = Redactor::from_environment(&env);
        assert_eq!(
            r.redact("pg_dump: password hunter22 rejected; postgres://app:pw@db:5432/x tok-123456 /usr/bin"),
            "pg_dump: password *** rejected; postgres://app:***@db:5432/x *** /usr/bin"
        );
        let hook = Target::parse("webhook+https://w.example/h").unwrap();
        let sent = report(Some(RunResult::Failure)).redacted(&r);
        let body = String::from_utf8(
            requests(&hook, Event::Finish, &sent, NotifyOn::Failure)
                .remove(0)
                .body,
        )
        .unwrap();
        assert!(
            !body.contains("hunter22") && body.contains("password *** rejected"),
            "{body}"
        );
    }

    #[test]
    fn project_notify_takes_a_url_a_list_or_a_mapping() {
        let p =
            |v: serde_json::Value| ProjectNotify::from_persist(&serde_json::json!({"notify": v}));
        assert_eq!(
            p(serde_json::json!("https://a")).unwrap().urls,
            ["https://a"]
        );
        assert_eq!(
            p(serde_json::json!(["https://a", "ntfy://b/c"]))
                .unwrap()
                .urls,
            ["https://a", "ntfy://b/c"]
        );
        let m = p(serde_json::json!({"urls": ["https://a"], "on": "always", "command": "true"}))
            .unwrap();
        assert_eq!(m.on, Some(NotifyOn::Always));
        assert_eq!(m.command.as_deref(), Some("true"));
        assert!(p(serde_json::json!({"on": "never"})).is_err());
        assert!(p(serde_json::json!({"url": 3})).is_err());
        assert!(p(serde_json::json!({"when": "x"})).is_err());
        assert_eq!(
            ProjectNotify::from_persist(&serde_json::Value::Null).unwrap(),
            ProjectNotify::default()
        );
    }
}
