//! `rules`: the built-in tier rules, in the order they are tried.

use serde::Serialize;

use super::ExitStatus;
use crate::compose::Tier;
use crate::compose::classify::{DEFAULT_REASON, RULES, TIER_LABEL};
use crate::report::Printer;

#[derive(Serialize)]
struct RuleJson {
    id: &'static str,
    tier: Tier,
    matches: String,
    reason: &'static str,
}

#[derive(Serialize)]
struct RulesJson {
    schema_version: u32,
    rules: Vec<RuleJson>,
}

pub fn run(printer: &Printer) -> anyhow::Result<ExitStatus> {
    if printer.json_mode() {
        printer.json(&RulesJson {
            schema_version: 1,
            rules: RULES
                .iter()
                .map(|r| RuleJson {
                    id: r.id,
                    tier: r.tier,
                    matches: r.matcher.describe(),
                    reason: r.reason,
                })
                .collect(),
        })?;
        return Ok(ExitStatus::Success);
    }
    printer.data(format!(
        "A tier comes from, first match wins:\n  1. `x-persist: {{tier: …}}` in the Compose file\n  2. the engine volume label `{TIER_LABEL}`\n  3. these rules: each mount is read by the first rule that matches it, and the most valuable\n     reading of the mounts that speak for the data wins (one-shot helpers and read-only readers\n     never lower it):\n\n"
    ));
    let mut out = String::new();
    for (n, r) in RULES.iter().enumerate() {
        out.push_str(&format!(
            "  3.{:<2} {} → {}: {}\n        {}\n",
            n + 1,
            r.id,
            printer.tier(r.tier),
            r.reason,
            r.matcher.describe()
        ));
    }
    printer.data(out);
    printer.data(format!("  4. otherwise important ({DEFAULT_REASON})\n"));
    Ok(ExitStatus::Success)
}
