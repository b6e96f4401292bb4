//! The built-in tools, one file per family, and the call of a dynamic tool.

mod content;
pub mod dynamic_tool;
mod fields;
mod input_schema;
pub mod network;
pub mod revisions;
pub mod run_dynamic;
pub mod run_js_ephemeral;
mod run_output;
mod run_stream;
pub mod sandbox;
pub mod self_test;
pub mod system;
pub mod tool_test;
pub mod typed;

use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use dynamic_mcp_common::tool_names::BUILTIN_TOOL_NAMES;
use dynamic_mcp_proto::v1::ToolRecord;
use rmcp::model::{CallToolResult, JsonObject, Tool};
use serde::de::DeserializeOwned;

use crate::access::needs_admin;
use crate::call_context::CallContext;
use crate::error::ToolError;
use crate::live_limits::ToolLimits;
use crate::state::ServerState;

/// Every built-in tool this server offers, sorted by name, with `limits`
/// in the schemas of those that run code. Built once per set of limits;
/// every HTTP call reads it (rmcp checks its headers against the schema).
pub fn builtin_definitions(limits: ToolLimits) -> Arc<[Tool]> {
    static LISTED: RwLock<Option<(ToolLimits, Arc<[Tool]>)>> = RwLock::new(None);
    if let Some((built_for, tools)) = LISTED.read().unwrap_or_else(PoisonError::into_inner).as_ref()
        && *built_for == limits
    {
        return Arc::clone(tools);
    }
    let tools: Arc<[Tool]> = derived_definitions()
        .iter()
        .cloned()
        .map(|mut tool| {
            limits.apply(Arc::make_mut(&mut tool.input_schema));
            tool
        })
        .collect();
    *LISTED.write().unwrap_or_else(PoisonError::into_inner) = Some((limits, Arc::clone(&tools)));
    tools
}

/// The built-ins as derived from their input types (with common's ceilings);
/// each schema is generated once per process.
fn derived_definitions() -> &'static [Tool] {
    static DEFINITIONS: OnceLock<Vec<Tool>> = OnceLock::new();
    DEFINITIONS.get_or_init(|| {
        let mut tools = dynamic_tool::definitions();
        tools.extend(revisions::definitions());
        tools.push(tool_test::definition());
        tools.extend(sandbox::definitions());
        tools.push(run_js_ephemeral::definition());
        tools.extend(system::definitions());
        for tool in &mut tools {
            if needs_admin(&tool.name) {
                fields::with_admin_token(Arc::make_mut(&mut tool.input_schema));
            }
        }
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        tools
    })
}

pub fn is_builtin(name: &str) -> bool {
    BUILTIN_TOOL_NAMES.contains(&name)
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

/// A listed tool with its code (from the catalog's cache or the registry).
async fn with_code(state: &ServerState, listed: &ToolRecord) -> Result<Arc<ToolRecord>, ToolError> {
    state.catalog.with_code(listed).await.map_err(ToolError::registry)
}

#[cfg(test)]
mod tests {
    use dynamic_mcp_common::limits::{CODE_CHARS, MAX_TIMEOUT_MS_CEILING, NAME_PATTERN, SECRET_NAME_PATTERN};
    use dynamic_mcp_proto::v1::SandboxDescription;
    use serde_json::{Value, json};

    use super::*;

    fn listed(limits: ToolLimits) -> Vec<(String, Value)> {
        builtin_definitions(limits)
            .iter()
            .map(|t| (t.name.to_string(), Value::Object(t.input_schema.as_ref().clone())))
            .collect()
    }

    fn schema_of(name: &str, limits: ToolLimits) -> Value {
        listed(limits)
            .into_iter()
            .find_map(|(n, schema)| (n == name).then_some(schema))
            .unwrap_or(Value::Null)
    }

    fn live(max_timeout_ms: u32, max_dependencies: u32) -> ToolLimits {
        ToolLimits::of(&SandboxDescription {
            min_timeout_ms: 1000,
            max_timeout_ms,
            max_dependencies,
            ..Default::default()
        })
    }

    #[test]
    fn every_builtin_has_a_reserved_name() {
        let tools = builtin_definitions(ToolLimits::CEILINGS);
        for tool in tools.iter() {
            assert!(
                BUILTIN_TOOL_NAMES.contains(&tool.name.as_ref()),
                "{} is not reserved",
                tool.name
            );
            assert!(is_builtin(&tool.name));
        }
        assert_eq!(tools.len(), BUILTIN_TOOL_NAMES.len());
        assert!(tools.windows(2).all(|w| w[0].name < w[1].name), "sorted by name");
    }

    #[test]
    fn every_builtin_schema_describes_every_field() {
        fn check(tool: &str, path: &str, schema: &Value) {
            let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) else {
                return;
            };
            assert_eq!(
                schema["additionalProperties"], false,
                "{tool}{path} allows unknown fields"
            );
            for (name, field) in properties {
                assert!(
                    field["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty() && !d.contains('\n')),
                    "{tool}{path}.{name}"
                );
                check(tool, &format!("{path}.{name}"), field);
                if let Some(items) = field.get("items") {
                    check(tool, &format!("{path}.{name}[]"), items);
                }
            }
        }
        for tool in builtin_definitions(ToolLimits::CEILINGS).iter() {
            assert!(tool.description.as_ref().is_some_and(|d| !d.is_empty()));
            let schema = Value::Object(tool.input_schema.as_ref().clone());
            assert_eq!(schema["type"], "object");
            check(&tool.name, "", &schema);
            let text = schema.to_string();
            for derived_only in [
                "\"$ref\"",
                "\"$defs\"",
                "\"$schema\"",
                "uint32",
                "uint64",
                "x-dynamic-mcp",
            ] {
                assert!(!text.contains(derived_only), "{}: {derived_only} in {text}", tool.name);
            }
        }
    }

    #[test]
    fn the_schemas_carry_common_limits() {
        let create = schema_of(dynamic_tool::CREATE, ToolLimits::CEILINGS);
        let tool = &create["properties"]["tool"];
        assert_eq!(tool["required"], json!(["name", "description", "code"]));
        assert_eq!(tool["properties"]["name"]["pattern"], NAME_PATTERN);
        assert_eq!(tool["properties"]["code"]["maxLength"], CODE_CHARS.max);
        assert_eq!(tool["properties"]["timeoutMs"]["maximum"], MAX_TIMEOUT_MS_CEILING);
        assert_eq!(tool["properties"]["secrets"]["items"]["pattern"], SECRET_NAME_PATTERN);
        assert_eq!(
            tool["properties"]["dependencies"]["items"]["required"],
            json!(["name", "version"])
        );
        assert_eq!(create["required"], json!(["tool"]));
        assert_eq!(create["properties"]["idempotencyKey"]["maxLength"], 128);
        let exec = schema_of(sandbox::EXEC, ToolLimits::CEILINGS);
        assert_eq!(
            (
                exec["properties"]["commands"]["minItems"].clone(),
                exec["properties"]["commands"]["maxItems"].clone()
            ),
            (json!(1), json!(20))
        );
        assert_eq!(exec["required"], json!(["sessionId", "commands"]));
    }

    #[test]
    fn create_fields_are_not_nullable_and_removable_patch_fields_are() {
        let create = schema_of(dynamic_tool::CREATE, ToolLimits::CEILINGS);
        let created = &create["properties"]["tool"]["properties"];
        assert_eq!(created["title"]["type"], "string");
        assert_eq!(
            created["isolation"],
            json!({"type": "string", "enum": ["container-per-call", "container-per-tool"],
            "description": "How runs are isolated from each other. Default: the server's."})
        );
        let update = schema_of(dynamic_tool::UPDATE, ToolLimits::CEILINGS);
        let patch = &update["properties"]["patch"];
        assert_eq!(patch["properties"]["title"]["type"], json!(["string", "null"]));
        assert_eq!(patch["properties"]["network"]["type"], json!(["object", "null"]));
        assert_eq!(
            patch["properties"]["isolation"]["enum"],
            json!(["container-per-call", "container-per-tool", null])
        );
        assert_eq!(
            patch["properties"]["description"]["type"], "string",
            "null does not remove a description"
        );
        assert!(patch["properties"].get("name").is_none(), "the name cannot change");
        assert!(patch.get("required").is_none());
    }

    #[test]
    fn admin_tools_and_only_they_take_the_admin_token() {
        for (name, schema) in listed(ToolLimits::CEILINGS) {
            let token = &schema["properties"]["adminToken"];
            assert_eq!(token.is_object(), needs_admin(&name), "{name}");
            if needs_admin(&name) {
                assert_eq!(token["type"], "string");
                let required = schema["required"].as_array().cloned().unwrap_or_default();
                assert!(!required.contains(&json!("adminToken")), "{name}");
            }
        }
    }

    #[test]
    fn the_executor_limits_replace_the_ceilings() {
        let limits = live(45_000, 5);
        for (name, schema) in listed(limits) {
            let text = schema.to_string();
            assert!(
                !text.contains(&MAX_TIMEOUT_MS_CEILING.to_string()),
                "{name} still shows the ceiling"
            );
        }
        let run = schema_of(run_js_ephemeral::NAME, limits);
        let timeout = &run["properties"]["timeoutMs"];
        assert_eq!(timeout["maximum"], 45_000);
        assert!(
            timeout["description"]
                .as_str()
                .is_some_and(|d| d.ends_with("1000-45000 ms on this server."))
        );
        assert_eq!(run["properties"]["dependencies"]["maxItems"], 5);
        let create = schema_of(dynamic_tool::CREATE, limits);
        assert_eq!(
            create["properties"]["tool"]["properties"]["timeoutMs"]["maximum"],
            45_000
        );
        let update = schema_of(dynamic_tool::UPDATE, limits);
        assert_eq!(
            update["properties"]["patch"]["properties"]["dependencies"]["maxItems"],
            5
        );
        let exec = schema_of(sandbox::EXEC, limits);
        assert_eq!(exec["properties"]["timeoutMs"]["maximum"], 45_000);
    }
}
