//! The write and read RPCs against the real binary, including every way a
//! request is refused, on each backend: the same answers from either.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use dynamic_mcp_proto::v1 as pb;
use support::{TestBackend, assert_matches_spec, assert_status, create_request, on_each_backend, spec};
use tonic::Code;

on_each_backend!(
    a_tool_goes_through_its_whole_life,
    a_second_create_of_a_name_is_already_exists,
    reserved_and_malformed_names_are_invalid,
    field_rules_reach_the_caller,
    the_tool_limit_is_enforced,
);

async fn a_tool_goes_through_its_whole_life(backend: &TestBackend) {
    let registry = backend.start(&[]).await;
    let mut client = registry.client();
    let sent = spec("text.upper");

    let created = client.create(create_request(sent.clone())).await.unwrap().into_inner();
    let tool = created.tool.unwrap();
    assert_eq!((tool.revision, created.catalog_version), (1, 1));
    assert_eq!(tool.code, "", "write responses carry no code");
    assert_eq!(tool.code_size_bytes, sent.code.len() as u64);
    assert_eq!(tool.created_at, tool.updated_at);
    assert!(time::OffsetDateTime::parse(&tool.created_at, &time::format_description::well_known::Rfc3339).is_ok());

    let fetched = client
        .get(pb::GetToolRequest {
            name: "text.upper".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_matches_spec(&fetched, &sent);
    assert_eq!(fetched.revision, 1);

    let update = |expected_revision| pb::UpdateToolRequest {
        name: "text.upper".into(),
        patch: Some(pb::ToolPatch {
            code: Some("return 2;".into()),
            timeout_ms: Some(9000),
            ..Default::default()
        }),
        expected_revision,
        ..Default::default()
    };
    let updated = client.update(update(Some(1))).await.unwrap().into_inner();
    let tool = updated.tool.unwrap();
    assert_eq!((tool.revision, updated.catalog_version), (2, 2));
    assert_eq!((tool.timeout_ms, tool.code_size_bytes), (9000, 9));
    assert_eq!(tool.created_at, fetched.created_at);

    assert_status(
        client.update(update(Some(1))).await,
        Code::Aborted,
        &["expectedRevision is 1", "current revision is 2", "dynamic.tool.get"],
    );

    let set_enabled = |enabled, expected_revision| pb::SetEnabledRequest {
        name: "text.upper".into(),
        enabled,
        expected_revision,
        ..Default::default()
    };
    let disabled = client
        .set_enabled(set_enabled(false, Some(2)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (disabled.tool.as_ref().unwrap().enabled, disabled.catalog_version),
        (false, 3)
    );
    let enabled = client.set_enabled(set_enabled(true, None)).await.unwrap().into_inner();
    assert_eq!(enabled.tool.as_ref().unwrap().revision, 4);
    let again = client
        .set_enabled(set_enabled(true, Some(4)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (again.tool.unwrap().revision, again.catalog_version),
        (4, 4),
        "enabling an enabled tool changes nothing"
    );

    let listed = client
        .list(pb::ListToolsRequest { include_code: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.catalog_version, 4);
    assert_eq!(listed.tools.len(), 1);
    assert_eq!(
        (listed.tools[0].code.as_str(), listed.tools[0].code_size_bytes),
        ("", 9)
    );
    let listed = client
        .list(pb::ListToolsRequest { include_code: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tools[0].code, "return 2;");

    assert_status(
        client
            .delete(pb::DeleteToolRequest {
                name: "text.upper".into(),
                expected_revision: Some(3),
                ..Default::default()
            })
            .await,
        Code::Aborted,
        &["expectedRevision is 3", "current revision is 4"],
    );
    let deleted = client
        .delete(pb::DeleteToolRequest {
            name: "text.upper".into(),
            expected_revision: Some(4),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((deleted.tool.unwrap().revision, deleted.catalog_version), (4, 5));
    assert_status(
        client
            .get(pb::GetToolRequest {
                name: "text.upper".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &["no dynamic tool named 'text.upper'", "dynamic.tool.list"],
    );
    let listed = client.list(pb::ListToolsRequest::default()).await.unwrap().into_inner();
    assert_eq!((listed.tools.len(), listed.catalog_version), (0, 5));
}

async fn a_second_create_of_a_name_is_already_exists(backend: &TestBackend) {
    let registry = backend.start(&[]).await;
    let mut client = registry.client();
    client.create(create_request(spec("dup.tool"))).await.unwrap();
    assert_status(
        client.create(create_request(spec("dup.tool"))).await,
        Code::AlreadyExists,
        &[
            "a tool named 'dup.tool' already exists (revision 1)",
            "dynamic.tool.update",
        ],
    );
}

async fn reserved_and_malformed_names_are_invalid(backend: &TestBackend) {
    let registry = backend.start(&[]).await;
    let mut client = registry.client();
    let cases: [(&str, &[&str]); 5] = [
        ("system.health", &["reserved", "built-in tool 'system.health'"]),
        ("sandbox.x", &["reserved", "'sandbox.'"]),
        ("a:b", &["contains ':'", "2025-11-25"]),
        ("1abc", &["must start with a letter"]),
        ("ab", &["name must be 3..64 characters (got 2)"]),
    ];
    for (name, needles) in cases {
        assert_status(
            client.create(create_request(spec(name))).await,
            Code::InvalidArgument,
            needles,
        );
    }
    let listed = client.list(pb::ListToolsRequest::default()).await.unwrap().into_inner();
    assert!(listed.tools.is_empty());
}

async fn field_rules_reach_the_caller(backend: &TestBackend) {
    let registry = backend.start(&[]).await;
    let mut client = registry.client();
    let empty_description = pb::ToolSpec {
        description: String::new(),
        ..spec("field.rules")
    };
    assert_status(
        client.create(create_request(empty_description)).await,
        Code::InvalidArgument,
        &["description must be 1..4000 characters (got 0)"],
    );
    assert_status(
        client
            .create(pb::CreateToolRequest {
                spec: None,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["spec is required"],
    );
    client.create(create_request(spec("field.rules"))).await.unwrap();
    let bad_patch = pb::UpdateToolRequest {
        name: "field.rules".into(),
        patch: Some(pb::ToolPatch {
            timeout_ms: Some(200_000),
            ..Default::default()
        }),
        expected_revision: None,
        ..Default::default()
    };
    assert_status(
        client.update(bad_patch).await,
        Code::InvalidArgument,
        &["timeoutMs must be 1000..120000 milliseconds (got 200000)"],
    );
}

async fn the_tool_limit_is_enforced(backend: &TestBackend) {
    let registry = backend.start(&[("MCP_DYNAMIC_MAX_TOOLS", "3")]).await;
    let mut client = registry.client();
    for name in ["one.tool", "two.tool", "three.tool"] {
        client.create(create_request(spec(name))).await.unwrap();
    }
    assert_status(
        client.create(create_request(spec("four.tool"))).await,
        Code::ResourceExhausted,
        &["at most 3 dynamic tools", "MCP_DYNAMIC_MAX_TOOLS", "delete one first"],
    );
    client
        .delete(pb::DeleteToolRequest {
            name: "one.tool".into(),
            expected_revision: None,
            ..Default::default()
        })
        .await
        .unwrap();
    client.create(create_request(spec("four.tool"))).await.unwrap();
}
