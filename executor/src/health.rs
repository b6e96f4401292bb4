//! gRPC health that tells the truth: the `dynamic_mcp.v1.Executor` service
//! is SERVING only while the Docker engine answers, so a frontend's
//! readiness check sees an executor that cannot run anything. The overall
//! status ("") stays SERVING while the process runs: policy checks still work.

use std::sync::Arc;
use std::time::Duration;

use dynamic_mcp_proto::v1::executor_server::ExecutorServer;
use tonic_health::server::HealthReporter;

use crate::docker::Engine;
use crate::service::ExecutorService;

/// How often the engine is pinged.
pub const PING_EVERY: Duration = Duration::from_secs(5);

/// Sets the executor's status from one ping; returns whether Docker answered.
pub async fn check_docker(engine: &Engine, reporter: &HealthReporter) -> bool {
    let up = engine.answers().await;
    if up {
        reporter.set_serving::<ExecutorServer<ExecutorService>>().await;
    } else {
        reporter.set_not_serving::<ExecutorServer<ExecutorService>>().await;
    }
    up
}

/// Pings the engine every `every`, logging when its state changes, until
/// the task is dropped.
pub async fn watch_docker(engine: Arc<Engine>, reporter: HealthReporter, mut was_up: bool, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let up = check_docker(&engine, &reporter).await;
        match (was_up, up) {
            (true, false) => tracing::warn!("the Docker engine stopped answering; health is NOT_SERVING"),
            (false, true) => tracing::info!("the Docker engine answers again; health is SERVING"),
            _ => {}
        }
        was_up = up;
    }
}
