//! The production `Disk`: std::fs with fsync of files and directories.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // The one module allowed to touch files (clippy.toml).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::disk::Disk;

/// Files written to (or read piecewise) are kept open so a WAL write is
/// one pwrite(2), not an open/write/close triple. They are not opened O_APPEND: on Linux that
/// would send every pwrite to the end of the file.
///
/// The lock covers only finding the open file, never the I/O on it: with
/// it held across calls, the WAL's fsync waited for the backend's (and
/// reads of values for both), which made the slowest writes of the scale
/// benchmark. Each file has one writer (the WAL's, the backend's), so
/// calls on one file need no lock of their own.
#[derive(Debug, Default)]
pub struct RealDisk {
    open_files: Mutex<BTreeMap<PathBuf, Arc<File>>>,
}

impl RealDisk {
    pub fn new() -> RealDisk {
        RealDisk::default()
    }

    fn with_file<T>(&self, path: &Path, f: impl FnOnce(&File) -> io::Result<T>) -> io::Result<T> {
        let file = {
            let mut files = self.open_files.lock().expect("disk lock poisoned");
            match files.get(path) {
                Some(file) => file.clone(),
                None => {
                    let file = Arc::new(OpenOptions::new().read(true).write(true).open(path)?);
                    files.insert(path.to_path_buf(), file.clone());
                    file
                }
            }
        };
        f(&file)
    }

    fn forget(&self, path: &Path) {
        self.open_files
            .lock()
            .expect("disk lock poisoned")
            .remove(path);
    }
}

impl Disk for RealDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn read_at(&self, path: &Path, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.with_file(path, |file| file.read_exact_at(out, offset))
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.with_file(path, |file| Ok(file.metadata()?.len()))
    }

    fn create(&self, path: &Path) -> io::Result<()> {
        self.forget(path);
        File::create(path).map(drop)
    }

    fn append(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.with_file(path, |mut file| {
            file.seek(io::SeekFrom::End(0))?;
            file.write_all(data)
        })
    }

    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        self.with_file(path, |file| file.write_all_at(data, offset))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.with_file(path, |file| file.set_len(len))
    }

    fn allocate(&self, path: &Path, len: u64) -> io::Result<()> {
        use std::os::unix::io::AsRawFd;
        self.with_file(path, |file| {
            let len_arg = libc::off_t::try_from(len).map_err(io::Error::other)?;
            // SAFETY: posix_fallocate on an open descriptor this disk owns;
            // it returns the error number instead of setting errno.
            match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len_arg) } {
                0 => Ok(()),
                // The file system cannot reserve blocks: grow it sparse.
                libc::EOPNOTSUPP | libc::EINVAL => file.set_len(len),
                error => Err(io::Error::from_raw_os_error(error)),
            }
        })
    }

    fn write_zeros_ahead(&self, path: &Path, offset: u64, len: u64) -> io::Result<()> {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        self.with_file(path, |file| {
            let end = offset + len;
            let mut at = offset;
            while at < end {
                let chunk = (end - at).min(ZEROS.len() as u64) as usize;
                file.write_all_at(&ZEROS[..chunk], at)?;
                at += chunk as u64;
            }
            Ok(())
        })
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        self.with_file(path, |file| file.sync_data())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.forget(from);
        self.forget(to);
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.forget(path);
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn allocate_reserves_the_blocks_a_preallocated_file_will_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        let disk = RealDisk::new();
        disk.create(&path).unwrap();
        disk.append(&path, b"head").unwrap();
        let len = 1 << 20;
        disk.allocate(&path, len).unwrap();
        let metadata = fs::metadata(&path).unwrap();
        assert_eq!(metadata.len(), len);
        // Reserved, not a hole: st_blocks counts 512-byte units.
        assert!(
            metadata.blocks() * 512 >= len,
            "{} blocks",
            metadata.blocks()
        );
        assert_eq!(&fs::read(&path).unwrap()[..4], b"head");
    }
}
