//! grpc-go's answer to a message over the size limit, on tonic: tonic says
//! OUT_OF_RANGE ("decoded message length too large"), grpc-go, and so
//! etcd, RESOURCE_EXHAUSTED ("grpc: received message larger than max").
//! Client libraries retry or report on the code, so it must be etcd's.
//! A thin wrapper around each client service rewrites that one status.
//! Real build only: the simulator's gRPC has no message limits.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderValue;

/// tonic's message for a request over `max_decoding_message_size`.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: found ";

/// Wraps a generated service; everything but the too-large status passes.
#[derive(Clone)]
pub struct EtcdMessageLimits<S> {
    inner: S,
}

impl<S> EtcdMessageLimits<S> {
    pub fn new(inner: S) -> Self {
        EtcdMessageLimits { inner }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for EtcdMessageLimits<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, Request, Body> tower_service::Service<Request> for EtcdMessageLimits<S>
where
    S: tower_service::Service<Request, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            rewrite_too_large(response.headers_mut());
            Ok(response)
        })
    }
}

/// The same rewrite for a status a streaming RPC meets while reading its
/// requests (it leaves in trailers, which the wrapper does not see).
pub fn etcd_decode_status(status: tonic::Status) -> tonic::Status {
    match (status.code(), grpc_go_sizes(status.message())) {
        (tonic::Code::OutOfRange, Some((found, limit))) => tonic::Status::resource_exhausted(
            format!("grpc: received message larger than max ({found} vs. {limit})"),
        ),
        _ => status,
    }
}

/// A trailers-only response that says OUT_OF_RANGE for a too-large
/// message becomes grpc-go's RESOURCE_EXHAUSTED with grpc-go's words.
fn rewrite_too_large(headers: &mut http::HeaderMap) {
    if headers.get("grpc-status").map(HeaderValue::as_bytes) != Some(b"11") {
        return;
    }
    let Some(message) = headers.get("grpc-message").and_then(|v| v.to_str().ok()) else {
        return;
    };
    let Some(sizes) = grpc_go_sizes(message) else {
        return;
    };
    let text = format!(
        "grpc: received message larger than max ({} vs. {})",
        sizes.0, sizes.1
    );
    headers.insert("grpc-status", HeaderValue::from_static("8"));
    headers.insert(
        "grpc-message",
        HeaderValue::from_str(&text).expect("ASCII header value"),
    );
}

/// The (found, limit) byte counts in tonic's message, percent-encoded
/// spaces included.
fn grpc_go_sizes(message: &str) -> Option<(u64, u64)> {
    let message = message.replace("%20", " ");
    let rest = message.strip_prefix(TONIC_TOO_LARGE)?;
    let numbers: Vec<u64> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|word| !word.is_empty())
        .map(|word| word.parse().ok())
        .collect::<Option<_>>()?;
    match numbers.as_slice() {
        [found, limit] => Some((*found, *limit)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_too_large_status_is_rewritten() {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_static("11"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static(
                "Error, decoded message length too large: found 10485775 bytes, the limit is: 2097152 bytes",
            ),
        );
        rewrite_too_large(&mut headers);
        assert_eq!(headers["grpc-status"], "8");
        assert_eq!(
            headers["grpc-message"],
            "grpc: received message larger than max (10485775 vs. 2097152)"
        );

        let mut compacted = http::HeaderMap::new();
        compacted.insert("grpc-status", HeaderValue::from_static("11"));
        compacted.insert(
            "grpc-message",
            HeaderValue::from_static("etcdserver: mvcc: required revision has been compacted"),
        );
        let before = compacted.clone();
        rewrite_too_large(&mut compacted);
        assert_eq!(compacted, before, "etcd's own OUT_OF_RANGE errors stay");
    }
}
