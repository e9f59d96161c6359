//! `CrashAtSync`: the simulated disk with every fsync from the `n`-th on
//! failing without syncing, a crash before that fsync returns. The storage
//! tests (redb over the seam, the backend, its replacement) use it to
//! crash a run of writes before any one of its fsyncs.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{Disk, SimDisk};

pub struct CrashAtSync {
    disk: Arc<SimDisk>,
    syncs_left: AtomicUsize,
}

impl CrashAtSync {
    /// Fails the `fail_at`-th fsync from now (0: the next one) and every
    /// one after it.
    pub fn new(disk: Arc<SimDisk>, fail_at: usize) -> Arc<CrashAtSync> {
        Arc::new(CrashAtSync {
            disk,
            syncs_left: AtomicUsize::new(fail_at),
        })
    }

    /// Never fails until `arm`ed: for setup whose fsyncs are not under test.
    pub fn unarmed(disk: Arc<SimDisk>) -> Arc<CrashAtSync> {
        CrashAtSync::new(disk, usize::MAX)
    }

    /// Counts again from now, as `new` does.
    pub fn arm(&self, fail_at: usize) {
        self.syncs_left.store(fail_at, Ordering::SeqCst);
    }

    fn sync_or_crash(&self) -> io::Result<()> {
        let left = self.syncs_left.load(Ordering::SeqCst);
        if left == 0 {
            return Err(io::Error::other("crash before this fsync"));
        }
        self.syncs_left.store(left - 1, Ordering::SeqCst);
        Ok(())
    }
}

impl Disk for CrashAtSync {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.disk.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.disk.list(dir)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.disk.read(path)
    }
    fn read_at(&self, path: &Path, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.disk.read_at(path, offset, out)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.disk.file_len(path)
    }
    fn create(&self, path: &Path) -> io::Result<()> {
        self.disk.create(path)
    }
    fn append(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.disk.append(path, data)
    }
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        self.disk.write_at(path, offset, data)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.disk.truncate(path, len)
    }
    fn write_zeros_ahead(&self, path: &Path, offset: u64, len: u64) -> io::Result<()> {
        self.disk.write_zeros_ahead(path, offset, len)
    }
    fn sync(&self, path: &Path) -> io::Result<()> {
        self.sync_or_crash()?;
        self.disk.sync(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.disk.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.disk.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.disk.sync_dir(dir)
    }
}
