//! What every request handler shares, one of each per process: the links
//! to the registry and executor, the catalog, the guard, the access rules,
//! the audit log and what the executor said of its sandbox.

use std::sync::Arc;
use std::time::Instant;

use crate::access::AccessPolicy;
use crate::audit::AuditLog;
use crate::catalog::Catalog;
use crate::clients::Services;
use crate::guard::Guard;
use crate::notify::LegacyPeers;
use crate::sandbox_facts::SandboxFacts;

/// What every request handler shares: one of each per process.
pub struct ServerState {
    pub services: Services,
    pub catalog: Catalog,
    pub legacy_peers: LegacyPeers,
    pub guard: Arc<Guard>,
    pub access: AccessPolicy,
    pub audit: AuditLog,
    pub started: Instant,
    /// The executor's live policy and limits.
    pub sandbox: SandboxFacts,
}
