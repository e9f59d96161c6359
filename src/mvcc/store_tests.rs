//! Scenario tests for `Store` and `WriteTxn`, each read checked through
//! one `check` helper against etcd 3.4's answers.

use std::collections::BTreeMap;

use super::{Error, KeyValue, RangeOptions, RangeResult, Record, Revision, Store};

fn key_value(
    key: &str,
    value: &str,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
) -> KeyValue {
    KeyValue {
        key: key.as_bytes().to_vec(),
        create_revision,
        mod_revision,
        version,
        value: value.as_bytes().to_vec(),
        lease: 0,
    }
}

/// A successful range answer whose count is the number of key-values.
fn found(kvs: Vec<KeyValue>, rev: i64) -> Result<RangeResult, Error> {
    Ok(RangeResult {
        count: kvs.len(),
        kvs,
        rev,
    })
}

fn at(rev: i64) -> RangeOptions {
    RangeOptions {
        rev,
        ..RangeOptions::default()
    }
}

/// Reads `[key, end)` from the store and compares the whole answer.
fn check(
    store: &Store,
    key: &str,
    end: Option<&str>,
    options: RangeOptions,
    expected: Result<RangeResult, Error>,
) {
    let actual = store.range(key.as_bytes(), end.map(str::as_bytes), &options);
    assert_eq!(actual, expected, "range {key:?}..{end:?} with {options:?}");
}

fn put(store: &mut Store, key: &str, value: &str) -> i64 {
    let mut txn = store.write();
    let revision = txn.put(key.as_bytes(), value.as_bytes(), 0);
    txn.end();
    revision
}

fn delete(store: &mut Store, key: &str, end: Option<&str>) -> (i64, i64) {
    let mut txn = store.write();
    let result = txn.delete_range(key.as_bytes(), end.map(str::as_bytes));
    txn.end();
    result
}

#[test]
fn first_write_gets_revision_two() {
    let mut store = Store::new();
    assert_eq!(store.current_revision(), 1);
    assert_eq!(store.compact_revision(), -1);
    check(&store, "a", None, at(0), found(vec![], 1));

    assert_eq!(put(&mut store, "a", "1"), 2);
    assert_eq!(store.current_revision(), 2);
    check(
        &store,
        "a",
        None,
        at(0),
        found(vec![key_value("a", "1", 2, 2, 1)], 2),
    );
}

#[test]
fn put_updates_version_and_keeps_create_revision() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    put(&mut store, "a", "2");
    check(
        &store,
        "a",
        None,
        at(0),
        found(vec![key_value("a", "2", 2, 3, 2)], 3),
    );
}

#[test]
fn put_after_delete_starts_new_generation() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    put(&mut store, "a", "2");
    assert_eq!(delete(&mut store, "a", None), (1, 4));
    put(&mut store, "a", "3");
    check(
        &store,
        "a",
        None,
        at(0),
        found(vec![key_value("a", "3", 5, 5, 1)], 5),
    );
    check(&store, "a", None, at(4), found(vec![], 5));
    check(
        &store,
        "a",
        None,
        at(3),
        found(vec![key_value("a", "2", 2, 3, 2)], 5),
    );
}

#[test]
fn range_at_past_revision_sees_values_of_then() {
    let mut store = Store::new();
    put(&mut store, "a", "1"); // 2
    put(&mut store, "b", "1"); // 3
    put(&mut store, "a", "2"); // 4
    delete(&mut store, "b", None); // 5
    let a1 = || key_value("a", "1", 2, 2, 1);
    let a2 = || key_value("a", "2", 2, 4, 2);
    let b1 = || key_value("b", "1", 3, 3, 1);
    let cases = [
        (1, vec![]),
        (2, vec![a1()]),
        (3, vec![a1(), b1()]),
        (4, vec![a2(), b1()]),
        (5, vec![a2()]),
        (0, vec![a2()]),
        (-7, vec![a2()]),
    ];
    for (rev, kvs) in cases {
        check(&store, "a", Some(""), at(rev), found(kvs, 5));
    }
}

#[test]
fn range_at_future_revision_is_error() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    check(&store, "a", None, at(3), Err(Error::FutureRevision));
    check(
        &store,
        "a",
        None,
        at(2),
        found(vec![key_value("a", "1", 2, 2, 1)], 2),
    );
}

#[test]
fn range_at_compacted_revision_is_error() {
    let mut store = Store::new();
    put(&mut store, "a", "1"); // 2
    put(&mut store, "a", "2"); // 3
    put(&mut store, "a", "3"); // 4
    store.compact(3).unwrap();
    check(&store, "a", None, at(2), Err(Error::Compacted));
    check(&store, "a", None, at(1), Err(Error::Compacted));
    check(
        &store,
        "a",
        None,
        at(3),
        found(vec![key_value("a", "2", 2, 3, 2)], 4),
    );
    check(
        &store,
        "a",
        None,
        at(0),
        found(vec![key_value("a", "3", 2, 4, 3)], 4),
    );
    // A future revision is reported before a compacted one, as in etcd.
    check(&store, "a", None, at(5), Err(Error::FutureRevision));
}

#[test]
fn range_limit_truncates_kvs_but_not_count() {
    let mut store = Store::new();
    for key in ["a", "b", "c"] {
        put(&mut store, key, "v");
    }
    let all = || {
        vec![
            key_value("a", "v", 2, 2, 1),
            key_value("b", "v", 3, 3, 1),
            key_value("c", "v", 4, 4, 1),
        ]
    };
    let cases = [(-1, 3), (0, 3), (1, 1), (2, 2), (3, 3), (4, 3)];
    for (limit, returned) in cases {
        let options = RangeOptions {
            limit,
            ..RangeOptions::default()
        };
        let expected = Ok(RangeResult {
            kvs: all()[..returned].to_vec(),
            count: 3,
            rev: 4,
        });
        check(&store, "a", Some(""), options, expected);
    }

    let count_only = RangeOptions {
        count_only: true,
        limit: 1,
        ..RangeOptions::default()
    };
    let expected = Ok(RangeResult {
        kvs: vec![],
        count: 3,
        rev: 4,
    });
    check(&store, "a", Some(""), count_only, expected);
}

#[test]
fn range_end_selects_keys() {
    let mut store = Store::new();
    for key in ["a", "a\0", "ab", "b", "c"] {
        put(&mut store, key, "");
    }
    let cases: [(&str, Option<&str>, &[&str]); 9] = [
        ("a", None, &["a"]),
        ("aa", None, &[]),
        ("a", Some(""), &["a", "a\0", "ab", "b", "c"]),
        ("ab", Some(""), &["ab", "b", "c"]),
        ("a", Some("b"), &["a", "a\0", "ab"]),
        ("a", Some("a\0"), &["a"]),
        ("a", Some("a"), &[]),
        ("b", Some("a"), &[]),
        ("", Some("a\0"), &["a"]),
    ];
    for (key, end, expected_keys) in cases {
        let result = store
            .range(key.as_bytes(), end.map(str::as_bytes), &at(0))
            .unwrap();
        let keys: Vec<&[u8]> = result.kvs.iter().map(|kv| kv.key.as_slice()).collect();
        let expected: Vec<&[u8]> = expected_keys.iter().map(|key| key.as_bytes()).collect();
        assert_eq!(keys, expected, "keys of {key:?}..{end:?}");
        assert_eq!(result.count, expected.len());
    }
}

#[test]
fn delete_range_of_missing_key_keeps_revision() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    assert_eq!(delete(&mut store, "b", None), (0, 2));
    assert_eq!(delete(&mut store, "b", Some("z")), (0, 2));
    assert_eq!(store.current_revision(), 2);
}

#[test]
fn delete_range_tombstones_each_key_with_its_own_sub_revision() {
    let mut store = Store::new();
    for key in ["a", "b", "c"] {
        put(&mut store, key, "v");
    }
    let mut txn = store.write();
    assert_eq!(txn.delete_range(b"a", Some(b"c")), (2, 5));
    let changes: Vec<KeyValue> = txn
        .end()
        .into_iter()
        .map(std::sync::Arc::unwrap_or_clone)
        .collect();
    let tombstone = |key: &str| KeyValue::tombstone(key.as_bytes().to_vec(), 5);
    assert_eq!(changes, vec![tombstone("a"), tombstone("b")]);
    assert!(changes.iter().all(KeyValue::is_tombstone));

    let records: Vec<(Revision, Record)> = store.records_since(5).unwrap();
    let expected = vec![
        (
            Revision::new(5, 0),
            Record::Tombstone { key: b"a".to_vec() },
        ),
        (
            Revision::new(5, 1),
            Record::Tombstone { key: b"b".to_vec() },
        ),
    ];
    assert_eq!(records, expected);
    check(
        &store,
        "a",
        Some(""),
        at(0),
        found(vec![key_value("c", "v", 4, 4, 1)], 5),
    );
}

#[test]
fn txn_reads_own_writes() {
    let mut store = Store::new();
    put(&mut store, "a", "1"); // 2
    let mut txn = store.write();
    assert_eq!(txn.rev(), 2);
    assert_eq!(txn.put(b"a", b"2", 0), 3);
    assert_eq!(txn.put(b"b", b"1", 7), 3);
    assert_eq!(txn.rev(), 3);
    assert_eq!(txn.begin_revision(), 2);

    let own = txn.range(b"a", Some(b""), &at(0));
    let b = KeyValue {
        lease: 7,
        ..key_value("b", "1", 3, 3, 1)
    };
    assert_eq!(own, found(vec![key_value("a", "2", 2, 3, 2), b.clone()], 3));
    assert_eq!(
        txn.range(b"a", None, &at(2)),
        found(vec![key_value("a", "1", 2, 2, 1)], 3)
    );
    assert_eq!(txn.range(b"a", None, &at(4)), Err(Error::FutureRevision));

    let changes: Vec<KeyValue> = txn
        .end()
        .into_iter()
        .map(std::sync::Arc::unwrap_or_clone)
        .collect();
    assert_eq!(changes, vec![key_value("a", "2", 2, 3, 2), b]);
    assert_eq!(store.current_revision(), 3);
    let records: Vec<Revision> = store
        .records_since(3)
        .unwrap()
        .into_iter()
        .map(|(revision, _)| revision)
        .collect();
    assert_eq!(records, vec![Revision::new(3, 0), Revision::new(3, 1)]);
}

#[test]
fn txn_without_changes_reads_at_begin_revision_and_keeps_revision() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    let mut txn = store.write();
    assert_eq!(txn.range(b"a", None, &at(3)), Err(Error::FutureRevision));
    assert_eq!(txn.delete_range(b"z", None), (0, 2));
    assert_eq!(txn.rev(), 2);
    assert_eq!(txn.end(), vec![]);
    assert_eq!(store.current_revision(), 2);
}

#[test]
fn txn_delete_of_missing_key_after_put_reports_txn_revision() {
    let mut store = Store::new();
    let mut txn = store.write();
    txn.put(b"a", b"1", 0);
    assert_eq!(txn.delete_range(b"z", None), (0, 2));
    txn.end();
}

#[test]
fn txn_put_then_delete_of_same_key_leaves_it_deleted() {
    let mut store = Store::new();
    let mut txn = store.write();
    txn.put(b"a", b"1", 0);
    txn.put(b"a", b"2", 0);
    assert_eq!(txn.delete_range(b"a", None), (1, 2));
    let changes: Vec<KeyValue> = txn
        .end()
        .into_iter()
        .map(std::sync::Arc::unwrap_or_clone)
        .collect();
    assert_eq!(
        changes,
        vec![
            key_value("a", "1", 2, 2, 1),
            key_value("a", "2", 2, 2, 2),
            KeyValue::tombstone(b"a".to_vec(), 2),
        ]
    );
    check(&store, "a", None, at(0), found(vec![], 2));
    put(&mut store, "a", "3");
    check(
        &store,
        "a",
        None,
        at(0),
        found(vec![key_value("a", "3", 3, 3, 1)], 3),
    );
}

#[test]
fn txn_delete_then_put_of_same_key_creates_it_again() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    put(&mut store, "a", "2");
    let mut txn = store.write();
    txn.delete_range(b"a", None);
    txn.put(b"a", b"3", 0);
    txn.end();
    check(
        &store,
        "a",
        None,
        at(0),
        found(vec![key_value("a", "3", 4, 4, 1)], 4),
    );
    check(
        &store,
        "a",
        None,
        at(3),
        found(vec![key_value("a", "2", 2, 3, 2)], 4),
    );
}

#[test]
fn dropped_txn_commits_its_changes() {
    let mut store = Store::new();
    {
        let mut txn = store.write();
        txn.put(b"a", b"1", 0);
    }
    assert_eq!(store.current_revision(), 2);
    assert_eq!(put(&mut store, "a", "2"), 3);
    check(
        &store,
        "a",
        None,
        at(0),
        found(vec![key_value("a", "2", 2, 3, 2)], 3),
    );
}

#[test]
fn compaction_keeps_latest_revision_per_key() {
    let mut store = Store::new();
    put(&mut store, "a", "1"); // 2
    put(&mut store, "a", "2"); // 3
    put(&mut store, "b", "1"); // 4
    put(&mut store, "a", "3"); // 5
    store.compact(4).unwrap();
    let records: Vec<Revision> = store
        .records_since(0)
        .unwrap()
        .into_iter()
        .map(|(revision, _)| revision)
        .collect();
    assert_eq!(
        records,
        vec![
            Revision::new(3, 0),
            Revision::new(4, 0),
            Revision::new(5, 0)
        ]
    );
    check(
        &store,
        "a",
        Some(""),
        at(4),
        found(
            vec![key_value("a", "2", 2, 3, 2), key_value("b", "1", 4, 4, 1)],
            5,
        ),
    );
    check(
        &store,
        "a",
        None,
        at(0),
        found(vec![key_value("a", "3", 2, 5, 3)], 5),
    );
    // The version keeps counting the compacted puts.
    put(&mut store, "a", "4");
    check(
        &store,
        "a",
        None,
        at(0),
        found(vec![key_value("a", "4", 2, 6, 4)], 6),
    );
}

/// The revisions of every record kept, in order.
fn kept(store: &Store) -> Vec<i64> {
    let records = store.records_since(0).unwrap();
    records.iter().map(|(revision, _)| revision.main).collect()
}

/// A compaction visits only the keys whose index is more than a lone put.
/// A key compacted back to one is visited again once written again, a
/// key created and deleted between two compactions is visited, and so is
/// a key with history in a rebuilt store.
#[test]
fn compaction_finds_every_key_with_history() {
    let mut store = Store::new();
    put(&mut store, "a", "1"); // 2
    put(&mut store, "b", "1"); // 3
    put(&mut store, "a", "2"); // 4
    store.compact(4).unwrap();
    assert_eq!(kept(&store), vec![3, 4]);
    put(&mut store, "a", "3"); // 5
    put(&mut store, "c", "1"); // 6
    delete(&mut store, "c", None); // 7
    store.compact(7).unwrap();
    assert_eq!(kept(&store), vec![3, 5]);
    put(&mut store, "b", "2"); // 8
    let log = store.records_since(0).unwrap().into_iter().collect();
    let mut rebuilt = Store::from_revision_log(8, 7, log).unwrap();
    rebuilt.compact(8).unwrap();
    assert_eq!(kept(&rebuilt), vec![5, 8]);
    check(
        &rebuilt,
        "a",
        Some(""),
        at(0),
        found(
            vec![key_value("a", "3", 2, 5, 3), key_value("b", "2", 3, 8, 2)],
            8,
        ),
    );
}

#[test]
fn compaction_removes_keys_deleted_at_or_before_it() {
    let mut store = Store::new();
    put(&mut store, "a", "1"); // 2
    delete(&mut store, "a", None); // 3
    put(&mut store, "b", "1"); // 4
    delete(&mut store, "b", None); // 5
    store.compact(4).unwrap();
    let records: Vec<Revision> = store
        .records_since(0)
        .unwrap()
        .into_iter()
        .map(|(revision, _)| revision)
        .collect();
    assert_eq!(records, vec![Revision::new(4, 0), Revision::new(5, 0)]);
    check(
        &store,
        "a",
        Some(""),
        at(4),
        found(vec![key_value("b", "1", 4, 4, 1)], 5),
    );

    store.compact(5).unwrap();
    assert_eq!(store.record_count(), 0);
    assert_eq!(store.size_bytes(), 0);
    check(&store, "a", Some(""), at(5), found(vec![], 5));
    put(&mut store, "a", "2");
    check(
        &store,
        "a",
        None,
        at(0),
        found(vec![key_value("a", "2", 6, 6, 1)], 6),
    );
}

#[test]
fn compact_revision_must_move_forward_and_not_past_current() {
    let mut store = Store::new();
    // etcd starts the compact revision at -1, so 0 is compactable once.
    assert_eq!(store.compact(-1), Err(Error::Compacted));
    assert_eq!(store.compact(2), Err(Error::FutureRevision));
    assert_eq!(store.compact(0), Ok(()));
    assert_eq!(store.compact(0), Err(Error::Compacted));
    assert_eq!(store.compact(1), Ok(()));
    put(&mut store, "a", "1");
    assert_eq!(store.compact(3), Err(Error::FutureRevision));
    assert_eq!(store.compact(1), Err(Error::Compacted));
    assert_eq!(store.compact(2), Ok(()));
    assert_eq!(store.compact_revision(), 2);
}

#[test]
fn size_bytes_and_key_count_track_records_and_live_keys() {
    let mut store = Store::new();
    put(&mut store, "a", "xy");
    assert_eq!((store.size_bytes(), store.key_count()), (3, 1));
    put(&mut store, "a", "z");
    assert_eq!((store.size_bytes(), store.key_count()), (5, 1));
    put(&mut store, "bb", "");
    assert_eq!((store.size_bytes(), store.key_count()), (7, 2));
    delete(&mut store, "a", None);
    assert_eq!((store.size_bytes(), store.key_count()), (8, 1));
    store.compact(store.current_revision()).unwrap();
    assert_eq!((store.size_bytes(), store.key_count()), (2, 1));
}

/// A store with every kind of history: several generations, a txn with
/// sub revisions, a compaction and writes after it.
fn store_with_history() -> Store {
    let mut store = Store::new();
    put(&mut store, "a", "1"); // 2
    let mut txn = store.write(); // 3
    txn.put(b"b", b"1", 5);
    txn.put(b"a", b"2", 0);
    txn.put(b"c", b"1", 0);
    txn.end();
    delete(&mut store, "c", None); // 4
    put(&mut store, "c", "2"); // 5
    store.compact(4).unwrap();
    delete(&mut store, "a", Some("b")); // 6
    put(&mut store, "b", "2"); // 7
    store
}

#[test]
fn image_round_trip_preserves_state() {
    let store = store_with_history();
    let image = store.encode_image().unwrap();
    let decoded = Store::decode_image(&image).unwrap();
    assert_eq!(decoded.encode_image().unwrap(), image);
    assert_eq!(decoded.state_hash().unwrap(), store.state_hash().unwrap());
    assert_eq!(decoded.current_revision(), 7);
    assert_eq!(decoded.compact_revision(), 4);
    assert_eq!(decoded.size_bytes(), store.size_bytes());
    assert_eq!(decoded.key_count(), store.key_count());
    for rev in 4..=7 {
        assert_eq!(
            decoded.range(b"", Some(b""), &at(rev)),
            store.range(b"", Some(b""), &at(rev)),
            "range at {rev}"
        );
    }

    let (mut store, mut decoded) = (store, decoded);
    for store in [&mut store, &mut decoded] {
        put(store, "b", "3");
        store.compact(6).unwrap();
    }
    assert_eq!(
        decoded.encode_image().unwrap(),
        store.encode_image().unwrap()
    );
}

#[test]
fn image_of_new_store_round_trips() {
    let store = Store::new();
    let decoded = Store::decode_image(&store.encode_image().unwrap()).unwrap();
    assert_eq!(decoded.current_revision(), 1);
    assert_eq!(decoded.compact_revision(), -1);
    assert_eq!(decoded.state_hash().unwrap(), store.state_hash().unwrap());
}

#[test]
fn decode_rejects_damaged_images() {
    let image = store_with_history().encode_image().unwrap();
    let corrupt = |bytes: &[u8]| matches!(Store::decode_image(bytes), Err(Error::Corrupt(_)));
    for length in 0..image.len() {
        assert!(
            corrupt(&image[..length]),
            "image truncated to {length} bytes"
        );
    }
    let mut trailing = image.clone();
    trailing.push(0);
    assert!(corrupt(&trailing), "trailing byte");
    assert!(
        corrupt(b"DETCDMVC\x01\0\0\0"),
        "the hand-made format before"
    );
    let mut wrong_format = image.clone();
    assert_eq!(wrong_format[..2], [8, 1], "the format field leads");
    wrong_format[1] = 2;
    assert!(corrupt(&wrong_format), "an unknown format");
}

#[test]
fn decode_rejects_histories_no_store_produces() {
    fn check(
        current_revision: i64,
        compact_revision: i64,
        records: &[(i64, i64, Record)],
        valid: bool,
    ) {
        let revision_log: BTreeMap<Revision, Record> = records
            .iter()
            .map(|(main, sub, record)| (Revision::new(*main, *sub), record.clone()))
            .collect();
        let result = Store::from_revision_log(current_revision, compact_revision, revision_log);
        assert_eq!(
            result.is_ok(),
            valid,
            "{current_revision} {compact_revision} {records:?}: {result:?}"
        );
    }
    let put = |key: &str, create_revision, mod_revision, version| {
        Record::put(key_value(key, "v", create_revision, mod_revision, version))
    };
    let tombstone = |key: &str| Record::Tombstone {
        key: key.as_bytes().to_vec(),
    };

    check(1, -1, &[], true);
    check(0, -1, &[], false);
    check(3, 4, &[], false);
    check(1, -2, &[], false);
    check(
        3,
        -1,
        &[(2, 0, put("a", 2, 2, 1)), (3, 0, put("a", 2, 3, 2))],
        true,
    );
    // A revision without records, records past the current revision.
    check(3, -1, &[(2, 0, put("a", 2, 2, 1))], false);
    check(
        2,
        -1,
        &[(2, 0, put("a", 2, 2, 1)), (3, 0, put("a", 2, 3, 2))],
        false,
    );
    // Sub revisions must count from 0 without gaps.
    check(2, -1, &[(2, 1, put("a", 2, 2, 1))], false);
    check(
        2,
        -1,
        &[(2, 0, put("a", 2, 2, 1)), (2, 2, put("b", 2, 2, 1))],
        false,
    );
    // Versions, create and mod revisions must follow from the history.
    check(
        3,
        -1,
        &[(2, 0, put("a", 2, 2, 1)), (3, 0, put("a", 2, 3, 3))],
        false,
    );
    check(
        3,
        -1,
        &[(2, 0, put("a", 2, 2, 1)), (3, 0, put("a", 3, 3, 2))],
        false,
    );
    check(2, -1, &[(2, 0, put("a", 2, 3, 1))], false);
    check(2, -1, &[(2, 0, put("a", 2, 2, 2))], false);
    // Tombstones only of live keys; a put after one creates the key again.
    check(2, -1, &[(2, 0, tombstone("a"))], false);
    check(
        3,
        -1,
        &[(2, 0, put("a", 2, 2, 1)), (3, 0, tombstone("a"))],
        true,
    );
    check(
        4,
        -1,
        &[
            (2, 0, put("a", 2, 2, 1)),
            (3, 0, tombstone("a")),
            (4, 0, tombstone("a")),
        ],
        false,
    );
    check(
        4,
        -1,
        &[
            (2, 0, put("a", 2, 2, 1)),
            (3, 0, tombstone("a")),
            (4, 0, put("a", 2, 4, 2)),
        ],
        false,
    );
    check(
        4,
        -1,
        &[
            (2, 0, put("a", 2, 2, 1)),
            (3, 0, tombstone("a")),
            (4, 0, put("a", 4, 4, 1)),
        ],
        true,
    );
    // At or below the compact revision only what compaction keeps.
    check(
        4,
        3,
        &[(3, 0, put("a", 2, 3, 2)), (4, 0, put("a", 2, 4, 3))],
        true,
    );
    check(
        4,
        3,
        &[
            (2, 0, put("a", 2, 2, 1)),
            (3, 0, put("a", 2, 3, 2)),
            (4, 0, put("a", 2, 4, 3)),
        ],
        false,
    );
    check(
        4,
        3,
        &[(3, 0, put("a", 3, 3, 1)), (4, 0, tombstone("a"))],
        true,
    );
    check(
        4,
        4,
        &[(3, 0, put("a", 3, 3, 1)), (4, 0, tombstone("a"))],
        false,
    );
    check(
        4,
        2,
        &[(3, 0, put("a", 2, 3, 2)), (4, 0, put("a", 2, 4, 3))],
        false,
    );
}

#[test]
fn state_hash_depends_on_every_part_of_the_state() {
    let mut hashes = std::collections::BTreeSet::new();
    let mut store = Store::new();
    hashes.insert(store.state_hash().unwrap());
    put(&mut store, "a", "1");
    hashes.insert(store.state_hash().unwrap());
    put(&mut store, "a", "2");
    hashes.insert(store.state_hash().unwrap());
    store.compact(2).unwrap();
    hashes.insert(store.state_hash().unwrap());
    store.compact(3).unwrap();
    hashes.insert(store.state_hash().unwrap());
    assert_eq!(hashes.len(), 5);
    assert_eq!(
        store_with_history().state_hash().unwrap(),
        store_with_history().state_hash().unwrap()
    );
}

#[test]
fn error_texts_match_etcd() {
    assert_eq!(
        Error::Compacted.to_string(),
        "mvcc: required revision has been compacted"
    );
    assert_eq!(
        Error::FutureRevision.to_string(),
        "mvcc: required revision is a future revision"
    );
    assert_eq!(
        Error::RevisionNotFound.to_string(),
        "mvcc: revision not found"
    );
}

/// The same history against etcd 3.4.23 (`etcdctl put a 1; put b 2;
/// del b; endpoint hashkv`) printed 1316222404; `etcdctl_diff.rs` keeps
/// comparing longer histories with the live reference server.
const ETCD_HASHKV_PUT_PUT_DELETE: u32 = 1316222404;

#[test]
fn hash_kv_is_etcds_number() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    put(&mut store, "b", "2");
    delete(&mut store, "b", None);
    let hash = store.hash_kv(0).unwrap();
    assert_eq!(hash.hash, ETCD_HASHKV_PUT_PUT_DELETE);
    assert_eq!((hash.current_revision, hash.compact_revision), (4, -1));
    assert_ne!(
        store.hash_kv(3).unwrap().hash,
        hash.hash,
        "the hash at an earlier revision leaves the delete out"
    );
}

#[test]
fn hash_kv_refuses_compacted_and_future_revisions() {
    let store = store_with_history();
    assert_eq!(store.hash_kv(4), Err(Error::Compacted));
    assert_eq!(store.hash_kv(8), Err(Error::FutureRevision));
    assert!(store.hash_kv(5).is_ok() && store.hash_kv(0).is_ok());
}

#[test]
fn hash_kv_survives_the_snapshot_image_and_sees_every_change() {
    let store = store_with_history();
    let decoded = Store::decode_image(&store.encode_image().unwrap()).unwrap();
    for rev in [0, 5, 6, 7] {
        assert_eq!(decoded.hash_kv(rev), store.hash_kv(rev));
    }
    let mut changed = store.clone();
    put(&mut changed, "b", "2");
    assert_eq!(
        changed.hash_kv(7),
        store.hash_kv(7).map(|hash| crate::mvcc::KvHash {
            current_revision: 8,
            ..hash
        })
    );
    assert_ne!(
        changed.hash_kv(0).unwrap().hash,
        store.hash_kv(0).unwrap().hash
    );
}
