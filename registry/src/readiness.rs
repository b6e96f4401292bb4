//! Readiness: the gRPC health status follows whether the store can serve, so
//! load balancers stop routing to a registry whose database is down and
//! route to it again once it is back, without a restart.

use std::sync::Arc;
use std::time::Duration;

use dynamic_mcp_common::health_watch::HealthWatch;
use dynamic_mcp_common::periodic::Ticks;
use dynamic_mcp_proto::v1::registry_server::RegistryServer;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic_health::server::HealthReporter;

use crate::service::RegistryService;
use crate::store::ToolStore;

const CHECK_EVERY: Duration = Duration::from_secs(1);
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Reports SERVING (the store has just opened), then checks the store every
/// second in the background until `stopping` fires.
pub async fn start(store: Arc<dyn ToolStore>, health: HealthReporter, stopping: CancellationToken) {
    let watch = HealthWatch {
        reporter: health,
        // The registry service and the whole server ("") share one status.
        services: &["", <RegistryServer<RegistryService> as NamedService>::NAME],
        down: "the tool store is not ready",
        up: "the tool store is ready again",
    };
    watch
        .start(true, Ticks::new(CHECK_EVERY, stopping), move || {
            let store = Arc::clone(&store);
            async move { check(store.as_ref()).await }
        })
        .await;
}

async fn check(store: &dyn ToolStore) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, store.check_ready()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    }
}
