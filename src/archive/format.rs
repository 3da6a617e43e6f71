//! What a format 1 backup file holds and how its parts are named: the manifest (`manifest.json`), the file
//! name `<project>-<YYYYMMDDTHHMMSSZ>[-<tag>].tar`, and the member name of each volume.
//!
//! The manifest is read leniently: fields a later version adds are ignored, so an older docker-persist still
//! lists and restores a newer backup of the same format. A different `format` number is refused with a clear
//! error instead of being guessed at. Tier and kind reuse the crate's own enums; a new tier or kind is a format
//! change.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::ArchiveError;
use super::crypt::{AGE_SUFFIX, EncryptionInfo};
use super::digest::ContentDigest;
use crate::compose::Tier;
use crate::compose::classify::DataKind;

/// The format number this module writes and reads.
pub const FORMAT: u32 = 1;
/// The manifest's member name; the last member of every backup.
pub const MANIFEST_MEMBER: &str = "manifest.json";
/// Directory of the Compose file members.
pub const COMPOSE_DIR: &str = "compose/";
/// Directory of the volume members.
pub const VOLUMES_DIR: &str = "volumes/";
/// Directory of logical dumps (`dumps/<service>.<ext>.zst`).
pub const DUMPS_DIR: &str = "dumps/";
/// Suffix of a dump member.
pub const DUMP_SUFFIX: &str = ".zst";
/// Suffix of a volume member.
pub const VOLUME_SUFFIX: &str = ".tar.zst";
/// Extension of a complete backup file.
pub const BACKUP_EXTENSION: &str = ".tar";
/// Suffix of a backup file being written.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Longest accepted tag.
pub const MAX_TAG_LEN: usize = 64;

/// The manifest: what the backup holds and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: u32,
    pub tool: Tool,
    /// When the backup was taken, UTC, whole seconds (RFC 3339 in JSON); the same instant as in the file name.
    pub created: Timestamp,
    /// The Compose project name.
    pub project: String,
    /// The `--tag` label, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub engine: EngineInfo,
    /// File names of the `compose/<name>` members, in the order the project loaded them.
    #[serde(default)]
    pub compose_files: Vec<String>,
    #[serde(default)]
    pub volumes: Vec<VolumeRecord>,
    /// Volumes backed up as logical dumps (`consistency: dump`); absent when none. Kept apart from
    /// `volumes`, whose members are always tars of a file tree, so that a reader that predates dumps
    /// never takes a dump for a tree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dumps: Vec<DumpRecord>,
    /// The project-wide hooks (top-level `x-persist: {hooks: …}`) run around the whole backup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookRecord>,
    /// Present when the members are encrypted (see [`super::crypt`] and [`split_sealed`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionInfo>,
}

impl Manifest {
    /// The record of volume `key`.
    pub fn volume(&self, key: &str) -> Option<&VolumeRecord> {
        self.volumes.iter().find(|v| v.key == key)
    }

    /// The dump record of volume `key`.
    pub fn dump(&self, key: &str) -> Option<&DumpRecord> {
        self.dumps.iter().find(|d| d.key == key)
    }

    /// Every volume key, trees first, then dumps.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.volumes
            .iter()
            .map(|v| v.key.as_str())
            .chain(self.dumps.iter().map(|d| d.key.as_str()))
    }
}

/// One hook that ran: where, what, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRecord {
    /// `pre` or `post`.
    pub phase: String,
    pub service: String,
    /// The command as written (a list joined with spaces).
    pub command: String,
    /// The exit code; absent when it timed out or could not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub timed_out: bool,
    #[serde(default)]
    pub duration_ms: u64,
    /// `fail` or `continue`.
    #[serde(default)]
    pub on_error: String,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The end of its standard output and error (at most 4 KiB each).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr: String,
}

/// A volume backed up as a logical dump: the dump tool's output, compressed, in `dumps/<service>.<ext>.zst`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpRecord {
    /// The volume key, as in [`VolumeRecord::key`].
    pub key: String,
    /// The engine's volume name (or host path).
    pub name: String,
    pub kind: DataKind,
    pub tier: Tier,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub users: Vec<VolumeUser>,
    /// Always `dump`.
    pub consistency: String,
    /// `postgres`, `mysql`, `mariadb`, `redis` or `mongodb`.
    pub recipe: String,
    /// The service whose running container made the dump.
    pub service: String,
    /// That container's image.
    #[serde(default)]
    pub image: String,
    /// `dumps/<service>.<ext>.zst`.
    pub member: String,
    /// Bytes of the dump as the tool wrote it.
    pub bytes: u64,
    /// Bytes of the member as stored (compressed).
    pub stored_bytes: u64,
    /// SHA-256 of the member as stored, lowercase hex.
    pub sha256: String,
    /// SHA-256 of the dump as the tool wrote it (the decompressed member), lowercase hex; empty in an
    /// encrypted backup read without its identity (it is sealed).
    #[serde(default)]
    pub content_sha256: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookRecord>,
}

/// The member name of a dump made in `service`: `dumps/<service>.<ext>.zst`, the service name encoded like a
/// volume key.
pub fn dump_member(service: &str, ext: &str) -> String {
    let mut out = String::from(DUMPS_DIR);
    for b in service.bytes() {
        if is_safe_name_byte(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push('.');
    out.push_str(ext);
    out.push_str(DUMP_SUFFIX);
    out
}

/// The program that wrote the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

impl Tool {
    /// This program.
    pub fn current() -> Self {
        Tool {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

impl Default for Tool {
    fn default() -> Self {
        Tool::current()
    }
}

/// The engine the volumes were read from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineInfo {
    pub version: String,
    pub os: String,
    pub arch: String,
}

/// A service that mounts the volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeUser {
    pub service: String,
    /// The mount path inside the service's containers.
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

/// One volume in the backup: where it came from, where its member is, and what to check it against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// The Compose key (`db`), or for an anonymous volume `<service>:<target>`.
    pub key: String,
    /// The engine's volume name (`app_db`).
    pub name: String,
    pub kind: DataKind,
    pub tier: Tier,
    /// Why it has that tier.
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub users: Vec<VolumeUser>,
    /// How the data was kept consistent while it was read: `stop` (its running containers were stopped)
    /// or `live` (read while they ran).
    #[serde(default)]
    pub consistency: String,
    /// The services (or, outside Compose, the containers) stopped while it was read; absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped: Vec<String>,
    /// When reading it began (its services already stopped, if any were), UTC, full precision; absent in
    /// files written before this field. `created` is whole seconds, so only this tells whether a container
    /// that stopped in the same second as the backup began stopped before the read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<Timestamp>,
    /// The hooks run around reading it (`x-persist: {hooks: …}`); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookRecord>,
    /// The member holding the volume's tar, `volumes/<encoded key>.tar.zst`.
    pub member: String,
    /// The leading path component of every entry of the inner tar (`data` when the engine archived `/data`),
    /// absent when entries are relative to the volume root (`x`, `./x`). See [`super::digest`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tar_prefix: Option<String>,
    /// Entries of the tree, the root directory included.
    pub entries: u64,
    /// Bytes of regular-file content, each hardlinked file once.
    #[serde(default)]
    pub file_bytes: u64,
    /// Bytes of symlink targets; with `file_bytes`, what the engine's disk usage reports for the volume.
    #[serde(default)]
    pub symlink_bytes: u64,
    /// Bytes of the inner tar stream.
    pub uncompressed_bytes: u64,
    /// Bytes of the member as stored (compressed).
    pub stored_bytes: u64,
    /// SHA-256 of the member as stored, lowercase hex.
    pub sha256: String,
    /// The tree's content digest; `None` only in an encrypted backup read without its identity (the digest
    /// is one of the sealed fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_digest: Option<ContentDigest>,
}

impl VolumeRecord {
    /// The version of its content digest (`tree-v2` when the digest is sealed and not read).
    pub fn digest_version(&self) -> super::digest::DigestVersion {
        self.content_digest
            .map_or(super::digest::DigestVersion::V2, |d| d.version())
    }

    /// Its content digest as text; `sealed` when it is sealed and not read.
    pub fn digest_text(&self) -> String {
        self.content_digest
            .map_or_else(|| "sealed".to_string(), |d| d.to_string())
    }
}

/// The parts of a backup file name: `<project>-<YYYYMMDDTHHMMSSZ>[-<tag>].tar`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupName {
    project: String,
    created: Timestamp,
    tag: Option<String>,
}

impl BackupName {
    /// Checks the project name and tag, and truncates `created` to whole seconds (the file name's precision,
    /// also used in the manifest so that both say the same).
    pub fn new(
        project: &str,
        created: Timestamp,
        tag: Option<&str>,
    ) -> Result<BackupName, ArchiveError> {
        validate_project(project)?;
        if let Some(tag) = tag {
            validate_tag(tag)?;
        }
        let created =
            Timestamp::from_second(created.as_second()).map_err(|_| ArchiveError::InvalidName {
                name: project.to_string(),
                reason: "the creation time is out of range",
            })?;
        Ok(BackupName {
            project: project.to_string(),
            created,
            tag: tag.map(str::to_string),
        })
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn created(&self) -> Timestamp {
        self.created
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// `app-20261122T101500Z-pre-restore.tar`.
    pub fn file_name(&self) -> String {
        let mut name = format!("{}-{}", self.project, format_stamp(self.created));
        if let Some(tag) = &self.tag {
            name.push('-');
            name.push_str(tag);
        }
        name.push_str(BACKUP_EXTENSION);
        name
    }

    /// Parses a file name of project `project`; unambiguous whatever the project and tag contain.
    /// `None` for anything else, `.partial` files included.
    pub fn parse_for_project(file_name: &str, project: &str) -> Option<BackupName> {
        let rest = file_name.strip_prefix(project)?.strip_prefix('-')?;
        let (created, tag) = parse_stamp_and_tag(rest)?;
        BackupName::new(project, created, tag).ok()
    }

    /// Parses any backup file name. A project name may contain `-`, so the first `-<YYYYMMDDTHHMMSSZ>` that is
    /// followed by `.tar` or `-<tag>.tar` ends the project name; use [`BackupName::parse_for_project`] when the
    /// project is known.
    pub fn parse(file_name: &str) -> Option<BackupName> {
        let bytes = file_name.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            if *b != b'-' || i == 0 {
                continue;
            }
            let project = &file_name[..i];
            if let Some((created, tag)) = parse_stamp_and_tag(&file_name[i + 1..])
                && let Ok(name) = BackupName::new(project, created, tag)
            {
                return Some(name);
            }
        }
        None
    }
}

impl fmt::Display for BackupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name())
    }
}

/// `YYYYMMDDTHHMMSSZ` of an instant, in UTC.
pub fn format_stamp(t: Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Parses `YYYYMMDDTHHMMSSZ`.
pub fn parse_stamp(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    if !b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit) {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    );
    rfc3339.parse().ok()
}

/// `<stamp>.tar` or `<stamp>-<tag>.tar`.
fn parse_stamp_and_tag(rest: &str) -> Option<(Timestamp, Option<&str>)> {
    let rest = rest.strip_suffix(BACKUP_EXTENSION)?;
    let stamp = rest.get(..16)?;
    let created = parse_stamp(stamp)?;
    match &rest[16..] {
        "" => Some((created, None)),
        tail => {
            let tag = tail.strip_prefix('-')?;
            validate_tag(tag).ok()?;
            Some((created, Some(tag)))
        }
    }
}

/// A project name usable in a file name: ASCII letters, digits, `_`, `-` and `.`, starting with a letter or digit
/// (Compose's normalized names are a subset).
fn validate_project(project: &str) -> Result<(), ArchiveError> {
    let invalid = |reason| ArchiveError::InvalidName {
        name: project.to_string(),
        reason,
    };
    let first = project
        .bytes()
        .next()
        .ok_or_else(|| invalid("the project name is empty"))?;
    if !first.is_ascii_alphanumeric() {
        return Err(invalid(
            "the project name must start with a letter or a digit",
        ));
    }
    if !project.bytes().all(is_safe_name_byte) {
        return Err(invalid(
            "the project name may hold only ASCII letters, digits, `_`, `-` and `.`",
        ));
    }
    Ok(())
}

/// A tag is 1 to 64 ASCII letters, digits, `_`, `-` and `.`, starting with a letter or a digit: safe in a file
/// name on every system and unambiguous when the name is parsed back.
pub fn validate_tag(tag: &str) -> Result<(), ArchiveError> {
    let invalid = |reason| ArchiveError::InvalidTag {
        tag: tag.to_string(),
        reason,
    };
    let first = tag.bytes().next().ok_or_else(|| invalid("it is empty"))?;
    if tag.len() > MAX_TAG_LEN {
        return Err(invalid("it is longer than 64 characters"));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(invalid("it must start with a letter or a digit"));
    }
    if !tag.bytes().all(is_safe_name_byte) {
        return Err(invalid(
            "it may hold only ASCII letters, digits, `_`, `-` and `.`",
        ));
    }
    Ok(())
}

fn is_safe_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// The member name of volume `key`: `volumes/<encoded key>.tar.zst`.
///
/// Encoding: every byte of the key's UTF-8 form that is an ASCII letter, digit, `_`, `-` or `.` stays as it is;
/// every other byte, `%` included, becomes `%XX` with two uppercase hex digits. So `db` stays `db` and
/// `web:/app/node_modules` becomes `web%3A%2Fapp%2Fnode_modules`. The result has no `/`, is never `.` or `..`
/// once the suffix is added, and decodes back to exactly one key ([`key_for_member`] refuses any other
/// spelling), so two keys never share a member.
pub fn member_for_key(key: &str) -> String {
    let mut out = String::with_capacity(VOLUMES_DIR.len() + key.len() + VOLUME_SUFFIX.len());
    out.push_str(VOLUMES_DIR);
    for b in key.bytes() {
        if is_safe_name_byte(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(VOLUME_SUFFIX);
    out
}

/// The volume key of a member name, the inverse of [`member_for_key`]; `None` for anything
/// [`member_for_key`] cannot produce.
pub fn key_for_member(member: &str) -> Option<String> {
    let encoded = member
        .strip_prefix(VOLUMES_DIR)?
        .strip_suffix(VOLUME_SUFFIX)?;
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut it = encoded.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hi = hex_digit(it.next()?)?;
            let lo = hex_digit(it.next()?)?;
            let byte = hi << 4 | lo;
            if is_safe_name_byte(byte) {
                return None;
            }
            bytes.push(byte);
        } else if is_safe_name_byte(b) {
            bytes.push(b);
        } else {
            return None;
        }
    }
    if bytes.is_empty() {
        return None;
    }
    String::from_utf8(bytes).ok()
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The fields of a volume record that an encrypted backup keeps in its sealed part: what can hold a secret
/// (driver options carry CIFS/NFS passwords, labels and hook commands and output anything) and the digests
/// of the plain content, which would let someone confirm a guess of it.
pub const SEALED_VOLUME_FIELDS: [&str; 4] = ["driver_opts", "labels", "hooks", "content_digest"];
/// The same for a dump record (the image too: a private registry's name can say more than wanted).
pub const SEALED_DUMP_FIELDS: [&str; 5] =
    ["driver_opts", "labels", "hooks", "content_sha256", "image"];
/// The same for the manifest itself.
pub const SEALED_TOP_FIELDS: [&str; 1] = ["hooks"];

/// Splits a full manifest into its readable JSON (without the sealed fields) and the sealed part:
/// `{"hooks": …, "volumes": {key: {field: …}}, "dumps": {key: {field: …}}}`. [`merge_sealed`] undoes it.
pub fn split_sealed(
    manifest: &Manifest,
) -> serde_json::Result<(serde_json::Value, serde_json::Value)> {
    use serde_json::{Map, Value};
    let mut readable = serde_json::to_value(manifest)?;
    let mut sealed = Map::new();
    let take = |obj: &mut Map<String, Value>, fields: &[&str]| -> Map<String, Value> {
        fields
            .iter()
            .filter_map(|f| obj.remove(*f).map(|v| ((*f).to_string(), v)))
            .collect()
    };
    if let Value::Object(top) = &mut readable {
        let own = take(top, &SEALED_TOP_FIELDS);
        sealed.extend(own);
        for (list, fields) in [
            ("volumes", &SEALED_VOLUME_FIELDS[..]),
            ("dumps", &SEALED_DUMP_FIELDS[..]),
        ] {
            let mut by_key = Map::new();
            if let Some(Value::Array(items)) = top.get_mut(list) {
                for item in items {
                    if let Value::Object(obj) = item {
                        let key = obj
                            .get("key")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                        by_key.insert(key, Value::Object(take(obj, fields)));
                    }
                }
            }
            sealed.insert(list.to_string(), Value::Object(by_key));
        }
    }
    Ok((readable, Value::Object(sealed)))
}

/// Puts the sealed fields back into a readable manifest's JSON (see [`split_sealed`]).
pub fn merge_sealed(readable: &mut serde_json::Value, sealed: serde_json::Value) {
    use serde_json::Value;
    let (Value::Object(top), Value::Object(mut sealed)) = (readable, sealed) else {
        return;
    };
    for list in ["volumes", "dumps"] {
        let Some(Value::Object(by_key)) = sealed.remove(list) else {
            continue;
        };
        if let Some(Value::Array(items)) = top.get_mut(list) {
            for item in items {
                let Value::Object(obj) = item else { continue };
                let key = obj
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if let Some(Value::Object(fields)) = by_key.get(&key) {
                    for (k, v) in fields {
                        obj.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
    for (k, v) in sealed {
        top.insert(k, v);
    }
}

/// The member name of `plain` (a plain backup's member name) in an encrypted backup: `<plain>.age`.
pub fn encrypted_member(plain: &str) -> String {
    format!("{plain}{AGE_SUFFIX}")
}

/// A Compose file's member name, `compose/<file name>`; the name must be one plain path component.
pub fn compose_member(file_name: &str) -> Option<String> {
    let ok = !file_name.is_empty()
        && file_name != "."
        && file_name != ".."
        && !file_name.contains(['/', '\\', '\0']);
    ok.then(|| format!("{COMPOSE_DIR}{file_name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::digest::DigestVersion;

    fn stamp() -> Timestamp {
        "2026-11-22T10:15:00Z".parse().unwrap()
    }

    fn sample_manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            tool: Tool::current(),
            created: stamp(),
            project: "app".into(),
            tag: Some("nightly".into()),
            engine: EngineInfo {
                version: "28.2.2".into(),
                os: "linux".into(),
                arch: "x86_64".into(),
            },
            compose_files: vec!["compose.yaml".into()],
            volumes: vec![VolumeRecord {
                key: "db".into(),
                name: "app_db".into(),
                kind: DataKind::Named,
                tier: Tier::Critical,
                reason: "database data directory".into(),
                driver: "local".into(),
                driver_opts: BTreeMap::new(),
                labels: BTreeMap::from([("com.docker.compose.project".into(), "app".into())]),
                users: vec![VolumeUser {
                    service: "db".into(),
                    target: "/var/lib/postgresql/data".into(),
                    read_only: false,
                }],
                consistency: "stop".into(),
                stopped: vec!["db".into()],
                read_at: Some("2026-11-22T10:15:00.25Z".parse().unwrap()),
                hooks: vec![],
                member: member_for_key("db"),
                tar_prefix: Some("data".into()),
                entries: 3,
                file_bytes: 10,
                symlink_bytes: 0,
                uncompressed_bytes: 3072,
                stored_bytes: 200,
                sha256: "00".repeat(32),
                content_digest: Some(ContentDigest::from_bytes(DigestVersion::V2, [7; 32])),
            }],
            dumps: vec![],
            hooks: vec![],
            encryption: None,
        }
    }

    #[test]
    fn manifest_round_trips_through_json() {
        let m = sample_manifest();
        let json = serde_json::to_string_pretty(&m).unwrap();
        assert!(
            json.contains("\"created\": \"2026-11-22T10:15:00Z\""),
            "{json}"
        );
        assert!(json.contains("\"kind\": \"named\""), "{json}");
        assert!(json.contains("\"tier\": \"critical\""), "{json}");
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn manifest_ignores_unknown_fields() {
        let mut v = serde_json::to_value(sample_manifest()).unwrap();
        v["future_field"] = serde_json::json!({"x": 1});
        v["volumes"][0]["future_volume_field"] = serde_json::json!([1, 2]);
        let back: Manifest = serde_json::from_value(v).unwrap();
        assert_eq!(back, sample_manifest());
    }

    #[test]
    fn stopped_is_left_out_when_empty_and_older_manifests_without_it_parse() {
        let mut m = sample_manifest();
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["volumes"][0]["stopped"], serde_json::json!(["db"]));
        m.volumes[0].stopped.clear();
        m.volumes[0].consistency = "live".into();
        let mut json = serde_json::to_value(&m).unwrap();
        assert!(json["volumes"][0].get("stopped").is_none(), "{json}");
        // A manifest from before either field was written.
        json["volumes"][0]
            .as_object_mut()
            .unwrap()
            .remove("consistency");
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert!(back.volumes[0].stopped.is_empty());
        assert_eq!(back.volumes[0].consistency, "");
    }

    #[test]
    fn dumps_and_hooks_are_additive_and_a_manifest_without_them_parses() {
        let mut m = sample_manifest();
        let json = serde_json::to_value(&m).unwrap();
        assert!(
            json.get("dumps").is_none() && json.get("hooks").is_none(),
            "{json}"
        );
        assert!(json["volumes"][0].get("hooks").is_none(), "{json}");
        m.dumps.push(DumpRecord {
            key: "cache".into(),
            name: "app_cache".into(),
            kind: DataKind::Named,
            tier: Tier::Important,
            reason: String::new(),
            driver: "local".into(),
            driver_opts: BTreeMap::new(),
            labels: BTreeMap::new(),
            users: vec![],
            consistency: "dump".into(),
            recipe: "redis".into(),
            service: "cache".into(),
            image: "redis:7".into(),
            member: dump_member("cache", "rdb"),
            bytes: 10,
            stored_bytes: 20,
            sha256: "11".repeat(32),
            content_sha256: "22".repeat(32),
            hooks: vec![HookRecord {
                phase: "pre".into(),
                service: "cache".into(),
                command: "redis-cli ping".into(),
                exit_code: Some(0),
                timed_out: false,
                duration_ms: 3,
                on_error: "fail".into(),
                error: None,
                stdout: "PONG".into(),
                stderr: String::new(),
            }],
        });
        let json = serde_json::to_string(&m).unwrap();
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.dump("cache").unwrap().member, "dumps/cache.rdb.zst");
        assert_eq!(back.keys().collect::<Vec<_>>(), ["db", "cache"]);
        assert_eq!(dump_member("a b", "sql"), "dumps/a%20b.sql.zst");
    }

    #[test]
    fn file_name_has_project_stamp_and_tag() {
        let n = BackupName::new("app", stamp(), Some("pre-restore")).unwrap();
        assert_eq!(n.file_name(), "app-20261122T101500Z-pre-restore.tar");
        let n = BackupName::new("my-app_2", stamp(), None).unwrap();
        assert_eq!(n.file_name(), "my-app_2-20261122T101500Z.tar");
    }

    #[test]
    fn file_name_truncates_to_seconds() {
        let t: Timestamp = "2026-11-22T10:15:00.987654Z".parse().unwrap();
        let n = BackupName::new("app", t, None).unwrap();
        assert_eq!(n.created(), stamp());
    }

    #[test]
    fn file_name_parses_back() {
        for (project, tag) in [
            ("app", None),
            ("app", Some("pre-restore")),
            ("my-app", Some("v1.2")),
            ("a-20261122T101500Z", Some("x")),
        ] {
            let n = BackupName::new(project, stamp(), tag).unwrap();
            let parsed = BackupName::parse_for_project(&n.file_name(), project).unwrap();
            assert_eq!(parsed, n);
        }
        let n = BackupName::new("my-app", stamp(), Some("nightly-1")).unwrap();
        assert_eq!(BackupName::parse(&n.file_name()).unwrap(), n);
    }

    #[test]
    fn file_name_parse_refuses_other_files() {
        for name in [
            "app-20261122T101500Z.tar.partial",
            "app-20261122T101500Z.tgz",
            "app-2026112T101500Z.tar",
            "app-20261122T101500Z-.tar",
            "app-20261122T101500Z-bad tag.tar",
            "other-20261122T101500Z.tar",
            "app-web-20261122T101500Z.tar",
            ".gitignore",
        ] {
            assert!(
                BackupName::parse_for_project(name, "app").is_none(),
                "{name}"
            );
        }
        assert!(BackupName::parse("20261122T101500Z.tar").is_none());
    }

    #[test]
    fn tag_validation_rejects_unsafe_tags() {
        for tag in ["", "-x", ".x", "a/b", "a b", "ä", &"x".repeat(65), "a:b"] {
            assert!(validate_tag(tag).is_err(), "{tag:?}");
        }
        for tag in ["x", "pre-restore", "v1.2_3", &"x".repeat(64)] {
            assert!(validate_tag(tag).is_ok(), "{tag:?}");
        }
    }

    #[test]
    fn project_validation_rejects_path_characters() {
        for project in ["", "../x", "a/b", "-a", "a b"] {
            assert!(
                BackupName::new(project, stamp(), None).is_err(),
                "{project:?}"
            );
        }
    }

    #[test]
    fn member_encoding_is_reversible() {
        for key in [
            "db",
            "web:/app/node_modules",
            "../etc",
            "%41",
            "ünï cødé",
            ".",
            "..",
            "a%b/c:d",
        ] {
            let member = member_for_key(key);
            let encoded = &member[VOLUMES_DIR.len()..];
            assert!(!encoded.contains('/'), "{member}");
            assert_eq!(key_for_member(&member).as_deref(), Some(key), "{member}");
        }
        assert_eq!(member_for_key("db"), "volumes/db.tar.zst");
        assert_eq!(
            member_for_key("web:/app/node_modules"),
            "volumes/web%3A%2Fapp%2Fnode_modules.tar.zst"
        );
    }

    #[test]
    fn member_decoding_refuses_non_canonical_spellings() {
        for member in [
            "volumes/%64b.tar.zst",
            "volumes/%3a.tar.zst",
            "volumes/a:b.tar.zst",
            "volumes/%4.tar.zst",
            "volumes/.tar.zst",
            "volumes/db.tar",
            "compose/db.tar.zst",
        ] {
            assert!(key_for_member(member).is_none(), "{member}");
        }
    }

    #[test]
    fn compose_member_refuses_paths() {
        assert_eq!(
            compose_member("compose.yaml").as_deref(),
            Some("compose/compose.yaml")
        );
        for name in ["", ".", "..", "a/b", "../compose.yaml"] {
            assert!(compose_member(name).is_none(), "{name:?}");
        }
    }
}
