//! The real filesystem with injected failures, for the store's failure paths: while `armed`, a
//! write to a file whose path contains `fail_writes` fails (a record write after the log was
//! synced: ENOSPC, EIO), and removing a file whose name ends with `fail_removals` fails. Every
//! removal that succeeds is recorded, in order.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use online_backup::io::{DirEntry, FileHandle, Fs, LockGuard, Metadata, OpenMode};

use super::support::fs;

#[derive(Debug, Default)]
pub struct Faulty {
    pub fail_writes: Option<&'static str>,
    pub fail_removals: Option<&'static str>,
    pub armed: Arc<AtomicBool>,
    pub removed: Arc<Mutex<Vec<String>>>,
}

#[derive(Debug)]
struct FaultyFile {
    inner: Box<dyn FileHandle>,
    fails: bool,
    armed: Arc<AtomicBool>,
}

impl FileHandle for FaultyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        if self.fails && self.armed.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("no space left on device (injected)"));
        }
        self.inner.write_all_at(buf, offset)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync(&self) -> std::io::Result<()> {
        self.inner.sync()
    }
}

impl Fs for Faulty {
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn FileHandle>> {
        let fails = self
            .fail_writes
            .is_some_and(|p| path.to_string_lossy().contains(p));
        Ok(Box::new(FaultyFile {
            inner: fs().open(path, mode)?,
            fails,
            armed: self.armed.clone(),
        }))
    }
    fn metadata(&self, path: &Path) -> std::io::Result<Option<Metadata>> {
        fs().metadata(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<DirEntry>> {
        fs().read_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        fs().create_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        fs().rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let refused = self.fail_removals.is_some_and(|s| name.ends_with(s));
        if refused && self.armed.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("permission denied (injected)"));
        }
        fs().remove_file(path)?;
        self.removed.lock().unwrap().push(name);
        Ok(())
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        fs().remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        fs().sync_dir(path)
    }
    fn lock_dir(&self, dir: &Path) -> std::io::Result<Box<dyn LockGuard>> {
        fs().lock_dir(dir)
    }
    fn available_space(&self, path: &Path) -> std::io::Result<u64> {
        fs().available_space(path)
    }
}
