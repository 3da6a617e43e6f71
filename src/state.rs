//! Where docker persist keeps what it knows between commands (`$XDG_STATE_HOME/docker-persist`: intent
//! records, verification records, run records, locks, schedules), and how it writes there: private
//! directories and files replaced atomically, so a reader never sees half of one.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never a part: a temporary
/// file in the same directory (created 0700 if missing), synced, then renamed over `path`.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// `$XDG_STATE_HOME/docker-persist`, else `~/.local/state/docker-persist`.
pub fn state_root(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    Some(xdg_dir(env, "XDG_STATE_HOME", ".local/state")?.join("docker-persist"))
}

/// An XDG base directory: `$VAR` when it is absolute, else `$HOME/<fallback>`.
pub fn xdg_dir(env: impl Fn(&str) -> Option<String>, var: &str, fallback: &str) -> Option<PathBuf> {
    env(var)
        .filter(|s| Path::new(s).is_absolute())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| Path::new(&h).join(fallback))
        })
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))
}
