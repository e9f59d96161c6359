//! Watchers: what one watch (etcd `WatchCreateRequest`) has seen and what
//! it sees next, read from the MVCC revision log.
//!
//! One mechanism serves history and live changes alike: a watcher keeps
//! the next revision it owes its client and, whenever the applied
//! revision moves, reads the revision log from there (etcd keeps
//! "synced" and "unsynced" watcher groups for speed; the log read makes
//! them one). So events come in revision order, each exactly once, with
//! nothing skipped — or, if compaction removed revisions the watcher
//! still owed, it is told the compact revision and ends, as in etcd.

use crate::apply::to_proto;
use crate::mvcc::{Error, RangeOptions, Record, Store};
use crate::proto::mvccpb::{event::EventType, Event, KeyValue};

/// At most this many revisions go into one response; a watcher far
/// behind catches up over several (etcd `watchBatchMaxRevs`).
pub const BATCH_REVISIONS_MAX: i64 = 1000;

/// One watch on one stream.
#[derive(Clone, Debug)]
pub struct Watcher {
    pub id: i64,
    key: Vec<u8>,
    /// etcd's range_end: empty for the one key, `[0]` for every key from
    /// `key` on, otherwise the end of `[key, range_end)`.
    range_end: Vec<u8>,
    /// The first revision not yet delivered.
    next_revision: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    pub progress_notify: bool,
}

/// What a watcher has to say after a poll.
#[derive(Debug, PartialEq)]
pub enum Poll {
    /// Events (possibly none, if the filters dropped them all) up to
    /// `revision`; the watcher now waits for later ones.
    Events { events: Vec<Event>, revision: i64 },
    /// Nothing new since the last poll.
    Idle,
    /// Revisions it still owed were compacted away: it is over.
    Compacted { compact_revision: i64 },
}

impl Watcher {
    /// A watcher from `start_revision` on (0: changes after `current_revision`;
    /// negative: see `poll`).
    pub fn new(
        id: i64,
        key: Vec<u8>,
        range_end: Vec<u8>,
        start_revision: i64,
        current_revision: i64,
    ) -> Watcher {
        let next_revision = if start_revision != 0 {
            start_revision
        } else {
            current_revision + 1
        };
        #[cfg(madsim)]
        let next_revision = if start_revision == 0
            && crate::sabotage::active(crate::sabotage::Sabotage::WatchFromNowReplaysCurrent)
        {
            current_revision
        } else if start_revision > current_revision
            && crate::sabotage::active(crate::sabotage::Sabotage::WatchFromFutureStartsNow)
        {
            current_revision + 1
        } else {
            next_revision
        };
        Watcher {
            id,
            key,
            range_end,
            next_revision,
            no_put: false,
            no_delete: false,
            prev_kv: false,
            progress_notify: false,
        }
    }

    pub fn with_options(
        mut self,
        no_put: bool,
        no_delete: bool,
        prev_kv: bool,
        progress_notify: bool,
    ) -> Watcher {
        (
            self.no_put,
            self.no_delete,
            self.prev_kv,
            self.progress_notify,
        ) = (no_put, no_delete, prev_kv, progress_notify);
        self
    }

    /// Has it delivered everything up to `revision`?
    pub fn caught_up(&self, revision: i64) -> bool {
        self.next_revision > revision
    }

    fn covers(&self, key: &[u8]) -> bool {
        #[cfg(madsim)]
        if self.range_end.is_empty()
            && crate::sabotage::active(crate::sabotage::Sabotage::SingleKeyWatchMatchesPrefix)
        {
            return key.starts_with(&self.key);
        }
        match self.range_end.as_slice() {
            [] => key == self.key.as_slice(),
            [0] => key >= self.key.as_slice(),
            end => key >= self.key.as_slice() && key < end,
        }
    }

    /// Reads what changed in `store` since the last poll.
    pub fn poll(&mut self, store: &Store) -> Poll {
        let current = store.current_revision();
        if self.next_revision < 0 {
            // etcd 3.4: a negative start below the compact revision (-1
            // before any compaction) is compacted; any other reads no
            // history (as bytes it sorts past every revision), so the
            // watcher starts from now.
            if self.next_revision < store.compact_revision() {
                return Poll::Compacted {
                    compact_revision: store.compact_revision(),
                };
            }
            self.next_revision = current + 1;
        }
        if self.next_revision > current {
            return Poll::Idle;
        }
        #[cfg(madsim)]
        if crate::sabotage::active(crate::sabotage::Sabotage::WatchCompactedAtItsRevision)
            && self.next_revision == store.compact_revision()
        {
            return Poll::Compacted {
                compact_revision: store.compact_revision(),
            };
        }
        if self.next_revision < store.compact_revision() {
            return Poll::Compacted {
                compact_revision: store.compact_revision(),
            };
        }
        let last = current.min(self.next_revision + BATCH_REVISIONS_MAX - 1);
        let mut events = Vec::new();
        let mut failed = None;
        let read = store.visit_records(self.next_revision, last, |revision, record| {
            if !self.covers(record.key()) {
                return;
            }
            #[cfg(madsim)]
            if crate::sabotage::active(crate::sabotage::Sabotage::WatchGap)
                && revision.main % 16 == 0
            {
                return;
            }
            #[cfg(madsim)]
            let (no_put, no_delete) =
                if crate::sabotage::active(crate::sabotage::Sabotage::WatchFiltersSwapped) {
                    (self.no_delete, self.no_put)
                } else {
                    (self.no_put, self.no_delete)
                };
            #[cfg(not(madsim))]
            let (no_put, no_delete) = (self.no_put, self.no_delete);
            let event = match record {
                Record::Put(_) if no_put => return,
                Record::Tombstone { .. } if no_delete => return,
                Record::Put(key_value) => {
                    let mut kv = to_proto((**key_value).clone());
                    kv.mod_revision = revision.main;
                    #[cfg(madsim)]
                    if crate::sabotage::active(crate::sabotage::Sabotage::WatchEventDropsLease) {
                        kv.lease = 0;
                    }
                    Event {
                        r#type: EventType::Put as i32,
                        kv: Some(kv),
                        prev_kv: None,
                    }
                }
                Record::Tombstone { key } => {
                    #[cfg(madsim)]
                    if crate::sabotage::active(crate::sabotage::Sabotage::WatchSkipsLeaseDeletes)
                        && matches!(
                            previous(store, key, revision.main),
                            Ok(Some(before)) if before.lease != 0
                        )
                    {
                        return;
                    }
                    let kv = KeyValue {
                        key: key.clone(),
                        mod_revision: revision.main,
                        ..KeyValue::default()
                    };
                    #[cfg(madsim)]
                    let kv = match previous(store, key, revision.main) {
                        Ok(Some(before))
                            if crate::sabotage::active(
                                crate::sabotage::Sabotage::DeleteEventCarriesValue,
                            ) =>
                        {
                            KeyValue {
                                value: before.value,
                                ..kv
                            }
                        }
                        _ => kv,
                    };
                    Event {
                        r#type: EventType::Delete as i32,
                        kv: Some(kv),
                        prev_kv: None,
                    }
                }
            };
            let prev_kv = if self.prev_kv {
                #[cfg(madsim)]
                let before =
                    if crate::sabotage::active(crate::sabotage::Sabotage::WatchPrevKvIsCurrent) {
                        // Off by one: the key as of the event, not before it.
                        revision.main + 1
                    } else {
                        revision.main
                    };
                #[cfg(not(madsim))]
                let before = revision.main;
                match previous(store, record.key(), before) {
                    #[cfg(madsim)]
                    Ok(_)
                        if crate::sabotage::active(crate::sabotage::Sabotage::WatchDropsPrevKv)
                            && revision.main % 4 == 0 =>
                    {
                        None
                    }
                    Ok(prev_kv) => prev_kv,
                    Err(error) => {
                        failed.get_or_insert(error);
                        return;
                    }
                }
            } else {
                None
            };
            events.push(Event { prev_kv, ..event });
        });
        if let Err(error) = read.and(failed.map_or(Ok(()), Err)) {
            // The member stops on it (`Store::cold_failure`); the watcher
            // owes the same revisions meanwhile.
            tracing::error!(%error, watch_id = self.id, "a watcher cannot read the revision log");
            return Poll::Idle;
        }
        self.next_revision = last + 1;
        Poll::Events {
            events,
            revision: last,
        }
    }
}

/// The key as it was just before `revision`, if it existed then (and
/// that is not compacted away); an error only if it cannot be read.
fn previous(store: &Store, key: &[u8], revision: i64) -> Result<Option<KeyValue>, Error> {
    let options = RangeOptions {
        rev: revision - 1,
        ..RangeOptions::default()
    };
    match store.range(key, None, &options) {
        Ok(found) => Ok(found.kvs.into_iter().next().map(to_proto)),
        Err(error @ Error::Unreadable(_)) => Err(error),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests;
