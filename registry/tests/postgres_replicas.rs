//! Several registry replicas on one PostgreSQL database: changes reach the
//! watchers of every replica, and the tool limit and revision checks hold
//! when replicas race each other.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use std::time::{Duration, Instant};

use dynamic_mcp_proto::v1 as pb;
use dynamic_mcp_proto::v1::registry_client::RegistryClient;
use sqlx::Row;
use support::{TestBackend, WatchedCatalog, create_request, spec};
use tokio::task::JoinSet;
use tonic::Code;
use tonic::transport::Channel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_on_one_replica_reaches_the_watchers_of_another_within_a_second() {
    let backend = TestBackend::postgres().await;
    let a = backend.start(&[]).await;
    let b = backend.start(&[]).await;
    let mut watching_a = WatchedCatalog::open(&a).await;
    let mut watching_b = WatchedCatalog::open(&b).await;

    for (writer, name) in [(&a, "made.on-a"), (&b, "made.on-b")] {
        let started = Instant::now();
        let written = writer
            .client()
            .create(create_request(spec(name)))
            .await
            .unwrap()
            .into_inner();
        for watcher in [&mut watching_a, &mut watching_b] {
            watcher
                .until(Duration::from_secs(1), name, |w| w.version >= written.catalog_version)
                .await;
            assert!(watcher.tools.contains_key(name));
        }
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    }
    assert_eq!(watching_a.revisions(), watching_b.revisions());
    assert_eq!(watching_b.snapshots, 1, "plain events, no resnapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_limit_holds_for_concurrent_creates_on_two_replicas() {
    let backend = TestBackend::postgres().await;
    // 200 writes queue on one row lock: let none give up waiting for a connection.
    let limit = [
        ("MCP_DYNAMIC_MAX_TOOLS", "100"),
        ("MCP_DYNAMIC_PG_ACQUIRE_TIMEOUT_MS", "60000"),
    ];
    let replicas = [backend.start(&limit).await, backend.start(&limit).await];
    let channels: Vec<Channel> = replicas.iter().map(|r| r.channel()).collect();

    let mut creates = JoinSet::new();
    for i in 0..200 {
        let mut client = RegistryClient::new(channels[i % 2].clone());
        creates.spawn(async move { client.create(create_request(spec(&format!("race.tool-{i:03}")))).await });
    }
    let (mut created, mut refused) = (0, 0);
    while let Some(result) = creates.join_next().await {
        match result.unwrap() {
            Ok(_) => created += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("tool limit reached"), "{status:?}");
                refused += 1;
            }
        }
    }
    assert_eq!((created, refused), (100, 100));

    let cluster = backend.postgres.as_ref().unwrap();
    let row = sqlx::query("SELECT (SELECT count(*) FROM dynamic_mcp.tools), (SELECT version FROM dynamic_mcp.catalog)")
        .fetch_one(&mut cluster.admin().await)
        .await
        .unwrap();
    assert_eq!((row.get::<i64, _>(0), row.get::<i64, _>(1)), (100, 100));
    for replica in &replicas {
        let listed = replica
            .client()
            .list(pb::ListToolsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!((listed.tools.len(), listed.catalog_version), (100, 100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_with_one_expected_revision_have_one_winner() {
    let backend = TestBackend::postgres().await;
    let replicas = [backend.start(&[]).await, backend.start(&[]).await];
    replicas[0]
        .client()
        .create(create_request(spec("contested.tool")))
        .await
        .unwrap();
    let mut watching = WatchedCatalog::open(&replicas[1]).await;

    const ROUNDS: u64 = 10;
    const RACERS: usize = 6;
    for revision in 1..=ROUNDS {
        let mut updates = JoinSet::new();
        for racer in 0..RACERS {
            let mut client = replicas[racer % 2].client();
            let request = pb::UpdateToolRequest {
                name: "contested.tool".into(),
                patch: Some(pb::ToolPatch {
                    description: Some(format!("round {revision}, racer {racer}")),
                    ..Default::default()
                }),
                expected_revision: Some(revision),
                ..Default::default()
            };
            updates.spawn(async move { client.update(request).await });
        }
        let mut winners = vec![];
        while let Some(result) = updates.join_next().await {
            match result.unwrap() {
                Ok(written) => winners.push(written.into_inner().tool.unwrap().revision),
                Err(status) => {
                    assert_eq!(status.code(), Code::Aborted, "{status:?}");
                    assert!(
                        status.message().contains(&format!(
                            "expectedRevision is {revision} but the current revision is {}",
                            revision + 1
                        )),
                        "{status:?}"
                    );
                }
            }
        }
        assert_eq!(winners, [revision + 1], "round {revision}");
    }

    let tool = replicas[1]
        .client()
        .get(pb::GetToolRequest {
            name: "contested.tool".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tool.revision, ROUNDS + 1);
    // One event per winning update, in order (the watcher checks the order).
    watching
        .until(Duration::from_secs(5), "every update", |w| w.version == ROUNDS + 1)
        .await;
    assert_eq!(watching.revisions(), [("contested.tool".to_string(), ROUNDS + 1)]);
    assert_eq!(watching.tools["contested.tool"].description, tool.description);
}
