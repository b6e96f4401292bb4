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
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use tonic::Code;

use dynamic_mcp_common::limits::{
    CODE_CHARS, DESCRIPTION_CHARS, IDEMPOTENCY_KEY_CHARS, MAX_DEPENDENCIES, MAX_EXAMPLES, MAX_NETWORK_ALLOW,
    MAX_SCHEMA_BYTES, MAX_SECRETS, NAME_CHARS, NAME_PATTERN, NETWORK_ENTRY_CHARS, SECRET_NAME_PATTERN, TITLE_CHARS,
};
use dynamic_mcp_common::tool_names::RESERVED_PREFIXES;

use super::network::{NetworkInput, network_to_proto};
use super::{parse_args, schema, self_test, timeout_field};
use crate::call_context::CallContext;
use crate::error::ToolError;
use crate::progress::Progress;
use crate::state::ServerState;

pub const CREATE: &str = "dynamic.tool.create";
pub const UPDATE: &str = "dynamic.tool.update";
pub const DELETE: &str = "dynamic.tool.delete";
pub const ENABLE: &str = "dynamic.tool.enable";
pub const LIST: &str = "dynamic.tool.list";
pub const GET: &str = "dynamic.tool.get";

/// Attempts of an update whose policy check read the tool first, when a
/// concurrent writer got in between and the caller gave no expectedRevision.
const UPDATE_ATTEMPTS: usize = 3;
/// Sends of one keyed registry write when the registry could not be reached.
const WRITE_ATTEMPTS: usize = 3;
const WRITE_RETRY_PAUSE: Duration = Duration::from_millis(200);

// ---- inputs -----------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateInput {
    tool: NewTool,
    idempotency_key: Option<String>,
    #[serde(rename = "adminToken")]
    _admin_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct NewTool {
    pub(super) name: String,
    title: Option<String>,
    description: String,
    image: Option<String>,
    timeout_ms: Option<u32>,
    #[serde(default)]
    dependencies: Vec<DependencyInput>,
    code: String,
    enabled: Option<bool>,
    pub(super) input_schema: Option<Value>,
    pub(super) output_schema: Option<Value>,
    annotations: Option<AnnotationsInput>,
    #[serde(default)]
    examples: Vec<ExampleInput>,
    arguments: Option<ArgumentsInput>,
    isolation: Option<IsolationInput>,
    network: Option<NetworkInput>,
    #[serde(default)]
    secrets: Vec<String>,
}

/// One npm dependency as callers write it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DependencyInput {
    name: String,
    version: String,
}

/// MCP tool annotations as callers write them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct AnnotationsInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_only_hint: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destructive_hint: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotent_hint: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    open_world_hint: Option<bool>,
}

/// A self-test as callers write it; `"expect": null` expects a null result.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExampleInput {
    args: Value,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    expect: Option<Option<Value>>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum ArgumentsInput {
    Args,
    Flat,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) enum IsolationInput {
    ContainerPerCall,
    ContainerPerTool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateInput {
    name: String,
    patch: PatchInput,
    expected_revision: Option<u64>,
    idempotency_key: Option<String>,
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
    #[serde(default, deserialize_with = "present")]
    input_schema: Option<Option<Value>>,
    #[serde(default, deserialize_with = "present")]
    output_schema: Option<Option<Value>>,
    #[serde(default, deserialize_with = "present")]
    annotations: Option<Option<AnnotationsInput>>,
    examples: Option<Vec<ExampleInput>>,
    arguments: Option<ArgumentsInput>,
    /// null: back to the server default.
    #[serde(default, deserialize_with = "present")]
    isolation: Option<Option<IsolationInput>>,
    #[serde(default, deserialize_with = "present")]
    network: Option<Option<NetworkInput>>,
    secrets: Option<Vec<String>>,
}

impl PatchInput {
    /// Whether the patch touches what the executor checks (image, timeout, dependencies, egress).
    fn touches_policy(&self) -> bool {
        self.image.is_some()
            || self.timeout_ms.is_some()
            || self.dependencies.is_some()
            || self.network.is_some()
            || self.secrets.is_some()
    }

    /// Whether the patch can change how the tool behaves, so its examples must run again.
    fn touches_behaviour(&self) -> bool {
        self.touches_policy()
            || self.code.is_some()
            || self.input_schema.is_some()
            || self.output_schema.is_some()
            || self.examples.is_some()
            || self.arguments.is_some()
            || self.isolation.is_some()
    }
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
    idempotency_key: Option<String>,
    #[serde(rename = "adminToken")]
    _admin_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EnableInput {
    name: String,
    enabled: bool,
    expected_revision: Option<u64>,
    idempotency_key: Option<String>,
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
    revision: Option<u64>,
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
    let key = idempotency_key.unwrap_or_else(fresh_key);
    let mut examples = None;
    if !spec.examples.is_empty() {
        let check = CreateToolRequest {
            spec: Some(spec.clone()),
            write: Some(write_options(call, None, true)),
        };
        let candidate = candidate(state.services.registry.clone().create(check).await)?;
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
    let key = input.idempotency_key.clone().unwrap_or_else(fresh_key);
    let mut attempt = 1;
    loop {
        let mut patch = patch_to_proto(&input.patch);
        let mut setup = None;
        let mut expected_revision = input.expected_revision;
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
            let answer = state.services.registry.clone().update(check).await;
            let base = answer.as_ref().map(|a| a.get_ref().base_revision).unwrap_or_default();
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
                    && input.expected_revision.is_none()
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
    let input: NamedInput = parse_args(DELETE, args)?;
    let key = input.idempotency_key.unwrap_or_else(fresh_key);
    let request = DeleteToolRequest {
        name: input.name,
        expected_revision: input.expected_revision,
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
    let key = input.idempotency_key.unwrap_or_else(fresh_key);
    let request = SetEnabledRequest {
        name: input.name,
        enabled: input.enabled,
        expected_revision: input.expected_revision,
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
                .registry
                .clone()
                .list(request)
                .await
                .map_err(ToolError::registry)?
                .into_inner()
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
        Some(listed) => {
            let with_code = state.catalog.with_code(&listed).await.map_err(ToolError::registry)?;
            ToolRecord::clone(&with_code)
        }
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
    let record = state
        .services
        .registry
        .clone()
        .get(request)
        .await
        .map_err(ToolError::registry)?;
    Ok(record.into_inner())
}

/// Who writes, under which key, and whether only to check.
pub(super) fn write_options(call: &CallContext, key: Option<&str>, validate_only: bool) -> WriteOptions {
    WriteOptions {
        actor: call.caller.actor(),
        idempotency_key: key.map(str::to_owned),
        validate_only,
    }
}

/// A key for a write whose caller sent none, so our own retries stay safe.
pub(super) fn fresh_key() -> String {
    format!("frontend-{}", uuid::Uuid::new_v4())
}

/// The record a validate-only write answered with (its code included).
pub(super) fn candidate(
    answer: Result<tonic::Response<ToolWriteResponse>, tonic::Status>,
) -> Result<ToolRecord, ToolError> {
    let answer = answer.map_err(ToolError::registry)?.into_inner();
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
    let executors = &state.services.executors;
    let preparing = executors.balanced(request, |mut executor, request| async move {
        executor.prepare_tool(request).await
    });
    let prepared = if count == 0 {
        preparing.await
    } else {
        let message = installing_message(count);
        Progress::while_running(call.progress.as_ref(), &message, preparing).await
    };
    Ok(prepared.map_err(ToolError::executor)?.into_inner())
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

fn code_contract() -> String {
    format!(
        "JavaScript: the body of `export async function run(args) {{ ... }}`. Read the input from `args` and return \
         any JSON-serialisable value; `await` works. Example: `const {{ text }} = args; return {{ upper: \
         String(text).toUpperCase() }};`. {}-{} characters.",
        CODE_CHARS.min, CODE_CHARS.max
    )
}

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

pub(super) fn name_field(what: &str) -> serde_json::Value {
    json!({"type": "string", "description": format!("Name of the dynamic tool {what}.")})
}

pub(super) fn idempotency_key_field() -> serde_json::Value {
    json!({"type": "string", "minLength": IDEMPOTENCY_KEY_CHARS.min, "maxLength": IDEMPOTENCY_KEY_CHARS.max,
        "description": "A unique key (e.g. a UUID) for this write. If the answer gets lost, send the same call \
            with the same key again: a write that did happen returns its first answer instead of failing or \
            happening twice."})
}

pub(super) fn dependencies_field(what: &str) -> serde_json::Value {
    json!({
        "type": "array", "maxItems": MAX_DEPENDENCIES,
        "description": format!("npm packages the code imports (at most {MAX_DEPENDENCIES}, or the server's lower limit){what}."),
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
    let nullable = |kind: &str| if creating { json!(kind) } else { json!([kind, "null"]) };
    let removes = if creating { "" } else { " null removes it." };
    schema(json!({
        "title": {"type": title_type, "minLength": TITLE_CHARS.min, "maxLength": TITLE_CHARS.max,
            "description": format!("Human-readable title, {}-{} characters.{title_extra}", TITLE_CHARS.min, TITLE_CHARS.max)},
        "description": {"type": "string", "minLength": DESCRIPTION_CHARS.min, "maxLength": DESCRIPTION_CHARS.max,
            "description": format!("What the tool does and which fields its `args` take ({}-{} characters); models read this in tools/list.", DESCRIPTION_CHARS.min, DESCRIPTION_CHARS.max)},
        "image": {"type": "string",
            "description": format!("Docker image to run the code in; must be on the server's allow-list.{}", default("the first allowed image"))},
        "timeoutMs": timeout_field(&format!("Time limit of one run in milliseconds; a run over it is stopped.{}", default("the server's default"))),
        "dependencies": dependencies_field(if creating { "; default none" } else { "; replaces the whole list" }),
        "code": {"type": "string", "minLength": CODE_CHARS.min, "maxLength": CODE_CHARS.max, "description": code_contract()},
        "enabled": {"type": "boolean",
            "description": format!("Whether the tool is listed in tools/list and can be called.{}", default("true"))},
        "inputSchema": {"type": nullable("object"),
            "description": format!("JSON Schema (2020-12, or draft-07 when its $schema says so; at most {MAX_SCHEMA_BYTES} bytes, no remote $ref) of the tool's input, \
                with \"type\": \"object\" at its root. Calls are checked against it before anything runs, and tools/list shows it.{removes}")},
        "outputSchema": {"type": nullable("object"),
            "description": format!("JSON Schema of the value the code returns; a result that does not match is an error. tools/list advertises it as `result` in `{{ok, result, durationMs}}`.{removes}")},
        "annotations": {"type": nullable("object"), "additionalProperties": false,
            "description": format!("MCP hints shown in tools/list.{removes}"),
            "properties": {
                "title": {"type": "string", "description": "A display title."},
                "readOnlyHint": {"type": "boolean", "description": "The tool changes nothing."},
                "destructiveHint": {"type": "boolean", "description": "The tool may delete or overwrite things."},
                "idempotentHint": {"type": "boolean", "description": "Calling it twice with the same args does no more than once."},
                "openWorldHint": {"type": "boolean", "description": "The tool reaches things outside this server."}
            }},
        "examples": {"type": "array", "maxItems": MAX_EXAMPLES,
            "description": format!("Up to {MAX_EXAMPLES} self-tests, run in the sandbox before every write that can change behaviour: a failing one refuses the write and nothing is stored. They are also shown to models in tools/list.{}", if creating { "" } else { " Replaces the whole list." }),
            "items": {"type": "object", "additionalProperties": false, "required": ["args"],
                "properties": {
                    "args": {"type": "object", "description": "The `args` of one run."},
                    "expect": {"description": "The result the run must return (deep-equal); leave it out to accept any success."}
                }}},
        "arguments": {"type": "string", "enum": ["args", "flat"],
            "description": format!("How callers pass the input: `args` (`{{\"args\": {{...}}}}`, the default) or `flat` (the call's arguments are `args`, and inputSchema is the whole listed input schema).")},
        "isolation": {"type": nullable("string"), "enum": if creating { json!(["container-per-call", "container-per-tool"]) } else { json!(["container-per-call", "container-per-tool", null]) },
            "description": format!("How runs are isolated from each other. Default: the server's.{removes}")},
        "network": {"type": nullable("object"), "additionalProperties": false, "required": ["allow"],
            "description": format!("Hosts the tool's runs may reach, within the operator's ceiling. Default: no network at all.{removes}"),
            "properties": {"allow": {"type": "array", "minItems": 1, "maxItems": MAX_NETWORK_ALLOW,
                "description": "Entries like `api.example.com`, `*.example.com`, either with `:port`.",
                "items": {"type": "string", "minLength": NETWORK_ENTRY_CHARS.min, "maxLength": NETWORK_ENTRY_CHARS.max}}}},
        "secrets": {"type": "array", "maxItems": MAX_SECRETS,
            "description": "Names of operator-defined secrets the code uses.",
            "items": {"type": "string", "pattern": SECRET_NAME_PATTERN}}
    }))
}

pub fn definitions() -> Vec<Tool> {
    let mut new_tool = tool_fields(true);
    new_tool.insert(
        "name".into(),
        json!({"type": "string", "pattern": NAME_PATTERN,
            "description": format!("Unique tool name, {}-{} characters: a letter, then letters, digits, `.`, `_` or `-`. \
                Built-in names and the prefixes {} are reserved.", NAME_CHARS.min, NAME_CHARS.max,
                RESERVED_PREFIXES.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", "))}),
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
            "idempotencyKey": idempotency_key_field(),
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
            "idempotencyKey": idempotency_key_field(),
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
            "idempotencyKey": idempotency_key_field(),
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
            "idempotencyKey": idempotency_key_field(),
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
            "revision": {"type": "integer", "minimum": 1,
                "description": "A kept earlier revision to return instead of the current one (dynamic.tool.history lists them); also works for a deleted tool."},
            "adminToken": admin_token_field()
        },
        "required": ["name"],
        "additionalProperties": false
    }));

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
        Tool::new(GET, "Return one dynamic tool with its code, or a kept earlier revision of it. Returns `{tool}`.", get)
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
        assert!(err.contains("unknown field `name`, expected one of `tool`"), "{err}");
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
