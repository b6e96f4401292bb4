//! An acknowledged write is on disk, and a crash never leaves a broken
//! store: SIGKILL the registry in the middle of a burst of creates, restart
//! it, and check what it holds.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use dynamic_mcp_proto::v1 as pb;
use dynamic_mcp_proto::v1::registry_client::RegistryClient;
use dynamic_mcp_registry::rules;
use support::{Registry, assert_matches_spec, create_request, spec, stray_files};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

const BURST: usize = 200;
const KILL_AFTER_ACKS: usize = 50;

/// Big records make each write of the whole file take a while, so the kill
/// can land inside one; a store that wrote in place would then be
/// left truncated.
fn with_bulky_code(spec: pb::ToolSpec) -> pb::ToolSpec {
    let code = format!("{}\n// {}", spec.code, "padding ".repeat(4000));
    pb::ToolSpec { code, ..spec }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_creates_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::start(dir.path(), &[]).await;
    let sent: HashMap<String, pb::ToolSpec> = (0..BURST)
        .map(|i| spec(&format!("burst.tool-{i:03}")))
        .map(with_bulky_code)
        .map(|spec| (spec.name.clone(), spec))
        .collect();

    let channel = registry.channel();
    let (acks_tx, mut acks_rx) = mpsc::unbounded_channel();
    let mut calls = JoinSet::new();
    for spec in sent.values().cloned() {
        let mut client = RegistryClient::new(channel.clone());
        let acks_tx = acks_tx.clone();
        calls.spawn(async move {
            let written = client.create(create_request(spec)).await.ok()?.into_inner();
            let _ = acks_tx.send(());
            written.tool
        });
    }
    for _ in 0..KILL_AFTER_ACKS {
        tokio::time::timeout(Duration::from_secs(60), acks_rx.recv())
            .await
            .expect("the registry stopped acknowledging creates")
            .unwrap();
    }
    registry.kill();

    // Every answer that arrived was sent after its write was durable, even
    // the ones that arrive after the kill.
    let mut acked = HashMap::new();
    while let Some(call) = calls.join_next().await {
        if let Some(tool) = call.unwrap() {
            acked.insert(tool.name.clone(), tool);
        }
    }
    assert!(acked.len() >= KILL_AFTER_ACKS);
    assert!(
        acked.len() < BURST,
        "the kill came after the whole burst, so it tested nothing; its log:\n{}",
        registry.log()
    );

    let restarted = Registry::start(dir.path(), &[]).await;
    assert_eq!(
        stray_files(restarted.store_dir()),
        Vec::<String>::new(),
        "temp files left behind"
    );
    let listed = restarted
        .client()
        .list(pb::ListToolsRequest { include_code: true })
        .await
        .unwrap()
        .into_inner();
    let present: HashMap<&str, &pb::ToolRecord> = listed.tools.iter().map(|t| (t.name.as_str(), t)).collect();

    for (name, ack) in &acked {
        let tool = present
            .get(name.as_str())
            .unwrap_or_else(|| panic!("the acknowledged create of {name} was lost"));
        assert_eq!(tool.created_at, ack.created_at, "{name}");
        assert_eq!(tool.revision, ack.revision, "{name}");
    }
    // A create may have reached the disk without its answer reaching us;
    // whatever is there must be whole and exactly what was sent.
    for tool in &listed.tools {
        let spec = sent.get(&tool.name).expect("a tool nobody created");
        assert_matches_spec(tool, spec);
        assert_eq!(tool.revision, 1);
        assert_eq!(tool.created_at, tool.updated_at);
        assert!(
            OffsetDateTime::parse(&tool.created_at, &Rfc3339).is_ok(),
            "{}",
            tool.created_at
        );
        assert!(rules::check_name(&tool.name).is_ok());
    }
    assert_eq!(
        listed.catalog_version,
        listed.tools.len() as u64,
        "one version per create"
    );

    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&restarted.store).unwrap()).unwrap();
    assert_eq!(file["formatVersion"], 2);
    assert_eq!(file["catalogVersion"], listed.catalog_version);
    let names_on_disk: Vec<&str> = file["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let names_listed: Vec<&str> = listed.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names_on_disk, names_listed);
    // Each stored tool has exactly its one revision kept, whatever the kill interrupted.
    for tool in &listed.tools {
        let history = restarted
            .client()
            .history(pb::ToolHistoryRequest {
                name: tool.name.clone(),
                limit: None,
            })
            .await
            .unwrap()
            .into_inner();
        let kept: Vec<u64> = history
            .revisions
            .iter()
            .map(|r| r.tool.as_ref().unwrap().revision)
            .collect();
        assert_eq!(kept, [1], "{}", tool.name);
    }
}
