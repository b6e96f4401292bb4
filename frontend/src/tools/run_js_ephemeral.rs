//! `run_js_ephemeral`: run JavaScript once, without storing a tool. It takes
//! what `dynamic.tool.create` takes to run code (`code`, `image`,
//! `timeoutMs`, `dependencies`, `network`, `secrets`) plus the `args` of one
//! call, and answers as a dynamic tool does: same run in a fresh hardened
//! container, same outcomes.

use dynamic_mcp_proto::v1::RunToolRequest;
use rmcp::model::{CallToolResult, JsonObject, Tool, ToolAnnotations};
use serde::Deserialize;
use serde_json::{Value, json};

use super::dynamic_tool::{DependencyInput, admin_token_field, dependencies_field, installing_message, to_proto};
use super::network::{NetworkInput, network_field, network_to_proto, secrets_field};
use super::run_dynamic::{Ran, code_args_json, execute_with, outcome_result};
use dynamic_mcp_common::limits::CODE_CHARS;

use super::{parse_args, schema, timeout_field};
use crate::call_context::CallContext;
use crate::egress::EgressWitness;
use crate::error::ToolError;
use crate::state::ServerState;

pub const NAME: &str = "run_js_ephemeral";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Input {
    code: String,
    image: Option<String>,
    timeout_ms: Option<u32>,
    #[serde(default)]
    dependencies: Vec<DependencyInput>,
    network: Option<NetworkInput>,
    #[serde(default)]
    secrets: Vec<String>,
    args: Option<Value>,
    #[serde(rename = "adminToken")]
    _admin_token: Option<String>,
}

pub async fn run(state: &ServerState, call: &CallContext, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let input: Input = parse_args(NAME, args)?;
    if input.code.trim().is_empty() {
        return Err(ToolError::input(
            "`code` is empty; pass the body of `export async function run(args)`",
        ));
    }
    let request = RunToolRequest {
        tool_name: NAME.to_owned(),
        revision: 0,
        image: input.image,
        timeout_ms: input.timeout_ms,
        dependencies: to_proto(input.dependencies),
        code: input.code,
        args_json: code_args_json(input.args)?,
        network: input.network.map(network_to_proto),
        secrets: input.secrets,
        report_progress: call.progress.is_some(),
        ..Default::default()
    };
    let witness = EgressWitness::new(call, NAME);
    let installing = (!request.dependencies.is_empty()).then(|| installing_message(request.dependencies.len()));
    let outcome = execute_with(state, request, call.progress.as_ref(), installing.as_deref(), &witness).await?;
    Ok(outcome_result(Ran::Code(NAME), outcome))
}

pub fn definition() -> Tool {
    let input = schema(json!({
        "type": "object",
        "properties": {
            "code": {"type": "string", "minLength": CODE_CHARS.min, "maxLength": CODE_CHARS.max,
                "description": "JavaScript: the body of `export async function run(args) { ... }`. Read the input from \
                    `args` and return any JSON-serialisable value; `await` works."},
            "args": {"type": "object", "description": "The object the code receives as `args`. Default: {}."},
            "image": {"type": "string",
                "description": "Docker image to run the code in; must be on the server's allow-list. Default: the first allowed image."},
            "timeoutMs": timeout_field("Time limit of the run in milliseconds; a run over it is stopped. Default: the server's default."),
            "dependencies": dependencies_field("; installed once per set, then reused"),
            "network": network_field("the code"),
            "secrets": secrets_field(),
            "adminToken": admin_token_field()
        },
        "required": ["code"],
        "additionalProperties": false
    }));
    Tool::new(
        NAME,
        "Run JavaScript once in an isolated container, without creating a tool: the body of `export async function \
         run(args)`, and the `args` it receives. Returns what a dynamic tool returns: `{ok: true, result, durationMs}`, \
         or an error saying what went wrong.",
        input,
    )
    .with_title("Run JavaScript once")
    .with_annotations(
        ToolAnnotations::new()
            .read_only(false)
            .destructive(false)
            .idempotent(false)
            .open_world(false),
    )
}
