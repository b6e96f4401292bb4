//! The audit file as an operator reads it: every field of every line,
//! truncation of oversized events, rotation, no secrets, and a failing disk
//! that is counted instead of crashing the server.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use serde_json::{Value, json};
use support::{HttpSession, Stack};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const FIELDS: &[&str] = &[
    "timestamp",
    "service",
    "serviceVersion",
    "action",
    "actor",
    "target",
    "result",
    "details",
];

fn assert_envelope(line: &Value) {
    let keys: Vec<&str> = line.as_object().unwrap().keys().map(String::as_str).collect();
    assert!(keys.iter().all(|k| FIELDS.contains(k)), "unexpected field in {line}");
    let at = OffsetDateTime::parse(line["timestamp"].as_str().unwrap(), &Rfc3339).unwrap();
    assert!((OffsetDateTime::now_utc() - at).whole_seconds().abs() < 120, "{line}");
    assert_eq!(line["service"], "dynamic-mcp");
    assert_eq!(line["serviceVersion"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn runs_and_admin_actions_are_audited_field_by_field() {
    let stack = Stack::new().await;
    stack.registry.create_tool("audited.tool").await;
    // No executor listens at the stack's executor address: the run fails.
    let frontend = stack.http_frontend(&[]).await;
    let mut session = HttpSession::open(&frontend.url, &[("x-request-id", "req-42")]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !session
        .request("tools/list", json!({}))
        .await
        .to_string()
        .contains("audited.tool")
    {
        assert!(std::time::Instant::now() < deadline, "audited.tool never listed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let secret_args = json!({"args": {"password": "hunter2-in-args", "text": "private payload"}});
    let run = session.call_tool("audited.tool", secret_args).await;
    assert!(run.is_error, "no executor answers here: {run:?}");
    let listed = session.call_tool("dynamic.tool.list", json!({})).await;
    assert!(!listed.is_error);

    let audit = stack.audit();
    let run_line = audit.wait_for(|l| l["action"] == "tool.run").await;
    assert_envelope(&run_line);
    assert_eq!(
        (&run_line["actor"], &run_line["target"], &run_line["result"]),
        (&json!("anonymous"), &json!("audited.tool"), &json!("error"))
    );
    let details = run_line["details"].as_object().unwrap();
    let mut keys: Vec<&str> = details.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["durationMs", "exitCode", "outcome", "requestId", "revision"]);
    assert_eq!(details["revision"], 1);
    assert_eq!(details["outcome"], "error");
    assert_eq!(details["exitCode"], Value::Null);
    assert_eq!(details["requestId"], "req-42");
    assert!(details["durationMs"].is_u64());

    let list_line = audit.wait_for(|l| l["action"] == "tool.list").await;
    assert_envelope(&list_line);
    assert_eq!(list_line["result"], "success");
    assert!(list_line.get("target").is_none(), "{list_line}");

    let text = audit.text();
    for secret in ["hunter2-in-args", "private payload", "return 1;"] {
        assert!(!text.contains(secret), "{secret} leaked into the audit file");
    }
}

#[tokio::test]
async fn oversized_events_keep_their_fields_and_mark_details_truncated() {
    let stack = Stack::new().await;
    let frontend = stack.http_frontend(&[("MCP_AUDIT_MAX_EVENT_BYTES", "1024")]).await;
    let mut session = HttpSession::open(&frontend.url, &[]).await;
    // The error message names the unknown field, so it is as long as the field.
    let field = format!("f{}", "x".repeat(900));
    let result = session
        .call_tool("dynamic.tool.list", json!({ field.as_str(): 1 }))
        .await;
    assert!(result.is_error);
    assert!(result.text.contains(&field));

    let line = stack.audit().wait_for(|l| l["action"] == "tool.list").await;
    assert_envelope(&line);
    let raw = stack.audit().text();
    assert!(raw.lines().all(|l| l.len() <= 1024), "a line is over the limit");
    assert_eq!(
        (&line["result"], &line["actor"]),
        (&json!("error"), &json!("anonymous"))
    );
    assert!(line.get("target").is_none(), "{line}");
    assert_eq!(line["details"]["truncated"], true);
    assert!(line["details"]["originalBytes"].as_u64().unwrap() > 1024, "{line}");
    assert_eq!(line["details"].as_object().unwrap().len(), 2);
}

#[tokio::test]
async fn the_audit_file_rotates_by_size() {
    let stack = Stack::new().await;
    let frontend = stack
        .http_frontend(&[
            ("MCP_ADMIN_TOKEN", "rotation-admin-token-123"),
            ("MCP_AUDIT_MAX_FILE_BYTES", "4096"),
            ("MCP_AUDIT_MAX_FILES", "2"),
        ])
        .await;
    let mut session = HttpSession::open(&frontend.url, &[]).await;
    for _ in 0..40 {
        assert!(session.call_tool("dynamic.tool.list", json!({})).await.is_error);
    }
    let rotated = stack.audit_file.with_file_name("audit.log.1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !rotated.exists() {
        assert!(std::time::Instant::now() < deadline, "the audit file never rotated");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!stack.audit_file.with_file_name("audit.log.2").exists());
    for path in [&stack.audit_file, &rotated] {
        assert!(std::fs::metadata(path).unwrap().len() <= 4096);
    }
}

#[tokio::test]
async fn a_full_disk_is_counted_and_the_server_keeps_serving() {
    let stack = Stack::new().await;
    let frontend = stack.http_frontend(&[("MCP_AUDIT_FILE", "/dev/full")]).await;
    let mut session = HttpSession::open(&frontend.url, &[]).await;
    for _ in 0..3 {
        assert!(!session.call_tool("dynamic.tool.list", json!({})).await.is_error);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = frontend.metrics().await;
        let failures = text
            .lines()
            .find_map(|l| l.strip_prefix("mcp_audit_write_failures_total "))
            .and_then(|n| n.trim().parse::<f64>().ok());
        if failures.is_some_and(|n| n >= 1.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no audit write failure counted:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!session.call_tool("system.health", json!({})).await.is_error);
    assert!(
        frontend.log.text().contains("cannot write the audit log"),
        "{}",
        frontend.log.text()
    );
}
