//! Finds the Compose files, the project directory and the interpolation environment the way Compose v2 does.
//!
//! The order mirrors `docker compose` (compose-go's `cli` options): the OS environment first (it always
//! wins); then the env files — `--env-file`, else `.env` in the project directory if known, else in the working
//! directory — so that `COMPOSE_FILE`, `COMPOSE_PATH_SEPARATOR` and `COMPOSE_PROJECT_NAME` may come from there;
//! then the files — `-f`, else `COMPOSE_FILE`, else the default names searched upwards from the working (or
//! project) directory, plus the first override file next to the winner; finally the `.env` of the project
//! directory once it is known, which only adds variables not set yet.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::{ComposeError, ProjectOptions};

/// Compose file names looked for, in order of preference.
pub const DEFAULT_FILE_NAMES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// Override file names looked for next to the chosen file, in order of preference. As in compose-go, the
/// first one present is used whatever the family of the main file.
pub const DEFAULT_OVERRIDE_FILE_NAMES: [&str; 4] = [
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// What discovery found: the files to load, where the project lives and the environment to interpolate with.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// The Compose files in merge order, absolute.
    pub files: Vec<PathBuf>,
    /// The project directory, absolute.
    pub project_dir: PathBuf,
    /// OS environment over env files.
    pub environment: BTreeMap<String, String>,
    /// Warnings Compose would print (several candidate files, unset variables in env files).
    pub warnings: Vec<String>,
}

/// `path` made absolute against `base` and cleaned lexically (`.`/`..` removed), like Go's `filepath.Abs`.
pub fn absolutize(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        clean_path(path)
    } else {
        clean_path(&base.join(path))
    }
}

/// Lexically cleans `path`: drops `.` components and repeated separators and resolves `..` against the
/// preceding component (Go's `filepath.Clean`; symlinks are not looked at).
pub fn clean_path(path: &Path) -> PathBuf {
    let mut parts: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match parts.last() {
                Some(Component::Normal(_)) => {
                    parts.pop();
                }
                Some(Component::RootDir) | Some(Component::Prefix(_)) => {}
                _ => parts.push(c),
            },
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return PathBuf::from(".");
    }
    parts.iter().collect()
}

/// The candidates among `names` present in `dir`, in the order of `names`.
fn present(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.exists())
        .collect()
}

/// Walks up from `start` to the first directory holding one of [`DEFAULT_FILE_NAMES`]; returns that file and,
/// if present, the first of [`DEFAULT_OVERRIDE_FILE_NAMES`] in the same directory, plus Compose's warnings
/// when several candidates exist. `None` when no directory up to the root has one.
pub fn find_default_files(start: &Path) -> Option<(Vec<PathBuf>, Vec<String>)> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let candidates = present(d, &DEFAULT_FILE_NAMES);
        if let Some(winner) = candidates.first() {
            let mut warnings = Vec::new();
            if candidates.len() > 1 {
                warnings.push(format!(
                    "Found multiple config files with supported names: {}",
                    join_paths(&candidates)
                ));
                warnings.push(format!("Using {}", winner.display()));
            }
            let mut files = vec![winner.clone()];
            let overrides = present(d, &DEFAULT_OVERRIDE_FILE_NAMES);
            if let Some(first) = overrides.first() {
                if overrides.len() > 1 {
                    warnings.push(format!(
                        "Found multiple override files with supported names: {}",
                        join_paths(&overrides)
                    ));
                    warnings.push(format!("Using {}", first.display()));
                }
                files.push(first.clone());
            }
            return Some((files, warnings));
        }
        dir = d.parent();
    }
    None
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Go's `strconv.ParseBool`, for `COMPOSE_DISABLE_ENV_FILE`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The env files for `dir`: `--env-file` paths if any, else `<dir>/.env` when it is a file (and
/// `COMPOSE_DISABLE_ENV_FILE` is not true).
fn env_files_for(opts: &ProjectOptions, dir: &Path) -> Vec<PathBuf> {
    if !opts.env_files.is_empty() {
        return opts
            .env_files
            .iter()
            .map(|f| absolutize(&opts.working_dir, f))
            .collect();
    }
    let disabled = opts
        .os_env
        .get("COMPOSE_DISABLE_ENV_FILE")
        .and_then(|v| parse_go_bool(v))
        .unwrap_or(false);
    if disabled {
        return Vec::new();
    }
    let default = dir.join(".env");
    if default.is_file() {
        vec![default]
    } else {
        Vec::new()
    }
}

/// Adds the variables of `files` to `env`, keeping values already there (OS environment and earlier loads win).
fn load_env_files_into(
    files: &[PathBuf],
    env: &mut BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<(), ComposeError> {
    let loaded = dotenv::read_env_files(files, env, warnings)?;
    for (k, v) in loaded {
        env.entry(k).or_insert(v);
    }
    Ok(())
}

/// Finds the files, project directory and environment for `opts` (see the module documentation).
pub fn discover(opts: &ProjectOptions) -> Result<Discovery, ComposeError> {
    // A relative working directory is taken against the process's own.
    let wd = match std::env::current_dir() {
        Ok(cwd) if opts.working_dir.is_relative() => absolutize(&cwd, &opts.working_dir),
        _ => clean_path(&opts.working_dir),
    };
    let mut warnings = Vec::new();
    let mut env = opts.os_env.clone();

    let explicit_dir = opts.project_directory.as_ref().map(|d| absolutize(&wd, d));
    let mut files: Vec<PathBuf> = opts.files.iter().map(|f| absolutize(&wd, f)).collect();

    // First pass: the env files of the directory known so far, for COMPOSE_FILE & co.
    let first_dir = explicit_dir
        .clone()
        .or_else(|| {
            files
                .first()
                .and_then(|f| f.parent().map(Path::to_path_buf))
        })
        .unwrap_or_else(|| wd.clone());
    let first_env_files = env_files_for(opts, &first_dir);
    load_env_files_into(&first_env_files, &mut env, &mut warnings)?;

    if files.is_empty()
        && let Some(list) = env.get("COMPOSE_FILE").filter(|s| !s.is_empty())
    {
        let sep = env
            .get("COMPOSE_PATH_SEPARATOR")
            .filter(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| ":".to_string());
        for part in list.split(sep.as_str()) {
            let path = absolutize(&wd, Path::new(part));
            if let Err(source) = std::fs::metadata(&path) {
                return Err(ComposeError::Read { path, source });
            }
            files.push(path);
        }
    }
    if files.is_empty() {
        let start = explicit_dir.clone().unwrap_or_else(|| wd.clone());
        match find_default_files(&start) {
            Some((found, w)) => {
                files = found;
                warnings.extend(w);
            }
            None => return Err(ComposeError::NotFound { dir: start }),
        }
    }

    let project_dir = match explicit_dir {
        Some(d) => d,
        None => files
            .first()
            .and_then(|f| f.parent())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| wd.clone()),
    };

    // Second pass: the project directory may differ from the first guess.
    let second_env_files = env_files_for(opts, &project_dir);
    if second_env_files != first_env_files {
        load_env_files_into(&second_env_files, &mut env, &mut warnings)?;
    }

    Ok(Discovery {
        files,
        project_dir,
        environment: env,
        warnings,
    })
}

/// The `.env` syntax of Compose v2 (compose-go's `dotenv` package).
///
/// One `KEY=VALUE` (or `KEY: VALUE`) per statement, optional `export ` prefix, `#` comment lines. Unquoted
/// values run to the end of the line, lose a trailing ` #…` comment (a `#` needs a space before it) and
/// trailing whitespace. Single-quoted values are literal (only `\'` is unescaped). Double-quoted values may
/// span lines and understand `\n`, `\t`, `\"`, `\\`, `\$`…. Unquoted and double-quoted values are interpolated
/// with the variables already known (OS environment first, then earlier lines and files). A bare `KEY` takes
/// its value from the environment if set there.
pub mod dotenv {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use indexmap::IndexMap;

    use super::super::ComposeError;
    use super::super::interpolate::{self, TemplateError};

    /// A syntax error with its 1-based line.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ParseError {
        pub line: usize,
        pub message: String,
    }

    /// Space that is not a line break (compose-go's `isSpace`).
    fn is_space(c: char) -> bool {
        matches!(
            c,
            '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
        )
    }

    fn is_key_char(c: char) -> bool {
        matches!(c, '_' | '.' | '-' | '[' | ']') || c.is_alphanumeric()
    }

    /// Parses `src`, resolving `${…}` with `lookup` (the variables known before this file) and then the
    /// variables defined earlier in `src`. Unset variables referenced are appended to `unset`.
    pub fn parse<F>(
        src: &str,
        lookup: &F,
        unset: &mut Vec<String>,
    ) -> Result<IndexMap<String, String>, ParseError>
    where
        F: Fn(&str) -> Option<String> + ?Sized,
    {
        let src = src.strip_prefix('\u{feff}').unwrap_or(src);
        let mut out: IndexMap<String, String> = IndexMap::new();
        let mut line = 1usize;
        let mut rest = src;
        // Skip blank space and comment lines up to each statement.
        while let Some(start) = rest.find(|c: char| !c.is_whitespace()) {
            line += rest[..start].matches('\n').count();
            rest = &rest[start..];
            if rest.starts_with('#') {
                match rest.find('\n') {
                    Some(nl) => {
                        rest = &rest[nl..];
                        continue;
                    }
                    None => break,
                }
            }

            // `export KEY=…`
            if let Some(after) = rest.strip_prefix("export")
                && after.starts_with(is_space)
            {
                rest = after.trim_start_matches(is_space);
            }

            // The key runs to `=`, `:` or a line break (a bare inherited key).
            let mut end = None;
            for (i, c) in rest.char_indices() {
                if is_space(c) {
                    continue;
                }
                match c {
                    '=' | ':' | '\n' => {
                        end = Some((i, c));
                        break;
                    }
                    c if is_key_char(c) => {}
                    c => {
                        let text = rest.lines().next().unwrap_or_default();
                        return Err(ParseError {
                            line,
                            message: format!(
                                "unexpected character {c:?} in variable name {text:?}"
                            ),
                        });
                    }
                }
            }
            let (key, after_key, inherited) = match end {
                Some((i, c)) => (&rest[..i], &rest[i + c.len_utf8()..], c == '\n'),
                // A bare key on the last line.
                None => (rest, "", true),
            };
            let key = key.trim_end();
            if key.contains(' ') {
                return Err(ParseError {
                    line,
                    message: "key cannot contain a space".to_string(),
                });
            }
            if inherited {
                if let Some(v) = lookup(key) {
                    out.insert(key.to_string(), v);
                }
                if end.is_some() {
                    line += 1;
                }
                rest = after_key;
                continue;
            }

            let value_src = after_key.trim_start_matches(is_space);
            let expand = |text: &str,
                          out: &IndexMap<String, String>,
                          unset: &mut Vec<String>,
                          line: usize| {
                let both = |k: &str| lookup(k).or_else(|| out.get(k).cloned());
                match interpolate::substitute(text, &both) {
                    Ok(s) => {
                        unset.extend(s.unset);
                        Ok(s.value)
                    }
                    Err(TemplateError::Missing { name, message }) => Err(ParseError {
                        line,
                        message: format!(
                            "required variable `{name}` is missing a value: {message}"
                        ),
                    }),
                    Err(TemplateError::Invalid(m)) => Err(ParseError { line, message: m }),
                }
            };
            let statement_line = line;
            let (value, next) = match value_src.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let (raw, next, lines) = quoted(value_src, q).ok_or_else(|| ParseError {
                        line: statement_line,
                        message: format!(
                            "unterminated quoted value {}",
                            value_src.lines().next().unwrap_or_default()
                        ),
                    })?;
                    line += lines;
                    let value = if q == '"' {
                        expand(&expand_escapes(&raw), &out, unset, statement_line)?
                    } else {
                        raw
                    };
                    (value, next)
                }
                _ => {
                    let (text, next) = match value_src.find('\n') {
                        Some(nl) => (&value_src[..nl], &value_src[nl..]),
                        None => (value_src, ""),
                    };
                    let text = match text.find(" #") {
                        Some(i) => &text[..i],
                        None => text,
                    };
                    let value = expand(text.trim_end(), &out, unset, statement_line)?;
                    (value, next)
                }
            };
            if !key.is_empty() {
                out.insert(key.to_string(), value);
            }
            rest = next;
        }
        Ok(out)
    }

    /// The body of a value quoted with `q` at the start of `src`, the text after the closing quote, and the
    /// number of line breaks inside. An escaped quote loses its backslash; other escapes are kept for
    /// [`expand_escapes`].
    fn quoted(src: &str, q: char) -> Option<(String, &str, usize)> {
        let mut body = String::new();
        let mut escaped = false;
        let mut lines = 0;
        for (i, c) in src.char_indices().skip(1) {
            if c == '\n' {
                lines += 1;
            }
            if escaped {
                escaped = false;
                if c != q {
                    body.push('\\');
                }
                body.push(c);
                continue;
            }
            match c {
                '\\' => escaped = true,
                c if c == q => return Some((body, &src[i + c.len_utf8()..], lines)),
                c => body.push(c),
            }
        }
        None
    }

    /// Shell escapes of double-quoted values: `\a \b \f \n \r \t \v \" \\`, `\0NNN` (octal) and `\$` (a
    /// literal `$`); anything else stays as written.
    pub fn expand_escapes(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.peek().copied() {
                Some(e @ ('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '"' | '\\')) => {
                    chars.next();
                    out.push(match e {
                        'a' => '\u{7}',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        'v' => '\u{b}',
                        other => other,
                    });
                }
                Some('$') => {
                    chars.next();
                    out.push_str("$$");
                }
                Some('0') => {
                    // `\0` followed by exactly three octal digits.
                    let digits: String = chars.clone().skip(1).take(3).collect();
                    let code = (digits.len() == 3
                        && digits.chars().all(|d| ('0'..='7').contains(&d)))
                    .then(|| u32::from_str_radix(&digits, 8).ok())
                    .flatten()
                    .filter(|c| *c <= 0o377)
                    .and_then(char::from_u32);
                    match code {
                        Some(ch) => {
                            for _ in 0..4 {
                                chars.next();
                            }
                            out.push(ch);
                        }
                        None => out.push('\\'),
                    }
                }
                _ => out.push('\\'),
            }
        }
        out
    }

    /// Reads `files` in order; each may use the variables of `current` (the environment so far) and of the
    /// files before it; a later file overrides an earlier one. A missing file is an error.
    pub fn read_env_files(
        files: &[PathBuf],
        current: &BTreeMap<String, String>,
        warnings: &mut Vec<String>,
    ) -> Result<BTreeMap<String, String>, ComposeError> {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for file in files {
            let meta = std::fs::metadata(file).map_err(|source| ComposeError::Read {
                path: file.clone(),
                source,
            })?;
            if meta.is_dir() {
                return Err(ComposeError::Read {
                    path: file.clone(),
                    source: std::io::Error::other("is a directory, not an env file"),
                });
            }
            let text = fs_err::read_to_string(file).map_err(|source| ComposeError::Read {
                path: file.clone(),
                source,
            })?;
            let mut unset = Vec::new();
            let lookup = |k: &str| current.get(k).or_else(|| env.get(k)).cloned();
            let parsed = parse(&text, &lookup, &mut unset).map_err(|e| env_error(file, e))?;
            for name in unset {
                warnings.push(format!(
                    "{} (in `{}`)",
                    interpolate::unset_warning(&name),
                    file.display()
                ));
            }
            env.extend(parsed);
        }
        Ok(env)
    }

    fn env_error(path: &Path, e: ParseError) -> ComposeError {
        ComposeError::EnvFile {
            path: path.to_path_buf(),
            line: e.line,
            message: e.message,
        }
    }

    #[cfg(test)]
    #[allow(clippy::unwrap_used)]
    mod tests {
        use super::*;

        fn parse_with(src: &str, pairs: &[(&str, &str)]) -> IndexMap<String, String> {
            let env: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            parse(src, &|k: &str| env.get(k).cloned(), &mut Vec::new()).unwrap()
        }

        fn get<'a>(m: &'a IndexMap<String, String>, k: &str) -> &'a str {
            m.get(k).map(String::as_str).unwrap_or("<unset>")
        }

        #[test]
        fn plain_values_comments_and_export() {
            let m = parse_with(
                "# comment\n\n  A=1\nexport B=two words\nC = spaced  \nD:yaml\nexportE=x\nEMPTY=\n",
                &[],
            );
            assert_eq!(get(&m, "A"), "1");
            assert_eq!(get(&m, "B"), "two words");
            assert_eq!(get(&m, "C"), "spaced");
            assert_eq!(get(&m, "D"), "yaml");
            assert_eq!(get(&m, "exportE"), "x");
            assert_eq!(get(&m, "EMPTY"), "");
            assert_eq!(m.len(), 6);
        }

        #[test]
        fn inline_comment_needs_a_space_before_the_hash() {
            let m = parse_with("A=value # note\nB=val#ue\nC=#x\nD='q # kept' # gone\n", &[]);
            assert_eq!(get(&m, "A"), "value");
            assert_eq!(get(&m, "B"), "val#ue");
            assert_eq!(get(&m, "C"), "#x");
            assert_eq!(get(&m, "D"), "q # kept");
        }

        #[test]
        fn single_quotes_are_literal() {
            let m = parse_with(r#"A='${HOME} \n $x'"#, &[("HOME", "/h")]);
            assert_eq!(get(&m, "A"), r"${HOME} \n $x");
            let m = parse_with(r"A='it\'s'", &[]);
            assert_eq!(get(&m, "A"), "it's");
        }

        #[test]
        fn double_quotes_unescape_and_interpolate() {
            let m = parse_with(
                "A=\"line1\\nline2\\t\\\"q\\\" \\\\ \\$HOME $HOME \\0101\"\nB=\"multi\nline\"\nC=after\n",
                &[("HOME", "/h")],
            );
            assert_eq!(get(&m, "A"), "line1\nline2\t\"q\" \\ $HOME /h A");
            assert_eq!(get(&m, "B"), "multi\nline");
            assert_eq!(get(&m, "C"), "after");
        }

        #[test]
        fn values_reference_earlier_lines_and_the_environment_first() {
            let m = parse_with(
                "BASE=/srv\nDATA=${BASE}/data\nHOME_DIR=$HOME/x\nDEF=${NOPE:-fallback}\n",
                &[("HOME", "/home/u")],
            );
            assert_eq!(get(&m, "DATA"), "/srv/data");
            assert_eq!(get(&m, "HOME_DIR"), "/home/u/x");
            assert_eq!(get(&m, "DEF"), "fallback");
            // The environment is consulted before earlier lines, as in compose-go.
            let m = parse_with("A=file\nB=${A}\n", &[("A", "os")]);
            assert_eq!(get(&m, "B"), "os");
        }

        #[test]
        fn bare_key_inherits_from_the_environment() {
            let m = parse_with("FROM_OS\nMISSING\nLAST", &[("FROM_OS", "v"), ("LAST", "l")]);
            assert_eq!(get(&m, "FROM_OS"), "v");
            assert_eq!(get(&m, "MISSING"), "<unset>");
            assert_eq!(get(&m, "LAST"), "l");
        }

        #[test]
        fn bom_and_crlf_are_tolerated() {
            let m = parse_with("\u{feff}A=1\r\nB=2\r\n", &[]);
            assert_eq!(get(&m, "A"), "1");
            assert_eq!(get(&m, "B"), "2");
        }

        #[test]
        fn errors_carry_the_line() {
            let err = parse("A=1\n\nB C=2\n", &|_: &str| None, &mut Vec::new()).unwrap_err();
            assert_eq!(err.line, 3);
            assert!(err.message.contains("space"), "{}", err.message);
            let err = parse("A=1\nB=\"open\n", &|_: &str| None, &mut Vec::new()).unwrap_err();
            assert_eq!(err.line, 2);
            assert!(err.message.contains("unterminated"), "{}", err.message);
            let err = parse("A=1\nB$=2\n", &|_: &str| None, &mut Vec::new()).unwrap_err();
            assert_eq!(err.line, 2);
            assert!(
                err.message.contains("unexpected character"),
                "{}",
                err.message
            );
            let err = parse("A=${X:?needed}\n", &|_: &str| None, &mut Vec::new()).unwrap_err();
            assert_eq!(err.line, 1);
            assert!(err.message.contains("needed"), "{}", err.message);
        }

        #[test]
        fn unset_variables_are_reported() {
            let mut unset = Vec::new();
            parse("A=${NOPE}\n", &|_: &str| None, &mut unset).unwrap();
            assert_eq!(unset, vec!["NOPE".to_string()]);
        }

        #[test]
        fn later_files_override_earlier_ones_and_see_them() {
            let dir = tempfile::tempdir().unwrap();
            let a = dir.path().join("a.env");
            let b = dir.path().join("b.env");
            fs_err::write(&a, "X=1\nY=a\n").unwrap();
            fs_err::write(&b, "Y=b\nZ=${X}${Y}\n").unwrap();
            let env = read_env_files(&[a, b], &BTreeMap::new(), &mut Vec::new()).unwrap();
            assert_eq!(env.get("X").map(String::as_str), Some("1"));
            assert_eq!(env.get("Y").map(String::as_str), Some("b"));
            // Z sees Y from the first file: a file's own earlier lines come after the environment so far.
            assert_eq!(env.get("Z").map(String::as_str), Some("1a"));
        }

        #[test]
        fn missing_env_file_is_an_error_naming_it() {
            let err = read_env_files(
                &[PathBuf::from("/nonexistent/x.env")],
                &BTreeMap::new(),
                &mut Vec::new(),
            )
            .unwrap_err();
            assert!(
                matches!(err, ComposeError::Read { ref path, .. } if path == Path::new("/nonexistent/x.env"))
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent).unwrap();
        }
        fs_err::write(path, text).unwrap();
    }

    fn opts(wd: &Path) -> ProjectOptions {
        ProjectOptions {
            working_dir: wd.to_path_buf(),
            ..Default::default()
        }
    }

    #[test]
    fn clean_path_resolves_dots() {
        assert_eq!(
            clean_path(Path::new("/a/./b/../c//d/")),
            PathBuf::from("/a/c/d")
        );
        assert_eq!(clean_path(Path::new("/..")), PathBuf::from("/"));
        assert_eq!(clean_path(Path::new("a/../..")), PathBuf::from(".."));
        assert_eq!(
            absolutize(Path::new("/p/q"), Path::new("../r")),
            PathBuf::from("/p/r")
        );
    }

    #[test]
    fn walks_up_to_the_first_directory_with_a_compose_file() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(&root.join("compose.yaml"), "services: {}\n");
        write(&root.join("docker-compose.yml"), "services: {}\n");
        let deep = root.join("a/b/c");
        fs_err::create_dir_all(&deep).unwrap();
        let d = discover(&opts(&deep)).unwrap();
        assert_eq!(d.files, vec![root.join("compose.yaml")]);
        assert_eq!(d.project_dir, root);
        assert!(
            d.warnings[0].starts_with("Found multiple config files"),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn nearest_directory_wins() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("compose.yaml"), "");
        write(&tmp.path().join("sub/docker-compose.yaml"), "");
        let d = discover(&opts(&tmp.path().join("sub"))).unwrap();
        assert_eq!(d.files, vec![tmp.path().join("sub/docker-compose.yaml")]);
    }

    #[test]
    fn default_name_precedence() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["docker-compose.yaml", "docker-compose.yml", "compose.yml"] {
            write(&tmp.path().join(name), "");
        }
        let (files, warnings) = find_default_files(tmp.path()).unwrap();
        assert_eq!(files, vec![tmp.path().join("compose.yml")]);
        assert_eq!(warnings.len(), 2);
    }

    #[test]
    fn override_file_is_added_after_the_main_file() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("docker-compose.yml"), "");
        write(&tmp.path().join("docker-compose.override.yml"), "");
        let (files, warnings) = find_default_files(tmp.path()).unwrap();
        assert_eq!(
            files,
            vec![
                tmp.path().join("docker-compose.yml"),
                tmp.path().join("docker-compose.override.yml")
            ]
        );
        assert!(warnings.is_empty());
    }

    #[test]
    fn first_override_name_wins_across_families_as_in_compose() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("compose.yaml"), "");
        write(&tmp.path().join("docker-compose.override.yml"), "");
        write(&tmp.path().join("compose.override.yaml"), "");
        let (files, warnings) = find_default_files(tmp.path()).unwrap();
        assert_eq!(files[1], tmp.path().join("compose.override.yaml"));
        assert!(warnings[0].starts_with("Found multiple override files"));
    }

    #[test]
    fn nothing_found_is_not_found() {
        let tmp = tempfile::tempdir().unwrap();
        // The temp dir's parents might hold a compose file on a developer machine; start from a fresh root.
        let err = discover(&ProjectOptions {
            project_directory: Some(tmp.path().to_path_buf()),
            ..opts(Path::new("/"))
        });
        match err {
            Err(ComposeError::NotFound { dir }) => assert_eq!(dir, tmp.path()),
            Ok(d) if d.files.iter().all(|f| !f.starts_with(tmp.path())) => {
                // A compose file above the temp dir was found: discovery still walked up, which is correct.
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn explicit_files_are_relative_to_the_working_dir_and_set_the_project_dir() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("deploy/base.yml"), "");
        write(&tmp.path().join("prod.yml"), "");
        let d = discover(&ProjectOptions {
            files: vec!["deploy/base.yml".into(), "./prod.yml".into()],
            ..opts(tmp.path())
        })
        .unwrap();
        assert_eq!(
            d.files,
            vec![
                tmp.path().join("deploy/base.yml"),
                tmp.path().join("prod.yml")
            ]
        );
        assert_eq!(d.project_dir, tmp.path().join("deploy"));
    }

    #[test]
    fn project_directory_option_wins_and_starts_the_search() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("app/compose.yaml"), "");
        write(&tmp.path().join("other/x.yml"), "");
        let d = discover(&ProjectOptions {
            project_directory: Some("app".into()),
            ..opts(tmp.path())
        })
        .unwrap();
        assert_eq!(d.files, vec![tmp.path().join("app/compose.yaml")]);
        assert_eq!(d.project_dir, tmp.path().join("app"));
        let d = discover(&ProjectOptions {
            project_directory: Some("app".into()),
            files: vec!["other/x.yml".into()],
            ..opts(tmp.path())
        })
        .unwrap();
        assert_eq!(d.project_dir, tmp.path().join("app"));
    }

    #[test]
    fn compose_file_variable_with_separator_from_dotenv() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("one.yml"), "");
        write(&tmp.path().join("two.yml"), "");
        write(
            &tmp.path().join(".env"),
            "COMPOSE_FILE=one.yml;two.yml\nCOMPOSE_PATH_SEPARATOR=;\nV=fromenv\n",
        );
        let d = discover(&opts(tmp.path())).unwrap();
        assert_eq!(
            d.files,
            vec![tmp.path().join("one.yml"), tmp.path().join("two.yml")]
        );
        assert_eq!(d.environment.get("V").map(String::as_str), Some("fromenv"));
    }

    #[test]
    fn compose_file_variable_default_separator_and_missing_entry() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("one.yml"), "");
        let mut o = opts(tmp.path());
        o.os_env
            .insert("COMPOSE_FILE".into(), "one.yml:missing.yml".into());
        match discover(&o) {
            Err(ComposeError::Read { path, .. }) => {
                assert_eq!(path, tmp.path().join("missing.yml"))
            }
            other => panic!("unexpected {other:?}"),
        }
        o.os_env.insert("COMPOSE_FILE".into(), "one.yml".into());
        assert_eq!(
            discover(&o).unwrap().files,
            vec![tmp.path().join("one.yml")]
        );
    }

    #[test]
    fn os_environment_wins_over_dotenv_and_working_dir_env_over_project_env() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("compose.yaml"), "");
        write(&tmp.path().join(".env"), "A=proj\nB=proj\nC=proj\n");
        write(&tmp.path().join("sub/.env"), "A=cwd\n");
        let mut o = opts(&tmp.path().join("sub"));
        o.os_env.insert("B".into(), "os".into());
        let d = discover(&o).unwrap();
        assert_eq!(d.environment.get("A").map(String::as_str), Some("cwd"));
        assert_eq!(d.environment.get("B").map(String::as_str), Some("os"));
        assert_eq!(d.environment.get("C").map(String::as_str), Some("proj"));
    }

    #[test]
    fn env_file_option_replaces_dotenv_and_later_wins() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("compose.yaml"), "");
        write(&tmp.path().join(".env"), "A=dotenv\nONLY=dotenv\n");
        write(&tmp.path().join("one.env"), "A=one\nB=one\n");
        write(&tmp.path().join("two.env"), "A=two\n");
        let d = discover(&ProjectOptions {
            env_files: vec!["one.env".into(), "two.env".into()],
            ..opts(tmp.path())
        })
        .unwrap();
        assert_eq!(d.environment.get("A").map(String::as_str), Some("two"));
        assert_eq!(d.environment.get("B").map(String::as_str), Some("one"));
        assert_eq!(d.environment.get("ONLY"), None);
    }

    #[test]
    fn missing_env_file_option_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("compose.yaml"), "");
        let err = discover(&ProjectOptions {
            env_files: vec!["nope.env".into()],
            ..opts(tmp.path())
        })
        .unwrap_err();
        match err {
            ComposeError::Read { path, .. } => assert_eq!(path, tmp.path().join("nope.env")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn disable_env_file_skips_dotenv() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("compose.yaml"), "");
        write(&tmp.path().join(".env"), "A=1\n");
        let mut o = opts(tmp.path());
        o.os_env
            .insert("COMPOSE_DISABLE_ENV_FILE".into(), "true".into());
        assert_eq!(discover(&o).unwrap().environment.get("A"), None);
    }
}
