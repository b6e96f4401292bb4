//! What the executor says about its run policy and limits (allowed images,
//! timeouts, output and dependency caps), for the authoring prompt. Asked
//! for once and then now and then, so an executor restarted with other
//! settings is described truly; until it answers, the common defaults stand.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dynamic_mcp_common::limits;
use dynamic_mcp_proto::v1::{DescribeSandboxRequest, SandboxDescription};

use crate::executors::Executors;

const FRESH_FOR: Duration = Duration::from_secs(30);
const ASK_WITHIN: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct SandboxFacts {
    known: Mutex<Option<(Instant, Arc<SandboxDescription>)>>,
}

impl SandboxFacts {
    /// An executor's description, or the defaults when none can be asked.
    pub async fn get(&self, executors: &Executors) -> Arc<SandboxDescription> {
        let known = self.lock().clone();
        if let Some((at, facts)) = &known
            && at.elapsed() < FRESH_FOR
        {
            return Arc::clone(facts);
        }
        let asking = executors.balanced(DescribeSandboxRequest {}, |mut executor, request| async move {
            executor.describe_sandbox(request).await
        });
        match tokio::time::timeout(ASK_WITHIN, asking).await {
            Ok(Ok(answer)) => {
                let facts = Arc::new(answer.into_inner());
                *self.lock() = Some((Instant::now(), Arc::clone(&facts)));
                facts
            }
            _ => {
                tracing::debug!("the executor did not describe its sandbox; using what is known");
                known.map_or_else(|| Arc::new(defaults()), |(_, facts)| facts)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Arc<SandboxDescription>)>> {
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The executor's defaults, as common/ states them.
fn defaults() -> SandboxDescription {
    SandboxDescription {
        allowed_images: vec!["dynamic-mcp-sandbox:latest".into()],
        min_timeout_ms: limits::MIN_TIMEOUT_MS,
        max_timeout_ms: limits::MAX_TIMEOUT_MS_CEILING,
        default_timeout_ms: limits::DEFAULT_TIMEOUT_MS,
        max_output_bytes: 200_000,
        max_dependencies: u32::try_from(limits::MAX_DEPENDENCIES).unwrap_or(u32::MAX),
        blocked_packages: vec![],
        memory_limit: "512m".into(),
        cpu_limit: 1.0,
        executor_id: String::new(),
    }
}
