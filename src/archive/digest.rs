//! The content digest of a tree: one value that a volume restored anywhere, by either data path, can be
//! compared with, whatever order its entries come in.
//!
//! # Versions
//! There are two versions, written before the value: `tree-v2` (what backups get now) and `tree-v1` (what
//! they got before; still read, so that every existing backup verifies and restores). They differ only in
//! the content hash of a regular file: SHA-256 of the content in v1, XXH3-128 in v2; and in their domain
//! strings, so a v1 and a v2 digest of the same tree never compare equal by accident. A digest computed to be
//! compared with a manifest's uses the manifest digest's version ([`DigestOptions::with_version`]).
//!
//! XXH3-128 because hashing every byte of content is what a digest costs, and SHA-256 was a large part of a
//! backup's CPU time on small machines; XXH3 runs at memory speed. The question the digest answers (below)
//! needs a hash whose outputs for different contents collide with negligible probability, not one that
//! resists someone choosing contents: 128 bits give 2^-128 per pair of files, which is what rsync's default
//! checksum (xxh128) relies on for the same question. Entry hashes and the tree hash stay SHA-256: they
//! cover a few dozen bytes per entry, and the sum below needs 256-bit outputs.
//!
//! # What is hashed
//! Each entry of the tree gives one SHA-256 over an unambiguous encoding (lengths before variable fields) of:
//! its normalized path, its type, its mode (`mode & 0o7777`: permission bits and setuid, setgid, sticky), uid,
//! gid, and by type: size and content hash (regular files; v1: the 32 bytes of the SHA-256 with no length
//! before them, v2: the length, 16, then the 16 bytes of the XXH3-128, big-endian as XXH128's canonical
//! form), link target (symlinks: the raw bytes; hardlinks: the normalized path of the entry linked to), major
//! and minor numbers (devices). Entry hashes begin with the domain `"docker-persist entry v1\0"` (v1) or
//! `"docker-persist entry v2\0"` (v2). Not hashed:
//! mtime/atime/ctime, user and group names, xattrs, and the tar encoding itself (ustar/GNU/PAX, long-name
//! records, header order). A GNU sparse entry counts as the regular file it expands to (holes read as zeros),
//! so a sparse file and the same file stored in full have the same digest. PAX global headers are skipped.
//! Hardlinks: the entry that is a link (rather than the file it links to) is part of the digest; both producers
//! emit the first path met in a lexical depth-first walk as the file, as the engine's tar does.
//!
//! # How entries combine
//! The entry hashes, read as 256-bit big-endian integers, are added modulo 2^256, and the digest is
//! SHA-256(`"docker-persist tree v2\0"` ‖ entry count ‖ sum) (`"docker-persist tree v1\0"` for v1).
//! Addition is commutative, so order does not matter; the state is 32 bytes plus counters, so memory is
//! constant. Soundness for this use: the question
//! asked is "does this restored tree equal the one backed up?", with differences caused by bugs, truncation or
//! bit rot, not by someone choosing file contents to forge a collision. For trees that differ in at least one
//! entry, the sums differ unless the SHA-256 outputs of the differing entries happen to add up to the same value
//! mod 2^256, which for outputs that behave as random has probability 2^-256. Unlike XOR, adding an entry
//! twice does not cancel it. This is AdHash (Bellare–Micciancio); with a 2^256 modulus it does not resist an
//! adversary who can add many chosen entries (Wagner's generalized birthday attack), so it must not be used as
//! an authenticity check — the member's plain SHA-256 in the manifest is what protects the stored bytes.
//!
//! # Paths
//! Entry paths are normalized before hashing: leading `./`, empty and `.` components are dropped, and a
//! trailing `/` is removed. With [`DigestOptions::strip_prefix`] set to `data`, the accepted entries are `data`,
//! `data/`, `./data/` (the root) and `data/…` (below it); any other entry is an error. Without it, the root is
//! `.`, `./` or an empty name, and `./x` and `x` are the same path. So a tar the engine produced for
//! `/data` (entries `data/…`, strip `data`), one for `/data/.` (entries `./…`), and a filesystem walker's tar
//! of the same tree (entries `x`, plus `.` for the root) all give the same digest. The root directory entry is
//! always included when present (its mode and owner matter: a database refuses a data directory with the wrong
//! ones); both producers emit it. An absolute path, a `..` component, or a hardlink whose target is absolute,
//! has a `..` component or lies outside the prefix is refused ([`DigestError::UnsafeEntry`]): it could write
//! outside the volume when extracted.
//!
//! # Streaming
//! [`digest_tar_into`] reads a tar stream once and passes every byte on, unchanged, to a writer (the zstd
//! encoder while backing up) as it goes: one pass, fixed-size buffers, nothing of the stream held.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use xxhash_rust::xxh3::Xxh3Default;

const BUFFER_SIZE: usize = 128 * 1024;

/// A version of the digest (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DigestVersion {
    /// Content hashed with SHA-256: backups written before `tree-v2`.
    V1,
    /// Content hashed with XXH3-128: what backups get now.
    #[default]
    V2,
}

impl DigestVersion {
    /// The label written before the hex value.
    pub fn label(self) -> &'static str {
        match self {
            DigestVersion::V1 => "tree-v1",
            DigestVersion::V2 => "tree-v2",
        }
    }

    /// The short name the helper's `--digest` takes.
    pub fn short_name(self) -> &'static str {
        match self {
            DigestVersion::V1 => "v1",
            DigestVersion::V2 => "v2",
        }
    }

    fn entry_domain(self) -> &'static [u8] {
        match self {
            DigestVersion::V1 => b"docker-persist entry v1\0",
            DigestVersion::V2 => b"docker-persist entry v2\0",
        }
    }

    fn tree_domain(self) -> &'static [u8] {
        match self {
            DigestVersion::V1 => b"docker-persist tree v1\0",
            DigestVersion::V2 => b"docker-persist tree v2\0",
        }
    }
}

impl fmt::Display for DigestVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A string that is not `v1`, `v2`, `tree-v1` or `tree-v2`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{0}` is not a digest version (expected `v1` or `v2`)")]
pub struct InvalidDigestVersion(pub String);

impl FromStr for DigestVersion {
    type Err = InvalidDigestVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v1" | "tree-v1" => Ok(DigestVersion::V1),
            "v2" | "tree-v2" => Ok(DigestVersion::V2),
            _ => Err(InvalidDigestVersion(s.to_string())),
        }
    }
}

/// The hash of one regular file's content, as the digest version in use computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentHash {
    /// `tree-v1`: SHA-256.
    Sha256([u8; 32]),
    /// `tree-v2`: XXH3-128, big-endian (XXH128's canonical form).
    Xxh3([u8; 16]),
}

impl ContentHash {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            ContentHash::Sha256(b) => b,
            ContentHash::Xxh3(b) => b,
        }
    }

    pub fn version(&self) -> DigestVersion {
        match self {
            ContentHash::Sha256(_) => DigestVersion::V1,
            ContentHash::Xxh3(_) => DigestVersion::V2,
        }
    }

    /// The content hash of `content`, whole.
    pub fn of(version: DigestVersion, content: &[u8]) -> Self {
        let mut h = ContentHasher::new(version);
        h.update(content);
        h.finish()
    }
}

/// Hashes one regular file's content as it streams by.
#[derive(Clone)]
pub enum ContentHasher {
    Sha256(Sha256),
    Xxh3(Box<Xxh3Default>),
}

impl ContentHasher {
    pub fn new(version: DigestVersion) -> Self {
        match version {
            DigestVersion::V1 => ContentHasher::Sha256(Sha256::new()),
            DigestVersion::V2 => ContentHasher::Xxh3(Box::new(Xxh3Default::new())),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            ContentHasher::Sha256(h) => h.update(bytes),
            ContentHasher::Xxh3(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> ContentHash {
        match self {
            ContentHasher::Sha256(h) => ContentHash::Sha256(h.finalize().into()),
            ContentHasher::Xxh3(h) => ContentHash::Xxh3(h.digest128().to_be_bytes()),
        }
    }
}

/// The digest of a whole tree, written `tree-v2:<64 hex digits>` (or `tree-v1:…`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentDigest {
    version: DigestVersion,
    bytes: [u8; 32],
}

impl ContentDigest {
    pub fn from_bytes(version: DigestVersion, bytes: [u8; 32]) -> Self {
        ContentDigest { version, bytes }
    }

    pub fn version(&self) -> DigestVersion {
        self.version
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl fmt::Display for ContentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.version.label(), hex::encode(self.bytes))
    }
}

impl fmt::Debug for ContentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not `tree-v1:` or `tree-v2:` and 64 hex digits.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{0}` is not a content digest (expected `tree-v1:` or `tree-v2:` and 64 hex digits)")]
pub struct InvalidDigest(pub String);

impl FromStr for ContentDigest {
    type Err = InvalidDigest;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidDigest(s.to_string());
        let (label, hex_part) = s.split_once(':').ok_or_else(invalid)?;
        let version = [DigestVersion::V1, DigestVersion::V2]
            .into_iter()
            .find(|v| v.label() == label)
            .ok_or_else(invalid)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| invalid())?;
        Ok(ContentDigest { version, bytes })
    }
}

impl Serialize for ContentDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ContentDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What an entry is, with the fields that belong to its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryData<'a> {
    File {
        size: u64,
        content_hash: ContentHash,
    },
    Dir,
    Symlink {
        target: &'a [u8],
    },
    /// `target` is normalized like an entry path.
    Hardlink {
        target: &'a [u8],
    },
    Fifo,
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    /// Any other tar type flag, hashed by its byte.
    Other {
        type_flag: u8,
    },
}

impl EntryData<'_> {
    fn tag(&self) -> [u8; 2] {
        match self {
            EntryData::File { .. } => *b"f\0",
            EntryData::Dir => *b"d\0",
            EntryData::Symlink { .. } => *b"l\0",
            EntryData::Hardlink { .. } => *b"h\0",
            EntryData::Fifo => *b"p\0",
            EntryData::CharDevice { .. } => *b"c\0",
            EntryData::BlockDevice { .. } => *b"b\0",
            EntryData::Other { type_flag } => [b'o', *type_flag],
        }
    }
}

/// One entry of a tree as the digest sees it. A filesystem walker builds these directly and feeds a
/// [`TreeHasher`]; the path must already be normalized ([`normalize_path`]), `b""` being the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRecord<'a> {
    pub path: &'a [u8],
    pub data: EntryData<'a>,
    /// Only `mode & 0o7777` counts.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

impl EntryRecord<'_> {
    /// The entry's own SHA-256 for digest `version`; a file's content hash must be that version's.
    pub fn hash(&self, version: DigestVersion) -> [u8; 32] {
        fn put(h: &mut Sha256, bytes: &[u8]) {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
        let mut h = Sha256::new();
        h.update(version.entry_domain());
        h.update(self.data.tag());
        put(&mut h, self.path);
        h.update((self.mode & 0o7777).to_be_bytes());
        h.update(self.uid.to_be_bytes());
        h.update(self.gid.to_be_bytes());
        match self.data {
            EntryData::File { size, content_hash } => {
                debug_assert_eq!(content_hash.version(), version);
                h.update(size.to_be_bytes());
                match version {
                    DigestVersion::V1 => h.update(content_hash.as_bytes()),
                    DigestVersion::V2 => put(&mut h, content_hash.as_bytes()),
                }
            }
            EntryData::Symlink { target } | EntryData::Hardlink { target } => put(&mut h, target),
            EntryData::CharDevice { major, minor } | EntryData::BlockDevice { major, minor } => {
                h.update(major.to_be_bytes());
                h.update(minor.to_be_bytes());
            }
            EntryData::Dir | EntryData::Fifo | EntryData::Other { .. } => {}
        }
        h.finalize().into()
    }
}

/// The order-independent accumulator: add entries in any order, then [`TreeHasher::digest`].
#[derive(Debug, Clone, Default)]
pub struct TreeHasher {
    version: DigestVersion,
    /// The sum of entry hashes, most significant limb first.
    sum: [u64; 4],
    entries: u64,
    file_bytes: u64,
    symlink_bytes: u64,
    has_root: bool,
}

impl TreeHasher {
    pub fn new(version: DigestVersion) -> Self {
        TreeHasher {
            version,
            ..TreeHasher::default()
        }
    }

    pub fn version(&self) -> DigestVersion {
        self.version
    }

    /// A hasher for the content of a regular file, of this hasher's version.
    pub fn content_hasher(&self) -> ContentHasher {
        ContentHasher::new(self.version)
    }

    pub fn add(&mut self, entry: &EntryRecord<'_>) {
        let hash = entry.hash(self.version);
        let mut limbs = [0u64; 4];
        for (i, limb) in limbs.iter_mut().enumerate() {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&hash[i * 8..i * 8 + 8]);
            *limb = u64::from_be_bytes(bytes);
        }
        self.add_to_sum(limbs);
        self.entries += 1;
        match entry.data {
            EntryData::File { size, .. } => self.file_bytes += size,
            EntryData::Symlink { target } => self.symlink_bytes += target.len() as u64,
            _ => {}
        }
        if entry.path.is_empty() {
            self.has_root = true;
        }
    }

    /// Takes in the entries `other` has seen, as if they had been added here: several threads can each
    /// digest part of a tree.
    pub fn merge(&mut self, other: &TreeHasher) {
        debug_assert_eq!(self.version, other.version);
        self.add_to_sum(other.sum);
        self.entries += other.entries;
        self.file_bytes += other.file_bytes;
        self.symlink_bytes += other.symlink_bytes;
        self.has_root |= other.has_root;
    }

    /// `sum += limbs` modulo 2^256, most significant limb first.
    fn add_to_sum(&mut self, limbs: [u64; 4]) {
        let mut carry = false;
        for i in (0..4).rev() {
            let (s1, c1) = self.sum[i].overflowing_add(limbs[i]);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            self.sum[i] = s2;
            carry = c1 || c2;
        }
    }

    pub fn entries(&self) -> u64 {
        self.entries
    }

    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// Bytes of symlink targets: what a symlink occupies to the engine's disk usage measure.
    pub fn symlink_bytes(&self) -> u64 {
        self.symlink_bytes
    }

    pub fn has_root(&self) -> bool {
        self.has_root
    }

    pub fn digest(&self) -> ContentDigest {
        let mut h = Sha256::new();
        h.update(self.version.tree_domain());
        h.update(self.entries.to_be_bytes());
        for limb in self.sum {
            h.update(limb.to_be_bytes());
        }
        ContentDigest {
            version: self.version,
            bytes: h.finalize().into(),
        }
    }
}

/// How to read entry paths of a tar stream, and which version of the digest to compute (the current one,
/// `tree-v2`, unless told).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestOptions {
    prefix: Option<String>,
    version: DigestVersion,
}

impl DigestOptions {
    /// `strip_prefix`: the relative path every entry lies under (`data` for the engine's tar of `/data`), or
    /// `None` for entries relative to the root (`x`, `./x`).
    pub fn new(strip_prefix: Option<&str>) -> Result<Self, DigestError> {
        let Some(prefix) = strip_prefix else {
            return Ok(DigestOptions::default());
        };
        match normalize_path(prefix.as_bytes(), None) {
            Ok(p) if !p.is_empty() => Ok(DigestOptions {
                prefix: Some(String::from_utf8_lossy(&p).into_owned()),
                version: DigestVersion::default(),
            }),
            _ => Err(DigestError::InvalidPrefix {
                prefix: prefix.to_string(),
            }),
        }
    }

    /// Computes digest `version`: the version of the digest the result is to be compared with.
    pub fn with_version(self, version: DigestVersion) -> Self {
        DigestOptions { version, ..self }
    }

    pub fn strip_prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    pub fn version(&self) -> DigestVersion {
        self.version
    }
}

/// Why a path cannot be part of a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathIssue {
    Absolute,
    ParentComponent,
    OutsidePrefix,
}

impl PathIssue {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            PathIssue::Absolute => "is an absolute path",
            PathIssue::ParentComponent => "has a `..` component",
            PathIssue::OutsidePrefix => "lies outside the tar's root directory",
        }
    }
}

/// Normalizes a tar entry path (see the module docs): `b""` is the root.
pub fn normalize_path(raw: &[u8], strip_prefix: Option<&str>) -> Result<Vec<u8>, PathIssue> {
    if raw.first() == Some(&b'/') {
        return Err(PathIssue::Absolute);
    }
    let mut components = raw
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".");
    if let Some(prefix) = strip_prefix {
        for want in prefix.as_bytes().split(|b| *b == b'/') {
            match components.next() {
                Some(c) if c == want => {}
                Some(c) if c == b".." => return Err(PathIssue::ParentComponent),
                _ => return Err(PathIssue::OutsidePrefix),
            }
        }
    }
    let mut out = Vec::with_capacity(raw.len());
    for c in components {
        if c == b".." {
            return Err(PathIssue::ParentComponent);
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    Ok(out)
}

/// Normalizes the target of a hardlink entry like an entry path; `Err` says why the target is refused (it
/// could make a link to a file outside the tree, or to the root directory).
pub(crate) fn normalize_link_target(
    raw: Option<&[u8]>,
    strip_prefix: Option<&str>,
) -> Result<Vec<u8>, &'static str> {
    let raw = raw.ok_or("is a hardlink without a target")?;
    match normalize_path(raw, strip_prefix) {
        Ok(t) if t.is_empty() => Err("is a hardlink to the root directory"),
        Ok(t) => Ok(t),
        Err(PathIssue::Absolute) => Err("is a hardlink to an absolute path"),
        Err(PathIssue::ParentComponent) => Err("is a hardlink to a path with a `..` component"),
        Err(PathIssue::OutsidePrefix) => Err("is a hardlink to a path outside the tar's root"),
    }
}

/// What reading a tree from a tar stream found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeSummary {
    pub digest: ContentDigest,
    /// Entries of the tree, the root directory included when the tar has it.
    pub entries: u64,
    /// Bytes of regular-file content (a hardlink adds nothing: its data is the linked file's).
    pub file_bytes: u64,
    /// Bytes of symlink targets (the engine's disk usage counts a symlink by its target's length).
    pub symlink_bytes: u64,
    /// Bytes of the whole tar stream, padding and end-of-archive blocks included.
    pub tar_bytes: u64,
    /// Whether the tar had an entry for the root directory.
    pub has_root: bool,
}

/// Why a tar stream could not be digested.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error(
        "`{prefix}` cannot be a tar prefix: it must be a relative path without `..` components"
    )]
    InvalidPrefix { prefix: String },

    #[error("failed to read the tar stream after {entries} entries")]
    Read {
        entries: u64,
        #[source]
        source: io::Error,
    },

    #[error("malformed tar stream after {entries} entries")]
    Tar {
        entries: u64,
        #[source]
        source: io::Error,
    },

    #[error("failed to pass the tar stream on")]
    Sink(#[source] io::Error),

    #[error("entry `{path}` {why}")]
    UnsafeEntry { path: String, why: &'static str },

    #[error("entry `{path}` ends early: {expected} bytes announced, {found} present")]
    Truncated {
        path: String,
        expected: u64,
        found: u64,
    },

    #[error("the tar stream ends without an end-of-archive marker after {entries} entries")]
    NoEndMarker { entries: u64 },
}

/// Whether a tar stream holds more than `n` entries (PAX global headers not counted), reading only as far as
/// needed to tell.
pub fn has_more_entries_than<R: Read>(source: R, n: u64) -> io::Result<bool> {
    let mut archive = tar::Archive::new(source);
    let mut seen = 0;
    for entry in archive.entries()? {
        if !entry?.header().entry_type().is_pax_global_extensions() {
            seen += 1;
            if seen > n {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Digests a tar stream, reading it to its end.
pub fn digest_tar<R: Read>(source: R, options: &DigestOptions) -> Result<TreeSummary, DigestError> {
    digest_tar_into(source, io::sink(), options)
}

/// Digests a tar stream while writing every byte read from `source`, unchanged, to `sink` (a tee). The
/// stream is read to its end, trailing zero blocks included, so `sink` receives exactly what `source` held.
pub fn digest_tar_into<R: Read, W: Write>(
    source: R,
    sink: W,
    options: &DigestOptions,
) -> Result<TreeSummary, DigestError> {
    let source = io::BufReader::with_capacity(BUFFER_SIZE / 2, source);
    let mut archive = tar::Archive::new(Tee::new(source, sink));
    let mut hasher = TreeHasher::new(options.version());
    let walked = walk(&mut archive, &mut hasher, options);
    let mut tee = archive.into_inner();
    let entries = hasher.entries();
    match walked {
        Ok(()) => {}
        Err(Walk::Digest(e)) => return Err(tee.explain(e, entries)),
        Err(Walk::Io(e)) => return Err(tee.explain_io(e, entries)),
    }
    if tee.source_eof {
        return Err(DigestError::NoEndMarker { entries });
    }
    // Whatever follows the first end-of-archive block (the second one, record padding) is passed on too.
    let mut buf = vec![0u8; BUFFER_SIZE];
    loop {
        match tee.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(tee.explain_io(e, entries)),
        }
    }
    Ok(TreeSummary {
        digest: hasher.digest(),
        entries,
        file_bytes: hasher.file_bytes(),
        symlink_bytes: hasher.symlink_bytes(),
        tar_bytes: tee.bytes,
        has_root: hasher.has_root(),
    })
}

enum Walk {
    Io(io::Error),
    Digest(DigestError),
}

impl From<io::Error> for Walk {
    fn from(e: io::Error) -> Self {
        Walk::Io(e)
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn walk<R: Read>(
    archive: &mut tar::Archive<R>,
    hasher: &mut TreeHasher,
    options: &DigestOptions,
) -> Result<(), Walk> {
    let prefix = options.strip_prefix();
    let mut buf = vec![0u8; BUFFER_SIZE];
    for entry in archive.entries()? {
        let mut entry = entry?;
        let header = entry.header();
        let entry_type = header.entry_type();
        if entry_type.is_pax_global_extensions() {
            continue;
        }
        let raw_path = entry.path_bytes().into_owned();
        let path = normalize_path(&raw_path, prefix).map_err(|issue| {
            Walk::Digest(DigestError::UnsafeEntry {
                path: lossy(&raw_path),
                why: issue.describe(),
            })
        })?;
        let old = header.as_old();
        let mode = or_zero(&old.mode, header.mode())?;
        let uid = or_zero(&old.uid, header.uid())?;
        let gid = or_zero(&old.gid, header.gid())?;
        let device = if entry_type.is_character_special() || entry_type.is_block_special() {
            device_numbers(header)?
        } else {
            (0, 0)
        };
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let type_flag = entry_type.as_byte();
        let is_dir = is_dir_entry(entry_type, &raw_path);

        let hardlink_target;
        let data = if is_dir {
            EntryData::Dir
        } else if entry_type.is_file() || entry_type.is_gnu_sparse() || type_flag == b'7' {
            let expected = entry.size();
            let mut content = hasher.content_hasher();
            let mut found = 0u64;
            loop {
                let n = match entry.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Walk::Io(e)),
                };
                content.update(&buf[..n]);
                found += n as u64;
            }
            if found != expected {
                return Err(Walk::Digest(DigestError::Truncated {
                    path: lossy(&raw_path),
                    expected,
                    found,
                }));
            }
            EntryData::File {
                size: found,
                content_hash: content.finish(),
            }
        } else if entry_type.is_symlink() {
            EntryData::Symlink {
                target: link.as_deref().unwrap_or_default(),
            }
        } else if entry_type.is_hard_link() {
            let unsafe_entry = |why| {
                Walk::Digest(DigestError::UnsafeEntry {
                    path: lossy(&raw_path),
                    why,
                })
            };
            hardlink_target =
                normalize_link_target(link.as_deref(), prefix).map_err(unsafe_entry)?;
            EntryData::Hardlink {
                target: &hardlink_target,
            }
        } else if entry_type.is_fifo() {
            EntryData::Fifo
        } else if entry_type.is_character_special() {
            EntryData::CharDevice {
                major: device.0,
                minor: device.1,
            }
        } else if entry_type.is_block_special() {
            EntryData::BlockDevice {
                major: device.0,
                minor: device.1,
            }
        } else {
            EntryData::Other { type_flag }
        };
        hasher.add(&EntryRecord {
            path: &path,
            data,
            mode,
            uid,
            gid,
        });
    }
    Ok(())
}

/// Whether an entry is a directory: by its type, or (old tars) a regular file whose name ends in `/`.
pub(crate) fn is_dir_entry(entry_type: tar::EntryType, raw_path: &[u8]) -> bool {
    entry_type.is_dir()
        || ((entry_type.is_file() || entry_type.as_byte() == b'7') && raw_path.ends_with(b"/"))
}

/// A numeric header field left blank (all NUL or spaces) reads as 0, as GNU tar reads it; anything else must
/// parse.
fn or_zero<T: Default>(field: &[u8], parsed: io::Result<T>) -> io::Result<T> {
    if field.iter().all(|b| *b == 0 || *b == b' ') {
        Ok(T::default())
    } else {
        parsed
    }
}

/// A device entry's major and minor numbers (0 where the fields are blank or absent).
pub(crate) fn device_numbers(header: &tar::Header) -> io::Result<(u32, u32)> {
    let (major_field, minor_field) = match (header.as_ustar(), header.as_gnu()) {
        (Some(u), _) => (u.dev_major, u.dev_minor),
        (_, Some(g)) => (g.dev_major, g.dev_minor),
        // A pre-POSIX header has no device fields.
        _ => return Ok((0, 0)),
    };
    let major = or_zero(
        &major_field,
        header.device_major().map(Option::unwrap_or_default),
    )?;
    let minor = or_zero(
        &minor_field,
        header.device_minor().map(Option::unwrap_or_default),
    )?;
    Ok((major, minor))
}

/// Passes what is read from `source` on to `sink`, and remembers which side failed so that errors can be
/// told apart after the tar parser has wrapped them.
struct Tee<R, W> {
    source: R,
    sink: W,
    bytes: u64,
    source_eof: bool,
    source_error: Option<io::Error>,
    sink_error: Option<io::Error>,
}

impl<R: Read, W: Write> Tee<R, W> {
    fn new(source: R, sink: W) -> Self {
        Tee {
            source,
            sink,
            bytes: 0,
            source_eof: false,
            source_error: None,
            sink_error: None,
        }
    }

    fn explain(&mut self, e: DigestError, entries: u64) -> DigestError {
        if let Some(sink) = self.sink_error.take() {
            return DigestError::Sink(sink);
        }
        if let Some(source) = self.source_error.take() {
            return DigestError::Read { entries, source };
        }
        e
    }

    fn explain_io(&mut self, e: io::Error, entries: u64) -> DigestError {
        if let Some(sink) = self.sink_error.take() {
            return DigestError::Sink(sink);
        }
        if let Some(source) = self.source_error.take() {
            return DigestError::Read { entries, source };
        }
        if self.source_eof {
            return DigestError::Tar {
                entries,
                source: io::Error::new(io::ErrorKind::UnexpectedEof, e),
            };
        }
        DigestError::Tar { entries, source: e }
    }
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = match self.source.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let substitute = io::Error::new(e.kind(), e.to_string());
                self.source_error = Some(e);
                return Err(substitute);
            }
        };
        if n == 0 {
            self.source_eof = true;
            return Ok(0);
        }
        if let Err(e) = self.sink.write_all(&buf[..n]) {
            let substitute = io::Error::new(e.kind(), e.to_string());
            self.sink_error = Some(e);
            return Err(substitute);
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tar::{Builder, EntryType, Header};

    #[test]
    fn counting_entries_stops_as_soon_as_it_can_tell() {
        let mut b = Builder::new(Vec::new());
        for name in ["./", "./a", "./b"] {
            let mut h = Header::new_ustar();
            h.set_size(0);
            h.set_entry_type(if name.ends_with('/') {
                EntryType::Directory
            } else {
                EntryType::Regular
            });
            b.append_data(&mut h, name, io::empty()).unwrap();
        }
        let tar = b.into_inner().unwrap();
        assert!(has_more_entries_than(tar.as_slice(), 1).unwrap());
        assert!(has_more_entries_than(tar.as_slice(), 2).unwrap());
        assert!(!has_more_entries_than(tar.as_slice(), 3).unwrap());
        // Only the first two headers are needed to tell that there is more than the root.
        assert!(has_more_entries_than(&tar[..1024], 1).unwrap());
    }

    /// One entry of a hand-made test tar.
    #[derive(Clone)]
    pub(crate) struct E {
        pub path: String,
        pub kind: EntryType,
        pub mode: u32,
        pub uid: u64,
        pub gid: u64,
        pub data: Vec<u8>,
        pub link: Option<String>,
    }

    pub(crate) fn file(path: &str, data: &[u8]) -> E {
        E {
            path: path.into(),
            kind: EntryType::Regular,
            mode: 0o644,
            uid: 0,
            gid: 0,
            data: data.to_vec(),
            link: None,
        }
    }

    pub(crate) fn dir(path: &str) -> E {
        E {
            kind: EntryType::Directory,
            mode: 0o755,
            ..file(path, b"")
        }
    }

    pub(crate) fn link(path: &str, kind: EntryType, target: &str) -> E {
        E {
            kind,
            mode: 0o777,
            link: Some(target.into()),
            ..file(path, b"")
        }
    }

    pub(crate) fn build(entries: &[E]) -> Vec<u8> {
        let mut b = Builder::new(Vec::new());
        for e in entries {
            let mut h = Header::new_gnu();
            h.set_entry_type(e.kind);
            h.set_mode(e.mode);
            h.set_uid(e.uid);
            h.set_gid(e.gid);
            h.set_mtime(1_700_000_000);
            h.set_size(e.data.len() as u64);
            match &e.link {
                Some(target) => b.append_link(&mut h, &e.path, target).unwrap(),
                None => b.append_data(&mut h, &e.path, &e.data[..]).unwrap(),
            }
        }
        b.into_inner().unwrap()
    }

    const VERSIONS: [DigestVersion; 2] = [DigestVersion::V1, DigestVersion::V2];

    fn digest(tar: &[u8], prefix: Option<&str>) -> TreeSummary {
        digest_as(DigestVersion::default(), tar, prefix)
    }

    fn digest_as(version: DigestVersion, tar: &[u8], prefix: Option<&str>) -> TreeSummary {
        let options = DigestOptions::new(prefix).unwrap().with_version(version);
        digest_tar(tar, &options).unwrap()
    }

    fn sample() -> Vec<E> {
        vec![
            dir("."),
            dir("a"),
            file("a/one", b"hello"),
            E {
                mode: 0o4755,
                uid: 999,
                gid: 999,
                ..file("a/two", b"world")
            },
            link("a/sym", EntryType::Symlink, "../missing"),
            link("a/hard", EntryType::Link, "a/one"),
            E {
                kind: EntryType::Fifo,
                ..file("fifo", b"")
            },
        ]
    }

    /// The digests of [`sample`] computed before `tree-v2` existed: every backup written then must still
    /// verify, so v1 must never change.
    const SAMPLE_V1: &str =
        "tree-v1:c5874be6678e3fa2de54c96a5c1a7c0739d26d764a5c22d0d1d0e786f1ebbeea";
    const SAMPLE_V2: &str =
        "tree-v2:28cfa4c1b5be19d4b242e1193b0dcc6dbbc36f90b6eb425752820bb790b3205e";

    #[test]
    fn digests_of_a_fixed_tree_never_change() {
        let tar = build(&sample());
        assert_eq!(
            digest_as(DigestVersion::V1, &tar, None).digest.to_string(),
            SAMPLE_V1
        );
        assert_eq!(
            digest_as(DigestVersion::V2, &tar, None).digest.to_string(),
            SAMPLE_V2
        );
    }

    #[test]
    fn content_hashes_are_sha256_and_canonical_xxh3_128() {
        // XXH3-128 of nothing, in XXH128's canonical (big-endian) form, as `xxhsum -H2` prints it.
        assert_eq!(
            hex::encode(ContentHash::of(DigestVersion::V2, b"").as_bytes()),
            "99aa06d3014798d86001c324468d497f"
        );
        assert_eq!(
            hex::encode(ContentHash::of(DigestVersion::V1, b"").as_bytes()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut streamed = ContentHasher::new(DigestVersion::V2);
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for chunk in content.chunks(4096 + 3) {
            streamed.update(chunk);
        }
        assert_eq!(
            streamed.finish(),
            ContentHash::Xxh3(xxhash_rust::xxh3::xxh3_128(&content).to_be_bytes())
        );
    }

    #[test]
    fn versions_never_agree_on_a_tree() {
        for entries in [sample(), vec![dir(".")], vec![file("x", b"")], vec![]] {
            let tar = build(&entries);
            let v1 = digest_as(DigestVersion::V1, &tar, None).digest;
            let v2 = digest_as(DigestVersion::V2, &tar, None).digest;
            assert_ne!(v1.as_bytes(), v2.as_bytes());
            assert_ne!(v1, v2);
        }
    }

    #[test]
    fn new_digests_are_v2() {
        assert_eq!(
            digest(&build(&sample()), None).digest.version(),
            DigestVersion::V2
        );
    }

    #[test]
    fn digest_is_order_independent() {
        for version in VERSIONS {
            let entries = sample();
            let a = digest_as(version, &build(&entries), None);
            let mut reversed = entries.clone();
            reversed.reverse();
            let b = digest_as(version, &build(&reversed), None);
            assert_eq!(a.digest, b.digest);
            assert_eq!(a.digest.version(), version);
            assert_eq!(a.entries, 7);
            assert_eq!(a.file_bytes, 10);
            assert!(a.has_root);
        }
    }

    #[test]
    fn digest_changes_with_any_recorded_field() {
        for version in VERSIONS {
            digest_changes_with_any_recorded_field_in(version);
        }
    }

    fn digest_changes_with_any_recorded_field_in(version: DigestVersion) {
        let base = digest_as(version, &build(&sample()), None).digest;
        type Change = Box<dyn Fn(&mut Vec<E>)>;
        let variants: Vec<(&str, Change)> = vec![
            ("mode bit", Box::new(|e| e[3].mode = 0o755)),
            ("sticky bit", Box::new(|e| e[1].mode = 0o1755)),
            ("uid", Box::new(|e| e[3].uid = 1000)),
            ("gid", Box::new(|e| e[3].gid = 0)),
            ("content byte", Box::new(|e| e[2].data = b"hellO".to_vec())),
            (
                "content length",
                Box::new(|e| e[2].data = b"hello\0".to_vec()),
            ),
            (
                "symlink target",
                Box::new(|e| e[4].link = Some("../missinG".into())),
            ),
            (
                "hardlink target",
                Box::new(|e| e[5].link = Some("a/two".into())),
            ),
            ("path", Box::new(|e| e[2].path = "a/onE".into())),
            ("type", Box::new(|e| e[6].kind = EntryType::Regular)),
            ("extra entry", Box::new(|e| e.push(dir("new")))),
            ("missing entry", Box::new(|e| drop(e.remove(6)))),
            ("duplicated entry", Box::new(|e| e.push(dir("a")))),
        ];
        for (what, change) in variants {
            let mut entries = sample();
            change(&mut entries);
            let changed = digest_as(version, &build(&entries), None).digest;
            assert_ne!(changed, base, "{what} did not change the {version} digest");
        }
    }

    #[test]
    fn digest_ignores_mtime_and_names_of_owners() {
        let mut b = Builder::new(Vec::new());
        let mut h = Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(1);
        h.set_username("someone").unwrap();
        h.set_size(5);
        b.append_data(&mut h, "a/one", &b"hello"[..]).unwrap();
        let one = digest(&b.into_inner().unwrap(), None).digest;
        let two = digest(&build(&[file("a/one", b"hello")]), None).digest;
        assert_eq!(one, two);
    }

    #[test]
    fn root_forms_give_the_same_digest() {
        let rename = |root: &str, prefix_entries: &str| -> Vec<E> {
            sample()
                .into_iter()
                .map(|mut e| {
                    e.path = if e.path == "." {
                        root.to_string()
                    } else {
                        format!("{prefix_entries}{}", e.path)
                    };
                    if e.kind == EntryType::Link {
                        e.link = e.link.map(|l| format!("{prefix_entries}{l}"));
                    }
                    e
                })
                .collect()
        };
        for version in VERSIONS {
            let digest = |tar: &[u8], prefix| digest_as(version, tar, prefix);
            let plain = digest(&build(&sample()), None);
            let engine = digest(&build(&rename("data/", "data/")), Some("data"));
            let dotted = digest(&build(&rename("./", "./")), None);
            let dotted_prefix = digest(&build(&rename("./data", "./data/")), Some("./data/"));
            assert_eq!(plain.digest, engine.digest);
            assert_eq!(plain.digest, dotted.digest);
            assert_eq!(plain.digest, dotted_prefix.digest);
            assert!(engine.has_root);
        }
    }

    #[test]
    fn entries_outside_the_prefix_are_refused() {
        let tar = build(&[dir("data"), file("other/x", b"x")]);
        let err = digest_tar(&tar[..], &DigestOptions::new(Some("data")).unwrap()).unwrap_err();
        assert!(
            matches!(&err, DigestError::UnsafeEntry { path, .. } if path == "other/x"),
            "{err:?}"
        );
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let mut b = Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_size(1);
        // The builder refuses such names; write them into the header directly.
        h.as_old_mut().name[..4].copy_from_slice(b"../x");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let err = digest_tar(&tar[..], &DigestOptions::default()).unwrap_err();
        assert!(
            matches!(&err, DigestError::UnsafeEntry { path, why } if path == "../x" && why.contains("..")),
            "{err}"
        );

        let mut b = Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_size(1);
        h.as_old_mut().name[..6].copy_from_slice(b"/etc/x");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let err = digest_tar(&tar[..], &DigestOptions::default()).unwrap_err();
        assert!(
            matches!(&err, DigestError::UnsafeEntry { path, .. } if path == "/etc/x"),
            "{err}"
        );

        let tar = build(&[link("h", EntryType::Link, "/etc/shadow")]);
        assert!(matches!(
            digest_tar(&tar[..], &DigestOptions::default()),
            Err(DigestError::UnsafeEntry { .. })
        ));
        let tar = build(&[dir("data"), link("data/h", EntryType::Link, "etc/shadow")]);
        assert!(matches!(
            digest_tar(&tar[..], &DigestOptions::new(Some("data")).unwrap()),
            Err(DigestError::UnsafeEntry { .. })
        ));
    }

    #[test]
    fn symlinks_may_point_anywhere() {
        let tar = build(&[
            link("abs", EntryType::Symlink, "/etc/passwd"),
            link("up", EntryType::Symlink, "../../x"),
        ]);
        assert_eq!(digest(&tar, None).entries, 2);
    }

    #[test]
    fn tee_passes_every_byte_on() {
        let mut tar = build(&sample());
        // Record padding after the end-of-archive blocks, as GNU tar writes it.
        tar.resize(tar.len() + 8192, 0);
        let mut copy = Vec::new();
        let summary = digest_tar_into(&tar[..], &mut copy, &DigestOptions::default()).unwrap();
        assert_eq!(copy, tar);
        assert_eq!(summary.tar_bytes, tar.len() as u64);
    }

    #[test]
    fn long_and_non_ascii_names_are_read_whole() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
        let entries = vec![
            file(&long, b"x"),
            file("ünïcødé/日本語.txt", b"y"),
            link(&format!("l{}", "n".repeat(120)), EntryType::Symlink, &long),
        ];
        let gnu = build(&entries);
        // The same tree with PAX records instead of GNU long names.
        let mut b = Builder::new(Vec::new());
        for e in &entries {
            let mut records: Vec<(&str, &[u8])> = vec![("path", e.path.as_bytes())];
            if let Some(l) = &e.link {
                records.push(("linkpath", l.as_bytes()));
            }
            b.append_pax_extensions(records).unwrap();
            let mut h = Header::new_ustar();
            h.set_entry_type(e.kind);
            h.set_mode(e.mode);
            h.set_size(e.data.len() as u64);
            h.as_old_mut().name[..5].copy_from_slice(b"trunc");
            h.set_cksum();
            b.append(&h, &e.data[..]).unwrap();
        }
        let pax = b.into_inner().unwrap();
        for version in VERSIONS {
            let gnu_digest = digest_as(version, &gnu, None).digest;
            assert_eq!(gnu_digest, digest_as(version, &pax, None).digest);
            let mut hasher = TreeHasher::new(version);
            for e in &entries {
                let data = match &e.link {
                    Some(l) => EntryData::Symlink {
                        target: l.as_bytes(),
                    },
                    None => EntryData::File {
                        size: e.data.len() as u64,
                        content_hash: ContentHash::of(version, &e.data),
                    },
                };
                hasher.add(&EntryRecord {
                    path: e.path.as_bytes(),
                    data,
                    mode: e.mode,
                    uid: 0,
                    gid: 0,
                });
            }
            assert_eq!(gnu_digest, hasher.digest());
        }
    }

    /// A GNU sparse entry: 1 MiB with 512 bytes of data at 0 and 512 at 512 KiB.
    fn sparse_tar() -> Vec<u8> {
        let mut h = Header::new_gnu();
        h.set_path("sparse").unwrap();
        h.set_mode(0o600);
        h.set_entry_type(EntryType::GNUSparse);
        h.set_size(1024);
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.sparse[0].set_offset(0);
            gnu.sparse[0].set_length(512);
            gnu.sparse[1].set_offset(512 * 1024);
            gnu.sparse[1].set_length(512);
            // GNU tar ends the map with an empty block at the real size when the file ends in a hole.
            gnu.sparse[2].set_offset(1024 * 1024);
            gnu.sparse[2].set_length(0);
            gnu.set_real_size(1024 * 1024);
        }
        h.set_cksum();
        let mut data = vec![1u8; 512];
        data.extend(vec![2u8; 512]);
        let mut b = Builder::new(Vec::new());
        b.append(&h, &data[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn sparse_entries_count_as_the_file_they_expand_to() {
        let mut full = vec![0u8; 1024 * 1024];
        full[..512].fill(1);
        full[512 * 1024..512 * 1024 + 512].fill(2);
        let mut e = file("sparse", &full);
        e.mode = 0o600;
        for version in VERSIONS {
            let plain = digest_as(version, &build(std::slice::from_ref(&e)), None);
            let sparse = digest_as(version, &sparse_tar(), None);
            assert_eq!(sparse.digest, plain.digest);
            assert_eq!(sparse.file_bytes, 1024 * 1024);
        }
    }

    #[test]
    fn truncated_streams_are_refused() {
        let tar = build(&sample());
        // Cut inside the content of `a/one`.
        let cut = 3 * 512 + 2;
        let err = digest_tar(&tar[..cut], &DigestOptions::default()).unwrap_err();
        assert!(
            matches!(err, DigestError::Truncated { .. } | DigestError::Tar { .. }),
            "{err:?}"
        );
        // Cut exactly before the end-of-archive blocks.
        let end = tar.len() - 1024;
        let err = digest_tar(&tar[..end], &DigestOptions::default()).unwrap_err();
        assert!(
            matches!(err, DigestError::NoEndMarker { entries: 7 }),
            "{err:?}"
        );
        // An empty stream is no tar.
        assert!(matches!(
            digest_tar(&[][..], &DigestOptions::default()),
            Err(DigestError::NoEndMarker { entries: 0 })
        ));
    }

    #[test]
    fn source_and_sink_errors_are_told_apart() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("engine went away"))
            }
        }
        impl Write for Failing {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let err = digest_tar(Failing, &DigestOptions::default()).unwrap_err();
        assert!(
            matches!(&err, DigestError::Read { source, .. } if source.to_string() == "engine went away"),
            "{err:?}"
        );
        let tar = build(&sample());
        let err = digest_tar_into(&tar[..], Failing, &DigestOptions::default()).unwrap_err();
        assert!(
            matches!(&err, DigestError::Sink(source) if source.to_string() == "disk full"),
            "{err:?}"
        );
    }

    #[test]
    fn digest_string_round_trips() {
        for version in VERSIONS {
            let d = digest_as(version, &build(&sample()), None).digest;
            let s = d.to_string();
            assert!(
                s.starts_with(&format!("{}:", version.label())) && s.len() == 8 + 64,
                "{s}"
            );
            assert_eq!(s.parse::<ContentDigest>().unwrap(), d);
            assert_eq!(s.parse::<ContentDigest>().unwrap().version(), version);
        }
        assert!("tree-v2:00".parse::<ContentDigest>().is_err());
        assert!(
            format!("tree-v3:{}", "0".repeat(64))
                .parse::<ContentDigest>()
                .is_err()
        );
        assert!(
            format!("tree-v1:{}", "g".repeat(64))
                .parse::<ContentDigest>()
                .is_err()
        );
    }

    #[test]
    fn merged_hashers_give_the_digest_of_all_their_entries() {
        let records: Vec<EntryRecord<'_>> = [&b""[..], b"a", b"a/b", b"c"]
            .into_iter()
            .map(|path| EntryRecord {
                path,
                data: EntryData::File {
                    size: path.len() as u64,
                    content_hash: ContentHash::Xxh3([0xff; 16]),
                },
                mode: 0o644,
                uid: 0,
                gid: 0,
            })
            .collect();
        let v2 = DigestVersion::V2;
        let mut all = TreeHasher::new(v2);
        records.iter().for_each(|r| all.add(r));
        let (mut left, mut right) = (TreeHasher::new(v2), TreeHasher::new(v2));
        records[..2].iter().for_each(|r| left.add(r));
        records[2..].iter().for_each(|r| right.add(r));
        left.merge(&right);
        assert_eq!(left.digest(), all.digest());
        assert_eq!(
            (left.entries(), left.file_bytes(), left.has_root()),
            (4, 5, true)
        );

        // The carry runs through every limb and off the top.
        let mut max = TreeHasher::new(v2);
        max.sum = [u64::MAX; 4];
        let mut one = TreeHasher::new(v2);
        one.sum = [0, 0, 0, 1];
        max.merge(&one);
        assert_eq!(max.sum, [0; 4]);
    }

    #[test]
    fn sum_wraps_modulo_2_256() {
        let mut h = TreeHasher::new(DigestVersion::V2);
        h.sum = [u64::MAX; 4];
        h.add(&EntryRecord {
            path: b"x",
            data: EntryData::Dir,
            mode: 0,
            uid: 0,
            gid: 0,
        });
        let hash = EntryRecord {
            path: b"x",
            data: EntryData::Dir,
            mode: 0,
            uid: 0,
            gid: 0,
        }
        .hash(DigestVersion::V2);
        // MAX + h = h - 1 (mod 2^256)
        let mut expected = [0u64; 4];
        for (i, limb) in expected.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&hash[i * 8..i * 8 + 8]);
            *limb = u64::from_be_bytes(b);
        }
        let mut i = 3;
        loop {
            let (v, borrow) = expected[i].overflowing_sub(1);
            expected[i] = v;
            if !borrow {
                break;
            }
            i -= 1;
        }
        assert_eq!(h.sum, expected);
    }

    #[test]
    fn prefix_must_be_relative() {
        for p in ["", ".", "/data", "../data", "a/../b"] {
            assert!(DigestOptions::new(Some(p)).is_err(), "{p:?}");
        }
        assert_eq!(
            DigestOptions::new(Some("./data/")).unwrap().strip_prefix(),
            Some("data")
        );
    }
}
