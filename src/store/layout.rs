//! Backup directories: generations and the pointer file naming the live one (BK-30 .. BK-33).
//!
//! Owns: the names in a backup directory (`CURRENT`, `generation-<n>`), reading and durably
//! switching the pointer, and resolving a directory to the store files it means.
//! Must not touch: the store files themselves, or decide when to switch (the backup client
//! does). `rename(2)` cannot replace a non-empty directory and the target may be a mount point,
//! so the only thing ever renamed is the small pointer file, as LevelDB's `CURRENT` names its
//! manifest.

use std::path::{Path, PathBuf};

use crate::io::{self, Fs};
use crate::store::StoreError;

/// The pointer file: one line, the name of the live generation (BK-30).
pub const POINTER_FILE: &str = "CURRENT";
/// A generation directory's name is this prefix plus a decimal number.
pub const GENERATION_PREFIX: &str = "generation-";
/// The pointer file is never larger than this.
const POINTER_LIMIT: u64 = 256;

/// The directory name of generation `n`.
pub fn generation_name(n: u64) -> String {
    format!("{GENERATION_PREFIX}{n}")
}

/// The number of a generation directory name, if `name` is one (canonical spelling only).
pub fn parse_generation(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(GENERATION_PREFIX)?;
    let n: u64 = digits.parse().ok()?;
    (n.to_string() == digits).then_some(n)
}

/// The live generation named by `dir/CURRENT`, or `None` when `dir` has no pointer file (a
/// plain store directory, or an empty one).
pub fn read_pointer(fs: &dyn Fs, dir: &Path) -> Result<Option<u64>, StoreError> {
    let path = dir.join(POINTER_FILE);
    let exists = fs
        .metadata(&path)
        .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?
        .is_some();
    if !exists {
        return Ok(None);
    }
    let bytes = io::read_small_file(fs, &path, POINTER_LIMIT)
        .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
    let generation = parse_pointer(&bytes).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "{} does not name a generation (it should hold one line like `generation-1`)",
            path.display()
        ))
    })?;
    Ok(Some(generation))
}

/// The generation a pointer file's contents name: exactly one line, `generation-<n>` in its
/// canonical spelling, ended by a newline; `None` for anything else (BK-30).
pub fn parse_pointer(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes)
        .ok()?
        .strip_suffix('\n')
        .and_then(parse_generation)
}

/// The directory holding the store files `dir` means: the live generation when `dir` has a
/// pointer file, else `dir` itself (BK-31). A pointer naming a missing generation is damage.
pub fn resolve(fs: &dyn Fs, dir: &Path) -> Result<PathBuf, StoreError> {
    match read_pointer(fs, dir)? {
        None => Ok(dir.to_path_buf()),
        Some(n) => {
            let live = dir.join(generation_name(n));
            match fs.metadata(&live) {
                Ok(Some(m)) if m.is_dir => Ok(live),
                Ok(_) => Err(StoreError::Corrupt(format!(
                    "{} names {}, which does not exist",
                    dir.join(POINTER_FILE).display(),
                    generation_name(n)
                ))),
                Err(e) => Err(StoreError::io(format!("reading {}", live.display()), e)),
            }
        }
    }
}

/// Durably makes generation `n` the live one (BK-32): the new pointer is written to a
/// temporary file and synced, renamed over `CURRENT`, and the directory synced. A crash at any
/// point leaves either the old or the new pointer, whole.
pub fn switch_pointer(fs: &dyn Fs, dir: &Path, n: u64) -> std::io::Result<()> {
    let line = format!("{}\n", generation_name(n));
    io::write_atomic(fs, &dir.join(POINTER_FILE), line.as_bytes())
}

/// The temporary file `switch_pointer` writes before its rename; a leftover of a crash.
pub fn pointer_temp_name() -> String {
    format!("{POINTER_FILE}.tmp")
}

#[cfg(test)]
mod tests {
    use super::*;

    // BK-30: generation names round-trip and only the canonical spelling counts.
    #[test]
    fn bk_30_generation_names() {
        assert_eq!(parse_generation(&generation_name(7)), Some(7));
        assert_eq!(parse_generation("generation-07"), None);
        assert_eq!(parse_generation("generation-"), None);
        assert_eq!(parse_generation("gen-1"), None);
        assert_eq!(parse_pointer(b"generation-12\n"), Some(12));
        for bad in [
            &b"generation-12"[..],
            b"generation-12\n\n",
            b"generation-12\r\n",
            b" generation-12\n",
            b"\xffgeneration-12\n",
            b"",
        ] {
            assert_eq!(parse_pointer(bad), None, "BK-30: {bad:?}");
        }
    }
}
