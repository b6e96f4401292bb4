//! Legacy (before 2026-07-28) HTTP sessions, with MCP_HTTP_LEGACY_SESSIONS
//! on: a cap on how many are open (MCP_HTTP_MAX_LEGACY_SESSIONS; each holds
//! a session worker and its channels), and the answer to DELETE.
//!
//! rmcp answers a session's DELETE 202 Accepted. Clients read that as a
//! failure (the Python SDK logs `Session termination failed: 202` on every
//! disconnect): the session is already gone when rmcp answers, so the answer
//! is 204 No Content.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use rmcp::model::{ConstString, InitializeResultMethod};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde_json::Value;

use super::jsonrpc_errors::{RpcError, RpcMessage, SERVER_BUSY};
use super::streams::busy;
use crate::metrics;

/// rmcp's header naming a legacy session.
const SESSION_ID: &str = "mcp-session-id";

pub struct LegacySessions {
    manager: Arc<LocalSessionManager>,
    max: usize,
    /// Session starts one at a time, so that the count is never passed.
    opening: tokio::sync::Mutex<()>,
}

impl LegacySessions {
    pub fn new(manager: Arc<LocalSessionManager>, max: u32) -> Self {
        Self {
            manager,
            max: max as usize,
            opening: tokio::sync::Mutex::new(()),
        }
    }
}

pub async fn limit(State(sessions): State<Arc<LegacySessions>>, request: Request, next: Next) -> Response {
    if request.method() == Method::DELETE {
        return ended(next.run(request).await);
    }
    let Some(id) = opening_id(&request) else {
        return next.run(request).await;
    };
    // rmcp adds the session to its table before it answers the initialize.
    let _one_at_a_time = sessions.opening.lock().await;
    let open = sessions.manager.sessions.read().await.len();
    if open >= sessions.max {
        metrics::http_request_refused("session_limit");
        tracing::info!(open, "refused a new legacy session: the session limit is reached");
        let message = format!(
            "this server has {open} sessions open (MCP_HTTP_MAX_LEGACY_SESSIONS); end yours with DELETE when done, \
             retry later, or use protocol version 2026-07-28, which needs no session"
        );
        return busy(RpcError::new(StatusCode::SERVICE_UNAVAILABLE, SERVER_BUSY, id, message));
    }
    next.run(request).await
}

/// The id of an `initialize` that would start a session.
fn opening_id(request: &Request) -> Option<Value> {
    let message = request.extensions().get::<RpcMessage>()?;
    let opens = request.method() == Method::POST
        && !request.headers().contains_key(SESSION_ID)
        && message.method.as_deref() == Some(InitializeResultMethod::VALUE);
    opens.then(|| message.echoed_id())
}

/// 202 to a DELETE becomes 204: the session has ended, nothing is pending.
fn ended(response: Response) -> Response {
    if response.status() != StatusCode::ACCEPTED {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    parts.status = StatusCode::NO_CONTENT;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    Response::from_parts(parts, Body::empty())
}
