//! Self-tests: before a create, update, rollback or restore is stored, each
//! of the tool's examples runs in the real sandbox with the new code,
//! schemas and dependencies. An example fails when its args break the input
//! schema, the code throws or times out, the result breaks the output
//! schema, or it does not deep-equal `expect`. One failure refuses the whole
//! write, and the answer lists every example's outcome.

use dynamic_mcp_common::limits::EXAMPLE_CONCURRENCY;
use dynamic_mcp_common::tool_schema::json_equal;
use dynamic_mcp_proto::v1::{RunStatus, ToolRecord};
use futures::StreamExt;
use rmcp::model::{CallToolResult, ContentBlock};
use serde::Serialize;
use serde_json::{Value, json};

use super::run_dynamic::{Ran, execute, outcome_result, request_for};
use super::typed::Contract;
use crate::call_context::CallContext;
use crate::egress::EgressWitness;
use crate::error::ToolError;
use crate::state::ServerState;

const SHOWN_VALUE_CHARS: usize = 500;

/// How one example went.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExampleOutcome {
    pub index: usize,
    /// `passed`, `invalidArgs`, `outputMismatch`, `unexpectedResult`, or how
    /// the run failed (`threw`, `timedOut`, `syntaxError`, ...).
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

impl ExampleOutcome {
    pub fn passed(&self) -> bool {
        self.outcome == "passed"
    }

    fn failed(index: usize, outcome: &str, error: String) -> Self {
        Self {
            index,
            outcome: outcome.to_owned(),
            error: Some(error),
            expected: None,
            result: None,
            duration_ms: None,
        }
    }
}

/// Runs every example of `candidate` (a full record with code, not stored
/// yet), a few at a time, in example order; `call` is who asked (its
/// runs' egress is audited as theirs).
pub async fn run_examples(
    state: &ServerState,
    call: &CallContext,
    candidate: &ToolRecord,
) -> Result<Vec<ExampleOutcome>, ToolError> {
    let witness = EgressWitness::new(call, &candidate.name);
    let witness = &witness;
    let contract = Contract::of(candidate)?;
    let contract = &contract;
    let examples: Vec<(usize, String, Option<String>)> = candidate
        .examples
        .iter()
        .enumerate()
        .map(|(index, e)| (index, e.args_json.clone(), e.expect_json.clone()))
        .collect();
    let runs = examples.into_iter().map(|(index, args_json, expect_json)| async move {
        let args: Value = match serde_json::from_str(&args_json) {
            Ok(args) => args,
            Err(e) => {
                return Ok(ExampleOutcome::failed(
                    index,
                    "invalidArgs",
                    format!("args are not JSON: {e}"),
                ));
            }
        };
        let expect = expect_json.as_deref().map(serde_json::from_str::<Value>).transpose();
        let expect = match expect {
            Ok(expect) => expect,
            Err(e) => {
                return Ok(ExampleOutcome::failed(
                    index,
                    "invalidArgs",
                    format!("expect is not JSON: {e}"),
                ));
            }
        };
        run_one(state, witness, candidate, contract, index, args, expect).await
    });
    futures::stream::iter(runs)
        .buffered(EXAMPLE_CONCURRENCY)
        .collect::<Vec<Result<ExampleOutcome, ToolError>>>()
        .await
        .into_iter()
        .collect()
}

async fn run_one(
    state: &ServerState,
    witness: &EgressWitness,
    candidate: &ToolRecord,
    contract: &Contract,
    index: usize,
    args: Value,
    expect: Option<Value>,
) -> Result<ExampleOutcome, ToolError> {
    if let Some(schema) = &contract.input {
        let (mismatches, total) = schema.mismatches(&args);
        if total > 0 {
            let listed: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
            let error = format!("its args do not match the inputSchema: {}", listed.join("; "));
            return Ok(ExampleOutcome::failed(index, "invalidArgs", error));
        }
    }
    let outcome = execute(state, request_for(candidate, args.to_string()), witness).await?;
    let duration_ms = Some(outcome.duration_ms);
    if outcome.status() != RunStatus::Ok {
        let answer = outcome_result(Ran::Tool(&candidate.name), outcome);
        let reason = answer
            .structured_content
            .as_ref()
            .and_then(|s| s.get("reason"))
            .and_then(Value::as_str)
            .unwrap_or("error")
            .to_owned();
        let text = answer.content.first().and_then(|c| c.as_text()).map(|t| t.text.clone());
        return Ok(ExampleOutcome {
            duration_ms,
            ..ExampleOutcome::failed(index, &reason, text.unwrap_or_default())
        });
    }
    let result: Value = serde_json::from_str(&outcome.result_json).unwrap_or(Value::Null);
    if let Some(schema) = &contract.output {
        let (mismatches, total) = schema.mismatches(&result);
        if total > 0 {
            let listed: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
            return Ok(ExampleOutcome {
                result: Some(clipped(result)),
                duration_ms,
                ..ExampleOutcome::failed(
                    index,
                    "outputMismatch",
                    format!("the result does not match the outputSchema: {}", listed.join("; ")),
                )
            });
        }
    }
    if let Some(expected) = expect
        && !json_equal(&expected, &result)
    {
        return Ok(ExampleOutcome {
            expected: Some(clipped(expected)),
            result: Some(clipped(result)),
            duration_ms,
            ..ExampleOutcome::failed(index, "unexpectedResult", "the result is not the expected one".into())
        });
    }
    Ok(ExampleOutcome {
        index,
        outcome: "passed".into(),
        error: None,
        expected: None,
        result: None,
        duration_ms,
    })
}

/// A value to show in an answer, cut when it is large.
fn clipped(value: Value) -> Value {
    let text = value.to_string();
    if text.len() <= SHOWN_VALUE_CHARS {
        return value;
    }
    let cut: String = text.chars().take(SHOWN_VALUE_CHARS).collect();
    Value::String(format!("{cut}… ({} bytes in all)", text.len()))
}

/// The refusal of a write whose examples failed: nothing was stored.
pub fn refusal(action: &str, tool: &str, outcomes: &[ExampleOutcome]) -> CallToolResult {
    let failed: Vec<&ExampleOutcome> = outcomes.iter().filter(|o| !o.passed()).collect();
    let mut lines = vec![format!(
        "{action} of '{tool}' was refused: {} of {} examples failed, so nothing was stored. Fix the code (or the \
         examples) and try again.",
        failed.len(),
        outcomes.len()
    )];
    for outcome in outcomes {
        let mut line = format!("- examples[{}]: {}", outcome.index, outcome.outcome);
        if let Some(error) = &outcome.error {
            line.push_str(&format!(": {error}"));
        }
        if let Some(expected) = &outcome.expected {
            line.push_str(&format!("; expected {expected}"));
        }
        if let Some(result) = &outcome.result {
            line.push_str(&format!("; got {result}"));
        }
        lines.push(line);
    }
    let text = lines.join("\n");
    let mut result = CallToolResult::structured_error(json!({
        "ok": false, "reason": "examplesFailed", "error": text, "examples": outcomes
    }));
    result.content.insert(0, ContentBlock::text(text));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_lists_every_example() {
        let outcomes = vec![
            ExampleOutcome {
                index: 0,
                outcome: "passed".into(),
                error: None,
                expected: None,
                result: None,
                duration_ms: Some(5),
            },
            ExampleOutcome {
                expected: Some(json!({"upper": "A"})),
                result: Some(json!({"upper": "a"})),
                ..ExampleOutcome::failed(1, "unexpectedResult", "the result is not the expected one".into())
            },
        ];
        let result = refusal("dynamic.tool.create", "t.x", &outcomes);
        assert_eq!(result.is_error, Some(true));
        let text = &result.content[0].as_text().unwrap().text;
        assert!(
            text.starts_with("dynamic.tool.create of 't.x' was refused: 1 of 2 examples failed"),
            "{text}"
        );
        assert!(text.contains("- examples[0]: passed"), "{text}");
        assert!(text.contains("- examples[1]: unexpectedResult: the result is not the expected one; expected {\"upper\":\"A\"}; got {\"upper\":\"a\"}"), "{text}");
        assert_eq!(
            result.structured_content.unwrap()["examples"][1]["outcome"],
            "unexpectedResult"
        );
    }

    #[test]
    fn large_values_are_cut() {
        let big = json!({"blob": "x".repeat(2000)});
        assert!(clipped(big).as_str().unwrap().ends_with("bytes in all)"));
        assert_eq!(clipped(json!(1)), json!(1));
    }
}
