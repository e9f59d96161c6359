//! The disk seam: every byte the node persists goes through a `Disk`.
//!
//! Paths are plain `Path`s, but only the storage modules hold them. The
//! contract is the POSIX durability contract, stated so the simulated disk
//! can model it honestly: data written to a file is durable only after
//! `sync(file)`, and a created, renamed or removed name is durable only
//! after `sync_dir(parent)`.

use std::io;
use std::path::Path;

/// Writes reach the platter in whole sectors: after a crash, an unsynced
/// write may have landed in part, a run of whole sectors (file-aligned)
/// from its start. The simulated disk tears writes this way, and the WAL
/// tells a torn write from damage by it.
pub const SECTOR_BYTES: usize = 512;

pub trait Disk: Send + Sync + 'static {
    /// Creates the directory and its parents (no-op if it exists).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names (not paths) of the files in `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// The whole content of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Fills `out` from `offset` of a file (pread); `UnexpectedEof` if the
    /// file ends first. What was written, synced or not (the page cache).
    fn read_at(&self, path: &Path, offset: u64, out: &mut [u8]) -> io::Result<()>;
    /// A file's length in bytes.
    fn file_len(&self, path: &Path) -> io::Result<u64>;
    /// Creates an empty file, replacing any file of that name.
    fn create(&self, path: &Path) -> io::Result<()>;
    /// Appends to an existing file.
    fn append(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Writes `data` at `offset` of an existing file (pwrite), growing it
    /// if the write ends past its end.
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Sets a file's length: cuts it down, or grows it with zeros.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Grows a file to `len` bytes of zeros with its blocks reserved on
    /// the device, as etcd preallocates WAL segments: writes inside it then
    /// never fail for want of space, so a member rides out a full disk
    /// until it needs a new segment. A disk that cannot reserve grows the
    /// file sparse, as `truncate`.
    fn allocate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.truncate(path, len)
    }
    /// Writes out the zeros a file already holds in `[offset, offset +
    /// len)`, inside its length, ahead of the data that will overwrite
    /// them. Changes no content: a hint for the real disk, where blocks
    /// reserved by `allocate` are only marked unwritten, and the fdatasync
    /// after the first write into each one must also write the file's
    /// metadata (a second device write). Zeros written out once, a block
    /// at a time, turn that into one metadata write per range. The
    /// simulated disk has nothing to gain and does nothing.
    fn write_zeros_ahead(&self, _path: &Path, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
    /// Makes the file's data durable (fdatasync).
    fn sync(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames a file (durable after `sync_dir`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file (durable after `sync_dir`).
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// Writes a whole file crash-safely: temp file, fsync, rename, fsync dir.
/// After a crash either the old content or the new one is there, never a mix.
pub fn write_atomically(disk: &dyn Disk, path: &Path, data: &[u8]) -> io::Result<()> {
    write_preallocated(disk, path, data, data.len() as u64)
}

/// As `write_atomically`, with the file grown to `len` bytes (zeros after
/// `data`) before it is synced: the file appears whole at its final size,
/// so a later write inside it changes no length, and a file found shorter
/// was cut (the WAL's preallocated segments, as etcd's).
pub fn write_preallocated(disk: &dyn Disk, path: &Path, data: &[u8], len: u64) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent"))?;
    let mut temp_name = path
        .file_name()
        .ok_or_else(|| io::Error::other("path has no name"))?
        .to_os_string();
    temp_name.push(".tmp");
    let temp = dir.join(temp_name);
    disk.create(&temp)?;
    disk.append(&temp, data)?;
    if len > data.len() as u64 {
        disk.allocate(&temp, len)?;
    }
    disk.sync(&temp)?;
    disk.rename(&temp, path)?;
    disk.sync_dir(dir)
}
