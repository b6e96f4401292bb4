//! What the executor says about its run policy and limits (allowed images,
//! timeouts, output and dependency caps), for the authoring prompt and the
//! built-in tools' schemas. Asked for at startup and then every
//! [`FRESH_FOR`], so an executor restarted with other settings is described
//! truly; until it answers, the common defaults stand.
//!
//! The built-in schemas state the executor's limits, so a change of them is
//! a change of tools/list: the watch announces it as one (list_changed).
//! tools/list itself never waits for the executor: it reads what is known.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use dynamic_mcp_common::limits;
use dynamic_mcp_proto::v1::{DescribeSandboxRequest, SandboxDescription};
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::executors::Executors;
use crate::live_limits::ToolLimits;

const FRESH_FOR: Duration = Duration::from_secs(30);
const ASK_WITHIN: Duration = Duration::from_secs(2);

/// The last description an executor gave, and when.
type Known = Option<(Instant, Arc<SandboxDescription>)>;

/// Cheap to clone; clones share what is known.
#[derive(Clone, Default)]
pub struct SandboxFacts {
    known: Arc<Mutex<Known>>,
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
        match self.ask(executors).await {
            Some(facts) => facts,
            None => known.map_or_else(|| Arc::new(defaults()), |(_, facts)| facts),
        }
    }

    /// The limits the built-in schemas state: the executor's last answer,
    /// or common's ceilings while it has given none.
    pub fn limits(&self) -> ToolLimits {
        self.lock()
            .as_ref()
            .map_or(ToolLimits::CEILINGS, |(_, facts)| ToolLimits::of(facts))
    }

    /// Asks now and then until `stop`; announces on `catalog` each change of
    /// the limits the built-in schemas state.
    pub fn spawn_watch(
        &self,
        executors: Executors,
        catalog: Catalog,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let facts = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(FRESH_FOR) => {}
                    () = stop.cancelled() => return,
                }
                facts.refresh(&executors, &catalog).await;
            }
        })
    }

    /// Asks once (within [`ASK_WITHIN`]); announces a change of the limits.
    pub async fn refresh(&self, executors: &Executors, catalog: &Catalog) {
        let before = self.limits();
        if self.ask(executors).await.is_some() && self.limits() != before {
            tracing::info!(limits = ?self.limits(), "the executor's limits changed; announcing the new tool list");
            catalog.announce_list_changed();
        }
    }

    async fn ask(&self, executors: &Executors) -> Option<Arc<SandboxDescription>> {
        let asking = executors.balanced(DescribeSandboxRequest {}, |mut executor, request| async move {
            executor.describe_sandbox(request).await
        });
        match tokio::time::timeout(ASK_WITHIN, asking).await {
            Ok(Ok(answer)) => {
                let facts = Arc::new(answer.into_inner());
                *self.lock() = Some((Instant::now(), Arc::clone(&facts)));
                Some(facts)
            }
            _ => {
                tracing::debug!("the executor did not describe its sandbox; using what is known");
                None
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
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
