//! Streamable HTTP: the MCP endpoint, liveness and readiness probes,
//! Prometheus metrics and (in JWT mode) the protected resource metadata.
//!
//! Layers, outermost first: request id and security headers
//! ([`hardening`]), the Host check, then — on the MCP endpoint only — the
//! bearer-token check ([`bearer_auth`]) and the body limit ([`body_limit`]).
//! rmcp itself checks Host and Origin again on the MCP endpoint.

pub mod bearer_auth;
pub mod body_limit;
pub mod hardening;
pub mod jwt_mode;
pub mod resource_metadata;

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

use self::hardening::AllowedHosts;
use self::jwt_mode::JwtEndpoint;
use crate::clients::{Service, Services};
use crate::config::{AuthMode, FrontendConfig};
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
                stop.child_token(),
            )
            .await?,
        ),
    };
    let upkeep = metrics::spawn_upkeep(stop.child_token());
    tracing::info!("serving MCP at http://{address}{}", config.path);
    let app = router(config, frontend, services, jwt, stop.child_token());
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await?;
    upkeep.abort();
    Ok(())
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
    let mcp = StreamableHttpService::new(
        move || Ok(frontend.clone()),
        LocalSessionManager::default().into(),
        mcp_config,
    );
    let mut mcp = Router::new()
        .nest_service(&config.path, mcp)
        .layer(middleware::from_fn(body_limit::limit));
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
        hardening::check_host,
    ));
    hardening::harden(app)
}

/// An empty variable (MCP_ALLOWED_ORIGINS=) yields one empty entry.
fn listed(values: &[String]) -> Vec<String> {
    values.iter().filter(|v| !v.is_empty()).cloned().collect()
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

/// The Prometheus text exposition (not behind the bearer check: scrapers
/// reach it like the probes; keep it on a private network).
async fn prometheus() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics::render(),
    )
}
