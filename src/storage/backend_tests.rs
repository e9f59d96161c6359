//! redb over the disk seam: round trips on both disks, and on the
//! simulated one, crashes at every fsync of a run of transactions, with
//! torn unsynced writes, against a model of what was committed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use redb::{Builder, Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::backend::DiskBackend;
use super::crash_at_sync::CrashAtSync;
use super::disk::Disk;
use super::real_disk::RealDisk;
use super::sim_disk::SimDisk;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
/// Small, so evictions and early page writes really happen.
const CACHE_BYTES: usize = 64 * 1024;

fn db_path() -> PathBuf {
    PathBuf::from("/node/member/backend/db.redb")
}

/// A key's value as the model holds it: `len` copies of `byte`.
type Model = BTreeMap<Vec<u8>, Vec<u8>>;
/// One transaction: puts (`Some`) and deletes (`None`).
type Txn = Vec<(Vec<u8>, Option<Vec<u8>>)>;

fn commit(db: &Database, txn: &Txn) -> Result<(), redb::Error> {
    let write = db.begin_write()?;
    {
        let mut table = write.open_table(TABLE)?;
        for (key, value) in txn {
            match value {
                Some(value) => {
                    table.insert(key.as_slice(), value.as_slice())?;
                }
                None => {
                    table.remove(key.as_slice())?;
                }
            }
        }
    }
    write.commit()?;
    Ok(())
}

fn contents(db: &Database) -> Model {
    let read = db.begin_read().expect("read transaction");
    let table = match read.open_table(TABLE) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Model::new(),
        Err(error) => panic!("open table: {error}"),
    };
    table
        .range(..)
        .expect("range")
        .map(|entry| {
            let (key, value) = entry.expect("entry");
            (key.value().to_vec(), value.value().to_vec())
        })
        .collect()
}

fn applied(model: &Model, txn: &Txn) -> Model {
    let mut next = model.clone();
    for (key, value) in txn {
        match value {
            Some(value) => next.insert(key.clone(), value.clone()),
            None => next.remove(key),
        };
    }
    next
}

fn open(disk: &Arc<SimDisk>, path: &Path) -> Database {
    let backend = DiskBackend::open(disk.clone(), path).expect("the file survives");
    Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create_with_backend(backend)
        .expect("a crashed database opens (repaired)")
}

fn txn() -> impl Strategy<Value = Txn> {
    // Few keys, so deletes and overwrites hit; values up to a few pages.
    let key = (0u8..24).prop_map(|k| vec![b'k', k]);
    let value = (any::<u8>(), 1usize..6000).prop_map(|(byte, len)| vec![byte; len]);
    prop::collection::vec((key, prop::option::weighted(0.8, value)), 1..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever fsync the crash comes before, and however much of the
    /// unsynced writes lands, the database opens holding every
    /// transaction whose commit returned, plus at most the one in flight
    /// whole, never part of it.
    #[test]
    fn a_crash_at_any_fsync_keeps_exactly_the_committed_transactions(
        txns in prop::collection::vec(txn(), 1..12),
        fail_at in 0usize..16,
        torn_seed in any::<u64>(),
    ) {
        let disk = Arc::new(SimDisk::new());
        disk.create_dir_all(db_path().parent().unwrap()).unwrap();
        let crashing = CrashAtSync::unarmed(disk.clone());
        let db = Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(DiskBackend::create(crashing.clone(), &db_path()).unwrap())
            .unwrap();
        crashing.arm(fail_at);
        let mut committed = Model::new();
        let mut in_flight = None;
        for txn in &txns {
            let next = applied(&committed, txn);
            match commit(&db, txn) {
                Ok(()) => committed = next,
                Err(_) => {
                    in_flight = Some(next);
                    break;
                }
            }
        }
        // Power loss: no clean close runs.
        std::mem::forget(db);
        disk.crash(torn_seed);
        let found = contents(&open(&disk, &db_path()));
        prop_assert!(
            found == committed || Some(&found) == in_flight.as_ref(),
            "found {} keys; committed {}, in flight {:?}",
            found.len(),
            committed.len(),
            in_flight.as_ref().map(Model::len)
        );
    }
}

#[test]
fn a_database_survives_a_clean_close_on_the_real_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let disk: Arc<dyn Disk> = Arc::new(RealDisk::new());
    let txn: Txn = vec![
        (b"a".to_vec(), Some(vec![1; 5000])),
        (b"b".to_vec(), Some(b"two".to_vec())),
    ];
    {
        let db = Builder::new()
            .create_with_backend(DiskBackend::create(disk.clone(), &path).unwrap())
            .unwrap();
        commit(&db, &txn).unwrap();
        commit(&db, &vec![(b"a".to_vec(), None)]).unwrap();
    }
    // A new disk, as after a restart: nothing cached.
    let disk: Arc<dyn Disk> = Arc::new(RealDisk::new());
    let db = Builder::new()
        .create_with_backend(DiskBackend::open(disk, &path).unwrap())
        .unwrap();
    assert_eq!(
        contents(&db),
        Model::from([(b"b".to_vec(), b"two".to_vec())])
    );
}

#[test]
fn opening_a_missing_file_is_an_error_not_a_new_database() {
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new());
    let error = DiskBackend::open(disk, &db_path()).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn reads_past_the_end_fail_on_both_disks() {
    let dir = tempfile::tempdir().unwrap();
    let real_path = dir.path().join("f");
    let disks: [(Arc<dyn Disk>, PathBuf); 2] = [
        (Arc::new(RealDisk::new()), real_path),
        (Arc::new(SimDisk::new()), PathBuf::from("/d/f")),
    ];
    for (disk, path) in disks {
        disk.create_dir_all(path.parent().unwrap()).unwrap();
        disk.create(&path).unwrap();
        disk.append(&path, b"0123456789").unwrap();
        assert_eq!(disk.file_len(&path).unwrap(), 10);
        let mut out = [0u8; 4];
        disk.read_at(&path, 6, &mut out).unwrap();
        assert_eq!(&out, b"6789");
        let error = disk.read_at(&path, 7, &mut out).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
