//! The registry as a process: health, refusing a corrupt store, and stopping
//! promptly when asked.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use std::process::Stdio;
use std::time::Duration;

use dynamic_mcp_proto::v1 as pb;
use support::{Registry, TestBackend, on_each_backend};
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

on_each_backend!(
    reports_serving_on_the_health_service,
    sigterm_stops_it_promptly_even_with_a_watcher_connected,
);

async fn reports_serving_on_the_health_service(backend: &TestBackend) {
    let registry = backend.start(&[]).await;
    let response = HealthClient::new(registry.channel())
        .check(HealthCheckRequest {
            service: "dynamic_mcp.v1.Registry".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.status(), ServingStatus::Serving);
    assert!(registry.log().contains("registry listening"), "{}", registry.log());
}

#[tokio::test]
async fn a_corrupt_store_stops_startup_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").join("tools.json");
    std::fs::create_dir_all(store.parent().unwrap()).unwrap();
    let contents = r#"{"formatVersion":1,"catalogVersion":3,"tools":[{"name":"#;
    std::fs::write(&store, contents).unwrap();

    let mut registry = Registry::spawn(dir.path(), &[], Stdio::null());
    let status = registry
        .exited_within(Duration::from_secs(10))
        .await
        .expect("the registry must refuse to start");
    assert!(!status.success());
    let log = registry.log();
    assert!(
        log.contains(&store.display().to_string()),
        "the error names the file: {log}"
    );
    assert!(log.contains("left untouched"), "{log}");
    assert_eq!(std::fs::read_to_string(&store).unwrap(), contents);
}

#[tokio::test]
async fn stops_when_its_parent_closes_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::spawn(dir.path(), &[("MCP_EXIT_WITH_PARENT", "1")], Stdio::piped());
    registry.wait_ready().await;
    drop(registry.take_stdin());
    let status = registry
        .exited_within(Duration::from_secs(10))
        .await
        .expect("the registry must exit when stdin closes");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn keeps_running_with_stdin_closed_when_not_told_to_follow_a_parent() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::start(dir.path(), &[("MCP_EXIT_WITH_PARENT", "false")]).await;
    assert!(registry.exited_within(Duration::from_millis(500)).await.is_none());
}

async fn sigterm_stops_it_promptly_even_with_a_watcher_connected(backend: &TestBackend) {
    let mut registry = backend.start(&[]).await;
    let mut events = registry
        .client()
        .watch_changes(pb::WatchChangesRequest {})
        .await
        .unwrap()
        .into_inner();
    events.next().await.unwrap().unwrap();

    registry.terminate();
    let status = registry
        .exited_within(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("an open watch held up shutdown; log:\n{}", registry.log()));
    assert!(status.success(), "{status}");
    let ended = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap();
    assert!(
        !matches!(ended, Some(Ok(_))),
        "no more events after shutdown: {ended:?}"
    );
}
