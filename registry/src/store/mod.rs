//! Where tool definitions live. Every backend enforces the same rules
//! (`rules.rs`), the same compare-and-set on revisions and the same change
//! feed, so the gRPC edge does not care which one it talks to.

pub mod file;
pub mod postgres;

use std::sync::Arc;

use async_trait::async_trait;
use dynamic_mcp_proto::v1 as pb;
use tokio::sync::broadcast;

use crate::error::RegistryError;
use crate::feed::ChangeEvent;
use crate::record::ToolRecord;

/// Every tool, sorted by name, as of `version`.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub tools: Vec<Arc<ToolRecord>>,
    pub version: u64,
}

/// The result of a write: the tool after it (for a delete: before it) and the
/// catalog version that includes it.
#[derive(Debug, Clone)]
pub struct Written {
    pub tool: Arc<ToolRecord>,
    pub catalog_version: u64,
}

/// A backend that stores tool definitions durably and announces each change.
///
/// A write that changes nothing (enabling an enabled tool, an empty patch)
/// returns the tool as it is, without a new revision or an event, so each
/// event is one real change.
#[async_trait]
pub trait ToolStore: Send + Sync + 'static {
    /// Every tool. Without `include_code` the records may leave their code
    /// out (a backend that has it at hand anyway may keep it).
    async fn catalog(&self, include_code: bool) -> Result<Catalog, RegistryError>;

    async fn get(&self, name: &str) -> Result<Arc<ToolRecord>, RegistryError>;

    async fn create(&self, spec: pb::ToolSpec) -> Result<Written, RegistryError>;

    async fn update(
        &self,
        name: String,
        patch: pb::ToolPatch,
        expected_revision: Option<u64>,
    ) -> Result<Written, RegistryError>;

    async fn delete(&self, name: String, expected_revision: Option<u64>) -> Result<Written, RegistryError>;

    async fn set_enabled(
        &self,
        name: String,
        enabled: bool,
        expected_revision: Option<u64>,
    ) -> Result<Written, RegistryError>;

    /// Change events from now on, in catalog-version order. Subscribe before
    /// reading the catalog so no change falls between the two.
    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent>;

    /// Whether the store can serve requests right now; readiness follows it.
    async fn check_ready(&self) -> Result<(), RegistryError>;
}

/// Refuses a write based on a revision the caller saw but that is no longer current.
pub fn check_revision(current: &ToolRecord, expected: Option<u64>) -> Result<(), RegistryError> {
    match expected {
        Some(expected) if expected != current.revision => Err(RegistryError::RevisionConflict {
            name: current.name.clone(),
            expected,
            current: current.revision,
        }),
        _ => Ok(()),
    }
}
