//! The receiving end of the peer transport: the `Raft` gRPC service a
//! member serves on its peer URLs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::proto::detcdpb::{
    raft_server::Raft, MembersRequest, MembersResponse, PeerHashKvRequest, PeerHashKvResponse,
    PromoteRequest, PromoteResponse, RaftAck, RaftBatch, SnapshotChunk,
};
use crate::storage::blocking;
use crate::storage::snapshot::{PieceSink as _, SnapshotDir, SnapshotError, StreamCheck};

/// Where received messages go: the raft loop's step queue.
pub type StepSender = mpsc::Sender<Vec<Message>>;

/// What the peer service asks of the member it serves. Owned here and
/// implemented by `server`, so the transport knows nothing of the raft
/// loop (a small trait owned by the consumer, as etcd's
/// `lease.RangeDeleter`).
pub trait PeerRequests: Send + Sync + 'static {
    /// The cluster's id and member registry, for a member that joins.
    fn members(&self) -> MembersResponse;
    /// Promotes learner `id`, forwarded by a follower to this leader.
    /// Answers etcd's error string, empty once the promotion applied.
    fn promote(&self, id: u64) -> Pin<Box<dyn Future<Output = String> + Send + '_>>;
    /// This member's HashKV up to `revision`, for a peer's initial
    /// corruption check.
    fn hash_kv(&self, revision: i64) -> PeerHashKvResponse;
}

/// Cloned once per `--listen-peer-urls` address: every copy feeds the same
/// raft loop.
#[derive(Clone)]
pub struct RaftService {
    pub member_id: u64,
    pub cluster_id: u64,
    pub steps: StepSender,
    pub requests: Arc<dyn PeerRequests>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where snapshots from the leader are received.
    pub snapshots: Arc<SnapshotDir>,
    /// Held while a snapshot is received: one at a time.
    pub receiving: Arc<tokio::sync::Mutex<()>>,
}

impl RaftService {
    fn check(&self, batch: &RaftBatch) -> Result<(), Status> {
        self.check_sender(batch.cluster_id, batch.from, batch.to)
    }

    fn check_sender(&self, cluster_id: u64, from: u64, to: u64) -> Result<(), Status> {
        if cluster_id != self.cluster_id {
            tracing::warn!(
                from = format_args!("{:x}", from),
                their_cluster = format_args!("{:x}", cluster_id),
                our_cluster = format_args!("{:x}", self.cluster_id),
                "refused raft messages from a member of another cluster"
            );
            return Err(Status::failed_precondition(format!(
                "cluster id mismatch: member {:x} is in cluster {:x}, the sender claims {:x}",
                self.member_id, self.cluster_id, cluster_id
            )));
        }
        if to != self.member_id {
            tracing::warn!(
                to = format_args!("{:x}", to),
                "refused raft messages addressed to another member"
            );
            return Err(Status::failed_precondition(format!(
                "member id mismatch: this is member {:x}, not {:x}",
                self.member_id, to
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn stream(
        &self,
        request: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<RaftAck>, Status> {
        let mut batches = request.into_inner();
        let mut received: Option<(u64, prometheus::IntCounter)> = None;
        while let Some(batch) = batches.message().await? {
            self.check(&batch)?;
            let counter = match &received {
                Some((from, counter)) if *from == batch.from => counter,
                _ => {
                    let counter = self.metrics.peer_received_bytes(batch.from);
                    &received.insert((batch.from, counter)).1
                }
            };
            counter.inc_by(batch.messages.iter().map(|bytes| bytes.len() as u64).sum());
            let mut messages = Vec::with_capacity(batch.messages.len());
            for bytes in &batch.messages {
                let message = decode_peer_message(bytes).map_err(Status::invalid_argument)?;
                if message.get_msg_type() == MessageType::MsgSnapshot {
                    return Err(Status::invalid_argument(
                        "a snapshot comes in a Snapshot call, not in a raft batch",
                    ));
                }
                messages.push(message);
            }
            self.steps
                .send(messages)
                .await
                .map_err(|_| Status::unavailable("member is stopping"))?;
        }
        Ok(Response::new(RaftAck {}))
    }

    /// A snapshot from the leader: written to a file as it comes, checked
    /// whole and made durable, and only then handed to raft, its data the
    /// snapshot's header (the raft loop installs it from the file).
    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftAck>, Status> {
        let mut chunks = request.into_inner();
        let first = (chunks.message().await?)
            .ok_or_else(|| Status::invalid_argument("a snapshot call without a chunk"))?;
        self.check_sender(first.cluster_id, first.from, first.to)?;
        let mut message = decode_peer_message(&first.message).map_err(Status::invalid_argument)?;
        if message.get_msg_type() != MessageType::MsgSnapshot
            || message.from != first.from
            || message.to != self.member_id
        {
            return Err(Status::invalid_argument(
                "a snapshot call's first chunk must carry the snapshot's raft message",
            ));
        }
        let Ok(_receiving) = self.receiving.try_lock() else {
            return Err(Status::unavailable("a snapshot is being received already"));
        };
        let counter = self.metrics.peer_received_bytes(first.from);
        let metadata = message.get_snapshot().get_metadata();
        let (term, index) = (metadata.term, metadata.index);
        let snapshots = self.snapshots.clone();
        let io = |error: SnapshotError| Status::internal(error.to_string());
        let mut file = blocking::run(move || snapshots.receive(term, index))
            .await
            .map_err(io)?;
        // Each chunk is checked (every piece it completes) and written.
        let mut check = StreamCheck::default();
        let mut stream = first.stream;
        loop {
            counter.inc_by(stream.len() as u64);
            let (back, checked) = blocking::run(move || {
                let checked = match check.feed(&stream) {
                    Ok(()) => file
                        .put(&stream)
                        .map_err(|error| Status::internal(error.to_string())),
                    Err(why) => Err(Status::invalid_argument(format!("a bad snapshot: {why}"))),
                };
                ((file, check), checked)
            })
            .await;
            (file, check) = back;
            checked?;
            match chunks.message().await? {
                Some(chunk) => stream = chunk.stream,
                None => break,
            }
        }
        let snapshots = self.snapshots.clone();
        let header = blocking::run(move || snapshots.keep_checked(file, check))
            .await
            .map_err(|error| match error {
                SnapshotError::Corrupt { .. } => Status::invalid_argument(error.to_string()),
                SnapshotError::Io { .. } => Status::internal(error.to_string()),
            })?;
        tracing::info!(
            from = format_args!("{:x}", first.from),
            index,
            term,
            "received a snapshot"
        );
        message.mut_snapshot().data = prost::Message::encode_to_vec(&header).into();
        self.steps
            .send(vec![message])
            .await
            .map_err(|_| Status::unavailable("member is stopping"))?;
        Ok(Response::new(RaftAck {}))
    }

    async fn members(
        &self,
        _: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(self.requests.members()))
    }

    /// A follower forwards a promotion here; only the leader can check it.
    async fn promote(
        &self,
        request: Request<PromoteRequest>,
    ) -> Result<Response<PromoteResponse>, Status> {
        let error = self.requests.promote(request.into_inner().id).await;
        Ok(Response::new(PromoteResponse { error }))
    }

    async fn hash_kv(
        &self,
        request: Request<PeerHashKvRequest>,
    ) -> Result<Response<PeerHashKvResponse>, Status> {
        Ok(Response::new(
            self.requests.hash_kv(request.into_inner().revision),
        ))
    }
}

/// Decodes one raft message from a peer, refusing bytes that protobuf 2
/// cannot parse safely (see `proto::raft_shape`).
pub fn decode_peer_message(bytes: &[u8]) -> Result<Message, String> {
    crate::proto::raft_shape::check_message(bytes)
        .map_err(|error| format!("bad raft message: {error}"))?;
    let mut message = Message::default();
    message
        .merge_from_bytes(bytes)
        .map_err(|error| format!("bad raft message: {error}"))?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real message with entries and a snapshot decodes as before.
    #[test]
    fn peer_messages_decode() {
        let mut message = Message::default();
        message.set_msg_type(raft::eraftpb::MessageType::MsgAppend);
        message.to = 2;
        message.from = 1;
        message.term = 7;
        message.entries.push(raft::eraftpb::Entry {
            index: 5,
            data: b"put k v".to_vec().into(),
            ..Default::default()
        });
        message
            .mut_snapshot()
            .mut_metadata()
            .mut_conf_state()
            .voters = vec![1, 2, 3];
        message.mut_snapshot().mut_metadata().index = 4;
        let bytes = message.write_to_bytes().unwrap();
        assert_eq!(decode_peer_message(&bytes).unwrap(), message);
        assert!(decode_peer_message(b"\xff\xff").is_err());
    }

    /// Unknown fields nested as groups deeper than prost's limit, at the
    /// top, inside an entry and inside the snapshot's conf state, are
    /// refused before protobuf 2 sees them (it would overflow the stack).
    #[test]
    fn deeply_nested_unknown_groups_are_refused() {
        const DEPTH: usize = 100_000;
        // Field 100: start group (wire type 3) ... end group (4).
        let (start, end) = ([0xa3, 0x06], [0xa4, 0x06]);
        let mut groups = Vec::with_capacity(DEPTH * 4);
        for _ in 0..DEPTH {
            groups.extend_from_slice(&start);
        }
        for _ in 0..DEPTH {
            groups.extend_from_slice(&end);
        }
        let length_delimited = |tag: u8, body: &[u8]| {
            let mut out = vec![tag];
            let mut len = body.len();
            while len >= 0x80 {
                out.push((len as u8) | 0x80);
                len >>= 7;
            }
            out.push(len as u8);
            out.extend_from_slice(body);
            out
        };
        let in_entry = length_delimited(7 << 3 | 2, &groups);
        // A conf change entry (type 1 at tag 1) whose data (tag 4) holds
        // them: raft parses that data itself, with protobuf 2.
        let mut conf_change_entry = vec![1 << 3, 1];
        conf_change_entry.extend(length_delimited(4 << 3 | 2, &groups));
        let in_conf_change = length_delimited(7 << 3 | 2, &conf_change_entry);
        let in_conf_state = length_delimited(
            9 << 3 | 2,
            &length_delimited(2 << 3 | 2, &length_delimited(1 << 3 | 2, &groups)),
        );
        for crafted in [groups.clone(), in_entry, in_conf_change, in_conf_state] {
            let refused = decode_peer_message(&crafted).unwrap_err();
            assert!(refused.contains("recursion limit"), "{refused}");
        }
    }
}
