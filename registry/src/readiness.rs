//! Readiness: the gRPC health status follows whether the store can serve, so
//! load balancers stop routing to a registry whose database is down and
//! route to it again once it is back, without a restart.

use std::sync::Arc;
use std::time::Duration;

use dynamic_mcp_proto::v1::registry_server::RegistryServer;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::service::RegistryService;
use crate::store::ToolStore;

const CHECK_EVERY: Duration = Duration::from_secs(1);
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Reports SERVING (the store has just opened), then checks the store every
/// second in the background until `stopping` fires.
pub async fn start(store: Arc<dyn ToolStore>, health: HealthReporter, stopping: CancellationToken) {
    set(&health, ServingStatus::Serving).await;
    tokio::spawn(track(store, health, stopping));
}

async fn track(store: Arc<dyn ToolStore>, health: HealthReporter, stopping: CancellationToken) {
    let mut serving = true;
    loop {
        let checked = match tokio::time::timeout(CHECK_TIMEOUT, store.check_ready()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
        };
        match (serving, checked) {
            (true, Err(why)) => {
                tracing::warn!(reason = %why, "the tool store is not ready; health is NOT_SERVING");
                set(&health, ServingStatus::NotServing).await;
                serving = false;
            }
            (false, Ok(())) => {
                tracing::info!("the tool store is ready again; health is SERVING");
                set(&health, ServingStatus::Serving).await;
                serving = true;
            }
            _ => {}
        }
        tokio::select! {
            () = tokio::time::sleep(CHECK_EVERY) => {}
            () = stopping.cancelled() => return,
        }
    }
}

/// The registry service and the whole server ("") share one status.
async fn set(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health
        .set_service_status(<RegistryServer<RegistryService> as NamedService>::NAME, status)
        .await;
}
