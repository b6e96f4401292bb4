//! Runs the real `dynamic-mcp-registry` binary on a Unix socket in a temp
//! directory and hands out gRPC clients to it.

// Each test file uses a different part of these helpers.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use dynamic_mcp_common::addr::ServiceUrl;
use dynamic_mcp_proto::v1 as pb;
use dynamic_mcp_proto::v1::registry_client::RegistryClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

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
    }
}

pub fn create_request(spec: pb::ToolSpec) -> pb::CreateToolRequest {
    pb::CreateToolRequest { spec: Some(spec) }
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

/// Files in `dir` other than the store and its lock (e.g. leftover temp files).
pub fn stray_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "tools.json" && name != "tools.json.lock")
        .collect()
}
