//! `dynamic.tool.*`: create, change, remove and inspect dynamic tools.
//!
//! The registry owns the rules for names and fields and the executor owns
//! run policy (images, timeouts, dependencies), so this file only shapes
//! arguments and answers; their refusals come back with messages to show.

use dynamic_mcp_proto::v1::{
    CreateToolRequest, DeleteToolRequest, Dependency, DependencyList, DependencySetup, GetToolRequest,
    ListToolsRequest, PrepareToolRequest, PrepareToolResponse, SetEnabledRequest, ToolPatch, ToolRecord, ToolSpec,
    ToolWriteResponse, UpdateToolRequest,
};
use rmcp::model::{CallToolResult, JsonObject, Tool, ToolAnnotations};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use tonic::Code;

use super::{CallContext, parse_args, schema};
use crate::error::ToolError;
use crate::progress::Progress;
use crate::server::ServerState;

pub const CREATE: &str = "dynamic.tool.create";
pub const UPDATE: &str = "dynamic.tool.update";
pub const DELETE: &str = "dynamic.tool.delete";
pub const ENABLE: &str = "dynamic.tool.enable";
pub const LIST: &str = "dynamic.tool.list";
pub const GET: &str = "dynamic.tool.get";

/// Attempts of an update whose policy check read the tool first, when a
/// concurrent writer got in between and the caller gave no expectedRevision.
const UPDATE_ATTEMPTS: usize = 3;

// ---- inputs -----------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateInput {
    tool: NewTool,
    #[serde(rename = "adminToken")]
    _admin_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewTool {
    name: String,
    title: Option<String>,
    description: String,
    image: Option<String>,
    timeout_ms: Option<u32>,
    #[serde(default)]
    dependencies: Vec<DependencyInput>,
    code: String,
    enabled: Option<bool>,
}

/// One npm dependency as callers write it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DependencyInput {
    name: String,
    version: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateInput {
    name: String,
    patch: PatchInput,
    expected_revision: Option<u64>,
    #[serde(rename = "adminToken")]
    _admin_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PatchInput {
    /// Present only to refuse it with a clear message.
    name: Option<serde::de::IgnoredAny>,
    /// `Some(None)` (an explicit null) removes the title.
    #[serde(default, deserialize_with = "present")]
    title: Option<Option<String>>,
    description: Option<String>,
    image: Option<String>,
    timeout_ms: Option<u32>,
    dependencies: Option<Vec<DependencyInput>>,
    code: Option<String>,
    enabled: Option<bool>,
}

/// Tells an absent field (`None`) from an explicit null (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NamedInput {
    name: String,
    expected_revision: Option<u64>,
    #[serde(rename = "adminToken")]
    _admin_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EnableInput {
    name: String,
    enabled: bool,
    expected_revision: Option<u64>,
    #[serde(rename = "adminToken")]
    _admin_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListInput {
    #[serde(default)]
    include_code: bool,
    #[serde(rename = "adminToken")]
    _admin_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GetInput {
    name: String,
    #[serde(rename = "adminToken")]
    _admin_token: Option<String>,
}

pub(super) fn to_proto(dependencies: Vec<DependencyInput>) -> Vec<Dependency> {
    dependencies
        .into_iter()
        .map(|d| Dependency {
            name: d.name,
            version: d.version,
        })
        .collect()
}

// ---- the view callers see ---------------------------------------------------

/// A tool as tools report it: camelCase, code only when asked.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolView {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    description: String,
    image: String,
    timeout_ms: u32,
    dependencies: Vec<DependencyInput>,
    enabled: bool,
    created_at: String,
    updated_at: String,
    revision: u64,
    code_size_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
}

impl ToolView {
    pub fn of(record: ToolRecord, with_code: bool) -> Self {
        Self {
            name: record.name,
            title: record.title,
            description: record.description,
            image: record.image,
            timeout_ms: record.timeout_ms,
            dependencies: record
                .dependencies
                .into_iter()
                .map(|d| DependencyInput {
                    name: d.name,
                    version: d.version,
                })
                .collect(),
            enabled: record.enabled,
            created_at: record.created_at,
            updated_at: record.updated_at,
            revision: record.revision,
            code_size_bytes: record.code_size_bytes,
            code: with_code.then_some(record.code),
        }
    }
}

fn view_json(record: Option<ToolRecord>, with_code: bool) -> serde_json::Value {
    record.map_or(serde_json::Value::Null, |r| json!(ToolView::of(r, with_code)))
}

// ---- handlers ---------------------------------------------------------------

pub async fn create(state: &ServerState, call: &CallContext, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let CreateInput { tool, .. } = parse_args(CREATE, args)?;
    let dependencies = to_proto(tool.dependencies);
    let prepared = prepare(state, call, tool.image, tool.timeout_ms, &dependencies).await?;
    let setup = prepared.dependency_setup;
    let spec = ToolSpec {
        name: tool.name,
        title: tool.title,
        description: tool.description,
        image: Some(prepared.image),
        timeout_ms: Some(prepared.timeout_ms),
        dependencies,
        code: tool.code,
        enabled: tool.enabled,
    };
    let request = CreateToolRequest { spec: Some(spec) };
    let written = state
        .services
        .registry
        .clone()
        .create(request)
        .await
        .map_err(ToolError::registry)?;
    let written = settle(state, written.into_inner()).await;
    Ok(written_result(written, setup))
}

pub async fn update(state: &ServerState, call: &CallContext, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let input: UpdateInput = parse_args(UPDATE, args)?;
    if input.patch.name.is_some() {
        return Err(ToolError::input(
            "a tool cannot be renamed: remove `name` from `patch`; to rename, create a tool under the new name \
             (dynamic.tool.get gives you its current fields) and delete this one",
        ));
    }
    let touches_policy =
        input.patch.image.is_some() || input.patch.timeout_ms.is_some() || input.patch.dependencies.is_some();
    let mut attempt = 1;
    loop {
        let mut patch = patch_to_proto(&input.patch);
        let mut setup = None;
        let mut expected_revision = input.expected_revision;
        if touches_policy {
            let current = get_record(state, &input.name).await?;
            // Check policy on the tool as it will be, not just on the patch.
            let dependencies = match &input.patch.dependencies {
                Some(deps) => to_proto(deps.clone()),
                None => current.dependencies,
            };
            let image = input.patch.image.clone().unwrap_or(current.image);
            let timeout_ms = input.patch.timeout_ms.unwrap_or(current.timeout_ms);
            let prepared = prepare(state, call, Some(image), Some(timeout_ms), &dependencies).await?;
            setup = prepared.dependency_setup;
            if input.patch.image.is_some() {
                patch.image = Some(prepared.image);
            }
            if input.patch.timeout_ms.is_some() {
                patch.timeout_ms = Some(prepared.timeout_ms);
            }
            // The check above holds for this revision only.
            expected_revision = expected_revision.or(Some(current.revision));
        }
        let request = UpdateToolRequest {
            name: input.name.clone(),
            patch: Some(patch),
            expected_revision,
        };
        match state.services.registry.clone().update(request).await {
            Err(status)
                if status.code() == Code::Aborted
                    && touches_policy
                    && input.expected_revision.is_none()
                    && attempt < UPDATE_ATTEMPTS =>
            {
                attempt += 1;
            }
            Err(status) => return Err(ToolError::registry(status)),
            Ok(written) => {
                let written = settle(state, written.into_inner()).await;
                return Ok(written_result(written, setup));
            }
        }
    }
}

fn patch_to_proto(patch: &PatchInput) -> ToolPatch {
    ToolPatch {
        title: patch.title.clone().flatten(),
        clear_title: matches!(patch.title, Some(None)),
        description: patch.description.clone(),
        image: patch.image.clone(),
        timeout_ms: patch.timeout_ms,
        dependencies: patch
            .dependencies
            .clone()
            .map(|items| DependencyList { items: to_proto(items) }),
        code: patch.code.clone(),
        enabled: patch.enabled,
    }
}

pub async fn delete(state: &ServerState, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let input: NamedInput = parse_args(DELETE, args)?;
    let request = DeleteToolRequest {
        name: input.name,
        expected_revision: input.expected_revision,
    };
    let written = state
        .services
        .registry
        .clone()
        .delete(request)
        .await
        .map_err(ToolError::registry)?;
    let written = settle(state, written.into_inner()).await;
    Ok(CallToolResult::structured(
        json!({ "deleted": true, "tool": view_json(written.tool, false) }),
    ))
}

pub async fn enable(state: &ServerState, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let input: EnableInput = parse_args(ENABLE, args)?;
    let request = SetEnabledRequest {
        name: input.name,
        enabled: input.enabled,
        expected_revision: input.expected_revision,
    };
    let written = state
        .services
        .registry
        .clone()
        .set_enabled(request)
        .await
        .map_err(ToolError::registry)?;
    let written = settle(state, written.into_inner()).await;
    Ok(CallToolResult::structured(
        json!({ "tool": view_json(written.tool, false) }),
    ))
}

pub async fn list(state: &ServerState, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let input: ListInput = parse_args(LIST, args)?;
    let request = ListToolsRequest {
        include_code: input.include_code,
    };
    let mut tools = state
        .services
        .registry
        .clone()
        .list(request)
        .await
        .map_err(ToolError::registry)?
        .into_inner()
        .tools;
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    let views: Vec<_> = tools.into_iter().map(|t| ToolView::of(t, input.include_code)).collect();
    Ok(CallToolResult::structured(json!({ "tools": views })))
}

pub async fn get(state: &ServerState, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let input: GetInput = parse_args(GET, args)?;
    let record = get_record(state, &input.name).await?;
    Ok(CallToolResult::structured(
        json!({ "tool": ToolView::of(record, true) }),
    ))
}

async fn get_record(state: &ServerState, name: &str) -> Result<ToolRecord, ToolError> {
    let request = GetToolRequest { name: name.to_owned() };
    let record = state
        .services
        .registry
        .clone()
        .get(request)
        .await
        .map_err(ToolError::registry)?;
    Ok(record.into_inner())
}

/// Asks the executor whether the run settings are allowed, for the
/// defaults of those left out, and to install the npm dependencies (once per
/// set: it may take seconds, so the client hears progress meanwhile).
async fn prepare(
    state: &ServerState,
    call: &CallContext,
    image: Option<String>,
    timeout_ms: Option<u32>,
    dependencies: &[Dependency],
) -> Result<PrepareToolResponse, ToolError> {
    let request = PrepareToolRequest {
        image,
        timeout_ms,
        dependencies: dependencies.to_vec(),
    };
    let mut executor = state.services.executor.clone();
    let prepared = if dependencies.is_empty() {
        executor.prepare_tool(request).await
    } else {
        let message = installing_message(dependencies.len());
        Progress::while_running(call.progress.as_ref(), &message, executor.prepare_tool(request)).await
    };
    Ok(prepared.map_err(ToolError::executor)?.into_inner())
}

/// What a client hears while dependencies are made ready.
pub(super) fn installing_message(count: usize) -> String {
    let plural = if count == 1 { "dependency" } else { "dependencies" };
    format!("installing {count} npm {plural} (once per set; later runs reuse them)…")
}

/// The answer to a create or update: the tool, and how its dependencies
/// were made ready when it has any.
fn written_result(written: ToolWriteResponse, setup: Option<DependencySetup>) -> CallToolResult {
    let mut body = json!({ "tool": view_json(written.tool, false) });
    if let Some(setup) = setup {
        body["dependencySetup"] = json!({"cached": setup.cached, "durationMs": setup.duration_ms});
    }
    CallToolResult::structured(body)
}

/// Waits until our own catalog shows the write, so tools/list reflects it.
async fn settle(state: &ServerState, written: ToolWriteResponse) -> ToolWriteResponse {
    state.catalog.wait_for_version(written.catalog_version).await;
    written
}

// ---- definitions ------------------------------------------------------------

const NAME_PATTERN: &str = "^[a-zA-Z][a-zA-Z0-9._-]{2,63}$";
const CODE_CONTRACT: &str = "JavaScript: the body of `export async function run(args) { ... }`. Read the input from \
     `args` and return any JSON-serialisable value; `await` works. Example: \
     `const { text } = args; return { upper: String(text).toUpperCase() };`. 1-200000 characters.";

pub(super) fn admin_token_field() -> serde_json::Value {
    json!({"type": "string", "description": "The admin token, when the server requires one (MCP_ADMIN_TOKEN) and the \
        client cannot send it in the X-MCP-Admin-Token HTTP header (which keeps it out of the conversation)."})
}

fn expected_revision_field() -> serde_json::Value {
    json!({
        "type": "integer", "minimum": 1,
        "description": "Only apply the change if the tool is still at this revision (from an earlier view); \
            protects against overwriting someone else's change."
    })
}

fn name_field(what: &str) -> serde_json::Value {
    json!({"type": "string", "description": format!("Name of the dynamic tool {what}.")})
}

pub(super) fn dependencies_field(what: &str) -> serde_json::Value {
    json!({
        "type": "array", "maxItems": 64,
        "description": format!("npm packages the code imports (at most 64){what}."),
        "items": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "npm package name, e.g. `lodash` or `@scope/pkg`."},
                "version": {"type": "string", "description": "Plain semver range, e.g. `^4.17.0` (no URLs, tags like npm:, git+ or file:)."}
            },
            "required": ["name", "version"],
            "additionalProperties": false
        }
    })
}

fn tool_fields(creating: bool) -> JsonObject {
    let default = |text: &str| {
        if creating {
            format!(" Default: {text}.")
        } else {
            String::new()
        }
    };
    let title_type = if creating {
        json!("string")
    } else {
        json!(["string", "null"])
    };
    let title_extra = if creating { "" } else { " null removes the title." };
    schema(json!({
        "title": {"type": title_type, "minLength": 1, "maxLength": 120,
            "description": format!("Human-readable title, 1-120 characters.{title_extra}")},
        "description": {"type": "string", "minLength": 1, "maxLength": 4000,
            "description": "What the tool does and which fields its `args` take (1-4000 characters); models read this in tools/list."},
        "image": {"type": "string",
            "description": format!("Docker image to run the code in; must be on the server's allow-list.{}", default("the first allowed image"))},
        "timeoutMs": {"type": "integer", "minimum": 1000, "maximum": 120000,
            "description": format!("Time limit of one run in milliseconds, 1000-120000 and at most the server's maximum; a run over it is stopped.{}", default("30000"))},
        "dependencies": dependencies_field(if creating { "; default none" } else { "; replaces the whole list" }),
        "code": {"type": "string", "minLength": 1, "maxLength": 200000, "description": CODE_CONTRACT},
        "enabled": {"type": "boolean",
            "description": format!("Whether the tool is listed in tools/list and can be called.{}", default("true"))}
    }))
}

pub fn definitions() -> Vec<Tool> {
    let mut new_tool = tool_fields(true);
    new_tool.insert(
        "name".into(),
        json!({"type": "string", "pattern": NAME_PATTERN,
            "description": "Unique tool name, 3-64 characters: a letter, then letters, digits, `.`, `_` or `-`. \
                Built-in names and the prefixes `dynamic.tool.`, `sandbox.` and `system.` are reserved."}),
    );
    let patch = tool_fields(false);

    let create = schema(json!({
        "type": "object",
        "properties": {
            "tool": {
                "type": "object",
                "description": "The new tool. It is listed under its name in tools/list and called with `{\"args\": {...}}`.",
                "properties": new_tool,
                "required": ["name", "description", "code"],
                "additionalProperties": false
            },
            "adminToken": admin_token_field()
        },
        "required": ["tool"],
        "additionalProperties": false
    }));
    let update = schema(json!({
        "type": "object",
        "properties": {
            "name": name_field("to change"),
            "patch": {
                "type": "object",
                "description": "The fields to change; fields left out keep their value. The name cannot change. Bumps the revision.",
                "properties": patch,
                "additionalProperties": false
            },
            "expectedRevision": expected_revision_field(),
            "adminToken": admin_token_field()
        },
        "required": ["name", "patch"],
        "additionalProperties": false
    }));
    let delete = schema(json!({
        "type": "object",
        "properties": {
            "name": name_field("to delete"),
            "expectedRevision": expected_revision_field(),
            "adminToken": admin_token_field()
        },
        "required": ["name"],
        "additionalProperties": false
    }));
    let enable = schema(json!({
        "type": "object",
        "properties": {
            "name": name_field("to enable or disable"),
            "enabled": {"type": "boolean", "description": "true lists the tool and makes it callable; false hides it (it is kept)."},
            "expectedRevision": expected_revision_field(),
            "adminToken": admin_token_field()
        },
        "required": ["name", "enabled"],
        "additionalProperties": false
    }));
    let list = schema(json!({
        "type": "object",
        "properties": {
            "includeCode": {"type": "boolean", "default": false, "description": "Also return each tool's code. Default false."},
            "adminToken": admin_token_field()
        },
        "additionalProperties": false
    }));
    let get = schema(json!({
        "type": "object",
        "properties": {
            "name": name_field("to return, with its code"),
            "adminToken": admin_token_field()
        },
        "required": ["name"],
        "additionalProperties": false
    }));

    let annotations = |read_only: bool, destructive: bool, idempotent: bool| {
        ToolAnnotations::new()
            .read_only(read_only)
            .destructive(destructive)
            .idempotent(idempotent)
            .open_world(false)
    };
    vec![
        Tool::new(
            CREATE,
            "Create a dynamic tool: JavaScript that runs in an isolated container each time the tool is called. \
             The tool appears in tools/list right away (clients get notifications/tools/list_changed) and is called \
             with `{\"args\": {...}}`. npm dependencies are installed now, once per set (with progress \
             notifications), so install errors show here. Returns `{tool}`, plus `dependencySetup: {cached, durationMs}` \
             when it has dependencies.",
            create,
        )
        .with_title("Create dynamic tool")
        .with_annotations(annotations(false, false, false)),
        Tool::new(
            UPDATE,
            "Change fields of a dynamic tool (code, description, image, timeout, dependencies, title, enabled). \
             The name cannot change. New dependencies are installed now, as at create. Returns `{tool}` with the new \
             revision.",
            update,
        )
        .with_title("Update dynamic tool")
        .with_annotations(annotations(false, true, false)),
        Tool::new(DELETE, "Delete a dynamic tool for good. Returns `{deleted: true, tool}` (its last state).", delete)
            .with_title("Delete dynamic tool")
            .with_annotations(annotations(false, true, false)),
        Tool::new(
            ENABLE,
            "Enable or disable a dynamic tool. A disabled tool is kept but hidden from tools/list and cannot be called. \
             Returns `{tool}`.",
            enable,
        )
        .with_title("Enable or disable dynamic tool")
        .with_annotations(annotations(false, false, true)),
        Tool::new(
            LIST,
            "List all dynamic tools, enabled and disabled, sorted by name. Returns `{tools}`; code only with includeCode.",
            list,
        )
        .with_title("List dynamic tools")
        .with_annotations(annotations(true, false, true)),
        Tool::new(GET, "Return one dynamic tool with its code. Returns `{tool}`.", get)
            .with_title("Get dynamic tool")
            .with_annotations(annotations(true, false, true)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(value: serde_json::Value) -> JsonObject {
        schema(value)
    }

    #[test]
    fn create_input_takes_the_documented_shape() {
        let input: CreateInput = parse_args(
            CREATE,
            args(json!({"tool": {
                "name": "text.upper", "description": "Upper-cases text", "code": "return 1;",
                "timeoutMs": 5000, "dependencies": [{"name": "lodash", "version": "^4.17.0"}]
            }, "adminToken": "ignored"})),
        )
        .unwrap();
        assert_eq!(input.tool.name, "text.upper");
        assert_eq!(input.tool.timeout_ms, Some(5000));
        assert_eq!(input.tool.dependencies[0].version, "^4.17.0");
        assert_eq!((input.tool.enabled, input.tool.image), (None, None));
    }

    #[test]
    fn create_input_errors_say_what_to_fix() {
        let err = parse_args::<CreateInput>(CREATE, args(json!({"tool": {"name": "x", "code": "1"}})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `description`"), "{err}");
        let err = parse_args::<CreateInput>(
            CREATE,
            args(json!({"tool": {"name": "x", "description": "d", "code": "1", "timeout": 5}})),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("unknown field `timeout`") && err.contains("timeoutMs"),
            "{err}"
        );
        let err = parse_args::<CreateInput>(CREATE, args(json!({"name": "x"})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `name`, expected `tool`"), "{err}");
    }

    #[test]
    fn patch_tells_absent_from_null_and_keeps_the_rest() {
        let input: UpdateInput = parse_args(
            UPDATE,
            args(json!({"name": "a.tool", "patch": {"title": null, "code": "return 2;"}})),
        )
        .unwrap();
        let patch = patch_to_proto(&input.patch);
        assert!(patch.clear_title && patch.title.is_none());
        assert_eq!(patch.code.as_deref(), Some("return 2;"));
        assert_eq!((patch.image, patch.timeout_ms, patch.dependencies), (None, None, None));

        let input: UpdateInput = parse_args(
            UPDATE,
            args(json!({"name": "a.tool", "patch": {"title": "T", "dependencies": []}, "expectedRevision": 3})),
        )
        .unwrap();
        let patch = patch_to_proto(&input.patch);
        assert_eq!((patch.title.as_deref(), patch.clear_title), (Some("T"), false));
        assert_eq!(patch.dependencies, Some(DependencyList { items: vec![] }));
        assert_eq!(input.expected_revision, Some(3));
    }

    #[test]
    fn a_renaming_patch_is_recognised() {
        let input: UpdateInput =
            parse_args(UPDATE, args(json!({"name": "a.tool", "patch": {"name": "b.tool"}}))).unwrap();
        assert!(input.patch.name.is_some());
    }

    #[test]
    fn views_are_camel_case_with_code_only_when_asked() {
        let record = ToolRecord {
            name: "a.tool".into(),
            description: "d".into(),
            image: "img".into(),
            timeout_ms: 30000,
            dependencies: vec![Dependency {
                name: "lodash".into(),
                version: "^4".into(),
            }],
            code: "return 1;".into(),
            enabled: true,
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-02T00:00:00Z".into(),
            revision: 2,
            code_size_bytes: 9,
            title: None,
        };
        let without = json!(ToolView::of(record.clone(), false));
        assert_eq!(
            without,
            json!({"name": "a.tool", "description": "d", "image": "img", "timeoutMs": 30000,
                "dependencies": [{"name": "lodash", "version": "^4"}], "enabled": true,
                "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-02T00:00:00Z",
                "revision": 2, "codeSizeBytes": 9})
        );
        let with = json!(ToolView::of(record, true));
        assert_eq!(with["code"], "return 1;");
    }

    #[test]
    fn type_errors_name_the_field() {
        let err = parse_args::<CreateInput>(CREATE, args(json!({"tool": {"timeoutMs": "soon"}})))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid arguments for dynamic.tool.create at `tool.timeoutMs`: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn list_defaults_to_no_code() {
        let input: ListInput = parse_args(LIST, JsonObject::new()).unwrap();
        assert!(!input.include_code);
    }
}
