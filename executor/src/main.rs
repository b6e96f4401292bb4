//! `dynamic-mcp-executor`: settings → Docker → clean up leftovers → serve
//! gRPC until asked to stop → clean up again.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use dynamic_mcp_common::{shutdown, telemetry};
use dynamic_mcp_executor::config::ExecutorConfig;
use dynamic_mcp_executor::container::cap::ContainerCap;
use dynamic_mcp_executor::container::source::ColdStart;
use dynamic_mcp_executor::docker::{self, Engine};
use dynamic_mcp_executor::reaper;
use dynamic_mcp_executor::run::Runner;
use dynamic_mcp_executor::service::ExecutorService;
use dynamic_mcp_proto::v1::executor_server::ExecutorServer;

#[tokio::main]
async fn main() -> ExitCode {
    let config = ExecutorConfig::parse();
    telemetry::init(&config.log);
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: ExecutorConfig) -> anyhow::Result<()> {
    let id = config.executor_id.clone();
    let engine = Arc::new(Engine::default());
    match engine.docker().await {
        Ok(docker) => {
            reaper::remove_ours(docker, &id, "left over from an earlier run").await;
            if let Some(default_image) = config.allowed_images.0.first() {
                docker::warn_if_image_missing(docker, default_image).await;
            }
        }
        Err(e) => tracing::warn!("{e}; runs will fail until it is reachable (policy checks still work)"),
    }

    let limits = config.limits();
    let source = ColdStart::new(
        Arc::clone(&engine),
        ContainerCap::new(config.max_containers),
        limits.clone(),
        id.clone(),
    );
    let runner = Runner::new(
        config.policy(),
        Arc::new(source),
        config.max_output_bytes as usize,
        &limits,
    );
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ExecutorServer<ExecutorService>>().await;

    let incoming = config.listen.bind().await?;
    tracing::info!(listen = %config.listen, executor_id = %id, "executor listening");
    // Stop runs first on shutdown: the server waits for open streams to end.
    let stop = async {
        shutdown::requested(config.exit_with_parent).await;
        if let Some(docker) = engine.connected() {
            reaper::remove_ours(docker, &id, "still running at shutdown").await;
        }
    };
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(ExecutorServer::new(ExecutorService::new(Arc::new(runner))))
        .serve_with_incoming_shutdown(incoming, stop)
        .await
        .context("the gRPC server failed")?;

    if let Some(docker) = engine.connected() {
        reaper::remove_ours(docker, &id, "still there after shutdown").await;
    }
    tracing::info!("executor stopped");
    Ok(())
}
