//! `dynamic.tool.test`: run a stored tool, or a tool spec that is not stored,
//! once with given `args` (checked and answered as a real call would be), or
//! through its examples when no `args` are given. Nothing is stored and
//! nothing is announced.

use dynamic_mcp_common::tool_schema::ToolSchema;
use rmcp::model::{CallToolResult, JsonObject, Tool};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::dynamic_tool::{NewTool, get_record, prepare};
use super::input_schema::input_schema;
use super::run_dynamic::{Ran, execute, outcome_result, request_for};
use super::typed::{self, Contract, Refusal};
use super::{parse_args, self_test};
use crate::call_context::CallContext;
use crate::egress::EgressWitness;
use crate::error::ToolError;
use crate::state::ServerState;

pub use dynamic_mcp_common::tool_names::dynamic_tool::TEST as NAME;

/// The arguments of dynamic.tool.test: `name` or `tool`, not both.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TestInput {
    /// Name of the dynamic tool to run as it is stored.
    name: Option<String>,
    /// A tool as dynamic.tool.create takes it (`{name, description, code, ...}`),
    /// run without being stored.
    // Listed as an object: dynamic.tool.create lists its schema once already.
    #[schemars(with = "Option<JsonObject>")]
    tool: Option<NewTool>,
    /// The `args` of one run, checked against the tool's inputSchema. Leave it
    /// out to run the tool's examples instead.
    #[schemars(extend("type" = "object"))]
    args: Option<Value>,
}

pub async fn test(state: &ServerState, call: &CallContext, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let input: TestInput = parse_args(NAME, args)?;
    let candidate = match (input.name, input.tool) {
        (Some(name), None) => get_record(state, &name, None).await?,
        (None, Some(tool)) => {
            for (field, schema) in [
                ("inputSchema", &tool.input_schema),
                ("outputSchema", &tool.output_schema),
            ] {
                if let Some(schema) = schema {
                    ToolSchema::compile(field, schema).map_err(|e| ToolError::input(e.to_string()))?;
                }
            }
            let prepared = prepare(state, call, tool.policy_fields()).await?;
            tool.into_candidate(prepared.image, prepared.timeout_ms)
        }
        _ => {
            return Err(ToolError::input(
                "give either `name` (a stored tool) or `tool` (a tool spec as dynamic.tool.create takes it), not both",
            ));
        }
    };
    let contract = Contract::of(&candidate)?;
    let Some(args) = input.args else {
        if candidate.examples.is_empty() {
            return Err(ToolError::input(format!(
                "'{}' has no examples: pass `args` to run it once",
                candidate.name
            )));
        }
        let outcomes = self_test::run_examples(state, call, &candidate).await?;
        if outcomes.iter().any(|o| !o.passed()) {
            return Ok(self_test::refusal(NAME, &candidate.name, &outcomes));
        }
        return Ok(CallToolResult::structured(json!({"ok": true, "examples": outcomes})));
    };
    let arguments = match (contract.flat, args) {
        (true, Value::Object(object)) => object,
        (false, args) => JsonObject::from_iter([("args".to_owned(), args)]),
        (true, other) => {
            return Err(ToolError::input(format!(
                "`args` must be an object (the code receives it as `args`); it is {}",
                typed::json_kind(&other)
            )));
        }
    };
    let args = match typed::call_args(&candidate.name, &contract, Some(arguments)) {
        Ok(args) => args,
        Err(Refusal::Error(error)) => return Err(error),
        Err(Refusal::Result(result)) => return Ok(result),
    };
    let witness = EgressWitness::new(call, &candidate.name);
    let outcome = execute(state, request_for(&candidate, args.to_string()), &witness).await?;
    if let Some(mismatch) = typed::check_result(&candidate.name, &contract, &outcome) {
        return Ok(mismatch);
    }
    Ok(outcome_result(Ran::Tool(&candidate.name), outcome))
}

pub fn definition() -> Tool {
    Tool::new(
        NAME,
        "Run a dynamic tool without storing anything: a stored one (`name`) or a draft (`tool`, as dynamic.tool.create \
         takes it). With `args`, one run answered as a call would be; without, its examples run and each one's \
         outcome is returned.",
        input_schema::<TestInput>(),
    )
    .with_title("Test dynamic tool")
    .with_annotations(super::hints(false, false, false))
}
