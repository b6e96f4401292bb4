//! The built-in tools' input schemas, derived from the types their arguments
//! are parsed into (schemars, JSON Schema 2020-12): what a client reads in
//! tools/list and what the server accepts come from one definition.
//!
//! Doc comments and `#[schemars(...)]` attributes on those types give the
//! descriptions and the limits (read from `dynamic_mcp_common::limits`). The
//! listed shape differs from schemars' defaults in three ways:
//! - every subschema is inlined: models and several clients do not follow `$ref`;
//! - an optional field is listed without `null` (a null means "left out"),
//!   unless its null means something of its own ([`null_removes`]);
//! - Rust's integer widths (`format: uint32`) are left out: they are not
//!   JSON Schema formats, and strict validators refuse unknown ones.

use rmcp::model::JsonObject;
use schemars::generate::SchemaSettings;
use schemars::transform::{Transform, transform_subschemas};
use schemars::{JsonSchema, Schema};
use serde_json::Value;

/// Marks, while a schema is generated, a field whose null keeps its type.
const NULL_KEPT: &str = "x-dynamic-mcp-null-kept";

const INTEGER_FORMATS: &[&str] = &[
    "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "uint128", "int128",
];

/// The input schema of a built-in whose arguments are parsed into `T`:
/// an object schema without `$schema` (MCP's default dialect is 2020-12),
/// title or description (the tool has its own).
pub fn input_schema<T: JsonSchema>() -> JsonObject {
    let mut settings = SchemaSettings::draft2020_12();
    settings.meta_schema = None;
    settings.inline_subschemas = true;
    settings.transforms.push(Box::new(ListedShape));
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut object = match schema.to_value() {
        Value::Object(object) => object,
        _ => JsonObject::new(),
    };
    object.remove("title");
    object.remove("description");
    // Some clients expect `properties`, also when a tool takes nothing.
    object
        .entry("properties")
        .or_insert_with(|| Value::Object(JsonObject::new()));
    object
}

/// For `#[schemars(transform = null_removes)]` on a patch field whose null
/// removes the value: `null` stays in its listed type (and `enum`).
pub fn null_removes(schema: &mut Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    match object.get_mut("type") {
        Some(Value::Array(types)) if !types.contains(&Value::from("null")) => types.push("null".into()),
        Some(Value::String(single)) if single != "null" => {
            let single = std::mem::take(single);
            object.insert("type".into(), Value::from(vec![single, "null".to_owned()]));
        }
        _ => {}
    }
    if let Some(Value::Array(values)) = object.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
    object.insert(NULL_KEPT.into(), Value::Bool(true));
}

/// The listed shape (see the module docs), applied to every subschema.
#[derive(Debug, Clone)]
struct ListedShape;

impl Transform for ListedShape {
    fn transform(&mut self, schema: &mut Schema) {
        transform_subschemas(self, schema);
        let Some(object) = schema.as_object_mut() else {
            return;
        };
        if object
            .get("format")
            .and_then(Value::as_str)
            .is_some_and(|format| INTEGER_FORMATS.contains(&format))
        {
            object.remove("format");
        }
        if let Some(Value::String(description)) = object.get_mut("description") {
            *description = unwrapped(description);
        }
        if object.remove(NULL_KEPT).is_some() {
            return;
        }
        if let Some(Value::Array(types)) = object.get_mut("type") {
            types.retain(|t| t != "null");
            if let [single] = types.as_slice() {
                let single = single.clone();
                object.insert("type".into(), single);
            }
        }
        if let Some(Value::Array(values)) = object.get_mut("enum") {
            values.retain(|v| !v.is_null());
        }
    }
}

/// A doc comment's text as one line per paragraph: its line breaks are
/// where the source wrapped, not where the reader should.
fn unwrapped(text: &str) -> String {
    let paragraphs: Vec<String> = text
        .split("\n\n")
        .map(|p| p.lines().map(str::trim).collect::<Vec<_>>().join(" "))
        .collect();
    paragraphs.join("\n\n")
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Sample {
        /// A count,
        /// wrapped.
        #[schemars(range(min = 1, max = 9))]
        count: u32,
        /// Left out or set.
        label: Option<String>,
        /// null removes it.
        #[schemars(transform = null_removes)]
        note: Option<Option<String>>,
        /// Nested.
        inner: Option<Inner>,
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        /// A flag.
        flag: bool,
    }

    #[test]
    fn schemas_are_inlined_with_null_only_where_it_means_something() {
        let schema = Value::Object(input_schema::<Sample>());
        assert_eq!(
            schema,
            json!({
                "type": "object",
                "properties": {
                    "count": {"type": "integer", "minimum": 1, "maximum": 9, "description": "A count, wrapped."},
                    "label": {"type": "string", "description": "Left out or set."},
                    "note": {"type": ["string", "null"], "description": "null removes it."},
                    "inner": {"type": "object", "description": "Nested.", "additionalProperties": false,
                        "properties": {"flag": {"type": "boolean", "description": "A flag."}}, "required": ["flag"]}
                },
                "required": ["count"],
                "additionalProperties": false
            })
        );
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Nothing {}

    #[test]
    fn a_tool_without_arguments_lists_empty_properties() {
        assert_eq!(
            Value::Object(input_schema::<Nothing>()),
            json!({"type": "object", "properties": {}, "additionalProperties": false})
        );
    }
}
