//! Encryption of backup members with age (<https://age-encryption.org/v1>): the only module that imports the
//! `age` crate.
//!
//! An encrypted backup keeps the outer layout of format 1: every member except `manifest.json` is an age
//! file (`compose/<name>.age`, `volumes/<key>.tar.zst.age`, `dumps/<service>.<ext>.zst.age`) holding the
//! bytes a plain backup's member would hold, so `age -d | zstd -d | tar x` reads it back. Each member is
//! its own age file, encrypted to the same recipients: a restore decrypts only what it reads, and streams.
//!
//! - Recipients ([`Recipient`]) are age X25519 public keys (`age1…`) and ssh public keys (`ssh-ed25519 …`,
//!   `ssh-rsa …`). The machine that writes backups needs only these.
//! - Passphrase mode: scrypt is slow on purpose (≈1 s per use), so it is not run per member. A backup in
//!   passphrase mode is encrypted to a fresh X25519 identity made for that file, and that identity is stored
//!   in the manifest, itself encrypted with the passphrase (scrypt). One scrypt per backup written, one per
//!   backup opened; the `age` CLI reads such a passphrase-encrypted identity file as it is (`age -d -i`).
//! - Identities ([`Identity`]) are age identity files (`AGE-SECRET-KEY-1…` lines, what `age-keygen` and
//!   `docker persist key init` write) and unencrypted OpenSSH private keys (ed25519, RSA).
//! - Fingerprints name recipients in the readable manifest without the key itself being needed: for an ssh
//!   key, OpenSSH's own (`SHA256:…` of the key blob, what `ssh-keygen -l` prints); for an age key, the same
//!   form over the `age1…` string.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use age::secrecy::{ExposeSecret as _, SecretString};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Suffix of every member of an encrypted backup (but the manifest).
pub const AGE_SUFFIX: &str = ".age";
/// The `scheme` of the manifest's `encryption` object.
pub const SCHEME: &str = "age";
/// Largest identity, recipients or passphrase file read.
const MAX_KEY_FILE: u64 = 1 << 20;

/// What can go wrong with keys, recipients and passphrases; each names the file or the key.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("`{recipient}` is not a recipient docker persist can encrypt to: {reason}")]
    InvalidRecipient { recipient: String, reason: String },

    #[error("failed to read the recipients file `{}`", path.display())]
    ReadRecipients {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("the recipients file `{}` names no recipient", path.display())]
    NoRecipientsInFile { path: PathBuf },

    #[error("failed to read the identity file `{}`", path.display())]
    ReadIdentity {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("`{}` is not an identity docker persist can use: {reason}", path.display())]
    InvalidIdentity { path: PathBuf, reason: String },

    #[error("failed to read the passphrase file `{}`", path.display())]
    ReadPassphrase {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("the passphrase file `{}` is empty", path.display())]
    EmptyPassphrase { path: PathBuf },

    #[error("encryption failed: {0}")]
    Encrypt(String),
}

/// A public key a backup is encrypted to.
#[derive(Clone)]
pub enum Recipient {
    X25519(age::x25519::Recipient),
    Ssh(age::ssh::Recipient),
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({})", self.info().fingerprint)
    }
}

impl Recipient {
    /// Parses `age1…`, `ssh-ed25519 AAAA… [comment]` or `ssh-rsa AAAA… [comment]`.
    pub fn parse(s: &str) -> Result<Recipient, CryptError> {
        let s = s.trim();
        let invalid = |reason: &str| CryptError::InvalidRecipient {
            recipient: abbreviate(s),
            reason: reason.to_string(),
        };
        if s.starts_with("age1") {
            return s
                .parse::<age::x25519::Recipient>()
                .map(Recipient::X25519)
                .map_err(|e| invalid(&format!("not a valid age public key ({e})")));
        }
        if s.starts_with("ssh-") {
            // Keep `type base64`: the comment is not part of the key.
            let key: String = s.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            return key
                .parse::<age::ssh::Recipient>()
                .map(Recipient::Ssh)
                .map_err(|e| {
                    invalid(&match e {
                        age::ssh::ParseRecipientKeyError::RsaModulusTooSmall => {
                            "an ssh-rsa key shorter than 2048 bits is too weak".to_string()
                        }
                        age::ssh::ParseRecipientKeyError::RsaModulusTooLarge => {
                            "the ssh-rsa key is larger than age supports".to_string()
                        }
                        age::ssh::ParseRecipientKeyError::Unsupported(t) => format!(
                            "`{t}` keys are not supported (use ssh-ed25519, ssh-rsa or an age key)"
                        ),
                        _ => "not a valid ssh public key".to_string(),
                    })
                });
        }
        if s.starts_with("AGE-SECRET-KEY-") {
            return Err(CryptError::InvalidRecipient {
                recipient: "AGE-SECRET-KEY-…".to_string(),
                reason: "this is a private key: give its public key (`age1…`, printed by `docker persist key init` and `age-keygen -y`), and keep the private key off the backup host".to_string(),
            });
        }
        Err(invalid(
            "expected an age public key (`age1…`), an ssh public key (`ssh-ed25519 …`, `ssh-rsa …`) or `file:PATH`",
        ))
    }

    /// Reads a recipients file: one recipient per line, `#` comments and blank lines ignored (age's `-R`
    /// format; an `authorized_keys` or `.pub` file is one).
    pub fn read_file(path: &Path) -> Result<Vec<Recipient>, CryptError> {
        let text = read_limited(path).map_err(|source| CryptError::ReadRecipients {
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8(text).map_err(|_| CryptError::ReadRecipients {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8"),
        })?;
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.push(
                Recipient::parse(line).map_err(|e| CryptError::InvalidRecipient {
                    recipient: format!("{}:{}", path.display(), n + 1),
                    reason: match e {
                        CryptError::InvalidRecipient { reason, .. } => reason,
                        other => other.to_string(),
                    },
                })?,
            );
        }
        if out.is_empty() {
            return Err(CryptError::NoRecipientsInFile {
                path: path.to_path_buf(),
            });
        }
        Ok(out)
    }

    /// Its kind and fingerprint, as the readable manifest records them.
    pub fn info(&self) -> RecipientInfo {
        match self {
            Recipient::X25519(r) => RecipientInfo {
                kind: "x25519".to_string(),
                fingerprint: fingerprint(r.to_string().as_bytes()),
            },
            Recipient::Ssh(r) => {
                let text = r.to_string();
                let mut parts = text.split_whitespace();
                let kind = parts.next().unwrap_or("ssh").to_string();
                let blob = parts
                    .next()
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .unwrap_or_default();
                RecipientInfo {
                    kind,
                    fingerprint: fingerprint(&blob),
                }
            }
        }
    }

    fn as_age(&self) -> &dyn age::Recipient {
        match self {
            Recipient::X25519(r) => r,
            Recipient::Ssh(r) => r,
        }
    }
}

/// `SHA256:<base64 without padding>`, OpenSSH's fingerprint form.
fn fingerprint(bytes: &[u8]) -> String {
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(bytes))
    )
}

fn abbreviate(s: &str) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(40).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

fn read_limited(path: &Path) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_KEY_FILE)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// A recipient as the readable manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientInfo {
    /// `x25519`, `ssh-ed25519`, `ssh-rsa`, or `passphrase` (the file's own key, see the module docs).
    pub kind: String,
    /// `SHA256:…` (see the module docs).
    pub fingerprint: String,
}

impl fmt::Display for RecipientInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.fingerprint, self.kind)
    }
}

/// The manifest's readable `encryption` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionInfo {
    /// Always `age`.
    pub scheme: String,
    /// Who can read the file.
    pub recipients: Vec<RecipientInfo>,
    /// Passphrase mode: the file's own X25519 identity, encrypted with the passphrase (armored age).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_identity: Option<String>,
    /// The manifest fields that can hold secrets, as JSON, encrypted to the recipients (armored age).
    pub sealed: String,
}

/// A passphrase, read from a file (its first line).
#[derive(Clone)]
pub struct Passphrase(SecretString);

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(…)")
    }
}

impl Passphrase {
    /// The first line of `path`, without its line ending.
    pub fn from_file(path: &Path) -> Result<Passphrase, CryptError> {
        let bytes = read_limited(path).map_err(|source| CryptError::ReadPassphrase {
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| CryptError::ReadPassphrase {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8"),
        })?;
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err(CryptError::EmptyPassphrase {
                path: path.to_path_buf(),
            });
        }
        Ok(Passphrase(SecretString::from(line.to_string())))
    }

    #[cfg(test)]
    pub(crate) fn from_str_for_tests(s: &str) -> Passphrase {
        Passphrase(SecretString::from(s.to_string()))
    }
}

/// What a backup is encrypted to; one per backup file (passphrase mode makes a key per file).
pub struct Sealer {
    recipients: Vec<Recipient>,
    info: Vec<RecipientInfo>,
    passphrase_identity: Option<String>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("recipients", &self.info)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// Encrypts to `recipients` and, with a passphrase, to a key of this file's own that the passphrase
    /// unlocks. At least one of the two is needed.
    pub fn new(
        recipients: Vec<Recipient>,
        passphrase: Option<&Passphrase>,
    ) -> Result<Sealer, CryptError> {
        let mut recipients = recipients;
        // The same key twice (a project's and a flag's) is one recipient.
        let mut seen = std::collections::BTreeSet::new();
        recipients.retain(|r| seen.insert(r.info().fingerprint));
        let mut info: Vec<RecipientInfo> = recipients.iter().map(Recipient::info).collect();
        let mut passphrase_identity = None;
        if let Some(passphrase) = passphrase {
            let own = age::x25519::Identity::generate();
            let public = own.to_public();
            info.push(RecipientInfo {
                kind: "passphrase".to_string(),
                fingerprint: Recipient::X25519(public.clone()).info().fingerprint,
            });
            recipients.push(Recipient::X25519(public));
            let scrypt = age::scrypt::Recipient::new(passphrase.0.clone());
            let encryptor = age::Encryptor::with_recipients(std::iter::once(&scrypt as _))
                .map_err(|e| CryptError::Encrypt(e.to_string()))?;
            let mut identity_file = format!(
                "# docker persist: the key of one passphrase-encrypted backup\n{}\n",
                own.to_string().expose_secret()
            );
            let armored = armor(encryptor, identity_file.as_bytes());
            zeroize_string(&mut identity_file);
            passphrase_identity = Some(armored.map_err(|e| CryptError::Encrypt(e.to_string()))?);
        }
        if recipients.is_empty() {
            return Err(CryptError::Encrypt(
                "no recipient and no passphrase".to_string(),
            ));
        }
        Ok(Sealer {
            recipients,
            info,
            passphrase_identity,
        })
    }

    /// The recipients as the manifest names them.
    pub fn recipients(&self) -> &[RecipientInfo] {
        &self.info
    }

    fn encryptor(&self) -> io::Result<age::Encryptor> {
        age::Encryptor::with_recipients(self.recipients.iter().map(Recipient::as_age))
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// An age stream around `out`: call [`EncryptingWriter::finish`] at the end.
    pub(crate) fn wrap<W: Write>(&self, out: W) -> io::Result<EncryptingWriter<W>> {
        self.encryptor()?.wrap_output(out).map(EncryptingWriter)
    }

    /// `bytes` as one binary age file.
    pub(crate) fn encrypt(&self, bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut w = self.wrap(Vec::with_capacity(bytes.len() + 512))?;
        w.write_all(bytes)?;
        w.finish()
    }

    /// The manifest's `encryption` object, with `sealed` (the secret fields, JSON) encrypted.
    pub(crate) fn info_for(&self, sealed_json: &[u8]) -> io::Result<EncryptionInfo> {
        Ok(EncryptionInfo {
            scheme: SCHEME.to_string(),
            recipients: self.info.clone(),
            passphrase_identity: self.passphrase_identity.clone(),
            sealed: armor(self.encryptor()?, sealed_json)?,
        })
    }
}

fn zeroize_string(s: &mut String) {
    // Overwrite before freeing; best effort, the string never leaves this process.
    let len = s.len();
    s.clear();
    s.extend(std::iter::repeat_n('\0', len));
    s.clear();
}

fn armor(encryptor: age::Encryptor, bytes: &[u8]) -> io::Result<String> {
    let mut out = Vec::new();
    let armored = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)?;
    let mut w = encryptor.wrap_output(armored)?;
    w.write_all(bytes)?;
    w.finish()?.finish()?;
    String::from_utf8(out).map_err(|_| io::Error::other("armor is not UTF-8"))
}

/// A private key that can decrypt backups, with where it came from.
#[derive(Clone)]
pub struct Identity {
    key: IdentityKey,
    /// The file it was read from (for messages).
    pub source: String,
}

#[derive(Clone)]
enum IdentityKey {
    X25519(age::x25519::Identity),
    Ssh(age::ssh::Identity),
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.source)
    }
}

impl Identity {
    /// Reads the identities of an age identity file (`AGE-SECRET-KEY-1…` lines, `#` comments) or an
    /// unencrypted OpenSSH private key (ed25519 or RSA).
    pub fn read_file(path: &Path) -> Result<Vec<Identity>, CryptError> {
        let source = path.display().to_string();
        let invalid = |reason: &str| CryptError::InvalidIdentity {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let bytes = read_limited(path).map_err(|source| CryptError::ReadIdentity {
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| invalid("it is not a text file"))?;
        if text.contains("-----BEGIN AGE ENCRYPTED FILE-----")
            || text.starts_with("age-encryption.org/")
        {
            return Err(invalid(
                "it is an encrypted age file; decrypt the identity first (`age -d -o key.txt FILE`) and pass the result",
            ));
        }
        if text.contains("PRIVATE KEY-----") {
            let identity =
                age::ssh::Identity::from_buffer(text.as_bytes(), Some(source.clone()))
                    .map_err(|e| invalid(&format!("not a readable ssh private key ({e})")))?;
            return match identity {
                age::ssh::Identity::Unencrypted(_) => Ok(vec![Identity {
                    key: IdentityKey::Ssh(identity),
                    source,
                }]),
                age::ssh::Identity::Encrypted(_) => Err(invalid(
                    "the ssh key is protected by a passphrase, which docker persist cannot ask for; use a copy without one (`cp KEY COPY && ssh-keygen -p -N '' -f COPY`, and keep COPY as safe as KEY), or an age identity",
                )),
                age::ssh::Identity::Unsupported(_) => Err(invalid(
                    "this kind of ssh key is not supported (use ed25519 or RSA)",
                )),
            };
        }
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = line.parse::<age::x25519::Identity>().map_err(|_| {
                invalid(&format!(
                    "line {} is neither a comment nor an age identity (`AGE-SECRET-KEY-1…`)",
                    n + 1
                ))
            })?;
            out.push(Identity {
                key: IdentityKey::X25519(key),
                source: source.clone(),
            });
        }
        if out.is_empty() {
            return Err(invalid("it holds no identity"));
        }
        Ok(out)
    }

    /// The fingerprint of its public key, as a manifest names recipients; `None` when it cannot be
    /// derived.
    pub fn fingerprint(&self) -> Option<String> {
        match &self.key {
            IdentityKey::X25519(k) => Some(Recipient::X25519(k.to_public()).info().fingerprint),
            IdentityKey::Ssh(k) => age::ssh::Recipient::try_from(k.clone())
                .ok()
                .map(|r| Recipient::Ssh(r).info().fingerprint),
        }
    }

    fn as_age(&self) -> &dyn age::Identity {
        match &self.key {
            IdentityKey::X25519(k) => k,
            IdentityKey::Ssh(k) => k,
        }
    }
}

/// A new X25519 identity: its identity file text (age-keygen's format) and its public key.
pub fn generate_identity(created: &str) -> (SecretString, String) {
    let key = age::x25519::Identity::generate();
    let public = key.to_public().to_string();
    let text = format!(
        "# created: {created}\n# public key: {public}\n{}\n",
        key.to_string().expose_secret()
    );
    (SecretString::from(text), public)
}

/// Exposes a secret string's text to write it to a file.
pub fn expose(s: &SecretString) -> &str {
    s.expose_secret()
}

/// What a restore, a verify or a listing was given to read encrypted backups with.
#[derive(Debug, Default)]
pub struct Keys {
    pub identities: Vec<Identity>,
    pub passphrase: Option<Passphrase>,
}

impl Keys {
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty() && self.passphrase.is_none()
    }
}

/// Why the keys given do not open a backup.
#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    #[error("it is encrypted{}, and no identity was given", recipients_text(.recipients))]
    NoKeys { recipients: Vec<RecipientInfo> },

    #[error(
        "none of the identities given can decrypt it ({}); it is encrypted{}",
        .given.join(", "),
        recipients_text(.recipients)
    )]
    NoMatchingIdentity {
        given: Vec<String>,
        recipients: Vec<RecipientInfo>,
    },

    #[error("the passphrase does not match")]
    WrongPassphrase,

    #[error("its encrypted manifest part is damaged: {0}")]
    Damaged(String),
}

fn recipients_text(r: &[RecipientInfo]) -> String {
    if r.is_empty() {
        String::new()
    } else {
        format!(
            " to {}",
            r.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// The identities that opened one backup: those given, and in passphrase mode the file's own.
pub struct Unlocked {
    identities: Vec<Identity>,
}

impl fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unlocked")
            .field("identities", &self.identities.len())
            .finish()
    }
}

impl Unlocked {
    /// Opens a backup's encryption: the passphrase identity first (when the file has one and a passphrase
    /// was given), then the sealed manifest part, which says whether the identities fit. Returns the
    /// sealed JSON.
    pub fn open(info: &EncryptionInfo, keys: &Keys) -> Result<(Unlocked, Vec<u8>), UnlockError> {
        let mut identities = keys.identities.clone();
        let mut passphrase_failed = false;
        if let (Some(armored), Some(passphrase)) = (&info.passphrase_identity, &keys.passphrase) {
            let mut scrypt = age::scrypt::Identity::new(passphrase.0.clone());
            // The writer's machine chose the work factor for ≈1 s; allow a slower reader up to 64×.
            scrypt.set_max_work_factor(24);
            match decrypt_armored(armored, &[&scrypt as &dyn age::Identity]) {
                Ok(text) => {
                    let text = String::from_utf8(text)
                        .map_err(|_| UnlockError::Damaged("the passphrase identity".into()))?;
                    for line in text.lines().filter(|l| l.starts_with("AGE-SECRET-KEY-")) {
                        let key = line
                            .parse::<age::x25519::Identity>()
                            .map_err(|_| UnlockError::Damaged("the passphrase identity".into()))?;
                        identities.push(Identity {
                            key: IdentityKey::X25519(key),
                            source: "the passphrase".to_string(),
                        });
                    }
                }
                Err(age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys) => {
                    passphrase_failed = true;
                }
                Err(e) => return Err(UnlockError::Damaged(format!("passphrase identity: {e}"))),
            }
        }
        if identities.is_empty() {
            if passphrase_failed {
                return Err(UnlockError::WrongPassphrase);
            }
            return Err(UnlockError::NoKeys {
                recipients: info.recipients.clone(),
            });
        }
        let refs: Vec<&dyn age::Identity> = identities.iter().map(Identity::as_age).collect();
        match decrypt_armored(&info.sealed, &refs) {
            Ok(json) => Ok((Unlocked { identities }, json)),
            Err(age::DecryptError::NoMatchingKeys) if passphrase_failed => {
                Err(UnlockError::WrongPassphrase)
            }
            Err(age::DecryptError::NoMatchingKeys) => Err(UnlockError::NoMatchingIdentity {
                given: keys
                    .identities
                    .iter()
                    .map(|i| match i.fingerprint() {
                        Some(f) => format!("{f} from `{}`", i.source),
                        None => format!("`{}`", i.source),
                    })
                    .chain(keys.passphrase.as_ref().map(|_| "a passphrase".to_string()))
                    .collect(),
                recipients: info.recipients.clone(),
            }),
            Err(e) => Err(UnlockError::Damaged(e.to_string())),
        }
    }

    /// A decrypting reader over one member's stored bytes; a failure to open it, described.
    pub(crate) fn decrypt<R: Read>(&self, stored: R) -> Result<DecryptingReader<R>, String> {
        let decryptor = age::Decryptor::new(stored).map_err(|e| describe(&e))?;
        decryptor
            .decrypt(self.identities.iter().map(Identity::as_age))
            .map(|inner| DecryptingReader {
                inner,
                failed: false,
            })
            .map_err(|e| describe(&e))
    }
}

/// Encrypts what is written into one age file; [`EncryptingWriter::finish`] writes its last chunk.
pub(crate) struct EncryptingWriter<W: Write>(age::stream::StreamWriter<W>);

impl<W: Write> EncryptingWriter<W> {
    pub(crate) fn finish(self) -> io::Result<W> {
        self.0.finish()
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The plaintext of one age file. A changed or cut-short file fails a read (`InvalidData`), never
/// passes silently: every 64 KiB chunk is authenticated, and so is the end.
pub(crate) struct DecryptingReader<R: Read> {
    inner: age::stream::StreamReader<R>,
    failed: bool,
}

impl<R: Read> DecryptingReader<R> {
    /// Whether a read failed (the data did not decrypt, or the stored bytes could not be read).
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                return e;
            }
            self.failed = true;
            if e.kind() == io::ErrorKind::InvalidData {
                io::Error::new(
                    e.kind(),
                    format!("the encrypted data was changed or cut short ({e})"),
                )
            } else {
                e
            }
        })
    }
}

fn decrypt_armored(
    armored: &str,
    identities: &[&dyn age::Identity],
) -> Result<Vec<u8>, age::DecryptError> {
    let reader = age::armor::ArmoredReader::new(armored.as_bytes());
    let decryptor = age::Decryptor::new(reader)?;
    let mut r = decryptor.decrypt(identities.iter().copied())?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(age::DecryptError::Io)?;
    Ok(out)
}

/// Parses the header of an age file without decrypting it: what a check without the identity can do.
pub(crate) fn check_header<R: Read>(stored: R) -> Result<(), String> {
    age::Decryptor::new(stored)
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// How an age failure reads in a problem report.
fn describe(e: &age::DecryptError) -> String {
    match e {
        age::DecryptError::NoMatchingKeys => {
            "none of the identities decrypts it (it is encrypted to other keys)".to_string()
        }
        age::DecryptError::InvalidHeader | age::DecryptError::InvalidMac => {
            "its age header is damaged or was changed".to_string()
        }
        age::DecryptError::DecryptionFailed => {
            "it does not decrypt: the encrypted data was changed or cut short".to_string()
        }
        age::DecryptError::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            "it is cut short (its age header is incomplete)".to_string()
        }
        other => format!("it does not decrypt: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_parse_and_refuse_private_keys_and_junk() {
        let (_, public) = generate_identity("now");
        let r = Recipient::parse(&public).unwrap();
        assert_eq!(r.info().kind, "x25519");
        assert!(r.info().fingerprint.starts_with("SHA256:"));
        let err = Recipient::parse("AGE-SECRET-KEY-1QQQ")
            .unwrap_err()
            .to_string();
        assert!(err.contains("private key"), "{err}");
        let err = Recipient::parse("hello").unwrap_err().to_string();
        assert!(err.contains("expected an age public key"), "{err}");
        let err = Recipient::parse("age1notakey").unwrap_err().to_string();
        assert!(err.contains("not a valid age public key"), "{err}");
    }

    #[test]
    fn ssh_fingerprint_is_the_one_ssh_keygen_prints() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("id");
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let info = Recipient::parse(&public).unwrap().info();
        assert_eq!(info.kind, "ssh-ed25519");
        let listed = std::process::Command::new("ssh-keygen")
            .arg("-lf")
            .arg(key.with_extension("pub"))
            .output()
            .unwrap();
        let listed = String::from_utf8(listed.stdout).unwrap();
        assert!(
            listed.contains(&info.fingerprint),
            "{listed} / {}",
            info.fingerprint
        );
        let identity = &Identity::read_file(&key).unwrap()[0];
        assert_eq!(
            identity.fingerprint().as_deref(),
            Some(info.fingerprint.as_str())
        );
    }

    #[test]
    fn passphrase_mode_round_trips_and_a_wrong_passphrase_is_named() {
        let sealer = Sealer::new(
            vec![],
            Some(&Passphrase::from_str_for_tests("correct horse")),
        )
        .unwrap();
        let info = sealer.info_for(b"{\"secret\": 1}").unwrap();
        assert_eq!(info.recipients[0].kind, "passphrase");
        let keys = Keys {
            identities: vec![],
            passphrase: Some(Passphrase::from_str_for_tests("correct horse")),
        };
        let (unlocked, json) = Unlocked::open(&info, &keys).unwrap();
        assert_eq!(json, b"{\"secret\": 1}");
        let member = sealer.encrypt(b"member bytes").unwrap();
        let mut back = Vec::new();
        unlocked
            .decrypt(&member[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, b"member bytes");
        let wrong = Keys {
            identities: vec![],
            passphrase: Some(Passphrase::from_str_for_tests("battery staple")),
        };
        assert!(matches!(
            Unlocked::open(&info, &wrong),
            Err(UnlockError::WrongPassphrase)
        ));
        assert!(matches!(
            Unlocked::open(&info, &Keys::default()),
            Err(UnlockError::NoKeys { .. })
        ));
    }
}
