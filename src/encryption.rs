//! Which backups are encrypted, to whom, and with which keys they are read back: `x-persist: {encrypt:
//! {recipients: […]}}` (per project, and per destination), `backup --encrypt-to`/`--passphrase-file`/
//! `--no-encrypt`, `--identity`/`DOCKER_PERSIST_IDENTITY`, and the rule by which a destination refuses a
//! plain backup. Shared by every command that writes or reads backups; the age work itself is
//! [`crate::archive::crypt`].

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::archive::{CryptError, Identity, Keys, Passphrase, Recipient, Sealer};
use crate::cli::{EncryptArgs, IdentityArgs};
use crate::commands::UsageError;
use crate::commands::restore::Refused;
use crate::compose::Project;

/// `encrypt:` of `x-persist` (the project's, or a destination's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptConfig {
    /// `age1…`, `ssh-ed25519 …`, `ssh-rsa …`, or `file:PATH` (a recipients file, relative to the project
    /// directory).
    #[serde(default)]
    pub recipients: Vec<String>,
}

impl EncryptConfig {
    /// The `encrypt:` of an `x-persist` mapping (`where` names it in errors); `None` when absent.
    pub fn from_persist(
        persist: &serde_json::Value,
        location: &str,
    ) -> Result<Option<EncryptConfig>, UsageError> {
        let Some(raw) = persist.get("encrypt") else {
            return Ok(None);
        };
        let config: EncryptConfig =
            serde_json::from_value(raw.clone()).map_err(|e| UsageError {
                message: format!("invalid `encrypt` in {location}: {e}"),
                hint: Some(
                    "expected `encrypt: {recipients: [age1…, \"ssh-ed25519 …\", \"file:./keys/backup.pub\"]}`"
                        .to_string(),
                ),
            })?;
        Ok(Some(config))
    }

    /// The project's `x-persist: {encrypt: …}`.
    pub fn of_project(project: &Project) -> Result<Option<EncryptConfig>, UsageError> {
        EncryptConfig::from_persist(&project.persist, "the top-level `x-persist`")
    }

    pub fn is_empty(&self) -> bool {
        self.recipients.is_empty()
    }

    /// The recipients, `file:` paths read relative to `base`.
    pub fn resolve(&self, base: &Path) -> Result<Vec<Recipient>, CryptError> {
        let mut out = Vec::new();
        for spec in &self.recipients {
            out.extend(parse_recipient_spec(spec, base)?);
        }
        Ok(out)
    }
}

/// One recipient as written in a Compose file or on the command line: a key, or `file:PATH` (relative to
/// `base`) naming a recipients file.
pub fn parse_recipient_spec(spec: &str, base: &Path) -> Result<Vec<Recipient>, CryptError> {
    match spec.trim().strip_prefix("file:") {
        Some(path) => Recipient::read_file(&base.join(path)),
        None => Recipient::parse(spec).map(|r| vec![r]),
    }
}

/// Whether a destination refuses plain backups: its `require_encryption:` when set; else yes for a
/// destination that is not on this machine once any recipient is configured (for the project or the
/// destination), so that data leaving the machine is encrypted as soon as someone chose keys.
pub fn require_encryption(
    explicit: Option<bool>,
    local: bool,
    recipients_configured: bool,
) -> bool {
    explicit.unwrap_or(!local && recipients_configured)
}

/// How a configured destination (`x-persist: {destinations: {NAME: {encrypt: …, require_encryption: …}}}`)
/// wants its backups: its own `encrypt:` (it wins over the project's) and whether it refuses plain ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationEncryption {
    /// The destination's `encrypt:`, else the project's; `None` when neither names recipients.
    pub config: Option<EncryptConfig>,
    /// [`require_encryption`] for this destination.
    pub require: bool,
}

/// The recipients of a destination's own `encrypt:` (none when it has none: the project's then apply),
/// `file:` paths read relative to `base` (the project directory).
pub fn destination_recipients(
    name: &str,
    raw: &serde_json::Value,
    base: &Path,
) -> anyhow::Result<Vec<Recipient>> {
    let location = format!("destination `{name}`");
    match EncryptConfig::from_persist(raw, &location)? {
        Some(own) if !own.is_empty() => Ok(own
            .resolve(base)
            .with_context(|| format!("in the `encrypt:` of {location}"))?),
        _ => Ok(Vec::new()),
    }
}

/// Reads a destination entry's `encrypt:` and `require_encryption:` (`raw` is the entry as written; `local`
/// whether the destination is a directory on this machine; `project` the project's `encrypt:`).
pub fn for_destination(
    name: &str,
    raw: &serde_json::Value,
    local: bool,
    project: Option<&EncryptConfig>,
) -> Result<DestinationEncryption, UsageError> {
    let location = format!("destination `{name}`");
    let own = EncryptConfig::from_persist(raw, &location)?;
    let explicit = match raw.get("require_encryption") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Bool(b)) => Some(*b),
        Some(other) => {
            return Err(UsageError {
                message: format!(
                    "invalid `require_encryption` in {location}: expected true or false, not `{other}`"
                ),
                hint: None,
            });
        }
    };
    let config = own.or_else(|| project.cloned()).filter(|c| !c.is_empty());
    Ok(DestinationEncryption {
        require: require_encryption(explicit, local, config.is_some()),
        config,
    })
}

/// Applies [`require_encryption`]'s answer to one backup: a plain backup to a destination that requires
/// encryption is refused (exit 3) unless `--no-encrypt` asked for it, which is then said in the returned
/// warning.
pub fn check_plain_allowed(
    destination: &str,
    required: bool,
    encrypted: bool,
    no_encrypt: bool,
) -> Result<Option<String>, Refused> {
    if encrypted || !required {
        return Ok(None);
    }
    if no_encrypt {
        return Ok(Some(format!(
            "`--no-encrypt`: writing a plain backup to `{destination}`, which requires encryption"
        )));
    }
    Err(Refused {
        message: format!(
            "destination `{destination}` requires encryption (`require_encryption`), and this backup would be plain"
        ),
        hint: "configure recipients (`x-persist: {encrypt: {recipients: […]}}`, `--encrypt-to`), or pass `--no-encrypt` to send it plain anyway".to_string(),
    })
}

/// How one command's backups are encrypted: recipients, and a passphrase.
#[derive(Debug, Clone)]
pub struct EncryptPlan {
    recipients: Vec<Recipient>,
    passphrase: Option<Passphrase>,
}

impl EncryptPlan {
    /// A sealer for one backup file (passphrase mode makes a key per file).
    pub fn sealer(&self) -> Result<Sealer, CryptError> {
        Sealer::new(self.recipients.clone(), self.passphrase.as_ref())
    }

    /// Adds recipients (a destination's own `encrypt:`), each once, to `plan` — or makes a plan of them
    /// alone when there was none. The one file goes to every destination, so it is encrypted to them all.
    pub fn with_recipients(
        plan: Option<EncryptPlan>,
        extra: Vec<Recipient>,
    ) -> Option<EncryptPlan> {
        if extra.is_empty() {
            return plan;
        }
        let mut plan = plan.unwrap_or(EncryptPlan {
            recipients: Vec::new(),
            passphrase: None,
        });
        for r in extra {
            let fp = r.info().fingerprint;
            if !plan.recipients.iter().any(|h| h.info().fingerprint == fp) {
                plan.recipients.push(r);
            }
        }
        Some(plan)
    }

    /// "to SHA256:… (x25519) and a passphrase".
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .recipients
            .iter()
            .map(|r| r.info().to_string())
            .collect();
        if self.passphrase.is_some() {
            parts.push("a passphrase".to_string());
        }
        parts.join(", ")
    }
}

/// What a backup of `project` is encrypted to: the project's `x-persist: {encrypt: …}`, then
/// `--encrypt-to` and `--passphrase-file`; `None` for a plain backup (none of them, or `--no-encrypt`,
/// with a warning when that overrides a configuration).
pub fn plan(
    project: &Project,
    args: &EncryptArgs,
    warn: impl Fn(String),
) -> anyhow::Result<Option<EncryptPlan>> {
    let config = EncryptConfig::of_project(project)?;
    if args.no_encrypt {
        if config.as_ref().is_some_and(|c| !c.is_empty()) {
            warn(
                "`--no-encrypt`: this backup is NOT encrypted, although `x-persist: {encrypt: …}` names recipients"
                    .to_string(),
            );
        }
        return Ok(None);
    }
    let mut recipients = match &config {
        Some(c) => c
            .resolve(&project.directory)
            .context("in the top-level `x-persist: {encrypt: …}`")?,
        None => Vec::new(),
    };
    let here = std::env::current_dir().unwrap_or_default();
    for spec in &args.encrypt_to {
        recipients.extend(parse_recipient_spec(spec, &here).context("in `--encrypt-to`")?);
    }
    let passphrase = args
        .passphrase_file
        .as_deref()
        .map(Passphrase::from_file)
        .transpose()?;
    if recipients.is_empty() && passphrase.is_none() {
        return Ok(None);
    }
    Ok(Some(EncryptPlan {
        recipients,
        passphrase,
    }))
}

/// What the safety backups of `restore`, `migrate` and `down --backup` are encrypted to: the project's
/// `x-persist: {encrypt: …}` recipients (no passphrase: nobody was asked for one).
pub fn project_plan(project: &Project) -> anyhow::Result<Option<EncryptPlan>> {
    plan(project, &EncryptArgs::default(), |_| {})
}

/// Loads the identities and passphrase a command was given. An identity file that group or others can
/// read is refused, as ssh refuses such a key, unless `--insecure-identity`.
pub fn load_keys(args: &IdentityArgs) -> anyhow::Result<Keys> {
    let mut keys = Keys::default();
    for path in &args.identities {
        check_private(path, args.insecure_identity)?;
        keys.identities.extend(Identity::read_file(path)?);
    }
    if let Some(path) = &args.passphrase_file {
        keys.passphrase = Some(Passphrase::from_file(path)?);
    }
    Ok(keys)
}

/// An identity file readable by group or others, refused unless allowed.
#[derive(Debug, thiserror::Error)]
#[error(
    "the identity file `{}` can be read by others (mode {mode:04o}); a private key must be readable by its owner only",
    path.display()
)]
pub struct InsecureIdentity {
    pub path: PathBuf,
    pub mode: u32,
}

fn check_private(path: &Path, insecure: bool) -> anyhow::Result<()> {
    let meta = fs_err::metadata(path).context("cannot read the identity file")?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 && !insecure {
        return Err(InsecureIdentity {
            path: path.to_path_buf(),
            mode,
        }
        .into());
    }
    Ok(())
}

/// Where `key init` writes by default: `$XDG_CONFIG_HOME/docker-persist/identity.txt`, else
/// `~/.config/docker-persist/identity.txt`.
pub fn default_identity_path() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(config.join("docker-persist").join("identity.txt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_encryption_defaults_to_remote_destinations_once_recipients_exist() {
        assert!(!require_encryption(None, true, true));
        assert!(!require_encryption(None, false, false));
        assert!(require_encryption(None, false, true));
        assert!(require_encryption(Some(true), true, false));
        assert!(!require_encryption(Some(false), false, true));
    }

    #[test]
    fn a_plain_backup_is_refused_where_encryption_is_required_unless_no_encrypt() {
        assert!(matches!(
            check_plain_allowed("s3", true, true, false),
            Ok(None)
        ));
        assert!(matches!(
            check_plain_allowed("usb", false, false, false),
            Ok(None)
        ));
        let refused = check_plain_allowed("offsite", true, false, false).unwrap_err();
        assert!(
            refused.message.contains("`offsite` requires encryption"),
            "{}",
            refused.message
        );
        assert!(refused.hint.contains("--no-encrypt"));
        let warning = check_plain_allowed("offsite", true, false, true)
            .unwrap()
            .unwrap();
        assert!(warning.contains("--no-encrypt"), "{warning}");
    }

    #[test]
    fn a_destination_s_own_encrypt_wins_and_remote_ones_require_it_once_keys_exist() {
        let project = EncryptConfig {
            recipients: vec!["age1project".into()],
        };
        let remote = serde_json::json!({"url": "s3://b/p"});
        let d = for_destination("offsite", &remote, false, Some(&project)).unwrap();
        assert!(d.require);
        assert_eq!(d.config.unwrap().recipients, ["age1project"]);
        let d = for_destination("offsite", &remote, false, None).unwrap();
        assert!(!d.require && d.config.is_none());
        let own = serde_json::json!({"url": "/mnt/usb", "encrypt": {"recipients": ["age1own"]}});
        let d = for_destination("usb", &own, true, Some(&project)).unwrap();
        assert!(!d.require);
        assert_eq!(d.config.unwrap().recipients, ["age1own"]);
        let forced = serde_json::json!({"url": "/mnt/usb", "require_encryption": true});
        assert!(for_destination("usb", &forced, true, None).unwrap().require);
        let bad = serde_json::json!({"require_encryption": "yes"});
        assert!(for_destination("x", &bad, true, None).is_err());
    }

    #[test]
    fn encrypt_config_reads_recipients_and_refuses_unknown_keys() {
        let persist = serde_json::json!({"encrypt": {"recipients": ["age1x", "file:k.pub"]}});
        let c = EncryptConfig::from_persist(&persist, "here")
            .unwrap()
            .unwrap();
        assert_eq!(c.recipients, ["age1x", "file:k.pub"]);
        let bad = serde_json::json!({"encrypt": {"recipient": "age1x"}});
        let err = EncryptConfig::from_persist(&bad, "the top-level `x-persist`").unwrap_err();
        assert!(
            err.message.contains("unknown field `recipient`"),
            "{}",
            err.message
        );
        assert!(
            EncryptConfig::from_persist(&serde_json::Value::Null, "x")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn recipient_files_are_read_relative_to_the_base_and_skip_comments() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, public) = crate::archive::crypt::generate_identity("now");
        std::fs::create_dir(tmp.path().join("keys")).unwrap();
        std::fs::write(
            tmp.path().join("keys/backup.pub"),
            format!("# the backup key\n\n{public}\n"),
        )
        .unwrap();
        let r = parse_recipient_spec("file:keys/backup.pub", tmp.path()).unwrap();
        assert_eq!(r.len(), 1);
        let err = parse_recipient_spec("file:missing.pub", tmp.path()).unwrap_err();
        assert!(err.to_string().contains("missing.pub"), "{err}");
    }

    #[test]
    fn identity_files_readable_by_others_are_refused_unless_insecure() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("id.txt");
        let (text, _) = crate::archive::crypt::generate_identity("now");
        std::fs::write(&path, crate::archive::crypt::expose(&text)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut args = IdentityArgs {
            identities: vec![path.clone()],
            ..IdentityArgs::default()
        };
        let err = load_keys(&args).unwrap_err();
        assert!(err.downcast_ref::<InsecureIdentity>().is_some(), "{err:#}");
        assert!(err.to_string().contains("mode 0644"), "{err}");
        args.insecure_identity = true;
        assert_eq!(load_keys(&args).unwrap().identities.len(), 1);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        args.insecure_identity = false;
        assert_eq!(load_keys(&args).unwrap().identities.len(), 1);
    }
}
