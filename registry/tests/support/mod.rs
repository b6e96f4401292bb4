//! Runs the real `dynamic-mcp-registry` binary on a Unix socket in a temp
//! directory, on either backend, and hands out gRPC clients to it.

// Each test file uses a different part of these helpers.
#![allow(dead_code)]

pub mod postgres;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dynamic_mcp_common::addr::ServiceUrl;
use dynamic_mcp_proto::v1 as pb;
use dynamic_mcp_proto::v1::catalog_event::Event;
use dynamic_mcp_proto::v1::registry_client::RegistryClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use self::postgres::PgCluster;

pub const BINARY: &str = env!("CARGO_BIN_EXE_dynamic-mcp-registry");

/// A running registry process. Killed when dropped.
pub struct Registry {
    child: Child,
    socket: PathBuf,
    pub store: PathBuf,
    log: PathBuf,
}

impl Registry {
    /// Starts a registry whose socket, store and log live in `dir`, and waits
    /// until it answers. `env` adds or overrides MCP_* settings.
    pub async fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut registry = Self::spawn(dir, env, Stdio::null());
        registry.wait_ready().await;
        registry
    }

    /// Starts the process without waiting for it.
    pub fn spawn(dir: &Path, env: &[(&str, &str)], stdin: Stdio) -> Self {
        let socket = dir.join("registry.sock");
        let store = dir.join("store").join("tools.json");
        let log = dir.join("registry.log");
        let stderr = OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut command = Command::new(BINARY);
        // Settings from the developer's shell must not leak into tests.
        for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("MCP_")) {
            command.env_remove(key);
        }
        command
            .env("MCP_REGISTRY_LISTEN", format!("unix:{}", socket.display()))
            .env("MCP_DYNAMIC_STORE", &store)
            .env("MCP_LOG_LEVEL", "info")
            .envs(env.iter().copied())
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = command.spawn().unwrap();
        Self {
            child,
            socket,
            store,
            log,
        }
    }

    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the registry exited early ({status}); its log:\n{}", self.log());
            }
            if self.socket.exists() && self.client().list(pb::ListToolsRequest::default()).await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the registry did not answer; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn channel(&self) -> Channel {
        ServiceUrl::Unix(self.socket.clone()).channel()
    }

    pub fn client(&self) -> RegistryClient<Channel> {
        RegistryClient::new(self.channel())
    }

    /// The health status of the registry service.
    pub async fn health(&self) -> ServingStatus {
        HealthClient::new(self.channel())
            .check(HealthCheckRequest {
                service: "dynamic_mcp.v1.Registry".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status()
    }

    /// Waits until the health status is `wanted`.
    pub async fn wait_for_health(&self, wanted: ServingStatus, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.health().await != wanted {
            assert!(
                Instant::now() < deadline,
                "health did not become {wanted:?} within {timeout:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash or the OOM killer would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as a service manager would.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Stdin, when spawned with `Stdio::piped()`.
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// Waits for the process to exit on its own.
    pub async fn exited_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        None
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn store_dir(&self) -> &Path {
        self.store.parent().unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where a test's registries keep their tools: a file, or a throwaway
/// PostgreSQL cluster.
pub struct TestBackend {
    dir: tempfile::TempDir,
    pub postgres: Option<PgCluster>,
    replicas: AtomicUsize,
}

impl TestBackend {
    pub fn file() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            postgres: None,
            replicas: AtomicUsize::new(0),
        }
    }

    /// A backend on a cluster of its own (see [`PgCluster::start`]).
    pub async fn postgres() -> Self {
        Self {
            postgres: Some(PgCluster::start().await),
            ..Self::file()
        }
    }

    /// Starts a registry on this backend. On the file backend every call
    /// uses the same directory (one registry at a time); on PostgreSQL each
    /// call is one more replica of the same catalog.
    pub async fn start(&self, env: &[(&str, &str)]) -> Registry {
        let Some(cluster) = &self.postgres else {
            return Registry::start(self.dir.path(), env).await;
        };
        let replica = self.replicas.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.path().join(format!("replica-{replica}"));
        std::fs::create_dir_all(&dir).unwrap();
        let url = cluster.registry_url();
        let mut with_database = vec![
            ("MCP_DYNAMIC_BACKEND", "postgres"),
            ("MCP_DYNAMIC_PG_URL", url.as_str()),
        ];
        with_database.extend_from_slice(env);
        Registry::start(&dir, &with_database).await
    }
}

/// Runs each named `async fn(&TestBackend)` once per backend, as
/// `file::<name>` and `postgres::<name>`.
#[allow(unused_macros)]
macro_rules! on_each_backend {
    ($($test:ident),+ $(,)?) => {
        mod file {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(&crate::support::TestBackend::file()).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(&crate::support::TestBackend::postgres().await).await;
                }
            )+
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_each_backend;

/// What one watcher believes the catalog is, built only from the events of
/// its WatchChanges stream.
pub struct WatchedCatalog {
    pub version: u64,
    pub tools: BTreeMap<String, pb::ToolRecord>,
    pub snapshots: usize,
    events: Streaming<pb::CatalogEvent>,
}

impl WatchedCatalog {
    /// Opens a watch and applies its first event, the snapshot.
    pub async fn open(registry: &Registry) -> Self {
        let events = registry
            .client()
            .watch_changes(pb::WatchChangesRequest {})
            .await
            .unwrap()
            .into_inner();
        let mut watched = Self {
            version: 0,
            tools: BTreeMap::new(),
            snapshots: 0,
            events,
        };
        let first = watched.next(Duration::from_secs(10)).await;
        assert!(matches!(first.event, Some(Event::Snapshot(_))), "{first:?}");
        watched
    }

    /// Receives and applies the next event.
    pub async fn next(&mut self, timeout: Duration) -> pb::CatalogEvent {
        let event = tokio::time::timeout(timeout, self.events.next())
            .await
            .unwrap_or_else(|_| panic!("no event within {timeout:?}"))
            .expect("the stream ended")
            .expect("the stream failed");
        match &event.event {
            Some(Event::Snapshot(snapshot)) => {
                self.snapshots += 1;
                self.tools = snapshot.tools.iter().map(|t| (t.name.clone(), t.clone())).collect();
            }
            Some(Event::Change(change)) => {
                assert_eq!(
                    event.catalog_version,
                    self.version + 1,
                    "a change out of order: {event:?}"
                );
                let tool = change.tool.clone().unwrap();
                if change.kind() == pb::ChangeKind::Deleted {
                    self.tools.remove(&tool.name);
                } else {
                    self.tools.insert(tool.name.clone(), tool);
                }
            }
            None => panic!("an empty event"),
        }
        self.version = event.catalog_version;
        event
    }

    /// Applies events until `done` holds.
    pub async fn until(&mut self, timeout: Duration, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the watcher did not see {what} within {timeout:?}");
            self.next(left).await;
        }
    }

    /// (name, revision) of every tool, as a listing would show them.
    pub fn revisions(&self) -> Vec<(String, u64)> {
        self.tools.values().map(|t| (t.name.clone(), t.revision)).collect()
    }
}

/// A valid tool spec whose fields all differ from the defaults.
pub fn spec(name: &str) -> pb::ToolSpec {
    pb::ToolSpec {
        name: name.into(),
        title: Some(format!("Title of {name}")),
        description: format!("Describes {name}"),
        image: Some("node:22-alpine".into()),
        timeout_ms: Some(4000),
        dependencies: vec![pb::Dependency {
            name: "lodash".into(),
            version: "^4.17.21".into(),
        }],
        code: format!("// {name} \u{2014} caf\u{e9}\nreturn {{ name: {name:?}, args }};"),
        enabled: Some(true),
        ..Default::default()
    }
}

pub fn create_request(spec: pb::ToolSpec) -> pb::CreateToolRequest {
    pb::CreateToolRequest {
        spec: Some(spec),
        ..Default::default()
    }
}

/// Asserts a gRPC failure with `code` whose message contains every one of `needles`.
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, needles: &[&str]) -> Status {
    let status = result.expect_err("the call should have failed");
    assert_eq!(status.code(), code, "{status:?}");
    for needle in needles {
        assert!(
            status.message().contains(needle),
            "{needle:?} not in {:?}",
            status.message()
        );
    }
    status
}

/// Asserts that a returned record holds exactly what `spec` asked for.
pub fn assert_matches_spec(tool: &pb::ToolRecord, spec: &pb::ToolSpec) {
    assert_eq!(tool.name, spec.name);
    assert_eq!(tool.title, spec.title);
    assert_eq!(tool.description, spec.description);
    assert_eq!(Some(&tool.image), spec.image.as_ref());
    assert_eq!(Some(tool.timeout_ms), spec.timeout_ms);
    assert_eq!(tool.dependencies, spec.dependencies);
    assert_eq!(tool.code, spec.code);
    assert_eq!(tool.code_size_bytes, spec.code.len() as u64);
    assert_eq!(Some(tool.enabled), spec.enabled);
}

/// Files in `dir` other than the store, its lock and its history directory,
/// and files in the history directory other than a tool's history (e.g.
/// leftover temp files).
pub fn stray_files(dir: &Path) -> Vec<String> {
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut stray: Vec<String> = names(dir)
        .into_iter()
        .filter(|name| !["tools.json", "tools.json.lock", "tools.json.history"].contains(&name.as_str()))
        .collect();
    let history = dir.join("tools.json.history");
    stray.extend(
        names(&history)
            .into_iter()
            .filter(|name| name.starts_with('.') || !name.ends_with(".json"))
            .map(|name| format!("tools.json.history/{name}")),
    );
    stray
}
