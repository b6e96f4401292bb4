//! The limits an operator sets on the executor (MCP_SANDBOX_MAX_TIMEOUT_MS,
//! MCP_SANDBOX_MAX_DEPENDENCIES), written into the built-in schemas that
//! take `timeoutMs` or `dependencies`. The derived schemas carry common's
//! ceilings; once the executor has described itself, its own values replace
//! them. Until then the schemas say that the server may allow less.

use dynamic_mcp_common::limits::{MAX_DEPENDENCIES, MAX_TIMEOUT_MS_CEILING, MIN_TIMEOUT_MS};
use dynamic_mcp_proto::v1::SandboxDescription;
use rmcp::model::JsonObject;
use serde_json::Value;

/// The limits the built-in schemas state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ToolLimits {
    pub min_timeout_ms: u32,
    pub max_timeout_ms: u32,
    pub max_dependencies: u32,
    /// Whether an executor said so (else these are common's ceilings).
    pub live: bool,
}

impl ToolLimits {
    /// What common/ allows at most, before any executor has answered.
    pub const CEILINGS: Self = Self {
        min_timeout_ms: MIN_TIMEOUT_MS,
        max_timeout_ms: MAX_TIMEOUT_MS_CEILING,
        max_dependencies: MAX_DEPENDENCIES as u32,
        live: false,
    };

    /// What `executor` enforces.
    pub fn of(executor: &SandboxDescription) -> Self {
        Self {
            min_timeout_ms: executor.min_timeout_ms,
            max_timeout_ms: executor.max_timeout_ms,
            max_dependencies: executor.max_dependencies,
            live: true,
        }
    }

    /// Writes these limits into every `timeoutMs` and `dependencies` field of
    /// `schema`, at any depth.
    pub fn apply(&self, schema: &mut JsonObject) {
        let Some(Value::Object(properties)) = schema.get_mut("properties") else {
            return;
        };
        for (name, field) in properties.iter_mut() {
            let Value::Object(field) = field else { continue };
            match name.as_str() {
                "timeoutMs" => self.timeout(field),
                "dependencies" => self.dependencies(field),
                _ => {}
            }
            self.apply(field);
            if let Some(Value::Object(items)) = field.get_mut("items") {
                self.apply(items);
            }
        }
    }

    fn timeout(&self, field: &mut JsonObject) {
        field.insert("minimum".into(), self.min_timeout_ms.into());
        field.insert("maximum".into(), self.max_timeout_ms.into());
        let (min, max) = (self.min_timeout_ms, self.max_timeout_ms);
        let range = if self.live {
            format!("{min}-{max} ms on this server.")
        } else {
            format!("{min}-{max} ms, and at most the server's maximum (the dynamic.tool.author prompt states it).")
        };
        append(field, &range);
    }

    fn dependencies(&self, field: &mut JsonObject) {
        let max = self.max_dependencies;
        field.insert("maxItems".into(), max.into());
        let count = if self.live {
            format!("At most {max} packages on this server.")
        } else {
            format!("At most {max} packages, or the server's lower limit.")
        };
        append(field, &count);
    }
}

fn append(field: &mut JsonObject, sentence: &str) {
    let described = match field.get("description").and_then(Value::as_str) {
        Some(description) => format!("{description} {sentence}"),
        None => sentence.to_owned(),
    };
    field.insert("description".into(), described.into());
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> JsonObject {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn live_limits_replace_the_ceilings_at_any_depth() {
        let mut schema = object(json!({"type": "object", "properties": {
            "timeoutMs": {"type": "integer", "maximum": 120000, "description": "Time limit."},
            "tool": {"type": "object", "properties": {
                "dependencies": {"type": "array", "maxItems": 64, "description": "npm packages."}}}
        }}));
        let executor = SandboxDescription {
            min_timeout_ms: 1000,
            max_timeout_ms: 60000,
            max_dependencies: 8,
            ..Default::default()
        };
        ToolLimits::of(&executor).apply(&mut schema);
        assert_eq!(
            Value::Object(schema),
            json!({"type": "object", "properties": {
                "timeoutMs": {"type": "integer", "minimum": 1000, "maximum": 60000,
                    "description": "Time limit. 1000-60000 ms on this server."},
                "tool": {"type": "object", "properties": {
                    "dependencies": {"type": "array", "maxItems": 8,
                        "description": "npm packages. At most 8 packages on this server."}}}
            }})
        );
    }

    #[test]
    fn before_the_executor_answers_the_ceilings_say_so() {
        let mut schema = object(json!({"properties": {"timeoutMs": {"type": "integer"}}}));
        ToolLimits::CEILINGS.apply(&mut schema);
        let description = schema["properties"]["timeoutMs"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(
            description.contains("1000-120000 ms, and at most the server's maximum"),
            "{description}"
        );
    }
}
