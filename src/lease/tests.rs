use std::time::Duration;

use super::*;

fn put(key: &str, lease: i64) -> Arc<KeyValue> {
    Arc::new(KeyValue {
        key: key.as_bytes().to_vec(),
        mod_revision: 2,
        create_revision: 2,
        version: 1,
        value: b"v".to_vec(),
        lease,
    })
}

fn keys(leases: &Leases, id: i64) -> Vec<String> {
    leases
        .get(id)
        .unwrap()
        .keys
        .iter()
        .map(|k| String::from_utf8(k.clone()).unwrap())
        .collect()
}

#[test]
fn grant_refuses_duplicates_and_huge_ttls() {
    let mut leases = Leases::default();
    assert_eq!(leases.grant(7, 10, 3).unwrap().ttl, 10);
    assert_eq!(leases.grant(7, 10, 4), Err(Error::LeaseExists));
    assert_eq!(
        leases.grant(8, MAX_LEASE_TTL + 1, 5),
        Err(Error::LeaseTtlTooLarge)
    );
    assert!(leases.grant(8, MAX_LEASE_TTL, 5).is_ok());
    assert_eq!(leases.len(), 2);
}

#[test]
fn picked_ids_are_positive_unused_and_the_same_everywhere() {
    let mut leases = Leases::default();
    let first = leases.pick_id(42);
    assert!(first > 0);
    assert_eq!(Leases::default().pick_id(42), first);
    leases.grant(first, 5, 42).unwrap();
    let second = leases.pick_id(42);
    assert!(second > 0 && second != first);
}

#[test]
fn keys_follow_puts_overwrites_and_deletes() {
    let mut leases = Leases::default();
    leases.grant(1, 10, 1).unwrap();
    leases.grant(2, 10, 2).unwrap();
    leases.record_changes(&[put("a", 1), put("b", 1), put("c", 0)]);
    assert_eq!(keys(&leases, 1), ["a", "b"]);
    // Overwriting moves a key to its new lease, or to none.
    leases.record_changes(&[put("a", 2), put("b", 0)]);
    assert_eq!(keys(&leases, 1), Vec::<String>::new());
    assert_eq!(keys(&leases, 2), ["a"]);
    // A delete detaches.
    leases.record_changes(&[Arc::new(KeyValue::tombstone(b"a".to_vec(), 5))]);
    assert_eq!(keys(&leases, 2), Vec::<String>::new());
    // A put naming a lease that does not exist attaches nothing.
    leases.record_changes(&[put("z", 99)]);
    assert!(leases.get(99).is_none());
}

#[test]
fn a_checkpoint_older_than_a_renewal_is_void() {
    let mut leases = Leases::default();
    leases.grant(1, 10, 1).unwrap();
    assert!(leases.checkpoint(1, 4000, 1));
    assert_eq!(
        leases.get(1).unwrap().resume_from(),
        Duration::from_millis(4000)
    );
    assert_eq!(leases.renew(1, 9), Ok(10));
    assert_eq!(
        leases.get(1).unwrap().resume_from(),
        Duration::from_secs(10)
    );
    // Measured before the renewal at 9: ignored.
    assert!(!leases.checkpoint(1, 1000, 1));
    assert_eq!(
        leases.get(1).unwrap().resume_from(),
        Duration::from_secs(10)
    );
    assert!(!leases.checkpoint(5, 1000, 1));
    assert_eq!(leases.renew(5, 10), Err(Error::LeaseNotFound));
}

#[test]
fn the_image_round_trips_and_keys_come_back_from_the_store() {
    let mut leases = Leases::default();
    leases.grant(1, 10, 1).unwrap();
    leases.grant(2, 20, 2).unwrap();
    leases.checkpoint(2, 1500, 2);
    leases.record_changes(&[put("a", 1), put("b", 2)]);
    let stored = leases.to_stored();
    let mut decoded = Leases::from_stored(stored.clone()).unwrap();
    decoded.attach_live([(&b"a"[..], 1), (&b"b"[..], 2), (&b"c"[..], 3)].into_iter());
    assert_eq!(decoded, leases);
    assert_eq!(decoded.hash_words(), leases.hash_words());
    let twice = [stored.clone(), stored].concat();
    assert!(Leases::from_stored(twice).is_err(), "a lease stored twice");
}

#[test]
fn timers_expire_soonest_first_and_retry_only_after_a_while() {
    let secs = Duration::from_secs;
    let mut timers = Timers::default();
    timers.start(1, secs(0), secs(10));
    timers.start(2, secs(0), secs(5));
    timers.start(3, secs(0), secs(60));
    assert!(timers.take_expired(secs(4), 10).is_empty());
    assert_eq!(timers.take_expired(secs(11), 1), [2]);
    assert_eq!(timers.take_expired(secs(11), 10), [1]);
    // Both proposed already: nothing until the retry interval passes.
    assert!(timers.take_expired(secs(12), 10).is_empty());
    assert_eq!(timers.take_expired(secs(11) + EXPIRY_RETRY, 10), [2, 1]);
    // A renewal restarts the lease and forgets the proposal.
    timers.start(1, secs(20), secs(10));
    assert_eq!(timers.remaining(1, secs(25)), Some(secs(5)));
    assert_eq!(timers.remaining(1, secs(35)), Some(Duration::ZERO));
    timers.remove(1);
    assert_eq!(timers.remaining(1, secs(25)), None);
}

#[test]
fn checkpoints_go_round_the_leases_in_batches() {
    let secs = Duration::from_secs;
    let mut timers = Timers::default();
    for id in 1..=5 {
        timers.start(id, secs(0), secs(10 * id as u64));
    }
    let ids = |batch: Vec<(i64, Duration)>| batch.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    assert_eq!(ids(timers.checkpoint_batch(secs(1), 2)), [1, 2]);
    assert_eq!(ids(timers.checkpoint_batch(secs(1), 2)), [3, 4]);
    assert_eq!(ids(timers.checkpoint_batch(secs(1), 2)), [5, 1]);
    // A lease past its deadline is checkpointed as all but over.
    assert_eq!(ids(timers.checkpoint_batch(secs(15), 5)), [2, 3, 4, 5, 1]);
    assert_eq!(timers.checkpoint_batch(secs(15), 1), [(2, secs(5))]);
    assert_eq!(
        timers.checkpoint_batch(secs(15), 4)[3],
        (1, Duration::from_millis(1))
    );
}

#[test]
fn reset_resumes_from_checkpoints() {
    let mut leases = Leases::default();
    leases.grant(1, 10, 1).unwrap();
    leases.grant(2, 10, 2).unwrap();
    leases.checkpoint(2, 3000, 2);
    let mut timers = Timers::default();
    timers.reset(Duration::from_secs(100), &leases);
    assert_eq!(timers.deadline(1), Some(Duration::from_secs(110)));
    assert_eq!(timers.deadline(2), Some(Duration::from_millis(103_000)));
    assert_eq!(timers.by_deadline(&leases), [2, 1]);
}

#[test]
fn a_checkpoint_never_moves_a_deadline_later() {
    let s = Duration::from_secs;
    let mut timers = Timers::default();
    timers.start(1, s(1), s(8));
    // Measured at 4 s with 5 s left, persisted here only at 8 s: 13 s
    // would outlive the TTL; the deadline kept, 9 s, stands.
    timers.checkpoint(1, s(8) + s(5));
    assert_eq!(timers.deadline(1), Some(s(9)));
    // A member that restarted resumes from the full TTL: the checkpoint
    // brings it in.
    timers.start(2, s(20), s(8));
    timers.checkpoint(2, s(20) + s(3));
    assert_eq!(timers.deadline(2), Some(s(23)));
    timers.checkpoint(3, s(5));
    assert_eq!(timers.deadline(3), Some(s(5)));
}
