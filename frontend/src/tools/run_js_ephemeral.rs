//! `run_js_ephemeral`: run JavaScript once, without storing a tool. It takes
//! what `dynamic.tool.create` takes to run code (`code`, `image`,
//! `timeoutMs`, `dependencies`, `network`, `secrets`) plus the `args` of one
//! call, and answers as a dynamic tool does: same run in a fresh hardened
//! container, same outcomes.

use dynamic_mcp_common::limits::{
    CODE_CHARS, MAX_DEPENDENCIES, MAX_SECRETS, MAX_TIMEOUT_MS_CEILING, MIN_TIMEOUT_MS, SECRET_NAME_PATTERN,
};
use dynamic_mcp_proto::v1::RunToolRequest;
use rmcp::model::{CallToolResult, JsonObject, Tool};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::dynamic_tool::{DependencyInput, installing_message, to_proto};
use super::input_schema::input_schema;
use super::network::{NetworkInput, SECRETS_DESCRIPTION, network_description, network_to_proto};
use super::parse_args;
use super::run_dynamic::{Ran, code_args_json, execute_with, outcome_result};
use crate::call_context::CallContext;
use crate::egress::EgressWitness;
use crate::error::ToolError;
use crate::state::ServerState;

pub use dynamic_mcp_common::tool_names::RUN_JS_EPHEMERAL as NAME;

/// The arguments of run_js_ephemeral.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Input {
    /// JavaScript: the body of `export async function run(args) { ... }`. Read
    /// the input from `args` and return any JSON-serialisable value; `await` works.
    #[schemars(length(min = CODE_CHARS.min, max = CODE_CHARS.max))]
    code: String,
    /// Docker image to run the code in; must be on the server's allow-list.
    /// Default: the first allowed image.
    image: Option<String>,
    /// Time limit of the run in milliseconds; a run over it is stopped.
    /// Default: the server's default.
    #[schemars(range(min = MIN_TIMEOUT_MS, max = MAX_TIMEOUT_MS_CEILING))]
    timeout_ms: Option<u32>,
    /// npm packages the code imports; installed once per set, then reused.
    #[serde(default)]
    #[schemars(length(max = MAX_DEPENDENCIES))]
    dependencies: Vec<DependencyInput>,
    #[schemars(description = network_description("the code"))]
    network: Option<NetworkInput>,
    #[serde(default)]
    #[schemars(length(max = MAX_SECRETS), inner(pattern(SECRET_NAME_PATTERN)), extend("uniqueItems" = true),
        description = SECRETS_DESCRIPTION)]
    secrets: Vec<String>,
    /// The object the code receives as `args`. Default: {}.
    #[schemars(extend("type" = "object"))]
    args: Option<Value>,
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
    Tool::new(
        NAME,
        "Run JavaScript once in an isolated container, without creating a tool: the body of `export async function \
         run(args)`, and the `args` it receives. Returns what a dynamic tool returns: `{ok: true, result, durationMs}`, \
         or an error saying what went wrong.",
        input_schema::<Input>(),
    )
    .with_title("Run JavaScript once")
    .with_annotations(super::hints(false, false, false))
}
