//! Measures the backup format's writer and verifier: throughput and peak memory (VmHWM), one configuration per
//! process so that each peak is its own. Not a test; `docs/format.md` ("Measurements") records its numbers.
//!
//! ```text
//! cargo run --release --example archive_bench -- gen /tmp/ref.tar          # ≈650 MB reference-like tar
//! cargo run --release --example archive_bench -- write /tmp/ref.tar /tmp/out 0   # workers: 0 = single-threaded
//! cargo run --release --example archive_bench -- write /tmp/ref.tar /tmp/out 2
//! cargo run --release --example archive_bench -- verify /tmp/out/bench-….tar
//! cargo run --release --example archive_bench -- digest /tmp/ref.tar       # the content digest alone
//! cargo run --release --example archive_bench -- stream 1 /tmp/out 0       # 1 GiB generated on the fly
//! ```
//!
//! Encrypted (`docs/benchmarks.md`, "Encryption"): `PERSIST_BENCH_AGE_RECIPIENT=age1…` makes `write`
//! encrypt to that key, and `PERSIST_BENCH_AGE_IDENTITY=FILE` makes `verify` decrypt with that identity.
//!
//! The reference tree follows DESIGN.md ("Performance targets"): 8 files of 64 MiB, each half random bytes
//! and half word-like text, plus 40,000 text files of 1–3 KiB, all under `data/` as the engine's tar of a
//! volume mounted at `/data` has them.

use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use docker_persist::archive::{
    Backup, BackupName, BackupWriter, EngineInfo, Identity, Keys, Recipient, Sealer, VolumeSpec,
    WriterOptions,
};
use docker_persist::compose::Tier;
use docker_persist::compose::classify::DataKind;

const BIG_FILE: u64 = 64 * 1024 * 1024;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str> {
        args.get(i)
            .map(String::as_str)
            .context("missing argument; see the example's docs")
    };
    match arg(0)? {
        "gen" => generate(Path::new(arg(1)?)),
        "write" => write(
            Path::new(arg(1)?),
            Path::new(arg(2)?),
            arg(3)?.parse()?,
            level(&args)?,
        ),
        "verify" => verify(Path::new(arg(1)?)),
        "digest" => digest(Path::new(arg(1)?)),
        "stream" => stream(arg(1)?.parse()?, Path::new(arg(2)?), arg(3)?.parse()?),
        other => bail!("unknown command `{other}`"),
    }
}

fn level(args: &[String]) -> Result<i32> {
    Ok(match args.get(4) {
        Some(l) => l.parse()?,
        None => 3,
    })
}

/// xorshift64*: fast, deterministic, good enough to defeat compression.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

const WORDS: &[&str] = &[
    "volume",
    "backup",
    "restore",
    "compose",
    "service",
    "postgres",
    "redis",
    "data",
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "it",
    "that",
    "for",
    "on",
    "with",
    "as",
    "was",
    "at",
    "by",
    "this",
    "from",
    "or",
    "be",
    "are",
    "which",
    "container",
    "engine",
    "image",
    "network",
    "tier",
    "critical",
    "important",
    "manifest",
    "digest",
    "stream",
    "archive",
    "checksum",
    "zstd",
];

/// Word-like text or random bytes, generated as it is read.
struct Content {
    rng: Rng,
    random: u64,
    text: u64,
    line: usize,
}

impl Content {
    fn mixed(seed: u64, size: u64) -> Self {
        Content {
            rng: Rng(seed | 1),
            random: size / 2,
            text: size - size / 2,
            line: 0,
        }
    }

    fn text(seed: u64, size: u64) -> Self {
        Content {
            rng: Rng(seed | 1),
            random: 0,
            text: size,
            line: 0,
        }
    }
}

impl Read for Content {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.random > 0 {
            let n = buf
                .len()
                .min(usize::try_from(self.random).unwrap_or(usize::MAX));
            for chunk in buf[..n].chunks_mut(8) {
                let v = self.rng.next().to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
            self.random -= n as u64;
            return Ok(n);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.text).unwrap_or(usize::MAX));
        let mut n = 0;
        while n < want {
            let word = WORDS[(self.rng.next() % WORDS.len() as u64) as usize].as_bytes();
            let sep: &[u8] = if self.line > 60 {
                self.line = 0;
                b"\n"
            } else {
                b" "
            };
            for b in word.iter().chain(sep) {
                if n == want {
                    break;
                }
                buf[n] = *b;
                n += 1;
                self.line += 1;
            }
        }
        self.text -= n as u64;
        Ok(n)
    }
}

fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_uid(999);
    h.set_gid(999);
    h.set_mtime(1_763_806_500);
    h.set_size(size);
    h
}

fn reference_tree(out: impl Write, big_files: u64) -> Result<()> {
    let mut b = tar::Builder::new(out);
    b.append_data(
        &mut header(tar::EntryType::Directory, 0),
        "data/",
        io::empty(),
    )?;
    for i in 0..big_files {
        let mut h = header(tar::EntryType::Regular, BIG_FILE);
        b.append_data(
            &mut h,
            format!("data/big/{i}.bin"),
            Content::mixed(i + 1, BIG_FILE),
        )?;
    }
    let mut rng = Rng(42);
    for dir in 0..400 {
        let mut h = header(tar::EntryType::Directory, 0);
        b.append_data(&mut h, format!("data/small/{dir:03}/"), io::empty())?;
        for file in 0..100 {
            let size = 1024 + rng.next() % 2048;
            let mut h = header(tar::EntryType::Regular, size);
            let name = format!("data/small/{dir:03}/{file:03}.txt");
            b.append_data(&mut h, name, Content::text(rng.next(), size))?;
        }
    }
    b.into_inner()?.flush()?;
    Ok(())
}

fn generate(path: &Path) -> Result<()> {
    let out = BufWriter::with_capacity(1 << 20, fs_err::File::create(path)?);
    reference_tree(out, 8)?;
    println!(
        "wrote {} bytes to {}",
        fs_err::metadata(path)?.len(),
        path.display()
    );
    Ok(())
}

fn spec() -> VolumeSpec {
    VolumeSpec {
        key: "db".into(),
        name: "bench_db".into(),
        kind: DataKind::Named,
        tier: Tier::Critical,
        reason: "benchmark".into(),
        driver: "local".into(),
        driver_opts: Default::default(),
        labels: Default::default(),
        users: vec![],
        consistency: "live".into(),
        stopped: vec![],
        read_at: None,
        tar_prefix: Some("data".into()),
    }
}

fn peak_rss_kib() -> Result<u64> {
    let status = fs_err::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc/self/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("malformed VmHWM")?
        .parse()?)
}

fn backup_name(workers: u32) -> Result<BackupName> {
    let tag = format!("w{workers}-{}", std::process::id());
    Ok(BackupName::new(
        "bench",
        jiff::Timestamp::now(),
        Some(&tag),
    )?)
}

fn write(inner: &Path, dir: &Path, workers: u32, level: i32) -> Result<()> {
    let input = fs_err::File::open(inner)?;
    let options = WriterOptions { level, workers };
    let start = Instant::now();
    let mut w = BackupWriter::create(dir, &backup_name(workers)?, EngineInfo::default(), options)?;
    if let Ok(recipient) = std::env::var("PERSIST_BENCH_AGE_RECIPIENT") {
        w.encrypt(Sealer::new(vec![Recipient::parse(&recipient)?], None)?)?;
    }
    let record = w.add_volume(spec(), input)?;
    let done = w.finish()?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "write workers={workers} level={level}: {:.2} s, {:.0} MB/s in, {} -> {} bytes ({:.1}%), {} entries, peak RSS {} KiB, file {}",
        secs,
        record.uncompressed_bytes as f64 / secs / 1e6,
        record.uncompressed_bytes,
        record.stored_bytes,
        100.0 * record.stored_bytes as f64 / record.uncompressed_bytes as f64,
        record.entries,
        peak_rss_kib()?,
        done.path.display()
    );
    Ok(())
}

fn verify(path: &Path) -> Result<()> {
    let start = Instant::now();
    let mut backup = Backup::open(path)?;
    if let Ok(identity) = std::env::var("PERSIST_BENCH_AGE_IDENTITY") {
        backup.unlock(&Keys {
            identities: Identity::read_file(Path::new(&identity))?,
            passphrase: None,
        })?;
    }
    let report = backup.verify()?;
    let secs = start.elapsed().as_secs_f64();
    let bytes: u64 = backup
        .manifest()
        .volumes
        .iter()
        .map(|v| v.uncompressed_bytes)
        .sum();
    println!(
        "verify: {:.2} s, {:.0} MB/s of tar, ok={}, peak RSS {} KiB",
        secs,
        bytes as f64 / secs / 1e6,
        report.is_ok(),
        peak_rss_kib()?
    );
    if !report.is_ok() {
        bail!("problems: {:?}", report.problems);
    }
    Ok(())
}

fn digest(inner: &Path) -> Result<()> {
    let options = docker_persist::archive::DigestOptions::new(Some("data"))?;
    let start = Instant::now();
    let summary =
        docker_persist::archive::digest::digest_tar(fs_err::File::open(inner)?, &options)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "digest: {:.2} s, {:.0} MB/s, {} entries, {}",
        secs,
        summary.tar_bytes as f64 / secs / 1e6,
        summary.entries,
        summary.digest
    );
    Ok(())
}

/// A tar of `gib` GiB generated on another thread and piped into the writer: nothing is on disk but the result.
fn stream(gib: u64, dir: &Path, workers: u32) -> Result<()> {
    let (reader, writer) = io::pipe()?;
    let producer = std::thread::spawn(move || -> Result<()> {
        reference_tree(BufWriter::with_capacity(64 * 1024, writer), gib * 16)
    });
    let options = WriterOptions { level: 3, workers };
    let start = Instant::now();
    let mut w = BackupWriter::create(dir, &backup_name(workers)?, EngineInfo::default(), options)?;
    let record = w.add_volume(spec(), reader)?;
    let done = w.finish()?;
    let secs = start.elapsed().as_secs_f64();
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
    println!(
        "stream {gib} GiB workers={workers}: {:.2} s, {} -> {} bytes, peak RSS {} KiB, file {}",
        secs,
        record.uncompressed_bytes,
        record.stored_bytes,
        peak_rss_kib()?,
        done.path.display()
    );
    Ok(())
}
