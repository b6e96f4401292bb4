//! Where tool definitions live. Every backend enforces the same rules
//! (`rules.rs`), the same compare-and-set on revisions, the same history and
//! idempotency, and the same change feed: a write is decided here, by
//! [`decide`], from what the backend reads through [`WriteView`], and the
//! backend only makes the resulting [`Change`] durable.

pub mod file;
pub mod postgres;

use std::sync::Arc;

use async_trait::async_trait;
use dynamic_mcp_proto::v1 as pb;
use tokio::sync::broadcast;

use crate::change::{ChangeEvent, ChangeKind};
use crate::error::RegistryError;
use crate::history::{History, Retention, Revision, RevisionKind, Tombstone};
use crate::idempotency::{self, IdempotencyKey, RecordedKey};
use crate::record::{self, ToolRecord};
use crate::rules;

/// Every tool, sorted by name, as of `version`.
#[derive(Debug, Clone)]
pub struct StoredCatalog {
    pub tools: Vec<Arc<ToolRecord>>,
    pub version: u64,
}

/// The result of a write: the tool after it (for a delete: before it) and the
/// catalog version that includes it.
#[derive(Debug, Clone)]
pub struct Written {
    pub tool: Arc<ToolRecord>,
    pub catalog_version: u64,
    /// Whether a new revision (or a delete) was committed.
    pub changed: bool,
    /// Whether this is the recorded answer to an earlier write with the same key.
    pub replayed: bool,
    /// Nothing was written: this is what the write would have produced.
    pub validated_only: bool,
    /// For a validate-only answer: the revision the write would replace (0: none).
    pub base_revision: u64,
}

impl Written {
    fn committed(tool: Arc<ToolRecord>, catalog_version: u64) -> Self {
        Self {
            tool,
            catalog_version,
            changed: true,
            replayed: false,
            validated_only: false,
            base_revision: 0,
        }
    }

    fn unchanged(tool: ToolRecord, catalog_version: u64) -> Self {
        Self {
            changed: false,
            ..Self::committed(Arc::new(tool), catalog_version)
        }
    }
}

/// One write a caller asks for.
#[derive(Debug, Clone)]
pub enum WriteOp {
    Create(pb::ToolSpec),
    Update {
        name: String,
        patch: pb::ToolPatch,
        expected: Option<u64>,
    },
    Delete {
        name: String,
        expected: Option<u64>,
    },
    SetEnabled {
        name: String,
        enabled: bool,
        expected: Option<u64>,
    },
    Rollback {
        name: String,
        revision: u64,
        expected: Option<u64>,
    },
    Restore {
        name: String,
        revision: Option<u64>,
    },
}

impl WriteOp {
    pub fn name(&self) -> &str {
        match self {
            Self::Create(spec) => &spec.name,
            Self::Update { name, .. }
            | Self::Delete { name, .. }
            | Self::SetEnabled { name, .. }
            | Self::Rollback { name, .. }
            | Self::Restore { name, .. } => name,
        }
    }
}

/// Who writes, and how.
#[derive(Debug, Clone, Default)]
pub struct WriteContext {
    pub actor: String,
    pub idempotency: Option<IdempotencyKey>,
    pub validate_only: bool,
}

/// What happens to a name's tombstone in a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TombstoneChange {
    Keep,
    Remove,
    Set(Tombstone),
}

/// A decided write, for the backend to make durable in one step together
/// with the caller's idempotency key.
#[derive(Debug, Clone)]
pub struct Change {
    pub kind: ChangeKind,
    /// The tool after the write; for a delete, as it was.
    pub tool: ToolRecord,
    /// The revision the write replaces, for the backend's compare-and-set.
    pub replaces: Option<u64>,
    /// The new revision to keep; none for a delete.
    pub revision: Option<Revision>,
    pub tombstone: TombstoneChange,
}

/// What [`decide`] concluded.
#[derive(Debug)]
pub enum Decision {
    /// Nothing changes: no revision, no event.
    Unchanged(Box<ToolRecord>),
    /// The key was used before for this very request: its first answer.
    Replay(Written),
    /// Validate-only: what the write would produce.
    Validated {
        tool: Box<ToolRecord>,
        base_revision: u64,
    },
    Change(Box<Change>),
}

/// What a write may need to read, inside whatever makes the backend's
/// writes one at a time (a lock, a row lock).
#[async_trait]
pub trait WriteView: Send {
    async fn current(&mut self, name: &str) -> Result<Option<ToolRecord>, RegistryError>;
    /// The tombstone of a deleted tool whose history is still kept.
    async fn tombstone(&mut self, name: &str) -> Result<Option<Tombstone>, RegistryError>;
    /// A kept revision, with its code.
    async fn kept(&mut self, name: &str, revision: u64) -> Result<Option<ToolRecord>, RegistryError>;
    async fn tool_count(&mut self) -> Result<usize, RegistryError>;
    async fn recorded_key(&mut self, key: &str) -> Result<Option<RecordedKey>, RegistryError>;
}

/// Decides a write from what `view` shows: the rules, the revision CAS, the
/// tool limit, and the idempotency key. Backends share this, so they give
/// the same answers.
pub async fn decide(
    view: &mut dyn WriteView,
    op: WriteOp,
    ctx: &WriteContext,
    max_tools: usize,
    now: &str,
) -> Result<Decision, RegistryError> {
    if let Some(key) = &ctx.idempotency
        && let Some(recorded) = view.recorded_key(&key.key).await?
    {
        if recorded.fingerprint != key.fingerprint {
            return Err(idempotency::reused(&key.key));
        }
        let tool = view
            .kept(&recorded.name, recorded.revision)
            .await?
            .ok_or_else(|| idempotency::forgotten(&key.key))?;
        return Ok(Decision::Replay(Written {
            replayed: true,
            ..Written::committed(Arc::new(tool.without_code()), recorded.catalog_version)
        }));
    }
    let name = op.name().to_owned();
    let revision = |kind, before: Option<&ToolRecord>, tool: &ToolRecord, rolled_back_to| Revision {
        kind,
        actor: ctx.actor.clone(),
        changed_fields: rules::changed_fields(before, tool),
        rolled_back_to,
        tool: tool.clone(),
    };
    let change = match op {
        WriteOp::Create(spec) => {
            let mut tool = rules::new_tool(spec, now)?;
            if let Some(existing) = view.current(&name).await? {
                return Err(RegistryError::AlreadyExists {
                    name,
                    revision: existing.revision,
                });
            }
            if view.tool_count().await? >= max_tools {
                return Err(RegistryError::LimitReached { max: max_tools });
            }
            let tombstone = view.tombstone(&name).await?;
            if let Some(tombstone) = &tombstone {
                tool = rules::recreated(tool, tombstone.revision);
            }
            Change {
                kind: ChangeKind::Created,
                revision: Some(revision(RevisionKind::Created, None, &tool, None)),
                tool,
                replaces: None,
                tombstone: if tombstone.is_some() {
                    TombstoneChange::Remove
                } else {
                    TombstoneChange::Keep
                },
            }
        }
        WriteOp::Update { patch, expected, .. } => {
            let current = current_at(view, &name, expected).await?;
            let Some(next) = rules::apply_patch(&current, patch, now)? else {
                return Ok(unchanged(current, ctx));
            };
            edit(
                RevisionKind::Updated,
                ChangeKind::Updated,
                current,
                next,
                &revision,
                None,
            )
        }
        WriteOp::SetEnabled { enabled, expected, .. } => {
            let current = current_at(view, &name, expected).await?;
            let Some(next) = rules::set_enabled(&current, enabled, now) else {
                return Ok(unchanged(current, ctx));
            };
            let (kind, change) = if enabled {
                (RevisionKind::Enabled, ChangeKind::Enabled)
            } else {
                (RevisionKind::Disabled, ChangeKind::Disabled)
            };
            edit(kind, change, current, next, &revision, None)
        }
        WriteOp::Rollback {
            revision: target,
            expected,
            ..
        } => {
            let current = current_at(view, &name, expected).await?;
            let old = kept_revision(view, &name, target, Some(current.revision)).await?;
            let Some(next) = rules::rollback(&current, &old, now)? else {
                return Ok(unchanged(current, ctx));
            };
            edit(
                RevisionKind::RolledBack,
                ChangeKind::Updated,
                current,
                next,
                &revision,
                Some(target),
            )
        }
        WriteOp::Restore { revision: target, .. } => {
            if let Some(existing) = view.current(&name).await? {
                return Err(RegistryError::NotDeleted {
                    name,
                    revision: existing.revision,
                });
            }
            let tombstone = view
                .tombstone(&name)
                .await?
                .ok_or_else(|| RegistryError::NothingToRestore { name: name.clone() })?;
            if view.tool_count().await? >= max_tools {
                return Err(RegistryError::LimitReached { max: max_tools });
            }
            let old = kept_revision(view, &name, target.unwrap_or(tombstone.revision), None).await?;
            let tool = rules::restore(&old, tombstone.revision, now)?;
            let mut kept = revision(RevisionKind::Restored, Some(&old), &tool, None);
            kept.rolled_back_to = Some(old.revision);
            Change {
                kind: ChangeKind::Created,
                revision: Some(kept),
                tool,
                replaces: None,
                tombstone: TombstoneChange::Remove,
            }
        }
        WriteOp::Delete { expected, .. } => {
            let current = current_at(view, &name, expected).await?;
            Change {
                kind: ChangeKind::Deleted,
                tombstone: TombstoneChange::Set(Tombstone {
                    name,
                    revision: current.revision,
                    deleted_at: now.to_owned(),
                    deleted_by: ctx.actor.clone(),
                }),
                replaces: Some(current.revision),
                revision: None,
                tool: current,
            }
        }
    };
    if ctx.validate_only {
        return Ok(Decision::Validated {
            base_revision: change.replaces.unwrap_or(0),
            tool: Box::new(change.tool),
        });
    }
    Ok(Decision::Change(Box::new(change)))
}

fn edit(
    kind: RevisionKind,
    change: ChangeKind,
    current: ToolRecord,
    next: ToolRecord,
    revision: &impl Fn(RevisionKind, Option<&ToolRecord>, &ToolRecord, Option<u64>) -> Revision,
    rolled_back_to: Option<u64>,
) -> Change {
    Change {
        kind: change,
        revision: Some(revision(kind, Some(&current), &next, rolled_back_to)),
        tool: next,
        replaces: Some(current.revision),
        tombstone: TombstoneChange::Keep,
    }
}

fn unchanged(current: ToolRecord, ctx: &WriteContext) -> Decision {
    if ctx.validate_only {
        let base_revision = current.revision;
        return Decision::Validated {
            tool: Box::new(current),
            base_revision,
        };
    }
    Decision::Unchanged(Box::new(current))
}

async fn current_at(view: &mut dyn WriteView, name: &str, expected: Option<u64>) -> Result<ToolRecord, RegistryError> {
    let current = view
        .current(name)
        .await?
        .ok_or_else(|| RegistryError::NotFound { name: name.to_owned() })?;
    check_revision(&current, expected)?;
    Ok(current)
}

/// A kept revision of `name`; `current` names the live one for the message.
async fn kept_revision(
    view: &mut dyn WriteView,
    name: &str,
    revision: u64,
    current: Option<u64>,
) -> Result<ToolRecord, RegistryError> {
    view.kept(name, revision)
        .await?
        .ok_or_else(|| RegistryError::RevisionNotKept {
            name: name.to_owned(),
            revision,
            current,
        })
}

/// A backend that stores tool definitions durably and announces each change.
///
/// A write that changes nothing (enabling an enabled tool, an empty patch)
/// returns the tool as it is, without a new revision or an event, so each
/// event is one real change.
#[async_trait]
pub trait ToolStore: Send + Sync + 'static {
    /// Every tool. Without `include_code` the records may leave their code
    /// out (a backend that has it at hand anyway may keep it).
    async fn catalog(&self, include_code: bool) -> Result<StoredCatalog, RegistryError>;

    /// A tool with its code: the current revision, or a kept one (also of a
    /// deleted tool).
    async fn get(&self, name: &str, revision: Option<u64>) -> Result<Arc<ToolRecord>, RegistryError>;

    /// The kept revisions of `name`, newest first, at most `limit`.
    async fn history(&self, name: &str, limit: Option<usize>) -> Result<History, RegistryError>;

    async fn write(&self, op: WriteOp, ctx: WriteContext) -> Result<Written, RegistryError>;

    /// How much history this store keeps.
    fn retention(&self) -> Retention;

    /// Change events from now on, in catalog-version order. Subscribe before
    /// reading the catalog so no change falls between the two.
    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent>;

    /// Whether the store can serve requests right now; readiness follows it.
    async fn check_ready(&self) -> Result<(), RegistryError>;
}

/// Refuses a write based on a revision the caller saw but that is no longer current.
pub fn check_revision(current: &ToolRecord, expected: Option<u64>) -> Result<(), RegistryError> {
    match expected {
        Some(expected) if expected != current.revision => Err(RegistryError::RevisionConflict {
            name: current.name.clone(),
            expected,
            current: current.revision,
        }),
        _ => Ok(()),
    }
}

/// The answer for a decision that needs no durable step.
pub fn settled(decision: Decision, catalog_version: u64) -> Result<Written, Box<Change>> {
    match decision {
        Decision::Unchanged(tool) => Ok(Written::unchanged(*tool, catalog_version)),
        Decision::Replay(written) => Ok(written),
        Decision::Validated { tool, base_revision } => Ok(Written {
            validated_only: true,
            base_revision,
            ..Written::unchanged(*tool, catalog_version)
        }),
        Decision::Change(change) => Err(change),
    }
}

/// The answer for a committed change.
pub fn committed(change: &Change, catalog_version: u64) -> Written {
    Written::committed(Arc::new(change.tool.without_code()), catalog_version)
}

/// The key to remember with a committed change, when the caller sent one.
pub fn recorded_key(ctx: &WriteContext, change: &Change, catalog_version: u64) -> Option<RecordedKey> {
    ctx.idempotency.as_ref().map(|key| RecordedKey {
        key: key.key.clone(),
        fingerprint: key.fingerprint.clone(),
        name: change.tool.name.clone(),
        revision: change.tool.revision,
        catalog_version,
        recorded_at: record::now(),
    })
}

/// History newest first, cut to `limit`, without code.
pub fn page(mut revisions: Vec<Revision>, limit: Option<usize>) -> (Vec<Revision>, usize) {
    revisions.sort_by_key(|r| std::cmp::Reverse(r.tool.revision));
    let keep = limit.filter(|l| *l > 0).unwrap_or(revisions.len()).min(revisions.len());
    let more = revisions.len() - keep;
    revisions.truncate(keep);
    for revision in &mut revisions {
        revision.tool = revision.tool.without_code();
    }
    (revisions, more)
}

/// The write calls tests make, one method each.
#[cfg(test)]
pub mod testing {
    use super::*;

    fn ctx() -> WriteContext {
        WriteContext {
            actor: "test".into(),
            ..WriteContext::default()
        }
    }

    #[async_trait]
    pub trait Writes {
        async fn create(&self, spec: pb::ToolSpec) -> Result<Written, RegistryError>;
        async fn update(
            &self,
            name: &str,
            patch: pb::ToolPatch,
            expected: Option<u64>,
        ) -> Result<Written, RegistryError>;
        async fn delete(&self, name: &str, expected: Option<u64>) -> Result<Written, RegistryError>;
        async fn set_enabled(&self, name: &str, enabled: bool, expected: Option<u64>)
        -> Result<Written, RegistryError>;
    }

    #[async_trait]
    impl<T: ToolStore + ?Sized> Writes for T {
        async fn create(&self, spec: pb::ToolSpec) -> Result<Written, RegistryError> {
            self.write(WriteOp::Create(spec), ctx()).await
        }
        async fn update(
            &self,
            name: &str,
            patch: pb::ToolPatch,
            expected: Option<u64>,
        ) -> Result<Written, RegistryError> {
            let name = name.to_owned();
            self.write(WriteOp::Update { name, patch, expected }, ctx()).await
        }
        async fn delete(&self, name: &str, expected: Option<u64>) -> Result<Written, RegistryError> {
            let name = name.to_owned();
            self.write(WriteOp::Delete { name, expected }, ctx()).await
        }
        async fn set_enabled(
            &self,
            name: &str,
            enabled: bool,
            expected: Option<u64>,
        ) -> Result<Written, RegistryError> {
            let name = name.to_owned();
            self.write(
                WriteOp::SetEnabled {
                    name,
                    enabled,
                    expected,
                },
                ctx(),
            )
            .await
        }
    }
}
