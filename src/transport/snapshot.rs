//! Snapshots to followers, streamed: one `Snapshot` call per snapshot
//! sent, its chunks read from the source as the network takes them, so
//! neither end holds the whole snapshot (etcd sends its backend file
//! beside the raft message the same way).

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::proto::detcdpb::SnapshotChunk;

/// Chunks read ahead of the network.
const CHUNKS_AHEAD: usize = 2;
/// A snapshot send that makes no progress for this long (a chunk not
/// taken by the network, the follower not answering once all is sent,
/// more for a larger snapshot) is given up; raft hears the follower is
/// unreachable and tries again.
pub const SNAPSHOT_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes a follower is given one `SNAPSHOT_STALL_TIMEOUT` to make
/// durable, once it has them all.
const ANSWER_BYTES_PER_STALL: u64 = 256 * 1024 * 1024;

/// A snapshot the transport can stream (the raft loop's, made from a view
/// of the backend).
pub trait SnapshotSource: Send + Sync + 'static {
    /// The raft index the snapshot is the state at.
    fn index(&self) -> u64;
    /// The snapshot stream from its start.
    fn chunks(&self) -> Box<dyn SnapshotChunks>;
}

/// The next bytes of a snapshot stream (`None` after its end), once read.
pub type NextChunk<'a> = Pin<Box<dyn Future<Output = Result<Option<Vec<u8>>, String>> + Send + 'a>>;

/// The bytes of one snapshot stream, in order.
pub trait SnapshotChunks: Send + 'static {
    fn next_chunk(&mut self) -> NextChunk<'_>;
}

/// What one snapshot send needs.
pub(super) struct SnapshotSend {
    pub from: u64,
    pub to: u64,
    pub cluster_id: u64,
    pub urls: Vec<String>,
    pub clock: Clock,
    pub message: Message,
    pub source: Arc<dyn SnapshotSource>,
    pub delay: Duration,
    /// Peers a snapshot is being sent to; this one's entry goes when done.
    pub sending: Arc<Mutex<BTreeSet<u64>>>,
    pub unreachable: Arc<Mutex<BTreeSet<u64>>>,
    pub sent_bytes: prometheus::IntCounter,
}

impl SnapshotSend {
    pub(super) async fn run(self) {
        if !self.delay.is_zero() {
            self.clock.sleep(self.delay).await;
        }
        let index = self.source.index();
        match self.send().await {
            Ok(bytes) => tracing::info!(
                to = format_args!("{:x}", self.to),
                index,
                bytes,
                "sent a snapshot"
            ),
            Err(error) => {
                tracing::warn!(
                    to = format_args!("{:x}", self.to),
                    index,
                    %error,
                    "sending a snapshot failed"
                );
                (self.unreachable.lock().expect("unreachable lock")).insert(self.to);
            }
        }
        (self.sending.lock().expect("sending lock")).remove(&self.to);
    }

    /// Streams the snapshot; the bytes sent.
    async fn send(&self) -> Result<u64, String> {
        let client = tokio::select! {
            biased;
            client = super::dial(&self.urls) => client?,
            () = self.clock.sleep(super::DIAL_TIMEOUT) => {
                return Err(format!("no connection in {:?}", super::DIAL_TIMEOUT))
            }
        };
        let mut client = client.max_encoding_message_size(super::PEER_MESSAGE_BYTES_MAX);
        let (sender, receiver) = mpsc::channel::<SnapshotChunk>(CHUNKS_AHEAD);
        let outgoing = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|chunk| (chunk, receiver))
        });
        let call = client.snapshot(outgoing);
        let produce = async move {
            let mut chunks = self.source.chunks();
            let mut message = Some(self.message.write_to_bytes().expect("raft message encodes"));
            let mut bytes = 0;
            while let Some(stream) = chunks.next_chunk().await? {
                bytes += stream.len() as u64;
                self.sent_bytes.inc_by(stream.len() as u64);
                let chunk = SnapshotChunk {
                    cluster_id: self.cluster_id,
                    from: self.from,
                    to: self.to,
                    message: message.take().unwrap_or_default(),
                    stream,
                };
                tokio::select! {
                    biased;
                    sent = sender.send(chunk) => sent.map_err(|_| "the call ended early")?,
                    () = self.clock.sleep(SNAPSHOT_STALL_TIMEOUT) => {
                        return Err("the network took no chunk in time".to_string())
                    }
                }
            }
            // The stream ends when the sender is dropped.
            Ok::<u64, String>(bytes)
        };
        tokio::pin!(call);
        tokio::pin!(produce);
        let bytes = tokio::select! {
            biased;
            called = &mut call => {
                called.map_err(|status| status.to_string())?;
                return Err("the follower answered before the snapshot ended".into());
            }
            produced = &mut produce => produced?,
        };
        // The follower answers once the whole stream is durable in its
        // file: a larger one takes longer to sync.
        let allowance = SNAPSHOT_STALL_TIMEOUT * (1 + (bytes / ANSWER_BYTES_PER_STALL) as u32);
        tokio::select! {
            biased;
            called = &mut call => called.map_err(|status| status.to_string())?,
            () = self.clock.sleep(allowance) => {
                return Err("the follower did not answer in time".into())
            }
        };
        Ok(bytes)
    }
}
