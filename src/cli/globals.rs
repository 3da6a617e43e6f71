//! Docker's own global flags (`-H`, `--context`, `--tls…`), which the Docker CLI passes before the word
//! `persist`: the argv split into them and the plugin's own arguments.

use std::ffi::OsString;
use std::path::PathBuf;

/// Docker's global flags (`docker [FLAGS] persist …`), honoured when resolving the engine endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerGlobals {
    pub host: Option<String>,
    pub context: Option<String>,
    pub config: Option<PathBuf>,
    pub debug: bool,
    pub log_level: Option<String>,
    pub tls: bool,
    pub tls_verify: bool,
    pub tls_ca_cert: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// Errors in Docker's global flags; reported as usage errors (exit 2).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GlobalsError {
    #[error("flag `{0}` needs an argument")]
    MissingValue(String),
}

/// The argv split into Docker's globals and the plugin's own arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitArgs {
    pub globals: DockerGlobals,
    /// argv[0] followed by the plugin's own arguments (everything after `persist`).
    pub args: Vec<OsString>,
}

const VALUE_FLAGS: &[(&str, Option<char>)] = &[
    ("host", Some('H')),
    ("context", Some('c')),
    ("config", None),
    ("log-level", Some('l')),
    ("tlscacert", None),
    ("tlscert", None),
    ("tlskey", None),
];

/// Splits argv as the Docker CLI hands it to a plugin: `docker-persist [DOCKER FLAGS] persist ARGS…`. The
/// standalone forms `docker-persist ARGS…` and `docker-persist [DOCKER FLAGS] ARGS…` work too.
pub fn split_docker_globals(argv: Vec<OsString>) -> Result<SplitArgs, GlobalsError> {
    let mut it = argv.into_iter();
    let argv0 = it
        .next()
        .unwrap_or_else(|| OsString::from("docker-persist"));
    let mut rest: Vec<OsString> = it.collect();
    let mut globals = DockerGlobals::default();
    let mut i = 0;
    while i < rest.len() {
        let Some(arg) = rest[i].to_str() else { break };
        let (name, inline): (String, Option<String>) = if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            }
        } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            let mut chars = short.chars();
            let c = chars.next().unwrap_or('-');
            let long = match c {
                'H' => "host",
                'c' => "context",
                'l' => "log-level",
                'D' => "debug",
                _ => break,
            };
            let tail: String = chars.collect();
            let tail = tail.strip_prefix('=').map(str::to_string).unwrap_or(tail);
            (long.to_string(), (!tail.is_empty()).then_some(tail))
        } else {
            break;
        };
        let takes_value = VALUE_FLAGS.iter().any(|(n, _)| *n == name);
        if takes_value {
            let value = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    rest.get(i)
                        .and_then(|v| v.to_str())
                        .map(str::to_string)
                        .ok_or_else(|| GlobalsError::MissingValue(arg.to_string()))?
                }
            };
            match name.as_str() {
                "host" => globals.host = Some(value),
                "context" => globals.context = Some(value),
                "config" => globals.config = Some(PathBuf::from(value)),
                "log-level" => globals.log_level = Some(value),
                "tlscacert" => globals.tls_ca_cert = Some(PathBuf::from(value)),
                "tlscert" => globals.tls_cert = Some(PathBuf::from(value)),
                "tlskey" => globals.tls_key = Some(PathBuf::from(value)),
                _ => unreachable!("VALUE_FLAGS and this match list the same names"),
            }
        } else {
            let on = match inline.as_deref() {
                None | Some("true") | Some("1") => true,
                Some(_) => false,
            };
            match name.as_str() {
                "debug" => globals.debug = on,
                "tls" => globals.tls = on,
                "tlsverify" => globals.tls_verify = on,
                _ => break,
            }
        }
        i += 1;
    }
    let mut rest = rest.split_off(i);
    if rest.first().is_some_and(|a| a == "persist") {
        rest.remove(0);
    }
    let mut args = Vec::with_capacity(rest.len() + 1);
    args.push(argv0);
    args.extend(rest);
    Ok(SplitArgs { globals, args })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(args: &[&str]) -> SplitArgs {
        split_docker_globals(args.iter().map(OsString::from).collect()).unwrap()
    }

    fn rest(s: &SplitArgs) -> Vec<String> {
        s.args[1..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn plugin_argv_drops_the_persist_word() {
        let s = split(&["docker-persist", "persist", "ls", "--json"]);
        assert_eq!(rest(&s), ["ls", "--json"]);
        assert_eq!(s.globals, DockerGlobals::default());
    }

    #[test]
    fn docker_globals_before_persist_are_collected() {
        let s = split(&[
            "docker-persist",
            "-H",
            "tcp://h:2376",
            "--tlsverify",
            "--tlscacert=/c/ca.pem",
            "-D",
            "--log-level",
            "debug",
            "persist",
            "ls",
        ]);
        assert_eq!(s.globals.host.as_deref(), Some("tcp://h:2376"));
        assert!(s.globals.tls_verify);
        assert!(s.globals.debug);
        assert_eq!(s.globals.tls_ca_cert, Some(PathBuf::from("/c/ca.pem")));
        assert_eq!(s.globals.log_level.as_deref(), Some("debug"));
        assert_eq!(rest(&s), ["ls"]);
    }

    #[test]
    fn short_flags_with_attached_values() {
        let s = split(&["docker-persist", "-cremote", "-Hunix:///x.sock", "persist"]);
        assert_eq!(s.globals.context.as_deref(), Some("remote"));
        assert_eq!(s.globals.host.as_deref(), Some("unix:///x.sock"));
        assert!(rest(&s).is_empty());
    }

    #[test]
    fn standalone_argv_is_left_alone() {
        let s = split(&["docker-persist", "ls", "-p", "x"]);
        assert_eq!(rest(&s), ["ls", "-p", "x"]);
        let s = split(&["docker-persist", "--context", "c", "ls"]);
        assert_eq!(s.globals.context.as_deref(), Some("c"));
        assert_eq!(rest(&s), ["ls"]);
    }

    #[test]
    fn our_own_flags_after_persist_are_not_taken_as_docker_flags() {
        let s = split(&["docker-persist", "persist", "-f", "a.yml", "ls"]);
        assert_eq!(rest(&s), ["-f", "a.yml", "ls"]);
    }

    #[test]
    fn missing_value_is_an_error() {
        let e = split_docker_globals(vec!["d".into(), "-H".into()]).unwrap_err();
        assert_eq!(e, GlobalsError::MissingValue("-H".into()));
    }
}
