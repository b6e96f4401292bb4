//! The dynamic-mcp registry: it stores dynamic tool definitions (in a file,
//! or in PostgreSQL shared by several replicas), enforces their rules (names,
//! sizes, revisions, the tool limit), keeps every revision (for rollback and
//! restore) and idempotency keys, writes every change durably before
//! answering, and announces each change on a feed that frontends watch. It
//! never runs code; that is the executor's job.

mod change;
pub mod config;
mod error;
mod feed;
mod history;
mod idempotency;
mod quoting;
mod readiness;
mod record;
pub mod rules;
mod service;
mod store;
mod wire;

use std::sync::Arc;

use anyhow::Context;
use dynamic_mcp_common::shutdown;
use dynamic_mcp_proto::v1::registry_server::RegistryServer;
use tokio_util::sync::CancellationToken;

use crate::config::{Backend, RegistryConfig};
use crate::service::RegistryService;
use crate::store::ToolStore;
use crate::store::file::FileStore;
use crate::store::postgres::PgStore;

/// Opens the store, then serves gRPC (with health) until asked to stop.
pub async fn serve(config: RegistryConfig) -> anyhow::Result<()> {
    let internal_auth = config.internal_auth.load()?;
    let retention = config.retention();
    let store: Arc<dyn ToolStore> = match config.backend {
        Backend::File => Arc::new(
            FileStore::open(&config.store, config.max_tools as usize, retention)
                .context("cannot open the tool store")?,
        ),
        Backend::Postgres => Arc::new(
            PgStore::open(&config.postgres, config.max_tools as usize, retention)
                .await
                .context("cannot open the tool database")?,
        ),
    };
    let incoming = config.listen.bind().await?;
    let listening = incoming
        .local_tcp_addr()
        .map_or_else(|| config.listen.to_string(), |addr| addr.to_string());

    let (health, health_service) = tonic_health::server::health_reporter();
    let stopping = CancellationToken::new();
    readiness::start(Arc::clone(&store), health, stopping.clone()).await;
    let registry = RegistryServer::new(RegistryService::new(store, stopping.clone()));

    tracing::info!(listen = %listening, "registry listening");
    let exit_with_parent = config.exit_with_parent;
    let shutdown = async move {
        shutdown::requested(exit_with_parent).await;
        stopping.cancel();
    };
    internal_auth
        .server(&config.listen)?
        .add_service(health_service)
        .add_service(registry)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .context("the gRPC server failed")?;
    tracing::info!("registry stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn serve_can_be_spawned() {
        fn spawnable<F: Future + Send + 'static>(_: F) {}
        let config = crate::config::RegistryConfig::try_parse_from(["dynamic-mcp-registry"]).unwrap();
        // Built, never run: this only has to compile.
        spawnable(super::serve(config));
    }
}
