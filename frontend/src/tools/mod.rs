//! The built-in tools, one file per family, and the call of a dynamic tool.

mod content;
pub mod dynamic_tool;
pub mod network;
pub mod revisions;
pub mod run_dynamic;
pub mod run_js_ephemeral;
mod run_stream;
pub mod sandbox;
pub mod self_test;
pub mod system;
pub mod tool_test;
pub mod typed;

use std::sync::OnceLock;

use rmcp::model::{CallToolResult, JsonObject, Tool};
use serde::de::DeserializeOwned;

use crate::call_context::CallContext;
use crate::error::ToolError;
use crate::state::ServerState;

/// Every built-in tool this server offers, sorted by name.
pub fn builtin_definitions() -> &'static [Tool] {
    static DEFINITIONS: OnceLock<Vec<Tool>> = OnceLock::new();
    DEFINITIONS.get_or_init(|| {
        let mut tools = dynamic_tool::definitions();
        tools.extend(revisions::definitions());
        tools.push(tool_test::definition());
        tools.extend(sandbox::definitions());
        tools.push(run_js_ephemeral::definition());
        tools.extend(system::definitions());
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        tools
    })
}

pub fn is_builtin(name: &str) -> bool {
    builtin_definitions().iter().any(|tool| tool.name == name)
}

/// Runs the built-in tool `name`; `None` if there is no such built-in.
pub async fn call_builtin(
    state: &ServerState,
    name: &str,
    args: JsonObject,
    call: &CallContext,
) -> Option<Result<CallToolResult, ToolError>> {
    let result = match name {
        dynamic_tool::CREATE => dynamic_tool::create(state, call, args).await,
        dynamic_tool::UPDATE => dynamic_tool::update(state, call, args).await,
        dynamic_tool::DELETE => dynamic_tool::delete(state, call, args).await,
        dynamic_tool::ENABLE => dynamic_tool::enable(state, call, args).await,
        dynamic_tool::LIST => dynamic_tool::list(state, args).await,
        dynamic_tool::GET => dynamic_tool::get(state, args).await,
        revisions::HISTORY => revisions::history(state, args).await,
        revisions::ROLLBACK => revisions::rollback(state, call, args).await,
        revisions::RESTORE => revisions::restore(state, call, args).await,
        tool_test::NAME => tool_test::test(state, call, args).await,
        sandbox::INITIALIZE => sandbox::initialize(state, call, args).await,
        sandbox::EXEC => sandbox::exec(state, call, args).await,
        sandbox::RUN_JS => sandbox::run_js(state, call, args).await,
        sandbox::STOP => sandbox::stop(state, call, args).await,
        sandbox::SESSION_LIST => sandbox::list(state, call, args).await,
        run_js_ephemeral::NAME => run_js_ephemeral::run(state, call, args).await,
        system::HEALTH => system::health(state, args),
        system::GUARD_METRICS => system::guard_metrics(state, args),
        _ => return None,
    };
    Some(result)
}

/// Reads a tool's arguments into `T`, with an error that names the field.
pub fn parse_args<T: DeserializeOwned>(tool: &str, args: JsonObject) -> Result<T, ToolError> {
    serde_path_to_error::deserialize(serde_json::Value::Object(args)).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!(" at `{path}`")
        };
        ToolError::input(format!("invalid arguments for {tool}{at}: {}", e.into_inner()))
    })
}

/// The hints of a built-in that stays inside this server.
fn hints(read_only: bool, destructive: bool, idempotent: bool) -> rmcp::model::ToolAnnotations {
    rmcp::model::ToolAnnotations::new()
        .read_only(read_only)
        .destructive(destructive)
        .idempotent(idempotent)
        .open_world(false)
}

/// The `timeoutMs` field of every tool that runs code: the bounds come from
/// common/, and the executor may hold a lower maximum, which its refusal names.
fn timeout_field(description: &str) -> serde_json::Value {
    use dynamic_mcp_common::limits::{MAX_TIMEOUT_MS_CEILING, MIN_TIMEOUT_MS};
    serde_json::json!({"type": "integer", "minimum": MIN_TIMEOUT_MS, "maximum": MAX_TIMEOUT_MS_CEILING,
        "description": format!("{description} {MIN_TIMEOUT_MS}-{MAX_TIMEOUT_MS_CEILING} ms, and at most the server's \
            maximum (the dynamic.tool.author prompt states it).")})
}

/// An input schema: a JSON object literal that must be a JSON Schema object.
fn schema(value: serde_json::Value) -> JsonObject {
    match value {
        serde_json::Value::Object(object) => object,
        _ => JsonObject::new(),
    }
}

#[cfg(test)]
mod tests {
    use dynamic_mcp_common::tool_names::BUILTIN_TOOL_NAMES;

    use super::*;

    #[test]
    fn every_builtin_has_a_reserved_name() {
        for tool in builtin_definitions() {
            assert!(
                BUILTIN_TOOL_NAMES.contains(&tool.name.as_ref()),
                "{} is not reserved",
                tool.name
            );
        }
        assert_eq!(builtin_definitions().len(), BUILTIN_TOOL_NAMES.len());
    }

    #[test]
    fn every_builtin_schema_describes_every_field() {
        fn check(tool: &str, path: &str, schema: &serde_json::Value) {
            let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) else {
                return;
            };
            assert_eq!(
                schema["additionalProperties"], false,
                "{tool}{path} allows unknown fields"
            );
            for (name, field) in properties {
                assert!(
                    field["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{tool}{path}.{name}"
                );
                check(tool, &format!("{path}.{name}"), field);
                if let Some(items) = field.get("items") {
                    check(tool, &format!("{path}.{name}[]"), items);
                }
            }
        }
        for tool in builtin_definitions() {
            assert!(tool.description.as_ref().is_some_and(|d| !d.is_empty()));
            let schema = serde_json::Value::Object(tool.input_schema.as_ref().clone());
            assert_eq!(schema["type"], "object");
            check(&tool.name, "", &schema);
        }
    }
}
