//! Watch consumers for etcd's watch guarantees (`properties::watch`), on
//! either runtime: the simulator's and the jepsen-style tool's.
//! Each watches a key range (every key of the workload, [`Watched`]) from
//! revision 1 through all the faults, resuming after the last revision it got on another member
//! whenever its stream breaks, as etcd clients do, and asks for progress
//! now and then. The main consumer asks for previous key-values; a second
//! one filters puts or deletes (drawn per run). Each records every
//! response as it came; the checks run at the end, and the watch must
//! also reach the final revision within the bound.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::proto::etcdserverpb::{
    watch_client::WatchClient, watch_create_request::FilterType, watch_request::RequestUnion,
    WatchCreateRequest, WatchProgressRequest, WatchRequest,
};
use detcd::proto::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use std::collections::BTreeMap;

use crate::history::Operation;
use crate::model::etcd::{Etcd, EtcdInput, EtcdOutput};
use crate::properties::past_reads::{self, Replay};
use crate::properties::watch::{self, CompactionSent, Event, Filter, Previous, Response};

/// The range the watch consumers watch: every key of one kind of workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watched {
    pub key: &'static [u8],
    pub range_end: &'static [u8],
}

impl Watched {
    /// The key-value workloads' keys ("k0", "k1", ...), and with them the
    /// lease workload's ("lease/...") and the lock workload's
    /// ("sim-lock..."): keys that leases delete as they expire.
    pub const KV: Watched = Watched {
        key: b"k",
        range_end: b"t",
    };
    /// The etcd workload's keys (`etcd_workload::PREFIX`, "etcd/").
    pub const ETCD: Watched = Watched {
        key: b"etcd/",
        range_end: b"etcd0",
    };

    pub fn contains(self, key: &str) -> bool {
        key.as_bytes() >= self.key && key.as_bytes() < self.range_end
    }
}
/// How often the consumer asks for progress (so it learns the revision
/// even when no watched key changes).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Pause before resuming on the next member.
const RESUME_PAUSE: Duration = Duration::from_millis(200);
/// A stream silent this long (no events, no progress) counts as broken.
const STREAM_SILENCE_MAX: Duration = Duration::from_secs(5);

/// What a consumer asks for: the range `[key, range_end)`, previous
/// key-values, a filter. Each also asks the server for progress
/// notifications (etcd's `progress_notify`), which the simulator's members
/// send every second to a watcher that heard nothing since the last.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub key: &'static [u8],
    pub range_end: &'static [u8],
    pub prev_kv: bool,
    pub filter: Option<Filter>,
}

/// What the consumer saw.
#[derive(Debug, Default)]
pub struct WatchLog {
    /// Every response, in arrival order, numbered by stream.
    pub responses: Vec<Response>,
    /// Every event up to this revision has been received.
    pub caught_up_to: i64,
    /// Streams started (1 + resumptions).
    pub streams: usize,
    /// Compaction removed revisions the watch still needed; it went on
    /// from the compact revision, so it may have missed changes.
    pub compacted: bool,
    /// Each time a stream was told it was compacted: every event up to
    /// which revision the consumer had then, and the compact revision the
    /// server reported.
    pub compactions: Vec<(i64, i64)>,
    /// Set by the harness: stop watching.
    pub stop: bool,
}

pub type SharedLog = Arc<Mutex<WatchLog>>;

/// Watches until told to stop, resuming across failures; tells `note`
/// why each stream ended. Responses are timed from `started`, the run's
/// start.
pub async fn consume(
    endpoints: Vec<String>,
    spec: Spec,
    (log, started): (SharedLog, tokio::time::Instant),
    note: impl Fn(String),
) {
    let mut member = 0;
    let name = match spec.filter {
        None => "watcher".to_string(),
        Some(filter) => format!("watcher ({filter:?})"),
    };
    while !log.lock().unwrap().stop {
        let from = log.lock().unwrap().caught_up_to + 1;
        let number = {
            let mut log = log.lock().unwrap();
            log.streams += 1;
            log.streams
        };
        let endpoint = &endpoints[member % endpoints.len()];
        let ended = stream(endpoint, from, spec, (number, started), &log).await;
        note(format!(
            "{name}: stream via {endpoint} from revision {from} ended: {ended}"
        ));
        member += 1;
        tokio::time::sleep(RESUME_PAUSE).await;
    }
}

/// One watch stream from revision `from`; returns why it ended.
async fn stream(
    endpoint: &str,
    from: i64,
    spec: Spec,
    (number, started): (usize, tokio::time::Instant),
    log: &SharedLog,
) -> String {
    let Ok(mut client) = WatchClient::connect(endpoint.to_string()).await else {
        return "no connection".into();
    };
    let (requests, outbound) = mpsc::channel(4);
    let create = WatchCreateRequest {
        key: spec.key.to_vec(),
        range_end: spec.range_end.to_vec(),
        start_revision: from,
        prev_kv: spec.prev_kv,
        progress_notify: true,
        filters: match spec.filter {
            None => vec![],
            Some(Filter::NoPut) => vec![FilterType::Noput as i32],
            Some(Filter::NoDelete) => vec![FilterType::Nodelete as i32],
        },
        ..WatchCreateRequest::default()
    };
    let _ = requests
        .send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        })
        .await;
    let mut responses = match tokio::time::timeout(
        STREAM_SILENCE_MAX,
        client.watch(ReceiverStream::new(outbound)),
    )
    .await
    {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => return format!("refused: {}", status.message()),
        Err(_) => return "no answer".into(),
    };
    let mut progress = tokio::time::interval(PROGRESS_INTERVAL);
    loop {
        if log.lock().unwrap().stop {
            return "stopped".into();
        }
        let next = tokio::select! {
            biased;
            next = tokio::time::timeout(STREAM_SILENCE_MAX, responses.message()) => next,
            _ = progress.tick() => {
                let _ = requests.send(WatchRequest { request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})) }).await;
                continue;
            }
        };
        let response = match next {
            Ok(Ok(Some(response))) => response,
            Ok(Ok(None)) => return "closed by the server".into(),
            Ok(Err(status)) => return format!("error: {}", status.message()),
            Err(_) => return "silent".into(),
        };
        let mut log = log.lock().unwrap();
        if response.compact_revision != 0 {
            // Resume from what is left; this watch can no longer be complete.
            log.compacted = true;
            let had = log.caught_up_to;
            log.compactions.push((had, response.compact_revision));
            log.caught_up_to = log.caught_up_to.max(response.compact_revision - 1);
            return format!("compacted at {}", response.compact_revision);
        }
        if response.canceled {
            return format!("canceled: {}", response.cancel_reason);
        }
        let revision = response.header.map_or(0, |header| header.revision);
        let events: Vec<Event> = response
            .events
            .iter()
            .filter_map(|event| {
                let kv = event.kv.as_ref()?;
                Some(Event {
                    revision: kv.mod_revision,
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    value: (event.r#type == EventType::Put as i32)
                        .then(|| String::from_utf8_lossy(&kv.value).into_owned()),
                    create_revision: kv.create_revision,
                    version: kv.version,
                    lease: kv.lease,
                    prev: event.prev_kv.as_ref().map(|prev| Previous {
                        value: String::from_utf8_lossy(&prev.value).into_owned(),
                        mod_revision: prev.mod_revision,
                        create_revision: prev.create_revision,
                        version: prev.version,
                        lease: prev.lease,
                    }),
                })
            })
            .collect();
        // Events cover up to the last one's revision: etcd sends a
        // catch-up in batches of revisions, each with the current header
        // revision, so a break mid-catch-up must resume after the last
        // event received, not after the header. A response without events
        // (a progress notification, sent only to a caught-up watcher)
        // covers up to its header revision; the created answer only says
        // where the store was.
        let covered = match events.iter().map(|event| event.revision).max() {
            Some(last) => last,
            None if !response.created => revision,
            None => 0,
        };
        log.responses.push(Response {
            stream: number,
            header_revision: revision,
            created: response.created,
            events,
            received_ns: started.elapsed().as_nanos() as u64,
        });
        log.caught_up_to = log.caught_up_to.max(covered);
    }
}
/// etcd's watch guarantees over what a consumer and a filtered consumer
/// received: each stream created, ordered, atomic and bookmarkable; and
/// unless compaction cut the watch off, its events replay to `view` (what
/// the members hold at `revision`), carry every `acknowledged` write and
/// the right previous key-values, and the filtered watch saw exactly the
/// unfiltered events it should.
pub fn check<'a>(
    (log, filtered, filter): (&WatchLog, &WatchLog, Filter),
    view: &BTreeMap<String, (String, i64)>,
    revision: i64,
    acknowledged: impl Iterator<Item = (&'a str, &'a str)>,
    watched: impl Fn(&str) -> bool + Copy,
    compactions: &[CompactionSent],
) -> Result<(), String> {
    let each = |responses: &[Response]| {
        watch::check_created(responses)
            .and_then(|()| watch::check_order(responses))
            .and_then(|()| watch::check_atomic(responses))
            .and_then(|()| watch::check_bookmarks(responses))
    };
    each(&log.responses)?;
    each(&filtered.responses)?;
    if log.compacted {
        return Ok(());
    }
    watch::check_replay(&log.responses, view, revision, watched)?;
    watch::check_acknowledged(&log.responses, acknowledged, watched)?;
    watch::check_prev_kv(&log.responses, compactions)?;
    if filtered.compacted {
        return Ok(());
    }
    let up_to = log.caught_up_to.min(filtered.caught_up_to);
    watch::check_filtered(&filtered.responses, filter, &log.responses, up_to)
}

/// A watch told it was compacted must have needed history below the
/// compact revision the server reported (etcd: its next revision was
/// below it), and that revision must be one a compaction asked for
/// (`asked`, every compaction request sent, answered or not): otherwise
/// the answer is false, and it turned the watch's replay checks off.
pub fn check_compactions(log: &WatchLog, asked: &[CompactionSent]) -> Result<(), String> {
    for &(had, compact_revision) in &log.compactions {
        if had + 1 >= compact_revision {
            return Err(format!(
                "a watch with every event up to revision {had} was told it was compacted at \
                 {compact_revision}: it needed no revision below that"
            ));
        }
        if !asked.iter().any(|asked| asked.revision == compact_revision) {
            let asked: Vec<i64> = asked.iter().map(|asked| asked.revision).collect();
            return Err(format!(
                "a watch was told it was compacted at {compact_revision}, a revision no \
                 compaction asked for (asked: {asked:?})"
            ));
        }
    }
    Ok(())
}

/// The watch over the etcd workload's keys ([`Watched::ETCD`]) from the
/// revision after the last compact revision it was told of (it resumed
/// there, but a compaction also removes the deletes at its own revision,
/// as etcd's does), revision by revision against the
/// store the acknowledged writes of `operations` rebuild
/// (`past_reads::check_watch_events`). Ok: which revisions it covered, in
/// words.
pub fn check_etcd_events(
    log: &WatchLog,
    operations: &[Operation<EtcdInput, EtcdOutput>],
    compactions: &[CompactionSent],
) -> Result<String, String> {
    let replay = Replay::of(&Etcd::default(), operations);
    let from = (log.compactions.iter())
        .map(|&(_, compacted)| compacted + 1)
        .max()
        .unwrap_or(0);
    past_reads::check_watch_events(
        &replay,
        &log.responses,
        (from, log.caught_up_to),
        |key| Watched::ETCD.contains(key),
        compactions,
    )?;
    // A stretch's first revision is checked only if the one before it is
    // known (a full read right at the gap).
    let checked: Vec<String> = (replay.stretches())
        .map(|(first, last)| {
            let known_before = replay.at(first - 1).is_some();
            let first = if known_before { first } else { first + 1 };
            (first.max(from), last.min(log.caught_up_to))
        })
        .filter(|(first, last)| first <= last)
        .map(|(first, last)| format!("{first}..={last}"))
        .collect();
    Ok(if checked.is_empty() {
        "no revision both the watch and the replay cover".into()
    } else {
        format!("revisions {} checked one by one", checked.join(", "))
    })
}

/// What a watch created at `start_revision` (on any range: compaction is
/// the store's) hears first: the compact revision it was told of, or
/// `None` once it serves (its created answer, then an answer to a
/// progress request); `Err` if it never answered.
async fn first_word(endpoint: &str, start_revision: i64) -> Result<Option<i64>, String> {
    let mut client = WatchClient::connect(endpoint.to_string())
        .await
        .map_err(|error| error.to_string())?;
    let (requests, outbound) = mpsc::channel(4);
    let create = WatchCreateRequest {
        key: Watched::KV.key.to_vec(),
        range_end: Watched::KV.range_end.to_vec(),
        start_revision,
        ..WatchCreateRequest::default()
    };
    let _ = requests
        .send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        })
        .await;
    let mut responses = client
        .watch(ReceiverStream::new(outbound))
        .await
        .map_err(|status| status.message().to_string())?
        .into_inner();
    let mut created = false;
    loop {
        let response = tokio::time::timeout(STREAM_SILENCE_MAX, responses.message())
            .await
            .map_err(|_| "silent".to_string())?
            .map_err(|status| status.message().to_string())?
            .ok_or("closed")?;
        if response.compact_revision != 0 {
            return Ok(Some(response.compact_revision));
        }
        if response.canceled {
            return Err(format!("canceled: {}", response.cancel_reason));
        }
        if created {
            return Ok(None);
        }
        created = response.created;
        let _ = requests
            .send(WatchRequest {
                request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
            })
            .await;
    }
}

/// etcd's compacted watch, probed once the members are quiet at compact
/// revision `compact_revision` (> 1): a watch from revision 1 is told it
/// was compacted, at that revision; a watch from the compact revision
/// itself is not (etcd keeps that revision's history). A member that does
/// not answer proves nothing either way.
pub async fn probe_compaction(endpoint: &str, compact_revision: i64) -> Result<(), String> {
    match first_word(endpoint, 1).await {
        Ok(Some(told)) if told != compact_revision => {
            return Err(format!(
                "a watch from revision 1 was told it was compacted at {told}; the member's \
                 compact revision is {compact_revision}"
            ))
        }
        Ok(None) => {
            return Err(format!(
                "a watch from revision 1 was not told it was compacted; the member's compact \
                 revision is {compact_revision}"
            ))
        }
        _ => {}
    }
    match first_word(endpoint, compact_revision).await {
        Ok(Some(told)) => Err(format!(
            "a watch from the compact revision {compact_revision} was told it was compacted \
             at {told}"
        )),
        _ => Ok(()),
    }
}
