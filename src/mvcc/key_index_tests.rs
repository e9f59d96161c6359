//! Table tests for `KeyIndex`, ported from etcd 3.4 `mvcc/key_index_test.go`.

use std::collections::BTreeSet;

use super::{Error, KeyAt, KeyIndex, Revision};

fn rev(main: i64) -> Revision {
    Revision::new(main, 0)
}

/// etcd's `newTestKeyIndex`, written as generations:
///
/// ```text
/// {2, 4, 6(t)}  {8, 10, 12(t)}  {14, 14.1, 16(t)}  {}
/// ```
fn test_key_index() -> KeyIndex {
    let mut key_index = KeyIndex::new();
    key_index.put(rev(2));
    key_index.put(rev(4));
    key_index.tombstone(rev(6)).unwrap();
    key_index.put(rev(8));
    key_index.put(rev(10));
    key_index.tombstone(rev(12)).unwrap();
    key_index.put(rev(14));
    key_index.put(Revision::new(14, 1));
    key_index.tombstone(rev(16)).unwrap();
    key_index
}

/// The revisions of each generation, oldest generation first.
fn revisions_by_generation(key_index: &KeyIndex) -> Vec<Vec<Revision>> {
    key_index
        .generations()
        .iter()
        .map(|generation| generation.revisions().to_vec())
        .collect()
}

#[test]
fn get_finds_newest_put_at_or_below_revision() {
    fn check(at_revision: i64, expected: Option<(Revision, Revision, i64)>) {
        let mut key_index = test_key_index();
        key_index.compact(4, &mut BTreeSet::new());
        let expected = expected.map(|(modified, created, version)| KeyAt {
            modified,
            created,
            version,
        });
        assert_eq!(key_index.get(at_revision), expected, "get at {at_revision}");
    }
    check(17, None);
    check(16, None);
    check(15, Some((Revision::new(14, 1), rev(14), 2)));
    check(14, Some((Revision::new(14, 1), rev(14), 2)));
    check(13, None);
    check(12, None);
    check(11, Some((rev(10), rev(8), 2)));
    check(10, Some((rev(10), rev(8), 2)));
    check(9, Some((rev(8), rev(8), 1)));
    check(8, Some((rev(8), rev(8), 1)));
    check(7, None);
    check(6, None);
    // Compaction at 4 dropped revision 2, but created and version survive.
    check(5, Some((rev(4), rev(2), 2)));
    check(4, Some((rev(4), rev(2), 2)));
    check(3, None);
    check(2, None);
    check(1, None);
    check(0, None);
}

#[test]
fn since_keeps_highest_sub_revision_per_main_revision() {
    fn check(since: i64, expected: &[Revision]) {
        let mut key_index = test_key_index();
        key_index.compact(4, &mut BTreeSet::new());
        assert_eq!(key_index.since(since), expected, "since {since}");
    }
    let all = [
        rev(4),
        rev(6),
        rev(8),
        rev(10),
        rev(12),
        Revision::new(14, 1),
        rev(16),
    ];
    check(17, &[]);
    check(16, &all[6..]);
    check(15, &all[6..]);
    check(14, &all[5..]);
    check(13, &all[5..]);
    check(12, &all[4..]);
    check(11, &all[4..]);
    check(10, &all[3..]);
    check(9, &all[3..]);
    check(8, &all[2..]);
    check(7, &all[2..]);
    check(6, &all[1..]);
    check(5, &all[1..]);
    for since in 0..=4 {
        check(since, &all);
    }
}

#[test]
fn put_appends_to_last_generation_and_counts_versions() {
    let mut key_index = KeyIndex::new();
    key_index.put(rev(5));
    assert_eq!(key_index.modified(), rev(5));
    assert_eq!(revisions_by_generation(&key_index), vec![vec![rev(5)]]);
    assert_eq!(key_index.generations()[0].created(), rev(5));
    assert_eq!(key_index.generations()[0].version(), 1);

    key_index.put(rev(7));
    assert_eq!(key_index.modified(), rev(7));
    assert_eq!(
        revisions_by_generation(&key_index),
        vec![vec![rev(5), rev(7)]]
    );
    assert_eq!(key_index.generations()[0].created(), rev(5));
    assert_eq!(key_index.generations()[0].version(), 2);
}

#[test]
#[should_panic(expected = "revisions never go backwards")]
fn put_at_old_revision_panics() {
    let mut key_index = KeyIndex::new();
    key_index.put(rev(5));
    key_index.put(rev(5));
}

#[test]
fn restore_starts_history_at_the_kept_revision() {
    let mut key_index = KeyIndex::new();
    key_index.restore(rev(5), rev(7), 2);
    assert_eq!(key_index.modified(), rev(7));
    assert_eq!(revisions_by_generation(&key_index), vec![vec![rev(7)]]);
    assert_eq!(
        key_index.get(7),
        Some(KeyAt {
            modified: rev(7),
            created: rev(5),
            version: 2
        })
    );
}

#[test]
fn put_after_tombstone_starts_new_generation() {
    let mut key_index = KeyIndex::new();
    key_index.put(rev(5));
    key_index.tombstone(rev(7)).unwrap();
    assert_eq!(
        revisions_by_generation(&key_index),
        vec![vec![rev(5), rev(7)], vec![]]
    );
    assert!(!key_index.is_live());

    key_index.put(rev(8));
    key_index.put(rev(9));
    key_index.tombstone(rev(15)).unwrap();
    assert_eq!(
        revisions_by_generation(&key_index),
        vec![vec![rev(5), rev(7)], vec![rev(8), rev(9), rev(15)], vec![]]
    );
    assert_eq!(key_index.generations()[1].created(), rev(8));
    assert_eq!(key_index.generations()[1].version(), 3);
    assert_eq!(key_index.modified(), rev(15));
}

#[test]
fn tombstone_of_deleted_key_is_revision_not_found() {
    let mut key_index = KeyIndex::new();
    key_index.put(rev(5));
    key_index.tombstone(rev(7)).unwrap();
    assert_eq!(key_index.tombstone(rev(16)), Err(Error::RevisionNotFound));
    assert_eq!(key_index.modified(), rev(7));
}

#[test]
fn compaction_keeps_newest_revision_at_or_below_compact_revision() {
    // (compact revision, revisions left by generation, revisions available)
    type Case = (i64, Vec<Vec<Revision>>, Vec<Revision>);
    let sub = |main, sub| Revision::new(main, sub);
    let first = || vec![rev(2), rev(4), rev(6)];
    let second = || vec![rev(8), rev(10), rev(12)];
    let third = || vec![rev(14), sub(14, 1), rev(16)];
    let cases: Vec<Case> = vec![
        (1, vec![first(), second(), third(), vec![]], vec![]),
        (2, vec![first(), second(), third(), vec![]], vec![rev(2)]),
        (3, vec![first(), second(), third(), vec![]], vec![rev(2)]),
        (
            4,
            vec![vec![rev(4), rev(6)], second(), third(), vec![]],
            vec![rev(4)],
        ),
        (
            5,
            vec![vec![rev(4), rev(6)], second(), third(), vec![]],
            vec![rev(4)],
        ),
        (6, vec![second(), third(), vec![]], vec![]),
        (7, vec![second(), third(), vec![]], vec![]),
        (8, vec![second(), third(), vec![]], vec![rev(8)]),
        (9, vec![second(), third(), vec![]], vec![rev(8)]),
        (
            10,
            vec![vec![rev(10), rev(12)], third(), vec![]],
            vec![rev(10)],
        ),
        (
            11,
            vec![vec![rev(10), rev(12)], third(), vec![]],
            vec![rev(10)],
        ),
        (12, vec![third(), vec![]], vec![]),
        (13, vec![third(), vec![]], vec![]),
        (
            14,
            vec![vec![sub(14, 1), rev(16)], vec![]],
            vec![sub(14, 1)],
        ),
        (
            15,
            vec![vec![sub(14, 1), rev(16)], vec![]],
            vec![sub(14, 1)],
        ),
        (16, vec![vec![]], vec![]),
        (17, vec![vec![]], vec![]),
    ];

    let mut incremental = test_key_index();
    for (compact_revision, expected_generations, expected_available) in cases {
        let expected_available: BTreeSet<Revision> = expected_available.into_iter().collect();
        let check = |key_index: &KeyIndex, available: &BTreeSet<Revision>, how: &str| {
            assert_eq!(
                revisions_by_generation(key_index),
                expected_generations,
                "{how} compaction at {compact_revision}: generations"
            );
            assert_eq!(
                available, &expected_available,
                "{how} compaction at {compact_revision}: available"
            );
        };

        let mut available = BTreeSet::new();
        test_key_index().keep(compact_revision, &mut available);
        assert_eq!(available, expected_available, "keep at {compact_revision}");

        let mut fresh = test_key_index();
        let mut available = BTreeSet::new();
        fresh.compact(compact_revision, &mut available);
        check(&fresh, &available, "fresh");

        // Compacting step by step ends where one compaction does.
        if !incremental.is_empty() {
            let mut available = BTreeSet::new();
            incremental.compact(compact_revision, &mut available);
            check(&incremental, &available, "incremental");
        }
    }
}

#[test]
fn compaction_keeps_created_and_version_of_trimmed_generation() {
    let mut key_index = test_key_index();
    key_index.compact(10, &mut BTreeSet::new());
    let generation = &key_index.generations()[0];
    assert_eq!(generation.revisions(), &[rev(10), rev(12)]);
    assert_eq!(generation.created(), rev(8));
    assert_eq!(generation.version(), 3);
}

#[test]
fn compaction_beyond_last_put_keeps_the_last_put() {
    let mut key_index = KeyIndex::new();
    key_index.put(rev(1));
    key_index.put(rev(2));
    let mut available = BTreeSet::new();
    key_index.compact(3, &mut available);
    assert_eq!(revisions_by_generation(&key_index), vec![vec![rev(2)]]);
    assert_eq!(key_index.generations()[0].created(), rev(1));
    assert_eq!(key_index.generations()[0].version(), 2);
    assert_eq!(available, BTreeSet::from([rev(2)]));
}

#[test]
fn key_index_is_empty_only_without_revisions() {
    assert!(KeyIndex::new().is_empty());
    assert!(!test_key_index().is_empty());

    let mut key_index = KeyIndex::new();
    key_index.put(rev(2));
    assert!(!key_index.is_empty());
    key_index.tombstone(rev(3)).unwrap();
    assert!(!key_index.is_empty());
    key_index.compact(3, &mut BTreeSet::new());
    assert!(key_index.is_empty());
}

#[test]
fn find_generation_is_none_between_generations() {
    let key_index = test_key_index();
    let generations = key_index.generations();
    let check = |at_revision: i64, expected: Option<usize>| {
        assert_eq!(
            key_index.find_generation(at_revision),
            expected.map(|index| &generations[index]),
            "find generation at {at_revision}"
        );
    };
    check(0, None);
    check(1, None);
    for at_revision in 2..=5 {
        check(at_revision, Some(0));
    }
    check(6, None);
    check(7, None);
    for at_revision in 8..=11 {
        check(at_revision, Some(1));
    }
    check(12, None);
    check(13, None);
    check(14, Some(2));
    check(15, Some(2));
    check(16, None);
    check(17, None);
}
