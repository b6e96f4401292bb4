//! What the store and the change feed produce, as the gRPC answers and
//! events carry it. The domain model (`record.rs`) knows nothing of either.

use dynamic_mcp_proto::v1 as pb;

use crate::change::{ChangeEvent, ChangeKind};
use crate::store::{StoredCatalog, Written};

impl From<Written> for pb::ToolWriteResponse {
    /// A validate-only answer carries the code the write would store, so the
    /// caller can test exactly that; real writes never echo code.
    fn from(written: Written) -> Self {
        Self {
            tool: Some(written.tool.to_proto(written.validated_only)),
            catalog_version: written.catalog_version,
            changed: written.changed,
            replayed: written.replayed,
            base_revision: written.base_revision,
        }
    }
}

/// `List`'s answer; code only when the caller asked for it.
pub fn list_response(catalog: &StoredCatalog, include_code: bool) -> pb::ListToolsResponse {
    pb::ListToolsResponse {
        tools: catalog.tools.iter().map(|t| t.to_proto(include_code)).collect(),
        catalog_version: catalog.version,
    }
}

/// The first event of a watch, and the one after any gap.
pub fn snapshot_event(catalog: &StoredCatalog) -> pb::CatalogEvent {
    pb::CatalogEvent {
        catalog_version: catalog.version,
        event: Some(pb::catalog_event::Event::Snapshot(pb::CatalogSnapshot {
            tools: catalog.tools.iter().map(|t| t.to_proto(false)).collect(),
        })),
    }
}

impl From<&ChangeEvent> for pb::CatalogEvent {
    fn from(change: &ChangeEvent) -> Self {
        Self {
            catalog_version: change.catalog_version,
            event: Some(pb::catalog_event::Event::Change(pb::ToolChange {
                kind: pb::ChangeKind::from(change.kind).into(),
                tool: Some(change.tool.to_proto(false)),
            })),
        }
    }
}

impl From<ChangeKind> for pb::ChangeKind {
    fn from(kind: ChangeKind) -> Self {
        match kind {
            ChangeKind::Created => Self::Created,
            ChangeKind::Updated => Self::Updated,
            ChangeKind::Deleted => Self::Deleted,
            ChangeKind::Enabled => Self::Enabled,
            ChangeKind::Disabled => Self::Disabled,
        }
    }
}
