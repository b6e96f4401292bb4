//! Starts the real `dynamic-mcp-executor` binary on a temporary Unix socket
//! against the real Docker engine, with a unique executor id per test so
//! tests can run in parallel without touching each other's containers.
//!
//! Without Docker a test fails, saying so: a missing engine is never a pass.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerConfig, ContainerSummary, ContainerSummaryStateEnum, HostConfig};
use bollard::query_parameters::{EventsOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder};
use dynamic_mcp_common::addr::ServiceUrl;
use dynamic_mcp_proto::v1::executor_client::ExecutorClient;
use dynamic_mcp_proto::v1::{
    CommandResult, EgressEvent, ExecInSessionRequest, ListSessionsRequest, RunEvent, RunJsInSessionRequest, RunOutcome,
    RunProgress, RunStarted, RunStatus, RunToolRequest, SessionInfo, StartSessionRequest, StopSessionRequest,
    run_event,
};
use futures::StreamExt;
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub const IMAGE: &str = "dynamic-mcp-sandbox:latest";

/// The image generation build-offline.sh stamps; older ones lack npm.
const IMAGE_VERSION: &str = "2";

/// This machine's CA bundle, which includes the CA of its TLS-intercepting
/// proxy; installs get it through MCP_SANDBOX_EXTRA_CA_FILE.
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The executor's gRPC service name, as its health status names it.
pub const SERVICE: &str = "dynamic_mcp.v1.Executor";

/// A running executor for one test.
pub struct TestExecutor {
    pub id: String,
    pub client: ExecutorClient<Channel>,
    pub channel: Channel,
    pub docker: Docker,
    /// Runs with the warm pool on (the default): idle warm containers stay
    /// until shutdown.
    pub warm_pool: bool,
    /// The containers `run` saw, which must all be gone by `stop`.
    pub ran: Vec<String>,
    child: Child,
    dir: tempfile::TempDir,
}

/// What one RunTool call produced.
#[derive(Debug)]
pub struct Ran {
    pub container_id: String,
    pub outcome: RunOutcome,
    pub progress: Vec<RunProgress>,
    pub wall: Duration,
    /// What the run's egress proxy decided, in order.
    pub egress: Vec<EgressEvent>,
}

/// A run's event stream, followed to its end.
#[derive(Debug)]
pub struct Followed {
    pub started: Option<RunStarted>,
    pub progress: Vec<RunProgress>,
    /// What the egress proxy decided, in order.
    pub egress: Vec<EgressEvent>,
    pub outcome: RunOutcome,
}

/// Reads a RunTool or RunJsInSession stream to its end, checking its
/// contract: `started` first, `progress` and `egress` in between, one
/// `finished` last.
pub async fn follow(mut stream: tonic::Streaming<RunEvent>) -> Followed {
    let mut started = None;
    let mut progress = Vec::new();
    let mut egress = Vec::new();
    while let Some(event) = stream.message().await.expect("the run stream delivers events") {
        match event.event.expect("an event has a body") {
            run_event::Event::Started(event) => {
                assert!(started.is_none() && progress.is_empty(), "`started` comes first, once");
                started = Some(event);
            }
            run_event::Event::Progress(report) => progress.push(report),
            run_event::Event::Egress(event) => egress.push(event),
            run_event::Event::Finished(outcome) => {
                assert!(stream.message().await.unwrap().is_none(), "nothing follows `finished`");
                return Followed {
                    started,
                    progress,
                    egress,
                    outcome,
                };
            }
        }
    }
    panic!("the run stream ended without `finished`");
}

/// The error a RunTool or RunJsInSession stream ends with; panics if the
/// run finished instead.
pub async fn follow_to_error(mut stream: tonic::Streaming<RunEvent>) -> tonic::Status {
    loop {
        match stream.message().await {
            Err(status) => return status,
            Ok(Some(RunEvent {
                event: Some(run_event::Event::Finished(outcome)),
            })) => panic!("the run finished instead of failing: {outcome:?}"),
            Ok(Some(_)) => {}
            Ok(None) => panic!("the run stream ended without an error"),
        }
    }
}

/// Docker with the sandbox image, or `None` (test skipped) when Docker is
/// missing outside CI.
pub async fn docker() -> Docker {
    let connected = async { Docker::connect_with_defaults()?.negotiate_version().await };
    match connected.await {
        Ok(docker) if docker.ping().await.is_ok() => {
            ensure_image(&docker).await;
            docker
        }
        result => {
            let why = result.err().map_or_else(|| "ping failed".to_owned(), |e| e.to_string());
            panic!("these tests need a Docker engine: {why}. Start one (scripts/setup.sh installs and starts it).");
        }
    }
}

/// Builds the sandbox image with sandbox/build-offline.sh if it is missing
/// or older than these tests need.
async fn ensure_image(docker: &Docker) {
    static BUILT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            let current = docker.inspect_image(IMAGE).await.ok().is_some_and(|image| {
                image
                    .config
                    .and_then(|c| c.labels)
                    .and_then(|l| l.get("dynamic-mcp.sandbox-version").cloned())
                    .is_some_and(|v| v.as_str() >= IMAGE_VERSION)
            });
            if current {
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
    pub async fn start(env: &[(&str, &str)]) -> Self {
        Self::start_as(&unique_id(), env).await
    }

    pub async fn start_as(id: &str, env: &[(&str, &str)]) -> Self {
        Self::start_logging(id, env, false).await
    }

    /// Starts an executor whose log (at debug level) goes to a file, read
    /// with [`TestExecutor::log`].
    pub async fn start_with_log(env: &[(&str, &str)]) -> Self {
        Self::start_logging(&unique_id(), env, true).await
    }

    async fn start_logging(id: &str, env: &[(&str, &str)], logged: bool) -> Self {
        let docker = docker().await;
        let Spawned {
            client,
            channel,
            child,
            dir,
        } = spawn_logging(id, env, logged).await;
        // The pool is on unless a test turns it off.
        let warm_pool = !env.iter().any(|(key, value)| {
            matches!(*key, "MCP_EXECUTOR_WARM_POOL_SIZE" | "MCP_EXECUTOR_WARM_POOL_MAX") && *value == "0"
        });
        Self {
            id: id.to_owned(),
            client,
            channel,
            docker,
            warm_pool,
            ran: Vec::new(),
            child,
            dir,
        }
    }

    /// Everything the executor logged so far (see `start_with_log`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(LOG_FILE)).unwrap_or_default()
    }

    /// Runs code to its outcome, remembering the container it ran in.
    pub async fn run(&mut self, code: &str, args_json: &str, timeout_ms: Option<u32>) -> Ran {
        self.run_request(request(code, args_json, timeout_ms)).await
    }

    /// Runs `run` to its outcome, remembering the container it ran in.
    pub async fn run_request(&mut self, run: RunToolRequest) -> Ran {
        let began = Instant::now();
        let stream = self
            .client
            .run_tool(run)
            .await
            .expect("RunTool is accepted")
            .into_inner();
        let Followed {
            started,
            progress,
            egress,
            outcome,
        } = follow(stream).await;
        let container_id = started.expect("`started` comes before `finished`").container_id;
        self.ran.push(container_id.clone());
        Ran {
            container_id,
            outcome,
            progress,
            wall: began.elapsed(),
            egress,
        }
    }

    /// Checks that every container of this executor but its sessions (and
    /// idle warm ones) goes away on its own (removal after each run), then
    /// stops the executor gracefully and checks that nothing is left,
    /// sessions and warm pool included.
    pub async fn stop(mut self) {
        let settled = || async {
            let left = self.containers().await;
            if self.warm_pool {
                left.iter()
                    .all(|c| c.id.as_ref().is_none_or(|id| !self.ran.contains(id)))
            } else {
                left.iter().all(|c| role_of(c) == Some("session"))
            }
        };
        assert!(
            wait_for(Duration::from_secs(10), settled).await,
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

    /// Ends the executor with SIGKILL: no cleanup of any kind.
    pub async fn crash(mut self) {
        self.child.kill().await.expect("the executor can be killed");
    }

    /// This executor's containers, running or not.
    pub async fn containers(&self) -> Vec<ContainerSummary> {
        labelled_containers(&self.docker, &self.id).await
    }

    /// What `docker inspect` says of `container`: its host config and config.
    pub async fn inspect(&self, container: &str) -> (HostConfig, ContainerConfig) {
        let inspected = self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .expect("the container can be inspected");
        (
            inspected.host_config.expect("a host config"),
            inspected.config.expect("a config"),
        )
    }

    /// This executor's containers of one role (run, session, install, deps-setup).
    pub async fn containers_of(&self, role: &str) -> Vec<ContainerSummary> {
        self.containers()
            .await
            .into_iter()
            .filter(|c| role_of(c) == Some(role))
            .collect()
    }

    /// Waits until `count` warm containers (running, never handed to a run
    /// that `run` saw) are ready; returns their ids.
    pub async fn warm_containers(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready: Vec<String> = self
                .containers_of("run")
                .await
                .into_iter()
                .filter(|c| c.state == Some(ContainerSummaryStateEnum::RUNNING))
                .filter_map(|c| c.id)
                .filter(|id| !self.ran.contains(id))
                .collect();
            if ready.len() >= count {
                return ready;
            }
            assert!(
                Instant::now() < deadline,
                "the warm pool did not fill to {count} within 30 s: {ready:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Counts this executor's container creations, by role, from now on.
    pub fn count_creations(&self) -> Creations {
        Creations::watch(&self.docker, &self.id)
    }

    /// An executor started with `env` and one session of `owner` open in
    /// it; the session's id.
    pub async fn with_session(env: &[(&str, &str)], owner: &str) -> (Self, String) {
        let mut executor = Self::start(env).await;
        let id = executor.start_session(owner).await.session_id;
        (executor, id)
    }

    pub async fn stop_session(&mut self, owner: &str, session: &str) -> Result<(), tonic::Status> {
        let request = StopSessionRequest {
            owner: owner.into(),
            session_id: session.into(),
        };
        self.client.stop_session(request).await.map(|_| ())
    }

    pub async fn start_session(&mut self, owner: &str) -> SessionInfo {
        self.client
            .start_session(StartSessionRequest {
                owner: owner.into(),
                ..Default::default()
            })
            .await
            .expect("StartSession succeeds")
            .into_inner()
            .session
            .expect("StartSession returns the session")
    }

    /// The owner's open sessions, as ListSessions reports them.
    pub async fn sessions_of(&mut self, owner: &str) -> Vec<SessionInfo> {
        self.client
            .list_sessions(ListSessionsRequest { owner: owner.into() })
            .await
            .expect("ListSessions succeeds")
            .into_inner()
            .sessions
    }

    pub async fn exec(&mut self, owner: &str, session: &str, commands: &[&str]) -> Vec<CommandResult> {
        self.client
            .exec_in_session(exec_request(owner, session, commands, None))
            .await
            .expect("ExecInSession succeeds")
            .into_inner()
            .results
    }

    pub async fn run_js(&mut self, owner: &str, session: &str, code: &str, args_json: &str) -> RunOutcome {
        let request = RunJsInSessionRequest {
            args_json: args_json.into(),
            ..run_js_request(owner, session, code)
        };
        self.run_js_request(request).await.outcome
    }

    pub async fn run_js_request(&mut self, request: RunJsInSessionRequest) -> Followed {
        let stream = self
            .client
            .run_js_in_session(request)
            .await
            .expect("RunJsInSession is accepted")
            .into_inner();
        follow(stream).await
    }
}

/// Running `code` in `session` as `owner`, with the defaults otherwise.
pub fn run_js_request(owner: &str, session: &str, code: &str) -> RunJsInSessionRequest {
    RunJsInSessionRequest {
        owner: owner.into(),
        session_id: session.into(),
        code: code.into(),
        ..Default::default()
    }
}

pub fn exec_request(owner: &str, session: &str, commands: &[&str], timeout_ms: Option<u32>) -> ExecInSessionRequest {
    ExecInSessionRequest {
        owner: owner.into(),
        session_id: session.into(),
        commands: commands.iter().map(|c| (*c).to_owned()).collect(),
        timeout_ms,
    }
}

/// The hardened profile every run container has, cold or warm, with the
/// default limits: read-only, no capabilities but the two the supervisor
/// drops root with, no network, the supervisor as PID 1.
pub fn assert_run_profile(host: &HostConfig) {
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(host.cap_add, Some(vec!["SETUID".to_owned(), "SETGID".to_owned()]));
    assert_eq!(host.security_opt, Some(vec!["no-new-privileges".to_owned()]));
    assert_eq!(
        (host.pids_limit, host.memory, host.memory_swap),
        (Some(128), Some(512 << 20), Some(512 << 20))
    );
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    assert_eq!(host.init, Some(false), "the supervisor is PID 1");
}

/// Code that allocates memory until the container's limit stops it.
pub const MEMORY_BALLOON: &str = "const kept = []; while (true) { kept.push(Buffer.alloc(8 * 1024 * 1024, 1)); }";

/// A run stopped by a 128m memory limit, saying so.
pub fn assert_hit_the_memory_limit(outcome: &RunOutcome) {
    assert_eq!(outcome.status(), RunStatus::ResourceLimit, "{outcome:?}");
    assert!(
        outcome.error_message.contains("(128m memory, 128 processes)"),
        "{}",
        outcome.error_message
    );
}

pub fn role_of(container: &ContainerSummary) -> Option<&str> {
    container
        .labels
        .as_ref()
        .and_then(|l| l.get("dynamic-mcp.role"))
        .map(String::as_str)
}

/// Settings that let installs reach the npm registry from this machine.
pub fn install_env() -> Vec<(&'static str, &'static str)> {
    if Path::new(HOST_CA_BUNDLE).is_file() {
        vec![("MCP_SANDBOX_EXTRA_CA_FILE", HOST_CA_BUNDLE)]
    } else {
        Vec::new()
    }
}

/// Container creations of one executor, read from Docker's event log.
pub struct Creations {
    docker: Docker,
    filters: HashMap<&'static str, Vec<String>>,
    since: String,
}

impl Creations {
    fn watch(docker: &Docker, executor_id: &str) -> Self {
        let filters = HashMap::from([
            ("type", vec!["container".to_owned()]),
            ("event", vec!["create".to_owned()]),
            ("label", vec![format!("dynamic-mcp.executor={executor_id}")]),
        ]);
        Self {
            docker: docker.clone(),
            filters,
            since: docker_timestamp(std::time::SystemTime::now()),
        }
    }

    /// How many containers of `role` were created so far. Docker logs a
    /// creation before it answers the create call, so a query bounded by
    /// `until` now has every one of them, and ends by itself.
    pub async fn of(&self, role: &str) -> usize {
        let until = docker_timestamp(std::time::SystemTime::now());
        let options = EventsOptionsBuilder::default()
            .since(&self.since)
            .until(&until)
            .filters(&self.filters)
            .build();
        let events: Vec<_> = self.docker.events(Some(options)).collect().await;
        events
            .into_iter()
            .map(|event| event.expect("Docker's event log is readable"))
            .filter(|event| {
                event
                    .actor
                    .as_ref()
                    .and_then(|a| a.attributes.as_ref())
                    .and_then(|a| a.get("dynamic-mcp.role"))
                    .is_some_and(|r| r == role)
            })
            .count()
    }
}

/// `seconds.nanoseconds`, as Docker's `since` and `until` take it.
fn docker_timestamp(at: std::time::SystemTime) -> String {
    let since_epoch = at
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is past 1970");
    format!("{}.{:09}", since_epoch.as_secs(), since_epoch.subsec_nanos())
}

/// The executor process alone, whether or not Docker is there.
pub struct Spawned {
    pub client: ExecutorClient<Channel>,
    pub channel: Channel,
    pub child: Child,
    pub dir: tempfile::TempDir,
}

/// Where `start_with_log` sends the executor's log, in its temp dir.
const LOG_FILE: &str = "executor.log";

/// Starts the binary on a socket in a fresh temp dir and waits until it serves.
pub async fn spawn(id: &str, env: &[(&str, &str)]) -> Spawned {
    spawn_logging(id, env, false).await
}

async fn spawn_logging(id: &str, env: &[(&str, &str)], logged: bool) -> Spawned {
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
    if logged {
        let log = std::fs::File::create(dir.path().join(LOG_FILE)).expect("a log file");
        command.env("MCP_LOG_LEVEL", "debug").stderr(log);
    }
    let child = command.spawn().expect("the executor binary starts");
    let channel = ServiceUrl::Unix(socket).channel();
    wait_until_serving(channel.clone()).await;
    Spawned {
        client: ExecutorClient::new(channel.clone()),
        channel,
        child,
        dir,
    }
}

/// Tool code that sleeps for a minute: a run that is still going when a test looks.
pub const SLEEP_A_MINUTE: &str = "await new Promise((r) => setTimeout(r, 60000));";

/// Starts `run` and returns its event stream once the container has started.
pub async fn start_run(
    client: &ExecutorClient<Channel>,
    run: RunToolRequest,
) -> (tonic::Streaming<RunEvent>, RunStarted) {
    let mut stream = client.clone().run_tool(run).await.unwrap().into_inner();
    let Some(run_event::Event::Started(started)) = stream.message().await.unwrap().and_then(|e| e.event) else {
        panic!("the first event is `started`");
    };
    (stream, started)
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
        ..Default::default()
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

/// Whether the container `id` is gone within `within`.
pub async fn removed_within(docker: &Docker, id: &str, within: Duration) -> bool {
    wait_for(within, || async {
        docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .is_err()
    })
    .await
}

/// Node processes in `container`, zombies aside: the supervisor and the
/// code's processes (in a process realm, each call's and the spares).
pub async fn node_processes(docker: &Docker, container: &str) -> usize {
    let script = "for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = node ] \
        && ! grep -q '^State:.*Z' $p/status 2>/dev/null && echo; done | wc -l";
    let output = exec_output(docker, container, script).await;
    output
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a count: {output:?}"))
}

/// What `sh -c command` prints (stdout and stderr) in a running container,
/// as the container's own user.
pub async fn exec_output(docker: &Docker, container: &str, command: &str) -> String {
    use bollard::exec::{CreateExecOptions, StartExecResults};
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(vec!["sh", "-c", command]),
                ..Default::default()
            },
        )
        .await
        .expect("an exec is created");
    let mut text = String::new();
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&created.id, None).await.unwrap() {
        while let Some(Ok(chunk)) = output.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
    }
    text
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

/// What the executor's health service says about `service` ("" = overall).
pub async fn serving_status(channel: &Channel, service: &str) -> ServingStatus {
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .expect("the health service answers")
        .into_inner()
        .status()
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
