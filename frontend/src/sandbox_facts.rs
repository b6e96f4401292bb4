//! What the executor says about its run policy and limits (allowed images,
//! timeouts, output and dependency caps), for the authoring prompt and the
//! built-in tools' schemas. Asked for at startup and then every
//! [`ASK_EVERY`], so an executor restarted with other settings is described
//! truly; until it answers, the common defaults stand.
//!
//! The built-in schemas state the executor's limits, so a change of them is
//! a change of tools/list: the watch announces it as one (list_changed).
//! Neither tools/list nor the prompt waits for the executor once it has
//! answered: they read what is known.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use dynamic_mcp_common::limits;
use dynamic_mcp_proto::v1::{DescribeSandboxRequest, SandboxDescription};
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::executors::Executors;
use crate::live_limits::ToolLimits;

const ASK_EVERY: Duration = Duration::from_secs(30);
const ASK_WITHIN: Duration = Duration::from_secs(2);

/// Cheap to clone; clones share what is known.
#[derive(Clone, Default)]
pub struct SandboxFacts {
    /// The last description an executor gave.
    /// Read on every HTTP call (rmcp checks its headers against the
    /// tool's schema), written only when the executor answers.
    known: Arc<RwLock<Option<Arc<SandboxDescription>>>>,
}

impl SandboxFacts {
    /// The executor's last description; before any, one asked for now, or
    /// the defaults when none can be asked.
    pub async fn get(&self, executors: &Executors) -> Arc<SandboxDescription> {
        if let Some(facts) = self.read().clone() {
            return facts;
        }
        self.ask(executors).await.unwrap_or_else(|| Arc::new(defaults()))
    }

    /// The limits the built-in schemas state: the executor's last answer,
    /// or common's ceilings while it has given none.
    pub fn limits(&self) -> ToolLimits {
        self.read().as_deref().map_or(ToolLimits::CEILINGS, ToolLimits::of)
    }

    /// Asks every [`ASK_EVERY`] until `stop`.
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
                    () = tokio::time::sleep(ASK_EVERY) => {}
                    () = stop.cancelled() => return,
                }
                facts.refresh(&executors, &catalog).await;
            }
        })
    }

    /// Asks once (within [`ASK_WITHIN`]) and keeps the answer; announces on
    /// `catalog` a change of the limits the built-in schemas state.
    pub async fn refresh(&self, executors: &Executors, catalog: &Catalog) {
        let Some(facts) = self.ask(executors).await else {
            return;
        };
        let learned = if self.limits().live { "changed" } else { "are known" };
        if self.remember(facts) {
            tracing::info!(limits = ?self.limits(), "the executor's limits {learned}; announcing the tool list that states them");
            catalog.announce_list_changed();
        }
    }

    /// Keeps `facts`; whether the limits the built-in schemas state changed.
    fn remember(&self, facts: Arc<SandboxDescription>) -> bool {
        let before = self.limits();
        *self.known.write().unwrap_or_else(PoisonError::into_inner) = Some(facts);
        self.limits() != before
    }

    async fn ask(&self, executors: &Executors) -> Option<Arc<SandboxDescription>> {
        let asking = executors.balanced(DescribeSandboxRequest {}, |mut executor, request| async move {
            executor.describe_sandbox(request).await
        });
        match tokio::time::timeout(ASK_WITHIN, asking).await {
            Ok(Ok(answer)) => Some(Arc::new(answer.into_inner())),
            _ => {
                tracing::debug!("the executor did not describe its sandbox; using what is known");
                None
            }
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Option<Arc<SandboxDescription>>> {
        self.known.read().unwrap_or_else(PoisonError::into_inner)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_change_of_the_listed_limits_counts_as_a_change() {
        let facts = SandboxFacts::default();
        assert_eq!(facts.limits(), ToolLimits::CEILINGS);
        // The same numbers, but now the executor's own: the schemas say "on this server".
        assert!(facts.remember(Arc::new(defaults())));
        assert!(!facts.remember(Arc::new(defaults())));
        let more_memory = SandboxDescription {
            memory_limit: "1g".into(),
            ..defaults()
        };
        assert!(!facts.remember(Arc::new(more_memory)));
        let shorter = SandboxDescription {
            max_timeout_ms: 45_000,
            ..defaults()
        };
        assert!(facts.remember(Arc::new(shorter)));
        assert_eq!(facts.limits().max_timeout_ms, 45_000);
    }
}
