//! `WatchChanges` against the real binary, on each backend: a snapshot
//! first, then exactly one event per change, in catalog-version order.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use std::time::Duration;

use dynamic_mcp_proto::v1 as pb;
use dynamic_mcp_proto::v1::catalog_event::Event;
use support::{TestBackend, create_request, on_each_backend, spec};
use tokio_stream::StreamExt;
use tonic::Streaming;

on_each_backend!(
    each_change_is_exactly_one_event,
    a_late_watcher_starts_from_a_snapshot_of_everything,
);

async fn next_event(events: &mut Streaming<pb::CatalogEvent>) -> pb::CatalogEvent {
    tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("no event within 5 s")
        .expect("the stream ended")
        .expect("the stream failed")
}

/// (catalog version, kind, tool name) of a change event.
fn change(event: pb::CatalogEvent) -> (u64, pb::ChangeKind, String) {
    match event.event {
        Some(Event::Change(change)) => {
            let tool = change.tool.clone().unwrap();
            assert_eq!(tool.code, "", "events carry no code");
            (event.catalog_version, change.kind(), tool.name)
        }
        other => panic!("expected a change, got {other:?}"),
    }
}

async fn each_change_is_exactly_one_event(backend: &TestBackend) {
    let registry = backend.start(&[]).await;
    let mut client = registry.client();
    let mut events = client
        .watch_changes(pb::WatchChangesRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = next_event(&mut events).await;
    assert_eq!(first.catalog_version, 0);
    assert!(
        matches!(first.event, Some(Event::Snapshot(ref s)) if s.tools.is_empty()),
        "{first:?}"
    );

    let name = || "watched.tool".to_string();
    let set_enabled = |enabled| pb::SetEnabledRequest {
        name: name(),
        enabled,
        expected_revision: None,
        ..Default::default()
    };
    let patch = |patch| pb::UpdateToolRequest {
        name: name(),
        patch: Some(patch),
        expected_revision: None,
        ..Default::default()
    };
    let mut acked = vec![];
    acked.push(client.create(create_request(spec(&name()))).await.unwrap().into_inner());
    acked.push(
        client
            .update(patch(pb::ToolPatch {
                description: Some("changed".into()),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner(),
    );
    acked.push(client.set_enabled(set_enabled(false)).await.unwrap().into_inner());
    // Neither of these changes anything, so neither may produce an event.
    client.set_enabled(set_enabled(false)).await.unwrap();
    client.update(patch(pb::ToolPatch::default())).await.unwrap();
    acked.push(client.set_enabled(set_enabled(true)).await.unwrap().into_inner());
    acked.push(
        client
            .delete(pb::DeleteToolRequest {
                name: name(),
                expected_revision: None,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner(),
    );
    // A last, different change: if any extra event came before it, the
    // sequence below would not line up.
    acked.push(
        client
            .create(create_request(spec("marker.tool")))
            .await
            .unwrap()
            .into_inner(),
    );

    let mut seen = vec![];
    for _ in 0..acked.len() {
        seen.push(change(next_event(&mut events).await));
    }
    use pb::ChangeKind::*;
    let expected = [
        (1, Created, name()),
        (2, Updated, name()),
        (3, Disabled, name()),
        (4, Enabled, name()),
        (5, Deleted, name()),
        (6, Created, "marker.tool".to_string()),
    ];
    assert_eq!(seen, expected);
    let acked_versions: Vec<u64> = acked.iter().map(|w| w.catalog_version).collect();
    assert_eq!(
        acked_versions,
        [1, 2, 3, 4, 5, 6],
        "each write names the version its event carries"
    );

    assert!(
        tokio::time::timeout(Duration::from_millis(300), events.next())
            .await
            .is_err(),
        "no further events"
    );
}

async fn a_late_watcher_starts_from_a_snapshot_of_everything(backend: &TestBackend) {
    let registry = backend.start(&[]).await;
    let mut client = registry.client();
    for name in ["b.tool", "a.tool", "c.tool"] {
        client.create(create_request(spec(name))).await.unwrap();
    }
    client
        .delete(pb::DeleteToolRequest {
            name: "c.tool".into(),
            expected_revision: None,
            ..Default::default()
        })
        .await
        .unwrap();

    let mut events = client
        .watch_changes(pb::WatchChangesRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = next_event(&mut events).await;
    assert_eq!(first.catalog_version, 4);
    let Some(Event::Snapshot(snapshot)) = first.event else {
        panic!("the first event must be a snapshot: {first:?}");
    };
    let names: Vec<&str> = snapshot.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a.tool", "b.tool"], "sorted by name");
    for tool in &snapshot.tools {
        assert_eq!(tool.code, "");
        assert_eq!(tool.code_size_bytes, spec(&tool.name).code.len() as u64);
    }

    client.create(create_request(spec("d.tool"))).await.unwrap();
    assert_eq!(
        change(next_event(&mut events).await),
        (5, pb::ChangeKind::Created, "d.tool".to_string())
    );
}
