//! gRPC health that tells the truth: the `dynamic_mcp.v1.Executor` service
//! is SERVING only while the Docker engine answers, so a frontend's
//! readiness check sees an executor that cannot run anything. The overall
//! status ("") stays SERVING while the process runs: policy checks still work.

use std::sync::Arc;
use std::time::Duration;

use dynamic_mcp_common::health_watch::HealthWatch;
use dynamic_mcp_common::periodic::Ticks;
use dynamic_mcp_proto::v1::executor_server::ExecutorServer;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic_health::server::HealthReporter;

use crate::docker::Engine;
use crate::service::ExecutorService;

/// How often the engine is pinged.
pub const PING_EVERY: Duration = Duration::from_secs(5);

/// Sets the executor's status from one ping now, then, in the background,
/// pings the engine every `every`, logging when its state changes, until
/// `stop`.
pub async fn watch_docker(engine: Arc<Engine>, reporter: HealthReporter, every: Duration, stop: CancellationToken) {
    let watch = HealthWatch {
        reporter,
        services: &[<ExecutorServer<ExecutorService> as NamedService>::NAME],
        down: "the Docker engine stopped answering",
        up: "the Docker engine answers again",
    };
    let up = ping(&engine).await.is_ok();
    watch
        .start(up, Ticks::new(every, stop), move || {
            let engine = Arc::clone(&engine);
            async move { ping(&engine).await }
        })
        .await;
}

async fn ping(engine: &Engine) -> Result<(), String> {
    engine.ping().await.map_err(|e| e.to_string())
}
