//! The Maintenance service: Status, MoveLeader, Hash, HashKV, Alarm,
//! Defragment, and Snapshot, which streams a backup (`crate::backup`) as
//! etcd does: the image in `SNAPSHOT_CHUNK_BYTES` pieces, counting down
//! `remaining_bytes`, then its SHA-256 in a last message of its own.

use std::pin::Pin;

use tonic::{Request, Response, Status};

use crate::proto::etcdserverpb::{
    maintenance_server::Maintenance, AlarmRequest, AlarmResponse, DefragmentRequest,
    DefragmentResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use crate::server::Server;

/// Bytes per Snapshot message (etcd's `snapshotSendBufferSize`).
pub const SNAPSHOT_CHUNK_BYTES: usize = 32 * 1024;

pub struct MaintenanceService {
    pub server: Server,
}

type SnapshotStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

impl MaintenanceService {
    /// etcd's `authMaintenanceServer`: the calls that read or rewrite the
    /// whole store need the root role once auth is on.
    /// Its errors reach clients as etcd's do: Unknown, with the auth
    /// package's text ("auth: permission denied").
    async fn check_admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let token = super::token_of(request).map_err(super::status::maintenance_auth_error)?;
        let info = self
            .server
            .auth_info(token)
            .await
            .map_err(super::status::maintenance_auth_error)?;
        self.server
            .acting_for(info)
            .check_admin_now()
            .map_err(super::status::maintenance_auth_error)
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    type SnapshotStream = SnapshotStream;

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let mut response = self.server.status();
        self.server.fill_header(&mut response.header);
        Ok(Response::new(response))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        self.server.refuse_if_learner()?;
        self.server
            .move_leader(request.into_inner().target_id)
            .await?;
        // etcd 3.4.23 answers MoveLeader and Defragment without a header.
        Ok(Response::new(MoveLeaderResponse::default()))
    }

    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        self.server.refuse_if_learner()?;
        Ok(Response::new(
            self.server.alarm(request.into_inner()).await?,
        ))
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.server.refuse_if_learner()?;
        self.check_admin(&request).await?;
        self.server.defragment().await?;
        Ok(Response::new(DefragmentResponse::default()))
    }

    /// etcd hashes its whole bbolt file; detcd hashes the snapshot stream
    /// of its state, equal on every member at the same applied index.
    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.server.refuse_if_learner()?;
        self.check_admin(&request).await?;
        let (hash, revision) = self.server.state_hash().await?;
        let mut header = Some(crate::proto::etcdserverpb::ResponseHeader {
            revision,
            ..Default::default()
        });
        self.server.fill_header(&mut header);
        Ok(Response::new(HashResponse { header, hash }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        self.server.refuse_if_learner()?;
        self.check_admin(&request).await?;
        let mut response = self.server.hash_kv(request.into_inner().revision)?;
        self.server.fill_header(&mut response.header);
        Ok(Response::new(response))
    }

    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.server.refuse_if_learner()?;
        self.check_admin(&request).await?;
        let file = self.server.backup_file().await?;
        // etcd 3.4 sends no header with the snapshot's pieces.
        let header = None;
        // The pages in chunks counting down, then the checksum alone, as
        // etcd sends them; read from the scratch file as the stream is
        // read (a larger piece at a time), which goes with the stream.
        let total = file.bytes - crate::backup::CHECKSUM_BYTES as u64;
        let reading = Reading {
            file,
            offset: 0,
            buffer: Vec::new(),
            taken: 0,
            done: false,
        };
        let messages = futures::stream::unfold(reading, move |mut reading| async move {
            if reading.done {
                return None;
            }
            if reading.taken == reading.buffer.len() {
                if reading.offset >= total {
                    reading.done = true;
                    let checksum = reading
                        .file
                        .read(total, crate::backup::CHECKSUM_BYTES)
                        .await;
                    let message = checksum.map(|blob| SnapshotResponse {
                        header,
                        remaining_bytes: 0,
                        blob,
                    });
                    return Some((message.map_err(Status::from), reading));
                }
                let piece = crate::server::BACKUP_READ_BYTES.min((total - reading.offset) as usize);
                match reading.file.read(reading.offset, piece).await {
                    Ok(buffer) => {
                        reading.buffer = buffer;
                        reading.taken = 0;
                    }
                    Err(error) => {
                        reading.done = true;
                        return Some((Err(Status::from(error)), reading));
                    }
                }
            }
            let end = (reading.taken + SNAPSHOT_CHUNK_BYTES).min(reading.buffer.len());
            let blob = reading.buffer[reading.taken..end].to_vec();
            reading.taken = end;
            reading.offset += blob.len() as u64;
            let message = SnapshotResponse {
                header,
                remaining_bytes: total - reading.offset,
                blob,
            };
            Some((Ok(message), reading))
        });
        Ok(Response::new(Box::pin(messages)))
    }
}

/// A backup being sent: the chunks of the piece read last.
struct Reading {
    file: crate::server::BackupFile,
    /// The file's bytes read so far.
    offset: u64,
    buffer: Vec<u8>,
    /// The buffer's bytes sent.
    taken: usize,
    done: bool,
}
