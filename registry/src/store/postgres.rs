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

mod backoff;
mod connect;
mod listener;
mod rows;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dynamic_mcp_proto::v1 as pb;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::types::Json;
use sqlx::{Postgres, Transaction};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

pub use self::connect::OpenError;
use self::listener::ChangeListener;
use self::rows::record_columns;
use super::{Catalog, ToolStore, Written, check_revision};
use crate::config::PostgresArgs;
use crate::error::RegistryError;
use crate::feed::{ChangeEvent, ChangeKind, FEED_CAPACITY};
use crate::record::{self, ToolRecord};
use crate::rules;

/// How many changes `tool_changes` keeps for replicas whose listener is catching up.
const CHANGES_KEPT: i64 = 1000;

const SELECT_TOOL: &str = concat!("SELECT ", record_columns!(), ", code FROM tools WHERE name = $1");
const SELECT_TOOL_WITHOUT_CODE: &str = concat!("SELECT ", record_columns!(), " FROM tools WHERE name = $1");
const SELECT_TOOLS: &str = concat!("SELECT ", record_columns!(), ", code FROM tools ORDER BY name");
const SELECT_TOOLS_WITHOUT_CODE: &str = concat!("SELECT ", record_columns!(), " FROM tools ORDER BY name");

pub struct PgStore {
    pool: PgPool,
    background: PgPool,
    max_tools: usize,
    /// The NOTIFY channel of this schema's catalog.
    channel: String,
    changes: broadcast::Sender<ChangeEvent>,
    listener: JoinHandle<()>,
}

impl PgStore {
    /// Connects (waiting for the database as configured), brings the schema
    /// up to date and starts listening for changes from every replica.
    pub async fn open(settings: &PostgresArgs, max_tools: usize) -> Result<Self, OpenError> {
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
                backoff: backoff::Backoff::new(Duration::from_millis(settings.init_backoff_ms)),
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
            channel,
            changes,
            listener,
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

#[async_trait]
impl ToolStore for PgStore {
    async fn catalog(&self, include_code: bool) -> Result<Catalog, RegistryError> {
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
        Ok(Catalog {
            tools,
            version: rows::to_u64(version, "version")?,
        })
    }

    async fn get(&self, name: &str) -> Result<Arc<ToolRecord>, RegistryError> {
        let found = sqlx::query(SELECT_TOOL).bind(name).fetch_optional(&self.pool).await?;
        let row = found.ok_or_else(|| not_found(name))?;
        Ok(Arc::new(rows::tool_record(&row, true)?))
    }

    async fn create(&self, spec: pb::ToolSpec) -> Result<Written, RegistryError> {
        let tool = rules::new_tool(spec, &record::now())?;
        let mut write = CatalogWrite::begin(&self.pool).await?;
        if let Some(revision) = write.revision_of(&tool.name).await? {
            return Err(RegistryError::AlreadyExists {
                name: tool.name,
                revision,
            });
        }
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tools")
            .fetch_one(&mut *write.tx)
            .await?;
        if usize::try_from(count).is_ok_and(|count| count >= self.max_tools) {
            return Err(RegistryError::LimitReached { max: self.max_tools });
        }
        sqlx::query(
            "INSERT INTO tools (name, title, description, image, timeout_ms, dependencies, code, enabled, \
             created_at, updated_at, revision) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::timestamptz, $10::timestamptz, $11)",
        )
        .bind(&tool.name)
        .bind(&tool.title)
        .bind(&tool.description)
        .bind(&tool.image)
        .bind(rows::to_i32(tool.timeout_ms)?)
        .bind(Json(&tool.dependencies))
        .bind(rows::code_to_store(&tool)?)
        .bind(tool.enabled)
        .bind(&tool.created_at)
        .bind(&tool.updated_at)
        .bind(rows::to_i64(tool.revision)?)
        .execute(&mut *write.tx)
        .await?;
        write.commit(ChangeKind::Created, tool, &self.channel).await
    }

    async fn update(
        &self,
        name: String,
        patch: pb::ToolPatch,
        expected_revision: Option<u64>,
    ) -> Result<Written, RegistryError> {
        let mut write = CatalogWrite::begin(&self.pool).await?;
        let current = write.tool(&name, true).await?;
        check_revision(&current, expected_revision)?;
        let Some(next) = rules::apply_patch(&current, patch, &record::now())? else {
            return Ok(write.unchanged(current));
        };
        let replaced = sqlx::query(
            "UPDATE tools SET title = $3, description = $4, image = $5, timeout_ms = $6, dependencies = $7, \
             code = $8, enabled = $9, updated_at = $10::timestamptz, revision = $11 \
             WHERE name = $1 AND revision = $2",
        )
        .bind(&name)
        .bind(rows::to_i64(current.revision)?)
        .bind(&next.title)
        .bind(&next.description)
        .bind(&next.image)
        .bind(rows::to_i32(next.timeout_ms)?)
        .bind(Json(&next.dependencies))
        .bind(rows::code_to_store(&next)?)
        .bind(next.enabled)
        .bind(&next.updated_at)
        .bind(rows::to_i64(next.revision)?)
        .execute(&mut *write.tx)
        .await?;
        if replaced.rows_affected() != 1 {
            return Err(write.compare_and_set_failed(&name, current.revision).await);
        }
        write.commit(ChangeKind::Updated, next, &self.channel).await
    }

    async fn delete(&self, name: String, expected_revision: Option<u64>) -> Result<Written, RegistryError> {
        let mut write = CatalogWrite::begin(&self.pool).await?;
        let current = write.tool(&name, false).await?;
        check_revision(&current, expected_revision)?;
        let deleted = sqlx::query("DELETE FROM tools WHERE name = $1 AND revision = $2")
            .bind(&name)
            .bind(rows::to_i64(current.revision)?)
            .execute(&mut *write.tx)
            .await?;
        if deleted.rows_affected() != 1 {
            return Err(write.compare_and_set_failed(&name, current.revision).await);
        }
        write.commit(ChangeKind::Deleted, current, &self.channel).await
    }

    async fn set_enabled(
        &self,
        name: String,
        enabled: bool,
        expected_revision: Option<u64>,
    ) -> Result<Written, RegistryError> {
        let mut write = CatalogWrite::begin(&self.pool).await?;
        let current = write.tool(&name, false).await?;
        check_revision(&current, expected_revision)?;
        let Some(next) = rules::set_enabled(&current, enabled, &record::now()) else {
            return Ok(write.unchanged(current));
        };
        let switched = sqlx::query(
            "UPDATE tools SET enabled = $3, updated_at = $4::timestamptz, revision = $5 \
             WHERE name = $1 AND revision = $2",
        )
        .bind(&name)
        .bind(rows::to_i64(current.revision)?)
        .bind(next.enabled)
        .bind(&next.updated_at)
        .bind(rows::to_i64(next.revision)?)
        .execute(&mut *write.tx)
        .await?;
        if switched.rows_affected() != 1 {
            return Err(write.compare_and_set_failed(&name, current.revision).await);
        }
        let kind = if enabled {
            ChangeKind::Enabled
        } else {
            ChangeKind::Disabled
        };
        write.commit(kind, next, &self.channel).await
    }

    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.changes.subscribe()
    }

    async fn check_ready(&self) -> Result<(), RegistryError> {
        sqlx::query("SELECT 1").execute(&self.background).await?;
        Ok(())
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

    async fn tool(&mut self, name: &str, with_code: bool) -> Result<ToolRecord, RegistryError> {
        let query = if with_code {
            SELECT_TOOL
        } else {
            SELECT_TOOL_WITHOUT_CODE
        };
        let found: Option<PgRow> = sqlx::query(query).bind(name).fetch_optional(&mut *self.tx).await?;
        let row = found.ok_or_else(|| not_found(name))?;
        Ok(rows::tool_record(&row, with_code)?)
    }

    /// Nothing to change: no new revision, no new version, no event.
    fn unchanged(self, tool: ToolRecord) -> Written {
        Written {
            tool: Arc::new(tool),
            catalog_version: self.version,
        }
    }

    /// Why a compare-and-set matched no row: the tool is gone, or its revision moved on.
    async fn compare_and_set_failed(&mut self, name: &str, expected: u64) -> RegistryError {
        match self.revision_of(name).await {
            Ok(None) => not_found(name),
            Ok(Some(current)) => RegistryError::RevisionConflict {
                name: name.to_owned(),
                expected,
                current,
            },
            Err(err) => err.into(),
        }
    }

    async fn revision_of(&mut self, name: &str) -> Result<Option<u64>, sqlx::Error> {
        let found: Option<i64> = sqlx::query_scalar("SELECT revision FROM tools WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await?;
        found.map(|revision| rows::to_u64(revision, "revision")).transpose()
    }

    /// Records the change under the next catalog version, wakes every
    /// replica's listener, and commits.
    async fn commit(mut self, kind: ChangeKind, tool: ToolRecord, channel: &str) -> Result<Written, RegistryError> {
        let version = self.version + 1;
        let version_param = rows::to_i64(version)?;
        sqlx::query("UPDATE catalog SET version = $1")
            .bind(version_param)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query(
            "INSERT INTO tool_changes (catalog_version, kind, name, title, description, image, timeout_ms, \
             dependencies, code_size_bytes, enabled, created_at, updated_at, revision) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::timestamptz, $12::timestamptz, $13)",
        )
        .bind(version_param)
        .bind(rows::kind_name(kind))
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
        Ok(Written {
            tool: Arc::new(tool),
            catalog_version: version,
        })
    }
}

fn not_found(name: &str) -> RegistryError {
    RegistryError::NotFound { name: name.to_owned() }
}
