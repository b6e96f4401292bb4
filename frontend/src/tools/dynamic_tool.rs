//! `dynamic.tool.*`: create, change, remove and inspect dynamic tools.
//!
//! The registry owns the rules for names and fields and the executor owns
//! run policy (images, timeouts, dependencies), so this file only shapes
//! arguments and answers; their refusals come back with messages to show.

use std::time::Duration;

use dynamic_mcp_proto::v1::{
    ArgumentsMode, CreateToolRequest, DeleteToolRequest, Dependency, DependencyList, DependencySetup, ExampleList,
    GetToolRequest, Isolation, ListToolsRequest, NetworkPolicy, PrepareToolRequest, PrepareToolResponse,
    SetEnabledRequest, StringList, ToolAnnotations, ToolExample, ToolPatch, ToolRecord, ToolSpec, ToolWriteResponse,
    UpdateToolRequest, WriteOptions,
};
use rmcp::model::{CallToolResult, JsonObject, Tool};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use tonic::Code;

use dynamic_mcp_common::limits::{
    CODE_CHARS, DEPENDENCY_VERSION_CHARS, DESCRIPTION_CHARS, MAX_DEPENDENCIES, MAX_EXAMPLES, MAX_SCHEMA_BYTES,
    MAX_SECRETS, MAX_TIMEOUT_MS_CEILING, MIN_TIMEOUT_MS, NAME_CHARS, NAME_PATTERN, NPM_NAME_MAX_CHARS,
    SECRET_NAME_PATTERN, TITLE_CHARS,
};
use dynamic_mcp_common::tool_names::RESERVED_PREFIXES;

use super::fields::{ExpectedRevision, IdempotencyKey};
use super::input_schema::{input_schema, null_removes};
use super::network::{NetworkInput, network_to_proto};
use super::{parse_args, self_test};
use crate::call_context::CallContext;
use crate::error::ToolError;
use crate::progress::Progress;
use crate::state::ServerState;

pub use dynamic_mcp_common::tool_names::dynamic_tool::{CREATE, DELETE, ENABLE, GET, LIST, UPDATE};

/// Attempts of an update whose policy check read the tool first, when a
/// concurrent writer got in between and the caller gave no expectedRevision.
const UPDATE_ATTEMPTS: usize = 3;
/// Sends of one keyed registry write when the registry could not be reached.
const WRITE_ATTEMPTS: usize = 3;
const WRITE_RETRY_PAUSE: Duration = Duration::from_millis(200);

// ---- inputs -----------------------------------------------------------------
//
// Each input type is both the parser of a tool's arguments and, derived, its
// listed input schema (see `input_schema`). Texts that create and update
// share are written once, below.

const TOOL_IMAGE: &str = "Docker image to run the code in; must be on the server's allow-list.";
const TOOL_TIMEOUT: &str = "Time limit of one run in milliseconds; a run over it is stopped.";
const TOOL_DEPENDENCIES: &str = "npm packages the code imports";
const TOOL_ENABLED: &str = "Whether the tool is listed in tools/list and can be called.";
const TOOL_OUTPUT_SCHEMA: &str = "JSON Schema of the value the code returns; a result that does not match is an \
     error. tools/list advertises it as `result` in `{ok, result, durationMs}`.";
const TOOL_ANNOTATIONS: &str = "MCP hints shown in tools/list.";
const TOOL_ARGUMENTS: &str = "How callers pass the input: `args` (`{\"args\": {...}}`, the default) or `flat` (the \
     call's arguments are `args`, and inputSchema is the whole listed input schema).";
const TOOL_ISOLATION: &str = "How runs are isolated from each other.";
const TOOL_NETWORK: &str = "Hosts the tool's runs may reach, within the operator's ceiling.";
const TOOL_SECRETS: &str = "Names of operator-defined secrets the code uses.";
const REMOVES: &str = " null removes it.";

fn title_description(patch: &str) -> String {
    format!(
        "Human-readable title, {}-{} characters.{patch}",
        TITLE_CHARS.min, TITLE_CHARS.max
    )
}

fn tool_description() -> String {
    format!(
        "What the tool does and which fields its `args` take ({}-{} characters); models read this in tools/list.",
        DESCRIPTION_CHARS.min, DESCRIPTION_CHARS.max
    )
}

fn name_description() -> String {
    let prefixes: Vec<String> = RESERVED_PREFIXES.iter().map(|p| format!("`{p}`")).collect();
    format!(
        "Unique tool name, {}-{} characters: a letter, then letters, digits, `.`, `_` or `-`. Built-in names and the \
         prefixes {} are reserved.",
        NAME_CHARS.min,
        NAME_CHARS.max,
        prefixes.join(", ")
    )
}

fn input_schema_description(patch: &str) -> String {
    format!(
        "JSON Schema (2020-12, or draft-07 when its $schema says so; at most {MAX_SCHEMA_BYTES} bytes, no remote $ref) \
         of the tool's input, with \"type\": \"object\" at its root. Calls are checked against it before anything \
         runs, and tools/list shows it.{patch}"
    )
}

fn examples_description(patch: &str) -> String {
    format!(
        "Up to {MAX_EXAMPLES} self-tests, run in the sandbox before every write that can change behaviour: a failing \
         one refuses the write and nothing is stored. They are also shown to models in tools/list.{patch}"
    )
}

/// The arguments of dynamic.tool.create.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateInput {
    /// The new tool. It is listed under its name in tools/list and called with `{"args": {...}}`.
    tool: NewTool,
    idempotency_key: Option<IdempotencyKey>,
}

/// A tool as dynamic.tool.create takes it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct NewTool {
    #[schemars(pattern(NAME_PATTERN), description = name_description())]
    pub(super) name: String,
    #[schemars(length(min = TITLE_CHARS.min, max = TITLE_CHARS.max), description = title_description(""))]
    title: Option<String>,
    #[schemars(length(min = DESCRIPTION_CHARS.min, max = DESCRIPTION_CHARS.max), description = tool_description())]
    description: String,
    #[schemars(description = format!("{TOOL_IMAGE} Default: the first allowed image."))]
    image: Option<String>,
    #[schemars(range(min = MIN_TIMEOUT_MS, max = MAX_TIMEOUT_MS_CEILING),
        description = format!("{TOOL_TIMEOUT} Default: the server's default."))]
    timeout_ms: Option<u32>,
    #[serde(default)]
    #[schemars(length(max = MAX_DEPENDENCIES), description = format!("{TOOL_DEPENDENCIES}; default none."))]
    dependencies: Vec<DependencyInput>,
    #[schemars(length(min = CODE_CHARS.min, max = CODE_CHARS.max), description = code_contract())]
    code: String,
    #[schemars(description = format!("{TOOL_ENABLED} Default: true."))]
    enabled: Option<bool>,
    #[schemars(extend("type" = "object"), description = input_schema_description(""))]
    pub(super) input_schema: Option<Value>,
    #[schemars(extend("type" = "object"), description = TOOL_OUTPUT_SCHEMA)]
    pub(super) output_schema: Option<Value>,
    #[schemars(description = TOOL_ANNOTATIONS)]
    annotations: Option<AnnotationsInput>,
    #[serde(default)]
    #[schemars(length(max = MAX_EXAMPLES), description = examples_description(""))]
    examples: Vec<ExampleInput>,
    #[schemars(description = TOOL_ARGUMENTS)]
    arguments: Option<ArgumentsInput>,
    #[schemars(description = format!("{TOOL_ISOLATION} Default: the server's."))]
    isolation: Option<IsolationInput>,
    #[schemars(description = format!("{TOOL_NETWORK} Default: no network at all."))]
    network: Option<NetworkInput>,
    #[serde(default)]
    #[schemars(length(max = MAX_SECRETS), inner(pattern(SECRET_NAME_PATTERN)), description = TOOL_SECRETS)]
    secrets: Vec<String>,
}

/// One npm dependency as callers write it.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DependencyInput {
    /// npm package name, e.g. `lodash` or `@scope/pkg`.
    #[schemars(length(min = 1, max = NPM_NAME_MAX_CHARS))]
    name: String,
    /// Plain semver range, e.g. `^4.17.0` (no URLs, tags like npm:, git+ or file:).
    #[schemars(length(min = DEPENDENCY_VERSION_CHARS.min, max = DEPENDENCY_VERSION_CHARS.max))]
    version: String,
}

/// MCP tool annotations as callers write them.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct AnnotationsInput {
    /// A display title.
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    /// The tool changes nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    read_only_hint: Option<bool>,
    /// The tool may delete or overwrite things.
    #[serde(skip_serializing_if = "Option::is_none")]
    destructive_hint: Option<bool>,
    /// Calling it twice with the same args does no more than once.
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotent_hint: Option<bool>,
    /// The tool reaches things outside this server.
    #[serde(skip_serializing_if = "Option::is_none")]
    open_world_hint: Option<bool>,
}

/// A self-test as callers write it; `"expect": null` expects a null result.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ExampleInput {
    /// The `args` of one run.
    #[schemars(extend("type" = "object"))]
    args: Value,
    /// The result the run must return (deep-equal); leave it out to accept any success.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    expect: Option<Option<Value>>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum ArgumentsInput {
    Args,
    Flat,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub(super) enum IsolationInput {
    ContainerPerCall,
    ContainerPerTool,
}

/// The arguments of dynamic.tool.update.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateInput {
    /// Name of the dynamic tool to change.
    name: String,
    /// The fields to change; fields left out keep their value. The name cannot change. Bumps the revision.
    patch: PatchInput,
    expected_revision: Option<ExpectedRevision>,
    idempotency_key: Option<IdempotencyKey>,
}

/// The fields of a tool an update changes: absent keeps a value, and for
/// the fields that say so, null removes it.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PatchInput {
    /// Present only to refuse it with a clear message.
    #[schemars(skip)]
    name: Option<serde::de::IgnoredAny>,
    /// `Some(None)` (an explicit null) removes the title.
    #[serde(default, deserialize_with = "present")]
    #[schemars(length(min = TITLE_CHARS.min, max = TITLE_CHARS.max), transform = null_removes,
        description = title_description(" null removes the title."))]
    title: Option<Option<String>>,
    #[schemars(length(min = DESCRIPTION_CHARS.min, max = DESCRIPTION_CHARS.max), description = tool_description())]
    description: Option<String>,
    #[schemars(description = TOOL_IMAGE)]
    image: Option<String>,
    #[schemars(range(min = MIN_TIMEOUT_MS, max = MAX_TIMEOUT_MS_CEILING), description = TOOL_TIMEOUT)]
    timeout_ms: Option<u32>,
    #[schemars(length(max = MAX_DEPENDENCIES), description = format!("{TOOL_DEPENDENCIES}; replaces the whole list."))]
    dependencies: Option<Vec<DependencyInput>>,
    #[schemars(length(min = CODE_CHARS.min, max = CODE_CHARS.max), description = code_contract())]
    code: Option<String>,
    #[schemars(description = TOOL_ENABLED)]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schemars(extend("type" = "object"), transform = null_removes, description = input_schema_description(REMOVES))]
    input_schema: Option<Option<Value>>,
    #[serde(default, deserialize_with = "present")]
    #[schemars(extend("type" = "object"), transform = null_removes, description = format!("{TOOL_OUTPUT_SCHEMA}{REMOVES}"))]
    output_schema: Option<Option<Value>>,
    #[serde(default, deserialize_with = "present")]
    #[schemars(transform = null_removes, description = format!("{TOOL_ANNOTATIONS}{REMOVES}"))]
    annotations: Option<Option<AnnotationsInput>>,
    #[schemars(length(max = MAX_EXAMPLES), description = examples_description(" Replaces the whole list."))]
    examples: Option<Vec<ExampleInput>>,
    #[schemars(description = TOOL_ARGUMENTS)]
    arguments: Option<ArgumentsInput>,
    /// null: back to the server default.
    #[serde(default, deserialize_with = "present")]
    #[schemars(transform = null_removes, description = format!("{TOOL_ISOLATION} null: back to the server's default."))]
    isolation: Option<Option<IsolationInput>>,
    #[serde(default, deserialize_with = "present")]
    #[schemars(transform = null_removes, description = format!("{TOOL_NETWORK}{REMOVES}"))]
    network: Option<Option<NetworkInput>>,
    #[schemars(length(max = MAX_SECRETS), inner(pattern(SECRET_NAME_PATTERN)), description = TOOL_SECRETS)]
    secrets: Option<Vec<String>>,
}

impl PatchInput {
    /// Whether the patch touches what the executor checks (image, timeout,
    /// dependencies, egress, secrets, isolation).
    fn touches_policy(&self) -> bool {
        self.image.is_some()
            || self.timeout_ms.is_some()
            || self.dependencies.is_some()
            || self.network.is_some()
            || self.secrets.is_some()
            || self.isolation.is_some()
    }

    /// Whether the patch can change how the tool behaves, so its examples must run again.
    fn touches_behaviour(&self) -> bool {
        self.touches_policy()
            || self.code.is_some()
            || self.input_schema.is_some()
            || self.output_schema.is_some()
            || self.examples.is_some()
            || self.arguments.is_some()
    }
}

/// Tells an absent field (`None`) from an explicit null (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The arguments of dynamic.tool.delete.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeleteInput {
    /// Name of the dynamic tool to delete.
    name: String,
    expected_revision: Option<ExpectedRevision>,
    idempotency_key: Option<IdempotencyKey>,
}

/// The arguments of dynamic.tool.enable.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EnableInput {
    /// Name of the dynamic tool to enable or disable.
    name: String,
    /// true lists the tool and makes it callable; false hides it (it is kept).
    enabled: bool,
    expected_revision: Option<ExpectedRevision>,
    idempotency_key: Option<IdempotencyKey>,
}

/// The arguments of dynamic.tool.list.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListInput {
    /// Also return each tool's code. Default false.
    #[serde(default)]
    include_code: bool,
}

/// The arguments of dynamic.tool.get.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GetInput {
    /// Name of the dynamic tool to return, with its code.
    name: String,
    /// A kept earlier revision to return instead of the current one
    /// (dynamic.tool.history lists them); also works for a deleted tool.
    #[schemars(range(min = 1))]
    revision: Option<u64>,
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

fn annotations_to_proto(a: AnnotationsInput) -> ToolAnnotations {
    ToolAnnotations {
        title: a.title,
        read_only_hint: a.read_only_hint,
        destructive_hint: a.destructive_hint,
        idempotent_hint: a.idempotent_hint,
        open_world_hint: a.open_world_hint,
    }
}

fn examples_to_proto(examples: Vec<ExampleInput>) -> Vec<ToolExample> {
    examples
        .into_iter()
        .map(|e| ToolExample {
            args_json: e.args.to_string(),
            expect_json: e.expect.map(|expect| expect.unwrap_or(Value::Null).to_string()),
        })
        .collect()
}

fn arguments_to_proto(arguments: Option<ArgumentsInput>) -> ArgumentsMode {
    match arguments {
        Some(ArgumentsInput::Flat) => ArgumentsMode::Flat,
        Some(ArgumentsInput::Args) | None => ArgumentsMode::Args,
    }
}

fn isolation_to_proto(isolation: Option<IsolationInput>) -> Isolation {
    match isolation {
        None => Isolation::Unspecified,
        Some(IsolationInput::ContainerPerCall) => Isolation::ContainerPerCall,
        Some(IsolationInput::ContainerPerTool) => Isolation::ContainerPerTool,
    }
}

impl NewTool {
    /// The spec this tool asks for, with the executor's resolved image and timeout.
    pub(super) fn into_spec(self, image: String, timeout_ms: u32) -> ToolSpec {
        ToolSpec {
            name: self.name,
            title: self.title,
            description: self.description,
            image: Some(image),
            timeout_ms: Some(timeout_ms),
            dependencies: to_proto(self.dependencies),
            code: self.code,
            enabled: self.enabled,
            input_schema_json: self.input_schema.map(|v| v.to_string()),
            output_schema_json: self.output_schema.map(|v| v.to_string()),
            annotations: self.annotations.map(annotations_to_proto),
            examples: examples_to_proto(self.examples),
            arguments: arguments_to_proto(self.arguments).into(),
            isolation: isolation_to_proto(self.isolation).into(),
            network: self.network.map(network_to_proto),
            secrets: self.secrets,
        }
    }

    /// The record a run of this (unstored) tool uses, for dynamic.tool.test.
    pub(super) fn into_candidate(self, image: String, timeout_ms: u32) -> ToolRecord {
        let spec = self.into_spec(image.clone(), timeout_ms);
        ToolRecord {
            code_size_bytes: spec.code.len() as u64,
            name: spec.name,
            title: spec.title,
            description: spec.description,
            image,
            timeout_ms,
            dependencies: spec.dependencies,
            code: spec.code,
            enabled: true,
            input_schema_json: spec.input_schema_json,
            output_schema_json: spec.output_schema_json,
            annotations: spec.annotations,
            examples: spec.examples,
            arguments: spec.arguments,
            isolation: spec.isolation,
            network: spec.network,
            secrets: spec.secrets,
            ..Default::default()
        }
    }

    pub(super) fn policy_fields(&self) -> PolicyFields {
        PolicyFields {
            image: self.image.clone(),
            timeout_ms: self.timeout_ms,
            dependencies: to_proto(self.dependencies.clone()),
            network: self.network.clone().map(network_to_proto),
            secrets: self.secrets.clone(),
            isolation: isolation_to_proto(self.isolation),
        }
    }
}

/// What the executor checks about a tool before it is stored or run.
pub(super) struct PolicyFields {
    pub(super) image: Option<String>,
    pub(super) timeout_ms: Option<u32>,
    pub(super) dependencies: Vec<Dependency>,
    pub(super) network: Option<NetworkPolicy>,
    pub(super) secrets: Vec<String>,
    pub(super) isolation: Isolation,
}

impl PolicyFields {
    /// The settings of a stored revision.
    pub(super) fn of(record: &ToolRecord) -> Self {
        Self {
            image: Some(record.image.clone()),
            timeout_ms: Some(record.timeout_ms),
            dependencies: record.dependencies.clone(),
            network: record.network.clone(),
            secrets: record.secrets.clone(),
            isolation: record.isolation(),
        }
    }
}

// ---- the view callers see ---------------------------------------------------

/// A tool as tools report it: camelCase, code only when asked, the optional
/// fields only when set.
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
    input_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<AnnotationsInput>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    examples: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<ArgumentsInput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    isolation: Option<IsolationInput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<NetworkInput>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    secrets: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
}

impl ToolView {
    pub fn of(record: ToolRecord, with_code: bool) -> Self {
        let json = |text: &Option<String>| text.as_deref().and_then(|t| serde_json::from_str(t).ok());
        let isolation = match record.isolation() {
            Isolation::Unspecified => None,
            Isolation::ContainerPerCall => Some(IsolationInput::ContainerPerCall),
            Isolation::ContainerPerTool => Some(IsolationInput::ContainerPerTool),
        };
        let arguments = (record.arguments() == ArgumentsMode::Flat).then_some(ArgumentsInput::Flat);
        Self {
            input_schema: json(&record.input_schema_json),
            output_schema: json(&record.output_schema_json),
            annotations: record.annotations.map(|a| AnnotationsInput {
                title: a.title,
                read_only_hint: a.read_only_hint,
                destructive_hint: a.destructive_hint,
                idempotent_hint: a.idempotent_hint,
                open_world_hint: a.open_world_hint,
            }),
            examples: record
                .examples
                .iter()
                .map(|e| {
                    let mut example =
                        json!({"args": serde_json::from_str::<Value>(&e.args_json).unwrap_or(Value::Null)});
                    if let Some(expect) = e.expect_json.as_deref() {
                        example["expect"] = serde_json::from_str(expect).unwrap_or(Value::Null);
                    }
                    example
                })
                .collect(),
            arguments,
            isolation,
            network: record.network.map(|n| NetworkInput { allow: n.allow }),
            secrets: record.secrets,
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

pub(super) fn view_json(record: Option<ToolRecord>, with_code: bool) -> serde_json::Value {
    record.map_or(serde_json::Value::Null, |r| json!(ToolView::of(r, with_code)))
}

// ---- handlers ---------------------------------------------------------------

pub async fn create(state: &ServerState, call: &CallContext, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let CreateInput {
        tool, idempotency_key, ..
    } = parse_args(CREATE, args)?;
    let prepared = prepare(state, call, tool.policy_fields()).await?;
    let setup = prepared.dependency_setup;
    let mut spec = tool.into_spec(prepared.image, prepared.timeout_ms);
    // Stored as the executor's policy reads it (lower case, no duplicates).
    if prepared.network.is_some() {
        spec.network = prepared.network;
    }
    let key = key_or_fresh(idempotency_key);
    let mut examples = None;
    if !spec.examples.is_empty() {
        let check = CreateToolRequest {
            spec: Some(spec.clone()),
            write: Some(write_options(call, None, true)),
        };
        let answer = state
            .services
            .registry_call(|mut r| async move { r.create(check).await })
            .await?;
        let candidate = candidate(answer)?;
        let outcomes = self_test::run_examples(state, call, &candidate).await?;
        if outcomes.iter().any(|o| !o.passed()) {
            return Ok(self_test::refusal(CREATE, &spec.name, &outcomes));
        }
        examples = Some(outcomes);
    }
    let request = CreateToolRequest {
        spec: Some(spec),
        write: Some(write_options(call, Some(&key), false)),
    };
    let written = commit(|| {
        let (mut registry, sent) = (state.services.registry.clone(), request.clone());
        async move { registry.create(sent).await }
    })
    .await?;
    let written = settle(state, written).await;
    Ok(written_result(written, setup, examples))
}

pub async fn update(state: &ServerState, call: &CallContext, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let input: UpdateInput = parse_args(UPDATE, args)?;
    if input.patch.name.is_some() {
        return Err(ToolError::input(
            "a tool cannot be renamed: remove `name` from `patch`; to rename, create a tool under the new name \
             (dynamic.tool.get gives you its current fields) and delete this one",
        ));
    }
    let touches_policy = input.patch.touches_policy();
    let key = key_or_fresh(input.idempotency_key.clone());
    let caller_expects = input.expected_revision.map(|r| r.0);
    let mut attempt = 1;
    loop {
        let mut patch = patch_to_proto(&input.patch);
        let mut setup = None;
        let mut expected_revision = caller_expects;
        if touches_policy {
            let current = get_record(state, &input.name, None).await?;
            let isolation = match input.patch.isolation {
                Some(isolation) => isolation_to_proto(isolation),
                None => current.isolation(),
            };
            // Check policy on the tool as it will be, not just on the patch.
            let dependencies = match &input.patch.dependencies {
                Some(deps) => to_proto(deps.clone()),
                None => current.dependencies,
            };
            let image = input.patch.image.clone().unwrap_or(current.image);
            let timeout_ms = input.patch.timeout_ms.unwrap_or(current.timeout_ms);
            let network = match &input.patch.network {
                Some(network) => network.clone().map(network_to_proto),
                None => current.network,
            };
            let secrets = input.patch.secrets.clone().unwrap_or(current.secrets);
            let policy = PolicyFields {
                image: Some(image),
                timeout_ms: Some(timeout_ms),
                dependencies,
                network,
                secrets,
                isolation,
            };
            let prepared = prepare(state, call, policy).await?;
            setup = prepared.dependency_setup;
            if input.patch.image.is_some() {
                patch.image = Some(prepared.image);
            }
            if input.patch.timeout_ms.is_some() {
                patch.timeout_ms = Some(prepared.timeout_ms);
            }
            if patch.network.is_some() {
                patch.network = prepared.network.or(patch.network.take());
            }
            // The check above holds for this revision only.
            expected_revision = expected_revision.or(Some(current.revision));
        }
        let mut examples = None;
        if input.patch.touches_behaviour() {
            let check = UpdateToolRequest {
                name: input.name.clone(),
                patch: Some(patch.clone()),
                expected_revision,
                write: Some(write_options(call, None, true)),
            };
            let answer = state
                .services
                .registry_call(|mut r| async move { r.update(check).await })
                .await?;
            let base = answer.base_revision;
            let next = candidate(answer)?;
            if next.revision != base && !next.examples.is_empty() {
                let outcomes = self_test::run_examples(state, call, &next).await?;
                if outcomes.iter().any(|o| !o.passed()) {
                    return Ok(self_test::refusal(UPDATE, &input.name, &outcomes));
                }
                examples = Some(outcomes);
                // The examples ran on this revision's successor only.
                expected_revision = expected_revision.or(Some(base));
            }
        }
        let request = UpdateToolRequest {
            name: input.name.clone(),
            patch: Some(patch),
            expected_revision,
            write: Some(write_options(call, Some(&key), false)),
        };
        match commit(|| {
            let (mut registry, sent) = (state.services.registry.clone(), request.clone());
            async move { registry.update(sent).await }
        })
        .await
        {
            Err(ToolError::Service { status, .. })
                if status.code() == Code::Aborted
                    && expected_revision.is_some()
                    && caller_expects.is_none()
                    && attempt < UPDATE_ATTEMPTS =>
            {
                attempt += 1;
            }
            Err(error) => return Err(error),
            Ok(written) => {
                let written = settle(state, written).await;
                return Ok(written_result(written, setup, examples));
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
        input_schema_json: patch.input_schema.clone().flatten().map(|v| v.to_string()),
        clear_input_schema: matches!(patch.input_schema, Some(None)),
        output_schema_json: patch.output_schema.clone().flatten().map(|v| v.to_string()),
        clear_output_schema: matches!(patch.output_schema, Some(None)),
        annotations: patch.annotations.clone().flatten().map(annotations_to_proto),
        clear_annotations: matches!(patch.annotations, Some(None)),
        examples: patch.examples.clone().map(|items| ExampleList {
            items: examples_to_proto(items),
        }),
        arguments: patch.arguments.map(|a| arguments_to_proto(Some(a)).into()),
        isolation: patch.isolation.map(|i| isolation_to_proto(i).into()),
        network: patch.network.clone().flatten().map(network_to_proto),
        clear_network: matches!(patch.network, Some(None)),
        secrets: patch.secrets.clone().map(|items| StringList { items }),
    }
}

pub async fn delete(state: &ServerState, call: &CallContext, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let input: DeleteInput = parse_args(DELETE, args)?;
    let key = key_or_fresh(input.idempotency_key);
    let request = DeleteToolRequest {
        name: input.name,
        expected_revision: input.expected_revision.map(|r| r.0),
        write: Some(write_options(call, Some(&key), false)),
    };
    let written = commit(|| {
        let (mut registry, sent) = (state.services.registry.clone(), request.clone());
        async move { registry.delete(sent).await }
    })
    .await?;
    let written = settle(state, written).await;
    Ok(CallToolResult::structured(
        json!({ "deleted": true, "tool": view_json(written.tool, false) }),
    ))
}

pub async fn enable(state: &ServerState, call: &CallContext, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let input: EnableInput = parse_args(ENABLE, args)?;
    let key = key_or_fresh(input.idempotency_key);
    let request = SetEnabledRequest {
        name: input.name,
        enabled: input.enabled,
        expected_revision: input.expected_revision.map(|r| r.0),
        write: Some(write_options(call, Some(&key), false)),
    };
    let written = commit(|| {
        let (mut registry, sent) = (state.services.registry.clone(), request.clone());
        async move { registry.set_enabled(sent).await }
    })
    .await?;
    let written = settle(state, written).await;
    Ok(CallToolResult::structured(
        json!({ "tool": view_json(written.tool, false) }),
    ))
}

/// Served from this frontend's catalog, which the registry's change feed
/// keeps current (a write through this frontend is in it before the write
/// answers); with code, or before the first snapshot, from the registry.
pub async fn list(state: &ServerState, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let input: ListInput = parse_args(LIST, args)?;
    let listed = (!input.include_code)
        .then(|| {
            state.catalog.read(|c| {
                c.synced.then(|| {
                    c.all()
                        .map(|t| ToolView::of(ToolRecord::clone(t), false))
                        .collect::<Vec<_>>()
                })
            })
        })
        .flatten();
    let views = match listed {
        Some(views) => views,
        None => {
            let request = ListToolsRequest {
                include_code: input.include_code,
            };
            let mut tools = state
                .services
                .registry_call(|mut r| async move { r.list(request).await })
                .await?
                .tools;
            tools.sort_by(|a, b| a.name.cmp(&b.name));
            tools.into_iter().map(|t| ToolView::of(t, input.include_code)).collect()
        }
    };
    Ok(CallToolResult::structured(json!({ "tools": views })))
}

/// The current revision comes from the catalog, with its code from the
/// catalog's per-revision cache; an older revision, or a tool this
/// frontend's feed has not shown yet, from the registry.
pub async fn get(state: &ServerState, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let input: GetInput = parse_args(GET, args)?;
    let listed = match input.revision {
        None => state.catalog.read(|c| c.tool(&input.name).cloned()),
        Some(_) => None,
    };
    let record = match listed {
        Some(listed) => std::sync::Arc::unwrap_or_clone(super::with_code(state, &listed).await?),
        None => get_record(state, &input.name, input.revision).await?,
    };
    Ok(CallToolResult::structured(
        json!({ "tool": ToolView::of(record, true) }),
    ))
}

pub(super) async fn get_record(
    state: &ServerState,
    name: &str,
    revision: Option<u64>,
) -> Result<ToolRecord, ToolError> {
    let request = GetToolRequest {
        name: name.to_owned(),
        revision,
    };
    state
        .services
        .registry_call(|mut r| async move { r.get(request).await })
        .await
}

/// Who writes, under which key, and whether only to check.
pub(super) fn write_options(call: &CallContext, key: Option<&str>, validate_only: bool) -> WriteOptions {
    WriteOptions {
        actor: call.caller.actor(),
        idempotency_key: key.map(str::to_owned),
        validate_only,
    }
}

/// The caller's key for a write, or a fresh one, so our own retries stay safe.
pub(super) fn key_or_fresh(key: Option<IdempotencyKey>) -> String {
    key.map_or_else(|| format!("frontend-{}", uuid::Uuid::new_v4()), |key| key.0)
}

/// The record a validate-only write answered with (its code included).
pub(super) fn candidate(answer: ToolWriteResponse) -> Result<ToolRecord, ToolError> {
    answer.tool.ok_or_else(|| {
        ToolError::registry(tonic::Status::internal(
            "the registry checked the write but sent no tool",
        ))
    })
}

/// Sends a keyed write, again when the registry could not be reached or
/// answer: the key makes a retry of a write that did land return its answer.
/// A refusal the registry itself sent (its database is down, say) is final:
/// only statuses made on this side of the link carry a source error.
pub(super) async fn commit<F, Fut>(mut send: F) -> Result<ToolWriteResponse, ToolError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<ToolWriteResponse>, tonic::Status>>,
{
    let mut attempt = 1;
    loop {
        match send().await {
            Ok(answer) => return Ok(answer.into_inner()),
            Err(status) if no_answer(&status) && attempt < WRITE_ATTEMPTS => {
                tracing::info!(code = ?status.code(), attempt, "a registry write got no answer; retrying with its key");
                tokio::time::sleep(WRITE_RETRY_PAUSE * attempt as u32).await;
                attempt += 1;
            }
            Err(status) => return Err(ToolError::registry(status)),
        }
    }
}

/// Whether the call never got an answer from the registry (a broken or
/// refused connection), as opposed to the registry answering with an error.
fn no_answer(status: &tonic::Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::Unknown) && std::error::Error::source(status).is_some()
}

/// Asks the executor whether the run settings are allowed, for the
/// defaults of those left out, and to install the npm dependencies (once per
/// set: it may take seconds, so the client hears progress meanwhile).
pub(super) async fn prepare(
    state: &ServerState,
    call: &CallContext,
    policy: PolicyFields,
) -> Result<PrepareToolResponse, ToolError> {
    let count = policy.dependencies.len();
    let request = PrepareToolRequest {
        image: policy.image,
        timeout_ms: policy.timeout_ms,
        dependencies: policy.dependencies,
        network: policy.network,
        secrets: policy.secrets,
        isolation: policy.isolation.into(),
    };
    let preparing = state
        .services
        .executor_call(request, |mut executor, request| async move {
            executor.prepare_tool(request).await
        });
    if count == 0 {
        return preparing.await;
    }
    let message = installing_message(count);
    Progress::while_running(call.progress.as_ref(), &message, preparing).await
}

/// What a client hears while dependencies are made ready.
pub(super) fn installing_message(count: usize) -> String {
    let plural = if count == 1 { "dependency" } else { "dependencies" };
    format!("installing {count} npm {plural} (once per set; later runs reuse them)…")
}

/// The answer to a write: the tool, how its dependencies were made ready
/// when it has any, and how its examples went when they ran.
pub(super) fn written_result(
    written: ToolWriteResponse,
    setup: Option<DependencySetup>,
    examples: Option<Vec<self_test::ExampleOutcome>>,
) -> CallToolResult {
    let mut body = json!({ "tool": view_json(written.tool, false) });
    if let Some(setup) = setup {
        body["dependencySetup"] = json!({"cached": setup.cached, "durationMs": setup.duration_ms});
    }
    if let Some(examples) = examples {
        body["examples"] = json!(examples);
    }
    if written.replayed {
        body["replayed"] = json!(true);
    }
    CallToolResult::structured(body)
}

/// Waits until our own catalog shows the write, so tools/list reflects it.
pub(super) async fn settle(state: &ServerState, written: ToolWriteResponse) -> ToolWriteResponse {
    state.catalog.wait_for_version(written.catalog_version).await;
    written
}

// ---- definitions ------------------------------------------------------------

// ---- definitions ------------------------------------------------------------

fn code_contract() -> String {
    format!(
        "JavaScript: the body of `export async function run(args) {{ ... }}`. Read the input from `args` and return \
         any JSON-serialisable value; `await` works. Example: `const {{ text }} = args; return {{ upper: \
         String(text).toUpperCase() }};`. {}-{} characters.",
        CODE_CHARS.min, CODE_CHARS.max
    )
}

pub fn definitions() -> Vec<Tool> {
    let annotations = super::hints;
    vec![
        Tool::new(
            CREATE,
            "Create a dynamic tool: JavaScript that runs in an isolated container each time the tool is called. \
             The tool appears in tools/list right away (clients get notifications/tools/list_changed) and is called \
             with `{\"args\": {...}}`. npm dependencies are installed now, once per set (with progress \
             notifications), so install errors show here. With `examples`, each runs first and any failure refuses the \
             create (nothing stored). Returns `{tool}`, plus `dependencySetup: {cached, durationMs}` when it has \
             dependencies and `examples` (each one's outcome) when it has examples. The dynamic.tool.author prompt \
             explains how to write a good tool.",
            input_schema::<CreateInput>(),
        )
        .with_title("Create dynamic tool")
        .with_annotations(annotations(false, false, false)),
        Tool::new(
            UPDATE,
            "Change fields of a dynamic tool (code, description, image, timeout, dependencies, title, enabled). \
             The name cannot change. New dependencies are installed now, as at create. Returns `{tool}` with the new \
             revision.",
            input_schema::<UpdateInput>(),
        )
        .with_title("Update dynamic tool")
        .with_annotations(annotations(false, true, false)),
        Tool::new(
            DELETE,
            "Delete a dynamic tool for good. Returns `{deleted: true, tool}` (its last state).",
            input_schema::<DeleteInput>(),
        )
        .with_title("Delete dynamic tool")
        .with_annotations(annotations(false, true, false)),
        Tool::new(
            ENABLE,
            "Enable or disable a dynamic tool. A disabled tool is kept but hidden from tools/list and cannot be called. \
             Returns `{tool}`.",
            input_schema::<EnableInput>(),
        )
        .with_title("Enable or disable dynamic tool")
        .with_annotations(annotations(false, false, true)),
        Tool::new(
            LIST,
            "List all dynamic tools, enabled and disabled, sorted by name. Returns `{tools}`; code only with includeCode.",
            input_schema::<ListInput>(),
        )
        .with_title("List dynamic tools")
        .with_annotations(annotations(true, false, true)),
        Tool::new(
            GET,
            "Return one dynamic tool with its code, or a kept earlier revision of it. Returns `{tool}`.",
            input_schema::<GetInput>(),
        )
        .with_title("Get dynamic tool")
        .with_annotations(annotations(true, false, true)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(value: serde_json::Value) -> JsonObject {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn create_input_takes_the_documented_shape() {
        let input: CreateInput = parse_args(
            CREATE,
            args(json!({"tool": {
                "name": "text.upper", "description": "Upper-cases text", "code": "return 1;",
                "timeoutMs": 5000, "dependencies": [{"name": "lodash", "version": "^4.17.0"}]
            }})),
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
        assert!(
            err.contains("unknown field `name`, expected `tool` or `idempotencyKey`"),
            "{err}"
        );
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
        assert_eq!(input.expected_revision.map(|r| r.0), Some(3));
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
            ..Default::default()
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

    #[tokio::test]
    async fn only_a_missing_answer_is_retried() {
        use dynamic_mcp_common::addr::ServiceUrl;
        use dynamic_mcp_common::internal_auth::InternalAuth;
        use dynamic_mcp_proto::v1::registry_client::RegistryClient;

        let nowhere = ServiceUrl::Unix("/nonexistent/registry.sock".into());
        let mut registry = RegistryClient::new(InternalAuth::default().channel(&nowhere, None).unwrap());
        let unreachable = registry.list(ListToolsRequest::default()).await.unwrap_err();
        assert_eq!(unreachable.code(), Code::Unavailable, "{unreachable:?}");
        assert!(no_answer(&unreachable), "{unreachable:?}");
        // The registry's own answer that its database is down is final.
        assert!(!no_answer(&tonic::Status::unavailable(
            "the tool database is unavailable"
        )));
        assert!(!no_answer(&tonic::Status::aborted("stale revision")));
    }
}
