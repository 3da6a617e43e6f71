//! Which backups a retention policy keeps: restic's `forget` rules, evaluated exactly as restic evaluates
//! them, and the safety floor on top that no policy can go below. Pure: times, tags and what the caller
//! found out about each backup go in, a decision with the rule or floor behind it comes out for each.
//!
//! The policy ([`apply_policy`]), as in restic:
//! - backups are taken newest first (a stable sort by creation time: backups of the same second keep the
//!   caller's order);
//! - `keep-last N` keeps the N newest; `keep-hourly/daily/weekly/monthly/yearly N` walk the list and keep
//!   a backup whenever its period (hour, day, ISO week, month, year of its wall-clock time in the time
//!   zone) differs from the period of the backup last kept by that rule, while that rule has keeps left:
//!   the newest backup in each of the N most recent periods that hold one (empty periods do not count);
//! - `keep-within 1y2m3d4h` keeps every backup strictly after the newest backup's time minus that span
//!   (years, months and days on the wall clock with Go's normalisation, as restic computes it: 31 March
//!   minus one month is 3 March; hours as elapsed time); the newest backup is the newest that is not in
//!   the future;
//! - `keep-tag TAG` keeps every backup with that tag;
//! - a backup is kept when any rule keeps it; a policy without a rule is refused by the caller.
//!
//! The floor ([`decide`]), whatever the policy: the newest backup; for each critical or important volume,
//! the newest backup holding it that a verification found intact; every backup the caller says protects
//! a volume for `check`. Safety copies (tags [`SAFETY_TAGS`]) are not subject to the policy's counts: they
//! are kept while younger than their own span (default 14 days), and the newest of each tag always.

use std::fmt;
use std::str::FromStr;

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, civil};
use serde::Serialize;

/// The tags of the backups a command takes of data it is about to replace or remove.
pub const SAFETY_TAGS: [&str; 5] = [
    "pre-restore",
    "pre-migrate",
    "pre-down",
    "pre-rollback",
    "pre-upgrade",
];

/// How long safety copies are kept unless configured otherwise.
pub const DEFAULT_SAFETY_WITHIN: Within = Within {
    years: 0,
    months: 0,
    days: 14,
    hours: 0,
};

/// Whether `tag` marks a safety copy.
pub fn is_safety_tag(tag: &str) -> bool {
    SAFETY_TAGS.contains(&tag)
}

/// How many periods a `keep-*` rule keeps: `0` is no rule, [`Count::UNLIMITED`] every period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count(u32);

impl Count {
    pub const OFF: Count = Count(0);
    /// Every period (restic ≥ 0.16 spells it `unlimited`).
    pub const UNLIMITED: Count = Count(u32::MAX);

    pub fn new(n: u32) -> Count {
        Count(n)
    }

    pub fn is_off(self) -> bool {
        self.0 == 0
    }

    pub fn is_unlimited(self) -> bool {
        self == Count::UNLIMITED
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unlimited() {
            f.write_str("unlimited")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl FromStr for Count {
    type Err = String;

    fn from_str(s: &str) -> Result<Count, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("unlimited") {
            return Ok(Count::UNLIMITED);
        }
        match s.parse::<u32>() {
            Ok(n) if n < u32::MAX => Ok(Count(n)),
            _ => Err(format!(
                "`{s}` is not a count (expected a whole number or `unlimited`)"
            )),
        }
    }
}

impl Serialize for Count {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.is_unlimited() {
            s.serialize_str("unlimited")
        } else {
            s.serialize_u32(self.0)
        }
    }
}

/// A span of calendar time in restic's notation: `1y2m3d4h` (years, months, days, hours; each at most
/// once, in any order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Within {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl Within {
    pub fn is_zero(self) -> bool {
        self == Within::default()
    }

    /// The instant this span before `latest`, computed as restic (Go's `AddDate`, then hours) does: the
    /// wall clock of `latest` in `tz` moves back by years, months and days, normalised the way Go
    /// normalises dates (month 0 is December of the year before, day 0 the last day of the month before,
    /// 31 March minus a month is 3 March), resolved in `tz` the way Go resolves a wall clock that a
    /// daylight-saving change skips or repeats; then the hours go back as elapsed time.
    pub fn before(self, latest: Timestamp, tz: &TimeZone) -> Timestamp {
        go_add_date_back(latest, tz, self).unwrap_or(Timestamp::MIN)
    }
}

impl fmt::Display for Within {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0h");
        }
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Within {
    type Err = String;

    fn from_str(s: &str) -> Result<Within, String> {
        let text = s.trim();
        let bad = |why: &str| {
            format!(
                "`{text}` is not a duration: {why} (expected numbers with units y, m, d, h, as in `14d` or `1y6m`)"
            )
        };
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        let mut w = Within::default();
        let mut seen = String::new();
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits == 0 {
                return Err(bad("a unit must follow a number"));
            }
            let n: u32 = rest[..digits]
                .parse()
                .map_err(|_| bad("a number is too large"))?;
            let Some(unit) = rest[digits..].chars().next() else {
                return Err(bad("the last number has no unit"));
            };
            if seen.contains(unit) {
                return Err(bad(&format!("`{unit}` appears twice")));
            }
            seen.push(unit);
            match unit {
                'y' => w.years = n,
                'm' => w.months = n,
                'd' => w.days = n,
                'h' => w.hours = n,
                other => return Err(bad(&format!("`{other}` is not a unit"))),
            }
            rest = &rest[digits + unit.len_utf8()..];
        }
        Ok(w)
    }
}

impl Serialize for Within {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn go_add_date_back(latest: Timestamp, tz: &TimeZone, w: Within) -> Option<Timestamp> {
    let wall = latest.to_zoned(tz.clone()).datetime();
    let months0 = i64::from(wall.month()) - 1 - i64::from(w.months);
    let year = i64::from(wall.year()) - i64::from(w.years) + months0.div_euclid(12);
    let month = i8::try_from(months0.rem_euclid(12) + 1).ok()?;
    let first = civil::Date::new(i16::try_from(year).ok()?, month, 1).ok()?;
    let date = first
        .checked_add(Span::new().days(i64::from(wall.day()) - 1 - i64::from(w.days)))
        .ok()?;
    let wall = date.to_datetime(wall.time());
    let as_utc = wall.to_zoned(TimeZone::UTC).ok()?.timestamp().as_second();
    // Go's `time.Date`: the offset in effect at the wall clock read as UTC; if the instant that offset
    // gives lies outside that offset's period, the offset in effect at that instant instead.
    let first_guess = offset_at(tz, as_utc)?;
    let offset = offset_at(tz, as_utc - first_guess)?;
    Timestamp::from_second(as_utc - offset - i64::from(w.hours) * 3600).ok()
}

fn offset_at(tz: &TimeZone, second: i64) -> Option<i64> {
    let ts = Timestamp::from_second(second).ok()?;
    Some(i64::from(tz.to_offset(ts).seconds()))
}

/// A retention policy: restic's `forget` options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub keep_last: Count,
    pub keep_hourly: Count,
    pub keep_daily: Count,
    pub keep_weekly: Count,
    pub keep_monthly: Count,
    pub keep_yearly: Count,
    pub keep_within: Within,
    pub keep_tags: Vec<String>,
}

impl Policy {
    /// No rule at all: such a policy is refused, as restic refuses it.
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, c)| c.is_off())
            && self.keep_within.is_zero()
            && self.keep_tags.is_empty()
    }

    fn counts(&self) -> [(Rule, Count); 6] {
        [
            (Rule::Last, self.keep_last),
            (Rule::Hourly, self.keep_hourly),
            (Rule::Daily, self.keep_daily),
            (Rule::Weekly, self.keep_weekly),
            (Rule::Monthly, self.keep_monthly),
            (Rule::Yearly, self.keep_yearly),
        ]
    }
}

impl fmt::Display for Policy {
    /// `7 daily, 4 weekly, 12 monthly, unlimited yearly, within 2d, tag release`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .counts()
            .iter()
            .filter(|(_, c)| !c.is_off())
            .map(|(r, c)| format!("{c} {}", r.period()))
            .collect();
        if !self.keep_within.is_zero() {
            parts.push(format!("within {} of the newest", self.keep_within));
        }
        for t in &self.keep_tags {
            parts.push(format!("tag `{t}`"));
        }
        if parts.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// A rule of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    Within,
    Tag,
}

impl Rule {
    fn period(self) -> &'static str {
        match self {
            Rule::Last => "last",
            Rule::Hourly => "hourly",
            Rule::Daily => "daily",
            Rule::Weekly => "weekly",
            Rule::Monthly => "monthly",
            Rule::Yearly => "yearly",
            Rule::Within => "within",
            Rule::Tag => "tag",
        }
    }

    /// restic's bucket value of a wall-clock time (`always` for `last` gives every backup its own).
    fn bucket(self, wall: civil::DateTime, nr: usize) -> i64 {
        let (y, m, d, h) = (
            i64::from(wall.year()),
            i64::from(wall.month()),
            i64::from(wall.day()),
            i64::from(wall.hour()),
        );
        match self {
            Rule::Last => nr as i64,
            Rule::Hourly => y * 1_000_000 + m * 10_000 + d * 100 + h,
            Rule::Daily => y * 10_000 + m * 100 + d,
            Rule::Weekly => {
                let iso = wall.date().iso_week_date();
                i64::from(iso.year()) * 100 + i64::from(iso.week())
            }
            Rule::Monthly => y * 100 + m,
            Rule::Yearly => y,
            Rule::Within | Rule::Tag => 0,
        }
    }
}

/// One backup as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dated<'a> {
    pub created: Timestamp,
    pub tag: Option<&'a str>,
}

/// restic's `forget`: for each backup (in the order given), the rules that keep it; empty when none does.
/// `now` decides which backups are in the future (they do not count as the newest for `keep-within`).
pub fn apply_policy(
    policy: &Policy,
    tz: &TimeZone,
    now: Timestamp,
    backups: &[Dated<'_>],
) -> Vec<Vec<Rule>> {
    let mut out = vec![Vec::new(); backups.len()];
    if policy.is_empty() || backups.is_empty() {
        return out;
    }
    let mut order: Vec<usize> = (0..backups.len()).collect();
    // Stable: backups of the same instant keep the caller's order, as in restic's `sort.Stable`.
    order.sort_by(|&a, &b| backups[b].created.cmp(&backups[a].created));
    let latest = backups.iter().map(|b| b.created).filter(|&t| t < now).max();
    let within_after =
        (!policy.keep_within.is_zero()).then(|| latest.map(|l| policy.keep_within.before(l, tz)));
    let mut buckets: Vec<(Rule, u32, Option<i64>)> = policy
        .counts()
        .into_iter()
        .filter(|(_, c)| !c.is_off())
        .map(|(r, c)| (r, c.0, None))
        .collect();
    for (nr, &i) in order.iter().enumerate() {
        let b = &backups[i];
        let rules = &mut out[i];
        if b.tag
            .is_some_and(|t| policy.keep_tags.iter().any(|k| k == t))
        {
            rules.push(Rule::Tag);
        }
        match within_after {
            // No backup before now: restic's newest is the zero time, and every backup is after it.
            Some(None) => rules.push(Rule::Within),
            Some(Some(after)) if b.created > after => rules.push(Rule::Within),
            _ => {}
        }
        let wall = b.created.to_zoned(tz.clone()).datetime();
        for (rule, left, last) in &mut buckets {
            if *left == 0 {
                continue;
            }
            let val = rule.bucket(wall, nr);
            if Some(val) != *last {
                *last = Some(val);
                if *left != u32::MAX {
                    *left -= 1;
                }
                rules.push(*rule);
            }
        }
    }
    out
}

/// One backup as [`decide`] sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidate {
    pub created: Timestamp,
    pub tag: Option<String>,
    /// Keys of the critical and important volumes it holds.
    pub valuable: Vec<String>,
    /// A verification found it intact (and the file has not changed since).
    pub verified: bool,
    /// Keys of the volumes `check` counts it as protecting.
    pub protects: Vec<String>,
}

impl Candidate {
    fn is_safety_copy(&self) -> bool {
        self.tag.as_deref().is_some_and(is_safety_tag)
    }
}

/// Why a backup is kept or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reason {
    /// A rule of the policy keeps it.
    Policy { rule: Rule },
    /// Floor: the newest backup that is not a safety copy.
    FloorNewest,
    /// Floor: the newest verified backup of these critical or important volumes.
    FloorVerified { volumes: Vec<String> },
    /// Floor: `check` counts it as protecting these volumes.
    FloorCheck { volumes: Vec<String> },
    /// A safety copy younger than its span.
    SafetyRecent { within: Within },
    /// The newest safety copy of its tag.
    SafetyNewest { tag: String },
    /// Removed: no rule and no floor keeps it.
    NoRule,
    /// Removed: a safety copy older than its span, and not the newest of its tag.
    SafetyExpired { within: Within },
}

impl Reason {
    /// Whether this reason is part of the floor (kept whatever the policy).
    pub fn is_floor(&self) -> bool {
        matches!(
            self,
            Reason::FloorNewest | Reason::FloorVerified { .. } | Reason::FloorCheck { .. }
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            v.iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Reason::Policy { rule } => match rule {
                Rule::Last => f.write_str("keep-last"),
                Rule::Within => f.write_str("keep-within"),
                Rule::Tag => f.write_str("keep-tag"),
                r => write!(f, "keep-{}", r.period()),
            },
            Reason::FloorNewest => f.write_str("floor: newest backup"),
            Reason::FloorVerified { volumes } => {
                write!(f, "floor: newest verified backup of {}", list(volumes))
            }
            Reason::FloorCheck { volumes } => {
                write!(f, "floor: protects {} for `check`", list(volumes))
            }
            Reason::SafetyRecent { within } => write!(f, "safety copy younger than {within}"),
            Reason::SafetyNewest { tag } => write!(f, "newest `{tag}` safety copy"),
            Reason::NoRule => f.write_str("no rule keeps it"),
            Reason::SafetyExpired { within } => {
                write!(
                    f,
                    "safety copy older than {within}, not the newest of its tag"
                )
            }
        }
    }
}

/// What happens to one backup, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub keep: bool,
    /// Never empty: every rule and floor that keeps it, or why it goes.
    pub reasons: Vec<Reason>,
}

impl Decision {
    /// Kept, but by the floor alone (the policy would have removed it).
    pub fn kept_only_by_floor(&self) -> bool {
        self.keep && self.reasons.iter().all(Reason::is_floor)
    }

    /// `keep-daily, floor: newest backup`.
    pub fn why(&self) -> String {
        self.reasons
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The decision for every backup, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub decisions: Vec<Decision>,
    /// The policy keeps none of the backups it applies to (only the floor and safety rule keep any).
    pub policy_keeps_none: bool,
}

/// The policy on the backups that are not safety copies, the safety copies' own rule, and the floor on top.
pub fn decide(
    policy: &Policy,
    safety_within: Within,
    tz: &TimeZone,
    now: Timestamp,
    candidates: &[Candidate],
) -> Plan {
    let regular: Vec<usize> = (0..candidates.len())
        .filter(|&i| !candidates[i].is_safety_copy())
        .collect();
    let dated: Vec<Dated<'_>> = regular
        .iter()
        .map(|&i| Dated {
            created: candidates[i].created,
            tag: candidates[i].tag.as_deref(),
        })
        .collect();
    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); candidates.len()];
    for (&i, rules) in regular.iter().zip(apply_policy(policy, tz, now, &dated)) {
        reasons[i].extend(rules.into_iter().map(|rule| Reason::Policy { rule }));
    }
    let policy_keeps_none = !regular.is_empty() && regular.iter().all(|&i| reasons[i].is_empty());

    // Newest first, ties in the caller's order (the same order the policy used).
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| candidates[b].created.cmp(&candidates[a].created));

    if let Some(&newest) = order.iter().find(|&&i| !candidates[i].is_safety_copy()) {
        reasons[newest].push(Reason::FloorNewest);
    }
    let mut verified_of: Vec<(String, usize)> = Vec::new();
    for &i in &order {
        let c = &candidates[i];
        if !c.verified {
            continue;
        }
        for key in &c.valuable {
            if !verified_of.iter().any(|(k, _)| k == key) {
                verified_of.push((key.clone(), i));
            }
        }
    }
    for &i in &order {
        let volumes: Vec<String> = verified_of
            .iter()
            .filter(|(_, j)| *j == i)
            .map(|(k, _)| k.clone())
            .collect();
        if !volumes.is_empty() {
            reasons[i].push(Reason::FloorVerified { volumes });
        }
        if !candidates[i].protects.is_empty() {
            reasons[i].push(Reason::FloorCheck {
                volumes: candidates[i].protects.clone(),
            });
        }
    }

    let safety_after = safety_within.before(now, tz);
    let mut newest_of_tag: Vec<&str> = Vec::new();
    for &i in &order {
        let c = &candidates[i];
        let Some(tag) = c.tag.as_deref().filter(|t| is_safety_tag(t)) else {
            continue;
        };
        if policy.keep_tags.iter().any(|k| k == tag) {
            reasons[i].push(Reason::Policy { rule: Rule::Tag });
        }
        if !newest_of_tag.contains(&tag) {
            newest_of_tag.push(tag);
            reasons[i].push(Reason::SafetyNewest {
                tag: tag.to_string(),
            });
        }
        if c.created > safety_after {
            reasons[i].push(Reason::SafetyRecent {
                within: safety_within,
            });
        }
    }

    let decisions = reasons
        .into_iter()
        .zip(candidates)
        .map(|(reasons, c)| {
            if reasons.is_empty() {
                Decision {
                    keep: false,
                    reasons: vec![if c.is_safety_copy() {
                        Reason::SafetyExpired {
                            within: safety_within,
                        }
                    } else {
                        Reason::NoRule
                    }],
                }
            } else {
                Decision {
                    keep: true,
                    reasons,
                }
            }
        })
        .collect();
    Plan {
        decisions,
        policy_keeps_none,
    }
}

/// What `check` may count as protecting when it cannot be asked (the engine is unreachable): for each
/// critical or important volume, every backup holding it from the newest down to the newest verified one
/// (all of them when none is verified). `check` takes the newest of these that is fresh and verifies, so
/// the backup it would name is among them.
pub fn may_protect(candidates: &[Candidate]) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new(); candidates.len()];
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| candidates[b].created.cmp(&candidates[a].created));
    let mut done: Vec<&str> = Vec::new();
    for &i in &order {
        for key in &candidates[i].valuable {
            if done.contains(&key.as_str()) {
                continue;
            }
            out[i].push(key.clone());
            if candidates[i].verified {
                done.push(key);
            }
        }
    }
    out
}

/// A `retention:` mapping of the Compose file (`x-persist.retention`, or a destination's): the policy in
/// the flags' own words (`keep-daily: 7`, `keep-yearly: unlimited`, `keep-within: 2d`, `keep-tag: [a, b]`;
/// `keep_daily` works too), the time zone (`tz:`) and how long safety copies stay (`keep-safety-copies:`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub policy: Policy,
    pub tz: Option<String>,
    pub safety_within: Option<Within>,
}

impl Config {
    /// Parses a `retention:` value; the error says which key is wrong and why.
    pub fn from_json(raw: &serde_json::Value) -> Result<Config, String> {
        use serde_json::Value;
        let Value::Object(map) = raw else {
            return Err(format!("it must be a mapping, not `{raw}`"));
        };
        let text = |key: &str, v: &Value| -> Result<String, String> {
            match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(format!("`{key}` must be a string, not `{other}`")),
            }
        };
        let mut c = Config::default();
        for (key, v) in map {
            let normal = key.replace('_', "-");
            let count = |v: &Value| -> Result<Count, String> {
                text(key, v)?.parse().map_err(|e| format!("`{key}`: {e}"))
            };
            match normal.as_str() {
                "keep-last" => c.policy.keep_last = count(v)?,
                "keep-hourly" => c.policy.keep_hourly = count(v)?,
                "keep-daily" => c.policy.keep_daily = count(v)?,
                "keep-weekly" => c.policy.keep_weekly = count(v)?,
                "keep-monthly" => c.policy.keep_monthly = count(v)?,
                "keep-yearly" => c.policy.keep_yearly = count(v)?,
                "keep-within" => {
                    c.policy.keep_within =
                        text(key, v)?.parse().map_err(|e| format!("`{key}`: {e}"))?;
                }
                "keep-tag" | "keep-tags" => {
                    let tags = match v {
                        Value::Array(items) => items
                            .iter()
                            .map(|t| text(key, t))
                            .collect::<Result<Vec<_>, _>>()?,
                        other => vec![text(key, other)?],
                    };
                    c.policy.keep_tags.extend(tags);
                }
                "tz" => c.tz = Some(text(key, v)?),
                "keep-safety-copies" => {
                    c.safety_within =
                        Some(text(key, v)?.parse().map_err(|e| format!("`{key}`: {e}"))?);
                }
                _ => {
                    return Err(format!(
                        "unknown key `{key}` (expected keep-last, keep-hourly, keep-daily, keep-weekly, keep-monthly, keep-yearly, keep-within, keep-tag, tz, keep-safety-copies)"
                    ));
                }
            }
        }
        Ok(c)
    }
}

/// The time zone named `name` (an IANA name such as `Europe/Berlin`, or `UTC`), else the system's
/// (`TZ`, then `/etc/localtime`).
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        Some(n) => TimeZone::get(n).map_err(|e| format!("unknown time zone `{n}`: {e}")),
        None => Ok(TimeZone::system()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn policy(f: impl FnOnce(&mut Policy)) -> Policy {
        let mut p = Policy::default();
        f(&mut p);
        p
    }

    /// The times (RFC 3339) the policy keeps out of `times` (any order), in UTC.
    fn kept(p: &Policy, tz: &TimeZone, times: &[&str]) -> Vec<String> {
        let dated: Vec<Dated<'_>> = times
            .iter()
            .map(|s| Dated {
                created: t(s),
                tag: None,
            })
            .collect();
        let now = t("2030-01-01T00:00:00Z");
        let mut out: Vec<String> = apply_policy(p, tz, now, &dated)
            .iter()
            .zip(times)
            .filter(|(r, _)| !r.is_empty())
            .map(|(_, s)| t(s).to_string())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn counts_parse_numbers_and_unlimited() {
        assert_eq!("7".parse::<Count>().unwrap(), Count::new(7));
        assert_eq!("unlimited".parse::<Count>().unwrap(), Count::UNLIMITED);
        assert!("-1".parse::<Count>().is_err());
        assert!("x".parse::<Count>().is_err());
        assert_eq!(Count::UNLIMITED.to_string(), "unlimited");
    }

    #[test]
    fn durations_parse_in_restic_notation() {
        let w: Within = "1y2m3d4h".parse().unwrap();
        assert_eq!(
            w,
            Within {
                years: 1,
                months: 2,
                days: 3,
                hours: 4
            }
        );
        assert_eq!(w.to_string(), "1y2m3d4h");
        assert_eq!("14d".parse::<Within>().unwrap().days, 14);
        for bad in ["", "14", "d", "3w", "1d2d", "-1d", "1.5d"] {
            assert!(bad.parse::<Within>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_empty_policy_is_empty() {
        assert!(Policy::default().is_empty());
        assert!(
            policy(|p| {
                p.keep_within = "0d".parse().unwrap();
            })
            .is_empty()
        );
        assert!(!policy(|p| p.keep_tags.push("x".into())).is_empty());
        assert!(!policy(|p| p.keep_daily = Count::new(1)).is_empty());
    }

    #[test]
    fn an_empty_policy_keeps_nothing_by_itself() {
        let d = [Dated {
            created: t("2026-01-01T00:00:00Z"),
            tag: None,
        }];
        assert_eq!(
            apply_policy(
                &Policy::default(),
                &TimeZone::UTC,
                t("2027-01-01T00:00:00Z"),
                &d
            ),
            vec![Vec::<Rule>::new()]
        );
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let p = policy(|p| p.keep_last = Count::new(2));
        let times = [
            "2026-01-01T00:00:00Z",
            "2026-01-03T00:00:00Z",
            "2026-01-02T00:00:00Z",
        ];
        assert_eq!(
            kept(&p, &TimeZone::UTC, &times),
            ["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]
        );
    }

    #[test]
    fn keep_daily_keeps_the_newest_of_each_day_and_skips_empty_days() {
        let p = policy(|p| p.keep_daily = Count::new(3));
        let times = [
            "2026-01-10T08:00:00Z",
            "2026-01-10T20:00:00Z",
            "2026-01-07T09:00:00Z",
            "2026-01-01T09:00:00Z",
            "2026-01-01T23:00:00Z",
            "2025-12-20T09:00:00Z",
        ];
        // Three days that hold a backup, however far apart: 10th, 7th, 1st.
        assert_eq!(
            kept(&p, &TimeZone::UTC, &times),
            [
                "2026-01-01T23:00:00Z",
                "2026-01-07T09:00:00Z",
                "2026-01-10T20:00:00Z"
            ]
        );
    }

    #[test]
    fn days_are_days_of_the_time_zone() {
        let p = policy(|p| p.keep_daily = Count::new(5));
        // 23:30 UTC on the 1st is 00:30 on the 2nd in Berlin: the same day as the 2nd's backup.
        let times = ["2026-01-01T23:30:00Z", "2026-01-02T10:00:00Z"];
        assert_eq!(kept(&p, &TimeZone::UTC, &times).len(), 2);
        assert_eq!(kept(&p, &berlin(), &times), ["2026-01-02T10:00:00Z"]);
    }

    #[test]
    fn weeks_are_iso_weeks_across_the_year_boundary() {
        let p = policy(|p| p.keep_weekly = Count::new(10));
        // 2026 has an ISO week 53 (Mon 28 Dec 2026 – Sun 3 Jan 2027): one week, not two years.
        let times = [
            "2026-12-28T12:00:00Z",
            "2026-12-31T12:00:00Z",
            "2027-01-03T12:00:00Z",
            "2027-01-04T12:00:00Z",
        ];
        assert_eq!(
            kept(&p, &TimeZone::UTC, &times),
            ["2027-01-03T12:00:00Z", "2027-01-04T12:00:00Z"]
        );
        let monthly = policy(|p| p.keep_monthly = Count::new(10));
        assert_eq!(kept(&monthly, &TimeZone::UTC, &times).len(), 2);
    }

    #[test]
    fn the_repeated_hour_of_a_daylight_saving_change_is_one_hourly_period() {
        let p = policy(|p| p.keep_hourly = Count::new(10));
        // 25 Oct 2026 in Berlin: 02:00–03:00 happens twice (00:00Z–01:00Z as CEST, 01:00Z–02:00Z as CET).
        let times = ["2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"];
        assert_eq!(kept(&p, &berlin(), &times), ["2026-10-25T01:30:00Z"]);
        assert_eq!(kept(&p, &TimeZone::UTC, &times).len(), 2);
    }

    #[test]
    fn rules_are_ored_and_count_independently() {
        let p = policy(|p| {
            p.keep_last = Count::new(1);
            p.keep_monthly = Count::new(2);
        });
        let times = [
            "2026-03-05T00:00:00Z",
            "2026-03-01T00:00:00Z",
            "2026-02-10T00:00:00Z",
            "2026-01-10T00:00:00Z",
        ];
        // last: 03-05; monthly: 03-05 (March), 02-10 (February).
        assert_eq!(
            kept(&p, &TimeZone::UTC, &times),
            ["2026-02-10T00:00:00Z", "2026-03-05T00:00:00Z"]
        );
        let d: Vec<Dated<'_>> = times
            .iter()
            .map(|s| Dated {
                created: t(s),
                tag: None,
            })
            .collect();
        let rules = apply_policy(&p, &TimeZone::UTC, t("2030-01-01T00:00:00Z"), &d);
        assert_eq!(rules[0], [Rule::Last, Rule::Monthly]);
    }

    #[test]
    fn unlimited_keeps_every_period() {
        let p = policy(|p| p.keep_yearly = Count::UNLIMITED);
        let times: Vec<String> = (1990..2026)
            .map(|y| format!("{y}-06-01T00:00:00Z"))
            .collect();
        let refs: Vec<&str> = times.iter().map(String::as_str).collect();
        assert_eq!(kept(&p, &TimeZone::UTC, &refs).len(), times.len());
    }

    #[test]
    fn keep_within_is_relative_to_the_newest_backup_and_strict() {
        let p = policy(|p| p.keep_within = "2d".parse().unwrap());
        let times = [
            "2020-01-10T12:00:00Z",
            "2020-01-08T12:00:01Z",
            "2020-01-08T12:00:00Z",
        ];
        // Years ago, yet kept: the span counts back from the newest backup, and exactly 2 days is out.
        assert_eq!(
            kept(&p, &TimeZone::UTC, &times),
            ["2020-01-08T12:00:01Z", "2020-01-10T12:00:00Z"]
        );
    }

    #[test]
    fn keep_within_ignores_backups_in_the_future_as_the_newest() {
        let p = policy(|p| p.keep_within = "1d".parse().unwrap());
        let d = [
            Dated {
                created: t("2031-01-01T00:00:00Z"),
                tag: None,
            },
            Dated {
                created: t("2029-12-31T12:00:00Z"),
                tag: None,
            },
            Dated {
                created: t("2029-12-01T00:00:00Z"),
                tag: None,
            },
        ];
        let r = apply_policy(&p, &TimeZone::UTC, t("2030-01-01T00:00:00Z"), &d);
        assert_eq!(r, [vec![Rule::Within], vec![Rule::Within], vec![]]);
    }

    #[test]
    fn keep_within_months_normalise_like_go() {
        let utc = TimeZone::UTC;
        let m1: Within = "1m".parse().unwrap();
        // 31 March minus one month is "31 February": 3 March.
        assert_eq!(
            m1.before(t("2026-03-31T10:00:00Z"), &utc),
            t("2026-03-03T10:00:00Z")
        );
        let y1: Within = "1y".parse().unwrap();
        assert_eq!(
            y1.before(t("2024-02-29T10:00:00Z"), &utc),
            t("2023-03-01T10:00:00Z")
        );
        let d40: Within = "40d".parse().unwrap();
        assert_eq!(
            d40.before(t("2026-01-15T00:00:00Z"), &utc),
            t("2025-12-06T00:00:00Z")
        );
    }

    #[test]
    fn keep_within_days_follow_the_wall_clock_across_daylight_saving() {
        let tz = berlin();
        let d1: Within = "1d".parse().unwrap();
        // Monday 30 March 2026 01:30 CEST minus one day is Sunday 01:30 CET: 23 hours earlier.
        assert_eq!(
            d1.before(t("2026-03-29T23:30:00Z"), &tz),
            t("2026-03-29T00:30:00Z")
        );
        let h24: Within = "24h".parse().unwrap();
        assert_eq!(
            h24.before(t("2026-03-29T23:30:00Z"), &tz),
            t("2026-03-28T23:30:00Z")
        );
        // A wall clock the change skips (02:30 on 29 March) resolves after the gap, as Go does.
        assert_eq!(
            d1.before(t("2026-03-30T00:30:00Z"), &tz),
            t("2026-03-29T01:30:00Z")
        );
        // A wall clock the change repeats (02:30 on 25 October) resolves to its second occurrence, as Go
        // does.
        assert_eq!(
            d1.before(t("2026-10-26T01:30:00Z"), &tz),
            t("2026-10-25T01:30:00Z")
        );
    }

    #[test]
    fn keep_tag_keeps_every_backup_with_the_tag() {
        let p = policy(|p| p.keep_tags.push("release".into()));
        let d = [
            Dated {
                created: t("2026-01-02T00:00:00Z"),
                tag: None,
            },
            Dated {
                created: t("2026-01-01T00:00:00Z"),
                tag: Some("release"),
            },
        ];
        let r = apply_policy(&p, &TimeZone::UTC, t("2027-01-01T00:00:00Z"), &d);
        assert_eq!(r, [vec![], vec![Rule::Tag]]);
    }

    #[test]
    fn ties_go_to_the_first_in_the_given_order() {
        let p = policy(|p| p.keep_daily = Count::new(1));
        let d = [
            Dated {
                created: t("2026-01-01T00:00:00Z"),
                tag: Some("b"),
            },
            Dated {
                created: t("2026-01-01T00:00:00Z"),
                tag: Some("a"),
            },
        ];
        let r = apply_policy(&p, &TimeZone::UTC, t("2027-01-01T00:00:00Z"), &d);
        assert_eq!(r, [vec![Rule::Daily], vec![]]);
    }

    fn cand(created: &str) -> Candidate {
        Candidate {
            created: t(created),
            ..Candidate::default()
        }
    }

    fn decide_at(p: &Policy, now: &str, c: &[Candidate]) -> Plan {
        decide(p, DEFAULT_SAFETY_WITHIN, &TimeZone::UTC, t(now), c)
    }

    #[test]
    fn the_floor_keeps_the_newest_backup_whatever_the_policy() {
        let p = policy(|p| p.keep_tags.push("release".into()));
        let c = [cand("2026-01-02T00:00:00Z"), cand("2026-01-01T00:00:00Z")];
        let plan = decide_at(&p, "2026-02-01T00:00:00Z", &c);
        assert_eq!(plan.decisions[0].reasons, [Reason::FloorNewest]);
        assert!(plan.decisions[0].kept_only_by_floor());
        assert!(!plan.decisions[1].keep);
        assert_eq!(plan.decisions[1].reasons, [Reason::NoRule]);
        assert!(plan.policy_keeps_none);
    }

    #[test]
    fn the_floor_keeps_the_newest_verified_backup_of_each_valuable_volume() {
        let p = policy(|p| p.keep_last = Count::new(1));
        let mut newest = cand("2026-01-03T00:00:00Z");
        newest.valuable = vec!["db".into()];
        let mut verified = cand("2026-01-02T00:00:00Z");
        verified.valuable = vec!["db".into(), "redis".into()];
        verified.verified = true;
        let mut older = cand("2026-01-01T00:00:00Z");
        older.valuable = vec!["db".into(), "media".into()];
        older.verified = true;
        let plan = decide_at(&p, "2026-02-01T00:00:00Z", &[newest, verified, older]);
        assert_eq!(
            plan.decisions[0].reasons,
            [Reason::Policy { rule: Rule::Last }, Reason::FloorNewest]
        );
        assert_eq!(
            plan.decisions[1].reasons,
            [Reason::FloorVerified {
                volumes: vec!["db".into(), "redis".into()]
            }]
        );
        // `media`'s only verified backup.
        assert_eq!(
            plan.decisions[2].reasons,
            [Reason::FloorVerified {
                volumes: vec!["media".into()]
            }]
        );
        assert!(!plan.policy_keeps_none);
    }

    #[test]
    fn the_floor_keeps_what_protects_a_volume_for_check() {
        let p = policy(|p| p.keep_last = Count::new(1));
        let mut old = cand("2026-01-01T00:00:00Z");
        old.protects = vec!["db".into()];
        let plan = decide_at(
            &p,
            "2026-02-01T00:00:00Z",
            &[cand("2026-01-02T00:00:00Z"), old],
        );
        assert_eq!(
            plan.decisions[1].reasons,
            [Reason::FloorCheck {
                volumes: vec!["db".into()]
            }]
        );
    }

    #[test]
    fn safety_copies_follow_their_own_rule() {
        let p = policy(|p| p.keep_last = Count::new(1));
        let tagged = |s: &str, tag: &str| Candidate {
            tag: Some(tag.into()),
            ..cand(s)
        };
        let c = [
            cand("2026-03-01T00:00:00Z"),
            tagged("2026-02-25T00:00:00Z", "pre-restore"),
            tagged("2026-02-20T00:00:00Z", "pre-restore"),
            tagged("2026-02-10T00:00:00Z", "pre-restore"),
            tagged("2026-01-01T00:00:00Z", "pre-down"),
        ];
        let plan = decide_at(&p, "2026-03-01T12:00:00Z", &c);
        let keep: Vec<bool> = plan.decisions.iter().map(|d| d.keep).collect();
        assert_eq!(keep, [true, true, true, false, true]);
        // The copies do not use up the policy's counts: `keep-last 1` kept the regular backup.
        assert_eq!(
            plan.decisions[0].reasons[0],
            Reason::Policy { rule: Rule::Last }
        );
        assert_eq!(
            plan.decisions[1].reasons,
            [
                Reason::SafetyNewest {
                    tag: "pre-restore".into()
                },
                Reason::SafetyRecent {
                    within: DEFAULT_SAFETY_WITHIN
                }
            ]
        );
        assert_eq!(
            plan.decisions[2].reasons,
            [Reason::SafetyRecent {
                within: DEFAULT_SAFETY_WITHIN
            }]
        );
        assert_eq!(
            plan.decisions[3].reasons,
            [Reason::SafetyExpired {
                within: DEFAULT_SAFETY_WITHIN
            }]
        );
        assert_eq!(
            plan.decisions[4].reasons,
            [Reason::SafetyNewest {
                tag: "pre-down".into()
            }]
        );
    }

    #[test]
    fn every_decision_says_why() {
        let p = policy(|p| p.keep_daily = Count::new(1));
        let plan = decide_at(
            &p,
            "2026-02-01T00:00:00Z",
            &[cand("2026-01-02T00:00:00Z"), cand("2026-01-01T00:00:00Z")],
        );
        assert_eq!(plan.decisions[0].why(), "keep-daily; floor: newest backup");
        assert_eq!(plan.decisions[1].why(), "no rule keeps it");
    }

    #[test]
    fn without_check_every_backup_down_to_the_newest_verified_may_protect() {
        let mut a = cand("2026-01-03T00:00:00Z");
        a.valuable = vec!["db".into()];
        let mut b = cand("2026-01-02T00:00:00Z");
        b.valuable = vec!["db".into(), "media".into()];
        b.verified = true;
        let mut c = cand("2026-01-01T00:00:00Z");
        c.valuable = vec!["db".into(), "media".into()];
        assert_eq!(
            may_protect(&[c, a, b]),
            [
                Vec::<String>::new(),
                vec!["db".into()],
                vec!["db".into(), "media".into()]
            ]
        );
    }

    #[test]
    fn a_retention_mapping_reads_like_the_flags() {
        let c = Config::from_json(&serde_json::json!({
            "keep-daily": 7, "keep_weekly": "4", "keep-yearly": "unlimited", "keep-within": "2d",
            "keep-tag": ["release", "golden"], "tz": "Europe/Berlin", "keep-safety-copies": "30d"
        }))
        .unwrap();
        assert_eq!(c.policy.keep_daily, Count::new(7));
        assert_eq!(c.policy.keep_weekly, Count::new(4));
        assert_eq!(c.policy.keep_yearly, Count::UNLIMITED);
        assert_eq!(c.policy.keep_within.days, 2);
        assert_eq!(c.policy.keep_tags, ["release", "golden"]);
        assert_eq!(c.tz.as_deref(), Some("Europe/Berlin"));
        assert_eq!(c.safety_within.unwrap().days, 30);
    }

    #[test]
    fn a_retention_mapping_with_a_typo_is_refused() {
        let e = Config::from_json(&serde_json::json!({"keep-dialy": 7})).unwrap_err();
        assert!(e.starts_with("unknown key `keep-dialy`"), "{e}");
        let e = Config::from_json(&serde_json::json!({"keep-daily": "seven"})).unwrap_err();
        assert!(e.contains("`seven` is not a count"), "{e}");
        assert!(Config::from_json(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn time_zones_are_named_or_the_systems() {
        assert!(time_zone(Some("Europe/Berlin")).is_ok());
        assert!(
            time_zone(Some("Mars/Olympus"))
                .unwrap_err()
                .contains("Mars/Olympus")
        );
        assert!(time_zone(None).is_ok());
    }

    #[test]
    fn a_policy_describes_itself() {
        let p = policy(|p| {
            p.keep_daily = Count::new(7);
            p.keep_weekly = Count::new(4);
            p.keep_monthly = Count::new(12);
            p.keep_yearly = Count::UNLIMITED;
        });
        assert_eq!(
            p.to_string(),
            "7 daily, 4 weekly, 12 monthly, unlimited yearly"
        );
    }
}
