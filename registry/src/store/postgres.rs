//! The PostgreSQL backend: any number of registry replicas share one database.
//!
//! Every write is one transaction that first locks the single `catalog` row.
//! That puts the writes of all replicas in one order, makes "count, then
//! insert" safe for MCP_DYNAMIC_MAX_TOOLS, and bumps the catalog version in
//! the same transaction as the change. Update, delete and enable are also
//! compare-and-set in SQL (`... WHERE name = $1 AND revision = $2`). The
//! same rules (`rules.rs`) and messages apply as in the file store, and a
//! write that changes nothing commits nothing. Change events reach every
//! replica through LISTEN/NOTIFY (`listener.rs`).
//!
//! The registry needs a role with only these rights (run once, as the owner
//! of the database or a superuser):
//!
//! ```sql
//! CREATE ROLE dynamic_mcp_registry LOGIN PASSWORD '...';
//! GRANT CONNECT ON DATABASE tools TO dynamic_mcp_registry;
//! -- either let the registry create its schema (MCP_DYNAMIC_PG_SCHEMA) itself:
//! GRANT CREATE ON DATABASE tools TO dynamic_mcp_registry;
//! -- or create it for the registry, which then needs no right on the database beyond CONNECT:
//! CREATE SCHEMA dynamic_mcp AUTHORIZATION dynamic_mcp_registry;
//! ```
//!
//! Owning its schema lets the registry run its migrations there; LISTEN,
//! NOTIFY and advisory locks need no grant. No superuser, no CREATEDB, and no
//! rights in any other schema.

mod connect;
mod listener;
mod rows;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dynamic_mcp_common::backoff::Backoff;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

pub use self::connect::OpenError;
use self::listener::ChangeListener;
use self::rows::{REVISION_COLUMNS, REVISION_COLUMNS_WITHOUT_CODE, record_columns};
use super::{
    Change, StoredCatalog, TombstoneChange, ToolStore, WriteContext, WriteOp, WriteView, Written, committed, decide,
    recorded_key, settled,
};
use crate::change::{ChangeEvent, ChangeKind, FEED_CAPACITY};
use crate::config::PostgresArgs;
use crate::error::RegistryError;
use crate::history::{History, Retention, Tombstone};
use crate::idempotency::RecordedKey;
use crate::record::{self, ToolRecord};

/// How many changes `tool_changes` keeps for replicas whose listener is catching up.
const CHANGES_KEPT: i64 = 1000;

/// The longest wait between attempts to reach the database.
const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(10);

const SELECT_TOOL: &str = concat!("SELECT ", record_columns!(), ", code FROM tools WHERE name = $1");
const SELECT_TOOLS: &str = concat!("SELECT ", record_columns!(), ", code FROM tools ORDER BY name");
const SELECT_TOOLS_WITHOUT_CODE: &str = concat!("SELECT ", record_columns!(), " FROM tools ORDER BY name");
/// A tombstone whose retention ($2 seconds) has not run out.
const SELECT_TOMBSTONE: &str = "SELECT name, revision, deleted_by, \
     to_char(deleted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS deleted_at \
     FROM deleted_tools WHERE name = $1 AND deleted_at > now() - make_interval(secs => $2)";

pub struct PgStore {
    pool: PgPool,
    background: PgPool,
    max_tools: usize,
    retention: Retention,
    /// The NOTIFY channel of this schema's catalog.
    channel: String,
    changes: broadcast::Sender<ChangeEvent>,
    listener: JoinHandle<()>,
}

impl PgStore {
    /// Connects (waiting for the database as configured), brings the schema
    /// up to date and starts listening for changes from every replica.
    pub async fn open(settings: &PostgresArgs, max_tools: usize, retention: Retention) -> Result<Self, OpenError> {
        let connected = connect::pools(settings)?;
        tracing::info!(database = %connected.url, schema = %settings.schema, "opening the tool database");
        let catalog_version = connect::prepare(&connected, settings).await?;
        let channel = format!("{}_changes", settings.schema);
        let changes = broadcast::channel(FEED_CAPACITY).0;
        let listener = tokio::spawn(
            ChangeListener {
                pool: connected.background.clone(),
                channel: channel.clone(),
                changes: changes.clone(),
                published: catalog_version,
                backoff: Backoff::new(Duration::from_millis(settings.init_backoff_ms), MAX_RECONNECT_WAIT),
            }
            .run(),
        );
        tracing::info!(
            database = %connected.url,
            schema = %settings.schema,
            catalog_version,
            "tool database opened"
        );
        Ok(Self {
            pool: connected.requests,
            background: connected.background,
            max_tools,
            retention,
            channel,
            changes,
            listener,
        })
    }

    async fn live_tombstone(&self, name: &str) -> Result<Option<Tombstone>, RegistryError> {
        tombstone(&self.pool, name, &self.retention).await
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

#[async_trait]
impl ToolStore for PgStore {
    async fn catalog(&self, include_code: bool) -> Result<StoredCatalog, RegistryError> {
        // One snapshot for the version and the tools, so they agree.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let version: i64 = sqlx::query_scalar("SELECT version FROM catalog")
            .fetch_one(&mut *tx)
            .await?;
        let query = if include_code {
            SELECT_TOOLS
        } else {
            SELECT_TOOLS_WITHOUT_CODE
        };
        let found = sqlx::query(query).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let tools = found
            .iter()
            .map(|row| rows::tool_record(row, include_code).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(StoredCatalog {
            tools,
            version: rows::to_u64(version, "version")?,
        })
    }

    async fn get(&self, name: &str, revision: Option<u64>) -> Result<Arc<ToolRecord>, RegistryError> {
        let found = sqlx::query(SELECT_TOOL).bind(name).fetch_optional(&self.pool).await?;
        let current = found.map(|row| rows::tool_record(&row, true)).transpose()?;
        let Some(revision) = revision else {
            return current.map(Arc::new).ok_or_else(|| not_found(name));
        };
        if let Some(current) = current.as_ref().filter(|c| c.revision == revision) {
            return Ok(Arc::new(current.clone()));
        }
        if current.is_none() && self.live_tombstone(name).await?.is_none() {
            return Err(not_found(name));
        }
        kept(&self.pool, name, revision)
            .await?
            .map(Arc::new)
            .ok_or_else(|| RegistryError::RevisionNotKept {
                name: name.to_owned(),
                revision,
                current: current.map(|c| c.revision),
            })
    }

    async fn history(&self, name: &str, limit: Option<usize>) -> Result<History, RegistryError> {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tools WHERE name = $1)")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        let deleted = self.live_tombstone(name).await?;
        if !exists && deleted.is_none() {
            return Err(not_found(name));
        }
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM tool_revisions WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        let limit = limit
            .filter(|l| *l > 0)
            .map_or(total, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let query = format!(
            "SELECT {REVISION_COLUMNS_WITHOUT_CODE} FROM tool_revisions WHERE name = $1 ORDER BY revision DESC LIMIT $2"
        );
        let found = sqlx::query(AssertSqlSafe(query))
            .bind(name)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let revisions = found
            .iter()
            .map(|row| rows::revision(row, false))
            .collect::<Result<Vec<_>, _>>()?;
        let more = usize::try_from(total).unwrap_or(0).saturating_sub(revisions.len());
        Ok(History {
            revisions,
            deleted,
            more,
        })
    }

    async fn write(&self, op: WriteOp, ctx: WriteContext) -> Result<Written, RegistryError> {
        let mut write = CatalogWrite::begin(&self.pool).await?;
        let decision = {
            let mut view = PgView {
                tx: &mut write.tx,
                retention: &self.retention,
            };
            decide(&mut view, op, &ctx, self.max_tools, &record::now()).await?
        };
        // Dropping the transaction of a write that commits nothing rolls it back.
        match settled(decision, write.version) {
            Ok(written) => Ok(written),
            Err(change) => write.commit(*change, &ctx, &self.retention, &self.channel).await,
        }
    }

    fn retention(&self) -> Retention {
        self.retention
    }

    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.changes.subscribe()
    }

    async fn check_ready(&self) -> Result<(), RegistryError> {
        sqlx::query("SELECT 1").execute(&self.background).await?;
        Ok(())
    }
}

async fn tombstone<'e, E>(executor: E, name: &str, retention: &Retention) -> Result<Option<Tombstone>, RegistryError>
where
    E: sqlx::PgExecutor<'e>,
{
    let found = sqlx::query(SELECT_TOMBSTONE)
        .bind(name)
        .bind(retention.deleted_for.as_secs_f64())
        .fetch_optional(executor)
        .await?;
    found
        .map(|row| {
            Ok(Tombstone {
                name: row.try_get("name")?,
                revision: rows::to_u64(row.try_get("revision")?, "revision")?,
                deleted_at: row.try_get("deleted_at")?,
                deleted_by: row.try_get("deleted_by")?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| e.into())
}

async fn kept<'e, E>(executor: E, name: &str, revision: u64) -> Result<Option<ToolRecord>, RegistryError>
where
    E: sqlx::PgExecutor<'e>,
{
    let query = format!("SELECT {REVISION_COLUMNS} FROM tool_revisions WHERE name = $1 AND revision = $2");
    let found = sqlx::query(AssertSqlSafe(query))
        .bind(name)
        .bind(rows::to_i64(revision)?)
        .fetch_optional(executor)
        .await?;
    Ok(found.map(|row| rows::revision(&row, true)).transpose()?.map(|r| r.tool))
}

/// What a write reads, inside its transaction (which holds the catalog lock).
struct PgView<'a> {
    tx: &'a mut Transaction<'static, Postgres>,
    retention: &'a Retention,
}

#[async_trait]
impl WriteView for PgView<'_> {
    async fn current(&mut self, name: &str) -> Result<Option<ToolRecord>, RegistryError> {
        let found: Option<PgRow> = sqlx::query(SELECT_TOOL)
            .bind(name)
            .fetch_optional(&mut **self.tx)
            .await?;
        Ok(found.map(|row| rows::tool_record(&row, true)).transpose()?)
    }

    async fn tombstone(&mut self, name: &str) -> Result<Option<Tombstone>, RegistryError> {
        tombstone(&mut **self.tx, name, self.retention).await
    }

    async fn kept(&mut self, name: &str, revision: u64) -> Result<Option<ToolRecord>, RegistryError> {
        kept(&mut **self.tx, name, revision).await
    }

    async fn tool_count(&mut self) -> Result<usize, RegistryError> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tools")
            .fetch_one(&mut **self.tx)
            .await?;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    async fn recorded_key(&mut self, key: &str) -> Result<Option<RecordedKey>, RegistryError> {
        let found = sqlx::query(
            "SELECT key, fingerprint, name, revision, catalog_version, recorded_at::text AS recorded_at \
             FROM idempotency_keys WHERE key = $1 AND recorded_at > now() - make_interval(secs => $2)",
        )
        .bind(key)
        .bind(self.retention.idempotency_for.as_secs_f64())
        .fetch_optional(&mut **self.tx)
        .await?;
        let Some(row) = found else {
            return Ok(None);
        };
        Ok(Some(RecordedKey {
            key: row.try_get("key")?,
            fingerprint: row.try_get("fingerprint")?,
            name: row.try_get("name")?,
            revision: rows::to_u64(row.try_get("revision")?, "revision")?,
            catalog_version: rows::to_u64(row.try_get("catalog_version")?, "catalog_version")?,
            recorded_at: row.try_get("recorded_at")?,
        }))
    }
}

/// A write in progress: a transaction holding the catalog row lock, so it
/// sees every earlier write of every replica and no other write runs beside
/// it. Dropping it without `commit` rolls everything back.
struct CatalogWrite {
    tx: Transaction<'static, Postgres>,
    /// The catalog version before this write.
    version: u64,
}

impl CatalogWrite {
    async fn begin(pool: &PgPool) -> Result<Self, RegistryError> {
        let mut tx = pool.begin().await?;
        let version: i64 = sqlx::query_scalar("SELECT version FROM catalog FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        Ok(Self {
            tx,
            version: rows::to_u64(version, "version")?,
        })
    }

    /// Why a compare-and-set matched no row: the tool is gone, or its revision moved on.
    async fn compare_and_set_failed(&mut self, name: &str, expected: u64) -> RegistryError {
        let found: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar("SELECT revision FROM tools WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await;
        match found {
            Ok(None) => not_found(name),
            Ok(Some(current)) => RegistryError::RevisionConflict {
                name: name.to_owned(),
                expected,
                current: u64::try_from(current).unwrap_or_default(),
            },
            Err(err) => err.into(),
        }
    }

    /// Writes the tool row the change leaves.
    async fn write_tool(&mut self, change: &Change) -> Result<(), RegistryError> {
        let tool = &change.tool;
        let affected = match (change.kind, change.replaces) {
            (ChangeKind::Deleted, Some(replaces)) => sqlx::query("DELETE FROM tools WHERE name = $1 AND revision = $2")
                .bind(&tool.name)
                .bind(rows::to_i64(replaces)?)
                .execute(&mut *self.tx)
                .await?
                .rows_affected(),
            (_, None) => sqlx::query(
                "INSERT INTO tools (name, title, description, image, timeout_ms, dependencies, code, enabled, \
                 created_at, updated_at, revision, extensions) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::timestamptz, $10::timestamptz, $11, $12)",
            )
            .bind(&tool.name)
            .bind(&tool.title)
            .bind(&tool.description)
            .bind(&tool.image)
            .bind(rows::to_i32(tool.timeout_ms)?)
            .bind(Json(&tool.dependencies))
            .bind(rows::code_to_store(tool)?)
            .bind(tool.enabled)
            .bind(&tool.created_at)
            .bind(&tool.updated_at)
            .bind(rows::to_i64(tool.revision)?)
            .bind(Json(&tool.extensions))
            .execute(&mut *self.tx)
            .await?
            .rows_affected(),
            (_, Some(replaces)) => sqlx::query(
                "UPDATE tools SET title = $3, description = $4, image = $5, timeout_ms = $6, dependencies = $7, \
                 code = $8, enabled = $9, updated_at = $10::timestamptz, revision = $11, extensions = $12 \
                 WHERE name = $1 AND revision = $2",
            )
            .bind(&tool.name)
            .bind(rows::to_i64(replaces)?)
            .bind(&tool.title)
            .bind(&tool.description)
            .bind(&tool.image)
            .bind(rows::to_i32(tool.timeout_ms)?)
            .bind(Json(&tool.dependencies))
            .bind(rows::code_to_store(tool)?)
            .bind(tool.enabled)
            .bind(&tool.updated_at)
            .bind(rows::to_i64(tool.revision)?)
            .bind(Json(&tool.extensions))
            .execute(&mut *self.tx)
            .await?
            .rows_affected(),
        };
        if affected != 1 {
            return Err(self
                .compare_and_set_failed(&tool.name, change.replaces.unwrap_or_default())
                .await);
        }
        Ok(())
    }

    /// The kept revision, the tombstone, retention and the idempotency key.
    async fn write_history(
        &mut self,
        change: &Change,
        retention: &Retention,
        key: Option<RecordedKey>,
    ) -> Result<(), RegistryError> {
        let name = &change.tool.name;
        if let Some(revision) = &change.revision {
            let record = serde_json::to_value(&revision.tool).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            sqlx::query(
                "INSERT INTO tool_revisions (name, revision, kind, actor, changed_fields, rolled_back_to, record, \
                 recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::timestamptz) \
                 ON CONFLICT (name, revision) DO UPDATE SET kind = $3, actor = $4, changed_fields = $5, \
                 rolled_back_to = $6, record = $7, recorded_at = $8::timestamptz",
            )
            .bind(name)
            .bind(rows::to_i64(revision.tool.revision)?)
            .bind(revision.kind.as_str())
            .bind(&revision.actor)
            .bind(Json(&revision.changed_fields))
            .bind(revision.rolled_back_to.map(rows::to_i64).transpose()?)
            .bind(Json(record))
            .bind(&revision.tool.updated_at)
            .execute(&mut *self.tx)
            .await?;
            let keep = i64::try_from(retention.revisions).unwrap_or(i64::MAX);
            sqlx::query("DELETE FROM tool_revisions WHERE name = $1 AND revision <= $2 - $3")
                .bind(name)
                .bind(rows::to_i64(revision.tool.revision)?)
                .bind(keep)
                .execute(&mut *self.tx)
                .await?;
        }
        match &change.tombstone {
            TombstoneChange::Keep => {}
            TombstoneChange::Remove => {
                sqlx::query("DELETE FROM deleted_tools WHERE name = $1")
                    .bind(name)
                    .execute(&mut *self.tx)
                    .await?;
            }
            TombstoneChange::Set(tombstone) => {
                sqlx::query(
                    "INSERT INTO deleted_tools (name, revision, deleted_at, deleted_by) \
                     VALUES ($1, $2, $3::timestamptz, $4) ON CONFLICT (name) DO UPDATE \
                     SET revision = $2, deleted_at = $3::timestamptz, deleted_by = $4",
                )
                .bind(name)
                .bind(rows::to_i64(tombstone.revision)?)
                .bind(&tombstone.deleted_at)
                .bind(&tombstone.deleted_by)
                .execute(&mut *self.tx)
                .await?;
            }
        }
        // Deleted tools past their retention go with their history.
        sqlx::query(
            "WITH purged AS (DELETE FROM deleted_tools WHERE deleted_at <= now() - make_interval(secs => $1) \
             RETURNING name) DELETE FROM tool_revisions r USING purged WHERE r.name = purged.name \
             AND NOT EXISTS (SELECT 1 FROM tools t WHERE t.name = r.name)",
        )
        .bind(retention.deleted_for.as_secs_f64())
        .execute(&mut *self.tx)
        .await?;
        if let Some(key) = key {
            sqlx::query(
                "INSERT INTO idempotency_keys (key, fingerprint, name, revision, catalog_version) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO UPDATE SET fingerprint = $2, name = $3, \
                 revision = $4, catalog_version = $5, recorded_at = now()",
            )
            .bind(&key.key)
            .bind(&key.fingerprint)
            .bind(&key.name)
            .bind(rows::to_i64(key.revision)?)
            .bind(rows::to_i64(key.catalog_version)?)
            .execute(&mut *self.tx)
            .await?;
        }
        sqlx::query("DELETE FROM idempotency_keys WHERE recorded_at <= now() - make_interval(secs => $1)")
            .bind(retention.idempotency_for.as_secs_f64())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Makes the change durable under the next catalog version, wakes every
    /// replica's listener, and commits.
    async fn commit(
        mut self,
        change: Change,
        ctx: &WriteContext,
        retention: &Retention,
        channel: &str,
    ) -> Result<Written, RegistryError> {
        let version = self.version + 1;
        self.write_tool(&change).await?;
        self.write_history(&change, retention, recorded_key(ctx, &change, version))
            .await?;
        let version_param = rows::to_i64(version)?;
        sqlx::query("UPDATE catalog SET version = $1")
            .bind(version_param)
            .execute(&mut *self.tx)
            .await?;
        let tool = &change.tool;
        sqlx::query(
            "INSERT INTO tool_changes (catalog_version, kind, name, title, description, image, timeout_ms, \
             dependencies, code_size_bytes, enabled, created_at, updated_at, revision, extensions) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::timestamptz, $12::timestamptz, $13, $14)",
        )
        .bind(version_param)
        .bind(rows::kind_name(change.kind))
        .bind(&tool.name)
        .bind(&tool.title)
        .bind(&tool.description)
        .bind(&tool.image)
        .bind(rows::to_i32(tool.timeout_ms)?)
        .bind(Json(&tool.dependencies))
        .bind(rows::to_i64(tool.code_size_bytes())?)
        .bind(tool.enabled)
        .bind(&tool.created_at)
        .bind(&tool.updated_at)
        .bind(rows::to_i64(tool.revision)?)
        .bind(Json(&tool.extensions))
        .execute(&mut *self.tx)
        .await?;
        sqlx::query("DELETE FROM tool_changes WHERE catalog_version <= $1")
            .bind(version_param - CHANGES_KEPT)
            .execute(&mut *self.tx)
            .await?;
        // Delivered on commit only; the payload is a hint, the listener reads the table.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(format!("{version}:{}", tool.name))
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(committed(&change, version))
    }
}

fn not_found(name: &str) -> RegistryError {
    RegistryError::NotFound { name: name.to_owned() }
}
