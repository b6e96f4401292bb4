//! One guard per process: its concurrency cap holds across connections, its
//! rate budget survives new sessions, and its metrics (tool, resource and
//! Prometheus) say what happened.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use serde_json::{Value, json};
use support::{BlackHole, HttpSession, Stack, with};

/// The guard metrics through the resource (reading it is not a tool call,
/// so it spends no budget).
async fn guard_metrics(session: &mut HttpSession) -> Value {
    let resource = session
        .request("resources/read", json!({"uri": "dynamic://metrics/guard"}))
        .await;
    let contents = &resource["result"]["contents"][0];
    assert_eq!(contents["mimeType"], "application/json");
    serde_json::from_str(contents["text"].as_str().unwrap()).unwrap()
}

fn scope<'a>(metrics: &'a Value, name: &str) -> &'a Value {
    metrics["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["scope"] == name)
        .unwrap_or_else(|| panic!("no scope {name} in {metrics}"))
}

#[tokio::test]
async fn a_new_session_does_not_reset_the_rate_budget() {
    let stack = Stack::new().await;
    let frontend = stack
        .http_frontend(&[
            ("MCP_TOOL_MAX_CALLS_PER_WINDOW", "3"),
            ("MCP_TOOL_RATE_WINDOW_MS", "60000"),
        ])
        .await;
    let mut first = HttpSession::open(&frontend.url, &[]).await;
    for _ in 0..3 {
        assert!(!first.call_tool("system.health", json!({})).await.is_error);
    }
    let mut second = HttpSession::open(&frontend.url, &[]).await;
    let refused = second.call_tool("system.health", json!({})).await;
    assert!(refused.is_error);
    assert!(
        refused
            .text
            .starts_with("rate limit reached: at most 3 system tool calls per 60000 ms"),
        "{}",
        refused.text
    );
    assert_eq!(refused.structured["reason"], "rateLimited");
    assert!(refused.structured["retryAfterMs"].as_u64().unwrap() > 0);

    // The resource reports the counters.
    let metrics = guard_metrics(&mut second).await;
    assert_eq!(
        scope(&metrics, "system"),
        &json!({"scope": "system", "total": 4, "allowed": 3, "rejectedRate": 1, "rejectedConcurrency": 0, "failed": 0})
    );
    assert_eq!(
        metrics["limits"],
        json!({"maxConcurrency": 8, "maxCallsPerWindow": 3, "windowMs": 60000})
    );
    let listed = second.request("resources/list", json!({})).await;
    assert_eq!(listed["result"]["resources"][0]["uri"], "dynamic://metrics/guard");

    let line = stack.audit().wait_for(|l| l["details"]["reason"] == "guard_rate").await;
    assert_eq!(
        (&line["action"], &line["result"]),
        (&json!("system.health"), &json!("denied"))
    );
}

#[tokio::test]
async fn the_concurrency_cap_holds_across_connections_without_spending_rate_budget() {
    let stack = Stack::new().await;
    let executor = BlackHole::start(stack.dir.path());
    stack.registry.create_tool("slow.tool").await;
    let env = with(
        stack.env(),
        &[
            ("MCP_EXECUTOR_URL", &format!("unix:{}", executor.path.display())),
            ("MCP_TOOL_MAX_CONCURRENCY", "2"),
            ("MCP_TOOL_MAX_CALLS_PER_WINDOW", "4"),
        ],
    );
    let frontend = support::Frontend::http(&env).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(HttpSession::open(&frontend.url, &[]).await);
    }
    // Wait until the frontend's catalog lists the tool.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let tools = sessions[0].request("tools/list", json!({})).await;
        if tools.to_string().contains("slow.tool") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slow.tool never listed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Two calls from two connections hang in the executor and hold both slots.
    let mut holders = Vec::new();
    for mut session in sessions.drain(..2) {
        holders.push(tokio::spawn(async move {
            session.call_tool("slow.tool", json!({"args": {}})).await
        }));
    }
    let mut observer = sessions.pop().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let metrics = guard_metrics(&mut observer).await;
        if metrics["activeExecutions"] == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the calls never started: {metrics:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Five more calls from a third connection, all at once: each is refused.
    let refused = futures::future::join_all((0..5).map(|_| {
        let url = frontend.url.clone();
        async move {
            let mut session = HttpSession::open(&url, &[]).await;
            session.call_tool("slow.tool", json!({"args": {}})).await
        }
    }))
    .await;
    for result in &refused {
        assert!(result.is_error);
        assert!(
            result
                .text
                .starts_with("the server is busy: 2 tool calls are already running"),
            "{}",
            result.text
        );
    }

    executor.release();
    for holder in holders {
        let result = holder.await.unwrap();
        assert!(
            result.is_error,
            "the executor never answered, so the run fails: {result:?}"
        );
    }
    let tool = observer.call_tool("system.guard_metrics", json!({})).await.structured;
    let metrics = guard_metrics(&mut observer).await;
    assert_eq!(tool, metrics, "the tool and the resource report the same");
    assert_eq!(metrics["activeExecutions"], 0);
    assert_eq!(
        scope(&metrics, "dynamic"),
        &json!({"scope": "dynamic", "total": 7, "allowed": 2, "rejectedRate": 0, "rejectedConcurrency": 5, "failed": 2})
    );

    // The refused calls cost no rate budget: with 4 per window and 2 spent,
    // two more calls are admitted (and fail fast: the executor is gone).
    for _ in 0..2 {
        let result = observer.call_tool("slow.tool", json!({"args": {}})).await;
        assert!(!result.text.contains("rate limit"), "{}", result.text);
    }
    let third = observer.call_tool("slow.tool", json!({"args": {}})).await;
    assert!(third.text.starts_with("rate limit reached"), "{}", third.text);

    // Prometheus counts the same events.
    let text = frontend.metrics().await;
    assert!(
        text.contains(r#"mcp_guard_rejections_total{scope="dynamic",reason="concurrency"} 5"#),
        "{text}"
    );
    assert!(
        text.contains(r#"mcp_guard_rejections_total{scope="dynamic",reason="rate"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"mcp_tool_calls_total{tool="slow.tool",scope="dynamic",outcome="rejected"} 6"#),
        "{text}"
    );
    assert!(text.contains("mcp_tool_call_duration_seconds_bucket"), "{text}");
    assert!(
        text.contains(r#"mcp_backend_errors_total{service="executor""#),
        "{text}"
    );

    // The audit writer is asynchronous: wait for all ten calls' lines.
    let runs = stack.audit().wait_for_count(10, |l| l["action"] == "tool.run").await;
    let failed_runs = runs.iter().filter(|l| l["result"] == "error").count();
    let refused_runs = runs.iter().filter(|l| l["result"] == "denied").count();
    assert_eq!((failed_runs, refused_runs), (4, 6), "{runs:?}");
}
