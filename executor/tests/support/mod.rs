//! Starts the real `dynamic-mcp-executor` binary on a temporary Unix socket
//! against the real Docker engine, with a unique executor id per test so
//! tests can run in parallel without touching each other's containers.
//!
//! Without Docker a test is skipped with a message — except under CI=true,
//! where it fails.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::ContainerSummary;
use bollard::query_parameters::ListContainersOptionsBuilder;
use dynamic_mcp_common::addr::ServiceUrl;
use dynamic_mcp_proto::v1::executor_client::ExecutorClient;
use dynamic_mcp_proto::v1::{RunOutcome, RunToolRequest, run_event};
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

pub const IMAGE: &str = "dynamic-mcp-sandbox:latest";

/// A running executor for one test.
pub struct TestExecutor {
    pub id: String,
    pub client: ExecutorClient<Channel>,
    pub docker: Docker,
    child: Child,
    _dir: tempfile::TempDir,
}

/// What one RunTool call produced.
#[derive(Debug)]
pub struct Ran {
    pub container_id: String,
    pub outcome: RunOutcome,
    pub wall: Duration,
}

/// Docker with the sandbox image, or `None` (test skipped) when Docker is
/// missing outside CI.
pub async fn docker() -> Option<Docker> {
    let connected = async { Docker::connect_with_defaults()?.negotiate_version().await };
    match connected.await {
        Ok(docker) if docker.ping().await.is_ok() => {
            ensure_image(&docker).await;
            Some(docker)
        }
        result => {
            let why = result.err().map_or_else(|| "ping failed".to_owned(), |e| e.to_string());
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("these tests need a Docker engine and CI=true is set, so they may not skip: {why}");
            }
            eprintln!("SKIPPED: no Docker engine ({why}); set CI=true to make this a failure");
            None
        }
    }
}

/// Builds the sandbox image with sandbox/build-offline.sh if it is missing.
async fn ensure_image(docker: &Docker) {
    static BUILT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            if docker.inspect_image(IMAGE).await.is_ok() {
                return;
            }
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sandbox/build-offline.sh");
            let status = Command::new("bash").arg(&script).arg(IMAGE).status().await;
            assert!(
                status.as_ref().is_ok_and(|s| s.success()),
                "{} failed: {status:?}",
                script.display()
            );
        })
        .await;
}

pub fn unique_id() -> String {
    format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

impl TestExecutor {
    /// Starts an executor with a fresh id and extra `MCP_*` settings.
    pub async fn start(env: &[(&str, &str)]) -> Option<Self> {
        Self::start_as(&unique_id(), env).await
    }

    pub async fn start_as(id: &str, env: &[(&str, &str)]) -> Option<Self> {
        let docker = docker().await?;
        let Spawned { client, child, dir } = spawn(id, env).await;
        Some(Self {
            id: id.to_owned(),
            client,
            docker,
            child,
            _dir: dir,
        })
    }

    /// Runs code to its outcome, remembering the container it ran in.
    pub async fn run(&mut self, code: &str, args_json: &str, timeout_ms: Option<u32>) -> Ran {
        let began = Instant::now();
        let mut stream = self
            .client
            .run_tool(request(code, args_json, timeout_ms))
            .await
            .expect("RunTool is accepted")
            .into_inner();
        let mut container_id = None;
        while let Some(event) = stream.message().await.expect("the run stream delivers events") {
            match event.event.expect("an event has a body") {
                run_event::Event::Started(started) => container_id = Some(started.container_id),
                run_event::Event::Finished(outcome) => {
                    assert!(stream.message().await.unwrap().is_none(), "nothing follows `finished`");
                    return Ran {
                        container_id: container_id.expect("`started` comes before `finished`"),
                        outcome,
                        wall: began.elapsed(),
                    };
                }
            }
        }
        panic!("the run stream ended without `finished`");
    }

    /// Checks that every container of this executor goes away on its own
    /// (removal after each run), then stops the executor gracefully and
    /// checks that nothing is left either.
    pub async fn stop(mut self) {
        assert!(
            wait_for(Duration::from_secs(10), || async { self.containers().await.is_empty() }).await,
            "containers left after the runs: {:?}",
            self.containers().await
        );
        drop(self.child.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the executor stops within 20 s of stdin closing")
            .expect("the executor can be waited for");
        assert!(status.success(), "the executor exited with {status}");
        assert!(self.containers().await.is_empty(), "containers left after shutdown");
    }

    /// This executor's containers, running or not.
    pub async fn containers(&self) -> Vec<ContainerSummary> {
        labelled_containers(&self.docker, &self.id).await
    }
}

/// The executor process alone, whether or not Docker is there.
pub struct Spawned {
    pub client: ExecutorClient<Channel>,
    pub child: Child,
    pub dir: tempfile::TempDir,
}

/// Starts the binary on a socket in a fresh temp dir and waits until it serves.
pub async fn spawn(id: &str, env: &[(&str, &str)]) -> Spawned {
    let dir = tempfile::tempdir().expect("a temp dir");
    let socket = dir.path().join("executor.sock");
    let mut command = Command::new(env!("CARGO_BIN_EXE_dynamic-mcp-executor"));
    // Settings from the developer's shell must not leak into the test.
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("MCP_")) {
        command.env_remove(key);
    }
    command
        .env("MCP_EXECUTOR_LISTEN", format!("unix:{}", socket.display()))
        .env("MCP_EXECUTOR_ID", id)
        .env("MCP_EXIT_WITH_PARENT", "true")
        .env("MCP_LOG_LEVEL", "warn")
        .envs(env.iter().copied())
        // We hold its stdin: when this test process ends, however it ends, the
        // executor sees end of file, stops, and removes its containers.
        .stdin(Stdio::piped());
    let child = command.spawn().expect("the executor binary starts");
    let channel = ServiceUrl::Unix(socket).channel();
    wait_until_serving(channel.clone()).await;
    Spawned {
        client: ExecutorClient::new(channel),
        child,
        dir,
    }
}

pub fn request(code: &str, args_json: &str, timeout_ms: Option<u32>) -> RunToolRequest {
    RunToolRequest {
        tool_name: "test.tool".into(),
        revision: 1,
        image: None,
        timeout_ms,
        dependencies: Vec::new(),
        code: code.into(),
        args_json: args_json.into(),
    }
}

pub async fn labelled_containers(docker: &Docker, executor_id: &str) -> Vec<ContainerSummary> {
    let filters = HashMap::from([(
        "label",
        vec![
            "dynamic-mcp.managed=true".to_owned(),
            format!("dynamic-mcp.executor={executor_id}"),
        ],
    )]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker
        .list_containers(Some(options))
        .await
        .expect("containers can be listed")
}

/// Polls `check` until it holds or `within` passes.
pub async fn wait_for<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_until_serving(channel: Channel) {
    let health = HealthClient::new(channel);
    let serving = wait_for(Duration::from_secs(20), || {
        let mut health = health.clone();
        async move {
            health
                .check(HealthCheckRequest { service: String::new() })
                .await
                .is_ok()
        }
    })
    .await;
    assert!(serving, "the executor did not answer health checks within 20 s");
}
