//! The dynamic-mcp MCP server. It serves MCP over stdio or Streamable HTTP,
//! lists built-in tools plus the dynamic tools the registry holds, and runs
//! dynamic tools through the executor. It keeps no state of its own and never
//! touches Docker; when no registry or executor URL is given, it starts those
//! services itself. Every tool call passes one process-wide guard and the
//! access rules (admin token, JWT scopes, read-only), and privileged or
//! runtime actions are written to the audit log.

pub mod access;
pub mod audit;
pub mod auth;
mod call_context;
mod call_pipeline;
pub mod catalog;
pub mod clients;
pub mod config;
mod egress;
mod error;
pub mod executors;
pub mod guard;
pub mod http;
pub mod links;
mod live_limits;
mod local_services;
mod metrics;
pub mod notify;
mod progress;
mod prompts;
mod sandbox_facts;
pub mod server;
pub mod state;
mod tools;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dynamic_mcp_common::shutdown;
use rmcp::ServiceExt;
use rmcp::service::ServerInitializeError;
use tokio_util::sync::CancellationToken;

use crate::access::AccessPolicy;
use crate::audit::AuditLog;
use crate::auth::admin_token::AdminToken;
use crate::auth::failed_auth::{Backoff, FailedAuth};
use crate::catalog::Catalog;
use crate::clients::Services;
use crate::config::{AuthMode, FrontendConfig, Transport};
use crate::guard::{Guard, GuardLimits};
use crate::local_services::LocalServices;
use crate::notify::LegacyPeers;
use crate::sandbox_facts::SandboxFacts;
use crate::server::Frontend;
use crate::state::ServerState;

/// How long startup waits for the registry's first catalog snapshot.
const FIRST_SNAPSHOT_WITHIN: Duration = Duration::from_secs(5);

/// Runs the server until the client goes away (stdio) or a signal arrives.
pub async fn run(config: FrontendConfig) -> anyhow::Result<()> {
    metrics::handle();
    let access = access_policy(&config)?;
    let remote_auth = config.internal_auth.load()?;
    let audit = AuditLog::start(&config.audit)?;
    let guard = Guard::new(GuardLimits {
        max_concurrency: config.guard.max_concurrency,
        max_calls_per_window: config.guard.max_calls_per_window,
        window_ms: config.guard.rate_window_ms,
    });

    let (local_services, links) =
        LocalServices::start(config.registry_url.clone(), &config.executor_urls, &remote_auth).await?;
    let stop = CancellationToken::new();
    let services = Services::connect(
        &links.registry,
        &links.executors,
        config.internal_tls_server_name.as_deref(),
    )?;
    let catalog = Catalog::new(services.registry.clone());
    let follower = catalog.spawn_follower(stop.clone());
    // The built-in schemas state the executor's limits: learn them before serving.
    let sandbox = SandboxFacts::default();
    let (synced, ()) = tokio::join!(
        catalog.wait_until_synced(FIRST_SNAPSHOT_WITHIN),
        sandbox.refresh(&services.executors, &catalog)
    );
    if !synced {
        tracing::warn!(registry = %links.registry.url, "no tool catalog from the registry yet; dynamic tools appear once it answers");
    }
    let sandbox_watch = sandbox.spawn_watch(services.executors.clone(), catalog.clone(), stop.clone());
    let legacy_peers = LegacyPeers::default();
    let fan_out = legacy_peers.spawn_fan_out(&catalog, stop.clone());
    let frontend = Frontend::new(ServerState {
        services: services.clone(),
        catalog,
        legacy_peers,
        guard,
        access,
        audit: audit.clone(),
        started: Instant::now(),
        sandbox,
    });

    let served = match config.transport {
        Transport::Stdio => serve_stdio(frontend).await,
        Transport::Http => {
            let http_stop = stop.clone();
            tokio::spawn(async move {
                shutdown::signal_received().await;
                http_stop.cancel();
            });
            http::serve(&config, frontend, services, stop.clone()).await
        }
    };
    stop.cancel();
    let _ = tokio::join!(follower, fan_out, sandbox_watch);
    local_services.shutdown().await;
    audit.close().await;
    served
}

/// The access rules: the admin token, the admin scope (JWT over HTTP only)
/// and read-only mode. Fails early on unusable settings.
fn access_policy(config: &FrontendConfig) -> anyhow::Result<AccessPolicy> {
    let jwt = config.jwt.mode == AuthMode::Jwt;
    match config.transport {
        Transport::Http if jwt => {
            http::jwt_mode::check_settings(&config.jwt)?;
        }
        Transport::Stdio if jwt => tracing::warn!(
            "MCP_AUTH_MODE=jwt applies to HTTP only; over stdio the caller is whoever started this process"
        ),
        _ => {}
    }
    let admin_scope = (jwt && config.transport == Transport::Http && !config.jwt.admin_scope.is_empty())
        .then(|| config.jwt.admin_scope.clone());
    let policy = AccessPolicy {
        admin_token: AdminToken::configured(config.admin_token_file.as_deref())?,
        admin_scope,
        read_only: config.read_only,
        failed_auth: Arc::new(FailedAuth::new(Backoff {
            failures_before: config.failed_auth.failures_before_backoff,
            base: Duration::from_millis(config.failed_auth.backoff_base_ms),
            max: Duration::from_millis(config.failed_auth.backoff_max_ms),
        })),
    };
    if policy.admin_token.is_none() && policy.admin_scope.is_none() {
        tracing::info!("no admin token set: every client may manage dynamic tools");
    }
    if policy.read_only {
        tracing::info!("read-only: dynamic tools cannot be created, changed or deleted");
    }
    Ok(policy)
}

/// Serves one client on stdin/stdout until it closes stdin or a signal arrives.
async fn serve_stdio(frontend: Frontend) -> anyhow::Result<()> {
    let starting = tokio::select! {
        started = frontend.serve(rmcp::transport::stdio_pipes()) => started,
        () = shutdown::signal_received() => return Ok(()),
    };
    let running = match starting {
        Ok(running) => running,
        // The client left before sending anything: nothing to serve.
        Err(ServerInitializeError::ConnectionClosed(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let cancel = running.cancellation_token();
    tokio::select! {
        quit = running.waiting() => {
            tracing::info!(reason = ?quit?, "stdio client disconnected");
        }
        () = shutdown::signal_received() => cancel.cancel(),
    }
    Ok(())
}
