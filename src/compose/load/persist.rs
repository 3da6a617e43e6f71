//! The `x-persist` mappings: a volume's or mount's spec (tier, consistency, dump recipe, hooks) validated,
//! the top-level one's consistency and hooks, hook timeouts, and the check that every hook runs in a
//! service of the project.

use crate::compose::ComposeError;
use crate::compose::model::{
    Consistency, DEFAULT_HOOK_TIMEOUT, DumpRecipe, Hook, HookCommand, Hooks, OnError, PersistSpec,
    Project, Tier,
};

/// Validates an `x-persist` mapping found at `location`.
pub(super) fn persist_spec(
    raw: serde_json::Value,
    location: &str,
) -> Result<PersistSpec, ComposeError> {
    let invalid = |message: String| ComposeError::InvalidPersist {
        location: location.to_string(),
        message,
    };
    let serde_json::Value::Object(map) = &raw else {
        return Err(invalid("it must be a mapping".to_string()));
    };
    let tier = match map.get("tier") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => {
            Some(s.parse::<Tier>().map_err(|e| invalid(e.to_string()))?)
        }
        Some(other) => {
            return Err(invalid(format!(
                "`tier` must be one of critical, important, regenerable, optional, not `{other}`"
            )));
        }
    };
    let consistency = consistency_of(map).map_err(invalid)?;
    let dump = match map.get("dump") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.parse::<DumpRecipe>().map_err(invalid)?),
        Some(other) => {
            return Err(invalid(format!(
                "`dump` must be one of postgres, mysql, mariadb, redis, mongodb, not `{other}`"
            )));
        }
    };
    let hooks = hooks_of(map).map_err(invalid)?;
    Ok(PersistSpec {
        tier,
        consistency,
        dump,
        hooks,
        raw,
    })
}

/// The `hooks: {pre: […], post: […]}` of an `x-persist` mapping; empty when absent.
pub(super) fn hooks_of(map: &serde_json::Map<String, serde_json::Value>) -> Result<Hooks, String> {
    let raw = match map.get("hooks") {
        None | Some(serde_json::Value::Null) => return Ok(Hooks::default()),
        Some(serde_json::Value::Object(h)) => h,
        Some(other) => {
            return Err(format!(
                "`hooks` must be a mapping with `pre` and/or `post`, not `{other}`"
            ));
        }
    };
    if let Some(k) = raw.keys().find(|k| *k != "pre" && *k != "post") {
        return Err(format!(
            "`hooks` has an unknown key `{k}` (expected `pre` and/or `post`)"
        ));
    }
    let list = |phase: &str| -> Result<Vec<Hook>, String> {
        match raw.get(phase) {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, h)| hook_of(h).map_err(|e| format!("`hooks.{phase}[{i}]`: {e}")))
                .collect(),
            Some(other) => Err(format!(
                "`hooks.{phase}` must be a list of hooks, not `{other}`"
            )),
        }
    };
    Ok(Hooks {
        pre: list("pre")?,
        post: list("post")?,
    })
}

/// One hook: `{service, command, timeout, on_error}`.
fn hook_of(raw: &serde_json::Value) -> Result<Hook, String> {
    let serde_json::Value::Object(h) = raw else {
        return Err(format!(
            "a hook must be a mapping with `service` and `command`, not `{raw}`"
        ));
    };
    if let Some(k) = h
        .keys()
        .find(|k| !["service", "command", "timeout", "on_error"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown key `{k}` (expected service, command, timeout, on_error)"
        ));
    }
    let service = match h.get("service") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            return Err(
                "`service` must name the service whose container runs the hook".to_string(),
            );
        }
    };
    let command = match h.get("command") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => HookCommand::Shell(s.clone()),
        Some(serde_json::Value::Array(v)) if !v.is_empty() => HookCommand::Exec(
            v.iter()
                .map(|a| match a {
                    serde_json::Value::String(s) => Ok(s.clone()),
                    serde_json::Value::Number(n) => Ok(n.to_string()),
                    other => Err(format!("`command` items must be strings, not `{other}`")),
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => {
            return Err(
                "`command` must be a non-empty string (run with `sh -c`) or list (run as is)"
                    .to_string(),
            );
        }
    };
    let timeout = match h.get("timeout") {
        None | Some(serde_json::Value::Null) => DEFAULT_HOOK_TIMEOUT,
        Some(v) => parse_timeout(v)?,
    };
    let on_error = match h.get("on_error") {
        None | Some(serde_json::Value::Null) => OnError::Fail,
        Some(serde_json::Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "fail" => OnError::Fail,
            "continue" => OnError::Continue,
            _ => {
                return Err(format!(
                    "`on_error` must be `fail` or `continue`, not `{s}`"
                ));
            }
        },
        Some(other) => {
            return Err(format!(
                "`on_error` must be `fail` or `continue`, not `{other}`"
            ));
        }
    };
    Ok(Hook {
        service,
        command,
        timeout,
        on_error,
    })
}

/// A hook timeout: a number of seconds, or a string with a unit: `500ms`, `30s`, `2m`, `1h`.
pub(crate) fn parse_timeout(v: &serde_json::Value) -> Result<std::time::Duration, String> {
    let bad =
        || format!("`timeout` must be a duration like `30s`, `2m` or `1h` (or seconds), not `{v}`");
    let d = match v {
        serde_json::Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(bad)?,
        serde_json::Value::String(s) => {
            let s = s.trim();
            let split = s
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let num: f64 = num.parse().map_err(|_| bad())?;
            let factor = match unit.trim() {
                "ms" => 0.001,
                "" | "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return Err(bad()),
            };
            let secs = num * factor;
            if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 * 7.0 {
                return Err(bad());
            }
            std::time::Duration::from_secs_f64(secs)
        }
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(bad());
    }
    Ok(d)
}

/// Every hook's service must be a service of the project.
pub(super) fn check_hook_services(project: &Project) -> Result<(), ComposeError> {
    let mut places: Vec<(String, &Hooks)> =
        vec![("the top-level `x-persist`".to_string(), &project.hooks)];
    for (key, v) in &project.volumes {
        if let Some(p) = &v.persist {
            places.push((format!("volume `{key}`"), &p.hooks));
        }
    }
    for (name, s) in &project.services {
        for m in &s.mounts {
            if let Some(p) = &m.persist {
                places.push((format!("service `{name}` mount `{}`", m.target), &p.hooks));
            }
        }
    }
    for (location, hooks) in places {
        for h in hooks.pre.iter().chain(&hooks.post) {
            if !project.services.contains_key(&h.service) {
                return Err(ComposeError::InvalidPersist {
                    location,
                    message: format!(
                        "the hook runs in service `{}`, which the project does not define",
                        h.service
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The `consistency:` of an `x-persist` mapping, when given.
pub(super) fn consistency_of(
    map: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<Consistency>, String> {
    match map.get("consistency") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => s.parse().map(Some).map_err(|e| format!("{e}")),
        Some(other) => Err(format!(
            "`consistency` must be one of auto, stop, live, dump, not `{other}`"
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn persist_spec_validation() {
        let ok = persist_spec(
            serde_json::json!({"tier": "Critical", "consistency": "dump"}),
            "volume `db`",
        )
        .unwrap();
        assert_eq!(ok.tier, Some(Tier::Critical));
        assert_eq!(ok.raw["consistency"], "dump");
        let none = persist_spec(serde_json::json!({}), "volume `db`").unwrap();
        assert_eq!(none.tier, None);
        let err = persist_spec(serde_json::json!({"tier": "precious"}), "volume `db`").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid `x-persist` in volume `db`: `precious` is not a tier (expected one of: critical, important, regenerable, optional)"
        );
        let err =
            persist_spec(serde_json::json!("critical"), "service `web` mount `/data`").unwrap_err();
        assert!(
            err.to_string().contains("service `web` mount `/data`"),
            "{err}"
        );
    }
}
