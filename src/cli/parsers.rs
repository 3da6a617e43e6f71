//! The value parsers of arguments clap does not read by itself: durations, backup tags and tiers.

use crate::compose::Tier;

/// `26h`, `90m`, `1h30m`, `7d` (days too, unlike Compose's durations).
pub(super) fn parse_span(s: &str) -> Result<std::time::Duration, String> {
    crate::runs::parse_duration(s)
}

pub(super) fn parse_tag(s: &str) -> Result<String, String> {
    crate::archive::validate_tag(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

pub(super) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::compose::load::parse_timeout(&serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("expected a duration like `30s`, `2m` or `1h`, not `{s}`"))
}

pub(super) fn parse_tier(s: &str) -> Result<Tier, String> {
    s.parse()
        .map_err(|e: crate::compose::model::InvalidTier| e.to_string())
}
