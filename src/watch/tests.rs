//! Watchers against a store: history and live changes, ranges, filters,
//! previous values, compaction and batching.

use super::*;

fn put(store: &mut Store, key: &str, value: &str) {
    let mut txn = store.write();
    txn.put(key.as_bytes(), value.as_bytes(), 0);
    txn.end();
}

fn delete(store: &mut Store, key: &str) {
    let mut txn = store.write();
    txn.delete_range(key.as_bytes(), None);
    txn.end();
}

/// (type, key, value, mod revision, previous value) per event.
fn summary(poll: Poll) -> Vec<(i32, String, String, i64, Option<String>)> {
    let Poll::Events { events, .. } = poll else {
        panic!("events expected, got {poll:?}")
    };
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).unwrap();
    events
        .into_iter()
        .map(|event| {
            let kv = event.kv.unwrap();
            (
                event.r#type,
                text(&kv.key),
                text(&kv.value),
                kv.mod_revision,
                event.prev_kv.map(|prev| text(&prev.value)),
            )
        })
        .collect()
}

const PUT: i32 = EventType::Put as i32;
const DELETE: i32 = EventType::Delete as i32;

#[test]
fn history_then_live_changes_in_order_once() {
    let mut store = Store::new();
    put(&mut store, "a", "1"); // 2
    put(&mut store, "b", "1"); // 3
    delete(&mut store, "a"); // 4
    let mut watcher = Watcher::new(0, b"a".to_vec(), b"c".to_vec(), 1, store.current_revision());
    assert_eq!(
        summary(watcher.poll(&store)),
        [
            (PUT, "a".into(), "1".into(), 2, None),
            (PUT, "b".into(), "1".into(), 3, None),
            (DELETE, "a".into(), "".into(), 4, None)
        ]
    );
    assert_eq!(watcher.poll(&store), Poll::Idle, "nothing twice");
    put(&mut store, "c", "1"); // 5: outside [a, c)
    put(&mut store, "b", "2"); // 6
    assert_eq!(
        summary(watcher.poll(&store)),
        [(PUT, "b".into(), "2".into(), 6, None)]
    );
    assert!(watcher.caught_up(6));
}

#[test]
fn a_watch_from_now_sees_only_later_changes() {
    let mut store = Store::new();
    put(&mut store, "k", "old");
    let mut watcher = Watcher::new(0, b"k".to_vec(), Vec::new(), 0, store.current_revision());
    assert_eq!(watcher.poll(&store), Poll::Idle);
    put(&mut store, "k", "new");
    assert_eq!(
        summary(watcher.poll(&store)),
        [(PUT, "k".into(), "new".into(), 3, None)]
    );
}

#[test]
fn filters_and_previous_values() {
    let mut store = Store::new();
    put(&mut store, "k", "1");
    put(&mut store, "k", "2");
    delete(&mut store, "k");
    let mut no_put =
        Watcher::new(0, b"k".to_vec(), Vec::new(), 1, 4).with_options(true, false, true, false);
    assert_eq!(
        summary(no_put.poll(&store)),
        [(DELETE, "k".into(), "".into(), 4, Some("2".into()))]
    );
    let mut no_delete =
        Watcher::new(1, b"".to_vec(), vec![0], 1, 4).with_options(false, true, true, false);
    assert_eq!(
        summary(no_delete.poll(&store)),
        [
            (PUT, "k".into(), "1".into(), 2, None),
            (PUT, "k".into(), "2".into(), 3, Some("1".into()))
        ]
    );
}

#[test]
fn compaction_ends_a_watcher_that_still_owed_compacted_revisions() {
    let mut store = Store::new();
    for value in ["1", "2", "3"] {
        put(&mut store, "k", value);
    }
    store.compact(3).unwrap();
    let mut behind = Watcher::new(0, b"k".to_vec(), Vec::new(), 2, 4);
    assert_eq!(
        behind.poll(&store),
        Poll::Compacted {
            compact_revision: 3
        }
    );
    let mut at_compaction = Watcher::new(1, b"k".to_vec(), Vec::new(), 3, 4);
    assert_eq!(
        summary(at_compaction.poll(&store)),
        [
            (PUT, "k".into(), "2".into(), 3, None),
            (PUT, "k".into(), "3".into(), 4, None)
        ]
    );
}

#[test]
fn a_watcher_far_behind_catches_up_in_batches() {
    let mut store = Store::new();
    for n in 0..BATCH_REVISIONS_MAX + 10 {
        put(&mut store, "k", &n.to_string());
    }
    let mut watcher = Watcher::new(0, b"k".to_vec(), Vec::new(), 1, store.current_revision());
    let Poll::Events { events, revision } = watcher.poll(&store) else {
        panic!()
    };
    assert_eq!(
        (events.len() as i64, revision),
        (BATCH_REVISIONS_MAX - 1, BATCH_REVISIONS_MAX)
    );
    let Poll::Events { events, revision } = watcher.poll(&store) else {
        panic!()
    };
    assert_eq!((events.len(), revision), (11, store.current_revision()));
    assert_eq!(watcher.poll(&store), Poll::Idle);
}

#[test]
fn a_negative_start_is_compacted_below_the_compact_revision_and_else_from_now() {
    let mut store = Store::new();
    for value in ["1", "2", "3"] {
        put(&mut store, "k", value);
    }
    let current = store.current_revision();
    // Never compacted: the compact revision is -1.
    let mut below = Watcher::new(0, b"k".to_vec(), Vec::new(), -5, current);
    assert!(matches!(
        below.poll(&store),
        Poll::Compacted {
            compact_revision: -1
        }
    ));
    let mut minus_one = Watcher::new(1, b"k".to_vec(), Vec::new(), -1, current);
    assert!(matches!(minus_one.poll(&store), Poll::Idle));
    assert!(minus_one.caught_up(current));
    store.compact(2).unwrap();
    let mut after = Watcher::new(2, b"k".to_vec(), Vec::new(), -1, current);
    assert!(matches!(
        after.poll(&store),
        Poll::Compacted {
            compact_revision: 2
        }
    ));
}
