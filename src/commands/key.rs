//! `key init [PATH]`: writes a new age identity (mode 0600) and its public key next to it (`PATH.pub`),
//! and prints the public key, which is all a backup host needs (`x-persist: {encrypt: {recipients: […]}}`).
//! An existing file is never replaced: an identity that is overwritten makes every backup encrypted to it
//! unreadable.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};

use anyhow::Context as _;

use super::restore::Refused;
use super::{ExitStatus, UsageError};
use crate::archive::crypt::{expose, generate_identity};
use crate::cli::KeyInitArgs;
use crate::report::Printer;

pub fn init(printer: &Printer, args: &KeyInitArgs) -> anyhow::Result<ExitStatus> {
    let path = match &args.path {
        Some(p) => p.clone(),
        None => crate::encryption::default_identity_path().ok_or_else(|| UsageError {
            message: "neither `XDG_CONFIG_HOME` nor `HOME` is set, so there is no default place for the identity".to_string(),
            hint: Some("name the file: `docker persist key init PATH`".to_string()),
        })?,
    };
    let public_path = {
        let mut p = path.clone().into_os_string();
        p.push(".pub");
        std::path::PathBuf::from(p)
    };
    for existing in [&path, &public_path] {
        if existing.symlink_metadata().is_ok() {
            return Err(Refused {
                message: format!(
                    "`{}` exists; `key init` never replaces a key (backups encrypted to it could no longer be read)",
                    existing.display()
                ),
                hint: "name another file: `docker persist key init PATH`".to_string(),
            }
            .into());
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("failed to create `{}`", dir.display()))?;
    }
    let created = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let (identity, public) = generate_identity(&created);
    let mut file = fs_err::OpenOptions::from_options({
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true).mode(0o600);
        o
    })
    .open(&path)?;
    file.write_all(expose(&identity).as_bytes())?;
    file.sync_all()?;
    fs_err::write(&public_path, format!("{public}\n"))?;

    printer.status(format!(
        "Wrote a new identity to `{}` (mode 0600) and its public key to `{}`",
        path.display(),
        public_path.display()
    ));
    printer.warn(format!(
        "without `{}`, backups encrypted to this key cannot be read by anyone, docker persist included: keep a copy somewhere safe, away from the backups",
        path.display()
    ));
    printer.status(format!(
        "hint: put the public key in the Compose file, `x-persist: {{encrypt: {{recipients: [\"{public}\"]}}}}` (the backup host needs only that), and restore with `--identity {}`",
        path.display()
    ));
    printer.data(format!("{public}\n"));
    Ok(ExitStatus::Success)
}
