//! `system.*`: facts about this server.

use rmcp::model::{CallToolResult, JsonObject, Tool, ToolAnnotations};
use serde::Deserialize;
use serde_json::json;

use super::{parse_args, schema};
use crate::error::ToolError;
use crate::server::ServerState;

pub const HEALTH: &str = "system.health";

#[derive(Debug, Deserialize)]
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

pub fn definitions() -> Vec<Tool> {
    let input = schema(json!({"type": "object", "properties": {}, "additionalProperties": false}));
    vec![
        Tool::new(
            HEALTH,
            "Report that this MCP server is up: `{status: \"ok\", service, version, uptimeSeconds}`.",
            input,
        )
        .with_title("Server health")
        .with_annotations(
            ToolAnnotations::new()
                .read_only(true)
                .destructive(false)
                .idempotent(true)
                .open_world(false),
        ),
    ]
}
