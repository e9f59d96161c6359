//! The backend against a model: crashes before any fsync of a run of
//! batches keep exactly the committed ones; bit rot anywhere in the file
//! is refused or harmless, never served.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use proptest::prelude::*;

use super::{Backend, Batch, Error};
use crate::mvcc::{KeyValue, Record, Revision, NEVER_COMPACTED};
use crate::storage::{Disk, SimDisk};

fn db_path() -> PathBuf {
    PathBuf::from("/node/member/backend/db.redb")
}

/// What the backend must hold: revisions, consistent index, compaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    records: BTreeMap<Revision, Record>,
    consistent_index: u64,
    compacted: Option<i64>,
}

impl Model {
    fn apply(&self, batch: &Batch) -> Model {
        let mut next = self.clone();
        next.records.extend(batch.records.iter().cloned());
        if let Some((compacted, removed)) = &batch.compaction {
            for revision in removed {
                next.records.remove(revision);
            }
            next.compacted = Some(*compacted);
        }
        next.consistent_index = batch.consistent_index;
        next
    }

    fn read(backend: &Backend) -> Result<Model, Error> {
        let compacted = backend.compact_revision()?;
        Ok(Model {
            records: backend.records()?.into_iter().collect(),
            consistent_index: backend.consistent_index()?,
            compacted: (compacted != NEVER_COMPACTED).then_some(compacted),
        })
    }
}

/// The simulated disk, with every fsync from the `n`-th on failing (not
/// syncing): a crash before that fsync returns.
struct CrashAtSync {
    disk: Arc<SimDisk>,
    syncs_left: AtomicUsize,
}

impl CrashAtSync {
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

/// Batches as the apply path makes them: revisions going up, puts and
/// deletes of a few keys, now and then a compaction of some old ones.
fn batches() -> impl Strategy<Value = Vec<Batch>> {
    let change = (
        0u8..12,
        prop::option::weighted(0.8, (any::<u8>(), 0usize..3000)),
    );
    let batch = (
        prop::collection::vec(prop::collection::vec(change, 1..4), 0..4),
        prop::option::weighted(0.2, any::<prop::sample::Index>()),
    );
    prop::collection::vec(batch, 1..10).prop_map(|drafts| {
        let mut main = 1i64;
        let mut index = 10u64;
        let mut stored: Vec<Revision> = Vec::new();
        let mut batches = Vec::new();
        for (txns, compact) in drafts {
            let mut records = Vec::new();
            for txn in txns {
                main += 1;
                for (sub, (key, change)) in txn.into_iter().enumerate() {
                    let revision = Revision::new(main, sub as i64);
                    let key = vec![b'k', key];
                    let record = match change {
                        Some((byte, len)) => Record::Put(KeyValue {
                            key,
                            create_revision: main,
                            mod_revision: main,
                            version: 1,
                            value: vec![byte; len],
                            lease: 0,
                        }),
                        None => Record::Tombstone { key },
                    };
                    stored.push(revision);
                    records.push((revision, record));
                }
            }
            let compaction = compact.filter(|_| !stored.is_empty()).map(|at| {
                let upto = at.index(stored.len());
                let removed: Vec<Revision> = stored.drain(..upto).collect();
                (stored.first().map_or(main, |first| first.main - 1), removed)
            });
            index += 1 + records.len() as u64;
            batches.push(Batch {
                consistent_index: index,
                records,
                compaction,
            });
        }
        batches
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_crash_at_any_fsync_keeps_exactly_the_committed_batches(
        batches in batches(),
        fail_at in 0usize..24,
        torn_seed in any::<u64>(),
    ) {
        let sim = Arc::new(SimDisk::new());
        sim.create_dir_all(db_path().parent().unwrap()).unwrap();
        let disk = Arc::new(CrashAtSync {
            disk: sim.clone(),
            syncs_left: AtomicUsize::new(fail_at),
        });
        let mut committed = Model::default();
        let mut in_flight = None;
        match Backend::open(disk, &db_path()) {
            Ok(backend) => {
                for batch in &batches {
                    let next = committed.apply(batch);
                    if backend.commit(batch).is_err() {
                        in_flight = Some(next);
                        break;
                    }
                    committed = next;
                }
                // Power loss: no clean close runs.
                std::mem::forget(backend);
            }
            // The crash came while the database was being made: it must
            // open empty.
            Err(Error::Engine(_)) => {}
            Err(error) => prop_assert!(false, "{error}"),
        }
        sim.crash(torn_seed);
        let backend = Backend::open(sim.clone(), &db_path()).expect("a crashed backend opens");
        let found = Model::read(&backend).expect("and reads");
        prop_assert!(
            found == committed || Some(&found) == in_flight.as_ref(),
            "found {} records at index {}; committed {} at {}",
            found.records.len(),
            found.consistent_index,
            committed.records.len(),
            committed.consistent_index
        );
    }

    #[test]
    fn bit_rot_is_refused_or_harmless_never_served(
        batches in batches(),
        rot_seed in any::<u64>(),
    ) {
        let sim = Arc::new(SimDisk::new());
        sim.create_dir_all(db_path().parent().unwrap()).unwrap();
        let mut model = Model::default();
        {
            let backend = Backend::open(sim.clone(), &db_path()).unwrap();
            for batch in &batches {
                backend.commit(batch).unwrap();
                model = model.apply(batch);
            }
        }
        sim.crash(0);
        let flipped = sim.corrupt(rot_seed);
        prop_assume!(flipped.is_some());
        let read = Backend::open(sim.clone(), &db_path()).and_then(|backend| Model::read(&backend));
        if let Ok(found) = read {
            prop_assert_eq!(found, model, "rot served: {:?}", flipped);
        }
    }
}
