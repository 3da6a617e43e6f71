//! The tier of every piece of data, and why: `x-persist: {tier: …}` in the Compose file, then the engine
//! label `persist.tier`, then the built-in rules of one table ([`RULES`]), then `important` (unknown data
//! is treated as valuable).
//!
//! The rules read each mount of the data on its own: the first rule that matches a mount is that mount's
//! reading. The data gets the most valuable reading of the mounts that can speak for it — the services
//! that write it, not one-shot helpers (an init or `chown` job) and not services that only read it, unless
//! a reader's reading is valuable (`critical` or `important`) or nothing else mounts it. A mount no rule
//! matches adds no reading; when no mount has one, the data is `important`.
//!
//! The table is the single source of truth: `docker persist rules` prints it and the README copies it.

mod rules;
mod words;

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::model::{Project, Tier};
pub use rules::RULES;
use words::{file_name, image_path, image_words, under, words_of};

/// The engine volume label that sets a tier.
pub const TIER_LABEL: &str = "persist.tier";

/// What kind of data a row of the inventory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    /// A project volume Compose creates and `down -v` removes.
    Named,
    /// A volume declared `external: true`; Compose never creates or removes it.
    External,
    /// A volume without a name, created per container.
    Anonymous,
    /// A host directory or file.
    Bind,
}

impl DataKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::Named => "named",
            DataKind::External => "external",
            DataKind::Anonymous => "anonymous",
            DataKind::Bind => "bind",
        }
    }
}

impl fmt::Display for DataKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One service mount of the data being classified.
#[derive(Debug, Clone, Copy, Default)]
pub struct Use<'a> {
    pub service: &'a str,
    pub image: Option<&'a str>,
    pub target: &'a str,
    pub read_only: bool,
    /// The service is a one-shot helper (see [`one_shot_services`]): its mount never decides the tier of
    /// data a long-running service also mounts.
    pub helper: bool,
    /// The service's image, as found locally, declares a `VOLUME` at or above `target`.
    pub image_volume: bool,
}

/// Everything classification looks at.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub kind: DataKind,
    /// The volume key, or for a bind mount the host path as written (`./data`).
    pub key: &'a str,
    /// For a bind mount, the absolute host path.
    pub host_path: Option<&'a str>,
    /// For a bind mount, whether the host path is a file (`None`: not known, e.g. a remote engine).
    pub host_is_file: Option<bool>,
    /// `x-persist: {tier}` from the Compose file.
    pub declared: Option<Tier>,
    /// The engine label `persist.tier`, as found on the volume.
    pub label: Option<&'a str>,
    pub uses: &'a [Use<'a>],
    /// The image of every service of the project: which application a search index or cache serves.
    pub project_images: &'a [&'a str],
}

/// Where a tier came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TierSource {
    XPersist,
    Label,
    Rule,
    Default,
}

/// A tier and the reason for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    pub tier: Tier,
    pub source: TierSource,
    /// The id of the rule that matched, when `source` is `Rule`.
    pub rule: Option<&'static str>,
    /// Human explanation: "database data directory (`/var/lib/postgresql/data` in `db`)".
    pub reason: String,
}

/// What a rule looks at. Every matcher reads one mount (a [`Use`]) of the data, with the data's key and
/// host path.
#[derive(Debug, Clone, Copy)]
pub enum Matcher {
    /// A bind mount whose host path is one of these or lies under one of them.
    HostPath(&'static [&'static str]),
    /// A mount target equal to one of these or under one of them.
    Target(&'static [&'static str]),
    /// A service whose image is one of `images` mounting at or under one of `paths`. An image is named
    /// without registry, `library/` and tag (`docker.io/library/ghost:5` → `ghost`); `ns/*` is any image
    /// of namespace `ns`.
    ImagePath {
        images: &'static [&'static str],
        paths: &'static [&'static str],
    },
    /// Like `ImagePath`, in a project one of whose services runs one of `beside` (named like `images`): a
    /// search index or cache whose value depends on the application it serves.
    ImageBeside {
        images: &'static [&'static str],
        paths: &'static [&'static str],
        beside: &'static [&'static str],
    },
    /// A mount of a single file whose name is one of these (`*.conf` matches by extension).
    File(&'static [&'static str]),
    /// A mount of a single file (known from the host, else guessed from its name).
    SingleFile,
    /// A whole component of the mount target or the key equal to one of these.
    Component(&'static [&'static str]),
    /// A read-only bind mount of a path given relative to the project (`./conf`).
    ReadOnlyBind,
    /// A bind mount at or under one of these paths that is read-only or a single file.
    ConfigBind(&'static [&'static str]),
    /// A writable directory mount below one of these paths (`/etc/gitlab` under `/etc`).
    WritableBelow(&'static [&'static str]),
    /// A bind of the project's source: `.`, `..` or a path through `src`/`source` anywhere; a project
    /// directory mounted at one of these application roots (`./frontend:/app`); or mirrored into one under
    /// its own name (`./superset:/app/superset`), unless that name says data.
    SourceBind(&'static [&'static str]),
    /// A word of the volume key, the bind path or the mount target (split at `/`, `-`, `_`, `.`).
    Word(&'static [&'static str]),
    /// A word of the volume key or bind path only, when its other words only say "data"
    /// (`db_data`, `pgdata`, but not `clamav-db`).
    KeyWord(&'static [&'static str]),
    /// The image of the service (its name without registry, path or tag, split at `-`); the other words
    /// of the name may only be variants (`server`, `ha`, `alpine`, …), so `opensearch-dashboards` is not
    /// `opensearch`.
    Image(&'static [&'static str]),
    /// The image declares a `VOLUME` at or above the mount target (when the image is present locally).
    ImageVolume,
    /// A writable mount of a long-running service at a path that looks like its data root: one of
    /// `exact`, or a path whose last component is one of `last`.
    DataRoot {
        exact: &'static [&'static str],
        last: &'static [&'static str],
    },
    /// A writable directory mount of a long-running service at `/var/lib/<name>`: the state directory
    /// of a system service (a daemon's database, or its cache).
    VarLibState,
    /// An anonymous volume.
    Anonymous,
}

impl Matcher {
    /// What the README and `rules` show in the "matches" column.
    pub fn describe(&self) -> String {
        let list = |xs: &[&str]| {
            xs.iter()
                .map(|x| format!("`{x}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Matcher::HostPath(xs) => format!("bind of host path {}", list(xs)),
            Matcher::Target(xs) => format!("mounted at {}", list(xs)),
            Matcher::ImagePath { images, paths } => {
                format!("image {} mounting {}", list(images), list(paths))
            }
            Matcher::ImageBeside {
                images,
                paths,
                beside,
            } => format!(
                "image {} mounting {} in a project running {}",
                list(images),
                list(paths),
                list(beside)
            ),
            Matcher::File(xs) => format!("single file {}", list(xs)),
            Matcher::SingleFile => "a single file".to_string(),
            Matcher::Component(xs) => format!("path or name has the component {}", list(xs)),
            Matcher::ReadOnlyBind => "read-only bind of a path relative to the project".to_string(),
            Matcher::ConfigBind(xs) => {
                format!("bind at {} that is read-only or a single file", list(xs))
            }
            Matcher::WritableBelow(xs) => format!("writable directory below {}", list(xs)),
            Matcher::SourceBind(xs) => format!(
                "bind of `.`, `..` or a path through `src`/`source`; or a project directory mounted at {} or mirrored into one under its own name",
                list(xs)
            ),
            Matcher::Word(xs) => format!("name or path contains the word {}", list(xs)),
            Matcher::KeyWord(xs) => format!(
                "name is {} alone or with `data`/`volume`/`storage`",
                list(xs)
            ),
            Matcher::Image(xs) => format!("used by image {}", list(xs)),
            Matcher::ImageVolume => "the image declares a `VOLUME` there".to_string(),
            Matcher::DataRoot { exact, last } => format!(
                "writable, by a long-running service, at {} or `…/{}`",
                list(exact),
                last.join("`, `…/")
            ),
            Matcher::VarLibState => {
                "writable, by a long-running service, at `/var/lib/<name>`".to_string()
            }
            Matcher::Anonymous => "anonymous volume".to_string(),
        }
    }
}

/// One built-in rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub id: &'static str,
    pub matcher: Matcher,
    pub tier: Tier,
    pub reason: &'static str,
}

/// Programs whose run is a one-shot job when a service's command or entrypoint is one of them.
const ONE_SHOT_PROGRAMS: &[&str] = &[
    "chown", "chmod", "chgrp", "mkdir", "cp", "rsync", "ln", "true", "echo", "install", "setfacl",
    "rm", "touch", "mv",
];

/// Words of a service name that mark an init job (`db-init`, `setup`, `migrate`).
const ONE_SHOT_NAME_WORDS: &[&str] = &[
    "init",
    "setup",
    "migrate",
    "migration",
    "migrations",
    "chown",
    "permissions",
    "perms",
];

/// The services of `project` that run once and exit: services another one waits for with
/// `condition: service_completed_successfully`; services whose command or entrypoint is a one-shot
/// program (`chown`, `mkdir`, `cp`, …, directly or in `sh -c`); and services with `restart: "no"` whose
/// name marks an init job (`init`, `setup`, `migrate`, `chown`, `permissions`) and that are not restarted.
pub fn one_shot_services(project: &Project) -> BTreeSet<String> {
    let awaited: BTreeSet<&str> = project
        .services
        .values()
        .flat_map(|s| s.run.waits_for_completion.iter().map(String::as_str))
        .collect();
    project
        .services
        .values()
        .filter(|s| {
            let restarted = matches!(s.run.restart.as_deref(), Some("always" | "unless-stopped"));
            let program_is_one_shot = [&s.run.entrypoint, &s.run.command]
                .into_iter()
                .flatten()
                .any(|c| one_shot_command(c));
            let named_init = words_of(&s.name)
                .iter()
                .any(|w| ONE_SHOT_NAME_WORDS.contains(&w.as_str()));
            let no_restart = matches!(s.run.restart.as_deref(), Some("no" | "false"));
            awaited.contains(s.name.as_str())
                || (!restarted && program_is_one_shot)
                || (no_restart && named_init)
        })
        .map(|s| s.name.clone())
        .collect()
}

/// A command that runs a one-shot program and nothing long-running after it.
fn one_shot_command(command: &str) -> bool {
    let mut text = command.trim();
    for shell in ["sh -c", "bash -c", "/bin/sh -c", "/bin/bash -c", "ash -c"] {
        if let Some(rest) = text.strip_prefix(shell) {
            text = rest.trim();
        }
    }
    let text = text.trim_matches(|c| c == '"' || c == '\'' || c == ' ');
    let long_running = [
        "while ",
        "sleep infinity",
        "tail -f",
        "exec ",
        "trap ",
        "crond",
        " && nginx",
    ];
    if long_running.iter().any(|l| text.contains(l)) {
        return false;
    }
    let first = text
        .split_whitespace()
        .next()
        .map(|w| w.rsplit('/').next().unwrap_or(w))
        .unwrap_or_default();
    ONE_SHOT_PROGRAMS.contains(&first)
}

/// The reason given when no rule matches.
pub const DEFAULT_REASON: &str = "no rule matched: unknown data is treated as valuable";

/// One mount's reading: the rule that matched it and what matched.
struct Reading {
    rule: &'static Rule,
    evidence: Option<String>,
}

/// Classifies one piece of data.
pub fn classify(subject: &Subject<'_>) -> Classification {
    if let Some(tier) = subject.declared {
        return Classification {
            tier,
            source: TierSource::XPersist,
            rule: None,
            reason: "set by `x-persist` in the Compose file".to_string(),
        };
    }
    if let Some(tier) = subject.label.and_then(|l| l.parse::<Tier>().ok()) {
        return Classification {
            tier,
            source: TierSource::Label,
            rule: None,
            reason: format!("engine label `{TIER_LABEL}`"),
        };
    }
    let best = if subject.uses.is_empty() {
        // A volume nothing mounts is read from its key alone.
        read(subject, &Use::default())
    } else {
        decide(subject)
    };
    match best {
        Some(r) => Classification {
            tier: r.rule.tier,
            source: TierSource::Rule,
            rule: Some(r.rule.id),
            reason: match r.evidence {
                Some(e) => format!("{} ({e})", r.rule.reason),
                None => r.rule.reason.to_string(),
            },
        },
        None => Classification {
            tier: Tier::Important,
            source: TierSource::Default,
            rule: None,
            reason: DEFAULT_REASON.to_string(),
        },
    }
}

/// The most valuable reading of the mounts that speak for the data: those of long-running services
/// (helpers only when nothing else mounts it); of those, the writers, plus readers whose reading is
/// valuable. Ties go to the earlier rule, then the earlier mount.
fn decide(subject: &Subject<'_>) -> Option<Reading> {
    let long_running: Vec<&Use<'_>> = subject.uses.iter().filter(|u| !u.helper).collect();
    let candidates: Vec<&Use<'_>> = if long_running.is_empty() {
        subject.uses.iter().collect()
    } else {
        long_running
    };
    let any_writer = candidates.iter().any(|u| !u.read_only);
    let mut best: Option<Reading> = None;
    for u in candidates {
        let Some(r) = read(subject, u) else { continue };
        if any_writer && u.read_only && value(r.rule.tier) < value(Tier::Important) {
            continue;
        }
        let better = best.as_ref().is_none_or(|b| {
            value(r.rule.tier) > value(b.rule.tier)
                || (r.rule.tier == b.rule.tier && rule_index(r.rule) < rule_index(b.rule))
        });
        if better {
            best = Some(r);
        }
    }
    best
}

/// How valuable data of a tier is: higher is more valuable.
fn value(tier: Tier) -> u8 {
    match tier {
        Tier::Critical => 3,
        Tier::Important => 2,
        Tier::Regenerable => 1,
        Tier::Optional => 0,
    }
}

fn rule_index(rule: &Rule) -> usize {
    RULES
        .iter()
        .position(|r| std::ptr::eq(r, rule))
        .unwrap_or(usize::MAX)
}

/// The first rule matching one mount.
fn read(subject: &Subject<'_>, u: &Use<'_>) -> Option<Reading> {
    RULES.iter().find_map(|rule| {
        matches(&rule.matcher, subject, u).map(|evidence| Reading { rule, evidence })
    })
}

/// The rules as a Markdown table, as the README shows them.
pub fn rules_markdown() -> String {
    let mut out = String::from("| # | rule | tier | matches | reason |\n|---|---|---|---|---|\n");
    for (n, r) in RULES.iter().enumerate() {
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} |\n",
            n + 1,
            r.id,
            r.tier,
            r.matcher.describe(),
            r.reason
        ));
    }
    out
}

/// Image words that mark a tool beside a database rather than the database itself.
const TOOL_IMAGE_WORDS: &[&str] = &[
    "exporter",
    "express",
    "commander",
    "admin",
    "ui",
    "insight",
    "backup",
    "dashboards",
    "dashboard",
    "operator",
    "proxy",
    "client",
    "cli",
];

/// Words an image name may add to a database or service name and still be that database or service
/// (`clickhouse-server`, `postgres-ha`, `cp-kafka`, `redis-stack-server`).
const IMAGE_VARIANT_WORDS: &[&str] = &[
    "server",
    "ha",
    "stack",
    "cp",
    "rs",
    "community",
    "oss",
    "enterprise",
    "alpine",
    "cluster",
    "db",
    "standalone",
    "edge",
    "official",
    "ce",
    "ee",
    "pg",
    "vector",
    "gis",
];

/// Directory names that hold data even when mirrored into an application's root (`./data:/app/data`).
const SOURCE_MIRROR_EXCLUDED: &[&str] = &[
    "data", "storage", "uploads", "upload", "media", "files", "content", "db", "database",
    "config", "logs", "log", "tmp", "cache", "backups", "backup", "certs", "secrets", "keys",
];

/// Key words that only say "data" (`db_data`, `postgres-volume`).
const DATA_WORDS: &[&str] = &["data", "volume", "vol", "storage", "store", "files", "dir"];

/// `Some(evidence)` when the matcher applies to mount `u`; the evidence names what matched.
fn matches(matcher: &Matcher, s: &Subject<'_>, u: &Use<'_>) -> Option<Option<String>> {
    let at = || Some(Some(format!("`{}` in `{}`", u.target, u.service)));
    let is_file = || mount_is_file(s, u);
    match matcher {
        Matcher::HostPath(paths) => {
            let host = s.host_path.filter(|_| s.kind == DataKind::Bind)?;
            let hit = paths.iter().find(|p| {
                if **p == "/" {
                    host == "/"
                } else {
                    under(host, p)
                }
            })?;
            Some(Some(format!("`{hit}`")))
        }
        Matcher::Target(prefixes) => prefixes
            .iter()
            .any(|p| !u.target.is_empty() && under(u.target, p))
            .then(at)
            .flatten(),
        Matcher::ImagePath { images, paths } => {
            let image = u.image?;
            (image_is(image, images) && paths.iter().any(|p| under(u.target, p))).then(|| {
                Some(format!(
                    "`{}` of image `{image}` in `{}`",
                    u.target, u.service
                ))
            })
        }
        Matcher::ImageBeside {
            images,
            paths,
            beside,
        } => {
            let image = u.image?;
            let app = s.project_images.iter().find(|i| image_is(i, beside))?;
            (image_is(image, images) && paths.iter().any(|p| under(u.target, p))).then(|| {
                Some(format!(
                    "`{}` of image `{image}` in `{}`, beside `{app}`",
                    u.target, u.service
                ))
            })
        }
        Matcher::File(names) => {
            if !is_file() {
                return None;
            }
            let name = file_name(u.target).or_else(|| file_name(s.key))?;
            let lower = name.to_ascii_lowercase();
            names
                .iter()
                .any(|n| match n.strip_prefix("*.") {
                    Some(ext) => lower.ends_with(&format!(".{ext}")),
                    None => lower == n.to_ascii_lowercase(),
                })
                .then(|| Some(format!("`{}` in `{}`", u.target, u.service)))
        }
        Matcher::SingleFile => is_file().then(at).flatten(),
        Matcher::Component(names) => {
            let hit = |path: &str| {
                path.split('/')
                    .find(|c| names.iter().any(|n| c.eq_ignore_ascii_case(n)))
                    .map(str::to_string)
            };
            if let Some(c) = hit(s.key) {
                return Some(Some(format!("`{c}` in `{}`", s.key)));
            }
            hit(u.target).map(|c| Some(format!("`{c}` in `{}`", u.target)))
        }
        // Configuration and source live with the project (`./conf`); a host directory elsewhere
        // (`/srv/music`, `~/Pictures`) mounted read-only is data the host keeps, not configuration.
        Matcher::ReadOnlyBind => (s.kind == DataKind::Bind
            && u.read_only
            && !s.key.starts_with('/')
            && !s.key.starts_with('~'))
        .then_some(None),
        Matcher::ConfigBind(prefixes) => (s.kind == DataKind::Bind
            && (u.read_only || is_file())
            && prefixes.iter().any(|p| under(u.target, p)))
        .then(at)
        .flatten(),
        Matcher::WritableBelow(prefixes) => (!u.read_only
            && !is_file()
            && prefixes
                .iter()
                .any(|p| under(u.target, p) && u.target.trim_end_matches('/') != *p))
        .then(at)
        .flatten(),
        Matcher::SourceBind(roots) => {
            if s.kind != DataKind::Bind || s.key.starts_with('/') || s.key.starts_with('~') {
                return None;
            }
            let written = s.key.trim_end_matches('/');
            let components: Vec<String> = written.split('/').map(str::to_ascii_lowercase).collect();
            let last = components.last().map(String::as_str).unwrap_or_default();
            let target = u.target.trim_end_matches('/');
            // `.`, `..` or a path through `src`/`source`: the project's source, wherever it is mounted.
            let project_or_src = matches!(written, "." | ".." | "")
                || components.iter().any(|c| c == "src" || c == "source");
            // A project directory mounted as an application's root (`./frontend:/app`), or mirrored
            // into it under its own name (`./superset:/app/superset`), unless the name says data.
            let at_root = roots.contains(&target);
            let mirrored = roots.iter().any(|r| {
                target
                    .strip_prefix(r)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .is_some_and(|rest| rest.eq_ignore_ascii_case(last))
            }) && !SOURCE_MIRROR_EXCLUDED.contains(&last);
            (project_or_src || at_root || mirrored).then(at).flatten()
        }
        Matcher::Word(words) => {
            if let Some(w) = words_of(s.key)
                .into_iter()
                .find(|w| words.contains(&w.as_str()))
            {
                return Some(Some(format!("`{w}` in `{}`", s.key)));
            }
            words_of(u.target)
                .into_iter()
                .find(|w| words.contains(&w.as_str()))
                .map(|w| Some(format!("`{w}` in `{}`", u.target)))
        }
        Matcher::KeyWord(words) => {
            // A bind's key is a path: only its last component names it.
            let name = if s.kind == DataKind::Bind {
                s.key
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or(s.key)
            } else {
                s.key
            };
            let ws = words_of(name);
            let hit = ws.iter().find(|w| words.contains(&w.as_str()))?;
            ws.iter()
                .all(|w| words.contains(&w.as_str()) || DATA_WORDS.contains(&w.as_str()))
                .then(|| Some(format!("`{hit}` in `{}`", s.key)))
        }
        Matcher::Image(names) => {
            let image = u.image?;
            let ws = image_words(image);
            if ws.iter().any(|w| TOOL_IMAGE_WORDS.contains(&w.as_str())) {
                return None;
            }
            let named = ws.iter().any(|w| names.contains(&w.as_str()));
            let only_variants = ws
                .iter()
                .all(|w| names.contains(&w.as_str()) || IMAGE_VARIANT_WORDS.contains(&w.as_str()));
            (named && only_variants).then(|| Some(format!("image `{image}` in `{}`", u.service)))
        }
        Matcher::ImageVolume => (u.image_volume && !u.read_only).then(at).flatten(),
        Matcher::DataRoot { exact, last } => {
            if u.read_only || u.helper || u.target.is_empty() || is_file() {
                return None;
            }
            let target = u.target.trim_end_matches('/');
            let name = target.rsplit('/').next().unwrap_or(target);
            (exact.contains(&target) || last.contains(&name))
                .then(at)
                .flatten()
        }
        Matcher::VarLibState => {
            if u.read_only || u.helper || is_file() {
                return None;
            }
            u.target
                .trim_end_matches('/')
                .strip_prefix("/var/lib/")
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
                .then(at)
                .flatten()
        }
        Matcher::Anonymous => (s.kind == DataKind::Anonymous).then_some(None),
    }
}

/// Whether `image` is one of `names` (`ns/*`: any image of namespace `ns`), compared without registry
/// and tag.
fn image_is(image: &str, names: &[&str]) -> bool {
    let path = image_path(image);
    names.iter().any(|i| match i.strip_suffix("/*") {
        Some(ns) => path.strip_prefix(ns).is_some_and(|r| r.starts_with('/')),
        None => path == *i,
    })
}

/// Whether mount `u` is of a single file: known from the host for a bind, else guessed from the target's
/// name (an extension of a file kind, or a well-known file name).
fn mount_is_file(s: &Subject<'_>, u: &Use<'_>) -> bool {
    if s.kind != DataKind::Bind {
        return false;
    }
    if let Some(known) = s.host_is_file {
        return known;
    }
    let looks = |path: &str| {
        file_name(path).is_some_and(|n| {
            let lower = n.to_ascii_lowercase();
            let parts: Vec<&str> = lower.split('.').collect();
            // `rspamd.conf.local`, `app.ini.override`: a file kind followed by a variant; `conf.d` and
            // `x.conf.d` are directories.
            let inner_kind = parts.len() > 2
                && parts.last() != Some(&"d")
                && parts[1..parts.len() - 1]
                    .iter()
                    .any(|p| FILE_EXTENSIONS.contains(p));
            FILE_NAMES.contains(&lower.as_str())
                || inner_kind
                || lower
                    .rsplit_once('.')
                    .is_some_and(|(stem, ext)| !stem.is_empty() && FILE_EXTENSIONS.contains(&ext))
        })
    };
    looks(u.target) || looks(s.key)
}

/// Extensions that mark a single file when the host cannot be asked.
const FILE_EXTENSIONS: &[&str] = &[
    "conf",
    "cfg",
    "cnf",
    "ini",
    "yml",
    "yaml",
    "json",
    "toml",
    "xml",
    "env",
    "properties",
    "sh",
    "bash",
    "py",
    "js",
    "mjs",
    "cjs",
    "ts",
    "php",
    "rb",
    "lua",
    "pl",
    "sql",
    "tmpl",
    "tpl",
    "template",
    "j2",
    "jinja",
    "html",
    "css",
    "txt",
    "hjson",
    "json5",
    "ico",
    "svg",
    "png",
    "jpg",
    "jpeg",
    "gif",
    "webp",
    "pem",
    "key",
    "crt",
    "cert",
    "p12",
    "pfx",
    "db",
    "sqlite",
    "sqlite3",
    "kdbx",
    "sock",
    "lic",
    "list",
    "rules",
    "lock",
    "htpasswd",
    "caddyfile",
    "exs",
    "ex",
    "cron",
];

/// File names without a telling extension.
const FILE_NAMES: &[&str] = &[
    "caddyfile",
    "corefile",
    "dockerfile",
    "procfile",
    "crontab",
    "htpasswd",
    ".htpasswd",
    ".env",
    "gemfile",
    "makefile",
    "docker.sock",
    "localtime",
    "timezone",
];

#[cfg(test)]
mod tests;
