//! One committed change to the catalog, as a store announces it and the
//! change feed passes it on.

use std::sync::Arc;

use crate::record::ToolRecord;

/// How many changes a slow watcher may fall behind before it gets a new snapshot.
pub const FEED_CAPACITY: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    /// Any field changed through Update.
    Updated,
    Deleted,
    Enabled,
    Disabled,
}

/// One committed change. `tool` is the new state, or the last one for a delete.
#[derive(Debug, Clone)]
pub struct ChangeEvent {
    pub catalog_version: u64,
    pub kind: ChangeKind,
    pub tool: Arc<ToolRecord>,
}
