//! What the registry needs from the database: a role with the documented
//! rights, its own schema (two schemas are two separate catalogs), and a
//! correct password, which it never logs.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use dynamic_mcp_proto::v1 as pb;
use sqlx::Row;
use support::postgres::PgCluster;
use support::{Registry, WatchedCatalog, create_request, spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_made_for_the_registry_is_all_it_needs_and_schemas_stay_apart() {
    let Some(cluster) = PgCluster::start().await else {
        return;
    };
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
    let Some(cluster) = PgCluster::start().await else {
        return;
    };
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
