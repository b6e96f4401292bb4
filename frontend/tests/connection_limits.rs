//! The HTTP edge through real sockets against the `dynamic-mcp` binary:
//! slowloris and idle connections are closed at their timeouts (a
//! long-lived stream is not), a stalled upload gets 408, connections past the
//! cap get 503 and are counted, malformed requests get JSON-RPC errors, and
//! wrong admin tokens back off per client address.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::in_process::{MODERN, modern_meta};
use support::{Stack, message_with_id};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any of these waits may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

fn address(url: &str) -> String {
    url.trim_start_matches("http://").split('/').next().unwrap().to_owned()
}

/// Reads until the server closes the connection; returns what it sent and
/// when it closed, or `None` if it was still open at the deadline.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> Option<(Vec<u8>, Instant)> {
    let mut received = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(within, read).await.ok()?;
    Some((received, closed))
}

fn counter(metrics: &str, line_start: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test]
async fn slowloris_connections_are_cut_at_the_header_timeout() {
    let stack = Stack::new().await;
    let frontend = stack
        .http_frontend(&[
            ("MCP_HTTP_HEADER_READ_TIMEOUT_MS", "1000"),
            ("MCP_HTTP_IDLE_TIMEOUT_MS", "60000"),
        ])
        .await;
    let addr = address(&frontend.url);
    let slowloris = (0..20).map(|_| {
        let addr = addr.clone();
        async move {
            let mut stream = TcpStream::connect(&addr).await.unwrap();
            let began = Instant::now();
            stream
                .write_all(b"POST /mcp HTTP/1.1\r\nHost: localhost\r\n")
                .await
                .unwrap();
            // One more header line every 200 ms, never the blank line.
            while began.elapsed() < DEADLINE {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if stream.write_all(b"X-Slow: yes\r\n").await.is_err() {
                    break;
                }
                let mut probe = [0u8; 1];
                if let Ok(Ok(0) | Err(_)) =
                    tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await
                {
                    break;
                }
            }
            began.elapsed()
        }
    });
    for lasted in futures::future::join_all(slowloris).await {
        assert!(
            lasted >= Duration::from_millis(900) && lasted < Duration::from_secs(10),
            "a slowloris connection lasted {lasted:?}"
        );
    }
    let text = frontend.metrics().await;
    assert!(
        counter(&text, r#"mcp_http_connections_closed_total{reason="header_timeout"}"#) >= 20,
        "{text}"
    );
}

#[tokio::test]
async fn idle_connections_are_closed_but_an_open_stream_is_not() {
    let stack = Stack::new().await;
    let frontend = stack
        .http_frontend(&[
            ("MCP_HTTP_IDLE_TIMEOUT_MS", "1000"),
            ("MCP_HTTP_HEADER_READ_TIMEOUT_MS", "30000"),
        ])
        .await;
    let addr = address(&frontend.url);

    // A stream that stays quiet for longer than the idle timeout.
    let listen = json!({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen",
        "params": {"notifications": {"toolsListChanged": true}, "_meta": modern_meta()}});
    let mut stream = reqwest::Client::new()
        .post(&frontend.url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "subscriptions/listen")
        .json(&listen)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut received = String::new();
    while !received.contains("notifications/subscriptions/acknowledged") {
        let chunk = tokio::time::timeout(DEADLINE, stream.chunk())
            .await
            .expect("the acknowledgement");
        received.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("the stream is open")));
    }

    let idle = (0..50).map(|_| {
        let addr = addr.clone();
        async move {
            let mut stream = TcpStream::connect(&addr).await.unwrap();
            let began = Instant::now();
            let (_, closed) = until_closed(&mut stream, DEADLINE).await.expect("closed by the server");
            closed - began
        }
    });
    let kept_alive = async {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let began = Instant::now();
        let (answer, closed) = until_closed(&mut stream, DEADLINE).await.expect("closed by the server");
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
        closed - began
    };
    let (idle, kept_alive) = tokio::join!(futures::future::join_all(idle), kept_alive);
    for lasted in idle.into_iter().chain([kept_alive]) {
        assert!(
            lasted >= Duration::from_millis(900) && lasted < Duration::from_secs(10),
            "an idle connection lasted {lasted:?}"
        );
    }
    let quiet = tokio::time::timeout(Duration::from_secs(2), stream.chunk()).await;
    assert!(
        quiet.is_err(),
        "the stream ended while idle connections were closed: {quiet:?}"
    );
    let text = frontend.metrics().await;
    assert!(
        counter(&text, r#"mcp_http_connections_closed_total{reason="idle_timeout"}"#) >= 51,
        "{text}"
    );
}

#[tokio::test]
async fn a_stalled_upload_is_answered_408_and_closed() {
    let stack = Stack::new().await;
    let frontend = stack.http_frontend(&[("MCP_HTTP_BODY_READ_TIMEOUT_MS", "1000")]).await;
    let mut stream = TcpStream::connect(address(&frontend.url)).await.unwrap();
    let head = "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                Accept: application/json, text/event-stream\r\nContent-Length: 4100010\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b' '; 1 << 20]).await.unwrap();
    let began = Instant::now();
    let (answer, closed) = until_closed(&mut stream, DEADLINE).await.expect("closed by the server");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("MCP_HTTP_BODY_READ_TIMEOUT_MS"), "{answer}");
    assert!(closed - began < Duration::from_secs(10));
    let text = frontend.metrics().await;
    assert_eq!(
        counter(&text, r#"mcp_http_requests_refused_total{reason="body_timeout"}"#),
        1,
        "{text}"
    );
}

#[tokio::test]
async fn connections_past_the_cap_are_refused_with_503_and_counted() {
    let stack = Stack::new().await;
    let frontend = stack.http_frontend(&[("MCP_HTTP_MAX_CONNECTIONS", "3")]).await;
    let addr = address(&frontend.url);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    // Accepted in order: the fourth finds the cap full.
    let mut fourth = TcpStream::connect(&addr).await.unwrap();
    fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = until_closed(&mut fourth, DEADLINE).await.expect("closed by the server");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("MCP_HTTP_MAX_CONNECTIONS"), "{answer}");

    drop(held.pop());
    let deadline = Instant::now() + DEADLINE;
    let text = loop {
        if let Ok(response) = reqwest::get(format!("{}/metrics", frontend.base)).await
            && response.status() == StatusCode::OK
        {
            break response.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "no room after a connection closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(counter(&text, "mcp_http_connections_refused_total") >= 1, "{text}");
}

#[tokio::test]
async fn malformed_requests_over_a_socket_get_json_rpc_errors() {
    let stack = Stack::new().await;
    let frontend = stack.http_frontend(&[]).await;
    let client = reqwest::Client::new();
    let cases: [(&str, &str, i64); 4] = [
        ("bad JSON", r#"{"jsonrpc":"2.0","id":1,"#, -32700),
        ("batch", r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#, -32600),
        (
            "params array",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[]}"#,
            -32602,
        ),
        (
            "arguments array",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"system.health","arguments":[1]}}"#,
            -32602,
        ),
    ];
    for (kind, body, code) in cases {
        let response = client
            .post(&frontend.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{kind}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], code, "{kind}: {answer}");
    }
}

const ADMIN_TOKEN: &str = "connection-limits-admin-token-0123";

/// A stateless 2026-07-28 `dynamic.tool.list` from `from`; its result text.
async fn list_tools_from(url: &str, from: Ipv4Addr, header: &str) -> String {
    let client = reqwest::Client::builder()
        .local_address(IpAddr::V4(from))
        .build()
        .unwrap();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "dynamic.tool.list", "arguments": {}, "_meta": modern_meta()}});
    let response = client
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "dynamic.tool.list")
        .header("x-mcp-admin-token", header)
        .json(&body)
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    message_with_id(&text, 1)["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_guessing_address_backs_off_while_the_admin_elsewhere_gets_through() {
    let stack = Stack::new().await;
    let frontend = stack
        .http_frontend(&[
            ("MCP_ADMIN_TOKEN", ADMIN_TOKEN),
            ("MCP_AUTH_FAILURES_BEFORE_BACKOFF", "2"),
            ("MCP_AUTH_BACKOFF_BASE_MS", "60000"),
        ])
        .await;
    let guesser = Ipv4Addr::new(127, 0, 0, 2);
    for _ in 0..3 {
        let answer = list_tools_from(&frontend.url, guesser, "guess-guess-guess").await;
        assert!(answer.contains("is wrong"), "{answer}");
    }
    let paused = list_tools_from(&frontend.url, guesser, ADMIN_TOKEN).await;
    assert!(paused.contains("too many wrong admin tokens"), "{paused}");
    let admin = list_tools_from(&frontend.url, Ipv4Addr::LOCALHOST, ADMIN_TOKEN).await;
    assert!(admin.contains("\"tools\""), "the admin was refused: {admin}");

    let audit = stack.audit();
    audit
        .wait_for(|l| l["action"] == "tool.list" && l["details"]["reason"] == "admin_token_backoff")
        .await;
    let wrong = audit
        .lines()
        .iter()
        .filter(|l| l["details"]["reason"] == "admin_token_invalid")
        .count();
    assert_eq!(wrong, 3, "every wrong token is audited");
    assert!(!audit.text().contains("guess-guess-guess") && !audit.text().contains(ADMIN_TOKEN));
}
