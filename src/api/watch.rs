//! The Watch service: one task per stream reads the client's create,
//! cancel and progress requests and, whenever applying moves the store's
//! revision, polls every watcher of the stream (`crate::watch`) and sends
//! what it owes, as etcd's `watchServer` does.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;

use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::error::Error;
use crate::proto::etcdserverpb::{
    watch_create_request::FilterType, watch_request::RequestUnion, watch_server::Watch,
    ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse,
};
use crate::server::Server;
use crate::watch::{Poll, Watcher};

/// Responses queued for a stream's client; a slow client holds its
/// session back (its watchers then catch up from the revision log).
pub const WATCH_RESPONSES_BUFFERED: usize = 128;
/// etcd's `clientv3.AutoWatchID`: the server picks the id.
const AUTO_WATCH_ID: i64 = 0;
/// The watch id of a progress response that answers the whole stream.
const STREAM_WIDE_WATCH_ID: i64 = -1;
/// etcd's `clientv3.InvalidWatchID`: the id of a refused create's answer.
const INVALID_WATCH_ID: i64 = -1;
/// etcd's `mvcc.ErrWatcherDuplicateID` text.
const DUPLICATE_WATCH_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
/// etcd's `mvcc.ErrEmptyWatcherRange` text: a range end at or before its
/// key (other than `"\0"`, every key from the key on) selects nothing.
const EMPTY_WATCHER_RANGE: &str = "mvcc: watcher range is empty";

/// etcd 3.4.23's answer to a create it refuses: created and cancelled at
/// once, with watch id -1 (not an id the stream may be using) and the
/// store's revision.
fn refused(revision: i64, reason: String) -> WatchResponse {
    WatchResponse {
        header: Some(ResponseHeader {
            revision,
            ..ResponseHeader::default()
        }),
        watch_id: INVALID_WATCH_ID,
        created: true,
        canceled: true,
        cancel_reason: reason,
        ..WatchResponse::default()
    }
}

pub struct WatchService {
    pub server: Server,
}

type ResponseStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ResponseStream;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.server.refuse_if_learner()?;
        // A token that is not text names nobody: it is refused at create.
        let token = super::token_of(&request)
            .map(|token| token.map(str::to_string))
            .unwrap_or_else(|_| Some(String::new()));
        let (sender, receiver) = mpsc::channel(WATCH_RESPONSES_BUFFERED);
        let session = Session {
            server: self.server.clone(),
            token,
            sender,
            watchers: BTreeMap::new(),
            fragmenting: BTreeSet::new(),
            heard: BTreeSet::new(),
            next_id: 0,
        };
        tokio::spawn(session.run(request.into_inner()));
        Ok(Response::new(super::answer_with_first(receiver).await))
    }
}

/// One watch stream: its watchers by id.
struct Session {
    server: Server,
    /// The stream's login token: each watch it creates is checked against
    /// the permissions in force then (etcd `isWatchPermitted`).
    token: Option<String>,
    sender: mpsc::Sender<Result<WatchResponse, Status>>,
    watchers: BTreeMap<i64, Watcher>,
    /// Watchers that asked for large responses in fragments.
    fragmenting: BTreeSet<i64>,
    /// Watchers sent events since the last progress tick: as etcd, they
    /// skip that tick's notification.
    heard: BTreeSet<i64>,
    next_id: i64,
}

/// The client went away: the session ends.
struct Gone;

impl Session {
    async fn run(mut self, mut inbound: Streaming<WatchRequest>) {
        let mut revisions = self.server.subscribe_revisions();
        let mut progress = (self.server.clock()).interval(self.server.watch_progress_interval());
        progress.tick().await;
        let stopped = self.server.stopped();
        tokio::pin!(stopped);
        // Whether the client may still send requests. A client that closes
        // its side (a one-shot `grpcurl -d`) still gets its events: etcd's
        // recvLoop stops at EOF, its sendLoop runs on until the client
        // cancels the call.
        let mut requests_open = true;
        let sender = self.sender.clone();
        let client_gone = sender.closed();
        tokio::pin!(client_gone);
        loop {
            // Biased (determinism): a stopping member first, so its clients
            // hear it at once; then a client gone; then the client's
            // requests, so a cancel is handled before more events go out;
            // then new revisions; progress notifications last.
            let step = tokio::select! {
                biased;
                () = &mut stopped => {
                    // etcd's clients see "server stopped" and move to
                    // another member; the stream then ends.
                    let _ = self.sender.send(Err(Status::from(crate::error::Error::Stopped))).await;
                    Err(Gone)
                }
                () = &mut client_gone => Err(Gone),
                message = inbound.message(), if requests_open => match message {
                    Ok(Some(request)) => self.handle(request).await,
                    Ok(None) => {
                        requests_open = false;
                        Ok(())
                    }
                    // A message that does not decode ends the stream with
                    // that error, as etcd's recvLoop returns it: INTERNAL,
                    // or RESOURCE_EXHAUSTED for one over the size limit.
                    Err(status) => {
                        let status = super::etcd_decode_status(status);
                        let _ = self.sender.send(Err(status)).await;
                        Err(Gone)
                    }
                },
                _ = revisions.changed() => self.deliver().await.map(|_| ()),
                _ = progress.tick() => self.notify_progress().await,
            };
            if step.is_err() {
                return;
            }
        }
    }

    async fn send(&self, mut response: WatchResponse) -> Result<(), Gone> {
        self.server.fill_header(&mut response.header);
        if response.compact_revision != 0 {
            // etcd's compaction notice carries no revision in its header.
            response.header.as_mut().expect("filled").revision = 0;
        }
        self.sender.send(Ok(response)).await.map_err(|_| Gone)
    }

    fn current_revision(&self) -> i64 {
        self.server.with_store(|store| store.current_revision())
    }

    async fn handle(&mut self, request: WatchRequest) -> Result<(), Gone> {
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(create).await,
            Some(RequestUnion::CancelRequest(cancel)) => {
                self.fragmenting.remove(&cancel.watch_id);
                self.heard.remove(&cancel.watch_id);
                #[cfg(madsim)]
                let stays = crate::sabotage::active(crate::sabotage::Sabotage::CancelledWatchStays);
                #[cfg(not(madsim))]
                let stays = false;
                let had = if stays {
                    self.watchers.contains_key(&cancel.watch_id)
                } else {
                    self.watchers.remove(&cancel.watch_id).is_some()
                };
                if had {
                    self.send(WatchResponse {
                        watch_id: cancel.watch_id,
                        canceled: true,
                        ..WatchResponse::default()
                    })
                    .await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // Everything owed goes out first: the progress revision
                // promises every event up to it has been sent.
                let revision = self.deliver().await?;
                let header = Some(ResponseHeader {
                    revision,
                    ..ResponseHeader::default()
                });
                self.send(WatchResponse {
                    header,
                    watch_id: STREAM_WIDE_WATCH_ID,
                    ..WatchResponse::default()
                })
                .await
            }
            None => Ok(()),
        }
    }

    /// etcd `isWatchPermitted`: the stream's user may read the range now.
    async fn permitted(&self, create: &WatchCreateRequest) -> Result<(), crate::error::Error> {
        let info = self.server.auth_info(self.token.as_deref()).await?;
        self.server
            .acting_for(info)
            .check_read(&create.key, &create.range_end)
    }

    async fn create(&mut self, create: WatchCreateRequest) -> Result<(), Gone> {
        let current = self.current_revision();
        if let Err(error) = self.permitted(&create).await {
            // etcd 3.4.23: watch id -1, and the Go text of the status as
            // the reason (any refusal but these is "permission denied").
            let reason = match error {
                Error::InvalidAuthToken | Error::AuthOldRevision | Error::UserEmpty => error,
                _ => Error::PermissionDenied,
            };
            return self
                .send(refused(current, super::status::go_status_text(&reason)))
                .await;
        }
        let empty = !create.range_end.is_empty()
            && create.range_end != [0]
            && create.key >= create.range_end;
        if empty {
            return self
                .send(refused(current, EMPTY_WATCHER_RANGE.to_string()))
                .await;
        }
        let id = if create.watch_id == AUTO_WATCH_ID {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            // As etcd's stream: an id it picked is never picked again, even
            // once its watch is cancelled.
            let id = self.next_id;
            self.next_id += 1;
            id
        } else if self.watchers.contains_key(&create.watch_id) {
            // etcd 3.4.23 answers with watch id -1, not the one asked for:
            // the watch that holds it stays.
            return self
                .send(refused(current, DUPLICATE_WATCH_ID.to_string()))
                .await;
        } else {
            create.watch_id
        };
        let filters = |filter: FilterType| create.filters.contains(&(filter as i32));
        let watcher = Watcher::new(
            id,
            create.key.clone(),
            create.range_end.clone(),
            create.start_revision,
            current,
        )
        .with_options(
            filters(FilterType::Noput),
            filters(FilterType::Nodelete),
            create.prev_kv,
            create.progress_notify,
        );
        self.watchers.insert(id, watcher);
        if create.fragment {
            self.fragmenting.insert(id);
        }
        let created = WatchResponse {
            header: Some(ResponseHeader {
                revision: current,
                ..ResponseHeader::default()
            }),
            watch_id: id,
            created: true,
            ..WatchResponse::default()
        };
        self.send(created).await?;
        // A watch from the past owes history at once.
        self.deliver().await.map(|_| ())
    }

    /// Sends every watcher what it owes, batch after batch, until all are
    /// caught up with the revision they started from; returns it.
    async fn deliver(&mut self) -> Result<i64, Gone> {
        let target = self.current_revision();
        while self
            .watchers
            .values()
            .any(|watcher| !watcher.caught_up(target))
        {
            let mut responses = Vec::new();
            let mut ended = Vec::new();
            self.server.with_store(|store| {
                for watcher in self.watchers.values_mut() {
                    match watcher.poll(store) {
                        Poll::Events { events, revision } if !events.is_empty() => {
                            self.heard.insert(watcher.id);
                            responses.push(WatchResponse {
                                header: Some(ResponseHeader {
                                    revision,
                                    ..ResponseHeader::default()
                                }),
                                watch_id: watcher.id,
                                events,
                                ..WatchResponse::default()
                            })
                        }
                        Poll::Events { .. } | Poll::Idle => {}
                        Poll::Compacted { compact_revision } => {
                            ended.push(watcher.id);
                            responses.push(WatchResponse {
                                watch_id: watcher.id,
                                compact_revision,
                                canceled: true,
                                ..WatchResponse::default()
                            });
                        }
                    }
                }
            });
            for id in ended {
                self.watchers.remove(&id);
                self.fragmenting.remove(&id);
                self.heard.remove(&id);
            }
            for mut response in responses {
                if !self.fragmenting.contains(&response.watch_id) {
                    self.send(response).await?;
                    continue;
                }
                self.server.fill_header(&mut response.header);
                // etcd's watch server cuts at the largest message a
                // client takes: the request limit and gRPC's overhead.
                let max = self.server.limits.max_request_bytes + crate::config::GRPC_OVERHEAD_BYTES;
                for part in fragments(response, max) {
                    self.send(part).await?;
                }
            }
        }
        Ok(target)
    }

    /// Tells each watcher that asked for it, and heard no events since the
    /// last tick, the revision it is caught up to (etcd's sendLoop).
    async fn notify_progress(&mut self) -> Result<(), Gone> {
        let revision = self.deliver().await?;
        let heard = std::mem::take(&mut self.heard);
        let due: Vec<i64> = (self.watchers.values())
            .filter(|watcher| watcher.progress_notify && !heard.contains(&watcher.id))
            .map(|watcher| watcher.id)
            .collect();
        #[cfg(madsim)]
        let revision = revision
            + i64::from(crate::sabotage::active(
                crate::sabotage::Sabotage::ProgressNotifyAhead,
            ));
        for id in due {
            let header = Some(ResponseHeader {
                revision,
                ..ResponseHeader::default()
            });
            self.send(WatchResponse {
                header,
                watch_id: id,
                ..WatchResponse::default()
            })
            .await?;
        }
        Ok(())
    }
}

/// etcd's `sendFragments`: a response of two or more events at least
/// `max_bytes` long goes out in parts, each under `max_bytes` unless one
/// event alone is larger, all but the last marked `fragment`; the client
/// joins them. Anything smaller goes whole.
fn fragments(response: WatchResponse, max_bytes: usize) -> Vec<WatchResponse> {
    use prost::Message;
    if response.encoded_len() < max_bytes || response.events.len() < 2 {
        return vec![response];
    }
    let mut parts = Vec::new();
    let mut events = response.events.clone().into_iter().peekable();
    while events.peek().is_some() {
        let mut part = WatchResponse {
            events: Vec::new(),
            fragment: true,
            ..response.clone()
        };
        while let Some(event) = events.peek() {
            part.events.push(event.clone());
            if part.events.len() > 1 && part.encoded_len() >= max_bytes {
                part.events.pop();
                break;
            }
            events.next();
        }
        part.fragment = events.peek().is_some();
        #[cfg(madsim)]
        if crate::sabotage::active(crate::sabotage::Sabotage::LastFragmentMarked) {
            part.fragment = true;
        }
        parts.push(part);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mvccpb::{Event, KeyValue};
    use prost::Message;

    fn event(n: u8) -> Event {
        Event {
            kv: Some(KeyValue {
                key: vec![b'k', n],
                value: vec![n; 100],
                mod_revision: 2 + i64::from(n),
                ..KeyValue::default()
            }),
            ..Event::default()
        }
    }

    #[test]
    fn large_responses_go_in_fragments_that_join_back() {
        let response = WatchResponse {
            watch_id: 3,
            events: (0..7).map(event).collect(),
            ..WatchResponse::default()
        };
        let max_bytes = 350;
        let parts = fragments(response.clone(), max_bytes);
        assert!(
            parts.len() > 1,
            "{} bytes in one part",
            response.encoded_len()
        );
        assert!(parts
            .iter()
            .all(|part| part.encoded_len() < max_bytes || part.events.len() == 1));
        assert!(
            parts[..parts.len() - 1].iter().all(|part| part.fragment)
                && !parts.last().unwrap().fragment
        );
        let joined: Vec<Event> = parts.into_iter().flat_map(|part| part.events).collect();
        assert_eq!(joined, response.events);
    }

    #[test]
    fn small_responses_and_single_events_go_whole() {
        let small = WatchResponse {
            events: vec![event(1), event(2)],
            ..WatchResponse::default()
        };
        assert_eq!(fragments(small.clone(), 10_000), vec![small]);
        let single = WatchResponse {
            events: vec![event(1)],
            ..WatchResponse::default()
        };
        assert_eq!(fragments(single.clone(), 10), vec![single]);
    }
}
