//! An in-memory `Disk` for the simulator that models durability honestly.
//!
//! It outlives node restarts (the simulator keeps one per node). Bytes
//! written but not synced are lost when the node crashes, except for a
//! possibly torn prefix (whole file-aligned sectors) of what was written
//! since the last sync; names created, renamed or
//! removed are undone by a crash unless their directory was synced. The
//! nemesis can also make the disk full. madsim's own fs models none of
//! this, which is why this file exists.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::disk::{Disk, SECTOR_BYTES};

#[derive(Debug, Default)]
pub struct SimDisk {
    state: Mutex<State>,
}

/// Faults the nemesis switches on and off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskFaults {
    /// Every write fails with "no space left on device".
    pub full: bool,
}

#[derive(Debug, Default)]
struct State {
    next_inode: u64,
    inodes: BTreeMap<u64, Inode>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    faults: DiskFaults,
    /// The process using the disk is gone (`fence`): nothing it still runs
    /// (destructors, as madsim drops a killed node's tasks) may change
    /// the disk until the crash.
    fenced: bool,
}

#[derive(Debug, Default, Clone)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// The span written since the last sync (start of the first write to
    /// end of the furthest), while every change since then was a write at
    /// or past the durable end or inside it: a crash may leave a torn
    /// prefix of it.
    written: Option<std::ops::Range<usize>>,
    /// The file was emptied or cut below its durable length since the last
    /// sync: a crash leaves only the durable content.
    rewritten: bool,
}

impl Inode {
    fn write_at(&mut self, offset: usize, bytes: &[u8]) {
        let end = offset + bytes.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[offset..end].copy_from_slice(bytes);
        self.note_written(offset..end);
    }

    fn note_written(&mut self, span: std::ops::Range<usize>) {
        self.written = Some(match self.written.take() {
            Some(old) => old.start.min(span.start)..old.end.max(span.end),
            None => span,
        });
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    pub fn set_faults(&self, faults: DiskFaults) {
        self.lock().faults = faults;
    }

    /// Refuses every change from now until `crash`: called before the
    /// node is killed, so what its killed tasks still run as they are
    /// dropped (redb closes its database cleanly in `Drop`) cannot write
    /// what a real crash would never have written.
    pub fn fence(&self) {
        self.lock().fenced = true;
    }

    /// The process was killed (kill -9), the machine runs on: what it
    /// wrote stays in the page cache, readable and not durable, until a
    /// sync makes it so or a power loss (`crash`) drops it.
    pub fn survive_kill(&self) {
        self.lock().fenced = false;
    }

    /// Simulates power loss: everything not durable is dropped. `torn_seed`
    /// decides how much of each file's unsynced appended tail survives.
    pub fn crash(&self, torn_seed: u64) {
        let mut state = self.lock();
        state.fenced = false;
        state.names = state.durable_names.clone();
        let live: BTreeSet<u64> = state.names.values().copied().collect();
        state.inodes.retain(|id, _| live.contains(id));
        let mut draw = torn_seed;
        for inode in state.inodes.values_mut() {
            let mut survived = inode.durable.clone();
            if let Some(span) = inode.written.clone().filter(|_| !inode.rewritten) {
                // Whole sectors from the start of what was written land;
                // the first sector boundary after the start ends the first.
                draw = crate::rng::stable_hash(&[draw, span.end as u64]);
                let first_end = (span.start / SECTOR_BYTES + 1) * SECTOR_BYTES;
                let sectors = span.end.saturating_sub(first_end).div_ceil(SECTOR_BYTES) + 1;
                let landed = (draw % (sectors as u64 + 1)) as usize;
                let end = match landed {
                    0 => span.start,
                    n => (first_end + (n - 1) * SECTOR_BYTES).min(span.end),
                };
                if survived.len() < end {
                    survived.resize(end, 0);
                }
                survived[span.start..end].copy_from_slice(&inode.data[span.start..end]);
            }
            inode.data = survived.clone();
            inode.durable = survived;
            inode.written = None;
            inode.rewritten = false;
        }
    }

    /// Bit rot in data at rest: flips one bit of one durable byte, file and
    /// position chosen by `seed` (for a crashed node: its disk is all
    /// durable). Returns what was flipped, or `None` if the disk is empty.
    pub fn corrupt(&self, seed: u64) -> Option<String> {
        let mut state = self.lock();
        let files: Vec<(PathBuf, u64)> = (state.durable_names.iter())
            .filter(|(_, id)| {
                state
                    .inodes
                    .get(id)
                    .is_some_and(|inode| !inode.durable.is_empty())
            })
            .map(|(path, id)| (path.clone(), *id))
            .collect();
        if files.is_empty() {
            return None;
        }
        let draw = crate::rng::stable_hash(&[seed]);
        // Half the time a WAL segment, where rot is most dangerous (what
        // follows it in the log is lost if it is taken for a torn tail);
        // otherwise any file. Uniform over files alone would mostly hit
        // the backend, the snapshots and the WAL's old segments.
        let segments: Vec<&(PathBuf, u64)> = files
            .iter()
            .filter(|(path, _)| path.extension().is_some_and(|ext| ext == "wal"))
            .collect();
        let pick = crate::rng::stable_hash(&[draw, 1]);
        let (path, id) = if !segments.is_empty() && pick.is_multiple_of(2) {
            segments[((pick >> 1) % segments.len() as u64) as usize]
        } else {
            &files[(draw % files.len() as u64) as usize]
        };
        let inode = state.inodes.get_mut(id).expect("named inode exists");
        // Rot where the file holds data: a preallocated file's zeros past
        // its data are no one's data (and would make most flips harmless).
        let holding = inode
            .durable
            .iter()
            .rposition(|&byte| byte != 0)
            .map_or(inode.durable.len(), |last| last + 1);
        let at = (crate::rng::stable_hash(&[draw]) % holding as u64) as usize;
        let bit = (draw >> 61) as u8;
        inode.durable[at] ^= 1 << bit;
        if let Some(byte) = inode.data.get_mut(at) {
            *byte ^= 1 << bit;
        }
        Some(format!(
            "flipped bit {bit} of byte {at} of {} ({} bytes)",
            path.display(),
            inode.durable.len()
        ))
    }

    /// Total bytes held, for tests and reports.
    pub fn used_bytes(&self) -> usize {
        self.lock()
            .inodes
            .values()
            .map(|inode| inode.data.len())
            .sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("sim disk lock poisoned")
    }
}

impl State {
    fn inode_mut(&mut self, path: &Path) -> io::Result<&mut Inode> {
        let id = *self.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(self.inodes.get_mut(&id).expect("named inode exists"))
    }

    fn check_fence(&self) -> io::Result<()> {
        if self.fenced {
            return Err(io::Error::other("the disk's process has crashed"));
        }
        Ok(())
    }

    fn check_space(&self) -> io::Result<()> {
        self.check_fence()?;
        if self.faults.full {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device",
            ));
        }
        Ok(())
    }

    fn check_dir(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(dir) if !self.dirs.contains(dir) => Err(not_found(dir)),
            _ => Ok(()),
        }
    }
}

impl Disk for SimDisk {
    /// Directories are durable at once: the storage code creates them only
    /// at bootstrap, before anything is acknowledged.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.check_fence()?;
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let names = state.names.keys().filter(|path| path.parent() == Some(dir));
        Ok(names
            .filter_map(|path| path.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut state = self.lock();
        Ok(state.inode_mut(path)?.data.clone())
    }

    fn read_at(&self, path: &Path, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let mut state = self.lock();
        let data = &state.inode_mut(path)?.data;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let bytes = start
            .checked_add(out.len())
            .and_then(|end| data.get(start..end))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{}: read past the end", path.display()),
                )
            })?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let mut state = self.lock();
        Ok(state.inode_mut(path)?.data.len() as u64)
    }

    fn create(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.check_space()?;
        state.check_dir(path)?;
        if let Ok(inode) = state.inode_mut(path) {
            inode.data.clear();
            inode.written = None;
            inode.rewritten = true;
            return Ok(());
        }
        state.next_inode += 1;
        let id = state.next_inode;
        state.inodes.insert(id, Inode::default());
        state.names.insert(path.to_path_buf(), id);
        Ok(())
    }

    fn append(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut state = self.lock();
        state.check_space()?;
        let inode = state.inode_mut(path)?;
        let end = inode.data.len();
        inode.write_at(end, data);
        Ok(())
    }

    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut state = self.lock();
        state.check_space()?;
        let offset = usize::try_from(offset).map_err(io::Error::other)?;
        state.inode_mut(path)?.write_at(offset, data);
        Ok(())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.lock();
        state.check_fence()?;
        let inode = state.inode_mut(path)?;
        let len = usize::try_from(len).map_err(io::Error::other)?;
        if len < inode.data.len() {
            inode.data.truncate(len);
            if len < inode.durable.len() {
                inode.rewritten = true;
            }
            if let Some(span) = inode.written.take() {
                inode.written = Some(span.start.min(len)..span.end.min(len));
            }
        } else if len > inode.data.len() {
            let from = inode.data.len();
            inode.data.resize(len, 0);
            inode.note_written(from..len);
        }
        Ok(())
    }

    /// Growth, refused on a full disk (the blocks are reserved).
    fn allocate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.lock().check_space()?;
        self.truncate(path, len)
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.check_fence()?;
        let inode = state.inode_mut(path)?;
        match inode.written.take() {
            Some(span) if !inode.rewritten && inode.durable.len() <= inode.data.len() => {
                inode.durable.resize(inode.data.len(), 0);
                inode.durable[span.clone()].copy_from_slice(&inode.data[span]);
            }
            None if !inode.rewritten && inode.durable.len() == inode.data.len() => {}
            _ => inode.durable = inode.data.clone(),
        }
        inode.rewritten = false;
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.check_fence()?;
        state.check_dir(to)?;
        let id = state.names.remove(from).ok_or_else(|| not_found(from))?;
        state.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.check_fence()?;
        state.names.remove(path).ok_or_else(|| not_found(path))?;
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.check_fence()?;
        let in_dir = |path: &PathBuf| path.parent() == Some(dir);
        let current: Vec<(PathBuf, u64)> = state
            .names
            .iter()
            .filter(|(path, _)| in_dir(path))
            .map(|(p, id)| (p.clone(), *id))
            .collect();
        state.durable_names.retain(|path, _| !in_dir(path));
        state.durable_names.extend(current);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk_with_dir() -> (SimDisk, PathBuf) {
        let disk = SimDisk::new();
        let dir = PathBuf::from("/data");
        disk.create_dir_all(&dir).unwrap();
        (disk, dir)
    }

    #[test]
    fn corruption_flips_one_bit_of_durable_data() {
        let (disk, dir) = disk_with_dir();
        let file = dir.join("a");
        disk.create(&file).unwrap();
        disk.append(&file, &[0u8; 64]).unwrap();
        disk.sync(&file).unwrap();
        disk.sync_dir(&dir).unwrap();
        let what = disk.corrupt(7).expect("a file to corrupt");
        assert!(what.contains("/data/a"), "{what}");
        let flipped: u32 = disk
            .read(&file)
            .unwrap()
            .iter()
            .map(|byte| byte.count_ones())
            .sum();
        assert_eq!(flipped, 1);
        disk.crash(1);
        let flipped: u32 = disk
            .read(&file)
            .unwrap()
            .iter()
            .map(|byte| byte.count_ones())
            .sum();
        assert_eq!(flipped, 1, "the damage is on the platter, not in a cache");
    }

    #[test]
    fn unsynced_file_vanishes_on_crash() {
        let (disk, dir) = disk_with_dir();
        let file = dir.join("a");
        disk.create(&file).unwrap();
        disk.append(&file, b"hello").unwrap();
        disk.sync(&file).unwrap();
        disk.crash(1);
        assert!(
            disk.read(&file).is_err(),
            "a name is durable only after sync_dir"
        );
    }

    #[test]
    fn synced_data_survives_and_unsynced_tail_is_at_most_torn() {
        let (disk, dir) = disk_with_dir();
        let file = dir.join("a");
        disk.create(&file).unwrap();
        disk.sync_dir(&dir).unwrap();
        disk.append(&file, &[1u8; 100]).unwrap();
        disk.sync(&file).unwrap();
        disk.append(&file, &[2u8; 5000]).unwrap();
        for seed in 0..20 {
            disk.crash(seed);
            let data = disk.read(&file).unwrap();
            assert!(data.len() >= 100, "synced bytes are never lost");
            assert_eq!(&data[..100], &[1u8; 100][..]);
            assert!(
                data[100..].iter().all(|&b| b == 2),
                "only a prefix of the unsynced tail survives"
            );
        }
    }

    #[test]
    fn rename_is_undone_without_sync_dir() {
        let (disk, dir) = disk_with_dir();
        let (temp, target) = (dir.join("t.tmp"), dir.join("t"));
        disk.create(&temp).unwrap();
        disk.append(&temp, b"x").unwrap();
        disk.sync(&temp).unwrap();
        disk.sync_dir(&dir).unwrap();
        disk.rename(&temp, &target).unwrap();
        disk.crash(7);
        assert!(disk.read(&target).is_err());
        assert_eq!(disk.read(&temp).unwrap(), b"x");
    }

    #[test]
    fn full_disk_refuses_writes() {
        let (disk, dir) = disk_with_dir();
        disk.set_faults(DiskFaults { full: true });
        let error = disk.create(&dir.join("a")).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
    }
}
