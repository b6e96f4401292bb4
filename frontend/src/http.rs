//! Streamable HTTP: the MCP endpoint plus liveness and readiness probes.
//! Cross-cutting HTTP concerns (auth, limits, metrics) go on [`router`] as layers.

use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::clients::{Service, Services};
use crate::config::FrontendConfig;
use crate::server::Frontend;

/// Room for a 200000-character tool even when every character is escaped.
const MAX_REQUEST_BODY_BYTES: usize = 4 << 20;
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
    tracing::info!("serving MCP at http://{address}{}", config.path);
    let app = router(config, frontend, services, stop.child_token());
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await?;
    Ok(())
}

pub fn router(config: &FrontendConfig, frontend: Frontend, services: Services, stop: CancellationToken) -> Router {
    // An empty variable (MCP_ALLOWED_ORIGINS=) yields one empty entry.
    let listed = |values: &[String]| values.iter().filter(|v| !v.is_empty()).cloned().collect::<Vec<_>>();
    let mut mcp_config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(config.http_legacy_sessions)
        .with_allowed_hosts(listed(&config.allowed_hosts))
        .with_max_request_body_bytes(MAX_REQUEST_BODY_BYTES)
        .with_cancellation_token(stop);
    let origins = listed(&config.allowed_origins);
    if !origins.is_empty() {
        mcp_config = mcp_config.with_allowed_origins(origins);
    }
    let mcp = StreamableHttpService::new(
        move || Ok(frontend.clone()),
        LocalSessionManager::default().into(),
        mcp_config,
    );
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(services)
        .nest_service(&config.path, mcp)
}

/// Alive as long as the process answers.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when both the registry and the executor pass a health check.
async fn readyz(State(services): State<Services>) -> (StatusCode, Json<Value>) {
    let (registry, executor) = tokio::join!(
        services.check(Service::Registry, READY_CHECK_WITHIN),
        services.check(Service::Executor, READY_CHECK_WITHIN),
    );
    let failed: serde_json::Map<String, Value> = [(Service::Registry, registry), (Service::Executor, executor)]
        .into_iter()
        .filter_map(|(service, check)| check.err().map(|why| (service.to_string(), json!(why))))
        .collect();
    if failed.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "failed": failed})),
        )
    }
}
