//! The arguments of `down`, shared with `docker compose down`: routed so that clap sees only ours, and
//! read for whether Compose would remove volumes.

use std::ffi::OsString;

/// Options of `docker persist down` itself and of the plugin (project and output); with whether each takes
/// a value. Everything else after `down` belongs to `docker compose down`.
const DOWN_OWN_OPTIONS: &[(&str, bool)] = &[
    ("--backup", false),
    ("--force", false),
    ("--yes", false),
    ("-y", false),
    ("--dry-run", false),
    ("--dir", true),
    ("--json", false),
    ("--quiet", false),
    ("-q", false),
    ("--verbose", false),
    ("--color", true),
    ("--help", false),
    ("-h", false),
    ("--file", true),
    ("-f", true),
    ("--project-name", true),
    ("-p", true),
    ("--project-directory", true),
    ("--env-file", true),
];

/// Options before the subcommand that take a value (to find the subcommand word).
const GLOBAL_VALUE_OPTIONS: &[&str] = &[
    "--file",
    "-f",
    "--project-name",
    "-p",
    "--project-directory",
    "--env-file",
    "--color",
];

/// Rewrites the arguments of `down` so that clap sees `down [OWN OPTIONS] -- [COMPOSE ARGS]`: Compose's
/// `-v` is not our `--verbose`, and options of ours may come anywhere among Compose's. Other
/// subcommands are left as they are.
pub fn route_down_args(args: Vec<OsString>) -> Vec<OsString> {
    let text: Vec<Option<&str>> = args.iter().map(|a| a.to_str()).collect();
    let mut i = 1;
    while i < text.len() {
        match text[i] {
            Some(a) if GLOBAL_VALUE_OPTIONS.contains(&a) => i += 2,
            Some(a) if a.starts_with('-') => i += 1,
            _ => break,
        }
    }
    if text.get(i).copied().flatten() != Some("down") {
        return args;
    }
    let mut own: Vec<OsString> = Vec::new();
    let mut compose: Vec<OsString> = Vec::new();
    let mut j = i + 1;
    while j < args.len() {
        let Some(a) = text[j] else {
            compose.push(args[j].clone());
            j += 1;
            continue;
        };
        if a == "--" {
            compose.extend(args[j + 1..].iter().cloned());
            break;
        }
        let name = a.split_once('=').map_or(a, |(n, _)| n);
        match DOWN_OWN_OPTIONS.iter().find(|(n, _)| *n == name) {
            Some((_, takes_value)) => {
                own.push(args[j].clone());
                if *takes_value && !a.contains('=') && j + 1 < args.len() {
                    own.push(args[j + 1].clone());
                    j += 1;
                }
            }
            None => compose.push(args[j].clone()),
        }
        j += 1;
    }
    let mut out: Vec<OsString> = args[..=i].to_vec();
    out.extend(own);
    out.push(OsString::from("--"));
    out.extend(compose);
    out
}

/// Whether `docker compose down ARGS` removes volumes: `-v`, `--volumes`, `--volumes=true`, or `v` in a
/// cluster of short flags (`-vt5` is not one: `t` takes the rest as its value, but `-v` before it counts).
pub fn down_removes_volumes(args: &[String]) -> bool {
    let mut i = 0;
    let mut on = false;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            match long.split_once('=') {
                Some(("volumes", v)) => {
                    on = !matches!(v.to_ascii_lowercase().as_str(), "false" | "0" | "f")
                }
                None if long == "volumes" => on = true,
                // Options of `down` that take a separate value: skip it.
                None if matches!(long, "rmi" | "timeout") => i += 1,
                _ => {}
            }
        } else if let Some(short) = a.strip_prefix('-') {
            for (n, c) in short.char_indices() {
                match c {
                    'v' => on = true,
                    // `-t` takes a value: the rest of the cluster, or the next argument.
                    't' => {
                        if n + 1 == short.len() {
                            i += 1;
                        }
                        break;
                    }
                    _ => {}
                }
            }
        }
        i += 1;
    }
    on
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    fn routed(args: &[&str]) -> Vec<String> {
        route_down_args(args.iter().map(OsString::from).collect())
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn down_arguments_go_to_compose_except_our_own() {
        assert_eq!(
            routed(&[
                "dp", "-p", "x", "down", "-v", "--backup", "--rmi", "all", "--dir=b"
            ]),
            [
                "dp", "-p", "x", "down", "--backup", "--dir=b", "--", "-v", "--rmi", "all"
            ]
        );
        assert_eq!(
            routed(&[
                "dp", "down", "--dir", "b", "-t", "3", "-f", "c.yml", "--", "--backup"
            ]),
            [
                "dp", "down", "--dir", "b", "-f", "c.yml", "--", "-t", "3", "--backup"
            ]
        );
        // Other subcommands are untouched.
        assert_eq!(routed(&["dp", "ls", "-v"]), ["dp", "ls", "-v"]);
        let cli = Cli::try_parse_from(routed(&["dp", "down", "-v", "--yes", "--force"])).unwrap();
        let Command::Down(d) = cli.command else {
            panic!("not down")
        };
        assert!(d.yes && d.force && !cli.output.verbose);
        assert_eq!(d.args, ["-v"]);
    }

    #[test]
    fn down_volume_flag_is_found_in_every_spelling() {
        for yes in [
            &["-v"][..],
            &["--volumes"],
            &["--volumes=true"],
            &["--rmi", "all", "-v"],
            &["--remove-orphans", "-vt", "3"],
            &["-t", "3", "--volumes"],
        ] {
            assert!(down_removes_volumes(&strings(yes)), "{yes:?}");
        }
        for no in [
            &[][..],
            &["--volumes=false"],
            &["--remove-orphans"],
            &["-t", "3"],
            &["-tv"],
            &["--rmi", "all"],
            &["--", "-v"],
        ] {
            assert!(!down_removes_volumes(&strings(no)), "{no:?}");
        }
    }
}
