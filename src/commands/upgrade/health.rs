//! Waiting for the new version to be healthy (its healthcheck, else running without a restart for a
//! settle time), and why it is not ([`Failed`]).

use std::time::{Duration, Instant};

use crate::engine::{ContainerInfo, Engine};

/// Lines of a failed container's log that the report shows.
const LOG_LINES: usize = 15;
/// How often container states are looked at while waiting for health.
const POLL: Duration = Duration::from_millis(500);

/// Why a new version is not healthy.
#[derive(Debug, Clone)]
pub struct Failed {
    pub service: String,
    pub why: String,
    /// The last lines of the failed container's log.
    pub log: String,
}

/// Waits until every container of `services` is healthy: its healthcheck says so, or (without one) it
/// has run for `settle` without restarting. `Ok(Err(…))` says which one failed and why.
pub async fn wait_healthy(
    engine: &Engine,
    project: &str,
    services: &[&str],
    timeout: Duration,
    settle: Duration,
) -> anyhow::Result<Result<(), Failed>> {
    let started = Instant::now();
    // Per container: its restart count and start time when first seen, and when it was first seen running.
    let mut seen: Vec<(String, i64, Option<jiff::Timestamp>, Option<Instant>)> = Vec::new();
    loop {
        let containers = engine.project_containers(project).await?;
        let mut all_ok = true;
        let mut waiting_for = String::new();
        for service in services {
            let mine: Vec<&ContainerInfo> = containers
                .iter()
                .filter(|c| !c.helper && c.service.as_deref() == Some(*service))
                .collect();
            if mine.is_empty() {
                return Ok(Err(Failed {
                    service: service.to_string(),
                    why: "it has no container".to_string(),
                    log: String::new(),
                }));
            }
            for c in mine {
                let Some(s) = engine.container_status(&c.id).await? else {
                    all_ok = false;
                    continue;
                };
                let fail = |why: String| async move {
                    let log = engine.log_tail(&c.id, LOG_LINES).await.unwrap_or_default();
                    Ok(Err(Failed {
                        service: service.to_string(),
                        why,
                        log,
                    }))
                };
                let entry = match seen.iter().position(|(id, ..)| *id == s.id) {
                    Some(i) => &mut seen[i],
                    None => {
                        seen.push((s.id.clone(), s.restart_count, s.started_at, None));
                        let last = seen.len() - 1;
                        &mut seen[last]
                    }
                };
                if s.restarting
                    || s.restart_count > entry.1
                    || (entry.2.is_some() && s.started_at != entry.2)
                {
                    return fail(format!(
                        "`{}` keeps restarting (exit code {})",
                        s.name,
                        s.exit_code.unwrap_or_default()
                    ))
                    .await;
                }
                if !s.running {
                    let why = match (&s.error, s.exit_code) {
                        (Some(e), _) => format!("`{}` could not start: {e}", s.name),
                        (None, Some(code)) if s.status != "created" => {
                            format!("`{}` exited with code {code}", s.name)
                        }
                        _ => format!("`{}` is {}", s.name, s.status),
                    };
                    return fail(why).await;
                }
                let running_since = *entry.3.get_or_insert_with(Instant::now);
                match s.health.as_deref() {
                    Some("healthy") => {}
                    Some("unhealthy") => {
                        return fail(format!(
                            "the healthcheck of `{}` reports it unhealthy",
                            s.name
                        ))
                        .await;
                    }
                    Some(other) => {
                        all_ok = false;
                        waiting_for = format!("`{}` is {other}", s.name);
                    }
                    None => {
                        if running_since.elapsed() < settle {
                            all_ok = false;
                            waiting_for = format!(
                                "`{}` has run for {} of the {} it needs without a restart",
                                s.name,
                                duration_text(running_since.elapsed()),
                                duration_text(settle)
                            );
                        }
                    }
                }
            }
        }
        if all_ok {
            return Ok(Ok(()));
        }
        if started.elapsed() >= timeout {
            let service = services.join(", ");
            let id = containers
                .iter()
                .find(|c| c.service.as_deref().is_some_and(|s| services.contains(&s)))
                .map(|c| c.id.clone());
            let log = match id {
                Some(id) => engine.log_tail(&id, LOG_LINES).await.unwrap_or_default(),
                None => String::new(),
            };
            return Ok(Err(Failed {
                service,
                why: format!(
                    "not healthy after {}: {waiting_for}",
                    duration_text(timeout)
                ),
                log,
            }));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `sha256:0123456789ab…` → `0123456789ab`.
pub fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.get(..12).unwrap_or(id)
}

/// `90 s`, `2 min`, `1.5 s`.
pub(super) fn duration_text(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else {
        format!("{:.0} min", s / 60.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_drop_the_algorithm_and_keep_twelve_digits() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration_text(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(duration_text(Duration::from_secs(90)), "90 s");
        assert_eq!(duration_text(Duration::from_secs(300)), "5 min");
    }
}
