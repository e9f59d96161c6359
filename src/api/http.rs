//! Plain HTTP next to gRPC on the client listener, as etcd serves it (HTTP/1.1
//! and h2c alike): `/health` and `/version` as etcd 3.4.23 answers them,
//! `/livez` and `/readyz` with etcd 3.6's checks, `/metrics` in
//! Prometheus's text format, and etcd's JSON gateway (`/v3/...`, see
//! gateway.rs). Anything else that is not gRPC is a 404.
//!
//! It is a tower layer in front of tonic's routes: a gRPC call passes
//! through, counted in `grpc_server_started_total` and, once its status is
//! known (in the headers for an error, else in the trailers),
//! `grpc_server_handled_total`. `--listen-metrics-urls` serves the same
//! layer with no gRPC services behind it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use tonic::body::Body;

use crate::proto::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, RangeRequest};
use crate::server::Server;

/// How long a health check's read may take (etcd: one second).
pub const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct HttpLayer {
    pub server: Server,
}

impl<S> tower_layer::Layer<S> for HttpLayer {
    type Service = Http<S>;

    fn layer(&self, inner: S) -> Http<S> {
        Http {
            inner,
            server: self.server.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Http<S> {
    inner: S,
    server: Server,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<S> tower_service::Service<Request<Body>> for Http<S>
where
    S: tower_service::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> ResponseFuture {
        let is_grpc = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/grpc"));
        if is_grpc {
            let labels = GrpcLabels::of(request.uri().path());
            let metrics = self.server.metrics();
            metrics
                .grpc_started
                .with_label_values(&[labels.kind, &labels.service, &labels.method])
                .inc();
            // The ready clone serves this call; the fresh one waits for the next.
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            return Box::pin(async move {
                let mut response = inner.call(request).await?;
                explain_unimplemented(&mut response, &labels.service, &labels.method);
                Ok(count_handled(response, labels, metrics))
            });
        }
        if request.method() == http::Method::OPTIONS {
            // A browser's preflight: etcd answers any path with its CORS
            // headers and nothing else.
            let mut response = Response::new(Body::new(http_body_util::Empty::<Bytes>::new()));
            allow_cors(&mut response);
            return Box::pin(async move { Ok(response) });
        }
        if let Some(grpc_method) = super::gateway::route(request.uri().path()) {
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            return Box::pin(async move {
                let mut response = super::gateway::call(inner, grpc_method, request).await;
                allow_cors(&mut response);
                Ok(response)
            });
        }
        let server = self.server.clone();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        Box::pin(async move {
            let mut response = answer(&server, &path, &query).await;
            allow_cors(&mut response);
            Ok(response)
        })
    }
}

/// etcd's CORS headers for its default `--cors '*'` (the only value
/// detcd takes besides none), on every answer that is not gRPC.
fn allow_cors(response: &mut Response<Body>) {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "accept, content-type, authorization",
        ),
        (
            header::ACCESS_CONTROL_ALLOW_METHODS,
            "POST, GET, OPTIONS, PUT, DELETE",
        ),
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// What grpc-go's Prometheus interceptor labels a call with.
struct GrpcLabels {
    kind: &'static str,
    service: String,
    method: String,
}

impl GrpcLabels {
    fn of(path: &str) -> GrpcLabels {
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let service = parts.next().unwrap_or_default().to_string();
        let method = parts.next().unwrap_or_default().to_string();
        let kind = match (service.as_str(), method.as_str()) {
            ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => {
                "bidi_stream"
            }
            ("etcdserverpb.Maintenance", "Snapshot") | ("v3electionpb.Election", "Observe") => {
                "server_stream"
            }
            _ => "unary",
        };
        GrpcLabels {
            kind,
            service,
            method,
        }
    }
}

/// The services the client port serves, by their gRPC names.
const CLIENT_SERVICES: [&str; 8] = [
    crate::proto::etcdserverpb::kv_server::SERVICE_NAME,
    crate::proto::etcdserverpb::watch_server::SERVICE_NAME,
    crate::proto::etcdserverpb::lease_server::SERVICE_NAME,
    crate::proto::etcdserverpb::cluster_server::SERVICE_NAME,
    crate::proto::etcdserverpb::maintenance_server::SERVICE_NAME,
    crate::proto::etcdserverpb::auth_server::SERVICE_NAME,
    crate::proto::v3lockpb::lock_server::SERVICE_NAME,
    crate::proto::v3electionpb::election_server::SERVICE_NAME,
];

/// tonic answers a method or service that does not exist with a bare
/// UNIMPLEMENTED; grpc-go, and so etcd, says which ("unknown method
/// RangeStream for service etcdserverpb.KV", "unknown service x.Y"), and
/// clients show it (a newer client calling a method 3.4 lacks).
fn explain_unimplemented(response: &mut Response<Body>, service: &str, method: &str) {
    let headers = response.headers_mut();
    let unexplained = headers
        .get("grpc-message")
        .is_none_or(|message| message.is_empty());
    if grpc_status(headers) != Some(tonic::Code::Unimplemented as i32) || !unexplained {
        return;
    }
    let text = if CLIENT_SERVICES.contains(&service) {
        format!("unknown method {method} for service {service}")
    } else {
        format!("unknown service {service}")
    };
    // A name that is not a visible ASCII header value keeps the bare code.
    if let Ok(value) = HeaderValue::from_str(&text) {
        headers.insert("grpc-message", value);
    }
}

/// grpc-go's name for a status code number.
fn code_name(code: i32) -> &'static str {
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "Canceled",
        tonic::Code::Unknown => "Unknown",
        tonic::Code::InvalidArgument => "InvalidArgument",
        tonic::Code::DeadlineExceeded => "DeadlineExceeded",
        tonic::Code::NotFound => "NotFound",
        tonic::Code::AlreadyExists => "AlreadyExists",
        tonic::Code::PermissionDenied => "PermissionDenied",
        tonic::Code::ResourceExhausted => "ResourceExhausted",
        tonic::Code::FailedPrecondition => "FailedPrecondition",
        tonic::Code::Aborted => "Aborted",
        tonic::Code::OutOfRange => "OutOfRange",
        tonic::Code::Unimplemented => "Unimplemented",
        tonic::Code::Internal => "Internal",
        tonic::Code::Unavailable => "Unavailable",
        tonic::Code::DataLoss => "DataLoss",
        tonic::Code::Unauthenticated => "Unauthenticated",
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

/// Counts the call as handled once its status is known.
fn count_handled(
    response: Response<Body>,
    labels: GrpcLabels,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
) -> Response<Body> {
    let handled = move |code: i32| {
        metrics
            .grpc_handled
            .with_label_values(&[
                labels.kind,
                &labels.service,
                &labels.method,
                code_name(code),
            ])
            .inc();
    };
    if let Some(code) = grpc_status(response.headers()) {
        // Trailers-only: an error before any message.
        handled(code);
        return response;
    }
    let (parts, body) = response.into_parts();
    let counted = CountedBody {
        inner: body,
        handled: Some(Box::new(handled)),
    };
    Response::from_parts(parts, Body::new(counted))
}

/// A response body that reports the grpc-status of its trailers (or
/// Unknown, if it ends without them) once.
struct CountedBody {
    inner: Body,
    handled: Option<Box<dyn FnOnce(i32) + Send>>,
}

/// A call whose body goes before its status is known was cancelled by
/// its client (it reset the stream or went away), which grpc-go counts
/// as Canceled.
impl Drop for CountedBody {
    fn drop(&mut self) {
        if let Some(handled) = self.handled.take() {
            handled(tonic::Code::Cancelled as i32);
        }
    }
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let code = match &frame {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|trailers| grpc_status(trailers).unwrap_or(tonic::Code::Unknown as i32)),
            Some(Err(_)) | None => Some(tonic::Code::Unknown as i32),
        };
        if let Some(code) = code {
            if let Some(handled) = self.handled.take() {
                handled(code);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn reply(status: StatusCode, content_type: &'static str, text: String) -> Response<Body> {
    let mut response = Response::new(Body::new(http_body_util::Full::new(Bytes::from(text))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn answer(server: &Server, path: &str, query: &str) -> Response<Body> {
    let flag = |name: &str| {
        query.split('&').any(|pair| {
            pair == name || pair.starts_with(&format!("{name}=")) && !pair.ends_with("=false")
        })
    };
    match path {
        "/health" => {
            if health(server, flag("serializable")).await.is_ok() {
                reply(StatusCode::OK, TEXT, "{\"health\":\"true\"}".to_string())
            } else {
                // etcd answers through Go's http.Error: a newline, nosniff.
                http_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "{\"health\":\"false\"}\n".to_string(),
                )
            }
        }
        "/version" => reply(
            StatusCode::OK,
            "application/json",
            format!(
                "{{\"etcdserver\":\"{}\",\"etcdcluster\":\"{}\"}}",
                crate::ETCD_API_VERSION,
                server.cluster_version()
            ),
        ),
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            server.metrics_text(),
        ),
        "/livez" | "/readyz" => {
            let checks: &[&str] = if path == "/livez" {
                &["serializable_read"]
            } else {
                &["data_corruption", "serializable_read", "linearizable_read"]
            };
            let excluded: Vec<&str> = query
                .split('&')
                .filter_map(|pair| pair.strip_prefix("exclude="))
                .collect();
            probes(server, &path[1..], checks, &excluded, flag("verbose")).await
        }
        _ => http_error(StatusCode::NOT_FOUND, "404 page not found\n".to_string()),
    }
}

/// What Go's `http.Error` writes, as etcd's handlers do on failure.
fn http_error(status: StatusCode, text: String) -> Response<Body> {
    let mut response = reply(status, TEXT, text);
    response.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// etcd 3.4's /health: no alarm, a leader (unless `serializable`), and a
/// read through raft within a second (which needs a leader either way).
async fn health(server: &Server, serializable: bool) -> Result<(), String> {
    let alarms = server
        .alarm(AlarmRequest {
            action: AlarmAction::Get as i32,
            ..AlarmRequest::default()
        })
        .await
        .map_err(|error| error.to_string())?;
    if !alarms.alarms.is_empty() {
        return Err("alarm activated".into());
    }
    if !serializable && !server.has_leader() {
        return Err("no leader".into());
    }
    // etcd 3.4's /health reads through raft (a v2 QGET), serializable or
    // not: an entry in the log, which a member without a leader cannot
    // commit. So does this, and both count the same raft index.
    let request = RangeRequest {
        key: b"health".to_vec(),
        keys_only: true,
        limit: 1,
        ..RangeRequest::default()
    };
    tokio::select! {
        biased;
        result = server.range_through_raft(request) => {
            result.map(|_| ()).map_err(|error| error.to_string())
        }
        _ = server.clock().sleep(HEALTH_READ_TIMEOUT) => Err("timed out".into()),
    }
}

async fn read(server: &Server, serializable: bool) -> Result<(), String> {
    let request = RangeRequest {
        key: b"health".to_vec(),
        keys_only: true,
        limit: 1,
        serializable,
        ..RangeRequest::default()
    };
    tokio::select! {
        biased;
        result = server.range(request) => result.map(|_| ()).map_err(|error| error.to_string()),
        _ = server.clock().sleep(HEALTH_READ_TIMEOUT) => Err("timed out".into()),
    }
}

/// etcd 3.6's /livez and /readyz, worded as Kubernetes' healthz: `ok`, or
/// every check with its outcome when `verbose` or when one fails.
async fn probes(
    server: &Server,
    name: &str,
    checks: &[&str],
    excluded: &[&str],
    verbose: bool,
) -> Response<Body> {
    let mut lines = String::new();
    let mut failed = false;
    for &check in checks {
        if excluded.contains(&check) {
            lines.push_str(&format!("[+]{check} excluded: ok\n"));
            continue;
        }
        let outcome = match check {
            "data_corruption" => {
                let corrupt = server
                    .alarm(AlarmRequest {
                        action: AlarmAction::Get as i32,
                        alarm: crate::proto::etcdserverpb::AlarmType::Corrupt as i32,
                        ..AlarmRequest::default()
                    })
                    .await
                    .map(|alarms| alarms.alarms.is_empty());
                match corrupt {
                    Ok(true) => Ok(()),
                    Ok(false) => Err("alarm activated: CORRUPT".to_string()),
                    Err(error) => Err(error.to_string()),
                }
            }
            "serializable_read" => read(server, true).await,
            _ => read(server, false).await,
        };
        match outcome {
            Ok(()) => lines.push_str(&format!("[+]{check} ok\n")),
            Err(_) => {
                failed = true;
                lines.push_str(&format!("[-]{check} failed: reason withheld\n"));
            }
        }
    }
    if failed {
        lines.push_str(&format!("{name} check failed\n"));
        return reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, lines);
    }
    let body = if verbose {
        lines + &format!("{name} check passed\n")
    } else {
        "ok".to_string()
    };
    reply(StatusCode::OK, TEXT, body)
}
