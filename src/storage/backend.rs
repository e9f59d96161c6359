//! redb over the disk seam: the storage engine of the on-disk MVCC backend
//! (issue 11) reads and writes its one file through a `Disk`, so the
//! simulator's disk sits under it unchanged, with lost unsynced writes,
//! torn tails and bit rot.
//!
//! Why redb (docs/storage-backend-research.md): a maintained, crash-safe,
//! copy-on-write B-tree in pure Rust, like etcd's bbolt, whose
//! `StorageBackend` trait lets it run on a file it does not open itself.
//! Given a backend, redb opens no file, takes no lock, starts no thread and
//! reads no clock or random source (checked in its 5.0 source: its
//! `std::thread::spawn`s and `std::fs` uses are in its tests and its own
//! `FileBackend`), so it runs inside madsim. A commit is one synchronous
//! call (page writes, then `sync_data`): callers on the runtime run it
//! through `storage::blocking`.
//!
//! The file is created empty and made durable (name included) before redb
//! sees it; redb then never creates, renames or removes a file, so no
//! later `sync_dir` is needed. An empty file is a new database.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{BackendError, StorageBackend};

use super::disk::Disk;

/// One redb database file on a `Disk`.
pub struct DiskBackend {
    disk: Arc<dyn Disk>,
    path: PathBuf,
}

impl DiskBackend {
    /// The backend of the existing file at `path`.
    pub fn open(disk: Arc<dyn Disk>, path: &Path) -> io::Result<DiskBackend> {
        disk.file_len(path)?;
        Ok(DiskBackend {
            disk,
            path: path.to_path_buf(),
        })
    }

    /// Creates an empty file at `path`, durable with its name, and returns
    /// its backend: redb makes a new database of it.
    pub fn create(disk: Arc<dyn Disk>, path: &Path) -> io::Result<DiskBackend> {
        let dir = path
            .parent()
            .ok_or_else(|| io::Error::other("path has no parent"))?;
        disk.create(path)?;
        disk.sync(path)?;
        disk.sync_dir(dir)?;
        DiskBackend::open(disk, path)
    }
}

impl fmt::Debug for DiskBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskBackend")
            .field("path", &self.path)
            .finish()
    }
}

impl StorageBackend for DiskBackend {
    fn len(&self) -> Result<u64, BackendError> {
        Ok(self.disk.file_len(&self.path)?)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendError> {
        Ok(self.disk.read_at(&self.path, offset, out)?)
    }

    /// Growth reserves the blocks, so a full disk fails here, at the
    /// commit that needs the room, rather than at a later page write. It is
    /// synced at once: a file system changes a length by truncate or
    /// fallocate atomically (after a crash the file has the old length or
    /// the new one), while the disk seam's contract only promises what was
    /// synced, and redb refuses a file whose length fits no layout it
    /// could have made (the crash proptests in backend_tests and
    /// backend/tests found this). A growth whose sync fails is undone.
    fn set_len(&self, len: u64) -> Result<(), BackendError> {
        let current = self.disk.file_len(&self.path)?;
        if len <= current {
            return Ok(self.disk.truncate(&self.path, len)?);
        }
        self.disk.allocate(&self.path, len)?;
        if let Err(error) = self.disk.sync(&self.path) {
            let _undone = self.disk.truncate(&self.path, current);
            return Err(error.into());
        }
        Ok(())
    }

    fn sync_data(&self) -> Result<(), BackendError> {
        Ok(self.disk.sync(&self.path)?)
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        Ok(self.disk.write_at(&self.path, offset, data)?)
    }
}
