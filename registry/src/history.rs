//! Every revision a tool has had, kept so it can be inspected, rolled back
//! to and restored after a delete, and what a delete leaves behind.

use std::time::Duration;

use dynamic_mcp_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::record::ToolRecord;

/// How much history a store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Revisions kept per tool, the current one included.
    pub revisions: usize,
    /// How long a deleted tool's history stays restorable.
    pub deleted_for: Duration,
    /// How long an idempotency key answers retries.
    pub idempotency_for: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            revisions: 50,
            deleted_for: Duration::from_secs(30 * 24 * 3600),
            idempotency_for: Duration::from_secs(24 * 3600),
        }
    }
}

/// How a revision came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RevisionKind {
    Created,
    Updated,
    Enabled,
    Disabled,
    RolledBack,
    Restored,
    /// Found in a store written before history was kept.
    Migrated,
}

impl RevisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::RolledBack => "rolledBack",
            Self::Restored => "restored",
            Self::Migrated => "migrated",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Created,
            Self::Updated,
            Self::Enabled,
            Self::Disabled,
            Self::RolledBack,
            Self::Restored,
            Self::Migrated,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// One kept revision: the tool exactly as it was, and how it got there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub kind: RevisionKind,
    pub actor: String,
    #[serde(default)]
    pub changed_fields: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<u64>,
    pub tool: ToolRecord,
}

impl Revision {
    pub fn to_proto(&self) -> pb::ToolRevision {
        pb::ToolRevision {
            tool: Some(self.tool.to_proto(false)),
            kind: self.kind.as_str().to_owned(),
            actor: self.actor.clone(),
            changed_fields: self.changed_fields.clone(),
            rolled_back_to: self.rolled_back_to,
        }
    }
}

/// What a deleted tool leaves: its last revision number and who deleted it when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tombstone {
    pub name: String,
    pub revision: u64,
    pub deleted_at: String,
    pub deleted_by: String,
}

/// A tool's kept revisions, newest first, without code.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub revisions: Vec<Revision>,
    pub deleted: Option<Tombstone>,
    /// Kept revisions left out by the caller's limit.
    pub more: usize,
}

/// When a tombstone's history is dropped for good.
pub fn kept_until(deleted_at: &str, retention: &Retention) -> String {
    time::OffsetDateTime::parse(deleted_at, &time::format_description::well_known::Rfc3339)
        .map(|at| crate::record::timestamp(at + retention.deleted_for))
        .unwrap_or_default()
}

/// Whether a tombstone's retention has run out at `now`.
pub fn expired(deleted_at: &str, retention: &Retention, now: time::OffsetDateTime) -> bool {
    time::OffsetDateTime::parse(deleted_at, &time::format_description::well_known::Rfc3339)
        .is_ok_and(|at| at + retention.deleted_for <= now)
}

impl History {
    pub fn to_proto(&self, retention: &Retention) -> pb::ToolHistoryResponse {
        pb::ToolHistoryResponse {
            revisions: self.revisions.iter().map(Revision::to_proto).collect(),
            deleted: self.deleted.as_ref().map(|t| pb::DeletedTool {
                deleted_at: t.deleted_at.clone(),
                deleted_by: t.deleted_by.clone(),
                kept_until: kept_until(&t.deleted_at, retention),
                revision: t.revision,
            }),
            history_limit: u32::try_from(retention.revisions).unwrap_or(u32::MAX),
            more: u32::try_from(self.more).unwrap_or(u32::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in [
            "created",
            "updated",
            "enabled",
            "disabled",
            "rolledBack",
            "restored",
            "migrated",
        ] {
            assert_eq!(RevisionKind::parse(kind).map(RevisionKind::as_str), Some(kind));
            let json = serde_json::to_value(RevisionKind::parse(kind).unwrap()).unwrap();
            assert_eq!(json, kind);
        }
        assert_eq!(RevisionKind::parse("renamed"), None);
    }

    #[test]
    fn tombstones_expire_after_the_retention() {
        let retention = Retention {
            deleted_for: Duration::from_secs(60),
            ..Retention::default()
        };
        let at = "2026-01-01T00:00:00.000Z";
        assert_eq!(kept_until(at, &retention), "2026-01-01T00:01:00.000Z");
        let now = time::macros::datetime!(2026-01-01 00:00:59 UTC);
        assert!(!expired(at, &retention, now));
        assert!(expired(at, &retention, now + Duration::from_secs(1)));
    }
}
