//! A disk cache of typed models, so that a restart skips parsing and preparing ONNX files.
//!
//! Loading an ONNX file costs more than running it once: the protobuf is parsed, every tensor
//! copied, the graph typed, decluttered and (for a language model) rewritten around its KV
//! cache. Only the last step, tract's optimization for this CPU, depends on the machine. The
//! cache keeps the model as it is just before that step, in tract's NNEF form (a tar of the
//! graph text and the raw weights), so a second start reads it back and only optimizes.
//!
//! An entry is named after the source file's stem and a key: the SHA-256 of the whole source
//! file, the load options, tract's version and this module's format version.
//! A changed model, changed options or another tract therefore miss the cache instead of
//! reading a stale entry. Each entry has a checksum file (CRC-32) beside it; an entry whose bytes
//! do not match it (a torn write, a bad disk) is deleted and rebuilt, never used. Entries are written
//! to a temporary file and renamed into place, so a crash leaves no half entry under the
//! final name, and a newer entry for the same source replaces older ones.
//!
//! Where: `WEIR_MODEL_CACHE` names the directory (`off` disables the cache); otherwise
//! `$XDG_CACHE_HOME/weir/models`, otherwise `$HOME/.cache/weir/models`. A cache that cannot be
//! written (read-only disk) only costs the speed-up: the model loads from its source as before.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::nn::GeluExact;
use tract_onnx::WithOnnx;
use tract_transformers::WithTractTransformers;

/// Environment variable naming the cache directory, or `off`.
pub const CACHE_ENV: &str = "WEIR_MODEL_CACHE";

/// The tract release the cached NNEF is written by (part of every key). Checked against
/// `Cargo.lock` by a test, so a tract upgrade cannot silently reuse old entries.
pub const TRACT_VERSION: &str = "0.23.9";

/// Bumped whenever what Weir stores in an entry changes.
const FORMAT_VERSION: u32 = 1;

/// Where cached models live, or that there is no cache.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CacheLocation {
    /// `WEIR_MODEL_CACHE`, else `$XDG_CACHE_HOME/weir/models`, else `$HOME/.cache/weir/models`.
    #[default]
    FromEnvironment,
    /// This directory.
    Dir(PathBuf),
    /// No cache: every load parses the source.
    Off,
}

impl CacheLocation {
    /// The directory this location stands for, or `None` when caching is off.
    pub fn resolve(&self) -> Option<PathBuf> {
        match self {
            CacheLocation::Off => None,
            CacheLocation::Dir(dir) => Some(dir.clone()),
            CacheLocation::FromEnvironment => {
                let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
                if let Some(dir) = var(CACHE_ENV) {
                    return (dir != "off").then(|| PathBuf::from(dir));
                }
                if let Some(xdg) = var("XDG_CACHE_HOME") {
                    return Some(PathBuf::from(xdg).join("weir/models"));
                }
                var("HOME").map(|home| PathBuf::from(home).join(".cache/weir/models"))
            }
        }
    }
}

/// What happened when a model was looked up in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Caching is off.
    Off,
    /// The entry was read: the source was not parsed.
    Hit,
    /// No entry: the source was parsed and an entry written.
    Stored,
    /// An entry existed but did not match its checksum or could not be read: it was deleted,
    /// the source parsed, and a new entry written.
    Rebuilt,
    /// The source was parsed but no entry could be written (reason logged).
    NotStored,
}

/// One model's entry in a cache directory.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    dir: PathBuf,
    stem: String,
    key: String,
}

impl CacheEntry {
    /// The entry for `source` loaded with `options` (any text that changes the prepared model).
    /// The source's SHA-256 is taken from its digest memo when the file's size, modification
    /// time and inode are those recorded there; otherwise the whole source is read once to
    /// checksum it, and the memo rewritten.
    pub fn for_source(dir: &Path, source: &Path, options: &str) -> io::Result<CacheEntry> {
        // `<directory>.<file stem>`: many models are called `model.onnx`.
        let name = |p: Option<&std::ffi::OsStr>| p.map(|s| s.to_string_lossy().into_owned());
        let file = name(source.file_stem()).unwrap_or_else(|| "model".into());
        let stem = match name(source.parent().and_then(Path::file_name)) {
            Some(dir) => format!("{dir}.{file}"),
            None => file,
        };
        let digest = source_digest(&dir.join(format!("{stem}.digest")), source)?;
        let mut hasher = Sha256::new();
        hasher.update(digest.as_bytes());
        hasher.update(options.as_bytes());
        hasher.update(TRACT_VERSION.as_bytes());
        hasher.update(FORMAT_VERSION.to_le_bytes());
        Ok(CacheEntry {
            dir: dir.to_path_buf(),
            stem,
            // 128 of the 256 bits are plenty to tell versions of one file apart.
            key: hasher.finalize()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        })
    }

    /// The entry's NNEF tar.
    pub fn model_path(&self) -> PathBuf {
        self.dir
            .join(format!("{}-{}.nnef.tar", self.stem, self.key))
    }

    /// The checksum file beside the tar.
    pub fn checksum_path(&self) -> PathBuf {
        self.dir.join(format!("{}-{}.crc32", self.stem, self.key))
    }

    /// The cached model if the entry exists and its bytes match its checksum. `Ok(None)` when
    /// there is no entry; an error when there is one that cannot be trusted.
    pub fn read(&self) -> Result<Option<TypedModel>, CacheEntryError> {
        let tar = self.model_path();
        if !tar.is_file() {
            return Ok(None);
        }
        let expected = fs::read_to_string(self.checksum_path())
            .map_err(|e| CacheEntryError::Corrupt(format!("no checksum file: {e}")))?;
        let found = crc32(&tar).map_err(corrupt)?;
        if expected.trim() != found {
            return Err(CacheEntryError::Corrupt(format!(
                "checksum {found} does not match the recorded {}",
                expected.trim()
            )));
        }
        let mut reader = BufReader::with_capacity(1 << 20, File::open(&tar).map_err(corrupt)?);
        let model = nnef()
            .model_for_read(&mut reader)
            .map_err(|e| CacheEntryError::Corrupt(format!("{e:#}")))?;
        Ok(Some(model))
    }

    /// Writes `model` as this entry (temporary file, checksum, rename), then removes other
    /// entries of the same source stem, which are older versions.
    pub fn write(&self, model: &TypedModel) -> Result<(), CacheEntryError> {
        fs::create_dir_all(&self.dir).map_err(CacheEntryError::Write)?;
        // Unique to this write: the process id, and a counter for writers within the process.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let unique = format!("{}.{n}", std::process::id());
        let tmp = self
            .dir
            .join(format!(".{}-{}.{unique}.tmp", self.stem, self.key));
        let result = self.write_via(&tmp, model);
        if result.is_err() {
            fs::remove_file(&tmp).ok();
        }
        result?;
        self.remove_older();
        Ok(())
    }

    fn write_via(&self, tmp: &Path, model: &TypedModel) -> Result<(), CacheEntryError> {
        let file = File::create(tmp).map_err(CacheEntryError::Write)?;
        // Deterministic (fixed timestamps): two processes writing the same entry at once write
        // the same bytes, so neither sees the other's checksum as a mismatch.
        let writer = nnef()
            .write_to_tar_with_config(model, BufWriter::with_capacity(1 << 20, file), false, true)
            .map_err(|e| CacheEntryError::Serialize(format!("{e:#}")))?;
        let file = writer
            .into_inner()
            .map_err(|e| CacheEntryError::Write(e.into_error()))?;
        file.sync_all().map_err(CacheEntryError::Write)?;
        drop(file);
        let checksum = crc32(tmp).map_err(CacheEntryError::Write)?;
        // The checksum goes first: a tar under its final name always has one to be checked
        // against (a crash in between leaves a checksum with no tar, which reads as a miss).
        let sum_tmp = tmp.with_extension("sum.tmp");
        fs::write(&sum_tmp, format!("{checksum}\n")).map_err(CacheEntryError::Write)?;
        fs::rename(&sum_tmp, self.checksum_path()).map_err(CacheEntryError::Write)?;
        fs::rename(tmp, self.model_path()).map_err(CacheEntryError::Write)?;
        Ok(())
    }

    /// Deletes the entry (after it was found corrupt).
    pub fn remove(&self) {
        fs::remove_file(self.model_path()).ok();
        fs::remove_file(self.checksum_path()).ok();
    }

    fn remove_older(&self) {
        let Ok(listing) = fs::read_dir(&self.dir) else {
            return;
        };
        let prefix = format!("{}-", self.stem);
        for entry in listing.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            // `<key>.nnef.tar` or `<key>.crc32`, with a key of 32 hex digits: an entry of this
            // stem. (A longer stem that starts with this one has no such shape after it.)
            let key = rest.split('.').next().unwrap_or("");
            if key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()) && key != self.key {
                fs::remove_file(entry.path()).ok();
            }
        }
    }
}

/// Why a cache entry could not be used or written.
#[derive(Debug, thiserror::Error)]
pub enum CacheEntryError {
    /// The entry exists but cannot be trusted or read.
    #[error("corrupt cache entry: {0}")]
    Corrupt(String),
    /// tract could not write this model as NNEF (an operator without an NNEF form).
    #[error("tract cannot write this model as NNEF: {0}")]
    Serialize(String),
    /// The cache directory or file could not be written.
    #[error("cannot write the cache: {0}")]
    Write(io::Error),
}

fn corrupt(e: io::Error) -> CacheEntryError {
    CacheEntryError::Corrupt(e.to_string())
}

/// tract's NNEF with every operator set Weir's models use.
fn nnef() -> tract_nnef::framework::Nnef {
    let mut nnef = tract_nnef::nnef().with_onnx().with_tract_transformers();
    nnef.registries.push(weir_registry());
    // Keep input and output names as they are (`past_k.0`), not made NNEF identifiers.
    nnef.allow_extended_identifier_syntax(true);
    nnef
}

/// NNEF forms for the operators tract 0.23 can run but not write: the exact GELU its
/// declutter makes of `x/2 * (1 + erf(x/sqrt 2))` (Whisper, Piper).
fn weir_registry() -> tract_nnef::internal::Registry {
    let mut registry = tract_nnef::internal::Registry::new("weir")
        .with_doc("Operators Weir's model cache writes that tract's NNEF has no form for.");
    registry.register_unit_element_wise("weir_gelu_exact", &GeluExact {});
    registry
}

/// Calls `f` on the file's bytes, one block after the other.
fn for_each_block(path: &Path, mut f: impl FnMut(&[u8])) -> io::Result<()> {
    let mut file = File::open(path)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(());
        }
        f(&buffer[..n]);
    }
}

/// The SHA-256 of `source` (64 hex digits), from the memo at `memo` when it records this
/// path with the file's current signature, else computed and recorded there (a memo that
/// cannot be written costs nothing but the next start's checksum).
///
/// Like git's index, the signature is the size, the modification time in nanoseconds and the
/// inode: replacing a model file (a fetch, a copy, an edit) changes at least one of them.
fn source_digest(memo: &Path, source: &Path) -> io::Result<String> {
    let signature = file_signature(source)?;
    let path = source.canonicalize()?.to_string_lossy().into_owned();
    if let Ok(text) = fs::read_to_string(memo) {
        let mut lines = text.lines();
        if lines.next() == Some(path.as_str()) && lines.next() == Some(signature.as_str()) {
            if let Some(digest) = lines
                .next()
                .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Ok(digest.to_string());
            }
        }
    }
    let mut hasher = Sha256::new();
    for_each_block(source, |block| hasher.update(block))?;
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // The signature again: a file that changed while it was read is not recorded.
    if file_signature(source)? == signature {
        let tmp = memo.with_extension(format!("{}.tmp", std::process::id()));
        let written = fs::create_dir_all(memo.parent().unwrap_or(Path::new(".")))
            .and_then(|()| fs::write(&tmp, format!("{path}\n{signature}\n{digest}\n")))
            .and_then(|()| fs::rename(&tmp, memo));
        if written.is_err() {
            fs::remove_file(&tmp).ok();
        }
    }
    Ok(digest)
}

/// Size, modification time (ns since the epoch) and inode of `path`, as one line.
fn file_signature(path: &Path) -> io::Result<String> {
    let meta = fs::metadata(path)?;
    let modified = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0u64;
    Ok(format!("{} {modified} {inode}", meta.len()))
}

/// The file's CRC-32, as 8 hex digits.
fn crc32(path: &Path) -> io::Result<String> {
    let mut hasher = crc32fast::Hasher::new();
    for_each_block(path, |block| hasher.update(block))?;
    Ok(format!("{:08x}", hasher.finalize()))
}
