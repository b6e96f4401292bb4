//! The real thing, for the frontend's security tests: the `dynamic-mcp`
//! binary as a child process (HTTP or stdio), a real registry (the registry
//! crate's server, in this test process, on a Unix socket), JSON-RPC over real
//! HTTP and pipes, and the audit file on disk.

// Each test file uses a different part of these helpers.
#![allow(dead_code)]

pub mod in_process;
pub mod jwks;
pub mod pki;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use dynamic_mcp_common::addr::ServiceUrl;
use dynamic_mcp_common::internal_auth::{InternalAuth, InternalToken};
use dynamic_mcp_proto::v1::registry_client::RegistryClient;
use dynamic_mcp_proto::v1::{CreateToolRequest, ToolSpec};
use dynamic_mcp_registry::config::RegistryConfig;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

pub const BINARY: &str = env!("CARGO_BIN_EXE_dynamic-mcp");
const STARTUP: Duration = Duration::from_secs(30);
pub const LEGACY_VERSION: &str = "2025-11-25";

/// A registry served from this test process.
pub struct TestRegistry {
    pub url: ServiceUrl,
    pub auth: InternalAuth,
}

impl TestRegistry {
    /// Starts a registry in `dir` with extra flags, and waits until a client
    /// with `auth` gets a health answer.
    pub async fn start(dir: &Path, extra: &[String], auth: InternalAuth) -> Self {
        let socket = dir.join("registry.sock");
        let mut args = vec![
            "dynamic-mcp-registry".to_owned(),
            format!("--listen=unix:{}", socket.display()),
            format!("--store={}", dir.join("tools.json").display()),
        ];
        args.extend(extra.iter().cloned());
        let config = RegistryConfig::try_parse_from(args).expect("registry flags");
        tokio::spawn(async move {
            if let Err(e) = dynamic_mcp_registry::serve(config).await {
                eprintln!("test registry stopped: {e:#}");
            }
        });
        let registry = Self {
            url: ServiceUrl::Unix(socket),
            auth,
        };
        let deadline = Instant::now() + STARTUP;
        loop {
            if registry.health().await.is_ok() {
                return registry;
            }
            assert!(Instant::now() < deadline, "the test registry did not become healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A plain health check with this registry's client credentials.
    pub async fn health(&self) -> Result<(), tonic::Status> {
        let channel = self.auth.channel(&self.url, None).expect("channel");
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map(|_| ())
    }

    /// Stores a dynamic tool directly (no executor needed).
    pub async fn create_tool(&self, name: &str) {
        let channel = self.auth.channel(&self.url, None).expect("channel");
        let spec = ToolSpec {
            name: name.to_owned(),
            description: format!("test tool {name}"),
            image: Some("dynamic-mcp-sandbox:latest".into()),
            timeout_ms: Some(30_000),
            code: "return 1;".into(),
            ..Default::default()
        };
        RegistryClient::new(channel)
            .create(CreateToolRequest {
                spec: Some(spec),
                ..Default::default()
            })
            .await
            .expect("create tool in the registry");
    }
}

/// A random internal token written to `dir/name`, and credentials using it.
pub fn token_file(dir: &Path, name: &str, token: &str) -> (PathBuf, InternalAuth) {
    let path = dir.join(name);
    std::fs::write(&path, format!("{token}\n")).unwrap();
    (path, InternalAuth::with_token(InternalToken::new(token).unwrap()))
}

/// An executor address that accepts connections and never answers: calls
/// to it hang (holding their guard slot) until [`BlackHole::release`].
pub struct BlackHole {
    pub path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    pub fn start(dir: &Path) -> Self {
        let path = dir.join("executor.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        Self { path, task }
    }

    /// Drops every held connection: the hanging calls fail.
    pub fn release(self) {
        self.task.abort();
    }
}

/// Everything a test frontend needs besides its settings.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub registry: TestRegistry,
    pub audit_file: PathBuf,
}

impl Stack {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = TestRegistry::start(dir.path(), &[], InternalAuth::default()).await;
        let audit_file = dir.path().join("audit").join("audit.log");
        Self {
            dir,
            registry,
            audit_file,
        }
    }

    /// The base settings of a frontend on this stack.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("MCP_REGISTRY_URL".into(), self.registry.url.to_string()),
            (
                "MCP_EXECUTOR_URL".into(),
                format!("unix:{}", self.dir.path().join("executor.sock").display()),
            ),
            ("MCP_AUDIT_FILE".into(), self.audit_file.display().to_string()),
        ]
    }

    pub async fn http_frontend(&self, extra: &[(&str, &str)]) -> Frontend {
        Frontend::http(&with(self.env(), extra)).await
    }

    pub fn audit(&self) -> AuditFile {
        AuditFile(self.audit_file.clone())
    }
}

/// `base` with `extra` settings added or replaced.
pub fn with(base: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = base
        .into_iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .collect();
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

fn command(env: &[(String, String)]) -> Command {
    let mut command = Command::new(BINARY);
    command.env_clear();
    for key in ["PATH", "HOME", "USER"] {
        if let Ok(value) = std::env::var(key) {
            command.env(key, value);
        }
    }
    command
        .env("MCP_LOG_LEVEL", "info")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .kill_on_drop(true);
    command
}

/// The frontend's stderr, collected in the background.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<String>>);

impl Log {
    fn follow(&self, stderr: tokio::process::ChildStderr) {
        let log = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut text = log.0.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

/// A `dynamic-mcp` process serving Streamable HTTP.
pub struct Frontend {
    pub child: Child,
    pub base: String,
    pub url: String,
    pub log: Log,
}

impl Frontend {
    /// Starts it on a free port and waits until it listens.
    pub async fn http(env: &[(String, String)]) -> Self {
        let mut child = command(&with(env.to_vec(), &[("MCP_TRANSPORT", "http"), ("MCP_PORT", "0")]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Log::default();
        log.follow(child.stderr.take().unwrap());
        let deadline = Instant::now() + STARTUP;
        loop {
            let text = log.text();
            if let Some(at) = text.find("serving MCP at http://") {
                let rest = &text[at + "serving MCP at ".len()..];
                let url = rest.split_whitespace().next().unwrap().to_owned();
                let base = url.trim_end_matches("/mcp").to_owned();
                return Self { child, base, url, log };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("dynamic-mcp exited while starting ({status}):\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "dynamic-mcp did not start listening:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts it and expects it to fail at startup; returns its stderr.
    pub async fn fails_to_start(env: &[(String, String)]) -> String {
        let output = command(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .unwrap();
        assert!(!output.status.success(), "dynamic-mcp started although it should not");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// The Prometheus text at /metrics.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// Headers as a map, for requests.
pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect()
}

/// One JSON-RPC POST to an MCP endpoint.
pub async fn post(url: &str, headers: &HeaderMap, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .headers(headers.clone())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .json(body)
        .send()
        .await
        .unwrap()
}

pub fn initialize_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": LEGACY_VERSION, "capabilities": {},
        "clientInfo": {"name": "security-tests", "version": "1"}}})
}

/// The JSON-RPC message with `id` in a JSON or SSE body.
pub fn message_with_id(body: &str, id: u64) -> Value {
    let candidates: Vec<Value> = if body.trim_start().starts_with('{') {
        vec![serde_json::from_str(body).unwrap()]
    } else {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    };
    candidates
        .into_iter()
        .find(|m| m["id"] == json!(id))
        .unwrap_or_else(|| panic!("no message with id {id} in: {body}"))
}

/// An initialized legacy MCP session over HTTP.
pub struct HttpSession {
    url: String,
    headers: HeaderMap,
    next_id: u64,
}

impl HttpSession {
    /// Initializes a new session; panics with the answer when refused.
    pub async fn open(url: &str, extra: &[(&str, &str)]) -> Self {
        let mut headers = headers(extra);
        let response = post(url, &headers, &initialize_body()).await;
        let status = response.status();
        let session = response.headers().get("mcp-session-id").cloned();
        let body = response.text().await.unwrap();
        assert!(status.is_success(), "initialize answered {status}: {body}");
        headers.insert("mcp-session-id", session.expect("a session id"));
        headers.insert("mcp-protocol-version", HeaderValue::from_static(LEGACY_VERSION));
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let status = post(url, &headers, &initialized).await.status();
        assert!(status.is_success(), "notifications/initialized answered {status}");
        Self {
            url: url.to_owned(),
            headers,
            next_id: 1,
        }
    }

    /// One request; returns the whole JSON-RPC answer.
    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = post(&self.url, &self.headers, &body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{method} answered {status}: {text}");
        message_with_id(&text, id)
    }

    /// A tools/call; returns its result (panics on a JSON-RPC error).
    pub async fn call_tool(&mut self, name: &str, arguments: Value) -> ToolResult {
        let answer = self
            .request("tools/call", json!({"name": name, "arguments": arguments}))
            .await;
        ToolResult::of(answer)
    }
}

/// A tools/call result.
#[derive(Debug, Clone)]
pub struct ToolResult {
    pub is_error: bool,
    pub text: String,
    pub structured: Value,
}

impl ToolResult {
    fn of(answer: Value) -> Self {
        let result = answer
            .get("result")
            .unwrap_or_else(|| panic!("tools/call failed: {answer}"));
        Self {
            is_error: result["isError"] == json!(true),
            text: result["content"][0]["text"].as_str().unwrap_or_default().to_owned(),
            structured: result["structuredContent"].clone(),
        }
    }
}

/// A `dynamic-mcp` process serving MCP on its stdin/stdout.
pub struct StdioSession {
    pub child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    next_id: u64,
    pub log: Log,
}

impl StdioSession {
    pub async fn start(env: &[(String, String)]) -> Self {
        let mut child = command(&with(env.to_vec(), &[("MCP_TRANSPORT", "stdio")]))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Log::default();
        log.follow(child.stderr.take().unwrap());
        let mut session = Self {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            child,
            next_id: 1,
            log,
        };
        let answer = session.exchange(initialize_body()).await;
        assert!(answer.get("result").is_some(), "initialize failed: {answer}");
        session
            .send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        session
    }

    async fn send(&mut self, message: &Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn exchange(&mut self, message: Value) -> Value {
        let id = message["id"].clone();
        self.send(&message).await;
        let read = async {
            while let Some(line) = self.stdout.next_line().await.unwrap() {
                let Ok(answer) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if answer["id"] == id {
                    return answer;
                }
            }
            panic!("stdout closed before the answer to {id}");
        };
        match tokio::time::timeout(Duration::from_secs(30), read).await {
            Ok(answer) => answer,
            Err(_) => panic!("no answer to {id} within 30 s; log:\n{}", self.log.text()),
        }
    }

    pub async fn call_tool(&mut self, name: &str, arguments: Value) -> ToolResult {
        let id = self.next_id;
        self.next_id += 1;
        let answer = self
            .exchange(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": name, "arguments": arguments}}))
            .await;
        ToolResult::of(answer)
    }
}

/// The audit log on disk.
pub struct AuditFile(pub PathBuf);

impl AuditFile {
    pub fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.0)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}")))
            .collect()
    }

    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.0).unwrap_or_default()
    }

    /// Waits (the writer is asynchronous) until a line matches `wanted`.
    pub async fn wait_for(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| wanted(l)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no matching audit line; the file has:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `count` lines match `wanted`, and returns the matching ones.
    pub async fn wait_for_count(&self, count: usize, wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let matching: Vec<Value> = self.lines().into_iter().filter(|l| wanted(l)).collect();
            if matching.len() >= count {
                return matching;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} matching audit lines; the file has:\n{}",
                matching.len(),
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Counts lines by `(action, result)`.
pub fn tally(lines: &[Value]) -> HashMap<(String, String), usize> {
    let mut counts = HashMap::new();
    for line in lines {
        let key = (
            line["action"].as_str().unwrap_or_default().to_owned(),
            line["result"].as_str().unwrap_or_default().to_owned(),
        );
        *counts.entry(key).or_default() += 1;
    }
    counts
}
