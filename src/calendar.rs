//! When scheduled backups run: one calendar, written as a five-field cron expression, that becomes a
//! systemd `OnCalendar=` line or a crontab line, and from which the next run times are computed here (so
//! that `schedule show` and `status` need neither systemd nor cron to answer).
//!
//! `--daily HH:MM`, `--hourly`, `--every DURATION` and `--cron EXPR` all turn into a [`Calendar`]: the sets
//! of minutes, hours, days of the month, months and weekdays on which a run starts, in the machine's local
//! time zone (as cron and systemd timers use it). Cron's rule that a day matches when *either* a restricted
//! day of the month *or* a restricted weekday matches has no systemd equivalent, so an expression that
//! restricts both is refused.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use jiff::Zoned;
use jiff::civil::{Date, DateTime};

/// A calendar of run times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// The cron expression it was made from (or that says the same).
    pub cron: String,
    minutes: BTreeSet<u8>,
    hours: BTreeSet<u8>,
    days: BTreeSet<u8>,
    months: BTreeSet<u8>,
    /// 0 = Monday … 6 = Sunday.
    weekdays: BTreeSet<u8>,
}

/// A calendar that cannot be built, with what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CalendarError(pub String);

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
/// Cron's weekday names, Sunday first (0 and 7 are both Sunday).
const CRON_DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
/// systemd's weekday names, Monday first.
const SYSTEMD_DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

impl Calendar {
    /// Every day at `HH:MM`.
    pub fn daily(at: &str) -> Result<Calendar, CalendarError> {
        let bad = || {
            CalendarError(format!(
                "`{at}` is not a time of day; write it as HH:MM (03:15)"
            ))
        };
        let (h, m) = at.split_once(':').ok_or_else(bad)?;
        let h: u8 = h.parse().map_err(|_| bad())?;
        let m: u8 = m.parse().map_err(|_| bad())?;
        if h > 23 || m > 59 {
            return Err(bad());
        }
        Calendar::cron(&format!("{m} {h} * * *"))
    }

    /// Every hour on the hour.
    pub fn hourly() -> Calendar {
        Calendar::cron("0 * * * *").unwrap_or_else(|_| unreachable!("a valid expression"))
    }

    /// Every `every`, aligned on the clock: a number of minutes that divides an hour, of hours that
    /// divides a day, or one day (at midnight).
    pub fn every(every: std::time::Duration) -> Result<Calendar, CalendarError> {
        let secs = every.as_secs();
        let minutes = secs / 60;
        if !secs.is_multiple_of(60) || minutes == 0 {
            return Err(CalendarError(
                "`--every` needs whole minutes (15m, 2h, 1d)".to_string(),
            ));
        }
        let expr = if minutes < 60 && 60 % minutes == 0 {
            if minutes == 1 {
                "* * * * *".to_string()
            } else {
                format!("*/{minutes} * * * *")
            }
        } else if minutes.is_multiple_of(60)
            && minutes < 24 * 60
            && (24u64 * 60).is_multiple_of(minutes)
        {
            let hours = minutes / 60;
            if hours == 1 {
                "0 * * * *".to_string()
            } else {
                format!("0 */{hours} * * *")
            }
        } else if minutes == 24 * 60 {
            "0 0 * * *".to_string()
        } else {
            return Err(CalendarError(format!(
                "`--every {}` does not divide an hour or a day evenly; use a divisor (15m, 20m, 2h, 6h, 1d) or `--cron`",
                crate::runs::format_duration(every)
            )));
        };
        Calendar::cron(&expr)
    }

    /// A five-field cron expression (`minute hour day-of-month month weekday`), or `@hourly`, `@daily`,
    /// `@weekly`, `@monthly`, `@yearly`.
    pub fn cron(expr: &str) -> Result<Calendar, CalendarError> {
        let expanded = match expr.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(CalendarError(format!(
                "`{expr}` is not a cron expression: it needs five fields (minute hour day-of-month month weekday)"
            )));
        };
        let minutes = field(minute, 0, 59, &[], "minute")?;
        let hours = field(hour, 0, 23, &[], "hour")?;
        let days = field(dom, 1, 31, &[], "day of the month")?;
        let months = field(month, 1, 12, &MONTHS, "month")?;
        let cron_days = field(dow, 0, 7, &CRON_DAYS, "weekday")?;
        // Cron: 0 and 7 are Sunday; here 0 is Monday.
        let mut weekdays: BTreeSet<u8> = cron_days.iter().map(|d| (d + 6) % 7).collect();
        let mut days = days;
        // Cron: when neither day field starts with `*`, a day matches if either does.
        if !dom.starts_with('*') && !dow.starts_with('*') {
            if days.len() == 31 || weekdays.len() == 7 {
                days = (1..=31).collect();
                weekdays = (0..7).collect();
            } else {
                return Err(CalendarError(format!(
                    "`{expr}` restricts both the day of the month and the weekday; cron runs when either \
                     matches, which a systemd timer cannot say: schedule one of them"
                )));
            }
        }
        Ok(Calendar {
            cron: expanded.split_whitespace().collect::<Vec<_>>().join(" "),
            minutes,
            hours,
            days,
            months,
            weekdays,
        })
    }

    /// The systemd `OnCalendar=` value that says the same.
    pub fn on_calendar(&self) -> String {
        let mut out = String::new();
        if self.weekdays.len() < 7 {
            out.push_str(&systemd_list(&self.weekdays, 0, 6, |d| {
                SYSTEMD_DAYS[usize::from(d)].to_string()
            }));
            out.push(' ');
        }
        let two = |n: u8| format!("{n:02}");
        let _ = write!(
            out,
            "*-{}-{} {}:{}:00",
            systemd_list(&self.months, 1, 12, two),
            systemd_list(&self.days, 1, 31, two),
            systemd_list(&self.hours, 0, 23, two),
            systemd_list(&self.minutes, 0, 59, two),
        );
        out
    }

    fn day_matches(&self, d: Date) -> bool {
        self.months.contains(&(d.month() as u8))
            && self.days.contains(&(d.day() as u8))
            && self
                .weekdays
                .contains(&((d.weekday().to_monday_zero_offset()) as u8))
    }

    /// The next `n` run times strictly after `after`, in its time zone. Searches up to 30 years ahead
    /// (five 29 Februaries come within that).
    pub fn next_runs(&self, after: &Zoned, n: usize) -> Vec<Zoned> {
        let tz = after.time_zone().clone();
        let mut out = Vec::with_capacity(n);
        let mut day = after.date();
        let last = day.saturating_add(jiff::Span::new().years(30));
        while out.len() < n && day <= last {
            if self.day_matches(day) {
                for &h in &self.hours {
                    for &m in &self.minutes {
                        let civil =
                            DateTime::from_parts(day, jiff::civil::time(h as i8, m as i8, 0, 0));
                        // As systemd does: a time a DST change skips does not happen; a time it
                        // repeats happens once, the first time.
                        let ambiguous = tz.to_ambiguous_zoned(civil);
                        if matches!(ambiguous.offset(), jiff::tz::AmbiguousOffset::Gap { .. }) {
                            continue;
                        }
                        let Ok(z) = ambiguous.earlier() else {
                            continue;
                        };
                        if z > *after && out.last().is_none_or(|l: &Zoned| z > *l) {
                            out.push(z);
                            if out.len() == n {
                                return out;
                            }
                        }
                    }
                }
            }
            match day.tomorrow() {
                Ok(d) => day = d,
                Err(_) => break,
            }
        }
        out
    }

    /// The longest time between two consecutive runs, over the next runs after `after`: what `status`
    /// allows before it calls the last backup stale.
    pub fn longest_gap(&self, after: &Zoned) -> Option<std::time::Duration> {
        let runs = self.next_runs(after, 400);
        runs.windows(2)
            .filter_map(|w| {
                let d = w[1].timestamp().duration_since(w[0].timestamp());
                std::time::Duration::try_from(d).ok()
            })
            .max()
    }
}

/// One cron field as the set of its values in `lo..=hi`.
fn field(
    text: &str,
    lo: u8,
    hi: u8,
    names: &[&str],
    what: &str,
) -> Result<BTreeSet<u8>, CalendarError> {
    let bad = |why: &str| CalendarError(format!("cron {what} `{text}`: {why}"));
    let value = |s: &str| -> Result<u8, CalendarError> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            // Month names count from 1, weekday names from 0.
            return Ok(i as u8 + lo);
        }
        let v: u8 = s
            .parse()
            .map_err(|_| bad(&format!("`{s}` is not a number")))?;
        if v < lo || v > hi {
            return Err(bad(&format!("{v} is outside {lo}–{hi}")));
        }
        Ok(v)
    };
    let mut set = BTreeSet::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u8 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad(&format!("`{s}` is not a step")))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (from, to) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(bad(&format!("the range `{range}` runs backwards")));
            }
            (a, b)
        } else {
            let a = value(range)?;
            // `5/15`: from 5 to the end in steps of 15.
            (a, if part.contains('/') { hi } else { a })
        };
        let mut v = from;
        while v <= to {
            set.insert(v);
            match v.checked_add(step) {
                Some(next) => v = next,
                None => break,
            }
        }
    }
    if set.is_empty() {
        return Err(bad("no value"));
    }
    // Cron's `*` for weekdays is 0–7; Sunday twice is still every day.
    if what == "weekday" && set.contains(&7) {
        set.remove(&7);
        set.insert(0);
    }
    Ok(set)
}

/// A set as a systemd calendar component: `*` when it is every value, else values and `a..b` ranges.
fn systemd_list(set: &BTreeSet<u8>, lo: u8, hi: u8, show: impl Fn(u8) -> String) -> String {
    if set.len() == usize::from(hi - lo + 1) {
        return "*".to_string();
    }
    let values: Vec<u8> = set.iter().copied().collect();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let mut j = i;
        while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
            j += 1;
        }
        if j >= i + 2 {
            parts.push(format!("{}..{}", show(values[i]), show(values[j])));
        } else {
            for &v in &values[i..=j] {
                parts.push(show(v));
            }
        }
        i = j + 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Zoned {
        format!("{s}[UTC]").parse().unwrap()
    }

    fn times(c: &Calendar, after: &str, n: usize) -> Vec<String> {
        c.next_runs(&at(after), n)
            .iter()
            .map(|z| z.strftime("%a %Y-%m-%d %H:%M").to_string())
            .collect()
    }

    #[test]
    fn daily_hourly_and_every_become_cron_and_on_calendar() {
        let d = Calendar::daily("03:15").unwrap();
        assert_eq!(d.cron, "15 3 * * *");
        assert_eq!(d.on_calendar(), "*-*-* 03:15:00");
        assert_eq!(Calendar::hourly().on_calendar(), "*-*-* *:00:00");
        let e = Calendar::every(std::time::Duration::from_secs(15 * 60)).unwrap();
        assert_eq!(e.cron, "*/15 * * * *");
        assert_eq!(e.on_calendar(), "*-*-* *:00,15,30,45:00");
        let e = Calendar::every(std::time::Duration::from_secs(6 * 3600)).unwrap();
        assert_eq!(e.on_calendar(), "*-*-* 00,06,12,18:00:00");
        assert!(Calendar::every(std::time::Duration::from_secs(7 * 60)).is_err());
        assert!(Calendar::every(std::time::Duration::from_secs(5 * 3600)).is_err());
        for bad in ["3", "24:00", "03:60", "x:y"] {
            assert!(Calendar::daily(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cron_fields_take_lists_ranges_steps_and_names() {
        let c = Calendar::cron("0 9-17/4 * jan,JUL mon-fri").unwrap();
        assert_eq!(c.on_calendar(), "Mon..Fri *-01,07-* 09,13,17:00:00");
        let c = Calendar::cron("30 2 1 * *").unwrap();
        assert_eq!(c.on_calendar(), "*-*-01 02:30:00");
        let c = Calendar::cron("0 0 * * 0,7").unwrap();
        assert_eq!(c.on_calendar(), "Sun *-*-* 00:00:00");
        assert_eq!(
            Calendar::cron("@weekly").unwrap().on_calendar(),
            c.on_calendar()
        );
        // Cron's "either day field" rule: a full day-of-month range means every day.
        let c = Calendar::cron("0 0 1-31 * mon").unwrap();
        assert_eq!(c.on_calendar(), "*-*-* 00:00:00");
        for bad in [
            "* * * *",
            "60 * * * *",
            "* * * * 8",
            "5-1 * * * *",
            "*/0 * * * *",
            "0 0 1 * mon",
        ] {
            assert!(Calendar::cron(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn next_runs_follow_the_calendar() {
        let d = Calendar::daily("03:15").unwrap();
        assert_eq!(
            times(&d, "2026-12-03T03:15:00", 3),
            [
                "Fri 2026-12-04 03:15",
                "Sat 2026-12-05 03:15",
                "Sun 2026-12-06 03:15"
            ]
        );
        let w = Calendar::cron("0 12 * * sat,sun").unwrap();
        assert_eq!(
            times(&w, "2026-12-03T00:00:00", 3),
            [
                "Sat 2026-12-05 12:00",
                "Sun 2026-12-06 12:00",
                "Sat 2026-12-12 12:00"
            ]
        );
        let leap = Calendar::cron("0 0 29 2 *").unwrap();
        assert_eq!(
            times(&leap, "2026-12-03T00:00:00", 2),
            ["Tue 2028-02-29 00:00", "Sun 2032-02-29 00:00"]
        );
        assert!(
            Calendar::cron("0 0 31 2 *")
                .unwrap()
                .next_runs(&at("2026-01-01T00:00:00"), 1)
                .is_empty()
        );
    }

    #[test]
    fn longest_gap_of_a_daily_schedule_is_a_day() {
        let now = at("2026-12-03T10:00:00");
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(
            Calendar::daily("03:15").unwrap().longest_gap(&now),
            Some(day)
        );
        let weekdays = Calendar::cron("0 1 * * mon-fri").unwrap();
        assert_eq!(weekdays.longest_gap(&now), Some(3 * day));
    }
}
