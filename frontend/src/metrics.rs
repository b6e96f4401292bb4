//! Prometheus metrics, served as text at `/metrics` in HTTP mode. Every
//! metric name and label lives here. Label values are bounded: tool names are
//! built-ins or dynamic tools (capped by the registry's MCP_DYNAMIC_MAX_TOOLS),
//! the rest are fixed words.

use std::sync::OnceLock;
use std::time::Duration;

use dynamic_mcp_common::periodic::{self, Ticks};
use dynamic_mcp_proto::v1::{EgressDecision, EgressEvent, EgressEventKind};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::guard::ToolClass;
use crate::links::Service;

const TOOL_CALLS: &str = "mcp_tool_calls_total";
const TOOL_CALL_SECONDS: &str = "mcp_tool_call_duration_seconds";
const GUARD_REJECTIONS: &str = "mcp_guard_rejections_total";
const GUARD_ACTIVE: &str = "mcp_guard_active_executions";
const CONTAINERS_STARTED: &str = "mcp_containers_started_total";
const BACKEND_ERRORS: &str = "mcp_backend_errors_total";
const AUTH_REJECTIONS: &str = "mcp_auth_rejections_total";
const AUDIT_WRITE_FAILURES: &str = "mcp_audit_write_failures_total";
const AUDIT_DROPPED: &str = "mcp_audit_events_dropped_total";
const EGRESS_CONNECTIONS: &str = "mcp_egress_connections_total";
const EGRESS_SECRET_USES: &str = "mcp_egress_secret_uses_total";
const HTTP_CONNECTIONS: &str = "mcp_http_connections";
const HTTP_CONNECTIONS_REFUSED: &str = "mcp_http_connections_refused_total";
const HTTP_CONNECTIONS_CLOSED: &str = "mcp_http_connections_closed_total";
const HTTP_REQUESTS_REFUSED: &str = "mcp_http_requests_refused_total";
const AUTH_BACKOFF_REFUSALS: &str = "mcp_auth_backoff_refusals_total";

const DURATION_BUCKETS: &[f64] = &[0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// How a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    /// The tool ran and returned an error result.
    Error,
    /// A dynamic tool's arguments did not match its inputSchema; nothing ran.
    InvalidArgs,
    /// A dynamic tool's result did not match its outputSchema.
    OutputMismatch,
    /// Refused by access rules (admin token, read-only).
    Denied,
    /// Refused by the guard.
    Rejected,
}

impl CallOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::InvalidArgs => "invalid_args",
            Self::OutputMismatch => "output_mismatch",
            Self::Denied => "denied",
            Self::Rejected => "rejected",
        }
    }
}

/// The process-wide recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = || {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(TOOL_CALL_SECONDS.to_owned()), DURATION_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new())
        };
        let handle = builder().install_recorder().unwrap_or_else(|e| {
            tracing::warn!("cannot install the metrics recorder ({e}); /metrics will be empty");
            builder().build_recorder().handle()
        });
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(
        TOOL_CALLS,
        "Tool calls by tool, guard scope and outcome (ok, error, invalid_args, output_mismatch, denied, rejected)."
    );
    describe_histogram!(
        TOOL_CALL_SECONDS,
        metrics::Unit::Seconds,
        "How long tool calls took, by guard scope."
    );
    describe_counter!(
        GUARD_REJECTIONS,
        "Tool calls the guard refused, by scope and reason (concurrency, rate)."
    );
    describe_gauge!(GUARD_ACTIVE, "Tool calls holding a concurrency slot.");
    describe_counter!(
        CONTAINERS_STARTED,
        "Containers the executor started for dynamic tool runs."
    );
    describe_counter!(
        BACKEND_ERRORS,
        "Failed calls to the registry or executor, by service and gRPC code."
    );
    describe_counter!(
        AUTH_REJECTIONS,
        "HTTP requests refused by bearer-token checks, by reason."
    );
    describe_counter!(
        AUDIT_WRITE_FAILURES,
        "Audit lines that could not be written (e.g. disk full)."
    );
    describe_counter!(AUDIT_DROPPED, "Audit events dropped because the writer fell behind.");
    describe_counter!(
        EGRESS_CONNECTIONS,
        "Connections code opened or tried through the egress proxy, by tool, decision (allowed, refused, failed) \
         and reason."
    );
    describe_counter!(
        EGRESS_SECRET_USES,
        "Requests that carried a secret's placeholder, by tool and outcome (injected: to the secret's host; \
         withheld: elsewhere, sent unreplaced)."
    );
    describe_gauge!(HTTP_CONNECTIONS, "Open HTTP connections.");
    describe_counter!(
        HTTP_CONNECTIONS_REFUSED,
        "HTTP connections refused because MCP_HTTP_MAX_CONNECTIONS were open."
    );
    describe_counter!(
        HTTP_CONNECTIONS_CLOSED,
        "HTTP connections the server closed, by reason (header_timeout, idle_timeout)."
    );
    describe_counter!(
        HTTP_REQUESTS_REFUSED,
        "HTTP requests refused before reaching MCP, by reason (body_timeout, stream_limit, session_limit, \
         parse_error, invalid_request, invalid_params, removed_method)."
    );
    describe_counter!(
        AUTH_BACKOFF_REFUSALS,
        "Requests refused because the caller or its address is backing off after failed credential checks, \
         by realm (admin_token: refused unchecked; bearer: an invalid token answered 429)."
    );
}

/// The Prometheus text exposition.
pub fn render() -> String {
    handle().render()
}

/// Drains histogram buckets now and then, as the exporter requires.
pub fn spawn_upkeep(stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(periodic::every(Ticks::new(UPKEEP_EVERY, stop), || async {
        handle().run_upkeep();
    }))
}

pub fn tool_call(tool: &str, scope: ToolClass, outcome: CallOutcome, took: Duration) {
    counter!(TOOL_CALLS, "tool" => tool.to_owned(), "scope" => scope.as_str(), "outcome" => outcome.as_str())
        .increment(1);
    histogram!(TOOL_CALL_SECONDS, "scope" => scope.as_str()).record(took.as_secs_f64());
}

pub fn guard_rejected(scope: ToolClass, reason: &'static str) {
    counter!(GUARD_REJECTIONS, "scope" => scope.as_str(), "reason" => reason).increment(1);
}

pub fn guard_active(active: u64) {
    gauge!(GUARD_ACTIVE).set(active as f64);
}

pub fn container_started() {
    counter!(CONTAINERS_STARTED).increment(1);
}

pub fn backend_error(service: Service, code: tonic::Code) {
    counter!(BACKEND_ERRORS, "service" => service.to_string(), "code" => format!("{code:?}")).increment(1);
}

pub fn auth_rejected(reason: &'static str) {
    counter!(AUTH_REJECTIONS, "reason" => reason).increment(1);
}

pub fn audit_write_failed() {
    counter!(AUDIT_WRITE_FAILURES).increment(1);
}

pub fn audit_dropped() {
    counter!(AUDIT_DROPPED).increment(1);
}

/// One egress event of a run of `tool`; reasons are the executor's fixed words.
pub fn egress(tool: &str, event: &EgressEvent) {
    if event.kind() == EgressEventKind::Connection {
        let decision = match event.decision() {
            EgressDecision::Allowed => "allowed",
            EgressDecision::Refused => "refused",
            EgressDecision::Failed | EgressDecision::Unspecified => "failed",
        };
        counter!(EGRESS_CONNECTIONS, "tool" => tool.to_owned(), "decision" => decision, "reason" => event.reason.clone())
            .increment(1);
    }
    for (outcome, names) in [
        ("injected", &event.secrets_injected),
        ("withheld", &event.secrets_withheld),
    ] {
        if !names.is_empty() {
            counter!(EGRESS_SECRET_USES, "tool" => tool.to_owned(), "outcome" => outcome).increment(names.len() as u64);
        }
    }
}

/// Why the server closed an HTTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionClosed {
    /// A request head did not arrive within MCP_HTTP_HEADER_READ_TIMEOUT_MS.
    HeaderTimeout,
    /// No request within MCP_HTTP_IDLE_TIMEOUT_MS.
    IdleTimeout,
}

impl ConnectionClosed {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "header_timeout",
            Self::IdleTimeout => "idle_timeout",
        }
    }
}

/// Counts an open HTTP connection until dropped.
pub struct OpenConnection(());

pub fn http_connection_opened() -> OpenConnection {
    gauge!(HTTP_CONNECTIONS).increment(1.0);
    OpenConnection(())
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        gauge!(HTTP_CONNECTIONS).decrement(1.0);
    }
}

pub fn http_connection_refused() {
    counter!(HTTP_CONNECTIONS_REFUSED).increment(1);
}

pub fn http_connection_closed(why: ConnectionClosed) {
    counter!(HTTP_CONNECTIONS_CLOSED, "reason" => why.as_str()).increment(1);
}

pub fn http_request_refused(reason: &'static str) {
    counter!(HTTP_REQUESTS_REFUSED, "reason" => reason).increment(1);
}

pub fn auth_backoff_refusal(realm: &'static str) {
    counter!(AUTH_BACKOFF_REFUSALS, "realm" => realm).increment(1);
}
