//! The database going away and coming back: at startup the registry waits
//! for it (within limits); while running, writes fail with a clear
//! UNAVAILABLE, health goes NOT_SERVING, and afterwards everything recovers
//! without a registry restart, with no acknowledged write and no change lost.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dynamic_mcp_proto::v1 as pb;
use dynamic_mcp_proto::v1::registry_client::RegistryClient;
use support::postgres::{PgCluster, REGISTRY_PASSWORD};
use support::{Registry, TestBackend, WatchedCatalog, assert_status, create_request, spec};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;

/// What a steady writer saw.
#[derive(Default)]
struct Progress {
    attempted: BTreeSet<String>,
    acked: Vec<String>,
    failures: Vec<Status>,
}

/// Creates a tool every 20 ms, alternating between the replicas, until stopped.
async fn write_steadily(replicas: [Channel; 2], progress: Arc<Mutex<Progress>>, stop: CancellationToken) {
    let mut clients = replicas.map(RegistryClient::new);
    for i in 0.. {
        if stop.is_cancelled() {
            return;
        }
        let name = format!("steady.tool-{i:05}");
        progress.lock().unwrap().attempted.insert(name.clone());
        let result = clients[i % 2].create(create_request(spec(&name))).await;
        match result {
            Ok(_) => progress.lock().unwrap().acked.push(name),
            Err(status) => progress.lock().unwrap().failures.push(status),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_until(what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_is_survived_without_restarting_the_registries() {
    let backend = TestBackend::postgres().await;
    let cluster = backend.postgres.as_ref().unwrap();
    // Writes during the outage give up after 1 s. B's listener waits long
    // between reconnects, so changes land while it is away.
    let a = backend
        .start(&[
            ("MCP_DYNAMIC_PG_ACQUIRE_TIMEOUT_MS", "1000"),
            ("MCP_DYNAMIC_PG_INIT_BACKOFF_MS", "100"),
        ])
        .await;
    let b = backend
        .start(&[
            ("MCP_DYNAMIC_PG_ACQUIRE_TIMEOUT_MS", "1000"),
            ("MCP_DYNAMIC_PG_INIT_BACKOFF_MS", "3000"),
        ])
        .await;
    let mut watching_a = WatchedCatalog::open(&a).await;
    let mut watching_b = WatchedCatalog::open(&b).await;

    let progress = Arc::new(Mutex::new(Progress::default()));
    let stop = CancellationToken::new();
    let writer = tokio::spawn(write_steadily(
        [a.channel(), b.channel()],
        Arc::clone(&progress),
        stop.clone(),
    ));
    let acked = || progress.lock().unwrap().acked.len();
    let failed = || progress.lock().unwrap().failures.len();
    wait_until("5 creates before the outage", Duration::from_secs(20), || acked() >= 5).await;
    // Both listeners were connected before the outage, so that B's coming
    // back is a reconnect (on a busy machine its first connect can be late).
    wait_until("both change listeners connected", Duration::from_secs(20), || {
        [&a, &b]
            .iter()
            .all(|registry| registry.log().contains("change listener connected"))
    })
    .await;

    cluster.stop();
    wait_until("2 failed creates during the outage", Duration::from_secs(20), || {
        failed() >= 2
    })
    .await;
    assert_status(
        a.client().create(create_request(spec("during.outage"))).await,
        Code::Unavailable,
        &["the tool database is unavailable: ", "; retry"],
    );
    for registry in [&a, &b] {
        registry
            .wait_for_health(ServingStatus::NotServing, Duration::from_secs(10))
            .await;
    }

    cluster.start_again();
    for registry in [&a, &b] {
        registry
            .wait_for_health(ServingStatus::Serving, Duration::from_secs(15))
            .await;
    }
    let acked_before_restart = acked();
    wait_until("5 creates after the restart", Duration::from_secs(20), || {
        acked() >= acked_before_restart + 5
    })
    .await;
    stop.cancel();
    writer.await.unwrap();
    let marker = a
        .client()
        .create(create_request(spec("after.restart")))
        .await
        .unwrap()
        .into_inner();

    let progress = std::mem::take(&mut *progress.lock().unwrap());
    for failure in &progress.failures {
        assert_eq!(failure.code(), Code::Unavailable, "{failure:?}");
        assert!(
            failure.message().starts_with("the tool database is unavailable: ")
                && failure.message().ends_with("; retry"),
            "{failure:?}"
        );
    }

    // Both feeds caught up, change by change, without a new watch or a restart.
    for watcher in [&mut watching_a, &mut watching_b] {
        watcher
            .until(Duration::from_secs(30), "the create after the restart", |w| {
                w.version >= marker.catalog_version
            })
            .await;
    }
    let listed = a
        .client()
        .list(pb::ListToolsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let listed_revisions: Vec<(String, u64)> = listed.tools.iter().map(|t| (t.name.clone(), t.revision)).collect();
    assert_eq!(watching_a.revisions(), listed_revisions);
    assert_eq!(watching_b.revisions(), listed_revisions);
    assert_eq!(
        (watching_a.version, watching_b.version),
        (listed.catalog_version, listed.catalog_version)
    );

    let present: BTreeSet<&str> = listed.tools.iter().map(|t| t.name.as_str()).collect();
    for name in &progress.acked {
        assert!(
            present.contains(name.as_str()),
            "the acknowledged create of {name} was lost"
        );
    }
    for name in &present {
        assert!(
            progress.attempted.contains(*name) || *name == "after.restart",
            "a tool nobody created: {name}"
        );
    }
    assert_eq!(
        listed.catalog_version,
        listed.tools.len() as u64,
        "one version per create"
    );

    // B's listener lost the database and came back on its own; its watcher
    // (checked above) got every change as an event. Whether a write landed
    // while it was away depends on timing, so that is not asserted here.
    let log = b.log();
    assert!(log.contains("the change listener lost the tool database"), "{log}");
    assert!(
        log.lines()
            .filter(|line| line.contains("change listener connected"))
            .count()
            >= 2,
        "B's listener did not reconnect by itself\n{log}"
    );
    assert_eq!(watching_b.snapshots, 1, "B's watcher got every change as an event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_waits_for_the_database() {
    let cluster = PgCluster::start().await;
    cluster.stop();
    let dir = tempfile::tempdir().unwrap();
    let url = cluster.registry_url();
    let mut registry = Registry::spawn(
        dir.path(),
        &[
            ("MCP_DYNAMIC_BACKEND", "postgres"),
            ("MCP_DYNAMIC_PG_URL", &url),
            ("MCP_DYNAMIC_PG_INIT_BACKOFF_MS", "200"),
        ],
        Stdio::null(),
    );
    wait_until("a retry is logged", Duration::from_secs(10), || {
        registry.log().contains("the tool database is not reachable yet")
    })
    .await;
    assert!(registry.exited_within(Duration::from_millis(100)).await.is_none());

    cluster.start_again();
    registry.wait_ready().await;
    registry
        .client()
        .create(create_request(spec("late.tool")))
        .await
        .unwrap();
    let log = registry.log();
    assert!(log.contains("registry:***@127.0.0.1"), "{log}");
    assert!(!log.contains(REGISTRY_PASSWORD), "the password was logged:\n{log}");
}

#[tokio::test]
async fn startup_gives_up_after_the_configured_attempts() {
    // Nothing listens on a port that was just free.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://registry:{REGISTRY_PASSWORD}@127.0.0.1:{port}/tools");
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::spawn(
        dir.path(),
        &[
            ("MCP_DYNAMIC_BACKEND", "postgres"),
            ("MCP_DYNAMIC_PG_URL", &url),
            ("MCP_DYNAMIC_PG_INIT_MAX_ATTEMPTS", "3"),
            ("MCP_DYNAMIC_PG_INIT_BACKOFF_MS", "50"),
        ],
        Stdio::null(),
    );
    let status = registry
        .exited_within(Duration::from_secs(20))
        .await
        .expect("the registry must give up");
    assert!(!status.success());
    let log = registry.log();
    assert!(log.contains("still unreachable after 3 attempts"), "{log}");
    assert_eq!(log.matches("not reachable yet").count(), 2, "{log}");
    assert!(log.contains(&format!("registry:***@127.0.0.1:{port}/tools")), "{log}");
    assert!(!log.contains(REGISTRY_PASSWORD), "the password was logged:\n{log}");
}

#[tokio::test]
async fn the_postgres_backend_without_a_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::spawn(dir.path(), &[("MCP_DYNAMIC_BACKEND", "postgres")], Stdio::null());
    let status = registry.exited_within(Duration::from_secs(10)).await.unwrap();
    assert!(!status.success());
    assert!(
        registry
            .log()
            .contains("MCP_DYNAMIC_BACKEND=postgres needs MCP_DYNAMIC_PG_URL"),
        "{}",
        registry.log()
    );
}
