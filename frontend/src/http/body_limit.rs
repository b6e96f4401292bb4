//! The request body limit of the MCP endpoint, enforced so that clients
//! can tell what happened. Refusing early (as rmcp does) closes the
//! connection while the client is still sending, which MCP clients report
//! as a broken connection; instead the rest of an oversized body (up to a
//! bound) is read and dropped, and the answer is a JSON-RPC error saying
//! what to do.

use axum::Json;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;

/// The largest request body the MCP endpoint takes: room for a
/// 200000-character tool even when every character is escaped.
pub const MAX_REQUEST_BODY_BYTES: usize = 4 << 20;

/// How much of an oversized body is read (and dropped) so the client can
/// read the answer; past this the connection is simply closed.
const MAX_DRAINED_BYTES: usize = 64 << 20;

/// JSON-RPC's "Invalid Request".
const INVALID_REQUEST: i64 = -32600;

/// Passes bodies up to the limit on; answers larger ones with 413 and a
/// JSON-RPC error.
pub async fn limit(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let mut chunks = body.into_data_stream();
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = chunks.next().await {
        let Ok(chunk) = chunk else {
            return (
                StatusCode::BAD_REQUEST,
                "Bad Request: the request body could not be read",
            )
                .into_response();
        };
        total = total.saturating_add(chunk.len());
        if total <= MAX_REQUEST_BODY_BYTES {
            kept.extend_from_slice(&chunk);
        } else if total > MAX_DRAINED_BYTES {
            break;
        }
    }
    if total > MAX_REQUEST_BODY_BYTES {
        tracing::info!(bytes = total, "refused an oversized MCP request");
        return too_large();
    }
    next.run(Request::from_parts(parts, Body::from(kept))).await
}

fn too_large() -> Response {
    let message = format!(
        "the request is larger than this server accepts ({MAX_REQUEST_BODY_BYTES} bytes per message); \
         send less data per call, e.g. split large arguments over several calls"
    );
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": INVALID_REQUEST, "message": message}});
    (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response()
}
