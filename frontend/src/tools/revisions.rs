//! `dynamic.tool.history`, `dynamic.tool.rollback` and `dynamic.tool.restore`:
//! every revision of a tool is kept (the registry owns how many and for how
//! long), and an earlier one can become the next revision again, or a deleted
//! tool come back, after its examples pass with today's policy.

use dynamic_mcp_common::limits::DEFAULT_HISTORY_PAGE;
use dynamic_mcp_proto::v1::{
    RestoreToolRequest, RollbackToolRequest, ToolHistoryRequest, ToolRecord, ToolWriteResponse,
};
use rmcp::model::{CallToolResult, JsonObject, Tool};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::dynamic_tool::{
    PolicyFields, candidate, commit, key_or_fresh, prepare, settle, view_json, write_options, written_result,
};
use super::fields::{ExpectedRevision, IdempotencyKey};
use super::input_schema::input_schema;
use super::{parse_args, self_test};
use crate::call_context::CallContext;
use crate::error::ToolError;
use crate::state::ServerState;

pub use dynamic_mcp_common::tool_names::dynamic_tool::{HISTORY, RESTORE, ROLLBACK};

/// The arguments of dynamic.tool.history.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HistoryInput {
    /// Name of the dynamic tool whose revisions to list (also a deleted one).
    name: String,
    #[schemars(range(min = 1), description = format!(
        "How many revisions to return, newest first. Default: {DEFAULT_HISTORY_PAGE}."))]
    limit: Option<u32>,
}

/// The arguments of dynamic.tool.rollback.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RollbackInput {
    /// Name of the dynamic tool to roll back.
    name: String,
    /// The kept revision to return to (dynamic.tool.history lists them).
    #[schemars(range(min = 1))]
    revision: u64,
    expected_revision: Option<ExpectedRevision>,
    idempotency_key: Option<IdempotencyKey>,
}

/// The arguments of dynamic.tool.restore.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RestoreInput {
    /// Name of the dynamic tool to bring back after a delete.
    name: String,
    /// The kept revision to restore. Default: the one it had when it was deleted.
    #[schemars(range(min = 1))]
    revision: Option<u64>,
    idempotency_key: Option<IdempotencyKey>,
}

pub async fn history(state: &ServerState, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let input: HistoryInput = parse_args(HISTORY, args)?;
    let limit = input.limit.unwrap_or(DEFAULT_HISTORY_PAGE as u32);
    let request = ToolHistoryRequest {
        name: input.name.clone(),
        limit: Some(limit),
    };
    let kept = state
        .services
        .registry_call(|mut r| async move { r.history(request).await })
        .await?;
    let revisions: Vec<Value> = kept
        .revisions
        .into_iter()
        .map(|r| {
            let tool = r.tool.unwrap_or_default();
            let mut entry = json!({
                "revision": tool.revision,
                "kind": r.kind,
                "actor": r.actor,
                "changedFields": r.changed_fields,
                "at": tool.updated_at,
                "enabled": tool.enabled,
                "codeSizeBytes": tool.code_size_bytes,
            });
            if let Some(to) = r.rolled_back_to {
                entry["rolledBackTo"] = json!(to);
            }
            entry
        })
        .collect();
    let mut body = json!({
        "name": input.name,
        "revisions": revisions,
        "more": kept.more,
        "historyLimit": kept.history_limit,
    });
    if let Some(deleted) = kept.deleted {
        body["deleted"] = json!({
            "at": deleted.deleted_at, "by": deleted.deleted_by, "keptUntil": deleted.kept_until,
            "revision": deleted.revision,
        });
    }
    Ok(CallToolResult::structured(body))
}

pub async fn rollback(state: &ServerState, call: &CallContext, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let input: RollbackInput = parse_args(ROLLBACK, args)?;
    let request = |validate_only: bool, key: Option<&str>| RollbackToolRequest {
        name: input.name.clone(),
        revision: input.revision,
        expected_revision: input.expected_revision.map(|r| r.0),
        write: Some(write_options(call, key, validate_only)),
    };
    let check = request(true, None);
    let check = state
        .services
        .registry_call(|mut r| async move { r.rollback(check).await })
        .await?;
    let base = check.base_revision;
    let next = candidate(check)?;
    if next.revision == base {
        return Ok(CallToolResult::structured(json!({
            "tool": view_json(Some(ToolRecord { code: String::new(), ..next }), false),
            "changed": false,
        })));
    }
    let key = key_or_fresh(input.idempotency_key.clone());
    let write = request(false, Some(&key));
    go_live(state, call, ROLLBACK, &next, || {
        let (mut registry, sent) = (state.services.registry.clone(), write.clone());
        async move { registry.rollback(sent).await }
    })
    .await
}

pub async fn restore(state: &ServerState, call: &CallContext, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let input: RestoreInput = parse_args(RESTORE, args)?;
    let request = |validate_only: bool, key: Option<&str>| RestoreToolRequest {
        name: input.name.clone(),
        revision: input.revision,
        write: Some(write_options(call, key, validate_only)),
    };
    let check = request(true, None);
    let next = candidate(
        state
            .services
            .registry_call(|mut r| async move { r.restore(check).await })
            .await?,
    )?;
    let key = key_or_fresh(input.idempotency_key.clone());
    let write = request(false, Some(&key));
    go_live(state, call, RESTORE, &next, || {
        let (mut registry, sent) = (state.services.registry.clone(), write.clone());
        async move { registry.restore(sent).await }
    })
    .await
}

/// Proves `next` (policy and examples), then sends the keyed write.
async fn go_live<F, Fut>(
    state: &ServerState,
    call: &CallContext,
    action: &str,
    next: &ToolRecord,
    send: F,
) -> Result<CallToolResult, ToolError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<ToolWriteResponse>, tonic::Status>>,
{
    let examples = match prove(state, call, action, next).await? {
        Proven::Refused(refusal) => return Ok(refusal),
        Proven::Passed(examples) => examples,
    };
    let written = commit(send).await?;
    Ok(written_result(settle(state, written).await, None, examples))
}

enum Proven {
    Passed(Option<Vec<self_test::ExampleOutcome>>),
    Refused(CallToolResult),
}

/// An old revision goes live only if today's policy allows it and its examples pass.
async fn prove(state: &ServerState, call: &CallContext, action: &str, next: &ToolRecord) -> Result<Proven, ToolError> {
    prepare(state, call, PolicyFields::of(next)).await?;
    if next.examples.is_empty() {
        return Ok(Proven::Passed(None));
    }
    let outcomes = self_test::run_examples(state, call, next).await?;
    if outcomes.iter().any(|o| !o.passed()) {
        return Ok(Proven::Refused(self_test::refusal(action, &next.name, &outcomes)));
    }
    Ok(Proven::Passed(Some(outcomes)))
}

pub fn definitions() -> Vec<Tool> {
    let annotations = super::hints;
    vec![
        Tool::new(
            HISTORY,
            "List the kept revisions of a dynamic tool, newest first: `{name, revisions: [{revision, kind, actor, \
             changedFields, at}], more, historyLimit, deleted?}`. Works for a deleted tool while its history is kept.",
            input_schema::<HistoryInput>(),
        )
        .with_title("Dynamic tool history")
        .with_annotations(annotations(true, false, true)),
        Tool::new(
            ROLLBACK,
            "Make an earlier revision of a dynamic tool current again, as a new revision equal to it. Its examples run \
             first; a failure refuses the rollback. Clients get one notifications/tools/list_changed. Returns `{tool}`.",
            input_schema::<RollbackInput>(),
        )
        .with_title("Roll back dynamic tool")
        .with_annotations(annotations(false, true, true)),
        Tool::new(
            RESTORE,
            "Bring back a deleted dynamic tool from its kept history (at its last revision, or `revision`). Its \
             examples run first. Returns `{tool}`.",
            input_schema::<RestoreInput>(),
        )
        .with_title("Restore deleted dynamic tool")
        .with_annotations(annotations(false, false, true)),
    ]
}
