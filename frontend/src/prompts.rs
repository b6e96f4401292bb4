//! The prompts this server offers: `dynamic.tool.author`, which teaches a
//! model to write a good dynamic tool for this very server, with its live
//! limits and allowed images (asked of the executor), and one complete example.

use dynamic_mcp_common::limits::{
    CODE_CHARS, DESCRIPTION_CHARS, MAX_EXAMPLES, MAX_NETWORK_ALLOW, MAX_SCHEMA_BYTES, NAME_PATTERN,
};
use dynamic_mcp_proto::v1::SandboxDescription;
use rmcp::ErrorData as McpError;
use rmcp::model::{GetPromptResult, Prompt, PromptArgument, PromptMessage, Role};

pub const AUTHOR: &str = "dynamic.tool.author";
const MAX_GOAL_CHARS: usize = 4000;

/// Every prompt, as prompts/list shows them.
pub fn definitions() -> Vec<Prompt> {
    let mut author = Prompt::new(
        AUTHOR,
        Some(
            "How to write a good dynamic tool for this server (code contract, limits, images, dependencies, \
             schemas, annotations, examples), with one complete example, aimed at your goal.",
        ),
        Some(vec![
            PromptArgument::new("goal")
                .with_title("Goal")
                .with_description("What the tool should do, in a sentence or two.")
                .with_required(true),
        ]),
    );
    author.title = Some("Write a dynamic tool".into());
    vec![author]
}

/// Renders `name` with its arguments.
pub fn render(
    name: &str,
    arguments: Option<&serde_json::Map<String, serde_json::Value>>,
    sandbox: &SandboxDescription,
) -> Result<GetPromptResult, McpError> {
    if name != AUTHOR {
        return Err(McpError::invalid_params(
            format!("no prompt '{name}'; this server has {AUTHOR}"),
            None,
        ));
    }
    let goal = arguments
        .and_then(|a| a.get("goal"))
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .ok_or_else(|| {
            McpError::invalid_params(
                format!("{AUTHOR} needs the argument `goal`: what the tool should do"),
                None,
            )
        })?;
    let goal: String = goal.chars().take(MAX_GOAL_CHARS).collect();
    let mut result = GetPromptResult::new(vec![PromptMessage::new_text(Role::User, author_text(&goal, sandbox))]);
    result.description = Some(format!("Write a dynamic tool for: {goal}"));
    Ok(result)
}

fn author_text(goal: &str, s: &SandboxDescription) -> String {
    let images = s
        .allowed_images
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let default_image = s.allowed_images.first().map_or("(none)", String::as_str);
    let blocked = if s.blocked_packages.is_empty() {
        "none".to_owned()
    } else {
        s.blocked_packages.join(", ")
    };
    format!(
        r#"Write a dynamic tool for this MCP server, then create it with `dynamic.tool.create`.

Goal: {goal}

## The code contract
- `code` is the body of `export async function run(args) {{ ... }}` ({code_min}-{code_max} characters). Read the input from `args`, `await` what you need, and `return` a JSON-serialisable value. `throw new Error("...")` for a failure the caller should see: the message reaches them.
- Each call runs in a fresh, hardened container: no network (unless the tool declares `network` and the operator allows it), a read-only file system except a small /tmp, {memory} of memory and {cpus} CPU. Nothing survives between calls.
- Callers pass `{{"args": {{...}}}}` by default; with `"arguments": "flat"` the call's arguments are `args` themselves.

## This server's limits
- timeoutMs: {min_timeout}-{max_timeout} ms per run (default {default_timeout} ms). A run over it is stopped.
- Output: at most {output} bytes of stdout, of stderr, and of the result each.
- Images (`image`): {images}; the default is `{default_image}`.
- name: {name_pattern}; description: {desc_min}-{desc_max} characters (say what the tool does and what `args` it takes; models read it).

## Dependencies
`dependencies: [{{"name": "lodash", "version": "^4.17.21"}}]`: at most {max_deps} npm packages with plain semver ranges (no URLs, git, file: or npm: aliases). They are installed once per set when the tool is created and cached; `import` them in the code. Blocked packages: {blocked}.

## Schemas
- `inputSchema`: a JSON Schema (2020-12 by default, or draft-07 when its `$schema` says so; at most {schema_bytes} bytes; no remote `$ref`) with `"type": "object"` at its root. Every call is checked against it before anything runs, and a mismatch names each failing field, so declare `required` fields and types.
- `outputSchema`: a JSON Schema of the value your code returns. A result that does not match is reported as an error. tools/list shows it as `result` inside `{{ok, result, durationMs}}`.

## Annotations
`annotations: {{readOnlyHint, destructiveHint, idempotentHint, openWorldHint, title}}`: tell clients whether the tool changes anything, can destroy data, is safe to retry, and reaches outside systems. Set them truthfully.

## Examples (self-tests)
`examples: [{{"args": {{...}}, "expect": ...}}]`, at most {max_examples}. Before the tool is stored (and before every update, rollback or restore that can change its behaviour) each example runs in the sandbox. It fails when its args break the inputSchema, the code throws or times out, the result breaks the outputSchema, or it does not deep-equal `expect` (leave `expect` out to accept any success). Any failure refuses the write, nothing is stored, and the answer lists each example's outcome: fix the code and try again. Examples are also shown to models in tools/list. Use `dynamic.tool.test` to try code without storing anything.

## Network
`network: {{"allow": ["api.example.com", "*.example.org:443"]}}` (at most {max_allow} entries) asks for egress to exactly those hosts; the operator's ceiling decides.

## After creating
Change it with `dynamic.tool.update` (pass `expectedRevision` from the last view). Every revision is kept: `dynamic.tool.history`, `dynamic.tool.get {{name, revision}}`, `dynamic.tool.rollback {{name, revision}}`, and `dynamic.tool.restore` after a delete. Send an `idempotencyKey` with a write you may retry.

## A complete example
```json
{{"tool": {{
  "name": "text.slugify",
  "description": "Turns a title into a URL slug: lower case, ASCII letters and digits joined by '-'. args: {{text: string, maxLength?: integer}}.",
  "code": "const {{ text, maxLength = 80 }} = args;\nconst slug = text.normalize('NFKD').replace(/[\\u0300-\\u036f]/g, '').toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');\nreturn {{ slug: slug.slice(0, maxLength) }};",
  "timeoutMs": 5000,
  "inputSchema": {{"type": "object", "properties": {{"text": {{"type": "string", "minLength": 1}}, "maxLength": {{"type": "integer", "minimum": 1}}}}, "required": ["text"], "additionalProperties": false}},
  "outputSchema": {{"type": "object", "properties": {{"slug": {{"type": "string"}}}}, "required": ["slug"]}},
  "annotations": {{"readOnlyHint": true, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false}},
  "examples": [
    {{"args": {{"text": "Héllo, World!"}}, "expect": {{"slug": "hello-world"}}}},
    {{"args": {{"text": "A long title", "maxLength": 6}}, "expect": {{"slug": "a-long"}}}}
  ]
}}}}
```
It is then called as `{{"args": {{"text": "Héllo, World!"}}}}` and answers `{{"ok": true, "result": {{"slug": "hello-world"}}, "durationMs": ...}}`.

Now write the tool for the goal above: choose a clear name, a description that says what `args` it takes, the schemas, truthful annotations and two or three examples that cover normal and edge cases."#,
        code_min = CODE_CHARS.min,
        code_max = CODE_CHARS.max,
        memory = s.memory_limit,
        cpus = s.cpu_limit,
        min_timeout = s.min_timeout_ms,
        max_timeout = s.max_timeout_ms,
        default_timeout = s.default_timeout_ms,
        output = s.max_output_bytes,
        name_pattern = NAME_PATTERN,
        desc_min = DESCRIPTION_CHARS.min,
        desc_max = DESCRIPTION_CHARS.max,
        max_deps = s.max_dependencies,
        schema_bytes = MAX_SCHEMA_BYTES,
        max_examples = MAX_EXAMPLES,
        max_allow = MAX_NETWORK_ALLOW,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> SandboxDescription {
        SandboxDescription {
            allowed_images: vec!["img:a".into(), "img:b".into()],
            min_timeout_ms: 1000,
            max_timeout_ms: 45_678,
            default_timeout_ms: 12_345,
            max_output_bytes: 99_999,
            max_dependencies: 7,
            blocked_packages: vec!["npm".into()],
            memory_limit: "256m".into(),
            cpu_limit: 0.5,
            executor_id: String::new(),
        }
    }

    #[test]
    fn the_prompt_carries_the_live_values_and_the_goal() {
        let goal = serde_json::json!({"goal": "convert currencies"});
        let result = render(AUTHOR, goal.as_object(), &sandbox()).unwrap();
        let text = &result.messages[0].content.as_text().unwrap().text;
        for needle in [
            "convert currencies",
            "1000-45678 ms",
            "default 12345 ms",
            "99999 bytes",
            "`img:a`, `img:b`",
            "at most 7 npm packages",
            "Blocked packages: npm",
            "256m",
            "\"examples\": [",
        ] {
            assert!(text.contains(needle), "{needle} missing");
        }
    }

    #[test]
    fn a_missing_goal_or_an_unknown_prompt_is_invalid_params() {
        let err = render(AUTHOR, None, &sandbox()).unwrap_err();
        assert_eq!(err.code, rmcp::model::ErrorCode::INVALID_PARAMS);
        assert!(render("other", None, &sandbox()).is_err());
        assert_eq!(definitions()[0].arguments.as_ref().unwrap()[0].required, Some(true));
    }
}
