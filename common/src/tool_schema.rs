//! JSON Schemas that dynamic tools declare (`inputSchema`, `outputSchema`):
//! compiled once with the `jsonschema` crate, in the dialect the schema names
//! (2020-12 unless it declares draft-07), within a size cap, and without ever
//! fetching a remote `$ref`. The registry compiles a schema to refuse a bad
//! one; the frontend compiles it to check arguments and results.

use std::fmt;

use jsonschema::{Draft, Retrieve, Uri, Validator};
use serde_json::Value;

use crate::limits::MAX_SCHEMA_BYTES;

const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";
const DRAFT_07: &str = "http://json-schema.org/draft-07/schema#";
/// Mismatches listed for one value; the rest are counted.
pub const MAX_MISMATCHES: usize = 20;
const MAX_MESSAGE_CHARS: usize = 300;

/// The JSON Schema dialects a tool may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Draft202012,
    Draft07,
}

impl Dialect {
    /// The `$schema` URI of this dialect.
    pub fn uri(self) -> &'static str {
        match self {
            Self::Draft202012 => DRAFT_2020_12,
            Self::Draft07 => DRAFT_07,
        }
    }

    fn draft(self) -> Draft {
        match self {
            Self::Draft202012 => Draft::Draft202012,
            Self::Draft07 => Draft::Draft7,
        }
    }
}

/// Why a schema was refused: the field, the JSON pointer inside the schema
/// where it failed (empty for the whole schema), and the compiler's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SchemaError {
    pub field: String,
    pub pointer: String,
    pub reason: String,
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() {
            String::new()
        } else {
            format!(" at {}", self.pointer)
        };
        write!(f, "{} is not a usable JSON Schema{at}: {}", self.field, self.reason)
    }
}

/// One way a value fails a schema: where in the value, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// A JSON pointer into the value; empty for the value itself.
    pub pointer: String,
    pub message: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() {
            "(root)"
        } else {
            &self.pointer
        };
        write!(f, "{at}: {}", self.message)
    }
}

/// A compiled schema, ready to check values.
pub struct ToolSchema {
    validator: Validator,
    dialect: Dialect,
}

impl fmt::Debug for ToolSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolSchema")
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

impl ToolSchema {
    /// Compiles `schema` (the value of the tool field `field`, for messages).
    pub fn compile(field: &str, schema: &Value) -> Result<Self, SchemaError> {
        let error = |pointer: &str, reason: String| SchemaError {
            field: field.to_owned(),
            pointer: pointer.to_owned(),
            reason,
        };
        let size = serde_json::to_string(schema).map_or(usize::MAX, |text| text.len());
        if size > MAX_SCHEMA_BYTES {
            return Err(error(
                "",
                format!("it is {size} bytes of JSON; at most {MAX_SCHEMA_BYTES} are accepted"),
            ));
        }
        if !schema.is_object() {
            return Err(error("", "a tool's schema must be a JSON object".into()));
        }
        let dialect = dialect_of(schema).map_err(|reason| error("/$schema", reason))?;
        let validator = jsonschema::options()
            .with_draft(dialect.draft())
            .with_retriever(NoRemoteRefs)
            .build(schema)
            .map_err(|e| error(e.instance_path().as_str(), clip(&e.to_string())))?;
        Ok(Self { validator, dialect })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn accepts(&self, value: &Value) -> bool {
        self.validator.is_valid(value)
    }

    /// Every way `value` fails this schema (at most [`MAX_MISMATCHES`]) and
    /// how many there were in all.
    pub fn mismatches(&self, value: &Value) -> (Vec<Mismatch>, usize) {
        let mut listed = Vec::new();
        let mut total = 0;
        for error in self.validator.iter_errors(value) {
            total += 1;
            if listed.len() < MAX_MISMATCHES {
                listed.push(Mismatch {
                    pointer: error.instance_path().as_str().to_owned(),
                    message: clip(&error.to_string()),
                });
            }
        }
        (listed, total)
    }
}

/// The dialect `$schema` names: none means 2020-12.
pub fn dialect_of(schema: &Value) -> Result<Dialect, String> {
    let Some(declared) = schema.get("$schema") else {
        return Ok(Dialect::Draft202012);
    };
    let Some(uri) = declared.as_str() else {
        return Err("$schema must be a string".into());
    };
    let normalized = uri.trim_end_matches('#').replacen("https://", "http://", 1);
    match normalized.as_str() {
        "http://json-schema.org/draft/2020-12/schema" => Ok(Dialect::Draft202012),
        "http://json-schema.org/draft-07/schema" => Ok(Dialect::Draft07),
        _ => Err(format!(
            "$schema '{}' is not supported: leave it out for 2020-12 (or write {DRAFT_2020_12}), or declare \
             draft-07 ({DRAFT_07})",
            clip(uri)
        )),
    }
}

/// Refuses every `$ref` that points outside the schema: nothing is fetched.
struct NoRemoteRefs;

impl Retrieve for NoRemoteRefs {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!(
            "'{}' is a remote $ref, and remote references are never fetched: put the definition under $defs \
             (or definitions in draft-07) and refer to it as #/$defs/...",
            uri.as_str()
        )
        .into())
    }
}

/// Rewrites the local `$ref`s of `schema` (`#` and `#/...`) as if it were
/// moved to `pointer` inside another document, so they still resolve there.
pub fn rebase_refs(schema: &mut Value, pointer: &str) {
    match schema {
        Value::Object(object) => {
            for (key, value) in object.iter_mut() {
                match (key.as_str(), value) {
                    ("$ref" | "$dynamicRef", Value::String(target)) if target == "#" || target.starts_with("#/") => {
                        *target = format!("#{pointer}{}", &target[1..]);
                    }
                    // Values, not schemas: a "$ref" key in them is data.
                    ("const" | "enum" | "default" | "examples", _) => {}
                    (_, value) => rebase_refs(value, pointer),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rebase_refs(item, pointer)),
        _ => {}
    }
}

/// Deep equality of JSON values, with numbers compared by value (`1 == 1.0`).
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| x == y),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(key, x)| y.get(key).is_some_and(|y| json_equal(x, y)))
        }
        _ => a == b,
    }
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn refused(schema: Value) -> SchemaError {
        ToolSchema::compile("inputSchema", &schema).expect_err("the schema should be refused")
    }

    #[test]
    fn a_bad_keyword_is_refused_with_its_pointer() {
        let err = refused(json!({"type": "object", "properties": {"a": {"type": "strin"}}}));
        assert_eq!(err.pointer, "/properties/a/type");
        assert!(
            err.to_string()
                .starts_with("inputSchema is not a usable JSON Schema at /properties/a/type: ")
        );
        let err = refused(json!({"properties": {"a": {"minLength": -1}}}));
        assert_eq!(err.pointer, "/properties/a/minLength");
        let err = refused(json!({"properties": {"a": {"pattern": "(unclosed"}}}));
        assert_eq!(err.pointer, "/properties/a/pattern");
        assert!(err.reason.contains("regex"), "{err}");
    }

    #[test]
    fn remote_refs_are_never_fetched() {
        let err = refused(json!({"$ref": "https://example.com/schema.json"}));
        assert!(err.reason.contains("never fetched"), "{err}");
        let err = refused(json!({"properties": {"a": {"$ref": "#/$defs/missing"}}}));
        assert!(err.reason.contains("/$defs/missing"), "{err}");
        let local = json!({"$defs": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/n"}}});
        let schema = ToolSchema::compile("inputSchema", &local).unwrap();
        assert!(!schema.accepts(&json!({"a": "x"})));
        assert!(schema.accepts(&json!({"a": 1})));
    }

    #[test]
    fn dialects_are_2020_12_by_default_or_declared_draft_07() {
        let plain = ToolSchema::compile("s", &json!({"type": "object"})).unwrap();
        assert_eq!(plain.dialect(), Dialect::Draft202012);
        let draft7 = json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
            "definitions": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/definitions/n"}}});
        let draft7 = ToolSchema::compile("s", &draft7).unwrap();
        assert_eq!(draft7.dialect(), Dialect::Draft07);
        assert!(!draft7.accepts(&json!({"a": "x"})));
        let err = refused(json!({"$schema": "https://example.com/my-dialect"}));
        assert_eq!(err.pointer, "/$schema");
        assert!(err.reason.contains("not supported"), "{err}");
        let err = refused(json!({"$schema": "http://json-schema.org/draft-04/schema#"}));
        assert!(err.reason.contains("draft-07"), "{err}");
    }

    #[test]
    fn size_and_shape_are_capped() {
        let big = json!({"description": "x".repeat(MAX_SCHEMA_BYTES)});
        assert!(refused(big).reason.contains(&format!("at most {MAX_SCHEMA_BYTES}")));
        assert!(refused(json!(true)).reason.contains("JSON object"));
    }

    #[test]
    fn mismatches_name_the_pointer_and_what_was_expected() {
        let schema = json!({"type": "object", "properties": {"text": {"type": "string"}, "n": {"minimum": 3}},
            "required": ["text"]});
        let schema = ToolSchema::compile("inputSchema", &schema).unwrap();
        let (found, total) = schema.mismatches(&json!({"n": 1}));
        assert_eq!(total, 2);
        let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert!(
            shown
                .iter()
                .any(|m| m.starts_with("(root): ") && m.contains("\"text\" is a required property")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|m| m.starts_with("/n: ") && m.contains("minimum of 3")),
            "{shown:?}"
        );
        assert!(schema.mismatches(&json!({"text": "x"})).0.is_empty());
    }

    #[test]
    fn rebased_refs_resolve_inside_the_host_document() {
        let mut inner = json!({"$defs": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/n"},
            "b": {"const": {"$ref": "#/data"}}}});
        rebase_refs(&mut inner, "/properties/args");
        assert_eq!(inner["properties"]["a"]["$ref"], "#/properties/args/$defs/n");
        assert_eq!(inner["properties"]["b"]["const"]["$ref"], "#/data");
        let host = json!({"type": "object", "properties": {"args": inner}});
        let host = ToolSchema::compile("s", &host).unwrap();
        assert!(!host.accepts(&json!({"args": {"a": "x"}})));
        assert!(host.accepts(&json!({"args": {"a": 2}})));
    }

    #[test]
    fn numbers_are_equal_by_value() {
        assert!(json_equal(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
        assert!(!json_equal(&json!({"a": 1}), &json!({"a": 1, "b": null})));
        assert!(!json_equal(&json!("1"), &json!(1)));
    }
}
