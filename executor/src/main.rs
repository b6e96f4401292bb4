//! `dynamic-mcp-executor`: settings (egress included) → Docker → clean up leftovers → warm
//! the pool (unless turned off) → serve gRPC (with a health status that follows Docker,
//! and idle sessions and per-tool containers expiring) until asked to stop → remove the
//! pool, per-tool containers, sessions and leftovers.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use dynamic_mcp_common::{shutdown, telemetry};
use dynamic_mcp_executor::config::ExecutorConfig;
use dynamic_mcp_executor::container::cap::ContainerCap;
use dynamic_mcp_executor::container::pool::WarmPool;
use dynamic_mcp_executor::container::source::{ColdStart, ContainerSource};
use dynamic_mcp_executor::deps::DepsCache;
use dynamic_mcp_executor::docker::{self, Engine};
use dynamic_mcp_executor::egress::Egress;
use dynamic_mcp_executor::outcome::Judge;
use dynamic_mcp_executor::per_tool::{self, PerTool};
use dynamic_mcp_executor::run::{self, Runner};
use dynamic_mcp_executor::service::ExecutorService;
use dynamic_mcp_executor::session::{self, Sessions};
use dynamic_mcp_executor::socket_dir::SocketDirs;
use dynamic_mcp_executor::{health, reaper};
use dynamic_mcp_proto::v1::executor_server::ExecutorServer;
use tokio_util::sync::CancellationToken;

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
    let internal_auth = config.internal_auth.load()?;
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

    let egress = Arc::new(Egress::new(&config.egress)?);
    let socket_dirs = SocketDirs::prepare(&config.egress.socket_dir, config.egress.socket_host_dir.as_deref(), &id)?;
    let per_tool_settings = config.per_tool_settings().map_err(anyhow::Error::msg)?;
    let limits = config.limits();
    // One source, one cap: runs, sessions and installs all count against it.
    let cold = Arc::new(ColdStart::new(
        Arc::clone(&engine),
        ContainerCap::new(config.max_containers),
        limits.clone(),
        id.clone(),
        socket_dirs.clone(),
    ));
    let pool = config
        .pool_settings()
        .map_err(anyhow::Error::msg)?
        .map(|settings| Arc::new(WarmPool::new(Arc::clone(&cold), settings)));
    let source: Arc<dyn ContainerSource> = match &pool {
        Some(pool) => Arc::clone(pool) as Arc<dyn ContainerSource>,
        None => Arc::clone(&cold) as Arc<dyn ContainerSource>,
    };
    let pool_keeper = pool.as_ref().map(|pool| {
        if let Some(default_image) = config.allowed_images.0.first() {
            pool.pin(&run::container_spec(default_image, None, &limits.user));
        }
        let pool = Arc::clone(pool);
        tokio::spawn(async move { pool.keep_warm().await })
    });
    let deps = Arc::new(DepsCache::new(
        Arc::clone(&engine),
        Arc::clone(&source),
        config.install_settings(),
    ));
    let judge = Judge::new(config.max_output_bytes as usize, &limits);
    let per_tool = Arc::new(PerTool::new(cold, judge.clone(), limits.user, per_tool_settings));
    let per_tool_sweeper = tokio::spawn(per_tool::retire_idle(Arc::clone(&per_tool)));
    let runner = Arc::new(Runner::new(
        config.policy(),
        Arc::clone(&egress),
        Arc::clone(&source),
        Arc::clone(&deps),
        judge.clone(),
        limits.user,
        Arc::clone(&per_tool),
    ));
    let sessions = Arc::new(Sessions::new(
        id.clone(),
        config.session_settings(),
        config.policy(),
        Arc::clone(&egress),
        source,
        deps,
        judge,
    ));
    let sweeper = tokio::spawn(session::expire_idle(Arc::clone(&sessions)));

    let (health, health_service) = tonic_health::server::health_reporter();
    let stop_pinging = CancellationToken::new();
    health::watch_docker(Arc::clone(&engine), health, health::PING_EVERY, stop_pinging.clone()).await;

    let incoming = config.listen.bind().await?;
    tracing::info!(listen = %config.listen, executor_id = %id, "executor listening");
    // Stop sessions and runs first on shutdown: the server waits for open calls to end.
    let stop = async {
        shutdown::requested(config.exit_with_parent).await;
        sweeper.abort();
        per_tool_sweeper.abort();
        per_tool.close().await;
        if let Some(keeper) = &pool_keeper {
            keeper.abort();
        }
        if let Some(pool) = &pool {
            pool.close().await;
        }
        sessions.stop_all().await;
        if let Some(docker) = engine.connected() {
            reaper::remove_ours(docker, &id, "still running at shutdown").await;
        }
    };
    internal_auth
        .server(&config.listen)?
        .add_service(health_service)
        .add_service(ExecutorServer::new(ExecutorService::new(
            runner,
            Arc::clone(&sessions),
            config.description(),
        )))
        .serve_with_incoming_shutdown(incoming, stop)
        .await
        .context("the gRPC server failed")?;
    stop_pinging.cancel();

    if let Some(docker) = engine.connected() {
        reaper::remove_ours(docker, &id, "still there after shutdown").await;
    }
    socket_dirs.close();
    tracing::info!("executor stopped");
    Ok(())
}
