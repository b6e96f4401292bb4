//! The change feed behind `WatchChanges`: a snapshot first, then one event
//! per change in catalog-version order, and a fresh snapshot whenever the
//! watcher may have missed something.

use std::sync::Arc;

use dynamic_mcp_proto::v1 as pb;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::store::ToolStore;
use crate::wire;

pub type WatchStream = ReceiverStream<Result<pb::CatalogEvent, Status>>;

/// Starts one watcher. It ends when the client goes away or `stopping` fires
/// (an open stream would otherwise hold up a graceful shutdown forever).
pub fn watch(store: Arc<dyn ToolStore>, stopping: CancellationToken) -> WatchStream {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        tokio::select! {
            () = forward(store.as_ref(), &tx) => {}
            () = stopping.cancelled() => {}
        }
    });
    ReceiverStream::new(rx)
}

/// Returns when the watcher is gone or the store failed.
async fn forward(store: &dyn ToolStore, tx: &mpsc::Sender<Result<pb::CatalogEvent, Status>>) {
    // Subscribe before each snapshot, so no change falls between the two.
    let mut changes = store.subscribe();
    loop {
        let catalog = match store.catalog(false).await {
            Ok(catalog) => catalog,
            Err(err) => {
                let _ = tx.send(Err(err.into())).await;
                return;
            }
        };
        let mut seen = catalog.version;
        if tx.send(Ok(wire::snapshot_event(&catalog))).await.is_err() {
            return;
        }
        drop(catalog);
        loop {
            let received = tokio::select! {
                () = tx.closed() => return,
                received = changes.recv() => received,
            };
            match received {
                // Already part of the snapshot.
                Ok(change) if change.catalog_version <= seen => {}
                Ok(change) if change.catalog_version == seen + 1 => {
                    seen = change.catalog_version;
                    if tx.send(Ok(pb::CatalogEvent::from(&change))).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    tracing::debug!(seen, "watcher missed changes; sending a fresh snapshot");
                    // Start again from the newest change, dropping the backlog.
                    changes = changes.resubscribe();
                    break;
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{ChangeEvent, ChangeKind};
    use crate::error::RegistryError;
    use crate::history::{History, Retention};
    use crate::record::{self, ToolRecord};
    use crate::rules;
    use crate::store::file::FileStore;
    use crate::store::testing::Writes;
    use crate::store::{StoredCatalog, WriteContext, WriteOp, Written};
    use tokio_stream::StreamExt;

    fn spec(name: &str) -> pb::ToolSpec {
        pb::ToolSpec {
            name: name.into(),
            description: "d".into(),
            image: Some("node:22".into()),
            code: "return 1;".into(),
            ..Default::default()
        }
    }

    fn version_and_kind(event: &pb::CatalogEvent) -> (u64, &'static str) {
        let kind = match &event.event {
            Some(pb::catalog_event::Event::Snapshot(_)) => "snapshot",
            Some(pb::catalog_event::Event::Change(change)) => change.kind().as_str_name(),
            None => "none",
        };
        (event.catalog_version, kind)
    }

    #[tokio::test]
    async fn a_watcher_gets_a_snapshot_then_each_change() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ToolStore> =
            Arc::new(FileStore::open(&dir.path().join("t.json"), 10, Retention::default()).unwrap());
        store.create(spec("before.x")).await.unwrap();
        let stopping = CancellationToken::new();
        let mut events = watch(Arc::clone(&store), stopping.clone());

        let first = events.next().await.unwrap().unwrap();
        assert_eq!(version_and_kind(&first), (1, "snapshot"));
        let Some(pb::catalog_event::Event::Snapshot(snapshot)) = first.event else {
            panic!("expected a snapshot");
        };
        assert_eq!(snapshot.tools.len(), 1);
        assert_eq!(snapshot.tools[0].code, "");
        assert_eq!(snapshot.tools[0].code_size_bytes, 9);

        store.create(spec("after.x")).await.unwrap();
        store.set_enabled("after.x", false, None).await.unwrap();
        let second = events.next().await.unwrap().unwrap();
        let third = events.next().await.unwrap().unwrap();
        assert_eq!(version_and_kind(&second), (2, "CHANGE_KIND_CREATED"));
        assert_eq!(version_and_kind(&third), (3, "CHANGE_KIND_DISABLED"));

        stopping.cancel();
        assert!(events.next().await.is_none(), "the stream ends on shutdown");
    }

    /// A store whose catalog and feed the test drives by hand.
    struct FakeStore {
        catalog: std::sync::Mutex<StoredCatalog>,
        changes: tokio::sync::broadcast::Sender<ChangeEvent>,
    }

    impl FakeStore {
        fn new(feed_capacity: usize) -> Arc<Self> {
            Arc::new(Self {
                catalog: std::sync::Mutex::new(StoredCatalog {
                    tools: vec![],
                    version: 0,
                }),
                changes: tokio::sync::broadcast::channel(feed_capacity).0,
            })
        }

        /// Commits a create the way a real store does: catalog first, then the event.
        fn commit(&self, name: &str) {
            let tool = Arc::new(rules::new_tool(spec(name), &record::now()).unwrap());
            let mut catalog = self.catalog.lock().unwrap();
            catalog.version += 1;
            catalog.tools.push(Arc::clone(&tool));
            let _ = self.changes.send(ChangeEvent {
                catalog_version: catalog.version,
                kind: ChangeKind::Created,
                tool,
            });
        }
    }

    #[async_trait::async_trait]
    impl ToolStore for FakeStore {
        async fn catalog(&self, _: bool) -> Result<StoredCatalog, RegistryError> {
            Ok(self.catalog.lock().unwrap().clone())
        }
        async fn get(&self, _: &str, _: Option<u64>) -> Result<Arc<ToolRecord>, RegistryError> {
            unreachable!("the feed only reads the catalog")
        }
        async fn history(&self, _: &str, _: Option<usize>) -> Result<History, RegistryError> {
            unreachable!("the feed only reads the catalog")
        }
        async fn write(&self, _: WriteOp, _: WriteContext) -> Result<Written, RegistryError> {
            unreachable!("the feed never writes")
        }
        fn retention(&self) -> Retention {
            Retention::default()
        }
        fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ChangeEvent> {
            self.changes.subscribe()
        }
        async fn check_ready(&self) -> Result<(), RegistryError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_gets_a_fresh_snapshot() {
        let store = FakeStore::new(4);
        let mut events = watch(store.clone(), CancellationToken::new());
        assert_eq!(
            version_and_kind(&events.next().await.unwrap().unwrap()),
            (0, "snapshot")
        );

        // The test runtime has one thread: the watcher cannot read while these commit.
        for i in 0..10 {
            store.commit(&format!("tool.{i}"));
        }
        let event = events.next().await.unwrap().unwrap();
        assert_eq!(version_and_kind(&event), (10, "snapshot"));
        let Some(pb::catalog_event::Event::Snapshot(snapshot)) = event.event else {
            unreachable!()
        };
        assert_eq!(snapshot.tools.len(), 10);

        store.commit("tool.after");
        assert_eq!(
            version_and_kind(&events.next().await.unwrap().unwrap()),
            (11, "CHANGE_KIND_CREATED")
        );
    }

    #[tokio::test]
    async fn a_gap_in_versions_gets_a_fresh_snapshot() {
        let store = FakeStore::new(16);
        let mut events = watch(store.clone(), CancellationToken::new());
        assert_eq!(
            version_and_kind(&events.next().await.unwrap().unwrap()),
            (0, "snapshot")
        );

        // A backend that lost an event (e.g. a dropped database notification).
        store.catalog.lock().unwrap().version = 1;
        store.commit("tool.x");
        assert_eq!(
            version_and_kind(&events.next().await.unwrap().unwrap()),
            (2, "snapshot")
        );
    }
}
