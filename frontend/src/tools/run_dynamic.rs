//! Calling a dynamic tool: `{"args": {...}}` in, one run in the executor,
//! and its outcome as a tool result that says what happened and what to fix.
//! The run and the outcome mapping are shared with the built-ins that run
//! JavaScript (`run_js_ephemeral`, `sandbox.run_js`).

use dynamic_mcp_proto::v1::{RunOutcome, RunStatus, RunToolRequest, ToolRecord};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool};
use serde_json::{Value, json};

use dynamic_mcp_common::limits::MAX_ARGS_BYTES;

use super::typed::{self, Refusal};
use super::{content, run_output, run_stream};
use crate::call_context::CallContext;
use crate::egress::EgressWitness;
use crate::error::ToolError;
use crate::metrics;
use crate::progress::Progress;
use crate::state::ServerState;

/// How a dynamic tool appears in tools/list (see `typed.rs`).
pub fn definition(tool: &ToolRecord) -> Tool {
    typed::definition(tool)
}

/// The JSON text of the `args` field of a built-in that runs code.
pub fn code_args_json(args: Option<Value>) -> Result<String, ToolError> {
    match args {
        None | Some(Value::Null) => Ok("{}".to_owned()),
        Some(args @ Value::Object(_)) => sized(args.to_string()),
        Some(other) => Err(ToolError::input(format!(
            "`args` must be an object (the code receives it as `args`); it is {}",
            json_kind(&other)
        ))),
    }
}

fn sized(args_json: String) -> Result<String, ToolError> {
    if args_json.len() > MAX_ARGS_BYTES {
        return Err(ToolError::input(format!(
            "`args` is {} bytes of JSON; at most {MAX_ARGS_BYTES} bytes (3 MiB) are accepted per call: \
             pass large data in smaller pieces",
            args_json.len()
        )));
    }
    Ok(args_json)
}

use typed::json_kind;

/// What the audit log records about a run: never code or arguments.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunFacts {
    /// The revision that ran (or was about to).
    pub revision: Option<u64>,
    /// The code's process exit code, when the executor reported one.
    pub exit_code: Option<i64>,
}

/// Runs `tool` (as listed, without code) once, noting what happened in
/// `facts`; the code's progress goes to the caller's progress token, if it
/// sent one. Dropping the future drops the executor stream, which stops the
/// container.
pub async fn run(
    state: &ServerState,
    call: &CallContext,
    listed: &ToolRecord,
    arguments: Option<JsonObject>,
    facts: &mut RunFacts,
) -> Result<CallToolResult, ToolError> {
    facts.revision = Some(listed.revision);
    // Checked before anything else is asked for: a bad call starts nothing.
    let contract = state.catalog.contract(listed)?;
    let args = match typed::call_args(&listed.name, &contract, arguments) {
        Ok(args) => args,
        Err(Refusal::Error(error)) => return Err(error),
        Err(Refusal::Result(result)) => return Ok(result),
    };
    let tool = super::with_code(state, listed).await?;
    if !tool.enabled {
        return Err(ToolError::input(format!("Tool '{}' has just been disabled", tool.name)));
    }
    // The feed may have been behind: the fetched revision's contract rules.
    let contract = if tool.revision == listed.revision {
        contract
    } else {
        let contract = state.catalog.contract(&tool)?;
        if let Err(refusal) = typed::call_args(&tool.name, &contract, Some(as_arguments(&contract, &args))) {
            return match refusal {
                Refusal::Error(error) => Err(error),
                Refusal::Result(result) => Ok(result),
            };
        }
        contract
    };
    facts.revision = Some(tool.revision);
    let witness = EgressWitness::new(call, &tool.name);
    let mut request = request_for(&tool, args.to_string());
    request.report_progress = call.progress.is_some();
    let outcome = execute_with(state, request, call.progress.as_ref(), None, &witness).await?;
    facts.exit_code = outcome.exit_code;
    if let Some(mismatch) = typed::check_result(&tool.name, &contract, &outcome) {
        return Ok(mismatch);
    }
    Ok(outcome_result(Ran::Tool(&tool.name), outcome))
}

/// `args` as call arguments again, for a second check.
fn as_arguments(contract: &typed::Contract, args: &Value) -> JsonObject {
    let value = if contract.flat {
        args.clone()
    } else {
        json!({ "args": args })
    };
    match value {
        Value::Object(object) => object,
        _ => JsonObject::new(),
    }
}

/// The run of one revision of a stored tool (or of a candidate being tested).
pub fn request_for(tool: &ToolRecord, args_json: String) -> RunToolRequest {
    RunToolRequest {
        tool_name: tool.name.clone(),
        revision: tool.revision,
        image: Some(tool.image.clone()),
        timeout_ms: Some(tool.timeout_ms),
        dependencies: tool.dependencies.clone(),
        code: tool.code.clone(),
        args_json,
        isolation: tool.isolation,
        network: tool.network.clone(),
        secrets: tool.secrets.clone(),
        report_progress: false,
    }
}

/// One RunTool call, to its single outcome; its egress goes to the audit log
/// and metrics as it happens. Dropping the future drops the stream, and the
/// executor kills the container.
pub async fn execute(
    state: &ServerState,
    request: RunToolRequest,
    egress: &EgressWitness,
) -> Result<RunOutcome, ToolError> {
    execute_with(state, request, None, None, egress).await
}

/// `execute`, with the code's progress to `progress` (and `installing` as a
/// heartbeat until the container runs).
pub async fn execute_with(
    state: &ServerState,
    request: RunToolRequest,
    progress: Option<&Progress>,
    installing: Option<&str>,
    egress: &EgressWitness,
) -> Result<RunOutcome, ToolError> {
    let tool_name = request.tool_name.clone();
    let events = state
        .services
        .executor_call(request, |mut executor, request| async move {
            executor.run_tool(request).await
        })
        .await?;
    run_stream::follow(
        events,
        &format!("'{tool_name}'"),
        progress,
        installing,
        |started| {
            metrics::container_started();
            tracing::debug!(tool = %tool_name, container = %started.container_id, "run started");
        },
        |event| egress.record(state, event),
    )
    .await
}

/// What ran, for the wording of its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran<'a> {
    /// A stored dynamic tool: fixes go through dynamic.tool.update.
    Tool(&'a str),
    /// Code passed to the built-in tool named here: fixes go into the next call.
    Code(&'a str),
}

impl Ran<'_> {
    fn subject(self) -> String {
        match self {
            Self::Tool(name) => format!("Tool '{name}'"),
            Self::Code(builtin) => format!("The code run by {builtin}"),
        }
    }

    fn timeout_fix(self) -> &'static str {
        match self {
            Self::Tool(_) => {
                "make it finish sooner or raise its timeoutMs with dynamic.tool.update (up to the server's maximum, \
                 which the dynamic.tool.author prompt states)"
            }
            Self::Code(_) => {
                "make it finish sooner or pass a larger timeoutMs (up to the server's maximum, which the \
                 dynamic.tool.author prompt states)"
            }
        }
    }

    fn syntax_fix(self) -> &'static str {
        match self {
            Self::Tool(_) => "fix its code with dynamic.tool.update",
            Self::Code(_) => "fix the code and call again",
        }
    }
}

/// The tool result for one run's outcome.
pub fn outcome_result(ran: Ran<'_>, outcome: RunOutcome) -> CallToolResult {
    let subject = ran.subject();
    let with_detail = |what: String, detail: &str| {
        if detail.is_empty() {
            what
        } else {
            format!("{what}: {detail}")
        }
    };
    let message = &outcome.error_message;
    if outcome.status() == RunStatus::Ok
        && let Some(blocks) = outcome.content.clone()
    {
        return content::result(blocks, &outcome);
    }
    let (reason, text) = match outcome.status() {
        RunStatus::Ok => match serde_json::from_str::<Value>(&outcome.result_json) {
            Ok(result) => {
                let mut body = json!({"ok": true, "result": result, "durationMs": outcome.duration_ms});
                run_output::add_output(&mut body, &outcome);
                return CallToolResult::structured(body);
            }
            Err(e) => (
                "badResult",
                format!("{subject} returned a result the server could not read ({e})"),
            ),
        },
        RunStatus::Threw => {
            let thrown = if outcome.error_name.is_empty() {
                "an error"
            } else {
                outcome.error_name.as_str()
            };
            ("threw", with_detail(format!("{subject} threw {thrown}"), message))
        }
        RunStatus::TimedOut => {
            let after = if outcome.timeout_ms > 0 {
                outcome.timeout_ms
            } else {
                outcome.duration_ms as u32
            };
            (
                "timedOut",
                format!(
                    "{subject} timed out after {after} ms and was stopped; {}",
                    ran.timeout_fix()
                ),
            )
        }
        RunStatus::SyntaxError => (
            "syntaxError",
            format!(
                "{}; {}",
                with_detail(format!("{subject} has a syntax error"), message),
                ran.syntax_fix()
            ),
        ),
        RunStatus::BadResult => (
            "badResult",
            with_detail(format!("{subject} returned an unusable result"), message),
        ),
        RunStatus::ResourceLimit => (
            "resourceLimit",
            with_detail(format!("{subject} hit a resource limit"), message),
        ),
        RunStatus::Exited => (
            "exited",
            with_detail(format!("{subject} ended without returning a result"), message),
        ),
        RunStatus::Unspecified => (
            "unknown",
            format!("{subject} got no outcome from the executor; try again"),
        ),
    };
    // A thrown error keeps its own message in `error`, as older clients expect.
    let error = if outcome.status() == RunStatus::Threw {
        message.clone()
    } else {
        text.clone()
    };
    let mut body = json!({"ok": false, "reason": reason, "error": error, "durationMs": outcome.duration_ms});
    if !outcome.error_name.is_empty() {
        body["errorName"] = json!(outcome.error_name);
    }
    run_output::add_output(&mut body, &outcome);
    let mut result = CallToolResult::structured_error(body);
    // The model reads the first text block: make it the sentence that says what to fix.
    result.content.insert(0, ContentBlock::text(text));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: RunStatus) -> RunOutcome {
        RunOutcome {
            status: status.into(),
            duration_ms: 12,
            timeout_ms: 30000,
            ..Default::default()
        }
    }

    fn first_text(result: &CallToolResult) -> &str {
        &result.content[0].as_text().unwrap().text
    }

    #[test]
    fn success_carries_result_duration_and_only_nonempty_output() {
        let mut ok = outcome(RunStatus::Ok);
        ok.result_json = r#"{"upper":"HELLO"}"#.into();
        let result = outcome_result(Ran::Tool("t"), ok.clone());
        assert_eq!(result.is_error, Some(false));
        assert_eq!(
            result.structured_content,
            Some(json!({"ok": true, "result": {"upper": "HELLO"}, "durationMs": 12}))
        );
        ok.stderr = "warn\n".into();
        ok.stderr_truncated = true;
        let body = outcome_result(Ran::Tool("t"), ok).structured_content.unwrap();
        assert_eq!(
            (body["stderr"].as_str(), body["stderrTruncated"].as_bool()),
            (Some("warn\n"), Some(true))
        );
        assert!(body.get("stdout").is_none());
    }

    #[test]
    fn a_throw_names_the_error_and_keeps_its_message() {
        let mut threw = outcome(RunStatus::Threw);
        threw.error_message = "x is not a function".into();
        threw.error_name = "TypeError".into();
        threw.stdout = "before\n".into();
        let result = outcome_result(Ran::Tool("t"), threw);
        assert_eq!(result.is_error, Some(true));
        assert_eq!(first_text(&result), "Tool 't' threw TypeError: x is not a function");
        assert_eq!(
            result.structured_content,
            Some(
                json!({"ok": false, "reason": "threw", "error": "x is not a function", "errorName": "TypeError",
                "durationMs": 12, "stdout": "before\n"})
            )
        );
    }

    #[test]
    fn failures_say_what_to_fix() {
        let timed_out = outcome_result(Ran::Tool("t"), outcome(RunStatus::TimedOut));
        assert!(
            first_text(&timed_out).starts_with("Tool 't' timed out after 30000 ms and was stopped; make it finish")
        );
        let mut syntax = outcome(RunStatus::SyntaxError);
        syntax.error_message = "Unexpected token '}'".into();
        let syntax = outcome_result(Ran::Tool("t"), syntax);
        assert_eq!(
            first_text(&syntax),
            "Tool 't' has a syntax error: Unexpected token '}'; fix its code with dynamic.tool.update"
        );
        for status in [
            RunStatus::BadResult,
            RunStatus::ResourceLimit,
            RunStatus::Exited,
            RunStatus::Unspecified,
        ] {
            let mut failed = outcome(status);
            failed.error_message = "detail".into();
            let result = outcome_result(Ran::Tool("t"), failed);
            assert_eq!(result.is_error, Some(true), "{status:?}");
            assert_eq!(result.structured_content.as_ref().unwrap()["ok"], false);
        }
        let mut unreadable = outcome(RunStatus::Ok);
        unreadable.result_json = "{".into();
        assert_eq!(outcome_result(Ran::Tool("t"), unreadable).is_error, Some(true));
    }

    #[test]
    fn code_passed_with_a_call_is_told_to_fix_the_next_call() {
        let ran = Ran::Code("run_js_ephemeral");
        let timed_out = outcome_result(ran, outcome(RunStatus::TimedOut));
        assert_eq!(
            first_text(&timed_out),
            "The code run by run_js_ephemeral timed out after 30000 ms and was stopped; make it finish sooner or \
             pass a larger timeoutMs (up to the server's maximum, which the dynamic.tool.author prompt states)"
        );
        let mut syntax = outcome(RunStatus::SyntaxError);
        syntax.error_message = "Unexpected end of input".into();
        assert_eq!(
            first_text(&outcome_result(ran, syntax)),
            "The code run by run_js_ephemeral has a syntax error: Unexpected end of input; fix the code and call again"
        );
    }

    #[test]
    fn code_args_beyond_the_limit_are_refused_with_the_limit() {
        let big = json!({"blob": "x".repeat(MAX_ARGS_BYTES)});
        let err = code_args_json(Some(big)).unwrap_err().to_string();
        assert!(err.starts_with("`args` is 3145739 bytes of JSON"), "{err}");
        assert!(err.contains("at most 3145728 bytes (3 MiB)"), "{err}");
        assert_eq!(code_args_json(None).unwrap(), "{}");
        assert!(
            code_args_json(Some(json!([1])))
                .unwrap_err()
                .to_string()
                .ends_with("it is an array")
        );
    }

    #[test]
    fn the_listing_uses_the_args_contract() {
        let record = ToolRecord {
            name: "text.upper".into(),
            title: Some("Upper".into()),
            description: "Upper-cases text".into(),
            ..Default::default()
        };
        let tool = definition(&record);
        assert_eq!(
            (tool.name.as_ref(), tool.title.as_deref()),
            ("text.upper", Some("Upper"))
        );
        assert_eq!(tool.input_schema["properties"]["args"]["type"], "object");
        assert_eq!(tool.input_schema["additionalProperties"], false);
    }
}
