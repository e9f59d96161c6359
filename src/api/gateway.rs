//! etcd's JSON gateway (grpc-gateway in etcd 3.4): `POST /v3/<service>/<method>`
//! with a JSON body, on the client port next to gRPC. Clients such as
//! etcd3gw (OpenStack tooz) speak only this.
//!
//! Each call is turned into the gRPC call it stands for and sent to the
//! gRPC services themselves, in process, so the gateway can never answer
//! differently from gRPC (auth, limits and errors included). The JSON is
//! the proto3 mapping, with etcd's choices: the fields' names as the
//! protos spell them (`create_revision`, but `dbSize` and `ID`), 64-bit
//! integers as strings, bytes in base64, default values left out. It is
//! done by reflection over the descriptors the gRPC code is generated from
//! (prost-reflect), not by a second set of hand-written types.
//!
//! Streams (Watch, LeaseKeepAlive, Snapshot, Observe) take the request
//! body as a sequence of JSON objects and answer one `{"result": ...}`
//! line per message. A watch goes on until the client goes away (etcd
//! keeps watching after the client's last message); the others end when
//! the server ends them (a keepalive, when its requests end: one POST,
//! one renewal, as etcd3gw expects). Errors are grpc-gateway v1's: the
//! HTTP status mapped from the gRPC code, and
//! `{"error": ..., "message": ..., "code": ...}`.

use std::convert::Infallible;
use std::sync::LazyLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::StreamExt;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions,
};
use tonic::body::Body;

/// The descriptors the gRPC code is generated from (build.rs).
static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(&include_bytes!(concat!(env!("OUT_DIR"), "/detcd_descriptor.bin"))[..])
        .expect("build.rs writes a valid descriptor set")
});

/// A request body larger than this is refused (etcd's gateway has the
/// gRPC limit behind it; this bounds what is read before that).
pub const GATEWAY_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The prefixes etcd 3.4 serves the gateway under: "/v3beta/" is renamed
/// "/v3/" before anything else sees it (etcd's accessController).
/// ("/v3alpha/" was 3.3's, gone in 3.4.)
const PREFIXES: [&str; 2] = ["/v3/", "/v3beta/"];

/// Gateway paths (after the prefix) and the gRPC methods they call, as
/// etcd 3.4's rpc.proto, v3lock.proto and v3election.proto declare them.
const ROUTES: &[(&str, &str)] = &[
    ("kv/range", "etcdserverpb.KV/Range"),
    ("kv/put", "etcdserverpb.KV/Put"),
    ("kv/deleterange", "etcdserverpb.KV/DeleteRange"),
    ("kv/txn", "etcdserverpb.KV/Txn"),
    ("kv/compaction", "etcdserverpb.KV/Compact"),
    ("watch", "etcdserverpb.Watch/Watch"),
    ("lease/grant", "etcdserverpb.Lease/LeaseGrant"),
    ("lease/revoke", "etcdserverpb.Lease/LeaseRevoke"),
    ("kv/lease/revoke", "etcdserverpb.Lease/LeaseRevoke"),
    ("lease/keepalive", "etcdserverpb.Lease/LeaseKeepAlive"),
    ("lease/timetolive", "etcdserverpb.Lease/LeaseTimeToLive"),
    ("kv/lease/timetolive", "etcdserverpb.Lease/LeaseTimeToLive"),
    ("lease/leases", "etcdserverpb.Lease/LeaseLeases"),
    ("kv/lease/leases", "etcdserverpb.Lease/LeaseLeases"),
    ("cluster/member/add", "etcdserverpb.Cluster/MemberAdd"),
    ("cluster/member/remove", "etcdserverpb.Cluster/MemberRemove"),
    ("cluster/member/update", "etcdserverpb.Cluster/MemberUpdate"),
    ("cluster/member/list", "etcdserverpb.Cluster/MemberList"),
    (
        "cluster/member/promote",
        "etcdserverpb.Cluster/MemberPromote",
    ),
    ("maintenance/alarm", "etcdserverpb.Maintenance/Alarm"),
    ("maintenance/status", "etcdserverpb.Maintenance/Status"),
    (
        "maintenance/defragment",
        "etcdserverpb.Maintenance/Defragment",
    ),
    ("maintenance/hash", "etcdserverpb.Maintenance/Hash"),
    ("maintenance/hashkv", "etcdserverpb.Maintenance/HashKV"),
    ("maintenance/snapshot", "etcdserverpb.Maintenance/Snapshot"),
    (
        "maintenance/transfer-leadership",
        "etcdserverpb.Maintenance/MoveLeader",
    ),
    ("auth/enable", "etcdserverpb.Auth/AuthEnable"),
    ("auth/disable", "etcdserverpb.Auth/AuthDisable"),
    ("auth/authenticate", "etcdserverpb.Auth/Authenticate"),
    ("auth/user/add", "etcdserverpb.Auth/UserAdd"),
    ("auth/user/get", "etcdserverpb.Auth/UserGet"),
    ("auth/user/list", "etcdserverpb.Auth/UserList"),
    ("auth/user/delete", "etcdserverpb.Auth/UserDelete"),
    ("auth/user/changepw", "etcdserverpb.Auth/UserChangePassword"),
    ("auth/user/grant", "etcdserverpb.Auth/UserGrantRole"),
    ("auth/user/revoke", "etcdserverpb.Auth/UserRevokeRole"),
    ("auth/role/add", "etcdserverpb.Auth/RoleAdd"),
    ("auth/role/get", "etcdserverpb.Auth/RoleGet"),
    ("auth/role/list", "etcdserverpb.Auth/RoleList"),
    ("auth/role/delete", "etcdserverpb.Auth/RoleDelete"),
    ("auth/role/grant", "etcdserverpb.Auth/RoleGrantPermission"),
    ("auth/role/revoke", "etcdserverpb.Auth/RoleRevokePermission"),
    ("lock/lock", "v3lockpb.Lock/Lock"),
    ("lock/unlock", "v3lockpb.Lock/Unlock"),
    ("election/campaign", "v3electionpb.Election/Campaign"),
    ("election/proclaim", "v3electionpb.Election/Proclaim"),
    ("election/leader", "v3electionpb.Election/Leader"),
    ("election/observe", "v3electionpb.Election/Observe"),
    ("election/resign", "v3electionpb.Election/Resign"),
];

/// What the gateway does with a path under its prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Calls this gRPC method.
    Call(&'static str),
    /// No such method: grpc-gateway's own 404.
    Unknown,
}

/// What a path under the gateway's prefixes calls; None outside them.
pub fn route(path: &str) -> Option<Route> {
    let rest = PREFIXES
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))?;
    Some(
        ROUTES
            .iter()
            .find(|(http, _)| *http == rest)
            .map_or(Route::Unknown, |(_, grpc)| Route::Call(grpc)),
    )
}

struct Method {
    grpc_path: String,
    input: MessageDescriptor,
    output: MessageDescriptor,
    streams: bool,
    client_streams: bool,
    keeps_request_open: bool,
}

fn method(grpc: &str) -> Method {
    let (service, name) = grpc.split_once('/').expect("service/method");
    let service = POOL
        .get_service_by_name(service)
        .expect("every routed service is in the descriptors");
    let method = service
        .methods()
        .find(|method| method.name() == name)
        .expect("every routed method is in the descriptors");
    Method {
        grpc_path: format!("/{grpc}"),
        input: method.input(),
        output: method.output(),
        streams: method.is_server_streaming(),
        client_streams: method.is_client_streaming(),
        keeps_request_open: grpc == "etcdserverpb.Watch/Watch",
    }
}

/// Answers one gateway call through `grpc`, the gRPC services.
pub async fn call<S>(grpc: S, grpc_method: &'static str, request: Request<Body>) -> Response<Body>
where
    S: tower_service::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    if request.method() != http::Method::POST {
        super::http::drain(request.into_body()).await;
        return super::http::http_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed\n".into(),
        );
    }
    let method = method(grpc_method);
    let (parts, body) = request.into_parts();
    let body = match http_body_util::Limited::new(body, GATEWAY_BODY_BYTES_MAX)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) => return error_response(tonic::Code::InvalidArgument, &error.to_string()),
    };
    let messages = match decode_requests(&method.input, &body, method.client_streams) {
        Ok(messages) => messages,
        // grpc-gateway: a unary request that does not decode is
        // InvalidArgument; a stream's first one is a bare error, Unknown.
        Err(error) if method.client_streams => return error_response(tonic::Code::Unknown, &error),
        Err(error) => return error_response(tonic::Code::InvalidArgument, &error),
    };
    let mut frames = BytesMut::new();
    for message in &messages {
        let encoded = message.encode_to_vec();
        frames.put_u8(0);
        frames.put_u32(encoded.len() as u32);
        frames.put_slice(&encoded);
    }
    let frames = frames.freeze();
    // A watch's request side stays open: etcd keeps a watch going after
    // the client's last message, until the client goes away. A keepalive
    // stream ends with its requests, so one POST renews once and answers.
    let grpc_body = if method.keeps_request_open {
        let stream = futures::stream::iter([Ok::<_, Infallible>(http_body::Frame::data(frames))])
            .chain(futures::stream::pending());
        Body::new(http_body_util::StreamBody::new(stream))
    } else {
        Body::new(http_body_util::Full::new(frames))
    };
    let mut grpc_request = Request::from_parts(parts, grpc_body);
    *grpc_request.uri_mut() = match method.grpc_path.parse() {
        Ok(uri) => uri,
        Err(_) => return error_response(tonic::Code::Internal, "bad gRPC path"),
    };
    let headers = grpc_request.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    headers.remove(header::CONTENT_LENGTH);
    let mut grpc = grpc;
    let Ok(response) = grpc.call(grpc_request).await;
    if let Some(code) = status_code(response.headers()) {
        // Trailers-only: an error before any message; a stream's is
        // grpc-gateway's stream error line.
        let message = status_message(response.headers());
        if method.streams {
            let mut response = respond(
                http_status(code),
                "application/json",
                Bytes::from(stream_error(code, &message)),
            );
            response.headers_mut().remove(header::CONTENT_LENGTH);
            return response;
        }
        return error_response(code, &message);
    }
    if method.streams {
        stream_response(response.into_body(), method.output).await
    } else {
        unary_response(response.into_body(), &method.output).await
    }
}

/// The request body as messages, read as etcd's gateway reads it
/// (`jsonpb.rs`): one JSON object (an empty body is `{}`), or for a
/// client stream any number of them one after the other.
fn decode_requests(
    input: &MessageDescriptor,
    body: &[u8],
    stream: bool,
) -> Result<Vec<DynamicMessage>, String> {
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    super::jsonpb::requests(input, body, stream)?
        .into_iter()
        .map(|value| {
            DynamicMessage::deserialize_with_options(input.clone(), value, &options)
                .map_err(|error| error.to_string())
        })
        .collect()
}

fn to_json(output: &MessageDescriptor, bytes: &[u8]) -> Result<String, String> {
    let message =
        DynamicMessage::decode(output.clone(), bytes).map_err(|error| error.to_string())?;
    let mut json = Vec::new();
    let options = SerializeOptions::new().use_proto_field_name(true);
    message
        .serialize_with_options(&mut serde_json::Serializer::new(&mut json), &options)
        .map_err(|error| error.to_string())?;
    String::from_utf8(json).map_err(|error| error.to_string())
}

async fn unary_response(body: Body, output: &MessageDescriptor) -> Response<Body> {
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(status) => return error_response(status.code(), status.message()),
    };
    if let Some(trailers) = collected.trailers() {
        if let Some(code) = status_code(trailers).filter(|code| *code != tonic::Code::Ok) {
            return error_response(code, &status_message(trailers));
        }
    }
    let mut frames = GrpcFrames::default();
    frames.push(&collected.to_bytes());
    let Some(message) = frames.next_message() else {
        return error_response(tonic::Code::Internal, "the gRPC call answered no message");
    };
    match to_json(output, &message) {
        Ok(json) => with_grpc_metadata(json_response(StatusCode::OK, json)),
        Err(error) => error_response(tonic::Code::Internal, &error),
    }
}

/// One `{"result": ...}` line per message; a gRPC error ends the stream
/// with grpc-gateway's stream error line. The answer's head goes with its
/// first line (or its end), as Go's server sends a head with the first
/// write: a client waiting on an election with no leader yet hears
/// nothing until there is one, as from etcd.
async fn stream_response(body: Body, output: MessageDescriptor) -> Response<Body> {
    let lines = futures::stream::unfold(
        (Some(body), GrpcFrames::default()),
        move |(body, mut frames)| {
            let output = output.clone();
            async move {
                let mut body = body?;
                loop {
                    if let Some(message) = frames.next_message() {
                        let line = match to_json(&output, &message) {
                            Ok(json) => format!("{{\"result\":{json}}}\n"),
                            Err(error) => stream_error(tonic::Code::Internal, &error),
                        };
                        return Some((line, (Some(body), frames)));
                    }
                    match body.frame().await {
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) => frames.push(&data),
                            Err(frame) => {
                                let trailers = frame.into_trailers().unwrap_or_default();
                                let code = status_code(&trailers).unwrap_or(tonic::Code::Ok);
                                if code == tonic::Code::Ok {
                                    return None;
                                }
                                let line = stream_error(code, &status_message(&trailers));
                                return Some((line, (None, frames)));
                            }
                        },
                        Some(Err(status)) => {
                            let line = stream_error(status.code(), status.message());
                            return Some((line, (None, frames)));
                        }
                        None => return None,
                    }
                }
            }
        },
    )
    .map(|line| Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(line))));
    // Fused: a stream that ended before its first line is not polled again.
    let mut lines = Box::pin(lines.fuse());
    let first = lines.next().await;
    let lines = futures::stream::iter(first).chain(lines);
    let mut response = Response::new(Body::new(http_body_util::StreamBody::new(lines)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    with_grpc_metadata(response)
}

/// grpc-gateway passes the gRPC answer's headers on as
/// `Grpc-Metadata-*`: etcd's carry its content type.
fn with_grpc_metadata(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(
        "grpc-metadata-content-type",
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// Splits a gRPC body into its length-prefixed messages.
#[derive(Default)]
struct GrpcFrames {
    buffer: BytesMut,
}

impl GrpcFrames {
    fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    fn next_message(&mut self) -> Option<Bytes> {
        if self.buffer.len() < 5 {
            return None;
        }
        let len = u32::from_be_bytes(self.buffer[1..5].try_into().expect("4 bytes")) as usize;
        if self.buffer.len() < 5 + len {
            return None;
        }
        self.buffer.advance(5);
        Some(self.buffer.split_to(len).freeze())
    }
}

fn status_code(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
}

fn status_message(headers: &http::HeaderMap) -> String {
    let raw = headers
        .get("grpc-message")
        .map(|value| value.as_bytes())
        .unwrap_or_default();
    percent_decode(raw)
}

/// grpc-message is percent-encoded (gRPC over HTTP/2).
fn percent_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut index = 0;
    while index < raw.len() {
        let hex = raw
            .get(index + 1..index + 3)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 16).ok());
        match (raw[index], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// grpc-gateway v1.9's `HTTPStatusFromCode` (the version etcd 3.4 vendors).
fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

fn error_response(code: tonic::Code, message: &str) -> Response<Body> {
    let json = format!(
        "{{\"error\":{},\"message\":{},\"code\":{}}}",
        quoted(message),
        quoted(message),
        code as i32
    );
    json_response(http_status(code), json)
}

fn stream_error(code: tonic::Code, message: &str) -> String {
    let status = http_status(code);
    format!(
        "{{\"error\":{{\"grpc_code\":{},\"http_code\":{},\"message\":{},\"http_status\":{}}}}}\n",
        code as i32,
        status.as_u16(),
        quoted(message),
        quoted(status.canonical_reason().unwrap_or_default())
    )
}

fn json_response(status: StatusCode, json: String) -> Response<Body> {
    respond(status, "application/json", Bytes::from(json))
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(http_body_util::Full::new(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_names_a_method_in_the_descriptors() {
        for (http, grpc) in ROUTES {
            let method = method(grpc);
            assert!(!method.input.name().is_empty(), "{http}");
        }
        assert_eq!(
            route("/v3/kv/range"),
            Some(Route::Call("etcdserverpb.KV/Range"))
        );
        assert_eq!(
            route("/v3beta/lease/grant"),
            Some(Route::Call("etcdserverpb.Lease/LeaseGrant"))
        );
        assert_eq!(route("/v3/kv/nothing"), Some(Route::Unknown));
        assert_eq!(route("/v3/kv/range/"), Some(Route::Unknown));
        assert_eq!(route("/v3alpha/kv/range"), None);
        assert_eq!(route("/health"), None);
    }

    #[test]
    fn json_follows_etcds_gateway() {
        let method = method("etcdserverpb.Maintenance/Status");
        let status = crate::proto::etcdserverpb::StatusResponse {
            version: "3.4.23".into(),
            db_size: 20480,
            leader: 7,
            ..Default::default()
        };
        let json = to_json(&method.output, &status.encode_to_vec()).unwrap();
        assert_eq!(
            json,
            r#"{"version":"3.4.23","dbSize":"20480","leader":"7"}"#
        );
        let put = method_input(
            "etcdserverpb.KV/Put",
            r#"{"key":"Zm9v","value":"YmFy","lease":"5"}"#,
        );
        let put = crate::proto::etcdserverpb::PutRequest::decode(&put[..]).unwrap();
        assert_eq!(
            (put.key, put.value, put.lease),
            (b"foo".to_vec(), b"bar".to_vec(), 5)
        );
    }

    fn method_input(grpc: &str, json: &str) -> Vec<u8> {
        let method = method(grpc);
        decode_requests(&method.input, json.as_bytes(), false).unwrap()[0].encode_to_vec()
    }

    #[test]
    fn grpc_messages_are_split_at_their_length_prefix() {
        let mut frames = GrpcFrames::default();
        frames.push(&[0, 0, 0, 0, 2, b'a']);
        assert_eq!(frames.next_message(), None);
        frames.push(&[b'b', 0, 0, 0, 0, 0]);
        assert_eq!(frames.next_message().as_deref(), Some(&b"ab"[..]));
        assert_eq!(frames.next_message().as_deref(), Some(&b""[..]));
        assert_eq!(percent_decode(b"lease%20not%20found"), "lease not found");
    }
}
