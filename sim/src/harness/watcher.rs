//! A watch consumer and etcd's watch guarantees (DESIGN "check/ ... watch
//! guarantees"). One client watches every workload key from revision 1
//! through all the faults, resuming after the last event it got on
//! another member whenever its stream breaks, as etcd clients do, and
//! asks for progress now and then. At the end:
//! - ordered: event revisions never go back, and no (key, revision)
//!   comes twice — across resumptions too;
//! - complete and valid: replaying the events gives exactly what every
//!   member holds (value and mod revision of each key), and every
//!   acknowledged write shows up in an event of its key, unless
//!   compaction cut the watch off (then only the first holds);
//! - live: the watch reaches the final revision within the bound.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::proto::etcdserverpb::{
    watch_client::WatchClient, watch_request::RequestUnion, WatchCreateRequest,
    WatchProgressRequest, WatchRequest,
};
use detcd::proto::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::trace::Trace;

/// The key range watched: every workload key ("k0", "k1", ...).
pub const WATCHED_FROM: &[u8] = b"k";
pub const WATCHED_TO: &[u8] = b"l";
/// How often the consumer asks for progress (so it learns the revision
/// even when no watched key changes).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Pause before resuming on the next member.
const RESUME_PAUSE: Duration = Duration::from_millis(200);
/// A stream silent this long (no events, no progress) counts as broken.
const STREAM_SILENCE_MAX: Duration = Duration::from_secs(5);

/// (revision, key, value; None for a delete)
pub type WatchEvent = (i64, String, Option<String>);

/// What the consumer saw.
#[derive(Debug, Default)]
pub struct WatchLog {
    pub events: Vec<WatchEvent>,
    /// Every event up to this revision has been received.
    pub caught_up_to: i64,
    /// Streams started (1 + resumptions).
    pub streams: usize,
    /// Compaction removed revisions the watch still needed; it went on
    /// from the compact revision, so it may have missed changes.
    pub compacted: bool,
    /// Set by the harness: stop watching.
    pub stop: bool,
}

pub type SharedLog = Arc<Mutex<WatchLog>>;

/// Watches until told to stop, resuming across failures.
pub async fn consume(endpoints: Vec<String>, log: SharedLog, trace: Trace) {
    let mut member = 0;
    while !log.lock().unwrap().stop {
        let from = log.lock().unwrap().caught_up_to + 1;
        log.lock().unwrap().streams += 1;
        let ended = stream(&endpoints[member % endpoints.len()], from, &log).await;
        trace.record(format!(
            "watcher: stream via {} from revision {from} ended: {ended}",
            endpoints[member % endpoints.len()]
        ));
        member += 1;
        tokio::time::sleep(RESUME_PAUSE).await;
    }
}

/// One watch stream from revision `from`; returns why it ended.
async fn stream(endpoint: &str, from: i64, log: &SharedLog) -> String {
    let Ok(mut client) = WatchClient::connect(endpoint.to_string()).await else {
        return "no connection".into();
    };
    let (requests, outbound) = mpsc::channel(4);
    let create = WatchCreateRequest {
        key: WATCHED_FROM.to_vec(),
        range_end: WATCHED_TO.to_vec(),
        start_revision: from,
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
            log.caught_up_to = log.caught_up_to.max(response.compact_revision - 1);
            return format!("compacted at {}", response.compact_revision);
        }
        if response.canceled {
            return format!("canceled: {}", response.cancel_reason);
        }
        for event in &response.events {
            let Some(kv) = &event.kv else { continue };
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            let value = (event.r#type == EventType::Put as i32)
                .then(|| String::from_utf8_lossy(&kv.value).into_owned());
            log.events.push((kv.mod_revision, key, value));
        }
        // A response covers every event up to its header revision (the
        // created answer only says where the store was).
        if !response.created {
            let revision = response.header.map_or(0, |header| header.revision);
            log.caught_up_to = log.caught_up_to.max(revision);
        }
    }
}

/// Ordering: revisions never go back, no (key, revision) twice.
pub fn check_order(events: &[WatchEvent]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for pair in events.windows(2) {
        if pair[1].0 < pair[0].0 {
            return Err(format!(
                "watch: an event at revision {} came after one at {}",
                pair[1].0, pair[0].0
            ));
        }
    }
    for (revision, key, _) in events {
        if !seen.insert((key, revision)) {
            return Err(format!(
                "watch: {key} at revision {revision} was delivered twice"
            ));
        }
    }
    Ok(())
}

/// Completeness: replaying the events gives each key's value and mod
/// revision as the members hold them (`view`, "" and 0 for absent keys).
///
/// `view` is one member's watched range as one read saw it at `revision`;
/// only events up to that revision count, since a write that was left
/// indeterminate during the faults may still apply after the read.
pub fn check_replay(
    events: &[WatchEvent],
    view: &BTreeMap<String, (String, i64)>,
    revision: i64,
) -> Result<(), String> {
    let mut replayed: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for (at, key, value) in events.iter().filter(|(at, ..)| *at <= revision) {
        match value {
            Some(value) => replayed.insert(key.clone(), (value.clone(), *at)),
            None => replayed.remove(key),
        };
    }
    // Every key either side knows: one the members lack must be absent
    // from the events too.
    let keys: std::collections::BTreeSet<&String> = view.keys().chain(replayed.keys()).collect();
    let watched = keys
        .into_iter()
        .filter(|key| key.as_bytes() >= WATCHED_FROM && key.as_bytes() < WATCHED_TO);
    for key in watched {
        let from_events = replayed.get(key).cloned().unwrap_or_default();
        let held = view.get(key).cloned().unwrap_or_default();
        if from_events != held {
            return Err(format!(
                "watch: the events up to revision {revision} give {key} = {from_events:?} but the members hold {held:?}"
            ));
        }
    }
    Ok(())
}

/// Completeness against the clients: the unique value every acknowledged
/// write wrote shows up in some event of each key it wrote.
pub fn check_acknowledged<'a>(
    events: &[WatchEvent],
    acknowledged: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<(), String> {
    let mut seen: std::collections::BTreeSet<(&str, &str)> = std::collections::BTreeSet::new();
    for (_, key, value) in events {
        for token in value.iter().flat_map(|value| value.split_inclusive(';')) {
            seen.insert((key, token));
        }
    }
    for (key, written) in acknowledged {
        if key.as_bytes() >= WATCHED_FROM
            && key.as_bytes() < WATCHED_TO
            && !seen.contains(&(key, written))
        {
            return Err(format!(
                "watch: the acknowledged write of {written:?} to {key} never showed up in an event"
            ));
        }
    }
    Ok(())
}
