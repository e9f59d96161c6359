//! The WAL's writes, pipelined with the raft loop (raft-rs's asynchronous
//! Ready: `advance_append_async`, then `on_persist_ready` once durable).
//!
//! A Ready's entries and hard state go into the in-memory log at once and
//! into a write that runs while the loop goes on stepping messages, taking
//! proposals and applying what is committed. Readies that come while a
//! write is in flight wait in a queue and go out together in the next one:
//! one write and one fsync for all of them (group commit), started the
//! moment the one before is durable. So a leader appends and sends new
//! entries, and a follower takes its leader's next append, during an
//! fsync instead of after it.
//!
//! What waits for durability, and why it is safe:
//! - raft counts an entry as this member's, and a Ready's votes and
//!   acknowledgements (its persisted messages) leave, only after
//!   `on_persist_ready` for a write that holds it and every write before
//!   it (writes are made and finish in order);
//! - raft hands out committed entries only up to what this member has
//!   persisted, so whatever is applied (and so the backend's consistent
//!   index) is in the WAL already;
//! - everything else that touches the WAL (a snapshot mark or install,
//!   stopping) first `settle`s: waits for the write in flight and writes
//!   the queue, so the WAL holds all the in-memory log holds.
//!
//! Invariant, outside the loop's `select!` (whose arms run with the write
//! in flight taken out to be polled, and so must not persist): no write
//! in flight ⇒ the queue is empty and `wal` is present; a write in flight
//! holds the WAL.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use raft::eraftpb::{Entry, HardState, Message};

use crate::storage::wal::Wal;

use super::{FatalError, RaftNode};

/// What one Ready asks to persist (queued while a write is in flight).
pub(super) struct Queued {
    pub(super) entries: Vec<Entry>,
    pub(super) hard_state: Option<HardState>,
    pub(super) must_sync: bool,
    /// The Ready's number, for `on_persist_ready`.
    pub(super) number: u64,
    /// Its persisted messages: they leave once it is durable.
    pub(super) messages: Vec<Message>,
    /// Its entries replace some the log held (a crash point then).
    pub(super) overwrites: bool,
}

/// What a write hands back: the WAL, whether it is durable, and how long
/// its write and fsync took.
pub(super) struct Written {
    wal: Wal,
    result: Result<(), FatalError>,
    took: Duration,
}

/// The write in flight and what waits for it.
pub(super) struct InFlight {
    future: Pin<Box<dyn Future<Output = Written> + Send>>,
    /// The last Ready it holds.
    number: u64,
    messages: Vec<Message>,
    overwrites: bool,
}

impl InFlight {
    /// Waits for the write to be durable (or to fail).
    pub(super) async fn finish(in_flight: &mut Option<InFlight>) -> Written {
        match in_flight {
            Some(in_flight) => in_flight.future.as_mut().await,
            None => std::future::pending().await,
        }
    }
}

/// The write in flight and the Readies queued behind it.
#[derive(Default)]
pub(super) struct WalWrites {
    pub(super) in_flight: Option<InFlight>,
    queue: Vec<Queued>,
}

impl RaftNode {
    /// Persists what a Ready asks for: its entries and hard state are in
    /// the in-memory log already. With nothing to sync and no write in
    /// flight, a commit-only hard state is buffered for the next write
    /// (recovery never needs it to be current) and the messages leave at
    /// once: the Ready is as durable as it needs to be, and its number is
    /// returned, to hand raft after the advance. Otherwise it is queued,
    /// and written now if no write is in flight.
    pub(super) fn persist(&mut self, ready: Queued) -> Result<Option<u64>, FatalError> {
        debug_assert!(
            ready.must_sync || ready.entries.is_empty(),
            "raft: entries need an fsync"
        );
        if self.writes.in_flight.is_none() && !ready.must_sync {
            if let Some(hard_state) = &ready.hard_state {
                let wal = self.wal.as_mut().expect("wal present");
                wal.append(&[], Some(hard_state));
            }
            self.send_persisted(ready.messages)?;
            return Ok(Some(ready.number));
        }
        if !ready.must_sync && ready.hard_state.is_none() && ready.messages.is_empty() {
            // Nothing to write or to hold back; a later write's number
            // covers this Ready's.
            return Ok(None);
        }
        self.writes.queue.push(ready);
        if self.writes.in_flight.is_none() {
            self.start_write()?;
        }
        Ok(None)
    }

    /// Starts writing everything queued, with one fsync. A queue of
    /// commit-only hard states needs none: they are buffered, and their
    /// messages leave, since every write before them is durable.
    fn start_write(&mut self) -> Result<(), FatalError> {
        debug_assert!(self.writes.in_flight.is_none());
        let queue = std::mem::take(&mut self.writes.queue);
        let Some(number) = queue.last().map(|queued| queued.number) else {
            return Ok(());
        };
        let must_sync = queue.iter().any(|queued| queued.must_sync);
        let overwrites = queue.iter().any(|queued| queued.overwrites);
        let mut messages = Vec::new();
        let mut batch = Vec::with_capacity(queue.len());
        for queued in queue {
            messages.extend(queued.messages);
            batch.push((queued.entries, queued.hard_state));
        }
        if !must_sync {
            let wal = self.wal.as_mut().expect("wal present");
            for (_, hard_state) in &batch {
                wal.append(&[], hard_state.as_ref());
            }
            self.on_persist_ready(number);
            return self.send_persisted(messages);
        }
        let wal = self.wal.take().expect("wal present");
        #[cfg(madsim)]
        self.synced.write_begun();
        self.writes.in_flight = Some(InFlight {
            future: self.write(wal, batch),
            number,
            messages,
            overwrites,
        });
        Ok(())
    }

    /// A write is done: raft hears what is durable, the messages that
    /// waited for it leave, and what queued meanwhile is written next.
    pub(super) fn on_written(
        &mut self,
        in_flight: InFlight,
        written: Written,
    ) -> Result<(), FatalError> {
        self.wal = Some(written.wal);
        self.observe_fsync(written.took);
        written.result?;
        #[cfg(madsim)]
        if in_flight.overwrites {
            self.crash_point(crate::probe::CrashPoint::LogOverwritten)?;
        }
        #[cfg(not(madsim))]
        let _ = in_flight.overwrites;
        #[cfg(madsim)]
        self.crash_point(crate::probe::CrashPoint::PersistedNotAnnounced)?;
        self.on_persist_ready(in_flight.number);
        self.send_persisted(in_flight.messages)?;
        #[cfg(madsim)]
        if crate::sabotage::active(crate::sabotage::Sabotage::PersistedOneWriteEarly) {
            if let Some(last) = self.writes.queue.last() {
                self.on_persist_ready(last.number);
            }
            let early = (self.writes.queue.iter_mut())
                .flat_map(|queued| std::mem::take(&mut queued.messages))
                .collect();
            self.send_persisted(early)?;
        }
        self.start_write()
    }

    /// Waits until the WAL holds everything the in-memory log holds, for
    /// what needs the WAL itself (snapshot marks and installs, stopping).
    pub(super) async fn settle(&mut self) -> Result<(), FatalError> {
        while let Some(mut in_flight) = self.writes.in_flight.take() {
            let written = in_flight.future.as_mut().await;
            self.on_written(in_flight, written)?;
        }
        debug_assert!(self.writes.queue.is_empty());
        Ok(())
    }

    /// Sends messages that could leave only once durable: votes and a
    /// follower's acknowledgements.
    pub(super) fn send_persisted(&mut self, messages: Vec<Message>) -> Result<(), FatalError> {
        if messages.is_empty() {
            return Ok(());
        }
        #[cfg(madsim)]
        let granted_vote = messages.iter().any(super::grants_vote);
        // Only a leader sends snapshots, and none of its messages wait.
        let mut snapshots_sent = Vec::new();
        self.send(messages, &mut snapshots_sent);
        debug_assert!(
            snapshots_sent.is_empty(),
            "a persisted message is a snapshot"
        );
        #[cfg(madsim)]
        if granted_vote {
            self.crash_point(crate::probe::CrashPoint::VoteGranted)?;
        }
        Ok(())
    }

    /// The write itself, in production on a blocking thread (disk work
    /// takes milliseconds: it stays off the async runtime), started now.
    #[cfg(not(madsim))]
    fn write(
        &self,
        mut wal: Wal,
        batch: Vec<(Vec<Entry>, Option<HardState>)>,
    ) -> Pin<Box<dyn Future<Output = Written> + Send>> {
        let clock = self.clock.clone();
        Box::pin(crate::storage::blocking::start(move || {
            for (entries, hard_state) in &batch {
                wal.append(entries, hard_state.as_ref());
            }
            let started = clock.elapsed();
            let result = wal.write().and_then(|()| wal.sync());
            Written {
                wal,
                result: result.map_err(FatalError::from),
                took: clock.elapsed().saturating_sub(started),
            }
        }))
    }

    /// The simulator's write: the write and the fsync are two steps, as on
    /// a real disk, so that a crash can fall between them and tear the
    /// tail; the fsync takes virtual time, more on a disk the nemesis
    /// slowed. It runs when the loop first polls it, after the Ready that
    /// started it applied what it could: the order in which a crash during
    /// the fsync finds those entries applied and the new batch not
    /// durable.
    #[cfg(madsim)]
    fn write(
        &self,
        mut wal: Wal,
        batch: Vec<(Vec<Entry>, Option<HardState>)>,
    ) -> Pin<Box<dyn Future<Output = Written> + Send>> {
        let clock = self.clock.clone();
        let member = self.shared.member_id;
        let follower = self.raw.raft.state != raft::StateRole::Leader;
        Box::pin(async move {
            let (mut wal, written) = crate::storage::blocking::run(move || {
                for (entries, hard_state) in &batch {
                    wal.append(entries, hard_state.as_ref());
                }
                let result = wal.write();
                (wal, result)
            })
            .await;
            let failed = |wal, result| Written {
                wal,
                result,
                took: Duration::ZERO,
            };
            if let Err(error) = written {
                return failed(wal, Err(error.into()));
            }
            let point = crate::probe::CrashPoint::WalWrittenNotSynced;
            if crate::probe::crash_here(member, point) {
                return failed(wal, Err(FatalError::CrashPoint(point)));
            }
            crate::storage::blocking::fsync_latency().await;
            let extra = crate::probe::extra_sync_latency(member);
            if !extra.is_zero() {
                tokio::time::sleep(extra).await;
            }
            // The sabotage's follower acknowledged already; a slow disk
            // keeps its bytes in the page cache for a while.
            if follower
                && crate::sabotage::active(crate::sabotage::Sabotage::FollowerAckBeforeFsync)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let started = clock.elapsed();
            let (wal, synced) = crate::storage::blocking::run(move || {
                let result = wal.sync();
                (wal, result)
            })
            .await;
            Written {
                wal,
                result: synced.map_err(FatalError::from),
                took: clock.elapsed().saturating_sub(started),
            }
        })
    }
}
