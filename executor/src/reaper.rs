//! Removes this executor's containers that nobody will remove otherwise:
//! leftovers of a crash (at start) and runs still going (at shutdown).
//! Only containers labelled with OUR executor id are touched, so several
//! executors can share one Docker engine.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, WaitContainerOptionsBuilder};
use futures::StreamExt;

use crate::container::labels;
use crate::container::lease::remove;

/// How long one removal may take before the reaper stops waiting for it.
const REMOVAL_WAIT: Duration = Duration::from_secs(10);

/// Removes every container labelled as managed by `executor_id`, running or
/// not, and waits until they are gone (also those whose removal someone else
/// started): the process may exit next. Returns how many there were;
/// failures are logged, not fatal.
pub async fn remove_ours(docker: &Docker, executor_id: &str, why: &str) -> usize {
    let filters = HashMap::from([(
        "label",
        vec![
            format!("{}=true", labels::MANAGED),
            format!("{}={executor_id}", labels::EXECUTOR),
        ],
    )]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let containers = match docker.list_containers(Some(options)).await {
        Ok(containers) => containers,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list this executor's containers to clean them up");
            return 0;
        }
    };
    let ids: Vec<String> = containers.into_iter().filter_map(|c| c.id).collect();
    if !ids.is_empty() {
        tracing::info!(count = ids.len(), why, "removing this executor's containers");
        futures::future::join_all(ids.iter().map(|id| async move {
            remove(docker, id).await;
            if tokio::time::timeout(REMOVAL_WAIT, removed(docker, id)).await.is_err() {
                tracing::warn!(container = %id, "a container is still being removed");
            }
        }))
        .await;
    }
    ids.len()
}

/// Returns once the container no longer exists (at once if it never did).
async fn removed(docker: &Docker, id: &str) {
    let options = WaitContainerOptionsBuilder::default().condition("removed").build();
    // Any answer, an error included (404: already gone), ends the wait.
    let _ = docker.wait_container(id, Some(options)).next().await;
}
