//! The short volume syntax `[SOURCE:]TARGET[:MODE]` as Compose parses it, and the paths it holds: whether
//! a source is a host path, a bind source resolved, a container target cleaned.

use std::path::{Path, PathBuf};

use crate::compose::discovery::clean_path;

/// The short syntax `[SOURCE:]TARGET[:MODE]`, parsed as compose-go's `format.ParseVolume` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortVolume {
    /// `None` for an anonymous volume.
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
}

/// Parses a short-syntax volume. Like Compose: a one- or two-character spec is an anonymous target; a
/// single letter followed by `:` is a Windows drive, not a separator; `${…}` is never split; modes are
/// comma-separated and unknown ones ignored (`ro`/`rw` set read-only, the last one wins). Errors are
/// Compose's ("invalid spec: …: empty section between colons", "too many colons").
pub fn parse_short_volume(spec: &str) -> Result<ShortVolume, String> {
    match spec.len() {
        0 => return Err("invalid empty volume spec".to_string()),
        1 | 2 => {
            return Ok(ShortVolume {
                source: None,
                target: spec.to_string(),
                read_only: false,
            });
        }
        _ => {}
    }
    let mut source: Option<String> = None;
    let mut target: Option<String> = None;
    let mut read_only = false;
    let mut buffer: Vec<char> = Vec::new();
    let mut depth = 0usize;
    let bytes = spec.as_bytes();
    let chars: Vec<(usize, char)> = spec.char_indices().collect();
    let fail = |m: &str| Err(format!("invalid spec: {spec}: {m}"));
    for idx in 0..=chars.len() {
        let (i, ch) = match chars.get(idx) {
            Some(&(i, c)) => (i, Some(c)),
            None => (spec.len(), None),
        };
        if ch == Some('$') && bytes.get(i + 1) == Some(&b'{') {
            depth += 1;
            buffer.push('$');
            continue;
        }
        if ch == Some('}') && depth > 0 {
            depth -= 1;
            buffer.push('}');
            continue;
        }
        let is_drive = ch == Some(':') && buffer.len() == 1 && buffer[0].is_alphabetic();
        if is_drive {
            buffer.push(':');
            continue;
        }
        let at_end = ch.is_none();
        if (ch == Some(':') && depth == 0) || at_end {
            let text: String = buffer.drain(..).collect();
            if text.is_empty() {
                return fail("empty section between colons");
            }
            if source.is_none() && at_end {
                target = Some(text);
            } else if source.is_none() {
                source = Some(text);
            } else if target.is_none() {
                target = Some(text);
            } else if !at_end {
                return fail("too many colons");
            } else {
                for option in text.split(',') {
                    match option {
                        "ro" => read_only = true,
                        "rw" => read_only = false,
                        _ => {}
                    }
                }
            }
            continue;
        }
        if let Some(c) = ch {
            buffer.push(c);
        }
    }
    Ok(ShortVolume {
        source,
        target: target.unwrap_or_default(),
        read_only,
    })
}

/// Whether a short-syntax source is a host path (bind) rather than a volume name: it starts with `.`, `/`
/// or `~`, is a UNC path, or starts with a drive letter.
pub fn is_file_path(source: &str) -> bool {
    match source.chars().next() {
        None => false,
        Some('.' | '/' | '~') => true,
        Some(first) => {
            source.starts_with("\\\\")
                || (first.is_alphabetic() && source[first.len_utf8()..].starts_with(':'))
        }
    }
}

/// A Windows absolute path: `C:\…`, `C:/…` or `\\server\share`.
fn is_windows_abs(p: &str) -> bool {
    let b = p.as_bytes();
    p.starts_with("\\\\")
        || (b.len() >= 3
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && (b[2] == b'\\' || b[2] == b'/'))
}

/// A bind source as Compose resolves it: `~` → `home`, relative → against `base_dir` (cleaned), absolute
/// (Unix or Windows) → as written.
pub fn resolve_bind(source: &str, base_dir: &Path, home: Option<&str>) -> String {
    let expanded = match (source.strip_prefix('~'), home) {
        (Some(rest), Some(home)) => clean_path(&PathBuf::from(format!("{home}/{rest}")))
            .to_string_lossy()
            .into_owned(),
        _ => source.to_string(),
    };
    if expanded.starts_with('/') || is_windows_abs(&expanded) {
        expanded
    } else {
        clean_path(&base_dir.join(&expanded))
            .to_string_lossy()
            .into_owned()
    }
}

/// A container path cleaned like Go's `path.Clean` (what Compose prints): `/data/` → `/data`.
pub fn clean_target(target: &str) -> String {
    if target.is_empty() {
        return String::new();
    }
    let rooted = target.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn short(spec: &str) -> ShortVolume {
        parse_short_volume(spec).unwrap()
    }

    fn sv(source: Option<&str>, target: &str, ro: bool) -> ShortVolume {
        ShortVolume {
            source: source.map(str::to_string),
            target: target.to_string(),
            read_only: ro,
        }
    }

    #[test]
    fn short_syntax_table() {
        let cases: &[(&str, ShortVolume)] = &[
            ("/data", sv(None, "/data", false)),
            (
                "db:/var/lib/postgresql/data",
                sv(Some("db"), "/var/lib/postgresql/data", false),
            ),
            ("./data:/data:ro", sv(Some("./data"), "/data", true)),
            ("./data:/data:rw", sv(Some("./data"), "/data", false)),
            (
                "/etc/localtime:/etc/localtime:ro",
                sv(Some("/etc/localtime"), "/etc/localtime", true),
            ),
            ("./db:/var/lib/db:Z", sv(Some("./db"), "/var/lib/db", false)),
            ("./db:/var/lib/db:z", sv(Some("./db"), "/var/lib/db", false)),
            (
                "/var/run/docker.sock:/var/run/docker.sock:ro,z",
                sv(Some("/var/run/docker.sock"), "/var/run/docker.sock", true),
            ),
            ("./app:/app:Z,cached", sv(Some("./app"), "/app", false)),
            ("..:/app:cached", sv(Some(".."), "/app", false)),
            ("./src:/src:delegated", sv(Some("./src"), "/src", false)),
            ("./src:/src:consistent", sv(Some("./src"), "/src", false)),
            ("data:/data:nocopy", sv(Some("data"), "/data", false)),
            ("data:/data:rw,ro", sv(Some("data"), "/data", true)),
            ("data:/data:bogus,ro", sv(Some("data"), "/data", true)),
            ("ab", sv(None, "ab", false)),
            ("~/x:/a", sv(Some("~/x"), "/a", false)),
            ("C:\\data:/win", sv(Some("C:\\data"), "/win", false)),
            // A single letter followed by a colon is a Windows drive, as in Compose.
            ("a:/b:rw,ro", sv(Some("a:/b"), "rw,ro", false)),
            ("${X:-./a}:/b", sv(Some("${X:-./a}"), "/b", false)),
        ];
        for (spec, expected) in cases {
            assert_eq!(&short(spec), expected, "spec {spec}");
        }
    }

    #[test]
    fn short_syntax_errors_match_compose() {
        assert_eq!(
            parse_short_volume(":/var/lib/postgresql/data").unwrap_err(),
            "invalid spec: :/var/lib/postgresql/data: empty section between colons"
        );
        assert_eq!(
            parse_short_volume("./a:/b:ro:z").unwrap_err(),
            "invalid spec: ./a:/b:ro:z: too many colons"
        );
        assert_eq!(
            parse_short_volume("./a:/b:").unwrap_err(),
            "invalid spec: ./a:/b:: empty section between colons"
        );
        assert_eq!(
            parse_short_volume("").unwrap_err(),
            "invalid empty volume spec"
        );
    }

    #[test]
    fn file_path_detection() {
        for bind in [
            "./x",
            "../x",
            ".",
            "/x",
            "~",
            "~/x",
            "\\\\srv\\share",
            "C:\\x",
            "c:/x",
        ] {
            assert!(is_file_path(bind), "{bind}");
        }
        for named in ["data", "my-vol", "x_1", ""] {
            assert!(!is_file_path(named), "{named}");
        }
    }

    #[test]
    fn bind_sources_resolve_like_compose() {
        let base = Path::new("/proj/app");
        let home = Some("/home/u");
        assert_eq!(resolve_bind("./data", base, home), "/proj/app/data");
        assert_eq!(resolve_bind("../up/./x/", base, home), "/proj/up/x");
        assert_eq!(resolve_bind(".", base, home), "/proj/app");
        assert_eq!(resolve_bind("~/x", base, home), "/home/u/x");
        assert_eq!(resolve_bind("~", base, home), "/home/u");
        assert_eq!(resolve_bind("~foo", base, home), "/home/u/foo");
        // Absolute paths are kept exactly as written, as Compose does.
        assert_eq!(resolve_bind("/abs//p/../q/", base, home), "/abs//p/../q/");
        assert_eq!(resolve_bind("C:\\data", base, home), "C:\\data");
        assert_eq!(resolve_bind("a:b", base, home), "/proj/app/a:b");
    }

    #[test]
    fn targets_are_cleaned() {
        assert_eq!(clean_target("/data/"), "/data");
        assert_eq!(clean_target("/usr/src/app/"), "/usr/src/app");
        assert_eq!(clean_target("/a/./b/../c"), "/a/c");
        assert_eq!(clean_target("./a"), "a");
        assert_eq!(clean_target("/"), "/");
        assert_eq!(clean_target("/.."), "/");
    }
}
