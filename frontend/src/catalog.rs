//! The live tool catalog, fed by the registry's `WatchChanges` stream.
//!
//! The stream starts with a snapshot and then sends one event per change, each
//! with a higher catalog version. [`Catalog::changed`] fires once per change
//! event, and for a snapshot only when it differs from what we had (e.g. after
//! the registry restarted), so clients get one `list_changed` per change.
//!
//! Calls, `tools/list`, `dynamic.tool.get` and `dynamic.tool.list` are served
//! from here. What a call needs beyond the listed record — the tool's code,
//! its compiled schemas and its `tools/list` entry — is kept with that
//! record, so it is fetched or built once per revision, and a call looks up
//! one name under a shared read lock: no exclusive lock, nothing
//! proportional to the number of tools.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dynamic_mcp_common::backoff::Backoff;
use dynamic_mcp_common::internal_auth::InternalChannel;
use dynamic_mcp_proto::v1::catalog_event::Event;
use dynamic_mcp_proto::v1::registry_client::RegistryClient;
use dynamic_mcp_proto::v1::{CatalogEvent, ChangeKind, GetToolRequest, ToolRecord, WatchChangesRequest};
use futures::{Stream, StreamExt};
use rmcp::model::Tool;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::error::ToolError;
use crate::links::Service;
use crate::metrics;
use crate::tools::typed::Contract;

/// How long a writer waits for its own write to show up in the catalog.
const WAIT_FOR_WRITE: Duration = Duration::from_secs(2);
const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(200);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(10);
/// How long a call waits for the registry to confirm a tool the feed has not shown yet.
const REGISTRY_LOOKUP_WITHIN: Duration = Duration::from_secs(2);

/// What the frontend knows of the registry's catalog.
#[derive(Debug, Default, Clone)]
pub struct CatalogState {
    /// The catalog version of the last event applied.
    pub version: u64,
    /// Whether a snapshot has arrived since startup.
    pub synced: bool,
    /// Enabled and disabled tools, by name (so sorted).
    tools: BTreeMap<String, Arc<Listed>>,
}

/// One revision of a tool as listed: the record without code, plus what is
/// derived from it on first use and kept until the tool changes.
#[derive(Debug)]
struct Listed {
    record: Arc<ToolRecord>,
    /// The same record with its code, once a call fetched it.
    with_code: OnceLock<Arc<ToolRecord>>,
    /// Its `tools/list` entry, once built.
    definition: OnceLock<Tool>,
    /// Its compiled schemas, once a call needed them.
    contract: OnceLock<Arc<Contract>>,
}

impl Listed {
    fn new(tool: ToolRecord) -> Arc<Self> {
        Arc::new(Self {
            record: Arc::new(without_code(tool)),
            with_code: OnceLock::new(),
            definition: OnceLock::new(),
            contract: OnceLock::new(),
        })
    }

    fn definition(&self, build: fn(&ToolRecord) -> Tool) -> &Tool {
        self.definition.get_or_init(|| build(&self.record))
    }
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
                let mut tools: BTreeMap<_, _> = snapshot
                    .tools
                    .into_iter()
                    .map(|tool| (tool.name.clone(), Listed::new(tool)))
                    .collect();
                let changed = !same_tools(&tools, &self.tools);
                if !changed {
                    // Keep what was derived from the unchanged records.
                    tools = std::mem::take(&mut self.tools);
                }
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
                    self.tools.insert(tool.name.clone(), Listed::new(tool));
                }
                self.version = event.catalog_version;
                Applied::Changed
            }
            // A change we already have (its version is not newer), or an empty event.
            Some(Event::Change(_)) | None => Applied::Unchanged,
        }
    }

    /// Every tool, enabled or not, sorted by name.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ToolRecord>> {
        self.tools.values().map(|listed| &listed.record)
    }

    /// Enabled tools, sorted by name.
    pub fn enabled(&self) -> impl Iterator<Item = &Arc<ToolRecord>> {
        self.all().filter(|tool| tool.enabled)
    }

    pub fn tool(&self, name: &str) -> Option<&Arc<ToolRecord>> {
        self.tools.get(name).map(|listed| &listed.record)
    }

    pub fn enabled_tool(&self, name: &str) -> Option<&Arc<ToolRecord>> {
        self.tool(name).filter(|tool| tool.enabled)
    }

    /// The `tools/list` entries of the enabled tools, each built by `build`
    /// once per revision.
    pub fn enabled_definitions(&self, build: fn(&ToolRecord) -> Tool) -> impl Iterator<Item = &Tool> {
        self.tools
            .values()
            .filter(|listed| listed.record.enabled)
            .map(move |listed| listed.definition(build))
    }

    /// The `tools/list` entry of the enabled tool `name`.
    pub fn enabled_definition(&self, name: &str, build: fn(&ToolRecord) -> Tool) -> Option<&Tool> {
        self.tools
            .get(name)
            .filter(|listed| listed.record.enabled)
            .map(|listed| listed.definition(build))
    }
}

/// Whether two catalogs list the same versions of the same tools.
fn same_tools(a: &BTreeMap<String, Arc<Listed>>, b: &BTreeMap<String, Arc<Listed>>) -> bool {
    a.len() == b.len() && a.values().zip(b.values()).all(|(x, y)| x.record == y.record)
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
}

impl Catalog {
    pub fn new(registry: RegistryClient<InternalChannel>) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry,
                state: watch::Sender::new(CatalogState::default()),
                changed: broadcast::Sender::new(64),
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
        let registry = self.inner.registry.clone();
        self.follow_feeds(move || {
            let mut registry = registry.clone();
            async move { Ok(registry.watch_changes(WatchChangesRequest {}).await?.into_inner()) }
        })
        .await;
    }

    /// Follows the feeds `open` opens, one after another, for ever: each
    /// reconnect waits a jittered backoff, which every event resets.
    async fn follow_feeds<O, Opening, Feed>(&self, mut open: O)
    where
        O: FnMut() -> Opening,
        Opening: Future<Output = Result<Feed, Status>>,
        Feed: Stream<Item = Result<CatalogEvent, Status>> + Unpin,
    {
        let mut backoff = Backoff::new(MIN_RECONNECT_DELAY, MAX_RECONNECT_DELAY);
        loop {
            let why = match self.follow_once(open(), &mut backoff).await {
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
            let delay = backoff.next_wait();
            tracing::warn!("{why}; reconnecting in {} ms", delay.as_millis());
            tokio::time::sleep(delay).await;
        }
    }

    async fn follow_once<Feed>(
        &self,
        opening: impl Future<Output = Result<Feed, Status>>,
        backoff: &mut Backoff,
    ) -> Result<(), Status>
    where
        Feed: Stream<Item = Result<CatalogEvent, Status>> + Unpin,
    {
        let mut events = opening.await?;
        while let Some(event) = events.next().await.transpose()? {
            backoff.reset();
            self.apply(event);
        }
        Ok(())
    }

    /// Applies one event and announces it if clients can see the difference.
    pub fn apply(&self, event: CatalogEvent) {
        let mut applied = Applied::Unchanged;
        self.inner.state.send_modify(|state| applied = state.apply(event));
        if applied == Applied::Changed {
            tracing::debug!(version = self.inner.state.borrow().version, "tool catalog changed");
            // No receivers (nobody listening) is fine.
            let _ = self.inner.changed.send(());
        }
    }

    /// Tells clients that tools/list changed for a reason outside the
    /// catalog (the built-in tools' schemas state the executor's limits).
    pub fn announce_list_changed(&self) {
        let _ = self.inner.changed.send(());
    }

    /// Fires once per change of tools/list: a catalog change, or an announced one.
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
            Ok(Ok(found)) => Some(Arc::new(found.into_inner())).filter(|tool| tool.enabled),
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

    /// `listed` with its code: fetched from the registry on a tool's first
    /// call and kept with the listed record until the tool changes. A record
    /// that already has its code (looked up in the registry by
    /// [`Catalog::find_enabled`]) is used as it is.
    pub async fn with_code(&self, listed: &ToolRecord) -> Result<Arc<ToolRecord>, Status> {
        if !listed.code.is_empty() {
            return Ok(Arc::new(listed.clone()));
        }
        let entry = self.listed_version(listed);
        if let Some(hit) = entry.as_ref().and_then(|entry| entry.with_code.get()) {
            return Ok(Arc::clone(hit));
        }
        let mut registry = self.inner.registry.clone();
        let request = GetToolRequest {
            name: listed.name.clone(),
            revision: None,
        };
        // If the tool changed meanwhile this is a newer version; run that one.
        let fetched = Arc::new(registry.get(request).await?.into_inner());
        if let Some(entry) = entry.filter(|entry| same_version(&entry.record, &fetched)) {
            return Ok(Arc::clone(entry.with_code.get_or_init(|| fetched)));
        }
        Ok(fetched)
    }

    /// The catalog's entry for this version of `tool`, if it holds it.
    fn listed_version(&self, tool: &ToolRecord) -> Option<Arc<Listed>> {
        self.read(|c| {
            c.tools
                .get(&tool.name)
                .filter(|entry| same_version(&entry.record, tool))
                .cloned()
        })
    }

    /// The compiled schemas of `tool`: compiled on its revision's first
    /// call and kept with the listed record until the tool changes. A
    /// version the catalog does not hold is compiled for this call alone.
    pub fn contract(&self, tool: &ToolRecord) -> Result<Arc<Contract>, ToolError> {
        let Some(entry) = self.listed_version(tool) else {
            return Ok(Arc::new(Contract::of(tool)?));
        };
        if let Some(hit) = entry.contract.get() {
            return Ok(Arc::clone(hit));
        }
        let compiled = Arc::new(Contract::of(&entry.record)?);
        Ok(Arc::clone(entry.contract.get_or_init(|| compiled)))
    }
}

/// Whether two records are the same version of the same tool. The revision
/// alone is not enough: a deleted and re-created tool starts again at 1.
fn same_version(a: &ToolRecord, b: &ToolRecord) -> bool {
    a.revision == b.revision && a.created_at == b.created_at && a.updated_at == b.updated_at
}

#[cfg(test)]
mod tests {
    use dynamic_mcp_common::addr::ServiceUrl;
    use dynamic_mcp_common::internal_auth::InternalAuth;
    use dynamic_mcp_proto::v1::{CatalogSnapshot, ToolChange};
    use serde_json::json;

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
        // Code never enters the listed records.
        assert!(state.all().all(|t| t.code.is_empty()));
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

    static BUILT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn counted_definition(tool: &ToolRecord) -> Tool {
        BUILT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Tool::new(
            tool.name.clone(),
            tool.description.clone(),
            Arc::new(Default::default()),
        )
    }

    #[test]
    fn listings_are_built_once_per_revision_and_survive_an_unchanged_resync() {
        let built = || BUILT.load(std::sync::atomic::Ordering::SeqCst);
        let mut state = CatalogState::default();
        state.apply(snapshot(1, vec![tool("a.tool", 1, true), tool("b.tool", 1, true)]));
        let before = built();
        assert_eq!(state.enabled_definitions(counted_definition).count(), 2);
        assert_eq!(state.enabled_definitions(counted_definition).count(), 2);
        assert!(state.enabled_definition("a.tool", counted_definition).is_some());
        assert_eq!(built() - before, 2, "each listing is built once");
        state.apply(snapshot(1, vec![tool("a.tool", 1, true), tool("b.tool", 1, true)]));
        assert_eq!(state.enabled_definitions(counted_definition).count(), 2);
        assert_eq!(built() - before, 2, "a resync with the same tools keeps them");
        state.apply(change(2, ChangeKind::Updated, tool("a.tool", 2, true)));
        let a = state.enabled_definition("a.tool", counted_definition).unwrap();
        assert_eq!(a.description.as_deref(), Some("a.tool r2"));
        assert_eq!(built() - before, 3, "only the changed tool is built again");
        assert!(state.enabled_definition("missing", counted_definition).is_none());
    }

    /// A catalog whose registry is never reached.
    fn unconnected() -> Catalog {
        let nowhere = ServiceUrl::Unix("/nonexistent.sock".into());
        Catalog::new(RegistryClient::new(
            InternalAuth::default().channel(&nowhere, None).unwrap(),
        ))
    }

    #[tokio::test]
    async fn announces_exactly_one_signal_per_change() {
        let catalog = unconnected();
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

    #[tokio::test]
    async fn a_revision_is_compiled_once_and_a_new_one_again() {
        let catalog = unconnected();
        let typed = |revision: u64, field: &str| ToolRecord {
            input_schema_json: Some(json!({"type": "object", "required": [field]}).to_string()),
            ..tool("a.tool", revision, true)
        };
        catalog.apply(snapshot(1, vec![typed(1, "first")]));
        let first = catalog.contract(&typed(1, "first")).unwrap();
        assert!(Arc::ptr_eq(&first, &catalog.contract(&typed(1, "first")).unwrap()));
        assert!(first.input.as_ref().unwrap().accepts(&json!({"first": 1})));

        catalog.apply(change(2, ChangeKind::Updated, typed(2, "second")));
        let second = catalog.contract(&typed(2, "second")).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(!second.input.as_ref().unwrap().accepts(&json!({"first": 1})));
        assert!(Arc::ptr_eq(&second, &catalog.contract(&typed(2, "second")).unwrap()));

        // A version the feed has not shown is compiled, and not kept.
        let unlisted = catalog.contract(&typed(3, "third")).unwrap();
        assert!(unlisted.input.as_ref().unwrap().accepts(&json!({"third": 1})));
        assert!(!Arc::ptr_eq(&unlisted, &catalog.contract(&typed(3, "third")).unwrap()));
    }

    /// What the registry does with one attempt to open its feed.
    enum Attempt {
        Refused,
        /// Sends these events, then ends the feed.
        Ends(Vec<CatalogEvent>),
        /// Sends these events and stays open.
        StaysOpen(Vec<CatalogEvent>),
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_feed_is_reopened_after_doubling_jittered_waits_that_an_event_resets() {
        use futures::stream::{self, BoxStream};
        use std::collections::VecDeque;
        use std::sync::Mutex;
        use tokio::time::Instant;

        let catalog = unconnected();
        let script = Arc::new(Mutex::new(VecDeque::from([
            Attempt::Refused,
            Attempt::Refused,
            Attempt::Refused,
            Attempt::Ends(vec![snapshot(1, vec![tool("a.tool", 1, true)])]),
            Attempt::Refused,
            Attempt::StaysOpen(vec![snapshot(2, vec![tool("b.tool", 1, true)])]),
        ])));
        let attempts = script.lock().unwrap().len();
        let started = Instant::now();
        let opened = Arc::new(Mutex::new(Vec::new()));
        let follower = {
            let (catalog, script, opened) = (catalog.clone(), Arc::clone(&script), Arc::clone(&opened));
            tokio::spawn(async move {
                catalog
                    .follow_feeds(move || {
                        opened.lock().unwrap().push(started.elapsed());
                        let attempt = script.lock().unwrap().pop_front();
                        async move {
                            let feed: BoxStream<'static, Result<CatalogEvent, Status>> = match attempt {
                                Some(Attempt::Refused) | None => {
                                    return Err(Status::unavailable("registry restarting"));
                                }
                                Some(Attempt::Ends(events)) => stream::iter(events.into_iter().map(Ok)).boxed(),
                                Some(Attempt::StaysOpen(events)) => stream::iter(events.into_iter().map(Ok))
                                    .chain(stream::pending())
                                    .boxed(),
                            };
                            Ok(feed)
                        }
                    })
                    .await;
            })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while opened.lock().unwrap().len() < attempts || catalog.read(|s| s.version) < 2 {
            assert!(Instant::now() < deadline, "opened only at {:?}", opened.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let opened_at = opened.lock().unwrap().clone();
        let waits: Vec<Duration> = opened_at.windows(2).map(|w| w[1] - w[0]).collect();
        // Steps of 200 ms doubling, each wait within [step/2, step]; the
        // snapshot on the fourth attempt starts the steps again.
        let steps = [200, 400, 800, 200, 400].map(Duration::from_millis);
        assert_eq!(waits.len(), steps.len(), "{opened_at:?}");
        for (wait, step) in waits.iter().zip(steps) {
            assert!(
                *wait >= step / 2 && *wait <= step,
                "waits {waits:?} outside their steps {steps:?}"
            );
        }
        assert_eq!(catalog.read(|s| s.version), 2);
        assert_eq!(catalog.read(|s| names(s).join(",")), "b.tool");
        // The open feed is followed, not reopened.
        tokio::time::sleep(MAX_RECONNECT_DELAY * 3).await;
        assert_eq!(opened.lock().unwrap().len(), attempts, "an open feed was given up");
        assert!(!follower.is_finished());
        follower.abort();
    }
}
