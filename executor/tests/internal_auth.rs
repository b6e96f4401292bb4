//! The executor holds the Docker socket, so it serves only callers with the
//! internal token (MCP_INTERNAL_TOKEN_FILE): the real binary on a Unix
//! socket, refusing clients without the token or with a wrong one. No
//! Docker is needed: the check happens before any call reaches the service.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use dynamic_mcp_common::addr::ServiceUrl;
use dynamic_mcp_common::internal_auth::{InternalAuth, InternalToken};
use dynamic_mcp_proto::v1::PrepareToolRequest;
use dynamic_mcp_proto::v1::executor_client::ExecutorClient;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const TOKEN: &str = "executor-internal-token-5d1f0c";

fn credentials(token: &str) -> InternalAuth {
    InternalAuth::with_token(InternalToken::new(token).unwrap())
}

async fn health(url: &ServiceUrl, auth: &InternalAuth) -> Result<(), tonic::Status> {
    let channel = auth.channel(url, None).unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|_| ())
}

async fn start(dir: &Path) -> (tokio::process::Child, ServiceUrl) {
    let socket = dir.join("executor.sock");
    let token_file = dir.join("internal.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_dynamic-mcp-executor"));
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("MCP_")) {
        command.env_remove(key);
    }
    let child = command
        .env("MCP_EXECUTOR_LISTEN", format!("unix:{}", socket.display()))
        .env("MCP_EXECUTOR_ID", format!("authtest{}", std::process::id()))
        .env("MCP_INTERNAL_TOKEN_FILE", &token_file)
        // Killed on drop, it could not remove a warm container: it needs none.
        .env("MCP_EXECUTOR_WARM_POOL_SIZE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = ServiceUrl::Unix(socket);
    let deadline = Instant::now() + Duration::from_secs(30);
    while health(&url, &credentials(TOKEN)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the executor never answered a client with the token"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, url)
}

#[tokio::test]
async fn the_executor_refuses_clients_without_the_internal_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_executor, url) = start(dir.path()).await;

    let missing = health(&url, &InternalAuth::default()).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(
        missing.message().contains("MCP_INTERNAL_TOKEN_FILE"),
        "{}",
        missing.message()
    );

    let wrong = health(&url, &credentials("not-the-token")).await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);

    // The executor's own service, not only health, is behind the check.
    let mut anonymous = ExecutorClient::new(InternalAuth::default().channel(&url, None).unwrap());
    let refused = anonymous.prepare_tool(PrepareToolRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    let mut allowed = ExecutorClient::new(credentials(TOKEN).channel(&url, None).unwrap());
    let answered = allowed.prepare_tool(PrepareToolRequest::default()).await;
    assert!(
        !matches!(&answered, Err(status) if status.code() == Code::Unauthenticated),
        "{answered:?}"
    );
}
