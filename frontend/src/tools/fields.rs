//! Arguments that several built-ins take, each defined (and described) once.

use dynamic_mcp_common::limits::IDEMPOTENCY_KEY_CHARS;
use rmcp::model::JsonObject;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::input_schema::input_schema;

/// A unique key (e.g. a UUID) for this write. If the answer gets lost, send
/// the same call with the same key again: a write that did happen returns its
/// first answer instead of failing or happening twice.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct IdempotencyKey(
    #[schemars(length(min = IDEMPOTENCY_KEY_CHARS.min, max = IDEMPOTENCY_KEY_CHARS.max))] pub String,
);

/// Only apply the change if the tool is still at this revision (from an
/// earlier view); protects against overwriting someone else's change.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct ExpectedRevision(#[schemars(range(min = 1))] pub u64);

/// The field the admin tools list for the admin token. The call pipeline
/// checks and removes it before a tool parses its arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AdminTokenArgument {
    /// The admin token, when the server requires one (MCP_ADMIN_TOKEN) and the
    /// client cannot send it in the X-MCP-Admin-Token HTTP header (which keeps
    /// it out of the conversation).
    #[serde(rename = "adminToken")]
    _admin_token: Option<String>,
}

/// Adds the `adminToken` property to an admin tool's input schema.
pub fn with_admin_token(schema: &mut JsonObject) {
    let argument = input_schema::<AdminTokenArgument>();
    if let (Some(Value::Object(token)), Some(Value::Object(properties))) =
        (argument.get("properties"), schema.get_mut("properties"))
    {
        properties.extend(token.clone());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_admin_token_is_an_optional_described_string() {
        let mut schema = JsonObject::new();
        schema.insert("properties".into(), json!({}));
        with_admin_token(&mut schema);
        let field = &schema["properties"][crate::access::ADMIN_TOKEN_ARGUMENT];
        assert_eq!(field["type"], "string");
        assert!(
            field["description"]
                .as_str()
                .is_some_and(|d| d.contains("X-MCP-Admin-Token"))
        );
    }
}
