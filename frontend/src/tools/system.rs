//! `system.*`: facts about this server.

use rmcp::model::{CallToolResult, JsonObject, Tool};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::input_schema::input_schema;
use super::parse_args;
use crate::error::ToolError;
use crate::state::ServerState;

pub use dynamic_mcp_common::tool_names::system::{GUARD_METRICS, HEALTH};

/// system.health takes no arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct HealthInput {}

pub fn health(state: &ServerState, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let HealthInput {} = parse_args(HEALTH, args)?;
    Ok(CallToolResult::structured(json!({
        "status": "ok",
        "service": "dynamic-mcp",
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSeconds": state.started.elapsed().as_secs(),
    })))
}

/// system.guard_metrics takes no arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GuardMetricsInput {}

/// The guard's limits and counters, as in the resource `dynamic://metrics/guard`.
pub fn guard_metrics(state: &ServerState, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let GuardMetricsInput {} = parse_args(GUARD_METRICS, args)?;
    Ok(CallToolResult::structured(json!(state.guard.snapshot())))
}

pub fn definitions() -> Vec<Tool> {
    let read_only = || super::hints(true, false, true);
    vec![
        Tool::new(
            GUARD_METRICS,
            "Report the execution guard: `{activeExecutions, limits: {maxConcurrency, maxCallsPerWindow, windowMs}, \
             scopes: [{scope, total, allowed, rejectedRate, rejectedConcurrency, failed}]}`. Scopes: dynamic (dynamic \
             tool runs), admin (dynamic.tool.*), sandbox (sandbox.*), system (system.*).",
            input_schema::<GuardMetricsInput>(),
        )
        .with_title("Guard metrics")
        .with_annotations(read_only()),
        Tool::new(
            HEALTH,
            "Report that this MCP server is up: `{status: \"ok\", service, version, uptimeSeconds}`.",
            input_schema::<HealthInput>(),
        )
        .with_title("Server health")
        .with_annotations(read_only()),
    ]
}
