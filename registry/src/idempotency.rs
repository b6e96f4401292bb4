//! Idempotency keys: a write retried with the key of an earlier one (after
//! an answer got lost) gets that write's answer again instead of being
//! applied twice; the same key on a different request is refused. A store
//! records the key in the same durable step as the write itself.

use prost::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::RegistryError;
use crate::quoting::quoted;
use crate::rules::Violation;

/// A key and the request it was sent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    /// Which operation on what, so a reused key is recognised as such.
    pub fingerprint: String,
}

impl IdempotencyKey {
    /// The key of request `request` of operation `operation`; `request` must
    /// not hold the key itself or the actor (a retry may come from a new session).
    pub fn new(key: String, operation: &str, request: &impl Message) -> Result<Self, RegistryError> {
        let bounds = dynamic_mcp_common::limits::IDEMPOTENCY_KEY_CHARS;
        if !bounds.contains(key.chars().count()) || key.chars().any(char::is_control) {
            return Err(Violation(format!(
                "idempotencyKey must be {}..{} printable characters, e.g. a UUID",
                bounds.min, bounds.max
            ))
            .into());
        }
        let mut hash = Sha256::new();
        hash.update(operation.as_bytes());
        hash.update([0]);
        hash.update(request.encode_to_vec());
        let fingerprint = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { key, fingerprint })
    }
}

/// A key a store remembers: which write it answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedKey {
    pub key: String,
    pub fingerprint: String,
    pub name: String,
    /// The tool's revision in that write's answer.
    pub revision: u64,
    pub catalog_version: u64,
    pub recorded_at: String,
}

/// A key reused for another request.
pub fn reused(key: &str) -> RegistryError {
    Violation(format!(
        "idempotencyKey {} was already used for a different request; use a new key for a new write",
        quoted(key)
    ))
    .into()
}

/// The first answer can no longer be rebuilt (its revision left the history).
pub fn forgotten(key: &str) -> RegistryError {
    Violation(format!(
        "idempotencyKey {} belongs to an earlier write whose answer is no longer kept; check the tool with \
         dynamic.tool.get",
        quoted(key)
    ))
    .into()
}

#[cfg(test)]
mod tests {
    use dynamic_mcp_proto::v1 as pb;

    use super::*;

    #[test]
    fn the_fingerprint_follows_the_request_and_the_operation() {
        let request = |name: &str| pb::DeleteToolRequest {
            name: name.into(),
            ..Default::default()
        };
        let a = IdempotencyKey::new("k".into(), "delete", &request("a.tool")).unwrap();
        assert_eq!(
            a,
            IdempotencyKey::new("k".into(), "delete", &request("a.tool")).unwrap()
        );
        assert_ne!(
            a,
            IdempotencyKey::new("k".into(), "delete", &request("b.tool")).unwrap()
        );
        assert_ne!(
            a,
            IdempotencyKey::new("k".into(), "restore", &request("a.tool")).unwrap()
        );
        assert!(IdempotencyKey::new(String::new(), "delete", &request("a")).is_err());
        assert!(IdempotencyKey::new("x".repeat(129), "delete", &request("a")).is_err());
    }
}
