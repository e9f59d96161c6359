//! Plain HTTP next to gRPC on the client listener, as etcd serves it (HTTP/1.1
//! and h2c alike): `/health` and `/version` as etcd 3.4.23 answers them,
//! `/livez` and `/readyz` with etcd 3.6's checks, `/metrics` in
//! Prometheus's text format, `/debug/vars` and `/config/local/log`, and
//! etcd's JSON gateway (`/v3/...`, see gateway.rs). Anything else that is
//! not gRPC is a 404; paths Go's ServeMux would clean are redirected.
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
    /// A `--listen-metrics-urls` listener: `/metrics` and the health
    /// checks alone, as etcd's metrics mux.
    pub metrics_only: bool,
}

impl<S> tower_layer::Layer<S> for HttpLayer {
    type Service = Http<S>;

    fn layer(&self, inner: S) -> Http<S> {
        Http {
            inner,
            server: self.server.clone(),
            metrics_only: self.metrics_only,
        }
    }
}

#[derive(Clone)]
pub struct Http<S> {
    inner: S,
    server: Server,
    metrics_only: bool,
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
        // Go's ServeMux (etcd's client and metrics listeners) redirects a
        // path that is not clean, and the gateway's "/v3" without its slash.
        if let Some(location) = moved(request.uri(), self.metrics_only) {
            let mut response = moved_permanently(request.method(), &location);
            allow_cors(&mut response);
            return Box::pin(async move {
                drain(request.into_body()).await;
                Ok(response)
            });
        }
        if !self.metrics_only {
            match super::gateway::route(request.uri().path()) {
                Some(super::gateway::Route::Call(grpc_method)) => {
                    let clone = self.inner.clone();
                    let inner = std::mem::replace(&mut self.inner, clone);
                    return Box::pin(async move {
                        let mut response = super::gateway::call(inner, grpc_method, request).await;
                        allow_cors(&mut response);
                        Ok(response)
                    });
                }
                Some(super::gateway::Route::Unknown) => {
                    // grpc-gateway's own 404, not Go's ServeMux's.
                    let mut response = http_error(StatusCode::NOT_FOUND, "Not Found\n".into());
                    allow_cors(&mut response);
                    return Box::pin(async move {
                        drain(request.into_body()).await;
                        Ok(response)
                    });
                }
                None => {}
            }
        }
        let server = self.server.clone();
        let metrics_only = self.metrics_only;
        Box::pin(async move {
            let mut response = answer(&server, request, metrics_only).await;
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

/// The paths etcd's handlers answer (besides the gateway) and the one
/// method each takes (`allowMethod`); `/metrics` takes any (None).
const HANDLERS: [(&str, Option<http::Method>); 7] = [
    ("/health", Some(http::Method::GET)),
    ("/version", Some(http::Method::GET)),
    ("/metrics", None),
    ("/livez", Some(http::Method::GET)),
    ("/readyz", Some(http::Method::GET)),
    ("/debug/vars", Some(http::Method::GET)),
    ("/config/local/log", Some(http::Method::PUT)),
];

/// What the metrics listener serves of `HANDLERS`.
const METRICS_HANDLERS: [&str; 4] = ["/metrics", "/health", "/livez", "/readyz"];

/// A `/config/local/log` body larger than this is not read.
pub const LOG_CONFIG_BODY_BYTES_MAX: usize = 64 * 1024;

async fn answer(server: &Server, request: Request<Body>, metrics_only: bool) -> Response<Body> {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let handler = HANDLERS
        .iter()
        .find(|(handled, _)| *handled == path)
        .filter(|(handled, _)| !metrics_only || METRICS_HANDLERS.contains(handled));
    let Some((_, method)) = handler else {
        drain(request.into_body()).await;
        return http_error(StatusCode::NOT_FOUND, "404 page not found\n".to_string());
    };
    if let Some(method) = method.as_ref().filter(|method| *method != request.method()) {
        drain(request.into_body()).await;
        let mut response = http_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed\n".to_string(),
        );
        response.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_str(method.as_str()).expect("a method is a header value"),
        );
        return response;
    }
    let flag = |name: &str| {
        query.split('&').any(|pair| {
            pair == name || pair.starts_with(&format!("{name}=")) && !pair.ends_with("=false")
        })
    };
    match path.as_str() {
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
        "/debug/vars" => debug_vars(server).await,
        "/config/local/log" => log_config(request.into_body()).await,
        _ => http_error(StatusCode::NOT_FOUND, "404 page not found\n".to_string()),
    }
}

/// A request body Go's server reads before it answers, when the handler
/// did not (`maxPostHandlerReadBytes`): a client still sending it then
/// hears the answer rather than a reset.
pub const UNREAD_BODY_BYTES_MAX: usize = 256 * 1024;

/// Reads and drops what is left of a request's body, up to
/// `UNREAD_BODY_BYTES_MAX`, as Go's server does.
pub(super) async fn drain(body: Body) {
    use http_body_util::BodyExt;
    let _ = http_body_util::Limited::new(body, UNREAD_BODY_BYTES_MAX)
        .collect()
        .await;
}

/// etcd's `/debug/vars` (Go's expvar, keys in order): the command line,
/// the open-files limit and raft's status. Go's `memstats` has no
/// counterpart here and is left out.
async fn debug_vars(server: &Server) -> Response<Body> {
    let cmdline: Vec<String> = std::env::args().collect();
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    let fd_limit = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        0
    };
    let raft = match server.raft_status().await {
        Ok(status) => status.to_etcd_json(),
        Err(error) => {
            return http_error(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n"));
        }
    };
    let text = format!(
        "{{\n\"cmdline\": {},\n\"file_descriptor_limit\": {fd_limit},\n\"raft.status\": {raft}\n}}\n",
        serde_json::to_string(&cmdline).expect("strings serialize"),
    );
    reply(StatusCode::OK, "application/json; charset=utf-8", text)
}

/// etcd 3.4's `/config/local/log`: `PUT {"Level": "DEBUG"}` sets the log
/// level (capnslog's names, any case), 204 on success, `{"message": ...}`
/// with 400 for a body or level it cannot read.
async fn log_config(body: Body) -> Response<Body> {
    use http_body_util::BodyExt;
    let invalid = |message: String| {
        let json = serde_json::json!({ "message": message }).to_string();
        reply(StatusCode::BAD_REQUEST, "application/json", json)
    };
    let Ok(body) = http_body_util::Limited::new(body, LOG_CONFIG_BODY_BYTES_MAX)
        .collect()
        .await
    else {
        return invalid("Invalid json body".into());
    };
    let Some(level) = log_level_in(&body.to_bytes()) else {
        return invalid("Invalid json body".into());
    };
    let filter = match level.to_uppercase().as_str() {
        "CRITICAL" | "C" | "ERROR" | "0" | "E" => "error",
        "WARNING" | "1" | "W" => "warn",
        "NOTICE" | "2" | "N" | "INFO" | "3" | "I" => "info",
        "DEBUG" | "4" | "D" => "debug",
        "TRACE" | "5" | "T" => "trace",
        _ => return invalid(format!("Invalid log level {level}")),
    };
    if let Some(set) = LOG_LEVEL.get() {
        set(filter);
    }
    tracing::warn!(level = filter, "log level set through /config/local/log");
    let mut response = reply(StatusCode::NO_CONTENT, TEXT, String::new());
    response.headers_mut().remove(header::CONTENT_TYPE);
    response
}

/// The `Level` of a `/config/local/log` body as Go's JSON decoder reads
/// it into `struct{ Level string }`: the first JSON value, an object whose
/// key matches in any case (the last such key wins); missing is "".
fn log_level_in(body: &[u8]) -> Option<String> {
    let value = serde_json::Deserializer::from_slice(body)
        .into_iter::<serde_json::Value>()
        .next()?
        .ok()?;
    let object = match value {
        serde_json::Value::Object(object) => object,
        serde_json::Value::Null => return Some(String::new()),
        _ => return None,
    };
    let mut level = String::new();
    for (key, value) in object {
        if key.eq_ignore_ascii_case("level") {
            match value {
                serde_json::Value::String(text) => level = text,
                serde_json::Value::Null => {}
                _ => return None,
            }
        }
    }
    Some(level)
}

/// Sets the process's log level (`tracing`'s name for it); the binary
/// registers it once its subscriber is up (`set_log_level_handler`).
type SetLogLevel = Box<dyn Fn(&str) + Send + Sync>;
static LOG_LEVEL: std::sync::OnceLock<SetLogLevel> = std::sync::OnceLock::new();

/// Lets `/config/local/log` change the log level through `set`.
pub fn set_log_level_handler(set: impl Fn(&str) + Send + Sync + 'static) {
    let _ = LOG_LEVEL.set(Box::new(set));
}

/// Where Go's `http.ServeMux` sends a request for `uri` with a 301: to
/// its clean path (no `//`, `.` or `..`), or from "/v3" to the gateway's
/// "/v3/" (the client port only), the query kept. None if it is served
/// where it is. (etcd first renames "/v3beta/" to "/v3/".)
fn moved(uri: &http::Uri, metrics_only: bool) -> Option<String> {
    let path = uri.path();
    let path = match path.strip_prefix("/v3beta/") {
        Some(rest) if !metrics_only => format!("/v3/{rest}"),
        _ => path.to_string(),
    };
    let mut clean = clean_path(&path);
    if clean == "/v3" && !metrics_only {
        clean.push('/');
    }
    if clean == path {
        return None;
    }
    Some(match uri.query() {
        Some(query) => format!("{clean}?{query}"),
        None => clean,
    })
}

/// Go's `cleanPath` (net/http): `path.Clean` of a rooted path, a trailing
/// slash kept. Written here because it must be Go's rule exactly (which
/// paths redirect), in a dozen lines.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    let mut clean = format!("/{}", parts.join("/"));
    if path.ends_with('/') && clean != "/" {
        clean.push('/');
    }
    clean
}

/// Go's `http.Redirect` with 301: the location, and for GET a small HTML
/// body (its type for GET and HEAD).
fn moved_permanently(method: &http::Method, location: &str) -> Response<Body> {
    let body = if method == http::Method::GET {
        let escaped = location
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&#34;")
            .replace('\'', "&#39;");
        format!("<a href=\"{escaped}\">Moved Permanently</a>.\n\n")
    } else {
        String::new()
    };
    let mut response = Response::new(Body::new(http_body_util::Full::new(Bytes::from(body))));
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, location);
    }
    if method == http::Method::GET || method == http::Method::HEAD {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    response
}

/// What Go's `http.Error` writes, as etcd's handlers do on failure.
pub(super) fn http_error(status: StatusCode, text: String) -> Response<Body> {
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
