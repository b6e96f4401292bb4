//! What the registry needs from the database: a role with the documented
//! rights, its own schema (two schemas are two separate catalogs), and a
//! correct password, which it never logs.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use dynamic_mcp_proto::v1 as pb;
use sqlx::{Connection, Row};
use support::postgres::PgCluster;
use support::{Registry, WatchedCatalog, create_request, spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_made_for_the_registry_is_all_it_needs_and_schemas_stay_apart() {
    let cluster = PgCluster::start().await;
    // The second documented setup: no right on the database beyond CONNECT.
    cluster
        .admin_sql(
            "CREATE ROLE narrow LOGIN PASSWORD 'narrow-pw'; \
             GRANT CONNECT ON DATABASE tools TO narrow; \
             CREATE SCHEMA team_b AUTHORIZATION narrow;",
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let url_a = cluster.registry_url();
    let url_b = cluster.url("narrow", "narrow-pw");
    let a = Registry::start(
        &dir_a,
        &[("MCP_DYNAMIC_BACKEND", "postgres"), ("MCP_DYNAMIC_PG_URL", &url_a)],
    )
    .await;
    let b = Registry::start(
        &dir_b,
        &[
            ("MCP_DYNAMIC_BACKEND", "postgres"),
            ("MCP_DYNAMIC_PG_URL", &url_b),
            ("MCP_DYNAMIC_PG_SCHEMA", "team_b"),
        ],
    )
    .await;
    let mut watching_a = WatchedCatalog::open(&a).await;

    b.client().create(create_request(spec("only.in-b"))).await.unwrap();
    a.client().create(create_request(spec("only.in-a"))).await.unwrap();
    watching_a
        .until(Duration::from_secs(5), "A's create", |w| w.version == 1)
        .await;
    assert_eq!(
        watching_a.revisions(),
        [("only.in-a".to_string(), 1)],
        "B's change leaked into A"
    );
    let names = |listed: pb::ListToolsResponse| -> Vec<String> { listed.tools.into_iter().map(|t| t.name).collect() };
    let list = pb::ListToolsRequest::default;
    assert_eq!(
        names(a.client().list(list()).await.unwrap().into_inner()),
        ["only.in-a"]
    );
    assert_eq!(
        names(b.client().list(list()).await.unwrap().into_inner()),
        ["only.in-b"]
    );

    let tables = sqlx::query(
        "SELECT table_schema, count(*) FROM information_schema.tables \
         WHERE table_name IN ('catalog', 'tools', 'tool_changes', '_sqlx_migrations') \
         GROUP BY table_schema ORDER BY table_schema",
    )
    .fetch_all(&mut cluster.admin().await)
    .await
    .unwrap();
    let tables: Vec<(String, i64)> = tables.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(tables, [("dynamic_mcp".to_string(), 4), ("team_b".to_string(), 4)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_at_once_and_is_not_logged() {
    let cluster = PgCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = cluster.url("registry", "Wr0ng-pw-Mz4");
    let started = Instant::now();
    let mut registry = Registry::spawn(
        dir.path(),
        &[("MCP_DYNAMIC_BACKEND", "postgres"), ("MCP_DYNAMIC_PG_URL", &url)],
        Stdio::null(),
    );
    let status = registry
        .exited_within(Duration::from_secs(20))
        .await
        .expect("a wrong password must stop startup");
    assert!(!status.success());
    // Not retried: the default 30 attempts would take minutes.
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let log = registry.log();
    assert!(log.contains("password authentication failed"), "{log}");
    assert!(log.contains("registry:***@127.0.0.1"), "{log}");
    assert!(!log.contains("not reachable yet"), "{log}");
    assert!(!log.contains("Wr0ng-pw-Mz4"), "the password was logged:\n{log}");
}

/// A database the previous registry (only the first migration) wrote stays
/// usable: the new migration runs in place and every tool keeps its state,
/// with its current revision as its first kept one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_the_first_migration_is_migrated_in_place() {
    let cluster = PgCluster::start().await;
    cluster
        .admin_sql("CREATE SCHEMA dynamic_mcp AUTHORIZATION registry;")
        .await;
    let options = cluster
        .registry_url()
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap()
        .options([("search_path", "dynamic_mcp")]);
    let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut first = sqlx::migrate::Migrator::new(dir).await.unwrap();
    first.migrations = std::borrow::Cow::Owned(first.migrations[..1].to_vec());
    first.run(&mut conn).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO tools (name, title, description, image, timeout_ms, dependencies, code, enabled, created_at, \
         updated_at, revision) VALUES ('old.tool', NULL, 'From before', 'dynamic-mcp-sandbox:latest', 30000, '[]', \
         'return 1;', true, '2026-03-01T10:00:00Z', '2026-03-02T10:00:00Z', 4); \
         UPDATE catalog SET version = 9;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    drop(conn);

    let dir = tempfile::tempdir().unwrap();
    let url = cluster.registry_url();
    let registry = Registry::start(
        dir.path(),
        &[("MCP_DYNAMIC_BACKEND", "postgres"), ("MCP_DYNAMIC_PG_URL", &url)],
    )
    .await;
    let mut client = registry.client();
    let listed = client
        .list(pb::ListToolsRequest { include_code: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.catalog_version, 9);
    assert_eq!(
        listed
            .tools
            .iter()
            .map(|t| (t.name.as_str(), t.revision, t.code.as_str()))
            .collect::<Vec<_>>(),
        [("old.tool", 4, "return 1;")]
    );
    let kept = client
        .history(pb::ToolHistoryRequest {
            name: "old.tool".into(),
            limit: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.revisions.len(), 1);
    assert_eq!(
        (
            kept.revisions[0].kind.as_str(),
            kept.revisions[0].tool.as_ref().unwrap().revision
        ),
        ("migrated", 4)
    );
    let update = pb::UpdateToolRequest {
        name: "old.tool".into(),
        patch: Some(pb::ToolPatch {
            code: Some("return 5;".into()),
            ..Default::default()
        }),
        expected_revision: Some(4),
        ..Default::default()
    };
    client.update(update).await.unwrap();
    let rollback = pb::RollbackToolRequest {
        name: "old.tool".into(),
        revision: 4,
        ..Default::default()
    };
    client.rollback(rollback).await.unwrap();
    let now = client
        .get(pb::GetToolRequest {
            name: "old.tool".into(),
            revision: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (now.revision, now.code.as_str(), now.created_at.as_str()),
        (6, "return 1;", "2026-03-01T10:00:00.000Z")
    );
}
