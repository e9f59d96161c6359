//! WAL and snapshot tests on the in-memory disk: round trips, torn tails
//! and corruption, as proptests over random logs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::snapshot::PieceSink as _;
use proptest::prelude::*;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState};

use super::disk::{Disk, SECTOR_BYTES};
use super::real_disk::RealDisk;
use super::sim_disk::SimDisk;
use super::snapshot::{
    check_bytes, FileAt, LegacySnapshot, SnapshotDir, SnapshotReader, SnapshotWriter, StreamCheck,
    PIECE_TARGET_BYTES,
};
use super::wal::{Metadata, SnapshotMark, Wal, WalError, ZEROS_AHEAD_BYTES};

const METADATA: Metadata = Metadata {
    member_id: 0x8e9e05c52164694d,
    cluster_id: 0xcdf818194e3a8c32,
};

fn wal_dir() -> PathBuf {
    PathBuf::from("/node/member/wal")
}

fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec().into(),
        ..Entry::default()
    }
}

fn hard_state(term: u64, commit: u64) -> HardState {
    HardState {
        term,
        commit,
        vote: 1,
        ..HardState::default()
    }
}

fn voters() -> ConfState {
    ConfState {
        voters: vec![1],
        ..ConfState::default()
    }
}

/// A new, empty log on `disk`, one voter, as bootstrap makes it.
fn new_wal(disk: &Arc<SimDisk>) -> Wal {
    Wal::create(
        disk.clone(),
        &wal_dir(),
        METADATA,
        voters(),
        &[],
        &HardState::default(),
    )
    .unwrap()
}

/// Writes `batches` (each synced once) and returns the disk.
fn write_log(batches: &[Vec<Entry>]) -> Arc<SimDisk> {
    let disk = Arc::new(SimDisk::new());
    let mut wal = new_wal(&disk);
    for batch in batches {
        let commit = batch.last().map(|e| e.index).unwrap_or(0);
        wal.append(batch, Some(&hard_state(1, commit)));
        wal.sync().unwrap();
    }
    disk
}

fn only_segment(disk: &SimDisk, dir: &Path) -> PathBuf {
    let names = disk.list(dir).unwrap();
    assert_eq!(names.len(), 1, "one segment expected: {names:?}");
    dir.join(&names[0])
}

fn batches_strategy() -> impl Strategy<Value = Vec<Vec<Entry>>> {
    prop::collection::vec(
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..5),
        1..8,
    )
    .prop_map(|batches| {
        let mut index = 0;
        batches
            .into_iter()
            .map(|batch| {
                batch
                    .into_iter()
                    .map(|data| {
                        index += 1;
                        entry(index, 1, &data)
                    })
                    .collect()
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn wal_round_trips_every_record(batches in batches_strategy()) {
        let disk = write_log(&batches);
        let (_, replay) = Wal::open(disk, &wal_dir()).unwrap();
        let written: Vec<Entry> = batches.concat();
        prop_assert_eq!(replay.entries, written.clone());
        prop_assert_eq!(replay.metadata, METADATA);
        prop_assert_eq!(replay.conf_state, Some(voters()));
        prop_assert_eq!(replay.hard_state.commit, written.last().unwrap().index);
        prop_assert_eq!(&replay.torn_tail, &None);
    }

    #[test]
    fn a_segment_cut_short_is_refused(batches in batches_strategy(), cut in 1usize..200) {
        let disk = write_log(&batches);
        let path = only_segment(&disk, &wal_dir());
        let len = disk.read(&path).unwrap().len();
        disk.truncate(&path, (len - cut) as u64).unwrap();
        match Wal::open(disk, &wal_dir()) {
            Err(WalError::Corrupt { reason, .. }) => prop_assert!(reason.contains("cut"), "{}", reason),
            other => prop_assert!(false, "a cut segment must be refused: {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_torn_write_leaves_a_prefix(batches in batches_strategy(), from in any::<prop::sample::Index>()) {
        // What a crash leaves: the data up to a sector boundary, zeros after.
        let disk = write_log(&batches);
        let path = only_segment(&disk, &wal_dir());
        let mut bytes = disk.read(&path).unwrap();
        let data_end = data_end(&bytes);
        let header = record_starts(&bytes)[3];
        let sectors = (header.div_ceil(SECTOR_BYTES)..=data_end.div_ceil(SECTOR_BYTES)).collect::<Vec<_>>();
        let zero_from = sectors[from.index(sectors.len())] * SECTOR_BYTES;
        bytes[zero_from.min(data_end)..data_end].fill(0);
        disk.write_at(&path, 0, &bytes).unwrap();
        let written: Vec<Entry> = batches.concat();
        let (_, replay) = Wal::open(disk.clone(), &wal_dir()).unwrap();
        prop_assert!(replay.entries.len() <= written.len());
        prop_assert_eq!(&replay.entries[..], &written[..replay.entries.len()], "a prefix survives");
        // The repair is itself durable: opening again finds no tear.
        let (_, again) = Wal::open(disk, &wal_dir()).unwrap();
        prop_assert_eq!(&again.torn_tail, &None);
        prop_assert_eq!(again.entries, replay.entries);
    }

    #[test]
    fn garbage_after_the_tail_is_never_read_as_data(batches in batches_strategy(), garbage in prop::collection::vec(any::<u8>(), 1..100)) {
        let disk = write_log(&batches);
        let path = only_segment(&disk, &wal_dir());
        let end = record_starts(&disk.read(&path).unwrap()).last().copied().unwrap();
        disk.write_at(&path, end as u64, &garbage).unwrap();
        match Wal::open(disk, &wal_dir()) {
            // Forging a record would need two matching CRC32Cs.
            Ok((_, replay)) => prop_assert_eq!(replay.entries, batches.concat()),
            Err(error) => prop_assert!(matches!(error, WalError::Corrupt { .. }), "unexpected error {error}"),
        }
    }

    #[test]
    fn a_flipped_bit_is_never_skipped_silently(batches in batches_strategy(), flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let disk = write_log(&batches);
        let path = only_segment(&disk, &wal_dir());
        let mut bytes = disk.read(&path).unwrap();
        let starts = record_starts(&bytes);
        let at = flip.index(data_end(&bytes));
        bytes[at] ^= 1 << bit;
        disk.write_at(&path, 0, &bytes).unwrap();
        match Wal::open(disk, &wal_dir()) {
            Err(WalError::Corrupt { .. }) => {}
            // A flip that zeroes the last piece of the last record past a
            // sector boundary looks exactly like a torn write (etcd's
            // limit too): dropped, and reported.
            Ok((_, replay)) => {
                let last = starts[starts.len() - 2];
                prop_assert!(at >= last, "corruption at byte {} (records end at {}) was read through", at, last);
                prop_assert!(replay.torn_tail.is_some(), "a dropped record is reported");
            }
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
    }
}

/// Where each record of a segment starts, and where the last one ends.
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    let mut offset = 0;
    while let Ok((_, _, used)) = super::record::decode(&bytes[offset..]) {
        offset += used;
        starts.push(offset);
    }
    starts
}

/// Where a preallocated segment's nonzero bytes end.
fn data_end(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(0, |last| last + 1)
}

#[test]
fn a_grown_segment_is_refused() {
    let disk = write_log(&[vec![entry(1, 1, b"a")]]);
    let path = only_segment(&disk, &wal_dir());
    disk.append(&path, &[0; 10]).unwrap();
    match Wal::open(disk, &wal_dir()) {
        Err(WalError::Corrupt { reason, .. }) => assert!(reason.contains("grown"), "{reason}"),
        other => panic!("a grown segment must be refused: {:?}", other.map(|_| ())),
    }
}

#[test]
fn later_entries_replace_a_conflicting_suffix() {
    let disk = write_log(&[
        vec![entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")],
        vec![entry(2, 2, b"B")],
    ]);
    let (_, replay) = Wal::open(disk, &wal_dir()).unwrap();
    assert_eq!(replay.entries, vec![entry(1, 1, b"a"), entry(2, 2, b"B")]);
}

#[test]
fn a_crash_between_write_and_fsync_leaves_a_prefix() {
    let synced: Vec<Entry> = (1..=3).map(|index| entry(index, 1, b"synced")).collect();
    let written: Vec<Entry> = (4..=40)
        .map(|index| entry(index, 1, &[index as u8; 100]))
        .collect();
    let mut lengths = std::collections::BTreeSet::new();
    for torn_seed in 0..32 {
        let disk = write_log(std::slice::from_ref(&synced));
        let (mut wal, _) = Wal::open(disk.clone(), &wal_dir()).unwrap();
        wal.append(&written, None);
        wal.write().unwrap();
        drop(wal);
        disk.crash(torn_seed);
        let (_, replay) = Wal::open(disk, &wal_dir()).unwrap();
        let all: Vec<Entry> = synced.iter().chain(&written).cloned().collect();
        assert!(
            replay.entries.len() >= synced.len(),
            "synced entries survive"
        );
        assert_eq!(
            replay.entries[..],
            all[..replay.entries.len()],
            "what survives is a prefix"
        );
        lengths.insert(replay.entries.len());
    }
    assert!(
        lengths.len() > 2,
        "crashes should tear at different points: {lengths:?}"
    );
}

#[test]
fn unsynced_entries_are_lost_on_crash_synced_ones_are_not() {
    let disk = Arc::new(SimDisk::new());
    let mut wal = new_wal(&disk);
    wal.append(&[entry(1, 1, b"kept")], Some(&hard_state(1, 1)));
    wal.sync().unwrap();
    wal.append(&[entry(2, 1, b"maybe")], None);
    drop(wal);
    disk.crash(3);
    let (_, replay) = Wal::open(disk, &wal_dir()).unwrap();
    assert_eq!(replay.entries, vec![entry(1, 1, b"kept")]);
}

/// kill -9 leaves what the WAL wrote in the page cache: the restart
/// replays it, and raft takes every replayed entry as persisted (it may
/// apply them, and the backend may commit them durably). So opening the
/// WAL makes it durable: a power loss after the restart must not take it.
#[test]
fn entries_replayed_after_a_kill_survive_a_later_power_loss() {
    for torn_seed in 0..16 {
        let disk = Arc::new(SimDisk::new());
        let mut wal = new_wal(&disk);
        wal.append(&[entry(1, 1, b"synced")], Some(&hard_state(1, 1)));
        wal.sync().unwrap();
        let written: Vec<Entry> = (2..=20).map(|index| entry(index, 1, &[7; 300])).collect();
        wal.append(&written, Some(&hard_state(1, 20)));
        wal.write().unwrap();
        drop(wal);
        disk.fence();
        disk.survive_kill();
        let (_, replayed) = Wal::open(disk.clone(), &wal_dir()).unwrap();
        assert_eq!(replayed.entries.len(), 20, "the page cache holds them all");
        disk.crash(torn_seed);
        let (_, replay) = Wal::open(disk, &wal_dir()).unwrap();
        assert_eq!(
            replay.entries, replayed.entries,
            "seed {torn_seed}: a power loss after the restart took replayed entries"
        );
    }
}

#[test]
fn released_segments_leave_a_self_contained_log() {
    let disk = Arc::new(SimDisk::new());
    let mut wal = new_wal(&disk);
    let big = vec![7u8; (super::wal::SEGMENT_BYTES / 4) as usize];
    for index in 1..=6 {
        wal.append(&[entry(index, 1, &big)], Some(&hard_state(1, index)));
        wal.sync().unwrap();
    }
    assert!(
        wal.segment_count() > 1,
        "segments roll over past SEGMENT_BYTES"
    );
    wal.mark_snapshot(SnapshotMark { index: 5, term: 1 });
    wal.sync().unwrap();
    wal.release_to(5).unwrap();
    drop(wal);
    let (wal, replay) = Wal::open(disk, &wal_dir()).unwrap();
    assert_eq!(wal.metadata(), METADATA);
    assert_eq!(replay.hard_state.commit, 6);
    assert_eq!(
        replay.snapshot_marks.last(),
        Some(&SnapshotMark { index: 5, term: 1 })
    );
    assert!(replay.entries.first().unwrap().index <= 6);
    assert_eq!(replay.entries.last().unwrap().index, 6);
}

/// A snapshot stream at (`term`, `index`) of a store whose key `key` was
/// put once for each of `values`.
fn stream(term: u64, index: u64, values: &[Vec<u8>]) -> Vec<u8> {
    let mut store = crate::mvcc::Store::new();
    for value in values {
        let mut txn = store.write();
        txn.put(b"key", value.as_slice(), 0);
        txn.end();
    }
    let header = crate::proto::detcdpb::SnapshotHeader {
        index,
        term,
        conf_state: voters().write_to_bytes().unwrap(),
        parts: vec![1, 2, 3],
        current_revision: store.current_revision(),
        compact_revision: store.compact_revision(),
    };
    let mut writer = SnapshotWriter::new(Vec::new(), header).unwrap();
    store
        .visit_records(i64::MIN, i64::MAX, |revision, record| {
            writer.push(revision, record).unwrap()
        })
        .unwrap();
    writer.finish().unwrap()
}

#[test]
fn snapshot_files_round_trip_and_corruption_is_reported() {
    let disk: Arc<SimDisk> = Arc::new(SimDisk::new());
    let dir = SnapshotDir::open(disk.clone(), Path::new("/node/member/snap")).unwrap();
    for index in [10, 20, 30] {
        dir.save_bytes(&stream(2, index, &[vec![index as u8; 100]]))
            .unwrap();
    }
    let (valid, bad) = dir.load_newest_first().unwrap();
    assert!(bad.is_empty());
    assert_eq!(
        valid.iter().map(|s| s.index).collect::<Vec<_>>(),
        vec![30, 20],
        "SNAPSHOTS_KEPT newest stay"
    );
    let mut reader = SnapshotReader::open(FileAt {
        disk: disk.clone(),
        path: valid[0].path.clone(),
    })
    .unwrap();
    let records = reader.next_records().unwrap().unwrap();
    assert!(
        matches!(&records[..], [(_, crate::mvcc::Record::Put(kv))] if kv.value == vec![30u8; 100])
    );
    assert_eq!(reader.next_records().unwrap(), None);

    let newest = valid[0].path.clone();
    let mut bytes = disk.read(&newest).unwrap();
    bytes[50] ^= 1;
    disk.create(&newest).unwrap();
    disk.append(&newest, &bytes).unwrap();
    let (valid, bad) = dir.load_newest_first().unwrap();
    assert_eq!(valid.iter().map(|s| s.index).collect::<Vec<_>>(), vec![20]);
    assert_eq!(bad.len(), 1, "the corrupt snapshot is reported, not used");
}

#[test]
fn snapshots_the_backend_passed_are_pruned() {
    let disk: Arc<SimDisk> = Arc::new(SimDisk::new());
    let dir = SnapshotDir::open(disk.clone(), Path::new("/node/member/snap")).unwrap();
    for index in [10, 20] {
        dir.save_bytes(&stream(2, index, &[vec![1; 10]])).unwrap();
    }
    dir.prune_through(15).unwrap();
    let indexes = |dir: &SnapshotDir| -> Vec<u64> {
        let (valid, bad) = dir.load_newest_first().unwrap();
        assert!(bad.is_empty());
        valid.iter().map(|snapshot| snapshot.index).collect()
    };
    assert_eq!(indexes(&dir), vec![20]);
    dir.prune_through(20).unwrap();
    assert_eq!(indexes(&dir), Vec::<u64>::new());
    assert!(disk
        .list(Path::new("/node/member/snap"))
        .unwrap()
        .is_empty());
}

/// Revisions come in pieces of about `PIECE_TARGET_BYTES`, in order, and
/// come back exactly as written.
#[test]
fn a_large_snapshot_streams_in_pieces() {
    let values: Vec<Vec<u8>> = (0..5u8)
        .map(|value| vec![value; PIECE_TARGET_BYTES / 2])
        .collect();
    let bytes = stream(3, 9, &values);
    let mut reader = SnapshotReader::open(bytes.as_slice()).unwrap();
    assert_eq!(reader.header().index, 9);
    assert_eq!(reader.conf_state(), &voters());
    let mut pieces = Vec::new();
    while let Some(records) = reader.next_records().unwrap() {
        pieces.push(records);
    }
    assert_eq!(
        pieces.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 2, 1],
        "a piece closes once it passes the target"
    );
    let read: Vec<Vec<u8>> = pieces
        .into_iter()
        .flatten()
        .map(|(_, record)| match record {
            crate::mvcc::Record::Put(kv) => kv.value.clone(),
            tombstone => panic!("{tombstone:?}"),
        })
        .collect();
    assert_eq!(read, values);
}

/// Each piece's checksum guards it: prost would read some damaged pieces
/// as other valid ones (an unknown field is skipped), so every truncation
/// and every flipped bit of a stream must be refused, and so must bytes
/// after its end.
#[test]
fn a_snapshot_stream_damaged_anywhere_is_refused() {
    let bytes = stream(2, 7, &[b"v1".to_vec(), b"v2".to_vec(), b"v3".to_vec()]);
    // Read from a file, and checked as it arrives in chunks of any size.
    let refused = |bytes: &[u8]| {
        check_bytes(bytes).is_err()
            && [1, 5, 64]
                .iter()
                .all(|&chunk| streamed(bytes, chunk).is_err())
    };
    assert!(check_bytes(&bytes).is_ok());
    for chunk in [1, 3, 7, 64, bytes.len()] {
        assert_eq!(
            streamed(&bytes, chunk).unwrap().index,
            7,
            "chunks of {chunk}"
        );
    }
    for length in 0..bytes.len() {
        assert!(refused(&bytes[..length]), "cut to {length}");
    }
    for position in 0..bytes.len() {
        for bit in 0..8 {
            let mut damaged = bytes.clone();
            damaged[position] ^= 1 << bit;
            assert!(refused(&damaged), "bit {bit} of byte {position} flipped");
        }
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(refused(&longer), "a byte after the end");
    let mut twice = bytes.clone();
    twice.extend_from_slice(&bytes[8..]);
    assert!(refused(&twice), "a second stream after the end");
}

/// `StreamCheck` fed `bytes` in chunks of `chunk`.
fn streamed(bytes: &[u8], chunk: usize) -> Result<crate::proto::detcdpb::SnapshotHeader, String> {
    let mut check = StreamCheck::default();
    for piece in bytes.chunks(chunk) {
        check.feed(piece)?;
    }
    check.finish()
}

/// A format-2 file (one checksummed state image) is still read, and
/// refused when damaged.
#[test]
fn a_legacy_snapshot_file_is_read_and_checked() {
    let disk: Arc<SimDisk> = Arc::new(SimDisk::new());
    let dir = SnapshotDir::open(disk.clone(), Path::new("/node/member/snap")).unwrap();
    let legacy = LegacySnapshot {
        index: 5,
        term: 1,
        conf_state: voters(),
        state: vec![7; 40],
    };
    let mut bytes = legacy.encode();
    super::disk::write_atomically(&*disk, &dir.path(1, 5), &bytes).unwrap();
    let (valid, _) = dir.load_newest_first().unwrap();
    assert!(valid[0].legacy);
    assert_eq!(LegacySnapshot::decode(&bytes).unwrap(), legacy);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert!(LegacySnapshot::decode(&bytes).is_err());
}

/// A log over `segments` or more segments of about 200 bytes, each entry
/// synced; returns the disk and the segment paths in order.
fn write_segments(entries: u64) -> (Arc<SimDisk>, Vec<PathBuf>) {
    let disk = Arc::new(SimDisk::new());
    let mut wal = new_wal(&disk);
    wal.set_segment_bytes(200);
    for index in 1..=entries {
        // The bootstrap segment has the full size: the first entry fills it.
        let data = if index == 1 {
            vec![9; super::wal::SEGMENT_BYTES as usize]
        } else {
            vec![9; 64]
        };
        wal.append(&[entry(index, 1, &data)], Some(&hard_state(1, index)));
        wal.sync().unwrap();
    }
    let mut names = disk.list(&wal_dir()).unwrap();
    names.sort();
    let paths: Vec<PathBuf> = names.iter().map(|name| wal_dir().join(name)).collect();
    assert!(
        paths.len() >= 3,
        "the test needs several segments: {names:?}"
    );
    (disk, paths)
}

#[test]
fn segments_rolled_over_replay_whole() {
    let (disk, _) = write_segments(12);
    let (_, replay) = Wal::open(disk, &wal_dir()).unwrap();
    let indexes: Vec<u64> = replay.entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes, (1..=12).collect::<Vec<_>>());
    assert_eq!(replay.hard_state.commit, 12);
}

/// Removing the segment at `which` (of the rolled-over log) must make
/// the open refuse, naming a missing segment.
fn assert_refused_without_segment(which: impl Fn(&[PathBuf]) -> PathBuf) {
    let (disk, paths) = write_segments(12);
    disk.remove(&which(&paths)).unwrap();
    match Wal::open(disk, &wal_dir()) {
        Err(WalError::Corrupt { reason, .. }) => {
            assert!(reason.contains("missing"), "{reason}")
        }
        other => panic!("a lost segment must be refused: {other:?}"),
    }
}

#[test]
fn a_lost_newest_segment_is_refused_not_read_as_a_shorter_log() {
    assert_refused_without_segment(|paths| paths.last().unwrap().clone());
}

#[test]
fn a_lost_middle_segment_is_refused() {
    assert_refused_without_segment(|paths| paths[1].clone());
}

#[test]
fn a_crash_while_sealing_loses_nothing() {
    // The seal goes to the old segment after the new one is durable; a
    // crash can leave it unwritten, and the log is still whole.
    let (disk, paths) = write_segments(12);
    let before_last = &paths[paths.len() - 2];
    let sealed = disk.read(before_last).unwrap();
    let starts = record_starts(&sealed);
    let (seal_at, seal_end) = (starts[starts.len() - 2], starts[starts.len() - 1]);
    let mut unsealed = sealed.clone();
    unsealed[seal_at..seal_end].fill(0);
    disk.write_at(before_last, 0, &unsealed).unwrap();
    let (_, replay) = Wal::open(disk.clone(), &wal_dir()).unwrap();
    assert_eq!(replay.entries.last().unwrap().index, 12);
    assert_eq!(
        disk.read(before_last).unwrap(),
        sealed,
        "the seal was completed in place"
    );
    tracing::info!("the repaired seal holds after the log rolls over again");
    let (mut wal, _) = Wal::open(disk.clone(), &wal_dir()).unwrap();
    wal.set_segment_bytes(200);
    for index in 13..=16 {
        wal.append(&[entry(index, 1, &[9; 64])], Some(&hard_state(1, index)));
        wal.sync().unwrap();
    }
    drop(wal);
    let (_, replay) = Wal::open(disk.clone(), &wal_dir()).unwrap();
    assert_eq!(replay.entries.last().unwrap().index, 16);
    tracing::info!("damage in the record before the seal is corruption, not a torn seal");
    let mut damaged = sealed.clone();
    damaged[seal_at - 3] ^= 0xff;
    disk.write_at(before_last, 0, &damaged).unwrap();
    assert!(Wal::open(disk, &wal_dir()).is_err());
}

#[test]
fn an_unsynced_roll_over_and_crash_keep_every_synced_entry() {
    // Batches that do not fit the tail start new segments; crashes at any
    // point keep what was synced and a prefix of the rest.
    for torn_seed in 0..16 {
        let disk = Arc::new(SimDisk::new());
        let mut wal = new_wal(&disk);
        wal.set_segment_bytes(300);
        for index in 1..=8 {
            wal.append(
                &[entry(index, 1, &[index as u8; 90])],
                Some(&hard_state(1, index)),
            );
            wal.sync().unwrap();
        }
        wal.append(&[entry(9, 1, &[9; 500]), entry(10, 1, &[10; 90])], None);
        wal.write().unwrap();
        drop(wal);
        disk.crash(torn_seed);
        let (_, replay) = Wal::open(disk, &wal_dir()).unwrap();
        let indexes: Vec<u64> = replay.entries.iter().map(|e| e.index).collect();
        assert!(
            indexes.len() >= 8,
            "seed {torn_seed}: synced entries survive: {indexes:?}"
        );
        assert_eq!(indexes, (1..=indexes.len() as u64).collect::<Vec<_>>());
    }
}

#[test]
fn a_log_written_before_preallocation_opens_and_moves_on() {
    // The layout of an appended segment: no size record, the file ends
    // where its data does (and a torn tail is cut short, not zeros).
    use super::record::{self, RecordType};
    use protobuf::Message as _;
    let disk = Arc::new(SimDisk::new());
    disk.create_dir_all(&wal_dir()).unwrap();
    let mut bytes = Vec::new();
    let metadata = [
        METADATA.member_id.to_le_bytes(),
        METADATA.cluster_id.to_le_bytes(),
    ]
    .concat();
    record::encode(RecordType::Metadata, &metadata, &mut bytes);
    record::encode(
        RecordType::ConfState,
        &voters().write_to_bytes().unwrap(),
        &mut bytes,
    );
    for index in 1..=3 {
        let entry = entry(index, 1, b"before");
        record::encode(
            RecordType::Entry,
            &entry.write_to_bytes().unwrap(),
            &mut bytes,
        );
    }
    record::encode(
        RecordType::HardState,
        &hard_state(1, 3).write_to_bytes().unwrap(),
        &mut bytes,
    );
    let torn = bytes.len() - 4;
    let path = wal_dir().join("0000000000000000-0000000000000001.wal");
    disk.create(&path).unwrap();
    disk.append(&path, &bytes[..torn]).unwrap();

    let (mut wal, replay) = Wal::open(disk.clone(), &wal_dir()).unwrap();
    assert_eq!(replay.entries.len(), 3);
    assert!(
        replay.torn_tail.is_some(),
        "the cut hard state is a torn tail"
    );
    wal.append(&[entry(4, 1, b"after")], Some(&hard_state(1, 4)));
    wal.sync().unwrap();
    drop(wal);
    assert_eq!(
        disk.list(&wal_dir()).unwrap().len(),
        2,
        "the next batch starts a preallocated segment"
    );
    let (_, replay) = Wal::open(disk, &wal_dir()).unwrap();
    let indexes: Vec<u64> = replay.entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes, vec![1, 2, 3, 4]);
    assert_eq!(replay.hard_state.commit, 4);
}

/// A received snapshot waits in `incoming`, where recovery never looks,
/// until raft takes it (`adopt`); one never adopted goes at the next open.
#[test]
fn a_received_snapshot_is_the_members_only_once_adopted() {
    let disk: Arc<SimDisk> = Arc::new(SimDisk::new());
    let path = Path::new("/node/member/snap");
    let dir = SnapshotDir::open(disk.clone(), path).unwrap();
    let indexes = |dir: &SnapshotDir| -> Vec<u64> {
        let (valid, bad) = dir.load_newest_first().unwrap();
        assert!(bad.is_empty());
        valid.iter().map(|found| found.index).collect()
    };
    for index in [10, 20] {
        let bytes = stream(2, index, &[vec![1; 10]]);
        let mut file = dir.receive(2, index).unwrap();
        let mut check = StreamCheck::default();
        check.feed(&bytes).unwrap();
        file.put(&bytes).unwrap();
        dir.keep_checked(file, check).unwrap();
    }
    assert_eq!(indexes(&dir), Vec::<u64>::new(), "received, not taken");
    dir.adopt(2, 10).unwrap();
    assert_eq!(indexes(&dir), vec![10]);
    drop(dir);
    let dir = SnapshotDir::open(disk.clone(), path).unwrap();
    assert_eq!(indexes(&dir), vec![10]);
    assert!(
        disk.list(&path.join("incoming")).unwrap().is_empty(),
        "the snapshot raft never took is gone"
    );

    // A stream cut off leaves no file behind.
    let file = dir.receive(2, 30).unwrap();
    drop(file);
    assert!(disk.list(&path.join("incoming")).unwrap().is_empty());
}

/// A data dir etcd wrote (`etcdctl snapshot restore` makes one) is refused
/// with what to do instead, not reported as a corrupt WAL of ours.
#[test]
fn a_wal_etcd_wrote_is_refused_as_etcds() {
    let disk = Arc::new(SimDisk::new());
    let dir = wal_dir();
    disk.create_dir_all(&dir).unwrap();
    // etcd's first record, walpb.Record{type: 4 (crcType), crc}: in its
    // first segment crc 0, 4 bytes padded by 4; after older segments were
    // purged a crc of 5 varint bytes, 8 bytes unpadded.
    let first = [
        0x04, 0, 0, 0, 0, 0, 0, 0x84, 0x08, 0x04, 0x10, 0x00, 0, 0, 0, 0,
    ];
    let later = [
        0x08, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x04, 0x10, 0xd2, 0x85, 0xd8, 0xcc, 0x04,
    ];
    for (seq, record) in [(0, first), (7, later)] {
        let mut etcd = record.to_vec();
        etcd.resize(4096, 0);
        let path = dir.join(format!("{seq:016x}-{:016x}.wal", 1000));
        disk.create(&path).unwrap();
        disk.append(&path, &etcd).unwrap();
        let Err(error) = Wal::open(disk.clone(), &dir) else {
            panic!("etcd's WAL was opened")
        };
        let expected = "is etcd's WAL, not detcd's: detcd does not read an etcd data dir";
        assert!(error.to_string().contains(expected), "{error}");
        disk.remove(&path).unwrap();
    }
    // Ours is not taken for etcd's.
    let ours = Arc::new(SimDisk::new());
    drop(new_wal(&ours));
    assert!(Wal::open(ours.clone(), &dir).is_ok());
}

/// On the real disk the WAL writes zeros out ahead of its data
/// (`ZEROS_AHEAD_BYTES`). Whatever the batch sizes, across roll-overs and
/// a reopen (which starts with nothing written ahead), they never land on
/// data: every entry replays, byte for byte.
#[test]
fn zeros_written_ahead_never_land_on_data_on_the_real_disk() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    // A step and a half per segment: steps are cut at a segment's end.
    let segment_bytes = ZEROS_AHEAD_BYTES * 3 / 2;
    let mut wal = Wal::create(
        Arc::new(RealDisk::new()),
        &wal_dir,
        METADATA,
        voters(),
        &[],
        &HardState::default(),
    )
    .unwrap();
    let mut written = Vec::new();
    for round in 0..2u64 {
        wal.set_segment_bytes(segment_bytes);
        for batch in 0..40u64 {
            // Sizes from a few bytes to past a whole step, in no order.
            let sizes = [
                (batch * 7_919 + round * 104_729) % (ZEROS_AHEAD_BYTES + 4_096),
                batch * 31 % 700 + 1,
            ];
            let entries: Vec<Entry> = sizes
                .iter()
                .map(|&size| {
                    let index = written.len() as u64 + 1;
                    let data = vec![(index % 251) as u8 + 1; size as usize];
                    let entry = entry(index, 1, &data);
                    written.push(entry.clone());
                    entry
                })
                .collect();
            wal.append(&entries, Some(&hard_state(1, written.len() as u64)));
            wal.sync().unwrap();
        }
        assert!(wal.segment_count() > 3, "the test rolls over");
        drop(wal);
        // A new disk, as after a restart: nothing cached.
        let (reopened, replay) = Wal::open(Arc::new(RealDisk::new()), &wal_dir).unwrap();
        assert_eq!(replay.entries.len(), written.len());
        assert!(replay.entries == written, "an entry changed on the way");
        assert_eq!(replay.torn_tail, None);
        wal = reopened;
    }
}
