//! Streamable HTTP: the MCP endpoint, liveness and readiness probes,
//! Prometheus metrics and (in JWT mode) the protected resource metadata.
//!
//! Connections are accepted and held to their limits by [`serve`]. Layers,
//! outermost first: request id and security headers ([`headers_and_host`]), the
//! Host check, then — on the MCP endpoint only — the bearer-token check
//! ([`bearer_auth`]), the body limit and read timeout ([`body_limit`]),
//! JSON-RPC errors for malformed requests ([`jsonrpc_errors`]), the cap on
//! long-lived streams ([`streams`]) and on legacy sessions
//! ([`legacy_sessions`]). rmcp itself checks Host and Origin again on the
//! MCP endpoint.

pub mod bearer_auth;
pub mod body_limit;
pub mod headers_and_host;
mod held;
pub mod jsonrpc_errors;
pub mod jwt_mode;
pub mod legacy_sessions;
pub mod resource_metadata;
pub mod serve;
pub mod streams;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use self::body_limit::BodyReadTimeout;
use self::headers_and_host::AllowedHosts;
use self::jwt_mode::JwtEndpoint;
use self::legacy_sessions::LegacySessions;
use self::serve::ConnectionLimits;
use self::streams::StreamSlots;
use crate::clients::Services;
use crate::config::{AuthMode, FrontendConfig};
use crate::links::Service;
use crate::metrics;
use crate::server::Frontend;

/// How long /readyz waits for each service's health check.
const READY_CHECK_WITHIN: Duration = Duration::from_secs(1);

/// Serves until `stop` fires, then finishes open requests.
pub async fn serve(
    config: &FrontendConfig,
    frontend: Frontend,
    services: Services,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    let address = listener.local_addr()?;
    let jwt = match config.jwt.mode {
        AuthMode::None => None,
        AuthMode::Jwt => Some(
            jwt_mode::start(
                &config.jwt,
                &config.host,
                address,
                &config.path,
                frontend.state().audit.clone(),
                Arc::clone(&frontend.state().access.failed_auth),
                stop.child_token(),
            )
            .await?,
        ),
    };
    let upkeep = metrics::spawn_upkeep(stop.child_token());
    let limits = ConnectionLimits {
        max_connections: config.http_limits.max_connections,
        header_read_timeout: Duration::from_millis(config.http_limits.header_read_timeout_ms),
        idle_timeout: Duration::from_millis(config.http_limits.idle_timeout_ms),
    };
    serve::warn_if_files_run_out(limits.max_connections);
    tracing::info!("serving MCP at http://{address}{}", config.path);
    let app = router(config, frontend, services, jwt, stop.child_token());
    serve::serve(listener, app, limits, stop).await;
    upkeep.abort();
    Ok(())
}

/// The layers of the MCP endpoint between the bearer check and rmcp.
struct Edge {
    body_read_timeout: Duration,
    streams: StreamSlots,
    /// With legacy sessions on: their cap.
    legacy_sessions: Option<Arc<LegacySessions>>,
}

impl Edge {
    /// `mcp` (rmcp's service, nested at the endpoint) inside these layers,
    /// outermost first: body limit, JSON-RPC checks, stream cap, sessions.
    fn wrap(&self, mcp: Router) -> Router {
        let mut mcp = mcp;
        if let Some(sessions) = &self.legacy_sessions {
            mcp = mcp.layer(middleware::from_fn_with_state(
                Arc::clone(sessions),
                legacy_sessions::limit,
            ));
        }
        mcp.layer(middleware::from_fn_with_state(self.streams.clone(), streams::limit))
            .layer(middleware::from_fn(jsonrpc_errors::check))
            .layer(middleware::from_fn_with_state(
                BodyReadTimeout(self.body_read_timeout),
                body_limit::limit,
            ))
    }
}

pub fn router(
    config: &FrontendConfig,
    frontend: Frontend,
    services: Services,
    jwt: Option<JwtEndpoint>,
    stop: CancellationToken,
) -> Router {
    let hosts = listed(&config.allowed_hosts);
    let mut mcp_config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(config.http_legacy_sessions)
        .with_allowed_hosts(hosts.clone())
        .with_max_request_body_bytes(body_limit::MAX_REQUEST_BODY_BYTES)
        .with_cancellation_token(stop);
    let origins = listed(&config.allowed_origins);
    if !origins.is_empty() {
        mcp_config = mcp_config.with_allowed_origins(origins);
    }
    let sessions = Arc::new(LocalSessionManager::default());
    let edge = Edge {
        body_read_timeout: Duration::from_millis(config.http_limits.body_read_timeout_ms),
        streams: StreamSlots::new(config.http_limits.max_streams),
        legacy_sessions: config.http_legacy_sessions.then(|| {
            Arc::new(LegacySessions::new(
                Arc::clone(&sessions),
                config.http_limits.max_legacy_sessions,
            ))
        }),
    };
    let mcp = StreamableHttpService::new(move || Ok(frontend.clone()), sessions, mcp_config);
    let mut mcp = edge.wrap(Router::new().nest_service(&config.path, mcp));
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(services)
        .route("/metrics", get(prometheus));
    if let Some(jwt) = jwt {
        mcp = mcp.layer(middleware::from_fn_with_state(jwt.auth, bearer_auth::require_bearer));
        for path in resource_metadata::routes(&config.path, &jwt.resource) {
            app = app.route(&path, get(resource_metadata::serve).with_state(jwt.metadata.clone()));
        }
    }
    let app = app.merge(mcp).layer(middleware::from_fn_with_state(
        AllowedHosts(Arc::new(hosts)),
        headers_and_host::check_host,
    ));
    headers_and_host::harden(app)
}

/// An empty variable (MCP_ALLOWED_ORIGINS=) yields one empty entry.
fn listed(values: &[String]) -> Vec<String> {
    values.iter().filter(|v| !v.is_empty()).cloned().collect()
}

/// Alive as long as the process answers.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the registry and at least one executor pass a health check;
/// says how many of the executors are in rotation.
async fn readyz(State(services): State<Services>) -> (StatusCode, Json<Value>) {
    let (registry, executor) = tokio::join!(
        services.check(Service::Registry, READY_CHECK_WITHIN),
        services.check(Service::Executor, READY_CHECK_WITHIN),
    );
    let failed: serde_json::Map<String, Value> = [(Service::Registry, registry), (Service::Executor, executor)]
        .into_iter()
        .filter_map(|(service, check)| check.err().map(|why| (service.to_string(), json!(why))))
        .collect();
    let executors = json!({
        "configured": services.executors.configured(),
        "inRotation": services.executors.in_rotation().len(),
    });
    if failed.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ready", "executors": executors})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "failed": failed, "executors": executors})),
        )
    }
}

/// The Prometheus text exposition (not behind the bearer check: scrapers
/// reach it like the probes; keep it on a private network).
async fn prometheus() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics::render(),
    )
}
