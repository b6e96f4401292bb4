//! Removes this executor's containers that nobody will remove otherwise:
//! leftovers of a crash (at start) and runs still going (at shutdown).
//! Only containers labelled with OUR executor id are touched, so several
//! executors can share one Docker engine.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;

use crate::container::labels;
use crate::container::lease::remove;

/// Removes every container labelled as managed by `executor_id`, running or
/// not. Returns how many there were; failures are logged, not fatal.
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
        futures::future::join_all(ids.iter().map(|id| remove(docker, id))).await;
    }
    ids.len()
}
