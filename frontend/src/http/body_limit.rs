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
