//! The stored shape of a dynamic tool, and every conversion between it and
//! the gRPC messages, so the rest of the crate speaks only one of them.

use dynamic_mcp_common::timestamp::rfc3339_millis;
use dynamic_mcp_proto::v1 as pb;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use time::OffsetDateTime;

/// One dynamic tool as the store keeps it (camelCase on disk, as in compat.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolRecord {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub description: String,
    pub image: String,
    pub timeout_ms: u32,
    pub dependencies: Vec<Dependency>,
    pub code: ToolCode,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
    pub revision: u64,
    /// Fields added after the seed; all optional, so older stores read as is.
    #[serde(flatten)]
    pub extensions: ToolExtensions,
}

/// The optional fields of a tool beyond the seed's: its typed contract
/// (schemas, how arguments are passed, self-tests, hints) and run settings
/// (isolation, network, secrets). A tool without any behaves as in the seed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolExtensions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<Example>,
    #[serde(default, skip_serializing_if = "ArgumentsMode::is_default")]
    pub arguments: ArgumentsMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
}

/// MCP tool annotations, as the tool's author set them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Annotations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_hint: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destructive_hint: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent_hint: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_world_hint: Option<bool>,
}

/// A self-test: the `args` of one run and, if set, the result it must return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    pub args: Value,
    /// `Some(Value::Null)` expects a null result; `None` accepts any success.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub expect: Option<Value>,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgumentsMode {
    /// `{"args": {...}}`, the seed's contract.
    #[default]
    Args,
    /// The call's arguments are the code's `args`.
    Flat,
}

impl ArgumentsMode {
    fn is_default(&self) -> bool {
        *self == Self::Args
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    ContainerPerCall,
    ContainerPerTool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPolicy {
    pub allow: Vec<String>,
}

/// A tool's code, or only its size where a backend left the code out
/// (listings and change events never show code, so they need not load it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolCode {
    Included(String),
    LeftOut { size_bytes: u64 },
}

impl ToolCode {
    pub fn size_bytes(&self) -> u64 {
        match self {
            Self::Included(code) => code.len() as u64,
            Self::LeftOut { size_bytes } => *size_bytes,
        }
    }
}

/// Stored as the plain code string; a record without its code is never stored.
impl Serialize for ToolCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Included(code) => serializer.serialize_str(code),
            Self::LeftOut { .. } => Err(serde::ser::Error::custom(
                "a tool record without its code cannot be stored",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for ToolCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::Included)
    }
}

/// One npm package a tool needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub name: String,
    pub version: String,
}

impl ToolRecord {
    /// The size callers see even when the code itself is left out.
    pub fn code_size_bytes(&self) -> u64 {
        self.code.size_bytes()
    }

    /// The gRPC view; `code` stays empty unless asked for, `code_size_bytes` is always set.
    pub fn to_proto(&self, include_code: bool) -> pb::ToolRecord {
        pb::ToolRecord {
            name: self.name.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            image: self.image.clone(),
            timeout_ms: self.timeout_ms,
            dependencies: self.dependencies.iter().map(pb::Dependency::from).collect(),
            code: match &self.code {
                ToolCode::Included(code) if include_code => code.clone(),
                _ => String::new(),
            },
            enabled: self.enabled,
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
            revision: self.revision,
            code_size_bytes: self.code_size_bytes(),
            input_schema_json: self.extensions.input_schema.as_ref().map(Value::to_string),
            output_schema_json: self.extensions.output_schema.as_ref().map(Value::to_string),
            annotations: self.extensions.annotations.as_ref().map(pb::ToolAnnotations::from),
            examples: self.extensions.examples.iter().map(pb::ToolExample::from).collect(),
            arguments: pb::ArgumentsMode::from(self.extensions.arguments).into(),
            isolation: self
                .extensions
                .isolation
                .map_or(pb::Isolation::Unspecified, pb::Isolation::from)
                .into(),
            network: self
                .extensions
                .network
                .as_ref()
                .map(|n| pb::NetworkPolicy { allow: n.allow.clone() }),
            secrets: self.extensions.secrets.clone(),
        }
    }

    /// The same record without its code (what listings and events carry).
    pub fn without_code(&self) -> Self {
        Self {
            code: ToolCode::LeftOut {
                size_bytes: self.code_size_bytes(),
            },
            ..self.clone()
        }
    }
}

impl From<&Annotations> for pb::ToolAnnotations {
    fn from(a: &Annotations) -> Self {
        Self {
            title: a.title.clone(),
            read_only_hint: a.read_only_hint,
            destructive_hint: a.destructive_hint,
            idempotent_hint: a.idempotent_hint,
            open_world_hint: a.open_world_hint,
        }
    }
}

impl From<pb::ToolAnnotations> for Annotations {
    fn from(a: pb::ToolAnnotations) -> Self {
        Self {
            title: a.title,
            read_only_hint: a.read_only_hint,
            destructive_hint: a.destructive_hint,
            idempotent_hint: a.idempotent_hint,
            open_world_hint: a.open_world_hint,
        }
    }
}

impl From<&Example> for pb::ToolExample {
    fn from(e: &Example) -> Self {
        Self {
            args_json: e.args.to_string(),
            expect_json: e.expect.as_ref().map(Value::to_string),
        }
    }
}

impl From<ArgumentsMode> for pb::ArgumentsMode {
    fn from(mode: ArgumentsMode) -> Self {
        match mode {
            ArgumentsMode::Args => Self::Args,
            ArgumentsMode::Flat => Self::Flat,
        }
    }
}

impl From<pb::ArgumentsMode> for ArgumentsMode {
    fn from(mode: pb::ArgumentsMode) -> Self {
        match mode {
            pb::ArgumentsMode::Flat => Self::Flat,
            pb::ArgumentsMode::Args | pb::ArgumentsMode::Unspecified => Self::Args,
        }
    }
}

impl From<Isolation> for pb::Isolation {
    fn from(isolation: Isolation) -> Self {
        match isolation {
            Isolation::ContainerPerCall => Self::ContainerPerCall,
            Isolation::ContainerPerTool => Self::ContainerPerTool,
        }
    }
}

/// `None` for "the server default".
pub fn isolation_from(isolation: pb::Isolation) -> Option<Isolation> {
    match isolation {
        pb::Isolation::Unspecified => None,
        pb::Isolation::ContainerPerCall => Some(Isolation::ContainerPerCall),
        pb::Isolation::ContainerPerTool => Some(Isolation::ContainerPerTool),
    }
}

/// Server-set timestamps: RFC 3339, UTC, millisecond precision.
pub fn timestamp(at: OffsetDateTime) -> String {
    rfc3339_millis(at)
}

/// The current time as a record timestamp.
pub fn now() -> String {
    timestamp(OffsetDateTime::now_utc())
}

impl From<pb::Dependency> for Dependency {
    fn from(dep: pb::Dependency) -> Self {
        Self {
            name: dep.name,
            version: dep.version,
        }
    }
}

impl From<&Dependency> for pb::Dependency {
    fn from(dep: &Dependency) -> Self {
        Self {
            name: dep.name.clone(),
            version: dep.version.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_carries_the_code_size_even_without_code() {
        let record = ToolRecord {
            name: "text.upper".into(),
            title: None,
            description: "d".into(),
            image: "node:22".into(),
            timeout_ms: 30_000,
            dependencies: vec![],
            code: ToolCode::Included("return 'é';".into()),
            enabled: true,
            created_at: now(),
            updated_at: now(),
            revision: 1,
            extensions: ToolExtensions::default(),
        };
        let view = record.to_proto(false);
        assert_eq!(view.code, "");
        assert_eq!(view.code_size_bytes, 12);
        assert_eq!(record.to_proto(true).code, "return 'é';");
        let left_out = ToolRecord {
            code: ToolCode::LeftOut { size_bytes: 12 },
            ..record
        };
        assert_eq!(left_out.to_proto(true).code, "");
        assert_eq!(left_out.to_proto(true).code_size_bytes, 12);
    }

    #[test]
    fn code_is_stored_as_a_plain_string() {
        let json = serde_json::to_value(ToolCode::Included("return 1;".into())).unwrap();
        assert_eq!(json, "return 1;");
        assert_eq!(
            serde_json::from_value::<ToolCode>(json).unwrap(),
            ToolCode::Included("return 1;".into())
        );
        assert!(serde_json::to_value(ToolCode::LeftOut { size_bytes: 3 }).is_err());
    }

    #[test]
    fn extensions_are_left_out_of_the_file_when_unset_and_round_trip_when_set() {
        assert_eq!(
            serde_json::to_value(ToolExtensions::default()).unwrap(),
            serde_json::json!({})
        );
        let set = serde_json::json!({
            "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true},
            "examples": [{"args": {}, "expect": null}, {"args": {"a": 1}}],
            "arguments": "flat", "isolation": "container-per-tool",
            "network": {"allow": ["api.example.com:443"]}, "secrets": ["API_KEY"]
        });
        let extensions: ToolExtensions = serde_json::from_value(set.clone()).unwrap();
        assert_eq!(extensions.examples[0].expect, Some(Value::Null));
        assert_eq!(extensions.examples[1].expect, None);
        assert_eq!(serde_json::to_value(&extensions).unwrap(), set);
    }
}
