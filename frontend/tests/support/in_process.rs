//! The frontend's real HTTP router, in this test process, for requests sent
//! with `tower::ServiceExt::oneshot`: every layer and rmcp itself, with a
//! registry and an executor that are not there (calls that need them fail,
//! which is all these tests need of them).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use clap::Parser;
use dynamic_mcp::access::AccessPolicy;
use dynamic_mcp::audit::AuditLog;
use dynamic_mcp::auth::ClientAddr;
use dynamic_mcp::auth::admin_token::AdminToken;
use dynamic_mcp::auth::failed_auth::{Backoff, FailedAuth};
use dynamic_mcp::catalog::Catalog;
use dynamic_mcp::clients::Services;
use dynamic_mcp::config::FrontendConfig;
use dynamic_mcp::guard::{Guard, GuardLimits};
use dynamic_mcp::links::ServiceLink;
use dynamic_mcp::notify::LegacyPeers;
use dynamic_mcp::server::Frontend;
use dynamic_mcp::state::ServerState;
use dynamic_mcp_common::addr::ServiceUrl;
use dynamic_mcp_common::internal_auth::InternalAuth;
use http::{Request, Response};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub const MODERN: &str = "2026-07-28";

/// The router of a frontend started with `flags` (`--transport=http` is
/// implied), and with `admin_token` as its admin token.
pub fn router(flags: &[&str], admin_token: Option<&str>) -> Router {
    let args = ["dynamic-mcp", "--transport=http"]
        .into_iter()
        .chain(flags.iter().copied());
    let config = FrontendConfig::try_parse_from(args).expect("frontend flags");
    let absent = |name: &str| ServiceLink {
        url: ServiceUrl::Unix(std::env::temp_dir().join(format!("dynamic-mcp-absent-{name}.sock"))),
        auth: InternalAuth::default(),
    };
    let services = Services::connect(&absent("registry"), &[absent("executor")], None).expect("clients");
    let backoff = Backoff {
        failures_before: config.failed_auth.failures_before_backoff,
        base: Duration::from_millis(config.failed_auth.backoff_base_ms),
        max: Duration::from_millis(config.failed_auth.backoff_max_ms),
    };
    let frontend = Frontend::new(ServerState {
        services: services.clone(),
        catalog: Catalog::new(services.registry.clone()),
        legacy_peers: LegacyPeers::default(),
        guard: Guard::new(GuardLimits {
            max_concurrency: config.guard.max_concurrency,
            max_calls_per_window: config.guard.max_calls_per_window,
            window_ms: config.guard.rate_window_ms,
        }),
        access: AccessPolicy {
            admin_token: admin_token.map(AdminToken::new),
            admin_scope: None,
            read_only: false,
            failed_auth: Arc::new(FailedAuth::new(backoff)),
        },
        audit: AuditLog::disabled(),
        started: Instant::now(),
        sandbox: Default::default(),
    });
    dynamic_mcp::http::router(&config, frontend, services, None, CancellationToken::new())
}

/// A POST to /mcp as MCP clients send it, from `client`.
pub fn post(body: impl Into<Body>, headers: &[(&str, &str)], client: SocketAddr) -> Request<Body> {
    let mut request = Request::post("/mcp")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(body.into()).expect("a request");
    request.extensions_mut().insert(ClientAddr(client));
    request
}

/// Headers of a stateless 2026-07-28 request for `method` (and `name`).
pub fn modern_headers<'a>(method: &'a str, name: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![("mcp-protocol-version", MODERN), ("mcp-method", method)];
    if let Some(name) = name {
        headers.push(("mcp-name", name));
    }
    headers
}

/// `_meta` of a 2026-07-28 request.
pub fn modern_meta() -> Value {
    serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "edge-tests", "version": "1"},
    })
}

pub fn client(last_octet: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last_octet], 40_000))
}

/// Sends `request` and reads the whole answer.
pub async fn send(router: &Router, request: Request<Body>) -> (Response<()>, String) {
    let response = router.clone().oneshot(request).await.expect("the router never fails");
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("the body");
    (
        Response::from_parts(parts, ()),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// The JSON-RPC message in a JSON or SSE answer.
pub fn message(body: &str) -> Value {
    if body.trim_start().starts_with('{') {
        return serde_json::from_str(body).expect("a JSON answer");
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|m| m.get("id").is_some())
        .unwrap_or_else(|| panic!("no JSON-RPC answer in {body}"))
}
