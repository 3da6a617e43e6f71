//! How the rules see paths, names and images: whole path components, words split at separators, and an
//! image's name without registry and tag.

/// `path` is `prefix` or lies under it (component-wise; trailing slashes ignored).
pub(super) fn under(path: &str, prefix: &str) -> bool {
    let path = path.trim_end_matches('/');
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return path.starts_with('/');
    }
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Lower-case words of a name or path: split at `/`, `-`, `_`, `.`, `:` and spaces. `node_modules` and
/// `__pycache__` are kept whole as well.
pub(super) fn words_of(s: &str) -> Vec<String> {
    let lower = s.to_ascii_lowercase();
    let mut out: Vec<String> = lower
        .split(['/', '-', '_', '.', ':', ' '])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    for whole in ["node_modules", "__pycache__"] {
        if lower.contains(whole) {
            out.push(whole.to_string());
        }
    }
    out
}

/// The last component of a path, when it has one that is not `.` or `..`.
pub(super) fn file_name(path: &str) -> Option<&str> {
    let last = path.trim_end_matches('/').rsplit('/').next()?;
    (!last.is_empty() && last != "." && last != "..").then_some(last)
}

/// An image's repository path without registry, `library/`, tag and digest, lower-cased:
/// `docker.io/library/ghost:5` → `ghost`, `ghcr.io/immich-app/immich-server:v1` →
/// `immich-app/immich-server`, `localhost:5000/app` → `app`.
pub(super) fn image_path(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let mut parts: Vec<&str> = without_digest.split('/').collect();
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            parts.remove(0);
        }
    }
    if parts.len() > 1 && parts[0] == "library" {
        parts.remove(0);
    }
    let mut path = parts.join("/");
    if let Some(slash) = path.rfind('/').map(|i| i + 1).or(Some(0))
        && let Some(colon) = path[slash..].find(':')
    {
        path.truncate(slash + colon);
    }
    path.to_ascii_lowercase()
}

/// Words of an image's name: registry, namespace, tag and digest dropped (`ghcr.io/x/postgres-ha:16` →
/// `postgres`, `ha`), trailing version digits dropped (`influxdb2` → `influxdb`).
pub(super) fn image_words(image: &str) -> Vec<String> {
    let path = image_path(image);
    let name = path.rsplit('/').next().unwrap_or(&path);
    name.split(['-', '_', '.'])
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_end_matches(|c: char| c.is_ascii_digit()).to_string())
        .filter(|w| !w.is_empty())
        .collect()
}
