//! The peer transport seam: raft messages between members over tonic
//! client streams, one stream per peer, reconnecting with back-off.
//!
//! Every message passes a `MessageFilter` before it is queued. Production
//! delivers everything; the simulator's nemesis drops, duplicates and
//! delays single messages there, because madsim's streams never lose or
//! reorder anything on their own.
//!
//! Architecture invariants: the transport never blocks the raft loop
//! (queues are bounded and a full queue drops — raft retransmits); a batch
//! from another cluster or addressed to another member is refused and
//! logged; only this module and `api` speak gRPC.

pub mod peer_call;
mod service;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::proto::detcdpb::{raft_client::RaftClient, RaftBatch};

pub use service::{PeerRequests, RaftService};
pub use snapshot::{NextChunk, SnapshotChunks, SnapshotSource, SNAPSHOT_STALL_TIMEOUT};

/// Batches queued per peer before new ones are dropped. A peer that is
/// down must not make the leader buffer without bound.
pub const PEER_QUEUE_LEN: usize = 1024;
/// Batches handed to a peer's open gRPC stream ahead of the network.
const STREAM_BUFFER_LEN: usize = 64;
/// Pause between connection attempts to an unreachable peer.
pub const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Largest peer message accepted: a raft batch, or a snapshot chunk (one
/// piece of a snapshot stream, a revision at most, and a large
/// transaction's entry may be larger).
pub const PEER_MESSAGE_BYTES_MAX: usize = 1024 * 1024 * 1024;

/// What to do with one outgoing raft message (the nemesis hook).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Deliver,
    Drop,
    Duplicate,
    Delay(Duration),
}

pub trait MessageFilter: Send + Sync + 'static {
    fn verdict(&self, from: u64, to: u64, message: &Message) -> Verdict;
}

/// Production: every message is delivered.
pub struct DeliverAll;

impl MessageFilter for DeliverAll {
    fn verdict(&self, _from: u64, _to: u64, _message: &Message) -> Verdict {
        Verdict::Deliver
    }
}

/// Since when (on the member's clock) each peer's stream has been up;
/// absent while it is down. etcd's `ActiveSince`, for its health checks.
pub type PeerActivity = Arc<Mutex<BTreeMap<u64, Duration>>>;

pub struct Transport {
    activity: PeerActivity,
    /// Peers whose stream failed or could not connect since the raft loop
    /// last asked (`take_unreachable`): raft then probes them instead of
    /// streaming appends into the void (etcd's `ReportUnreachable`).
    unreachable: Arc<Mutex<BTreeSet<u64>>>,
    /// Peers a snapshot is being streamed to now.
    sending: Arc<Mutex<BTreeSet<u64>>>,
    member_id: u64,
    cluster_id: u64,
    peer_urls: BTreeMap<u64, Vec<String>>,
    queues: BTreeMap<u64, mpsc::Sender<Vec<Message>>>,
    filter: Arc<dyn MessageFilter>,
    clock: Clock,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Transport {
    /// Connects to every peer at once (not only when raft first sends), so
    /// every member knows which peers are up, as etcd's transport does.
    pub fn new(
        member_id: u64,
        cluster_id: u64,
        peer_urls: BTreeMap<u64, Vec<String>>,
        filter: Arc<dyn MessageFilter>,
        clock: Clock,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Transport {
        let ids: Vec<u64> = peer_urls.keys().copied().collect();
        let mut transport = Transport {
            activity: PeerActivity::default(),
            unreachable: Arc::default(),
            sending: Arc::default(),
            member_id,
            cluster_id,
            peer_urls,
            queues: BTreeMap::new(),
            filter,
            clock,
            metrics,
        };
        for id in ids {
            transport.queue(id);
        }
        transport
    }

    pub fn activity(&self) -> PeerActivity {
        self.activity.clone()
    }

    /// Peers found unreachable since the last call.
    pub fn take_unreachable(&self) -> BTreeSet<u64> {
        std::mem::take(&mut *self.unreachable.lock().expect("unreachable lock"))
    }

    /// Adds or replaces a peer's URLs (membership changes).
    pub fn set_peer(&mut self, id: u64, urls: Vec<String>) {
        if self.peer_urls.get(&id) == Some(&urls) {
            return;
        }
        if self.peer_urls.insert(id, urls).is_some() {
            self.queues.remove(&id);
        }
        self.queue(id);
    }

    /// Makes `peers` the whole set of peers: those not in it are dropped,
    /// the others added or moved (after a snapshot replaced the member
    /// registry, whose changes this member's log never showed it).
    pub fn set_peers(&mut self, peers: BTreeMap<u64, Vec<String>>) {
        let gone: Vec<u64> = self
            .peer_urls
            .keys()
            .filter(|id| !peers.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            self.remove_peer(id);
        }
        for (id, url) in peers {
            self.set_peer(id, url);
        }
    }

    /// Whether `id` is a peer this member was told of.
    pub fn knows(&self, id: u64) -> bool {
        self.peer_urls.contains_key(&id)
    }

    /// Every peer's URL, each once.
    pub fn peer_urls(&self) -> Vec<Vec<String>> {
        let urls: std::collections::BTreeSet<&Vec<String>> = self.peer_urls.values().collect();
        urls.into_iter().cloned().collect()
    }

    pub fn remove_peer(&mut self, id: u64) {
        self.peer_urls.remove(&id);
        self.queues.remove(&id);
        self.activity.lock().expect("activity lock").remove(&id);
    }

    /// Queues messages for their peers; never waits. A snapshot goes in a
    /// call of its own, streamed from `snapshot` (the raft loop's current
    /// one), unless one is being sent to that peer already. Returns the
    /// peers whose snapshot message it had to drop here (they are unknown,
    /// or the snapshot is not the current one), so raft hears the snapshot
    /// failed instead of waiting for it; a snapshot on its way is as good
    /// as sent, and one whose send fails makes its peer unreachable.
    pub fn send(
        &mut self,
        messages: Vec<Message>,
        snapshot: Option<&Arc<dyn SnapshotSource>>,
    ) -> Vec<u64> {
        let mut snapshots_dropped = Vec::new();
        let mut by_peer: BTreeMap<u64, Vec<Message>> = BTreeMap::new();
        for message in messages {
            let verdict = self.filter.verdict(self.member_id, message.to, &message);
            if message.get_msg_type() == MessageType::MsgSnapshot {
                let delay = match verdict {
                    Verdict::Drop => continue,
                    Verdict::Delay(delay) => delay,
                    Verdict::Deliver | Verdict::Duplicate => Duration::ZERO,
                };
                let index = message.get_snapshot().get_metadata().index;
                let to = message.to;
                let sent = match snapshot.filter(|source| source.index() == index) {
                    Some(source) => self.send_snapshot(message, source.clone(), delay),
                    None => false,
                };
                if !sent {
                    snapshots_dropped.push(to);
                }
                continue;
            }
            match verdict {
                Verdict::Deliver => by_peer.entry(message.to).or_default().push(message),
                Verdict::Drop => {}
                Verdict::Duplicate => by_peer
                    .entry(message.to)
                    .or_default()
                    .extend([message.clone(), message]),
                Verdict::Delay(delay) => self.send_later(message, delay),
            }
        }
        for (to, batch) in by_peer {
            let has_heartbeat = batch
                .iter()
                .any(|message| message.get_msg_type() == MessageType::MsgHeartbeat);
            let queued = match self.queue(to) {
                Some(queue) => queue.try_send(batch).is_ok(),
                None => false,
            };
            if !queued {
                if has_heartbeat {
                    self.metrics.heartbeat_send_failures.inc();
                }
                tracing::debug!(
                    to = format_args!("{to:x}"),
                    "peer queue full, closed or unknown; dropped raft messages"
                );
            }
        }
        snapshots_dropped
    }

    /// Streams a snapshot to its peer in a task of its own, unless one is
    /// being sent there already (raft asks again while the first is on
    /// its way); false for a peer it does not know.
    fn send_snapshot(
        &mut self,
        message: Message,
        source: Arc<dyn SnapshotSource>,
        delay: Duration,
    ) -> bool {
        let to = message.to;
        let Some(urls) = self.peer_urls.get(&to).cloned() else {
            return false;
        };
        if !self.sending.lock().expect("sending lock").insert(to) {
            return true;
        }
        let send = snapshot::SnapshotSend {
            from: self.member_id,
            to,
            cluster_id: self.cluster_id,
            urls,
            clock: self.clock.clone(),
            message,
            source,
            delay,
            sending: self.sending.clone(),
            unreachable: self.unreachable.clone(),
            sent_bytes: self.metrics.peer_sent_bytes(to),
        };
        tokio::spawn(send.run());
        true
    }

    fn send_later(&mut self, message: Message, delay: Duration) {
        let Some(queue) = self.queue(message.to) else {
            return;
        };
        let clock = self.clock.clone();
        tokio::spawn(async move {
            clock.sleep(delay).await;
            let _ = queue.try_send(vec![message]);
        });
    }

    fn queue(&mut self, to: u64) -> Option<mpsc::Sender<Vec<Message>>> {
        if let Some(queue) = self.queues.get(&to) {
            if !queue.is_closed() {
                return Some(queue.clone());
            }
        }
        let urls = self.peer_urls.get(&to)?.clone();
        let (queue, receiver) = mpsc::channel(PEER_QUEUE_LEN);
        let link = Link {
            from: self.member_id,
            to,
            cluster_id: self.cluster_id,
            urls,
            clock: self.clock.clone(),
            activity: self.activity.clone(),
            unreachable: self.unreachable.clone(),
            sent_bytes: self.metrics.peer_sent_bytes(to),
        };
        tokio::spawn(link.run(receiver));
        self.queues.insert(to, queue.clone());
        Some(queue)
    }
}

/// How long dialing a peer may take, TLS handshake included.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// A peer connection that has carried nothing in for this long is sent an
/// HTTP/2 ping (both ends: the link and the peer service).
pub const PEER_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// A ping unanswered this long closes the connection, and the link dials
/// again. A peer whose packets vanish (a dropping partition, a machine
/// that lost power) is thus noticed within 5 s, etcd's peer read timeout,
/// instead of when TCP gives up retransmitting (about 15 minutes).
pub const PEER_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The peer side's TLS (`--peer-cert-file`...), set once at start by the
/// binary: one process is one member in the real build (the simulator has
/// no TLS and never sets it).
#[cfg(not(madsim))]
static PEER_TLS: std::sync::OnceLock<crate::tls::Tls> = std::sync::OnceLock::new();

/// Makes https peer URLs dial with `tls`.
#[cfg(not(madsim))]
pub fn set_peer_tls(tls: crate::tls::Tls) {
    let _ = PEER_TLS.set(tls);
}

/// A raft client to a peer at one of its peer URLs, tried in order until
/// one answers (etcd's urlPicker moves on from a URL that fails).
pub(crate) async fn dial(urls: &[String]) -> Result<RaftClient<tonic::transport::Channel>, String> {
    let mut failures = Vec::new();
    for url in urls {
        match dial_one(url).await {
            Ok(client) => return Ok(client),
            Err(error) => failures.push(error),
        }
    }
    if failures.is_empty() {
        return Err(format!("no peer URL in {urls:?}"));
    }
    Err(failures.join("; "))
}

/// A member's peer URLs as the transport keeps and dials them; `None`
/// for a member without any (a learner not yet started has some; a
/// member added by URL-less API calls has none to dial).
pub fn peer_target(urls: &[String]) -> Option<Vec<String>> {
    (!urls.is_empty()).then(|| urls.to_vec())
}

/// A raft client to the peer at `url`: over TLS for an https URL, over a
/// unix socket for a unix one.
#[cfg(not(madsim))]
async fn dial_one(url: &str) -> Result<RaftClient<tonic::transport::Channel>, String> {
    let tls = if crate::config::is_https(url) {
        Some(
            PEER_TLS
                .get()
                .ok_or_else(|| format!("{url} is https, but this member has no peer TLS flags"))?,
        )
    } else {
        None
    };
    let unix = match crate::config::parse_listen_address(url) {
        Ok(crate::config::ListenAddress::Unix(path)) => Some(path),
        _ => None,
    };
    if tls.is_some() || unix.is_some() {
        return Ok(RaftClient::new(
            crate::tls::connect(url, tls, unix.as_deref(), peer_endpoint).await?,
        ));
    }
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|error| error.to_string())?;
    let channel = peer_endpoint(endpoint)
        .connect()
        .await
        .map_err(|error| error.to_string())?;
    Ok(RaftClient::new(channel))
}

/// How every peer connection is made, whichever way it is dialed. The dial
/// is bounded: a peer behind a partition that drops packets would
/// otherwise hold the link in the kernel's connect for about two minutes
/// (its SYN retries), long after the partition heals. Keepalive pings
/// bound the silence of a connection once it is up.
#[cfg(not(madsim))]
fn peer_endpoint(endpoint: tonic::transport::Endpoint) -> tonic::transport::Endpoint {
    endpoint
        .connect_timeout(DIAL_TIMEOUT)
        .http2_keep_alive_interval(PEER_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(PEER_KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
}

#[cfg(madsim)]
async fn dial_one(url: &str) -> Result<RaftClient<tonic::transport::Channel>, String> {
    RaftClient::connect(url.to_string())
        .await
        .map_err(|error| error.to_string())
}

/// One member's connection to one peer.
struct Link {
    from: u64,
    to: u64,
    cluster_id: u64,
    urls: Vec<String>,
    clock: Clock,
    activity: PeerActivity,
    unreachable: Arc<Mutex<BTreeSet<u64>>>,
    /// etcd_network_peer_sent_bytes_total for this peer.
    sent_bytes: prometheus::IntCounter,
}

impl Link {
    async fn run(self, mut queue: mpsc::Receiver<Vec<Message>>) {
        loop {
            match dial(&self.urls).await {
                Ok(client) => {
                    self.activity
                        .lock()
                        .expect("activity lock")
                        .insert(self.to, self.clock.elapsed());
                    let streamed = self
                        .stream(
                            client.max_encoding_message_size(PEER_MESSAGE_BYTES_MAX),
                            &mut queue,
                        )
                        .await;
                    self.activity
                        .lock()
                        .expect("activity lock")
                        .remove(&self.to);
                    if streamed.is_none() {
                        return;
                    }
                }
                Err(error) => {
                    tracing::debug!(to = format_args!("{:x}", self.to), %error, "cannot reach peer")
                }
            }
            self.unreachable
                .lock()
                .expect("unreachable lock")
                .insert(self.to);
            // Messages queued while the peer was away are stale; raft resends.
            while queue.try_recv().is_ok() {}
            self.clock.sleep(RECONNECT_BACKOFF).await;
        }
    }

    /// Streams batches until the connection fails (`Some`) or the
    /// transport is gone (`None`).
    async fn stream(
        &self,
        mut client: RaftClient<tonic::transport::Channel>,
        queue: &mut mpsc::Receiver<Vec<Message>>,
    ) -> Option<()> {
        let (sender, receiver) = mpsc::channel::<RaftBatch>(STREAM_BUFFER_LEN);
        let outgoing = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|batch| (batch, receiver))
        });
        let call = client.stream(outgoing);
        tokio::pin!(call);
        let ended = |result: Result<_, tonic::Status>| {
            if let Err(status) = result {
                tracing::warn!(to = format_args!("{:x}", self.to), %status, "peer stream ended");
            }
            Some(())
        };
        loop {
            tokio::select! {
                biased;
                result = &mut call => return ended(result.map(drop)),
                messages = queue.recv() => {
                    let messages = messages?;
                    let batch = RaftBatch {
                        cluster_id: self.cluster_id,
                        from: self.from,
                        to: self.to,
                        messages: messages.iter().map(|message| message.write_to_bytes().expect("raft message encodes")).collect(),
                    };
                    self.sent_bytes.inc_by(batch.messages.iter().map(|bytes| bytes.len() as u64).sum());
                    // While the stream's buffer is full the call must still
                    // be polled: it is what drains the buffer (all of it in
                    // madsim's tonic, which connects and sends inside the
                    // call), and it is what reports a dead connection.
                    // Awaiting the send alone parked a link for good once
                    // 64 batches queued behind a reconnect (simulator seed
                    // 400063 of the auth workload, at f204fa5).
                    tokio::select! {
                        biased;
                        result = &mut call => return ended(result.map(drop)),
                        sent = sender.send(batch) => if sent.is_err() {
                            return Some(());
                        },
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(peers: &[(u64, &str)]) -> Transport {
        let peers = peers
            .iter()
            .map(|(id, url)| (*id, vec![url.to_string()]))
            .collect();
        Transport::new(
            1,
            9,
            peers,
            Arc::new(DeliverAll),
            Clock::new(),
            Arc::new(crate::metrics::Metrics::new("test")),
        )
    }

    /// A snapshot whose stream never ends, at `0`.
    struct Endless(u64);

    impl SnapshotSource for Endless {
        fn index(&self) -> u64 {
            self.0
        }
        fn chunks(&self) -> Box<dyn SnapshotChunks> {
            struct Chunks;
            impl SnapshotChunks for Chunks {
                fn next_chunk(&mut self) -> NextChunk<'_> {
                    Box::pin(std::future::pending())
                }
            }
            Box::new(Chunks)
        }
    }

    fn snapshot_to(to: u64, index: u64) -> Message {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgSnapshot);
        message.to = to;
        message.mut_snapshot().mut_metadata().index = index;
        message
    }

    /// raft hears at once of a snapshot that cannot go: none is current,
    /// the current one is another, or the peer is unknown. One on its way
    /// is as good as sent, and a second one to that peer waits for it.
    #[tokio::test]
    async fn snapshots_that_cannot_go_are_reported_dropped() {
        let mut transport = transport(&[(2, "http://127.0.0.1:9")]);
        assert_eq!(transport.send(vec![snapshot_to(2, 7)], None), vec![2]);
        let other: Arc<dyn SnapshotSource> = Arc::new(Endless(6));
        assert_eq!(
            transport.send(vec![snapshot_to(2, 7)], Some(&other)),
            vec![2]
        );
        let current: Arc<dyn SnapshotSource> = Arc::new(Endless(7));
        assert_eq!(
            transport.send(vec![snapshot_to(5, 7)], Some(&current)),
            vec![5]
        );
        assert!(transport
            .send(vec![snapshot_to(2, 7), snapshot_to(2, 7)], Some(&current))
            .is_empty());
        assert_eq!(
            transport
                .sending
                .lock()
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            vec![2]
        );
    }

    #[tokio::test]
    async fn set_peers_adds_moves_and_drops_to_match_the_registry() {
        // Nothing listens on these: the links only fail to dial.
        let mut transport = transport(&[(2, "http://127.0.0.1:9"), (3, "http://127.0.0.1:10")]);
        let registry = BTreeMap::from([
            (3, vec!["http://127.0.0.1:11".to_string()]),
            (4, vec!["http://127.0.0.1:12".to_string()]),
        ]);
        transport.set_peers(registry);
        assert!(!transport.knows(2), "a member the registry lost is dropped");
        assert!(transport.knows(4), "a member the registry gained is added");
        assert_eq!(
            transport.peer_urls(),
            [["http://127.0.0.1:11"], ["http://127.0.0.1:12"]],
            "a moved member is reached at its new URL"
        );
        assert_eq!(
            transport.queues.keys().copied().collect::<Vec<_>>(),
            vec![3, 4],
            "every peer has a link, and only peers do"
        );
    }

    /// A peer that went silent: its connection stays up and everything
    /// sent is read, but nothing comes back, as behind a partition that
    /// drops packets. The link's keepalive ping goes unanswered, so it
    /// gives the connection up and dials again, instead of streaming into
    /// it until TCP gives up (about 15 minutes).
    #[cfg(not(madsim))]
    #[tokio::test]
    async fn a_link_gives_up_a_connection_that_went_silent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (accepted, mut accepts) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let _ = accepted.send(());
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut socket, &mut tokio::io::sink()).await;
                });
            }
        });
        let _transport = transport(&[(2, &url)]);
        accepts.recv().await.unwrap();
        let again = tokio::time::timeout(
            10 * (PEER_KEEPALIVE_INTERVAL + PEER_KEEPALIVE_TIMEOUT),
            accepts.recv(),
        )
        .await;
        assert!(
            matches!(again, Ok(Some(()))),
            "the link kept its silent connection"
        );
    }

    /// A peer whose packets vanish: one connection fills the accept queue
    /// of a listener nobody drains (backlog 0), so the kernel drops every
    /// later SYN, as a partition that drops packets does. A dial gives up
    /// after `DIAL_TIMEOUT` instead of waiting out the kernel's SYN
    /// retries (about two minutes).
    #[cfg(not(madsim))]
    #[tokio::test]
    async fn a_dial_to_a_peer_that_never_answers_gives_up() {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let address = listener.local_addr().unwrap();
        let _queued = tokio::net::TcpStream::connect(address).await.unwrap();
        let url = format!("http://{address}");
        let dialed = tokio::time::timeout(4 * DIAL_TIMEOUT, dial(&[url])).await;
        assert!(
            matches!(dialed, Ok(Err(_))),
            "the dial did not give up: {:?}",
            dialed.map(|result| result.map(|_| "connected"))
        );
    }
}
