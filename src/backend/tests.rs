//! The backend against a model: crashes before any fsync of a run of
//! batches keep exactly the committed ones; bit rot anywhere in the file
//! is refused or harmless, never served.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;

use super::{Backend, Batch, Error, StateMeta};
use crate::mvcc::{ColdLog as _, KeyValue, Record, Revision, NEVER_COMPACTED};
use crate::storage::crash_at_sync::CrashAtSync;
use crate::storage::{Disk, SimDisk};

/// The crash tests delete a compaction's revisions in pieces this small,
/// so crashes fall between pieces too.
const PIECE_LIMIT: usize = 2;

fn db_path() -> PathBuf {
    PathBuf::from("/node/member/backend/db.redb")
}

/// What the backend must hold: revisions, consistent index, compaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    records: BTreeMap<Revision, Record>,
    consistent_index: u64,
    compacted: Option<i64>,
    meta: Option<StateMeta>,
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
        if let Some(meta) = &batch.meta {
            // Parts a batch leaves out stand as stored; a backend that
            // never stored any loads no meta at all.
            let state = (meta.state.clone())
                .or_else(|| next.meta.as_ref().and_then(|stored| stored.state.clone()));
            next.meta = state.map(|state| StateMeta {
                state: Some(state),
                ..meta.clone()
            });
        }
        next
    }

    fn read(backend: &Backend) -> Result<Model, Error> {
        let loaded = backend.load()?;
        Ok(Model {
            records: backend.records()?.into_iter().collect(),
            consistent_index: loaded.consistent_index,
            compacted: (loaded.compact_revision != NEVER_COMPACTED)
                .then_some(loaded.compact_revision),
            meta: loaded.meta,
        })
    }
}

/// Commits `batches` to a new backend on `sim`, closed cleanly; what it
/// must hold.
fn committed(sim: &Arc<SimDisk>, batches: &[Batch]) -> Model {
    let backend = Backend::open(sim.clone(), &db_path()).unwrap();
    let mut model = Model::default();
    for batch in batches {
        backend
            .commit_in_pieces(batch, PIECE_LIMIT, &mut |_| {})
            .unwrap();
        model = model.apply(batch);
    }
    model
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
        any::<bool>(),
    );
    prop::collection::vec(batch, 1..10).prop_map(|drafts| {
        let mut main = 1i64;
        let mut index = 10u64;
        let mut stored: Vec<Revision> = Vec::new();
        let mut batches = Vec::new();
        for (txns, compact, with_meta) in drafts {
            let mut records = Vec::new();
            for txn in txns {
                main += 1;
                for (sub, (key, change)) in txn.into_iter().enumerate() {
                    let revision = Revision::new(main, sub as i64);
                    let key = vec![b'k', key];
                    let record = match change {
                        Some((byte, len)) => Record::put(KeyValue {
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
            let meta = with_meta.then(|| StateMeta {
                term: index / 7,
                conf_state: vec![1, index as u8],
                current_revision: main,
                // Now and then unchanged: the stored parts stand.
                state: (!index.is_multiple_of(3))
                    .then(|| vec![index as u8; (index % 300) as usize]),
            });
            batches.push(Batch {
                consistent_index: index,
                records,
                compaction,
                meta,
            });
        }
        batches
    })
}

/// Commits `batches` to a new backend on `sim`, whose `fail_at`-th fsync
/// fails as a crash would stop it, until a commit fails; leaves the
/// backend unclosed (a crash runs no clean close). Returns what committed
/// and what the failed commit would have made. A crash while the
/// database was being made leaves it to open empty.
fn commit_until_a_sync_fails(
    sim: &Arc<SimDisk>,
    batches: &[Batch],
    fail_at: usize,
) -> (Model, Option<Model>) {
    sim.create_dir_all(db_path().parent().unwrap()).unwrap();
    let disk = CrashAtSync::new(sim.clone(), fail_at);
    let mut committed = Model::default();
    let mut in_flight = None;
    match Backend::open(disk, &db_path()) {
        Ok(backend) => {
            for batch in batches {
                let next = committed.apply(batch);
                if backend
                    .commit_in_pieces(batch, PIECE_LIMIT, &mut |_| {})
                    .is_err()
                {
                    in_flight = Some(next);
                    break;
                }
                committed = next;
            }
            std::mem::forget(backend);
        }
        Err(Error::Engine(_)) => {}
        Err(error) => panic!("{error}"),
    }
    (committed, in_flight)
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
        let (committed, in_flight) = commit_until_a_sync_fails(&sim, &batches, fail_at);
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

    /// kill -9 at any fsync, the machine running on: the restart reads
    /// what the page cache holds, and the member builds on it (its
    /// consistent index decides where the WAL replays from), so a power
    /// loss after that restart must leave exactly what it read. redb's
    /// open syncs the file; this pins that.
    #[test]
    fn what_a_start_after_a_kill_reads_survives_a_later_power_loss(
        batches in batches(),
        fail_at in 0usize..24,
        torn_seed in any::<u64>(),
    ) {
        let sim = Arc::new(SimDisk::new());
        commit_until_a_sync_fails(&sim, &batches, fail_at);
        sim.fence();
        sim.survive_kill();
        let backend = Backend::open(sim.clone(), &db_path()).expect("a killed backend opens");
        let read = Model::read(&backend).expect("and reads");
        std::mem::forget(backend);
        sim.crash(torn_seed);
        let backend = Backend::open(sim.clone(), &db_path()).expect("then survives a power loss");
        let found = Model::read(&backend).expect("and reads");
        prop_assert!(
            found == read,
            "the start read {} records at index {}; after the power loss {} at {}",
            read.records.len(),
            read.consistent_index,
            found.records.len(),
            found.consistent_index
        );
    }

    #[test]
    fn bit_rot_is_refused_or_harmless_never_served(
        batches in batches(),
        rot_seed in any::<u64>(),
    ) {
        let sim = Arc::new(SimDisk::new());
        sim.create_dir_all(db_path().parent().unwrap()).unwrap();
        let model = committed(&sim, &batches);
        sim.crash(0);
        let flipped = sim.corrupt(rot_seed);
        prop_assume!(flipped.is_some());
        let read = Backend::open(sim.clone(), &db_path()).and_then(|backend| Model::read(&backend));
        if let Ok(found) = read {
            prop_assert_eq!(found, model, "rot served: {:?}", flipped);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// A replacement (a snapshot installed, a migration) leaves the old
    /// database or exactly the new one, whatever fsync a crash comes
    /// before.
    #[test]
    fn a_replacement_is_all_or_nothing(
        before in batches(),
        after in batches(),
        fail_at in 0usize..12,
        torn_seed in any::<u64>(),
    ) {
        let sim = Arc::new(SimDisk::new());
        sim.create_dir_all(db_path().parent().unwrap()).unwrap();
        let old = committed(&sim, &before);
        let mut whole = after[0].clone();
        for batch in &after[1..] {
            whole.extend(batch.clone());
        }
        let new = Model::default().apply(&whole);
        let disk = CrashAtSync::new(sim.clone(), fail_at);
        let replaced = Backend::replace(disk, &db_path(), &whole).is_ok();
        sim.crash(torn_seed);
        let found = Model::read(&Backend::open(sim.clone(), &db_path()).unwrap()).unwrap();
        if replaced {
            prop_assert_eq!(found, new);
        } else {
            prop_assert!(found == old || found == new);
        }
    }
}

/// A change to the store, as the apply path makes them.
#[derive(Clone, Debug)]
enum StoreOp {
    Put(u8, u8),
    Delete(u8),
    /// Compacts at this share (in 256ths) of the way to the current revision.
    Compact(u8),
    /// The batch so far goes to the backend.
    Commit,
}

fn store_ops() -> impl Strategy<Value = Vec<StoreOp>> {
    let op = prop_oneof![
        6 => (0u8..6, any::<u8>()).prop_map(|(key, value)| StoreOp::Put(key, value)),
        2 => (0u8..6).prop_map(StoreOp::Delete),
        1 => any::<u8>().prop_map(StoreOp::Compact),
        2 => Just(StoreOp::Commit),
    ];
    prop::collection::vec(op, 1..60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The store's change journal, committed in batches, leaves the backend
    /// holding exactly the store: the store rebuilt from it has the same
    /// image.
    #[test]
    fn committed_changes_rebuild_the_store(ops in store_ops()) {
        use crate::mvcc::Store;
        let sim = Arc::new(SimDisk::new());
        sim.create_dir_all(db_path().parent().unwrap()).unwrap();
        let backend = Backend::open(sim.clone(), &db_path()).unwrap();
        let mut store = Store::new();
        store.track_changes();
        let mut index = 0;
        let commit = |store: &mut Store, index: u64| {
            let changes = store.take_changes();
            let batch = Batch {
                consistent_index: index,
                records: changes.records,
                compaction: changes.compaction,
                meta: Some(StateMeta {
                    current_revision: store.current_revision(),
                    state: Some(Vec::new()),
                    ..StateMeta::default()
                }),
            };
            backend.commit(&batch).unwrap();
        };
        for op in &ops {
            index += 1;
            match op {
                StoreOp::Put(key, value) => {
                    let mut write = store.write();
                    write.put(&[b'k', *key], [*value], 0);
                    write.end();
                }
                StoreOp::Delete(key) => {
                    let mut write = store.write();
                    write.delete_range(&[b'k', *key], None);
                    write.end();
                }
                StoreOp::Compact(share) => {
                    let current = store.current_revision();
                    let at = current * i64::from(*share) / 255;
                    let _ = store.compact(at);
                }
                StoreOp::Commit => commit(&mut store, index),
            }
        }
        commit(&mut store, index);
        let loaded = backend.load().unwrap();
        let rebuilt = Store::from_revision_log(
            loaded.meta.unwrap().current_revision,
            loaded.compact_revision,
            backend.records().unwrap().into_iter().collect(),
        )
        .unwrap();
        prop_assert_eq!(rebuilt.encode_image().unwrap(), store.encode_image().unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Compaction (Maintenance.Defragment) never changes what the backend
    /// holds, whatever fsync a crash comes before.
    #[test]
    fn compaction_keeps_the_data_across_a_crash_at_any_fsync(
        batches in batches(),
        fail_at in 0usize..24,
        torn_seed in any::<u64>(),
    ) {
        let sim = Arc::new(SimDisk::new());
        sim.create_dir_all(db_path().parent().unwrap()).unwrap();
        let model = committed(&sim, &batches);
        let crashing = CrashAtSync::unarmed(sim.clone());
        let mut backend = Backend::open(crashing.clone(), &db_path()).unwrap();
        crashing.arm(fail_at);
        let _ = backend.compact();
        // Power loss: no clean close runs.
        std::mem::forget(backend);
        sim.crash(torn_seed);
        let found = Model::read(&Backend::open(sim.clone(), &db_path()).unwrap()).unwrap();
        prop_assert_eq!(found, model);
    }
}

/// What a compaction of revisions frees, compacting the file gives back.
#[test]
fn compaction_gives_the_space_of_removed_revisions_back() {
    let sim = Arc::new(SimDisk::new());
    sim.create_dir_all(db_path().parent().unwrap()).unwrap();
    let mut backend = Backend::open(sim.clone(), &db_path()).unwrap();
    let put = |main: i64| {
        let key_value = KeyValue {
            key: format!("k{}", main % 4).into_bytes(),
            create_revision: main,
            mod_revision: main,
            version: 1,
            value: vec![7; 4096],
            lease: 0,
        };
        (Revision::new(main, 0), Record::put(key_value))
    };
    let revisions: Vec<i64> = (2..400).collect();
    for (index, chunk) in revisions.chunks(20).enumerate() {
        let batch = Batch {
            consistent_index: index as u64 + 1,
            records: chunk.iter().map(|&main| put(main)).collect(),
            ..Batch::default()
        };
        backend.commit(&batch).unwrap();
    }
    let removed: Vec<Revision> = (2..396).map(|main| Revision::new(main, 0)).collect();
    backend
        .commit(&Batch {
            consistent_index: 100,
            compaction: Some((395, removed)),
            ..Batch::default()
        })
        .unwrap();
    let before = sim.file_len(&db_path()).unwrap();
    let held = Model::read(&backend).unwrap();
    backend.compact().unwrap();
    let after = sim.file_len(&db_path()).unwrap();
    assert!(
        after * 4 < before,
        "the file went from {before} to {after} bytes"
    );
    assert_eq!(Model::read(&backend).unwrap(), held, "and holds the same");
}

/// Reads a store must answer alike whether its values are in memory or
/// on disk: every key at every revision still readable, the history,
/// HashKV and the image.
fn assert_answers_alike(cold: &crate::mvcc::Store, warm: &crate::mvcc::Store) {
    use crate::mvcc::RangeOptions;
    assert_eq!(cold.current_revision(), warm.current_revision());
    assert_eq!(cold.compact_revision(), warm.compact_revision());
    assert_eq!(cold.size_bytes(), warm.size_bytes(), "size");
    assert_eq!(cold.record_count(), warm.record_count(), "record count");
    for rev in warm.compact_revision().max(0)..=warm.current_revision() {
        let options = RangeOptions {
            rev,
            ..RangeOptions::default()
        };
        assert_eq!(
            cold.range(b"\0", Some(&[]), &options),
            warm.range(b"\0", Some(&[]), &options),
            "every key at revision {rev}"
        );
    }
    assert_eq!(
        cold.records_since(i64::MIN),
        warm.records_since(i64::MIN),
        "history"
    );
    assert_eq!(cold.hash_kv(0), warm.hash_kv(0), "HashKV");
    assert_eq!(
        cold.encode_image().unwrap(),
        warm.encode_image().unwrap(),
        "image"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A store whose values leave memory once the backend holds them
    /// (`Store::attach_cold`, `evict_through`) answers every read as a
    /// store that keeps them all in memory, also between a compaction and
    /// the commit that removes its revisions from disk; and a store
    /// rebuilt from the backend without its values (a restart) does too.
    #[test]
    fn values_on_disk_read_as_values_in_memory(ops in store_ops()) {
        use crate::mvcc::{Rebuild, Store};
        let sim = Arc::new(SimDisk::new());
        sim.create_dir_all(db_path().parent().unwrap()).unwrap();
        let writer = super::Writer::new(
            sim.clone(),
            &db_path(),
            Backend::open(sim.clone(), &db_path()).unwrap(),
            super::Durable::default(),
            1,
        );
        let mut cold = Store::new();
        cold.track_changes();
        cold.attach_cold(writer.cold_log(), 0);
        let mut warm = Store::new();
        let mut index = 0;
        for op in &ops {
            index += 1;
            for store in [&mut cold, &mut warm] {
                match op {
                    StoreOp::Put(key, value) => {
                        let mut write = store.write();
                        write.put(&[b'k', *key], [*value], i64::from(*value % 3));
                        write.end();
                    }
                    StoreOp::Delete(key) => {
                        let mut write = store.write();
                        write.delete_range(&[b'k', *key], None);
                        write.end();
                    }
                    StoreOp::Compact(share) => {
                        let at = store.current_revision() * i64::from(*share) / 255;
                        let _ = store.compact(at);
                    }
                    StoreOp::Commit => {}
                }
            }
            if let StoreOp::Commit = op {
                let changes = cold.take_changes();
                writer.submit(Batch {
                    consistent_index: index,
                    records: changes.records,
                    compaction: changes.compaction,
                    meta: Some(StateMeta {
                        current_revision: cold.current_revision(),
                        state: Some(Vec::new()),
                        ..StateMeta::default()
                    }),
                });
                writer.flush_now().unwrap();
                cold.evict_through(writer.durable().revision);
                prop_assert_eq!(cold.records_in_memory(), 0, "all durable, none in memory");
            }
            assert_answers_alike(&cold, &warm);
        }

        // A restart: the key index from a scan, the values left on disk.
        let changes = cold.take_changes();
        writer.submit(Batch {
            consistent_index: index + 1,
            records: changes.records,
            compaction: changes.compaction,
            meta: Some(StateMeta {
                current_revision: cold.current_revision(),
                state: Some(Vec::new()),
                ..StateMeta::default()
            }),
        });
        writer.flush_now().unwrap();
        let loaded = writer.load().unwrap();
        let mut rebuild = Rebuild::new(
            loaded.meta.unwrap().current_revision,
            loaded.compact_revision,
            false,
        )
        .unwrap();
        let mut pushed = Ok(());
        writer
            .cold_log()
            .scan(Revision::new(0, 0), i64::MAX, &mut |revision, record| {
                if pushed.is_ok() {
                    pushed = rebuild.push(revision, record);
                }
            })
            .unwrap();
        pushed.unwrap();
        let mut restarted = rebuild.finish().unwrap();
        restarted.attach_cold(writer.cold_log(), restarted.current_revision());
        prop_assert_eq!(restarted.records_in_memory(), 0);
        assert_answers_alike(&restarted, &warm);
        // What the rebuild saw of the leases, without reading the values.
        prop_assert_eq!(restarted.live_leases(), warm.live_leases());
    }
}

/// A view reads the backend as of its creation while commits go on, and
/// compaction waits for it (refused, nothing changed) until it is dropped.
#[test]
fn a_view_is_one_commit_and_compaction_waits_for_it() {
    let sim = Arc::new(SimDisk::new());
    sim.create_dir_all(db_path().parent().unwrap()).unwrap();
    let writer = super::Writer::new(
        sim.clone(),
        &db_path(),
        Backend::open(sim.clone(), &db_path()).unwrap(),
        super::Durable::default(),
        1,
    );
    let put = |main: i64, value: u8| {
        (
            Revision::new(main, 0),
            Record::put(KeyValue {
                key: b"k".to_vec(),
                create_revision: 2,
                mod_revision: main,
                version: main - 1,
                value: vec![value],
                lease: 0,
            }),
        )
    };
    let batch = |index: u64, records: Vec<(Revision, Record)>| Batch {
        consistent_index: index,
        records,
        compaction: None,
        meta: Some(StateMeta {
            current_revision: index as i64 + 1,
            state: Some(Vec::new()),
            ..StateMeta::default()
        }),
    };
    writer.submit(batch(1, vec![put(2, 1)]));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Pending changes are committed first: the view holds them.
    let view = runtime.block_on(writer.view()).unwrap();
    assert_eq!(view.loaded().consistent_index, 1);
    writer.submit(batch(2, vec![put(3, 2)]));
    writer.flush_now().unwrap();
    let mut seen = Vec::new();
    view.scan(Revision::new(0, 0), i64::MAX, &mut |revision, _| {
        seen.push(revision)
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![Revision::new(2, 0)],
        "the later commit is unseen"
    );
    assert_eq!(writer.load().unwrap().consistent_index, 2);

    assert_eq!(runtime.block_on(writer.compact()), Err(Error::Busy));
    assert_eq!(writer.failure(), None, "a refused compaction stops nothing");
    drop(view);
    runtime.block_on(writer.compact()).unwrap();
    assert_eq!(writer.backend_records(), vec![put(2, 1), put(3, 2)]);
}

/// The writer counts what it has yet to commit: the raft loop holds new
/// commands back on it.
#[test]
fn unflushed_bytes_count_submissions_until_they_commit() {
    let writer = new_writer();
    let batch = |main: i64| put_of_key(main, 97);
    writer.submit(batch(2));
    writer.submit(batch(3));
    assert_eq!(writer.unflushed_bytes(), 2 * 100);
    writer.flush_now().unwrap();
    assert_eq!(writer.unflushed_bytes(), 0);
    writer.submit(batch(4));
    writer
        .replace_now(&batch(5), super::Durable::default())
        .unwrap();
    assert_eq!(
        writer.unflushed_bytes(),
        0,
        "what a replace drops is not owed"
    );
}

/// A view of a database that was replaced reads no more: the file under
/// it is the new database's.
#[tokio::test]
async fn a_view_of_a_replaced_database_reads_no_more() {
    let writer = new_writer();
    let put = |main: i64| put_of_key(main, 10);
    writer.submit(put(2));
    let view = writer.view().await.unwrap();
    assert_eq!(
        view.records_from(Revision::new(0, 0), 1 << 20)
            .unwrap()
            .len(),
        1
    );
    writer
        .replace_now(&put(3), super::Durable::default())
        .unwrap();
    let refused = view.records_from(Revision::new(0, 0), 1 << 20).unwrap_err();
    assert!(refused.to_string().contains("replaced"), "{refused}");
    let fresh = writer.view().await.unwrap();
    let records = fresh.records_from(Revision::new(0, 0), 1 << 20).unwrap();
    assert_eq!(
        records[0].0,
        Revision::new(3, 0),
        "a new view reads the new one"
    );
}

/// A writer over a new database on a simulated disk.
fn new_writer() -> super::Writer {
    let sim = Arc::new(SimDisk::new());
    sim.create_dir_all(db_path().parent().unwrap()).unwrap();
    super::Writer::new(
        sim.clone(),
        &db_path(),
        Backend::open(sim, &db_path()).unwrap(),
        super::Durable::default(),
        1,
    )
}

/// A batch at index `main` holding a put of `key` at revision `main`
/// with a value of `value_bytes`.
fn put_of_key(main: i64, value_bytes: usize) -> Batch {
    Batch {
        consistent_index: main as u64,
        records: vec![(
            Revision::new(main, 0),
            Record::put(KeyValue {
                key: b"key".to_vec(),
                create_revision: 2,
                mod_revision: main,
                version: main - 1,
                value: vec![7; value_bytes],
                lease: 0,
            }),
        )],
        compaction: None,
        meta: None,
    }
}

/// A panic in redb is a corruption error, and the panic hook keeps quiet
/// about it (a backtrace on stderr reads as a crash); other panics still
/// reach the hook. (One process per test, as nextest runs them: the hook
/// is the process's.)
#[test]
fn a_contained_panic_is_an_error_and_prints_nothing() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static HOOKED: AtomicUsize = AtomicUsize::new(0);
    std::panic::set_hook(Box::new(|_| {
        HOOKED.fetch_add(1, Ordering::SeqCst);
    }));
    let result: Result<(), Error> =
        super::contained("reading", || panic!("Malformed allocator state"));
    assert!(
        matches!(&result, Err(Error::Corrupt(message)) if message.contains("Malformed allocator state")),
        "{result:?}"
    );
    assert_eq!(
        HOOKED.load(Ordering::SeqCst),
        0,
        "the contained panic was printed"
    );
    let _ = std::panic::catch_unwind(|| panic!("elsewhere"));
    assert_eq!(
        HOOKED.load(Ordering::SeqCst),
        1,
        "another panic was silenced"
    );
}

/// A batch commits before its interval is up once it holds the limit's
/// revisions, or `COMMIT_BYTES`, whatever the limit.
#[tokio::test]
async fn a_full_or_large_batch_commits_before_its_interval() {
    let writer = new_writer();
    writer.set_batching(std::time::Duration::from_secs(3600), 2);
    let metrics = Arc::new(crate::metrics::Metrics::new("3.4.0"));
    let task = tokio::spawn(writer.clone().run(crate::clock::Clock::new(), metrics));
    let committed = |index: u64| {
        let writer = writer.clone();
        async move {
            while writer.load().unwrap().consistent_index < index {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    };
    // Bounds only a failure: without the limit, the commit waits an hour.
    let guard = std::time::Duration::from_secs(60);
    writer.submit(put_of_key(2, 10));
    writer.submit(put_of_key(3, 10));
    tokio::time::timeout(guard, committed(3))
        .await
        .expect("the limit commits");
    writer.set_batching(
        std::time::Duration::from_secs(3600),
        super::writer::COMMIT_LIMIT,
    );
    writer.submit(put_of_key(4, super::writer::COMMIT_BYTES as usize));
    tokio::time::timeout(guard, committed(4))
        .await
        .expect("the size commits");
    task.abort();
}

/// Seven puts, then a batch with one more that compacts five away.
fn puts_then_a_compaction() -> (Batch, Batch) {
    let put = |main: i64| {
        let key_value = KeyValue {
            key: format!("k{main}").into_bytes(),
            create_revision: main,
            mod_revision: main,
            version: 1,
            value: vec![main as u8; 100],
            lease: 0,
        };
        (Revision::new(main, 0), Record::put(key_value))
    };
    let puts = Batch {
        consistent_index: 10,
        records: (2..=8).map(put).collect(),
        ..Batch::default()
    };
    let compaction = Batch {
        consistent_index: 11,
        records: vec![put(9)],
        compaction: Some((6, (2..=6).map(|main| Revision::new(main, 0)).collect())),
        meta: Some(StateMeta {
            term: 2,
            current_revision: 9,
            state: Some(vec![1]),
            ..StateMeta::default()
        }),
    };
    (puts, compaction)
}

/// etcd's `--experimental-compaction-batch-limit`: a compaction's
/// revisions go in transactions of at most the limit, each but the last
/// reported, and the backend ends as one transaction would leave it.
#[test]
fn a_compaction_deletes_in_pieces_of_the_limit() {
    let sim = Arc::new(SimDisk::new());
    sim.create_dir_all(db_path().parent().unwrap()).unwrap();
    let backend = Backend::open(sim.clone(), &db_path()).unwrap();
    let (puts, compaction) = puts_then_a_compaction();
    backend.commit(&puts).unwrap();
    let mut pieces = Vec::new();
    backend
        .commit_in_pieces(&compaction, 2, &mut |removed| pieces.push(removed))
        .unwrap();
    assert_eq!(
        pieces,
        [2, 2],
        "5 revisions: 2, 2, then the last 1 with the rest"
    );
    let expected = Model::default().apply(&puts).apply(&compaction);
    assert_eq!(Model::read(&backend).unwrap(), expected);
    assert_eq!(expected.records.len(), 3);
}

/// The pieces before the last commit without an fsync, and redb writes
/// no header for them: after a kill or a power loss before the last
/// piece's fsync, the backend opens as it was before the batch, never
/// with some of its revisions deleted.
#[test]
fn pieces_without_the_last_fsync_are_gone_after_a_kill_or_a_power_loss() {
    for power_loss in [false, true] {
        let sim = Arc::new(SimDisk::new());
        sim.create_dir_all(db_path().parent().unwrap()).unwrap();
        let backend = Backend::open(sim.clone(), &db_path()).unwrap();
        let (puts, compaction) = puts_then_a_compaction();
        backend.commit(&puts).unwrap();
        let before = Model::read(&backend).unwrap();
        backend.commit_unsynced(&compaction, 1).unwrap();
        assert_ne!(
            Model::read(&backend).unwrap(),
            before,
            "the pieces are readable"
        );
        std::mem::forget(backend);
        if power_loss {
            sim.crash(7);
        } else {
            sim.fence();
            sim.survive_kill();
        }
        let reopened = Backend::open(sim.clone(), &db_path()).unwrap();
        assert_eq!(
            Model::read(&reopened).unwrap(),
            before,
            "power loss: {power_loss}"
        );
    }
}
