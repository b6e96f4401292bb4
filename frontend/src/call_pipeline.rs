//! What happens to every `tools/call`, in order: find the tool; check
//! access (admin rights, read-only), after which an admin tool's
//! `adminToken` argument is dropped; ask the guard for a slot and rate
//! budget; run it (until done, or until the client cancels); then count it
//! (guard, Prometheus), log it and audit it.
//!
//! Access comes before the guard: guessing the admin token is limited by
//! its own back-off ([`crate::auth::failed_auth`]), and a guesser must not
//! spend the rate budget of the callers it shares an identity with. Audit
//! lines never contain arguments or code.

use std::time::Instant;

use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, JsonObject};
use serde_json::{Map, Value, json};

use crate::access::{self, ADMIN_TOKEN_ARGUMENT};
use crate::audit::{AuditEvent, AuditResult};
use crate::call_context::CallContext;
use crate::error::unknown_tool;
use crate::guard::{Rejection, ToolClass};
use crate::metrics::{self, CallOutcome};
use crate::state::ServerState;
use crate::tools::{self, dynamic_tool, run_dynamic};

/// Longest error message copied into an audit line.
const MAX_AUDITED_ERROR_CHARS: usize = 2000;

pub async fn call_tool(
    state: &ServerState,
    request: CallToolRequestParams,
    call: CallContext,
) -> Result<CallToolResult, McpError> {
    let name = request.name.to_string();
    let listed = if tools::is_builtin(&name) {
        None
    } else {
        Some(
            state
                .catalog
                .find_enabled(&name)
                .await
                .ok_or_else(|| unknown_tool(&name))?,
        )
    };
    let scope = ToolClass::of_tool(&name, listed.is_some());
    let mut args = request.arguments.unwrap_or_default();
    let audit = AuditTemplate::new(&name, scope, &args, &call);
    let started = Instant::now();

    if let Err(denial) = state.access.check(&name, &call, &args) {
        metrics::tool_call(&name, scope, CallOutcome::Denied, started.elapsed());
        state
            .audit
            .record(audit.event(AuditResult::Denied, json!({"reason": denial.reason()})));
        tracing::info!(tool = %name, caller = %call.caller, reason = denial.reason(), "tool call denied");
        return Ok(denial.into_result());
    }
    // The admin token is checked: the admin tools never see it in their arguments.
    if listed.is_none() && access::needs_admin(&name) {
        args.remove(ADMIN_TOKEN_ARGUMENT);
    }

    let pass = match state.guard.admit(scope, &call.caller) {
        Ok(pass) => pass,
        Err(rejection) => {
            metrics::guard_rejected(scope, rejection.reason());
            metrics::tool_call(&name, scope, CallOutcome::Rejected, started.elapsed());
            state.audit.record(audit.event(
                AuditResult::Denied,
                json!({"reason": format!("guard_{}", rejection.reason()), "scope": scope.as_str(),
                    "retryAfterMs": rejection.retry_after_ms()}),
            ));
            tracing::info!(tool = %name, caller = %call.caller, reason = rejection.reason(), "tool call refused by the guard");
            return Ok(rejected(&rejection, scope));
        }
    };
    metrics::guard_active(state.guard.active_executions());

    let mut facts = run_dynamic::RunFacts::default();
    let work = async {
        match &listed {
            Some(listed) => Some(run_dynamic::run(state, &call, listed, Some(args), &mut facts).await),
            None => tools::call_builtin(state, &name, args, &call).await,
        }
    };
    // Dropping the work drops its executor call, which stops what it started.
    let outcome = tokio::select! {
        outcome = work => outcome.ok_or_else(|| unknown_tool(&name))?,
        () = call.cancel.cancelled() => {
            tracing::info!(tool = %name, caller = %call.caller, "call cancelled by the client; its work was stopped");
            Ok(cancelled(&name))
        }
    };
    let result = outcome.unwrap_or_else(|e| e.into_result(&state.services.addresses));
    let failed = result.is_error == Some(true);
    pass.finish(failed);
    metrics::guard_active(state.guard.active_executions());

    let took = started.elapsed();
    let outcome = match (failed, run_outcome(&result).as_str()) {
        (false, _) => CallOutcome::Ok,
        (true, "invalidArgs") if scope == ToolClass::Dynamic => CallOutcome::InvalidArgs,
        (true, "outputMismatch") if scope == ToolClass::Dynamic => CallOutcome::OutputMismatch,
        (true, _) => CallOutcome::Error,
    };
    metrics::tool_call(&name, scope, outcome, took);
    tracing::info!(
        tool = %name,
        caller = %call.caller,
        is_error = failed,
        duration_ms = took.as_millis() as u64,
        "tool call"
    );
    if scope != ToolClass::System {
        let result_kind = if failed {
            AuditResult::Error
        } else {
            AuditResult::Success
        };
        let mut details = Map::new();
        details.insert("durationMs".into(), json!(took.as_millis() as u64));
        if scope == ToolClass::Dynamic {
            details.insert("revision".into(), json!(facts.revision));
            details.insert("outcome".into(), json!(run_outcome(&result)));
            details.insert("exitCode".into(), json!(facts.exit_code));
        } else {
            let revision = result
                .structured_content
                .as_ref()
                .and_then(|s| s.pointer("/tool/revision"))
                .cloned();
            if let Some(revision) = revision {
                details.insert("revision".into(), revision);
            }
            if failed {
                details.insert("error".into(), json!(first_text(&result)));
            }
        }
        state.audit.record(audit.event(result_kind, Value::Object(details)));
    }
    Ok(result)
}

/// The guard's refusal as a tool result the model can act on.
fn rejected(rejection: &Rejection, scope: ToolClass) -> CallToolResult {
    let mut result = CallToolResult::structured_error(json!({
        "ok": false,
        "reason": match rejection {
            Rejection::Concurrency { .. } => "tooManyConcurrentCalls",
            Rejection::Rate { .. } => "rateLimited",
        },
        "error": rejection.message(scope),
        "retryAfterMs": rejection.retry_after_ms(),
    }));
    result.content.insert(0, ContentBlock::text(rejection.message(scope)));
    result
}

/// The answer to a call the client cancelled (it may never read it).
fn cancelled(tool: &str) -> CallToolResult {
    let message = format!("the call of '{tool}' was cancelled by the client and its work stopped");
    let mut result = CallToolResult::structured_error(json!({"ok": false, "reason": "cancelled", "error": message}));
    result.content.insert(0, ContentBlock::text(message));
    result
}

/// How a dynamic run ended, in a word (`ok`, `threw`, `timedOut`, …).
fn run_outcome(result: &CallToolResult) -> String {
    let reason = result
        .structured_content
        .as_ref()
        .and_then(|s| s.get("reason"))
        .and_then(Value::as_str);
    match (reason, result.is_error == Some(true)) {
        (Some(reason), _) => reason.to_owned(),
        (None, false) => "ok".to_owned(),
        (None, true) => "error".to_owned(),
    }
}

fn first_text(result: &CallToolResult) -> String {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.chars().take(MAX_AUDITED_ERROR_CHARS).collect())
        .unwrap_or_default()
}

/// The parts of a call's audit line known before it runs.
struct AuditTemplate {
    action: String,
    actor: String,
    target: Option<String>,
    request_id: Option<String>,
}

impl AuditTemplate {
    fn new(tool: &str, scope: ToolClass, args: &JsonObject, call: &CallContext) -> Self {
        // By reference: the arguments may hold 200000 characters of code.
        let name = |object: &JsonObject| object.get("name").and_then(Value::as_str).map(str::to_owned);
        let tool_name = || args.get("tool").and_then(Value::as_object).and_then(name);
        let session = || args.get("sessionId").and_then(Value::as_str).map(str::to_owned);
        let (action, target) = match scope {
            ToolClass::Dynamic => ("tool.run".to_owned(), Some(tool.to_owned())),
            ToolClass::Admin => {
                let action = match tool {
                    dynamic_tool::ENABLE if args.get("enabled") == Some(&Value::Bool(false)) => {
                        "tool.disable".to_owned()
                    }
                    _ => tool.replacen("dynamic.", "", 1),
                };
                (action, name(args).or_else(tool_name))
            }
            ToolClass::Sandbox | ToolClass::System => (tool.to_owned(), session()),
        };
        Self {
            action,
            actor: call.caller.actor(),
            target,
            request_id: call.request_id.clone(),
        }
    }

    fn event(&self, result: AuditResult, mut details: Value) -> AuditEvent {
        if let (Some(id), Some(map)) = (&self.request_id, details.as_object_mut()) {
            map.insert("requestId".into(), json!(id));
        }
        let event = AuditEvent::new(&self.action, &self.actor, result).details(details);
        match &self.target {
            Some(target) => event.target(target),
            None => event,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::auth::Caller;

    fn call() -> CallContext {
        CallContext {
            caller: Caller::Anonymous,
            over_http: true,
            client: None,
            admin_header: None,
            request_id: Some("req-1".into()),
            cancel: CancellationToken::new(),
            progress: None,
        }
    }

    fn args(value: Value) -> JsonObject {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn audit_actions_and_targets_follow_the_tool() {
        let template = |tool: &str, scope, a: Value| {
            let t = AuditTemplate::new(tool, scope, &args(a), &call());
            (t.action, t.target)
        };
        assert_eq!(
            template(
                "dynamic.tool.create",
                ToolClass::Admin,
                json!({"tool": {"name": "t.x"}})
            ),
            ("tool.create".into(), Some("t.x".into()))
        );
        assert_eq!(
            template(
                "dynamic.tool.enable",
                ToolClass::Admin,
                json!({"name": "t.x", "enabled": false})
            ),
            ("tool.disable".into(), Some("t.x".into()))
        );
        assert_eq!(
            template(
                "dynamic.tool.enable",
                ToolClass::Admin,
                json!({"name": "t.x", "enabled": true})
            ),
            ("tool.enable".into(), Some("t.x".into()))
        );
        assert_eq!(
            template("dynamic.tool.list", ToolClass::Admin, json!({})),
            ("tool.list".into(), None)
        );
        assert_eq!(
            template("text.upper", ToolClass::Dynamic, json!({"args": {"secret": 1}})),
            ("tool.run".into(), Some("text.upper".into()))
        );
        let event = AuditTemplate::new("system.health", ToolClass::System, &JsonObject::new(), &call())
            .event(AuditResult::Denied, json!({"reason": "guard_rate"}));
        assert_eq!(
            event.details,
            Some(json!({"reason": "guard_rate", "requestId": "req-1"}))
        );
        assert_eq!(event.actor, "anonymous");
    }

    #[test]
    fn refusals_say_when_to_retry() {
        let result = rejected(&Rejection::Concurrency { max: 2 }, ToolClass::Dynamic);
        assert_eq!(result.is_error, Some(true));
        assert!(first_text(&result).contains("retry in about 1000 ms"));
        assert_eq!(result.structured_content.unwrap()["retryAfterMs"], 1000);
    }
}
