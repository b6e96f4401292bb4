//! `sandbox.*`: long-lived hardened containers (sessions) to run shell
//! commands and JavaScript in, relayed to the executor, which owns them.
//!
//! Every session belongs to its caller: the owner sent to the executor is
//! the caller's identity ([`Caller::key`]), never anything from the
//! arguments, so nobody can see, use or stop another caller's sessions.

use dynamic_mcp_proto::v1::{
    CommandResult, ExecInSessionRequest, ListSessionsRequest, RunJsInSessionRequest, SessionInfo, StartSessionRequest,
    StopSessionRequest,
};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use dynamic_mcp_common::limits::{MAX_DEPENDENCIES, MAX_TIMEOUT_MS_CEILING, MIN_TIMEOUT_MS, SESSION_COMMANDS};

use super::dynamic_tool::{DependencyInput, installing_message, to_proto};
use super::input_schema::input_schema;
use super::network::{NetworkInput, network_description, network_to_proto};
use super::run_dynamic::{Ran, code_args_json, outcome_result};
use super::{parse_args, run_stream};
use crate::auth::Caller;
use crate::call_context::CallContext;
use crate::egress::EgressWitness;
use crate::error::ToolError;
use crate::state::ServerState;

pub use dynamic_mcp_common::tool_names::sandbox::{EXEC, INITIALIZE, RUN_JS, SESSION_LIST, STOP};

// ---- inputs -----------------------------------------------------------------

const SESSION_ID: &str = "The session's id, from sandbox.initialize or sandbox.session.list.";

/// The arguments of sandbox.initialize.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InitializeInput {
    /// Docker image of the session; must be on the server's allow-list. Default: the first allowed image.
    image: Option<String>,
    /// Default time limit of each exec or run_js call in this session, in
    /// milliseconds. Default: the server's default.
    #[schemars(range(min = MIN_TIMEOUT_MS, max = MAX_TIMEOUT_MS_CEILING))]
    timeout_ms: Option<u32>,
    #[schemars(description = network_description("code in the session (sandbox.run_js, and node in sandbox.exec)"))]
    network: Option<NetworkInput>,
}

/// The arguments of sandbox.exec.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExecInput {
    #[schemars(description = SESSION_ID)]
    session_id: String,
    #[schemars(length(min = SESSION_COMMANDS.min, max = SESSION_COMMANDS.max), inner(length(min = 1)),
        description = format!("{}-{} shell commands (each run with `sh -c` in /work as an unprivileged user), one \
            after another; a failing command does not stop the next.", SESSION_COMMANDS.min, SESSION_COMMANDS.max))]
    commands: Vec<String>,
    /// Time limit of the whole call in milliseconds; the command running when
    /// it is reached is killed and the rest are skipped. Default: the session's.
    #[schemars(range(min = MIN_TIMEOUT_MS, max = MAX_TIMEOUT_MS_CEILING))]
    timeout_ms: Option<u32>,
}

/// The arguments of sandbox.run_js.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RunJsInput {
    #[schemars(description = SESSION_ID)]
    session_id: String,
    /// JavaScript: the body of `export async function run(args) { ... }`;
    /// return any JSON-serialisable value. It runs in /work, where files from
    /// sandbox.exec are.
    #[schemars(length(min = 1))]
    code: String,
    /// The object the code receives as `args`. Default: {}.
    #[schemars(extend("type" = "object"))]
    args: Option<Value>,
    /// npm packages the code imports; installed once per set, then reused.
    #[serde(default)]
    #[schemars(length(max = MAX_DEPENDENCIES))]
    dependencies: Vec<DependencyInput>,
    /// Time limit of the run in milliseconds. Default: the session's.
    #[schemars(range(min = MIN_TIMEOUT_MS, max = MAX_TIMEOUT_MS_CEILING))]
    timeout_ms: Option<u32>,
}

/// The arguments of sandbox.stop.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StopInput {
    #[schemars(description = SESSION_ID)]
    session_id: String,
}

/// sandbox.session.list takes no arguments (but the admin token).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListInput {}

/// The session owner: who is calling, as the caller cannot choose it.
fn owner(caller: &Caller) -> String {
    caller.key()
}

// ---- handlers ---------------------------------------------------------------

pub async fn initialize(
    state: &ServerState,
    call: &CallContext,
    args: JsonObject,
) -> Result<CallToolResult, ToolError> {
    let input: InitializeInput = parse_args(INITIALIZE, args)?;
    let request = StartSessionRequest {
        owner: owner(&call.caller),
        image: input.image,
        timeout_ms: input.timeout_ms,
        network: input.network.map(network_to_proto),
    };
    let started = state
        .services
        .executor_call(request, |mut executor, request| async move {
            executor.start_session(request).await
        })
        .await?;
    let session = started.session.ok_or_else(|| {
        ToolError::executor(tonic::Status::internal(
            "the executor started a session but did not describe it",
        ))
    })?;
    Ok(CallToolResult::structured(session_json(&session, "sessionId")))
}

pub async fn exec(state: &ServerState, call: &CallContext, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let input: ExecInput = parse_args(EXEC, args)?;
    let request = ExecInSessionRequest {
        owner: owner(&call.caller),
        session_id: input.session_id.clone(),
        commands: input.commands,
        timeout_ms: input.timeout_ms,
    };
    let response = state
        .services
        .session_call(&input.session_id, move |mut executor| async move {
            executor.exec_in_session(request).await
        })
        .await?;
    EgressWitness::in_session(call, EXEC, &input.session_id).record_all(state, &response.egress);
    let results: Vec<Value> = response.results.iter().map(command_json).collect();
    let body = json!({"sessionId": input.session_id, "results": results, "skipped": response.skipped});
    // A failing command is a normal answer; a command killed at the timeout is not.
    let Some(killed) = response.results.iter().position(|r| r.timed_out) else {
        return Ok(CallToolResult::structured(body));
    };
    let mut result = CallToolResult::structured_error(body);
    let skipped = match response.skipped {
        0 => String::new(),
        n => format!(", and the {n} after it did not run"),
    };
    result.content.insert(
        0,
        ContentBlock::text(format!(
            "commands[{killed}] did not finish within the call's timeout and was killed{skipped}; the results \
             of the commands before it are below. Pass a larger timeoutMs (for the whole call) or split the work"
        )),
    );
    Ok(result)
}

pub async fn run_js(state: &ServerState, call: &CallContext, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let input: RunJsInput = parse_args(RUN_JS, args)?;
    let dependencies = to_proto(input.dependencies);
    let witness = EgressWitness::in_session(call, RUN_JS, &input.session_id);
    let installing = (!dependencies.is_empty()).then(|| installing_message(dependencies.len()));
    let session_id = input.session_id;
    let request = RunJsInSessionRequest {
        owner: owner(&call.caller),
        session_id: session_id.clone(),
        code: input.code,
        args_json: code_args_json(input.args)?,
        dependencies,
        timeout_ms: input.timeout_ms,
        report_progress: call.progress.is_some(),
    };
    let events = state
        .services
        .session_call(&session_id, move |mut executor| async move {
            executor.run_js_in_session(request).await
        })
        .await?;
    let outcome = run_stream::follow(
        events,
        RUN_JS,
        call.progress.as_ref(),
        installing.as_deref(),
        |_| {},
        |event| witness.record(state, event),
    )
    .await?;
    Ok(outcome_result(Ran::Code(RUN_JS), outcome))
}

pub async fn stop(state: &ServerState, call: &CallContext, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let input: StopInput = parse_args(STOP, args)?;
    let request = StopSessionRequest {
        owner: owner(&call.caller),
        session_id: input.session_id.clone(),
    };
    state
        .services
        .session_call(&input.session_id, move |mut executor| async move {
            executor.stop_session(request).await
        })
        .await?;
    Ok(CallToolResult::structured(
        json!({"stopped": true, "sessionId": input.session_id}),
    ))
}

pub async fn list(state: &ServerState, call: &CallContext, args: JsonObject) -> Result<CallToolResult, ToolError> {
    let ListInput {} = parse_args(SESSION_LIST, args)?;
    let request = ListSessionsRequest {
        owner: owner(&call.caller),
    };
    let sessions = gather_sessions(state, request).await?;
    let sessions: Vec<Value> = sessions.iter().map(|s| session_json(s, "id")).collect();
    Ok(CallToolResult::structured(json!({ "sessions": sessions })))
}

/// The caller's sessions on every executor in rotation, oldest first. An
/// executor that fails to answer is left out (its sessions cannot be used
/// now either) unless none answers.
async fn gather_sessions(state: &ServerState, request: ListSessionsRequest) -> Result<Vec<SessionInfo>, ToolError> {
    let executors = state.services.executors.in_rotation();
    if executors.is_empty() {
        // None in rotation: ask as for a run, so the caller learns why it fails.
        let listed = state
            .services
            .executor_call(request, |mut executor, request| async move {
                executor.list_sessions(request).await
            })
            .await?;
        return Ok(listed.sessions);
    }
    let asks = executors.into_iter().map(|mut executor| {
        let request = request.clone();
        async move { executor.list_sessions(request).await }
    });
    let mut sessions = Vec::new();
    let mut failure = None;
    let mut answered = false;
    for answer in futures::future::join_all(asks).await {
        match answer {
            Ok(answer) => {
                answered = true;
                sessions.extend(answer.into_inner().sessions);
            }
            Err(status) => {
                tracing::warn!(%status, "an executor did not list its sessions");
                failure = Some(status);
            }
        }
    }
    match failure {
        Some(status) if !answered => Err(ToolError::executor(status)),
        _ => {
            // RFC 3339 UTC to the millisecond sorts as text.
            sessions.sort_by(|a, b| a.created_at.cmp(&b.created_at));
            Ok(sessions)
        }
    }
}

// ---- the views callers see --------------------------------------------------

/// A session as callers see it, its id under `id_key` (`sessionId` when
/// started, `id` in a listing, as older clients expect).
fn session_json(session: &SessionInfo, id_key: &str) -> Value {
    let mut body = json!({
        "image": session.image,
        "createdAt": session.created_at,
        "lastUsedAt": session.last_used_at,
        "expiresAt": session.expires_at,
        "timeoutMs": session.timeout_ms,
    });
    body[id_key] = json!(session.session_id);
    if let Some(network) = &session.network {
        body["network"] = json!({"allow": network.allow});
    }
    body
}

fn command_json(result: &CommandResult) -> Value {
    json!({
        "command": result.command,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "exitCode": result.exit_code,
        "durationMs": result.duration_ms,
        "timedOut": result.timed_out,
        "stdoutTruncated": result.stdout_truncated,
        "stderrTruncated": result.stderr_truncated,
    })
}

// ---- definitions ------------------------------------------------------------

pub fn definitions() -> Vec<Tool> {
    let annotations = |read_only: bool, destructive: bool| {
        ToolAnnotations::new()
            .read_only(read_only)
            .destructive(destructive)
            .idempotent(read_only)
            .open_world(false)
    };
    vec![
        Tool::new(
            INITIALIZE,
            "Start a sandbox session: a long-lived, isolated container (no network unless `network.allow` names \
             hosts, read-only system, a writable /work kept between calls) for sandbox.exec and sandbox.run_js. Only \
             you can see and use it; it is removed by sandbox.stop or after being idle for a while. Returns \
             `{sessionId, image, createdAt, lastUsedAt, expiresAt, timeoutMs, network?}`.",
            input_schema::<InitializeInput>(),
        )
        .with_title("Start sandbox session")
        .with_annotations(annotations(false, false)),
        Tool::new(
            EXEC,
            "Run shell commands in a sandbox session, one after another. Returns `{sessionId, results: [{command, \
             stdout, stderr, exitCode, durationMs, timedOut, stdoutTruncated, stderrTruncated}], skipped}`; a \
             non-zero exitCode is a normal result.",
            input_schema::<ExecInput>(),
        )
        .with_title("Run commands in sandbox session")
        .with_annotations(annotations(false, true)),
        Tool::new(
            RUN_JS,
            "Run JavaScript in a sandbox session (the body of `export async function run(args)`). Returns what a \
             dynamic tool returns: `{ok: true, result, durationMs}`, or an error saying what went wrong.",
            input_schema::<RunJsInput>(),
        )
        .with_title("Run JavaScript in sandbox session")
        .with_annotations(annotations(false, true)),
        Tool::new(
            STOP,
            "Stop one of your sandbox sessions and remove its container and files. Returns `{stopped: true, sessionId}`.",
            input_schema::<StopInput>(),
        )
        .with_title("Stop sandbox session")
        .with_annotations(annotations(false, true)),
        Tool::new(
            SESSION_LIST,
            "List your sandbox sessions, oldest first: `{sessions: [{id, image, createdAt, lastUsedAt, expiresAt, \
             timeoutMs, network?}]}`.",
            input_schema::<ListInput>(),
        )
        .with_title("List sandbox sessions")
        .with_annotations(annotations(true, false)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Principal;

    #[test]
    fn the_owner_is_the_caller_never_an_argument() {
        let alice = Caller::Authenticated(Principal {
            subject: "alice".into(),
            scopes: vec![],
        });
        assert_eq!(owner(&alice), "sub:alice");
        assert_ne!(owner(&Caller::Anonymous), owner(&alice));
        let err = parse_args::<ExecInput>(
            EXEC,
            json!({"sessionId": "s", "commands": ["id"], "owner": "bob"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `owner`"), "{err}");
    }

    #[test]
    fn commands_keep_every_field_even_when_empty() {
        let killed = CommandResult {
            command: "sleep 9".into(),
            timed_out: true,
            duration_ms: 1000,
            ..Default::default()
        };
        assert_eq!(
            command_json(&killed),
            json!({"command": "sleep 9", "stdout": "", "stderr": "", "exitCode": null, "durationMs": 1000,
                "timedOut": true, "stdoutTruncated": false, "stderrTruncated": false})
        );
    }

    #[test]
    fn sessions_are_listed_with_their_times() {
        let info = SessionInfo {
            session_id: "s-1".into(),
            image: "img".into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            last_used_at: "2026-01-01T00:00:01.000Z".into(),
            expires_at: "2026-01-01T00:30:01.000Z".into(),
            timeout_ms: 30000,
            network: None,
        };
        assert_eq!(session_json(&info, "sessionId")["sessionId"], "s-1");
        assert_eq!(
            session_json(&info, "id"),
            json!({"id": "s-1", "image": "img", "createdAt": "2026-01-01T00:00:00.000Z",
                "lastUsedAt": "2026-01-01T00:00:01.000Z", "expiresAt": "2026-01-01T00:30:01.000Z", "timeoutMs": 30000})
        );
        let networked = SessionInfo {
            network: Some(dynamic_mcp_proto::v1::NetworkPolicy {
                allow: vec!["api.example.com".into()],
            }),
            ..info
        };
        assert_eq!(
            session_json(&networked, "id")["network"],
            json!({"allow": ["api.example.com"]})
        );
    }
}
