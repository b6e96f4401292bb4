//! The dynamic-mcp MCP server. It serves MCP over stdio or Streamable HTTP,
//! lists built-in tools plus the dynamic tools the registry holds, and runs
//! dynamic tools through the executor. It keeps no state of its own and never
//! touches Docker; when no registry or executor URL is given, it starts those
//! services itself.

pub mod catalog;
pub mod clients;
pub mod config;
pub mod error;
pub mod http;
pub mod local_services;
pub mod notify;
pub mod server;
pub mod tools;

use std::time::{Duration, Instant};

use dynamic_mcp_common::shutdown;
use rmcp::ServiceExt;
use rmcp::service::ServerInitializeError;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::clients::Services;
use crate::config::{FrontendConfig, Transport};
use crate::local_services::LocalServices;
use crate::notify::LegacyPeers;
use crate::server::{Frontend, ServerState};

/// How long startup waits for the registry's first catalog snapshot.
const FIRST_SNAPSHOT_WITHIN: Duration = Duration::from_secs(5);

/// Runs the server until the client goes away (stdio) or a signal arrives.
pub async fn run(config: FrontendConfig) -> anyhow::Result<()> {
    let (local_services, urls) = LocalServices::start(config.registry_url.clone(), config.executor_url.clone()).await?;
    let stop = CancellationToken::new();
    let services = Services::connect(&urls.registry, &urls.executor);
    let catalog = Catalog::new(services.registry.clone());
    let follower = catalog.spawn_follower(stop.clone());
    if !catalog.wait_until_synced(FIRST_SNAPSHOT_WITHIN).await {
        tracing::warn!(registry = %urls.registry, "no tool catalog from the registry yet; dynamic tools appear once it answers");
    }
    let legacy_peers = LegacyPeers::default();
    let fan_out = legacy_peers.spawn_fan_out(&catalog, stop.clone());
    let frontend = Frontend::new(ServerState {
        services: services.clone(),
        catalog,
        legacy_peers,
        started: Instant::now(),
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
    let _ = tokio::join!(follower, fan_out);
    local_services.shutdown().await;
    served
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
