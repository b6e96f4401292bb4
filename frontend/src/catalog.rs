//! The live tool catalog, fed by the registry's `WatchChanges` stream.
//!
//! The stream starts with a snapshot and then sends one event per change, each
//! with a higher catalog version. [`Catalog::changed`] fires once per change
//! event, and for a snapshot only when it differs from what we had (e.g. after
//! the registry restarted), so clients get one `list_changed` per change.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dynamic_mcp_common::internal_auth::InternalChannel;
use dynamic_mcp_proto::v1::catalog_event::Event;
use dynamic_mcp_proto::v1::registry_client::RegistryClient;
use dynamic_mcp_proto::v1::{CatalogEvent, ChangeKind, GetToolRequest, ToolRecord, WatchChangesRequest};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::clients::Service;
use crate::metrics;

/// How long a writer waits for its own write to show up in the catalog.
const WAIT_FOR_WRITE: Duration = Duration::from_secs(2);
const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(200);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(10);
/// Tools whose code we keep; beyond this, an arbitrary entry makes room.
const CODE_CACHE_ENTRIES: usize = 256;
/// How long a call waits for the registry to confirm a tool the feed has not shown yet.
const REGISTRY_LOOKUP_WITHIN: Duration = Duration::from_secs(2);

/// What the frontend knows of the registry's catalog.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CatalogState {
    /// The catalog version of the last event applied.
    pub version: u64,
    /// Whether a snapshot has arrived since startup.
    pub synced: bool,
    /// Enabled and disabled tools without code, by name (so sorted).
    tools: BTreeMap<String, Arc<ToolRecord>>,
}

/// Whether an event changed what clients can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Changed,
    Unchanged,
}

impl CatalogState {
    pub fn apply(&mut self, event: CatalogEvent) -> Applied {
        match event.event {
            Some(Event::Snapshot(snapshot)) => {
                let tools: BTreeMap<_, _> = snapshot
                    .tools
                    .into_iter()
                    .map(|tool| (tool.name.clone(), Arc::new(without_code(tool))))
                    .collect();
                let changed = tools != self.tools;
                self.tools = tools;
                self.version = event.catalog_version;
                self.synced = true;
                if changed { Applied::Changed } else { Applied::Unchanged }
            }
            Some(Event::Change(change)) if event.catalog_version > self.version => {
                let deleted = change.kind() == ChangeKind::Deleted;
                let Some(tool) = change.tool else {
                    tracing::warn!(
                        version = event.catalog_version,
                        "registry sent a change without a tool; ignored"
                    );
                    return Applied::Unchanged;
                };
                if deleted {
                    self.tools.remove(&tool.name);
                } else {
                    self.tools.insert(tool.name.clone(), Arc::new(without_code(tool)));
                }
                self.version = event.catalog_version;
                Applied::Changed
            }
            // A change we already have (its version is not newer), or an empty event.
            Some(Event::Change(_)) | None => Applied::Unchanged,
        }
    }

    /// Enabled tools, sorted by name.
    pub fn enabled(&self) -> impl Iterator<Item = &Arc<ToolRecord>> {
        self.tools.values().filter(|tool| tool.enabled)
    }

    pub fn enabled_tool(&self, name: &str) -> Option<&Arc<ToolRecord>> {
        self.tools.get(name).filter(|tool| tool.enabled)
    }
}

fn without_code(mut tool: ToolRecord) -> ToolRecord {
    tool.code = String::new();
    tool
}

/// The shared catalog. Cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

struct Inner {
    registry: RegistryClient<InternalChannel>,
    state: watch::Sender<CatalogState>,
    changed: broadcast::Sender<()>,
    /// Full records (with code) by name; a hit must be the listed version.
    code: Mutex<HashMap<String, Arc<ToolRecord>>>,
}

impl Catalog {
    pub fn new(registry: RegistryClient<InternalChannel>) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry,
                state: watch::Sender::new(CatalogState::default()),
                changed: broadcast::Sender::new(64),
                code: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Follows the registry's change feed until `stop`, reconnecting with backoff.
    pub fn spawn_follower(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let catalog = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = catalog.follow() => {}
                () = stop.cancelled() => {}
            }
        })
    }

    async fn follow(&self) {
        let mut delay = MIN_RECONNECT_DELAY;
        loop {
            let why = match self.follow_once(&mut delay).await {
                Ok(()) => "the registry ended its change feed".to_owned(),
                Err(status) => {
                    metrics::backend_error(Service::Registry, status.code());
                    format!(
                        "lost the registry's change feed ({}: {})",
                        status.code(),
                        status.message()
                    )
                }
            };
            tracing::warn!("{why}; reconnecting in {} ms", delay.as_millis());
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RECONNECT_DELAY);
        }
    }

    async fn follow_once(&self, delay: &mut Duration) -> Result<(), Status> {
        let mut registry = self.inner.registry.clone();
        let mut events = registry.watch_changes(WatchChangesRequest {}).await?.into_inner();
        while let Some(event) = events.message().await? {
            *delay = MIN_RECONNECT_DELAY;
            self.apply(event);
        }
        Ok(())
    }

    /// Applies one event and announces it if clients can see the difference.
    pub fn apply(&self, event: CatalogEvent) {
        let mut applied = Applied::Unchanged;
        self.inner.state.send_modify(|state| applied = state.apply(event));
        if applied == Applied::Changed {
            let state = self.inner.state.borrow();
            tracing::debug!(version = state.version, "tool catalog changed");
            lock(&self.inner.code)
                .retain(|name, cached| state.tools.get(name).is_some_and(|t| same_version(t, cached)));
            // No receivers (nobody listening) is fine.
            let _ = self.inner.changed.send(());
        }
    }

    /// Fires once per catalog change.
    pub fn changed(&self) -> broadcast::Receiver<()> {
        self.inner.changed.subscribe()
    }

    /// Runs `f` on the current state; keep it short (it holds a read lock).
    pub fn read<T>(&self, f: impl FnOnce(&CatalogState) -> T) -> T {
        f(&self.inner.state.borrow())
    }

    /// Waits (briefly) until the catalog has caught up with `version`, so the
    /// frontend that made a write shows it in tools/list right away.
    pub async fn wait_for_version(&self, version: u64) {
        let mut state = self.inner.state.subscribe();
        let caught_up = tokio::time::timeout(WAIT_FOR_WRITE, state.wait_for(|s| s.version >= version)).await;
        if !matches!(caught_up, Ok(Ok(_))) {
            tracing::warn!(
                version,
                "the catalog did not reach the written version in time; tools/list may lag"
            );
        }
    }

    /// Waits up to `within` for the first snapshot; false if it did not come.
    pub async fn wait_until_synced(&self, within: Duration) -> bool {
        let mut state = self.inner.state.subscribe();
        matches!(
            tokio::time::timeout(within, state.wait_for(|s| s.synced)).await,
            Ok(Ok(_))
        )
    }

    /// The enabled tool called `name`. A name this replica's feed has not
    /// delivered yet (a tool just created through another replica) is looked
    /// up in the registry, so create-then-call works behind a load balancer.
    pub async fn find_enabled(&self, name: &str) -> Option<Arc<ToolRecord>> {
        if let Some(listed) = self.read(|c| c.enabled_tool(name).cloned()) {
            return Some(listed);
        }
        let request = GetToolRequest {
            name: name.to_owned(),
            revision: None,
        };
        let mut registry = self.inner.registry.clone();
        match tokio::time::timeout(REGISTRY_LOOKUP_WITHIN, registry.get(request)).await {
            Ok(Ok(found)) => Some(self.remember(found.into_inner())).filter(|tool| tool.enabled),
            Ok(Err(status)) if status.code() == tonic::Code::NotFound => None,
            Ok(Err(status)) => {
                tracing::warn!(tool = %name, code = ?status.code(), "registry look-up of an unlisted tool failed");
                None
            }
            Err(_) => {
                tracing::warn!(tool = %name, "registry look-up of an unlisted tool timed out");
                None
            }
        }
    }

    /// `listed` with its code. Fetched from the registry on first use and
    /// cached until the tool changes.
    pub async fn with_code(&self, listed: &ToolRecord) -> Result<Arc<ToolRecord>, Status> {
        if let Some(hit) = lock(&self.inner.code)
            .get(&listed.name)
            .filter(|t| same_version(t, listed))
        {
            return Ok(hit.clone());
        }
        let mut registry = self.inner.registry.clone();
        let request = GetToolRequest {
            name: listed.name.clone(),
            revision: None,
        };
        // If the tool changed meanwhile this is a newer version; run that one.
        Ok(self.remember(registry.get(request).await?.into_inner()))
    }

    /// Caches a full record (with code) for `with_code`.
    fn remember(&self, tool: ToolRecord) -> Arc<ToolRecord> {
        let tool = Arc::new(tool);
        let mut cache = lock(&self.inner.code);
        if cache.len() >= CODE_CACHE_ENTRIES
            && let Some(evicted) = cache.keys().next().cloned()
        {
            cache.remove(&evicted);
        }
        cache.insert(tool.name.clone(), tool.clone());
        tool
    }
}

/// Whether two records are the same version of the same tool. The revision
/// alone is not enough: a deleted and re-created tool starts again at 1.
fn same_version(a: &ToolRecord, b: &ToolRecord) -> bool {
    a.revision == b.revision && a.created_at == b.created_at && a.updated_at == b.updated_at
}

/// A poisoned cache lock only means a panic elsewhere; the map is still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use dynamic_mcp_common::addr::ServiceUrl;
    use dynamic_mcp_common::internal_auth::InternalAuth;
    use dynamic_mcp_proto::v1::{CatalogSnapshot, ToolChange};

    use super::*;

    fn tool(name: &str, revision: u64, enabled: bool) -> ToolRecord {
        ToolRecord {
            name: name.into(),
            description: format!("{name} r{revision}"),
            revision,
            enabled,
            code: "return 1;".into(),
            ..Default::default()
        }
    }

    fn snapshot(version: u64, tools: Vec<ToolRecord>) -> CatalogEvent {
        CatalogEvent {
            catalog_version: version,
            event: Some(Event::Snapshot(CatalogSnapshot { tools })),
        }
    }

    fn change(version: u64, kind: ChangeKind, tool: ToolRecord) -> CatalogEvent {
        CatalogEvent {
            catalog_version: version,
            event: Some(Event::Change(ToolChange {
                kind: kind.into(),
                tool: Some(tool),
            })),
        }
    }

    fn names(state: &CatalogState) -> Vec<&str> {
        state.enabled().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn snapshot_replaces_state_and_counts_only_real_differences() {
        let mut state = CatalogState::default();
        assert_eq!(state.apply(snapshot(3, vec![])), Applied::Unchanged);
        assert!(state.synced);
        let tools = vec![tool("b.tool", 1, true), tool("a.tool", 2, true), tool("off", 1, false)];
        assert_eq!(state.apply(snapshot(5, tools.clone())), Applied::Changed);
        assert_eq!(names(&state), ["a.tool", "b.tool"]);
        assert_eq!(state.version, 5);
        // A resync after a reconnect with the same tools is not a change.
        assert_eq!(state.apply(snapshot(5, tools)), Applied::Unchanged);
        // Code never enters the catalog.
        assert!(state.tools.values().all(|t| t.code.is_empty()));
    }

    #[test]
    fn each_newer_change_applies_once() {
        let mut state = CatalogState::default();
        state.apply(snapshot(1, vec![tool("keep", 1, true)]));
        assert_eq!(
            state.apply(change(2, ChangeKind::Created, tool("new", 1, true))),
            Applied::Changed
        );
        assert_eq!(names(&state), ["keep", "new"]);
        assert_eq!(
            state.apply(change(3, ChangeKind::Disabled, tool("new", 2, false))),
            Applied::Changed
        );
        assert_eq!(names(&state), ["keep"]);
        assert!(state.enabled_tool("new").is_none());
        assert_eq!(
            state.apply(change(4, ChangeKind::Deleted, tool("keep", 1, true))),
            Applied::Changed
        );
        assert_eq!(names(&state), Vec::<&str>::new());
        // Replayed or older events are ignored.
        assert_eq!(
            state.apply(change(4, ChangeKind::Created, tool("late", 1, true))),
            Applied::Unchanged
        );
        assert_eq!(
            state.apply(change(2, ChangeKind::Created, tool("late", 1, true))),
            Applied::Unchanged
        );
        assert_eq!(state.version, 4);
    }

    #[test]
    fn a_snapshot_after_a_registry_restart_may_lower_the_version() {
        let mut state = CatalogState::default();
        state.apply(snapshot(9, vec![tool("a.tool", 1, true)]));
        assert_eq!(
            state.apply(snapshot(2, vec![tool("a.tool", 1, true)])),
            Applied::Unchanged
        );
        assert_eq!(state.version, 2);
        assert_eq!(
            state.apply(change(3, ChangeKind::Updated, tool("a.tool", 2, true))),
            Applied::Changed
        );
    }

    #[test]
    fn a_recreated_tool_is_not_the_same_version() {
        let old = ToolRecord {
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            ..tool("a.tool", 1, true)
        };
        let recreated = ToolRecord {
            created_at: "2026-01-02T00:00:00.000Z".into(),
            updated_at: "2026-01-02T00:00:00.000Z".into(),
            ..old.clone()
        };
        assert!(same_version(&old, &old.clone()));
        assert!(!same_version(&old, &recreated));
        assert!(!same_version(&old, &tool("a.tool", 2, true)));
    }

    #[tokio::test]
    async fn announces_exactly_one_signal_per_change() {
        let nowhere = ServiceUrl::Unix("/nonexistent.sock".into());
        let catalog = Catalog::new(RegistryClient::new(
            InternalAuth::default().channel(&nowhere, None).unwrap(),
        ));
        let mut changed = catalog.changed();
        catalog.apply(snapshot(1, vec![tool("a.tool", 1, true)]));
        catalog.apply(snapshot(1, vec![tool("a.tool", 1, true)]));
        catalog.apply(change(2, ChangeKind::Updated, tool("a.tool", 2, true)));
        catalog.apply(change(2, ChangeKind::Updated, tool("a.tool", 2, true)));
        assert!(changed.try_recv().is_ok());
        assert!(changed.try_recv().is_ok());
        assert!(changed.try_recv().is_err());
        catalog.wait_for_version(2).await;
        assert!(catalog.wait_until_synced(Duration::from_millis(1)).await);
        assert_eq!(catalog.read(|s| s.enabled_tool("a.tool").map(|t| t.revision)), Some(2));
    }
}
