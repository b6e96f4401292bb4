//! The request body limit of the MCP endpoint, enforced so that clients
//! can tell what happened. Refusing early (as rmcp does) closes the
//! connection while the client is still sending, which MCP clients report
//! as a broken connection; instead the rest of an oversized body (up to a
//! bound) is read and dropped, and the answer is a JSON-RPC error saying
//! what to do.
//!
//! The whole body must arrive within MCP_HTTP_BODY_READ_TIMEOUT_MS: a
//! stalled upload is answered 408 and the connection closed, which frees
//! what it had sent so far.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use rmcp::model::ErrorCode;
use serde_json::Value;

use super::jsonrpc_errors::RpcError;
use crate::metrics;

/// The largest request body the MCP endpoint takes: room for a
/// 200000-character tool even when every character is escaped.
pub const MAX_REQUEST_BODY_BYTES: usize = 4 << 20;

/// How much of an oversized body is read (and dropped) so the client can
/// read the answer; past this the connection is simply closed.
const MAX_DRAINED_BYTES: usize = 64 << 20;

/// How long a request body may take to arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyReadTimeout(pub Duration);

/// What reading a body gave.
enum Read {
    Whole(Vec<u8>),
    TooLarge(usize),
    Unreadable,
}

/// Passes bodies up to the limit on; answers larger ones with 413, and
/// bodies that take too long with 408, each with a JSON-RPC error.
pub async fn limit(State(BodyReadTimeout(within)): State<BodyReadTimeout>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(within, read(body)).await {
        Ok(Read::Whole(kept)) => {
            next.run(Request::from_parts(parts, Body::from(Bytes::from(kept))))
                .await
        }
        Ok(Read::TooLarge(total)) => {
            tracing::info!(bytes = total, "refused an oversized MCP request");
            too_large()
        }
        Ok(Read::Unreadable) => (
            StatusCode::BAD_REQUEST,
            "Bad Request: the request body could not be read",
        )
            .into_response(),
        Err(_elapsed) => {
            metrics::http_request_refused("body_timeout");
            tracing::info!(
                within_ms = within.as_millis() as u64,
                "a request body did not arrive in time"
            );
            too_slow(within)
        }
    }
}

async fn read(body: Body) -> Read {
    let mut chunks = body.into_data_stream();
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = chunks.next().await {
        let Ok(chunk) = chunk else {
            return Read::Unreadable;
        };
        total = total.saturating_add(chunk.len());
        if total <= MAX_REQUEST_BODY_BYTES {
            kept.extend_from_slice(&chunk);
        } else if total > MAX_DRAINED_BYTES {
            break;
        }
    }
    if total > MAX_REQUEST_BODY_BYTES {
        Read::TooLarge(total)
    } else {
        Read::Whole(kept)
    }
}

/// 408, and the connection is closed: the rest of the body is not awaited.
fn too_slow(within: Duration) -> Response {
    let message = format!(
        "the request body did not arrive within {} ms (MCP_HTTP_BODY_READ_TIMEOUT_MS); send it at once, \
         or send less data per call",
        within.as_millis()
    );
    let mut response = RpcError::new(
        StatusCode::REQUEST_TIMEOUT,
        ErrorCode::INVALID_REQUEST,
        Value::Null,
        message,
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn too_large() -> Response {
    let message = format!(
        "the request is larger than this server accepts ({MAX_REQUEST_BODY_BYTES} bytes per message); \
         send less data per call, e.g. split large arguments over several calls"
    );
    RpcError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::INVALID_REQUEST,
        Value::Null,
        message,
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::middleware;
    use axum::routing::post;
    use futures::stream;
    use tower::ServiceExt;

    use super::*;

    const WITHIN: Duration = Duration::from_secs(5);

    /// The layer in front of a handler that echoes the body it got (read
    /// whole: axum's `Bytes` extractor has a limit of its own).
    fn app() -> Router {
        let echo =
            |request: Request| async move { axum::body::to_bytes(request.into_body(), usize::MAX).await.unwrap() };
        Router::new()
            .route("/mcp", post(echo))
            .layer(middleware::from_fn_with_state(BodyReadTimeout(WITHIN), limit))
    }

    fn request(body: Body) -> Request {
        Request::post("/mcp").body(body).unwrap()
    }

    /// `total` bytes of `x`, sent in 64 KiB chunks as a client streams them.
    fn chunked(total: usize) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![b'x'; total]
            .chunks(64 << 10)
            .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
            .collect();
        Body::from_stream(stream::iter(chunks))
    }

    async fn body_of(response: Response) -> Bytes {
        axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap()
    }

    async fn rpc_error(response: Response) -> Value {
        let body: Value = serde_json::from_slice(&body_of(response).await).unwrap();
        assert_eq!(body["jsonrpc"], "2.0", "{body}");
        assert_eq!(body["id"], Value::Null, "{body}");
        body["error"].clone()
    }

    #[tokio::test]
    async fn a_body_at_the_limit_reaches_the_handler_whole() {
        let response = app().oneshot(request(chunked(MAX_REQUEST_BODY_BYTES))).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let echoed = body_of(response).await;
        assert_eq!(echoed.len(), MAX_REQUEST_BODY_BYTES);
        assert!(echoed.iter().all(|b| *b == b'x'));
    }

    #[tokio::test]
    async fn one_byte_over_is_answered_413_with_a_json_rpc_error() {
        let response = app()
            .oneshot(request(chunked(MAX_REQUEST_BODY_BYTES + 1)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let error = rpc_error(response).await;
        assert_eq!(error["code"], ErrorCode::INVALID_REQUEST.0);
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("({MAX_REQUEST_BODY_BYTES} bytes per message)")),
            "{message}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_answered_408_and_its_connection_closed() {
        let started = tokio::time::Instant::now();
        let stalled =
            stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"{\"jsonrpc\":"))]).chain(stream::pending());
        let response = app().oneshot(request(Body::from_stream(stalled))).await.unwrap();
        assert_eq!(
            started.elapsed(),
            WITHIN,
            "answered before or long after the read timeout"
        );
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        let error = rpc_error(response).await;
        assert_eq!(error["code"], ErrorCode::INVALID_REQUEST.0);
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("within 5000 ms (MCP_HTTP_BODY_READ_TIMEOUT_MS)"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_is_a_bad_request() {
        let broken = stream::iter([
            Ok(Bytes::from_static(b"{")),
            Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset")),
        ]);
        let response = app().oneshot(request(Body::from_stream(broken))).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            body_of(response).await,
            "Bad Request: the request body could not be read"
        );
    }
}
