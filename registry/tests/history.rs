//! Revision history, get-at-revision, rollback, restore, retention,
//! idempotency keys and validate-only writes against the real binary, on
//! each backend: the same answers from either.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use std::time::{Duration, Instant};

use dynamic_mcp_proto::v1 as pb;
use support::{TestBackend, WatchedCatalog, assert_status, create_request, on_each_backend, spec};
use tonic::Code;

on_each_backend!(
    every_revision_is_kept_with_its_actor_and_changes,
    a_rollback_is_a_new_revision_equal_to_the_old_one,
    racing_rollbacks_behave_like_racing_updates,
    a_deleted_tool_can_be_restored_until_its_retention_ends,
    only_the_newest_revisions_are_kept,
    a_retried_write_with_its_key_gets_the_first_answer,
    a_validate_only_write_changes_nothing,
    new_fields_are_stored_and_carried,
);

fn write(actor: &str) -> Option<pb::WriteOptions> {
    Some(pb::WriteOptions {
        actor: actor.into(),
        ..Default::default()
    })
}

fn code_patch(code: &str) -> Option<pb::ToolPatch> {
    Some(pb::ToolPatch {
        code: Some(code.into()),
        ..Default::default()
    })
}

fn update(name: &str, code: &str, actor: &str) -> pb::UpdateToolRequest {
    pb::UpdateToolRequest {
        name: name.into(),
        patch: code_patch(code),
        write: write(actor),
        ..Default::default()
    }
}

fn get(name: &str, revision: Option<u64>) -> pb::GetToolRequest {
    pb::GetToolRequest {
        name: name.into(),
        revision,
    }
}

fn history(name: &str) -> pb::ToolHistoryRequest {
    pb::ToolHistoryRequest {
        name: name.into(),
        limit: None,
    }
}

fn rollback(name: &str, revision: u64, expected_revision: Option<u64>) -> pb::RollbackToolRequest {
    pb::RollbackToolRequest {
        name: name.into(),
        revision,
        expected_revision,
        write: write("sub:roller"),
    }
}

async fn every_revision_is_kept_with_its_actor_and_changes(backend: &TestBackend) {
    let registry = backend.start(&[]).await;
    let mut client = registry.client();
    let created = pb::CreateToolRequest {
        spec: Some(spec("hist.tool")),
        write: write("sub:alice"),
    };
    client.create(created).await.unwrap();
    client
        .update(update("hist.tool", "return 2;", "sub:bob"))
        .await
        .unwrap();
    let disable = pb::SetEnabledRequest {
        name: "hist.tool".into(),
        enabled: false,
        write: write("local"),
        ..Default::default()
    };
    client.set_enabled(disable).await.unwrap();

    let kept = client.history(history("hist.tool")).await.unwrap().into_inner();
    let summary: Vec<(u64, &str, &str, Vec<String>)> = kept
        .revisions
        .iter()
        .map(|r| {
            let tool = r.tool.as_ref().unwrap();
            (
                tool.revision,
                r.kind.as_str(),
                r.actor.as_str(),
                r.changed_fields.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (3, "disabled", "local", vec!["enabled".to_string()]),
            (2, "updated", "sub:bob", vec!["code".to_string()]),
            (1, "created", "sub:alice", vec![]),
        ]
    );
    assert!(
        kept.revisions.iter().all(|r| r.tool.as_ref().unwrap().code.is_empty()),
        "history has no code"
    );
    assert_eq!(kept.history_limit, 50);
    assert!(kept.deleted.is_none());
    let page = client
        .history(pb::ToolHistoryRequest {
            name: "hist.tool".into(),
            limit: Some(1),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((page.revisions.len(), page.more), (1, 2));

    let first = client.get(get("hist.tool", Some(1))).await.unwrap().into_inner();
    assert_eq!(
        (first.revision, first.code.as_str()),
        (1, spec("hist.tool").code.as_str())
    );
    let current = client.get(get("hist.tool", None)).await.unwrap().into_inner();
    assert_eq!(
        (current.revision, current.code.as_str(), current.enabled),
        (3, "return 2;", false)
    );
    assert_status(
        client.get(get("hist.tool", Some(9))).await,
        Code::NotFound,
        &[
            "revision 9 of 'hist.tool' is not kept",
            "current revision is 3",
            "dynamic.tool.history",
        ],
    );
    assert_status(
        client.history(history("no.such")).await,
        Code::NotFound,
        &["no dynamic tool named"],
    );
}

async fn a_rollback_is_a_new_revision_equal_to_the_old_one(backend: &TestBackend) {
    let registry = backend.start(&[]).await;
    let mut client = registry.client();
    let mut watching = WatchedCatalog::open(&registry).await;
    client.create(create_request(spec("roll.tool"))).await.unwrap();
    client
        .update(update("roll.tool", "return 'broken';", "x"))
        .await
        .unwrap();
    watching
        .until(Duration::from_secs(5), "two writes", |w| w.version == 2)
        .await;

    let rolled = client
        .rollback(rollback("roll.tool", 1, Some(2)))
        .await
        .unwrap()
        .into_inner();
    assert!(rolled.changed);
    let tool = rolled.tool.unwrap();
    assert_eq!((tool.revision, rolled.catalog_version), (3, 3));
    let now = client.get(get("roll.tool", None)).await.unwrap().into_inner();
    let first = client.get(get("roll.tool", Some(1))).await.unwrap().into_inner();
    assert_eq!(now.code, first.code);
    assert_eq!(
        (now.timeout_ms, &now.dependencies),
        (first.timeout_ms, &first.dependencies)
    );
    let event = watching.next(Duration::from_secs(5)).await;
    assert_eq!(event.catalog_version, 3, "one event for the rollback");
    let kept = client.history(history("roll.tool")).await.unwrap().into_inner();
    assert_eq!(
        (kept.revisions[0].kind.as_str(), kept.revisions[0].rolled_back_to),
        ("rolledBack", Some(1))
    );
    assert_eq!(kept.revisions[0].actor, "sub:roller");

    // Rolling back to what it already is changes nothing.
    let again = client
        .rollback(rollback("roll.tool", 3, None))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.changed);
    assert_eq!((again.tool.unwrap().revision, again.catalog_version), (3, 3));
    assert_status(
        client.rollback(rollback("roll.tool", 1, Some(2))).await,
        Code::Aborted,
        &["expectedRevision is 2", "current revision is 3"],
    );
    assert_status(
        client.rollback(rollback("roll.tool", 7, None)).await,
        Code::NotFound,
        &["revision 7 of 'roll.tool' is not kept"],
    );
}

async fn racing_rollbacks_behave_like_racing_updates(backend: &TestBackend) {
    let registry = backend.start(&[]).await;
    let mut client = registry.client();
    client.create(create_request(spec("race.tool"))).await.unwrap();
    client.update(update("race.tool", "return 2;", "x")).await.unwrap();
    client.update(update("race.tool", "return 3;", "x")).await.unwrap();
    let (mut a, mut b) = (registry.client(), registry.client());
    let (first, second) = tokio::join!(
        a.rollback(rollback("race.tool", 1, Some(3))),
        b.rollback(rollback("race.tool", 2, Some(3)))
    );
    let outcomes = [
        first.map(|r| r.into_inner().tool.unwrap().revision),
        second.map(|r| r.into_inner().tool.unwrap().revision),
    ];
    let won: Vec<u64> = outcomes.iter().filter_map(|o| o.as_ref().ok().copied()).collect();
    let lost: Vec<&tonic::Status> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(won, [4], "exactly one rollback wins: {outcomes:?}");
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].code(), Code::Aborted, "{:?}", lost[0]);
    // Without expectedRevision both apply, one after the other.
    let (first, second) = tokio::join!(
        a.rollback(rollback("race.tool", 1, None)),
        b.rollback(rollback("race.tool", 2, None))
    );
    let answers = [first.unwrap().into_inner(), second.unwrap().into_inner()];
    assert!(answers.iter().any(|a| a.changed), "{answers:?}");
    let current = client.get(get("race.tool", None)).await.unwrap().into_inner();
    assert!(current.revision >= 5, "{current:?}");
    assert_eq!(
        client
            .history(history("race.tool"))
            .await
            .unwrap()
            .into_inner()
            .revisions
            .len() as u64,
        current.revision
    );
}

async fn a_deleted_tool_can_be_restored_until_its_retention_ends(backend: &TestBackend) {
    let registry = backend.start(&[("MCP_DYNAMIC_DELETED_RETENTION_SECONDS", "3")]).await;
    let mut client = registry.client();
    let mut watching = WatchedCatalog::open(&registry).await;
    client.create(create_request(spec("gone.tool"))).await.unwrap();
    client.update(update("gone.tool", "return 2;", "x")).await.unwrap();
    let delete = pb::DeleteToolRequest {
        name: "gone.tool".into(),
        write: write("sub:deleter"),
        ..Default::default()
    };
    client.delete(delete.clone()).await.unwrap();
    watching
        .until(Duration::from_secs(5), "the delete", |w| w.version == 3)
        .await;

    let kept = client.history(history("gone.tool")).await.unwrap().into_inner();
    let deleted = kept.deleted.expect("the history says it is deleted");
    assert_eq!((deleted.revision, deleted.deleted_by.as_str()), (2, "sub:deleter"));
    assert!(deleted.kept_until > deleted.deleted_at);
    assert_eq!(
        client
            .get(get("gone.tool", Some(1)))
            .await
            .unwrap()
            .into_inner()
            .revision,
        1
    );
    assert_status(
        client.get(get("gone.tool", None)).await,
        Code::NotFound,
        &["no dynamic tool named"],
    );

    let restore = |revision| pb::RestoreToolRequest {
        name: "gone.tool".into(),
        revision,
        write: write("sub:restorer"),
    };
    let restored = client.restore(restore(Some(1))).await.unwrap().into_inner();
    let tool = restored.tool.unwrap();
    assert_eq!((tool.revision, restored.catalog_version), (3, 4));
    let event = watching.next(Duration::from_secs(5)).await;
    assert_eq!(event.catalog_version, 4);
    assert!(watching.tools.contains_key("gone.tool"));
    let current = client.get(get("gone.tool", None)).await.unwrap().into_inner();
    assert_eq!(current.code, spec("gone.tool").code, "restored as revision 1 was");
    assert_status(
        client.restore(restore(None)).await,
        Code::AlreadyExists,
        &["nothing to restore", "dynamic.tool.rollback"],
    );

    // Deleted again, and kept only for the retention period.
    client.delete(delete).await.unwrap();
    assert!(
        client
            .history(history("gone.tool"))
            .await
            .unwrap()
            .into_inner()
            .deleted
            .is_some()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.history(history("gone.tool")).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the deleted tool's history outlived its retention"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_status(
        client.restore(restore(None)).await,
        Code::NotFound,
        &["no deleted tool named 'gone.tool' is kept"],
    );
    assert_status(
        client.get(get("gone.tool", Some(1))).await,
        Code::NotFound,
        &["no dynamic tool named"],
    );
    assert_status(
        client.history(history("gone.tool")).await,
        Code::NotFound,
        &["no dynamic tool named"],
    );
}

async fn only_the_newest_revisions_are_kept(backend: &TestBackend) {
    let registry = backend.start(&[("MCP_DYNAMIC_HISTORY_LIMIT", "3")]).await;
    let mut client = registry.client();
    client.create(create_request(spec("short.tool"))).await.unwrap();
    for n in 2..=5 {
        client
            .update(update("short.tool", &format!("return {n};"), "x"))
            .await
            .unwrap();
    }
    let kept = client.history(history("short.tool")).await.unwrap().into_inner();
    let revisions: Vec<u64> = kept
        .revisions
        .iter()
        .map(|r| r.tool.as_ref().unwrap().revision)
        .collect();
    assert_eq!((revisions, kept.history_limit), (vec![5, 4, 3], 3));
    assert_status(
        client.rollback(rollback("short.tool", 1, None)).await,
        Code::NotFound,
        &["is not kept"],
    );
    client.rollback(rollback("short.tool", 3, None)).await.unwrap();
}

async fn a_retried_write_with_its_key_gets_the_first_answer(backend: &TestBackend) {
    let registry = backend.start(&[]).await;
    let mut client = registry.client();
    let mut watching = WatchedCatalog::open(&registry).await;
    let keyed = |key: &str, spec: pb::ToolSpec| pb::CreateToolRequest {
        spec: Some(spec),
        write: Some(pb::WriteOptions {
            actor: "sub:retry".into(),
            idempotency_key: Some(key.into()),
            validate_only: false,
        }),
    };
    let first = client
        .create(keyed("key-1", spec("once.tool")))
        .await
        .unwrap()
        .into_inner();
    let retry = client
        .create(keyed("key-1", spec("once.tool")))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.replayed && retry.replayed);
    assert_eq!(retry.catalog_version, first.catalog_version);
    assert_eq!(retry.tool, first.tool);
    assert_status(
        client.create(keyed("key-1", spec("other.tool"))).await,
        Code::InvalidArgument,
        &["idempotencyKey 'key-1' was already used for a different request"],
    );
    let mut keyed_update = update("once.tool", "return 2;", "sub:retry");
    keyed_update.write.as_mut().unwrap().idempotency_key = Some("key-2".into());
    let updated = client.update(keyed_update.clone()).await.unwrap().into_inner();
    let again = client.update(keyed_update).await.unwrap().into_inner();
    assert_eq!((updated.tool.unwrap().revision, again.tool.unwrap().revision), (2, 2));
    assert!(again.replayed);
    watching
        .until(Duration::from_secs(5), "both writes", |w| w.version == 2)
        .await;
    let listed = client.list(pb::ListToolsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.catalog_version, 2, "the retries wrote nothing");
    assert_eq!(
        client
            .history(history("once.tool"))
            .await
            .unwrap()
            .into_inner()
            .revisions
            .len(),
        2
    );
}

async fn a_validate_only_write_changes_nothing(backend: &TestBackend) {
    let registry = backend.start(&[]).await;
    let mut client = registry.client();
    let check = |spec| pb::CreateToolRequest {
        spec: Some(spec),
        write: Some(pb::WriteOptions {
            validate_only: true,
            ..Default::default()
        }),
    };
    let checked = client.create(check(spec("dry.tool"))).await.unwrap().into_inner();
    assert!(!checked.changed);
    assert_eq!(
        checked.tool.unwrap().code,
        spec("dry.tool").code,
        "a check answers with the code"
    );
    assert_status(
        client.create(check(spec("1bad"))).await,
        Code::InvalidArgument,
        &["must start with a letter"],
    );
    let listed = client.list(pb::ListToolsRequest::default()).await.unwrap().into_inner();
    assert_eq!((listed.tools.len(), listed.catalog_version), (0, 0));

    client.create(create_request(spec("dry.tool"))).await.unwrap();
    let mut dry_update = update("dry.tool", "return 'next';", "x");
    dry_update.write.as_mut().unwrap().validate_only = true;
    let next = client.update(dry_update).await.unwrap().into_inner();
    assert_eq!((next.base_revision, next.tool.as_ref().unwrap().revision), (1, 2));
    assert_eq!(next.tool.unwrap().code, "return 'next';");
    assert_eq!(
        client.get(get("dry.tool", None)).await.unwrap().into_inner().revision,
        1
    );
}

async fn new_fields_are_stored_and_carried(backend: &TestBackend) {
    let registry = backend.start(&[]).await;
    let mut client = registry.client();
    let typed = pb::ToolSpec {
        input_schema_json: Some(
            r#"{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}"#.into(),
        ),
        output_schema_json: Some(r#"{"type":"object"}"#.into()),
        annotations: Some(pb::ToolAnnotations {
            read_only_hint: Some(true),
            title: Some("Typed".into()),
            ..Default::default()
        }),
        examples: vec![pb::ToolExample {
            args_json: r#"{"text":"a"}"#.into(),
            expect_json: Some(r#"{"upper":"A"}"#.into()),
        }],
        arguments: pb::ArgumentsMode::Flat.into(),
        isolation: pb::Isolation::ContainerPerTool.into(),
        network: Some(pb::NetworkPolicy {
            allow: vec!["api.example.com:443".into()],
        }),
        secrets: vec!["API_TOKEN".into()],
        ..spec("typed.tool")
    };
    client.create(create_request(typed.clone())).await.unwrap();
    let stored = client.get(get("typed.tool", None)).await.unwrap().into_inner();
    let json = |text: &Option<String>| {
        text.as_deref()
            .map(|t| serde_json::from_str::<serde_json::Value>(t).unwrap())
    };
    assert_eq!(json(&stored.input_schema_json), json(&typed.input_schema_json));
    assert_eq!(stored.annotations, typed.annotations);
    assert_eq!(stored.examples.len(), 1);
    assert_eq!(
        (stored.arguments(), stored.isolation()),
        (pb::ArgumentsMode::Flat, pb::Isolation::ContainerPerTool)
    );
    assert_eq!(
        (stored.network, stored.secrets.clone()),
        (typed.network.clone(), typed.secrets.clone())
    );

    let cleared = pb::UpdateToolRequest {
        name: "typed.tool".into(),
        patch: Some(pb::ToolPatch {
            clear_input_schema: true,
            clear_network: true,
            isolation: Some(pb::Isolation::Unspecified.into()),
            secrets: Some(pb::StringList::default()),
            ..Default::default()
        }),
        ..Default::default()
    };
    client.update(cleared).await.unwrap();
    let now = client.get(get("typed.tool", None)).await.unwrap().into_inner();
    assert_eq!(now.isolation(), pb::Isolation::Unspecified);
    assert_eq!((now.input_schema_json, now.network, now.secrets.len()), (None, None, 0));
    // The old revision keeps them, and a rollback brings them back.
    client.rollback(rollback("typed.tool", 1, None)).await.unwrap();
    let back = client.get(get("typed.tool", None)).await.unwrap().into_inner();
    assert_eq!(back.secrets, typed.secrets);
    assert_status(
        client
            .create(create_request(pb::ToolSpec {
                input_schema_json: Some(r#"{"type":"object","properties":{"a":{"type":"strin"}}}"#.into()),
                ..spec("bad.schema")
            }))
            .await,
        Code::InvalidArgument,
        &["inputSchema is not a usable JSON Schema at /properties/a/type"],
    );
}
