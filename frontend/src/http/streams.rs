//! Long-lived response streams — a 2026-07-28 `subscriptions/listen`, a
//! legacy session's GET stream — each hold a slot under MCP_HTTP_MAX_STREAMS
//! for as long as they are open; one past the cap is answered 503. They are
//! requests in progress, so the idle timeout never closes their connection
//! (see [`super::serve`]), which is why they need a cap of their own.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::model::{ConstString, SubscriptionsListenRequestMethod};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::held;
use super::jsonrpc_errors::{RpcError, RpcMessage, SERVER_BUSY};
use crate::metrics;

/// The slots of open streams.
#[derive(Clone)]
pub struct StreamSlots {
    slots: Arc<Semaphore>,
    max: u32,
}

impl StreamSlots {
    pub fn new(max: u32) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max as usize)),
            max,
        }
    }
}

pub async fn limit(State(streams): State<StreamSlots>, request: Request, next: Next) -> Response {
    if !opens_a_stream(&request) {
        return next.run(request).await;
    }
    match Arc::clone(&streams.slots).try_acquire_owned() {
        Ok(slot) => held::until_sent(next.run(request).await, slot),
        Err(_) => {
            metrics::http_request_refused("stream_limit");
            let id = request
                .extensions()
                .get::<RpcMessage>()
                .map_or(Value::Null, RpcMessage::echoed_id);
            let message = format!(
                "this server has {} long-lived streams open (MCP_HTTP_MAX_STREAMS); close one or retry later",
                streams.max
            );
            busy(RpcError::new(StatusCode::SERVICE_UNAVAILABLE, SERVER_BUSY, id, message))
        }
    }
}

/// A 503 answer that tells the client when to retry.
pub fn busy(error: RpcError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

fn opens_a_stream(request: &Request) -> bool {
    request.method() == Method::GET
        || request
            .extensions()
            .get::<RpcMessage>()
            .is_some_and(|m| m.method.as_deref() == Some(SubscriptionsListenRequestMethod::VALUE))
}
