//! HTTP hardening: security headers and request ids on every answer, Host
//! and Origin checks (DNS-rebinding protection), the body limit, /metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::{Stack, headers, initialize_body, post};

#[tokio::test]
async fn every_answer_has_security_headers_and_a_request_id() {
    let stack = Stack::new().await;
    let frontend = stack.http_frontend(&[]).await;
    let probe = reqwest::get(format!("{}/healthz", frontend.base)).await.unwrap();
    let mcp = post(
        &frontend.url,
        &headers(&[("x-request-id", "client-chosen-id")]),
        &initialize_body(),
    )
    .await;
    for response in [&probe, &mcp] {
        let h = response.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cache-control"], "no-store");
        assert!(h.contains_key("content-security-policy"));
    }
    assert_eq!(mcp.status(), StatusCode::OK);
    assert_eq!(mcp.headers()["x-request-id"], "client-chosen-id");
    let generated = probe.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused() {
    let stack = Stack::new().await;
    let frontend = stack.http_frontend(&[]).await;
    let client = reqwest::Client::new();
    for path in ["/metrics", "/healthz", "/mcp"] {
        let response = client
            .get(format!("{}{path}", frontend.base))
            .header("host", "rebound.evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let evil = post(
        &frontend.url,
        &headers(&[("origin", "https://evil.example")]),
        &initialize_body(),
    )
    .await;
    assert_eq!(evil.status(), StatusCode::FORBIDDEN);
    let local = post(
        &frontend.url,
        &headers(&[("origin", "http://localhost:3000")]),
        &initialize_body(),
    )
    .await;
    assert_eq!(local.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_200000_character_tool_fits_and_huge_bodies_do_not() {
    let stack = Stack::new().await;
    let frontend = stack.http_frontend(&[("MCP_DYNAMIC_READ_ONLY", "true")]).await;
    let mut session = support::HttpSession::open(&frontend.url, &[]).await;
    // Every character escaped in JSON: the worst case for the body size.
    let code = "\u{1}".repeat(200_000);
    let create = session
        .call_tool(
            "dynamic.tool.create",
            json!({"tool": {"name": "big.tool", "description": "d", "code": code}}),
        )
        .await;
    assert!(
        create.text.contains("read-only"),
        "the request reached the tool: {}",
        create.text
    );

    let huge = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": {"name": "dynamic.tool.create", "arguments": {"tool": {"code": "x".repeat(5 << 20)}}}});
    let response = post(&frontend.url, &headers(&[]), &huge).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let stack = Stack::new().await;
    let frontend = stack.http_frontend(&[]).await;
    let mut session = support::HttpSession::open(&frontend.url, &[]).await;
    assert!(!session.call_tool("system.health", json!({})).await.is_error);
    let response = reqwest::get(format!("{}/metrics", frontend.base)).await.unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains(r#"mcp_tool_calls_total{tool="system.health",scope="system",outcome="ok"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("# TYPE mcp_tool_call_duration_seconds histogram"),
        "{text}"
    );
}
