//! The HTTP edge in process (`tower::ServiceExt::oneshot` through the real
//! router and rmcp): a JSON-RPC error for every kind of malformed request,
//! 204 for a session's DELETE, the caps on legacy sessions and long-lived
//! streams, the body-read timeout, and the back-off after wrong admin tokens.
//! `connection_limits.rs` tries the same through real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use support::LEGACY_VERSION;
use support::in_process::{client, message, modern_headers, modern_meta, post, router, send};
use tower::ServiceExt;

fn call_body(id: Value, name: &str, arguments: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": modern_meta()}})
    .to_string()
}

#[tokio::test]
async fn every_kind_of_malformed_request_gets_the_json_rpc_error_the_spec_names() {
    let router = router(&[], None);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let huge_id = format!(r#"{{"jsonrpc":"2.0","id":1{},"method":"tools/list"}}"#, "0".repeat(400));
    let cases: Vec<(&str, Vec<u8>, i64, Value)> = vec![
        (
            "bad JSON",
            br#"{"jsonrpc":"2.0","id":1,"method":"#.to_vec(),
            -32700,
            Value::Null,
        ),
        (
            "invalid UTF-8",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\xff\"}".to_vec(),
            -32700,
            Value::Null,
        ),
        ("100k-level nesting", deep.into_bytes(), -32700, Value::Null),
        ("empty body", Vec::new(), -32700, Value::Null),
        ("id 10^400", huge_id.into_bytes(), -32600, Value::Null),
        (
            "float id",
            br#"{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}"#.to_vec(),
            -32600,
            Value::Null,
        ),
        (
            "object id",
            br#"{"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"}"#.to_vec(),
            -32600,
            Value::Null,
        ),
        (
            "null id",
            br#"{"jsonrpc":"2.0","id":null,"method":"tools/list"}"#.to_vec(),
            -32600,
            Value::Null,
        ),
        (
            "jsonrpc 1.0",
            br#"{"jsonrpc":"1.0","id":7,"method":"tools/list"}"#.to_vec(),
            -32600,
            json!(7),
        ),
        (
            "no jsonrpc",
            br#"{"id":"a","method":"tools/list"}"#.to_vec(),
            -32600,
            json!("a"),
        ),
        (
            "batch",
            br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#.to_vec(),
            -32600,
            Value::Null,
        ),
        ("empty batch", b"[]".to_vec(), -32600, Value::Null),
        ("a number", b"42".to_vec(), -32600, Value::Null),
        (
            "method not a string",
            br#"{"jsonrpc":"2.0","id":3,"method":1}"#.to_vec(),
            -32600,
            json!(3),
        ),
        (
            "params as an array",
            br#"{"jsonrpc":"2.0","id":4,"method":"tools/list","params":[1]}"#.to_vec(),
            -32602,
            json!(4),
        ),
        (
            "params.arguments=[1]",
            call_body(json!(5), "system.health", json!([1])).into_bytes(),
            -32602,
            json!(5),
        ),
    ];
    for (kind, body, code, id) in cases {
        let (response, text) = send(
            &router,
            post(body, &modern_headers("tools/call", Some("system.health")), client(1)),
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{kind}: {text}");
        assert_eq!(response.headers()["content-type"], "application/json", "{kind}");
        let answer: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{kind}: not JSON ({e}): {text}"));
        assert_eq!(answer["jsonrpc"], "2.0", "{kind}");
        assert_eq!(answer["error"]["code"], code, "{kind}: {text}");
        assert_eq!(answer["id"], id, "{kind}: {text}");
        assert!(
            answer["error"]["message"].as_str().is_some_and(|m| m.len() > 10),
            "{kind}: {text}"
        );
    }
}

#[tokio::test]
async fn well_formed_requests_pass_the_checks() {
    let router = router(&[], None);
    let body = call_body(json!("call-1"), "system.health", json!({}));
    let (response, text) = send(
        &router,
        post(body, &modern_headers("tools/call", Some("system.health")), client(1)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK, "{text}");
    let answer = message(&text);
    assert_eq!(answer["id"], "call-1");
    assert_eq!(answer["result"]["isError"], false, "{text}");
    assert_eq!(answer["result"]["structuredContent"]["status"], "ok");

    // An unknown method is rmcp's to answer: 404 with -32601.
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "no/such", "params": {"_meta": modern_meta()}});
    let (response, text) = send(
        &router,
        post(body.to_string(), &modern_headers("no/such", None), client(1)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "{text}");
    assert_eq!(message(&text)["error"]["code"], -32601);
}

/// Opens a legacy session; returns its id, or the refusal.
async fn open_session(router: &axum::Router, id: u64) -> Result<String, (StatusCode, Value)> {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": LEGACY_VERSION, "capabilities": {},
        "clientInfo": {"name": "edge-tests", "version": "1"}}});
    let (response, text) = send(router, post(body.to_string(), &[], client(1))).await;
    match response.headers().get("mcp-session-id") {
        Some(session) if response.status() == StatusCode::OK => Ok(session.to_str().unwrap().to_owned()),
        _ => Err((
            response.status(),
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )),
    }
}

fn delete(session: &str) -> Request<Body> {
    Request::delete("/mcp")
        .header("host", "localhost")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", LEGACY_VERSION)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_legacy_session_delete_is_answered_204_and_the_session_is_gone() {
    let router = router(&[], None);
    let session = open_session(&router, 1).await.expect("a session");
    let (response, text) = send(&router, delete(&session)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "{text}");
    assert!(text.is_empty(), "{text}");
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", LEGACY_VERSION),
    ];
    let (after, text) = send(&router, post(list, &headers, client(1))).await;
    assert_eq!(
        after.status(),
        StatusCode::NOT_FOUND,
        "the session outlived its DELETE: {text}"
    );
}

#[tokio::test]
async fn legacy_sessions_are_capped_and_a_deleted_one_makes_room() {
    let router = router(&["--http-max-legacy-sessions=2"], None);
    let first = open_session(&router, 1).await.expect("session 1");
    open_session(&router, 2).await.expect("session 2");
    let (status, refusal) = open_session(&router, 3).await.expect_err("a third session");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refusal["id"], 3);
    assert_eq!(refusal["error"]["code"], -32000);
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MCP_HTTP_MAX_LEGACY_SESSIONS"),
        "{refusal}"
    );
    assert_eq!(send(&router, delete(&first)).await.0.status(), StatusCode::NO_CONTENT);
    open_session(&router, 4).await.expect("room after a DELETE");
}

fn listen(id: u64) -> Request<Body> {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "subscriptions/listen", "params": {
        "notifications": {"toolsListChanged": true}, "_meta": modern_meta()}});
    post(
        body.to_string(),
        &modern_headers("subscriptions/listen", None),
        client(1),
    )
}

#[tokio::test]
async fn long_lived_streams_hold_a_slot_until_they_close() {
    let router = router(&["--http-max-streams=1"], None);
    let open = router.clone().oneshot(listen(1)).await.unwrap();
    assert_eq!(open.status(), StatusCode::OK);
    assert_eq!(open.headers()["content-type"], "text/event-stream");

    let (refused, text) = send(&router, listen(2)).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(refused.headers().contains_key("retry-after"));
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (answer["id"].clone(), answer["error"]["code"].clone()),
        (json!(2), json!(-32000))
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MCP_HTTP_MAX_STREAMS")
    );

    // Short requests never need a slot.
    let body = call_body(json!(3), "system.health", json!({}));
    let (response, _) = send(
        &router,
        post(body, &modern_headers("tools/call", Some("system.health")), client(1)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);

    drop(open);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = router.clone().oneshot(listen(4)).await.unwrap();
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the closed stream's slot was not given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_stalled_upload_is_answered_408_within_the_body_timeout() {
    let router = router(&["--http-body-read-timeout-ms=300"], None);
    let (chunks, stalled) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    chunks.send(Ok(Bytes::from(vec![b' '; 1 << 20]))).await.unwrap();
    let body = Body::from_stream(tokio_stream_of(stalled));
    let began = Instant::now();
    let (response, text) = tokio::time::timeout(Duration::from_secs(10), send(&router, post(body, &[], client(1))))
        .await
        .expect("an answer while the upload is still stalled");
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT, "{text}");
    assert_eq!(response.headers()["connection"], "close");
    assert!(began.elapsed() >= Duration::from_millis(300));
    assert!(text.contains("MCP_HTTP_BODY_READ_TIMEOUT_MS"), "{text}");
    drop(chunks);
}

fn tokio_stream_of(
    mut receiver: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

const ADMIN_TOKEN: &str = "the-right-admin-token-0123456789";

async fn admin_call(router: &axum::Router, from: u8, header: Option<&str>, argument: Option<&str>) -> String {
    let mut arguments = json!({});
    if let Some(token) = argument {
        arguments["adminToken"] = json!(token);
    }
    let mut headers = modern_headers("tools/call", Some("dynamic.tool.list"));
    if let Some(token) = header {
        headers.push(("x-mcp-admin-token", token));
    }
    let body = call_body(json!(1), "dynamic.tool.list", arguments);
    let (response, text) = send(router, post(body, &headers, client(from))).await;
    assert_eq!(response.status(), StatusCode::OK, "{text}");
    message(&text)["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn wrong_admin_tokens_back_off_per_address_and_never_pause_the_right_header() {
    let router = router(
        &["--auth-failures-before-backoff=2", "--auth-backoff-base-ms=60000"],
        Some(ADMIN_TOKEN),
    );
    let paused = "too many wrong admin tokens";
    // A guesser at 127.0.0.2: two free guesses, then the header is not checked at all.
    for _ in 0..3 {
        assert!(admin_call(&router, 2, Some("guess"), None).await.contains("is wrong"));
    }
    let refused = admin_call(&router, 2, Some(ADMIN_TOKEN), None).await;
    assert!(refused.contains(paused), "{refused}");
    // The admin at another address is not affected.
    let admin = admin_call(&router, 1, Some(ADMIN_TOKEN), None).await;
    assert!(!admin.contains(paused) && !admin.contains("admin rights"), "{admin}");

    // Wrong arguments (what an injected model sends) pause the argument only:
    // the admin's header still passes from the same address.
    for _ in 0..3 {
        assert!(
            admin_call(&router, 1, None, Some("injected"))
                .await
                .contains("is wrong")
        );
    }
    assert!(admin_call(&router, 1, None, Some(ADMIN_TOKEN)).await.contains(paused));
    let admin = admin_call(&router, 1, Some(ADMIN_TOKEN), None).await;
    assert!(!admin.contains(paused) && !admin.contains("admin rights"), "{admin}");
    // A wrong argument beside the right header is denied, but not counted.
    assert!(
        admin_call(&router, 1, Some(ADMIN_TOKEN), Some("injected"))
            .await
            .contains("is wrong")
    );
}
