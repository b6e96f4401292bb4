//! The typed contract of a dynamic tool: how it is listed (its input schema
//! as the `args` property, or as the whole input in flat mode; its output
//! schema inside the `{ok, result, durationMs}` envelope; its hints and
//! examples), how a call's arguments are checked before anything runs, and
//! the one place a run's result is checked against the output schema.

use std::sync::Arc;

use dynamic_mcp_common::limits::MAX_ARGS_BYTES;
use dynamic_mcp_common::tool_schema::{Dialect, Mismatch, ToolSchema, rebase_refs};
use dynamic_mcp_proto::v1::{ArgumentsMode, RunOutcome, RunStatus, ToolRecord};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

use crate::error::ToolError;

/// Examples shown in a listed description.
const LISTED_EXAMPLES: usize = 3;
const LISTED_EXAMPLE_CHARS: usize = 300;

/// A tool's compiled schemas.
#[derive(Debug)]
pub struct Contract {
    pub input: Option<ToolSchema>,
    pub output: Option<ToolSchema>,
    pub flat: bool,
}

impl Contract {
    /// Compiles the schemas of `tool`; they were checked when it was stored.
    pub fn of(tool: &ToolRecord) -> Result<Self, ToolError> {
        let compile = |field: &str, text: &Option<String>| -> Result<Option<ToolSchema>, ToolError> {
            text.as_deref()
                .map(|text| {
                    let schema: Value = serde_json::from_str(text).map_err(|e| {
                        ToolError::input(format!("the stored {field} of '{}' is not JSON: {e}", tool.name))
                    })?;
                    ToolSchema::compile(field, &schema).map_err(|e| ToolError::input(e.to_string()))
                })
                .transpose()
        };
        Ok(Self {
            input: compile("inputSchema", &tool.input_schema_json)?,
            output: compile("outputSchema", &tool.output_schema_json)?,
            flat: tool.arguments() == ArgumentsMode::Flat,
        })
    }
}

fn parsed(text: &Option<String>) -> Option<Value> {
    text.as_deref().and_then(|t| serde_json::from_str(t).ok())
}

/// How a dynamic tool appears in tools/list.
pub fn definition(tool: &ToolRecord) -> Tool {
    let examples: Vec<(Value, Option<Value>)> = tool
        .examples
        .iter()
        .filter_map(|e| {
            let args = serde_json::from_str(&e.args_json).ok()?;
            Some((
                args,
                e.expect_json.as_deref().and_then(|t| serde_json::from_str(t).ok()),
            ))
        })
        .collect();
    let flat = tool.arguments() == ArgumentsMode::Flat;
    let input = match (flat, parsed(&tool.input_schema_json)) {
        (true, Some(schema)) => object(schema),
        (true, None) => object(json!({"type": "object"})),
        (false, schema) => args_wrapper(schema, &examples),
    };
    let mut definition = Tool::new(tool.name.clone(), listed_description(tool, flat, &examples), input);
    if let Some(output) = parsed(&tool.output_schema_json) {
        definition = definition.with_raw_output_schema(Arc::new(envelope(output)));
    }
    if let Some(title) = &tool.title {
        definition = definition.with_title(title.clone());
    }
    if let Some(hints) = &tool.annotations {
        let mut annotations = ToolAnnotations::new();
        annotations.title = hints.title.clone();
        annotations.read_only_hint = hints.read_only_hint;
        annotations.destructive_hint = hints.destructive_hint;
        annotations.idempotent_hint = hints.idempotent_hint;
        annotations.open_world_hint = hints.open_world_hint;
        definition = definition.with_annotations(annotations);
    }
    definition
}

/// `{"args": <schema>}`: the schema moves under `args`, its local `$ref`s
/// follow it, and `args` is required when `{}` would not pass.
fn args_wrapper(schema: Option<Value>, examples: &[(Value, Option<Value>)]) -> JsonObject {
    let Some(mut schema) = schema else {
        let mut args = json!({"type": "object", "description": "The tool's input; its code receives this object as \
            `args`. The tool's description says which fields it expects."});
        if !examples.is_empty() {
            args["examples"] = Value::Array(examples.iter().map(|(a, _)| a.clone()).collect());
        }
        return object(json!({"type": "object", "properties": {"args": args}, "additionalProperties": false}));
    };
    let dialect = ToolSchema::compile("inputSchema", &schema).map(|s| s.dialect()).ok();
    let required = ToolSchema::compile("inputSchema", &schema).is_ok_and(|s| !s.accepts(&json!({})));
    rebase_refs(&mut schema, "/properties/args");
    if let Value::Object(inner) = &mut schema {
        inner.remove("$schema");
        if !examples.is_empty() && !inner.contains_key("examples") {
            inner.insert(
                "examples".into(),
                Value::Array(examples.iter().map(|(a, _)| a.clone()).collect()),
            );
        }
    }
    let mut wrapper = json!({"type": "object", "properties": {"args": schema}, "additionalProperties": false});
    if dialect == Some(Dialect::Draft07) {
        wrapper["$schema"] = json!(Dialect::Draft07.uri());
    }
    if required {
        wrapper["required"] = json!(["args"]);
    }
    object(wrapper)
}

/// The structured result a successful call really returns, `result` typed.
fn envelope(mut result: Value) -> JsonObject {
    let dialect = ToolSchema::compile("outputSchema", &result).map(|s| s.dialect()).ok();
    rebase_refs(&mut result, "/properties/result");
    if let Value::Object(inner) = &mut result {
        inner.remove("$schema");
    }
    let mut envelope = json!({
        "type": "object",
        "properties": {
            "ok": {"const": true},
            "result": result,
            "durationMs": {"type": "number", "description": "How long the run took, in milliseconds."},
            "stdout": {"type": "string"},
            "stderr": {"type": "string"},
            "stdoutTruncated": {"type": "boolean"},
            "stderrTruncated": {"type": "boolean"}
        },
        "required": ["ok", "result", "durationMs"]
    });
    if dialect == Some(Dialect::Draft07) {
        envelope["$schema"] = json!(Dialect::Draft07.uri());
    }
    object(envelope)
}

/// The description, followed by a few examples as models read them.
fn listed_description(tool: &ToolRecord, flat: bool, examples: &[(Value, Option<Value>)]) -> String {
    if examples.is_empty() {
        return tool.description.clone();
    }
    let mut text = format!("{}\n\nExamples:", tool.description);
    for (args, expect) in examples.iter().take(LISTED_EXAMPLES) {
        let call = if flat { args.clone() } else { json!({ "args": args }) };
        let line = match expect {
            Some(expect) => format!("{call} → {expect}"),
            None => call.to_string(),
        };
        text.push_str("\n- ");
        text.extend(line.chars().take(LISTED_EXAMPLE_CHARS));
    }
    text
}

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(object) => object,
        _ => JsonObject::new(),
    }
}

/// The `args` of a call: `{"args": {...}}` (or, in flat mode, the whole
/// arguments), checked against the input schema. A mismatch is an `isError`
/// result that names every failing pointer, and nothing runs.
pub fn call_args(tool: &str, contract: &Contract, arguments: Option<JsonObject>) -> Result<Value, Refusal> {
    let args = if contract.flat {
        Value::Object(arguments.unwrap_or_default())
    } else {
        args_field(tool, arguments)?
    };
    let size = args.to_string().len();
    if size > MAX_ARGS_BYTES {
        return Err(Refusal::Error(ToolError::input(format!(
            "`args` is {size} bytes of JSON; at most {MAX_ARGS_BYTES} bytes (3 MiB) are accepted per call: pass \
             large data in smaller pieces"
        ))));
    }
    if let Some(schema) = &contract.input {
        let (mismatches, total) = schema.mismatches(&args);
        if total > 0 {
            let prefix = if contract.flat { "" } else { "/args" };
            return Err(Refusal::Result(invalid_args(tool, prefix, &mismatches, total)));
        }
    }
    Ok(args)
}

/// Why a call does not run: a plain error, or a result that says in detail.
#[derive(Debug)]
pub enum Refusal {
    Error(ToolError),
    Result(CallToolResult),
}

impl From<ToolError> for Refusal {
    fn from(error: ToolError) -> Self {
        Self::Error(error)
    }
}

fn args_field(tool: &str, arguments: Option<JsonObject>) -> Result<Value, ToolError> {
    let mut arguments = arguments.unwrap_or_default();
    let unexpected: Vec<_> = arguments
        .keys()
        .filter(|k| *k != "args")
        .map(|k| format!("`{k}`"))
        .collect();
    if !unexpected.is_empty() {
        return Err(ToolError::input(format!(
            "Tool '{tool}' takes its input as {{\"args\": {{...}}}}; move {} inside `args`",
            unexpected.join(", ")
        )));
    }
    match arguments.remove("args") {
        None | Some(Value::Null) => Ok(json!({})),
        Some(args @ Value::Object(_)) => Ok(args),
        Some(other) => Err(ToolError::input(format!(
            "Tool '{tool}' takes its input as {{\"args\": {{...}}}}, with an object; `args` is {}",
            json_kind(&other)
        ))),
    }
}

pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn mismatch_list(prefix: &str, mismatches: &[Mismatch], total: usize) -> (Vec<Value>, String) {
    let mut lines = Vec::new();
    let listed: Vec<Value> = mismatches
        .iter()
        .map(|m| {
            let pointer = format!("{prefix}{}", m.pointer);
            let shown = if pointer.is_empty() {
                "(root)".to_owned()
            } else {
                pointer.clone()
            };
            lines.push(format!("- {shown}: {}", m.message));
            json!({"pointer": pointer, "expected": m.message})
        })
        .collect();
    if total > mismatches.len() {
        lines.push(format!("- … and {} more", total - mismatches.len()));
    }
    (listed, lines.join("\n"))
}

fn invalid_args(tool: &str, prefix: &str, mismatches: &[Mismatch], total: usize) -> CallToolResult {
    let (errors, lines) = mismatch_list(prefix, mismatches, total);
    let text = format!(
        "Tool '{tool}' was called with arguments that do not match its inputSchema, so it did not run:\n{lines}\n\
         Fix the arguments and call again (tools/list shows the schema)."
    );
    refusal_result(
        json!({"ok": false, "reason": "invalidArgs", "error": text, "errors": errors}),
        text,
    )
}

/// The one place a run's result meets the tool's output schema: `None`
/// when there is nothing to say (no schema, a failed run, or a match).
pub fn check_result(tool: &str, contract: &Contract, outcome: &RunOutcome) -> Option<CallToolResult> {
    let schema = contract.output.as_ref()?;
    if outcome.status() != RunStatus::Ok {
        return None;
    }
    if outcome.content.is_some() {
        let text = format!(
            "Tool '{tool}' declares an outputSchema, so it must return JSON that matches it, but it returned MCP \
             content (mcp.content() or a block). Return a plain value instead, or remove the outputSchema with \
             dynamic.tool.update."
        );
        return Some(refusal_result(
            json!({"ok": false, "reason": "outputMismatch", "error": text, "durationMs": outcome.duration_ms}),
            text,
        ));
    }
    let result: Value = serde_json::from_str(&outcome.result_json).ok()?;
    let (mismatches, total) = schema.mismatches(&result);
    if total == 0 {
        return None;
    }
    let (errors, lines) = mismatch_list("/result", &mismatches, total);
    let text = format!(
        "Tool '{tool}' returned a result that does not match its outputSchema:\n{lines}\nFix its code (or its \
         outputSchema) with dynamic.tool.update."
    );
    Some(refusal_result(
        json!({"ok": false, "reason": "outputMismatch", "error": text, "errors": errors, "result": result,
            "durationMs": outcome.duration_ms}),
        text,
    ))
}

fn refusal_result(body: Value, text: String) -> CallToolResult {
    let mut result = CallToolResult::structured_error(body);
    // The model reads the first text block: make it the sentence that says what to fix.
    result.content.insert(0, ContentBlock::text(text));
    result
}

#[cfg(test)]
mod tests {
    use dynamic_mcp_proto::v1::ToolExample;

    use super::*;

    fn tool(input: Option<Value>, output: Option<Value>, flat: bool) -> ToolRecord {
        ToolRecord {
            name: "t.typed".into(),
            description: "Typed".into(),
            input_schema_json: input.map(|v| v.to_string()),
            output_schema_json: output.map(|v| v.to_string()),
            arguments: if flat { ArgumentsMode::Flat } else { ArgumentsMode::Args }.into(),
            ..Default::default()
        }
    }

    fn args(value: Value) -> Option<JsonObject> {
        Some(object(value))
    }

    #[test]
    fn the_input_schema_is_the_args_property_and_args_is_required_when_needed() {
        let schema = json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]});
        let listed = definition(&tool(Some(schema.clone()), None, false));
        assert_eq!(listed.input_schema["properties"]["args"], schema);
        assert_eq!(listed.input_schema["required"], json!(["args"]));
        assert_eq!(listed.input_schema["additionalProperties"], false);
        let optional = definition(&tool(Some(json!({"type": "object"})), None, false));
        assert!(optional.input_schema.get("required").is_none());
        let untyped = definition(&tool(None, None, false));
        assert_eq!(untyped.input_schema["properties"]["args"]["type"], "object");
    }

    #[test]
    fn local_refs_follow_the_schema_and_draft_07_stays_draft_07() {
        let schema = json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
            "definitions": {"n": {"type": "integer"}}, "properties": {"n": {"$ref": "#/definitions/n"}}});
        let listed = definition(&tool(Some(schema), None, false));
        assert_eq!(listed.input_schema["$schema"], Dialect::Draft07.uri());
        assert_eq!(
            listed.input_schema["properties"]["args"]["properties"]["n"]["$ref"],
            "#/properties/args/definitions/n"
        );
        let whole = Value::Object((*listed.input_schema).clone());
        let compiled = ToolSchema::compile("listed", &whole).unwrap();
        assert!(!compiled.accepts(&json!({"args": {"n": "x"}})));
        assert!(compiled.accepts(&json!({"args": {"n": 1}})));
    }

    #[test]
    fn flat_schemas_are_listed_as_written() {
        let schema = json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
            "$defs": {"a": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/a"}},
            "if": {"required": ["a"]}, "then": {"required": ["a"]}, "additionalProperties": false});
        let listed = definition(&tool(Some(schema.clone()), None, true));
        assert_eq!(Value::Object((*listed.input_schema).clone()), schema);
    }

    #[test]
    fn the_output_schema_describes_the_envelope_with_a_typed_result() {
        let listed = definition(&tool(
            None,
            Some(json!({"type": "object", "required": ["upper"]})),
            false,
        ));
        let output = listed.output_schema.unwrap();
        assert_eq!(output["properties"]["result"]["required"], json!(["upper"]));
        assert_eq!(output["required"], json!(["ok", "result", "durationMs"]));
        let envelope = ToolSchema::compile("o", &Value::Object((*output).clone())).unwrap();
        assert!(envelope.accepts(&json!({"ok": true, "result": {"upper": "A"}, "durationMs": 3})));
        assert!(!envelope.accepts(&json!({"ok": true, "result": {}, "durationMs": 3})));
    }

    #[test]
    fn examples_and_hints_reach_the_listing() {
        let mut typed = tool(Some(json!({"type": "object"})), None, false);
        typed.examples = vec![ToolExample {
            args_json: r#"{"text":"a"}"#.into(),
            expect_json: Some(r#"{"upper":"A"}"#.into()),
        }];
        typed.annotations = Some(dynamic_mcp_proto::v1::ToolAnnotations {
            read_only_hint: Some(true),
            ..Default::default()
        });
        let listed = definition(&typed);
        assert_eq!(
            listed.input_schema["properties"]["args"]["examples"],
            json!([{"text": "a"}])
        );
        let description = listed.description.unwrap();
        assert!(
            description.ends_with("Examples:\n- {\"args\":{\"text\":\"a\"}} → {\"upper\":\"A\"}"),
            "{description}"
        );
        assert_eq!(listed.annotations.unwrap().read_only_hint, Some(true));
    }

    #[test]
    fn bad_arguments_name_every_pointer_and_what_was_expected() {
        let schema = json!({"type": "object", "properties": {"text": {"type": "string"}, "n": {"maximum": 2}},
            "required": ["text"]});
        let contract = Contract::of(&tool(Some(schema), None, false)).unwrap();
        let Err(Refusal::Result(result)) = call_args("t", &contract, args(json!({"args": {"n": 5}}))) else {
            panic!("the call should be refused with a result");
        };
        let body = result.structured_content.unwrap();
        assert_eq!(body["reason"], "invalidArgs");
        let pointers: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["pointer"].as_str().unwrap())
            .collect();
        assert_eq!(pointers.len(), 2);
        assert!(
            pointers.contains(&"/args") && pointers.contains(&"/args/n"),
            "{pointers:?}"
        );
        let text = &result.content[0].as_text().unwrap().text;
        assert!(text.contains("- /args/n: 5 is greater than the maximum of 2"), "{text}");
        assert_eq!(
            call_args("t", &contract, args(json!({"args": {"text": "x"}}))).unwrap(),
            json!({"text": "x"})
        );
    }

    #[test]
    fn flat_calls_check_the_whole_arguments() {
        let schema = json!({"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]});
        let contract = Contract::of(&tool(Some(schema), None, true)).unwrap();
        assert_eq!(
            call_args("t", &contract, args(json!({"x": 1}))).unwrap(),
            json!({"x": 1})
        );
        let Err(Refusal::Result(result)) = call_args("t", &contract, args(json!({"x": "1"}))) else {
            panic!("refused");
        };
        assert_eq!(result.structured_content.unwrap()["errors"][0]["pointer"], "/x");
    }

    #[test]
    fn the_seed_args_contract_still_holds_without_a_schema() {
        let contract = Contract::of(&tool(None, None, false)).unwrap();
        assert_eq!(call_args("t", &contract, None).unwrap(), json!({}));
        let Err(Refusal::Error(err)) = call_args("t", &contract, args(json!({"text": "hi"}))) else {
            panic!("refused");
        };
        assert_eq!(
            err.to_string(),
            "Tool 't' takes its input as {\"args\": {...}}; move `text` inside `args`"
        );
    }

    #[test]
    fn a_result_that_breaks_the_output_schema_is_reported() {
        let contract = Contract::of(&tool(
            None,
            Some(json!({"type": "object", "required": ["upper"]})),
            false,
        ))
        .unwrap();
        let outcome = |result: &str| RunOutcome {
            status: RunStatus::Ok.into(),
            result_json: result.into(),
            ..Default::default()
        };
        assert!(check_result("t", &contract, &outcome(r#"{"upper":"A"}"#)).is_none());
        let mismatch = check_result("t", &contract, &outcome(r#"{"lower":"a"}"#)).unwrap();
        assert_eq!(mismatch.is_error, Some(true));
        let body = mismatch.structured_content.unwrap();
        assert_eq!(
            (body["reason"].as_str(), body["errors"][0]["pointer"].as_str()),
            (Some("outputMismatch"), Some("/result"))
        );
    }

    #[test]
    fn a_content_result_of_a_tool_with_an_output_schema_is_refused() {
        let typed = Contract::of(&tool(None, Some(json!({"type": "object"})), false)).unwrap();
        let content = RunOutcome {
            status: RunStatus::Ok.into(),
            content: Some(dynamic_mcp_proto::v1::ContentResult::default()),
            ..Default::default()
        };
        let refused = check_result("t", &typed, &content).unwrap();
        assert_eq!(refused.is_error, Some(true));
        let text = &refused.content[0].as_text().unwrap().text;
        assert!(
            text.contains("declares an outputSchema, so it must return JSON"),
            "{text}"
        );
        let untyped = Contract::of(&tool(None, None, false)).unwrap();
        assert!(
            check_result("t", &untyped, &content).is_none(),
            "without an outputSchema content is fine"
        );
    }
}
