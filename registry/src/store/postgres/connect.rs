//! Reaching the database: connection settings, waiting for the database at
//! startup, and bringing the schema up to date.
//!
//! Schema: every connection sends `search_path=<MCP_DYNAMIC_PG_SCHEMA>` as a
//! startup parameter, so the migrations, the queries and sqlx's own
//! `_sqlx_migrations` table all use that schema without qualifying names, and
//! the pool needs no per-connection `after_connect` query.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::rows;
use crate::config::{PgSchema, PgUrl, PostgresArgs};
use crate::error::is_unavailable;
use dynamic_mcp_common::backoff::Backoff;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Request connections per replica. Writes queue on one row lock anyway, so
/// more connections would only wait there.
const POOL_SIZE: u32 = 10;
/// Connections of the background tasks: the change listener, its catch-up
/// reads and the readiness check. Kept apart so a burst of writes cannot starve them.
const BACKGROUND_POOL_SIZE: u32 = 3;
/// Any number will do as long as it is the same for every replica.
const SCHEMA_LOCK_KEY: i64 = 0x646d_6370_7363_6861;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "MCP_DYNAMIC_BACKEND=postgres needs MCP_DYNAMIC_PG_URL (--pg-url), \
         e.g. postgres://registry:PASSWORD@db.example:5432/tools"
    )]
    MissingUrl,
    #[error("MCP_DYNAMIC_PG_URL {url} is not a usable PostgreSQL URL: {reason}")]
    BadUrl { url: PgUrl, reason: String },
    #[error(
        "the tool database at {url} is still unreachable after {attempts} attempts \
         (MCP_DYNAMIC_PG_INIT_MAX_ATTEMPTS): {source}"
    )]
    Unreachable {
        url: PgUrl,
        attempts: u32,
        source: sqlx::Error,
    },
    #[error("cannot use the tool database at {url} (schema {schema}): {source}")]
    Refused {
        url: PgUrl,
        schema: PgSchema,
        source: sqlx::Error,
    },
}

/// The checked settings and the pools built from them (connecting lazily).
pub struct Connected {
    pub url: PgUrl,
    pub options: PgConnectOptions,
    pub requests: PgPool,
    pub background: PgPool,
}

pub fn pools(settings: &PostgresArgs) -> Result<Connected, OpenError> {
    let url = settings.url.clone().ok_or(OpenError::MissingUrl)?;
    let options = connect_options(&url, &settings.schema)?;
    let acquire_timeout = Duration::from_millis(settings.acquire_timeout_ms);
    let pool = |size| {
        PgPoolOptions::new()
            .max_connections(size)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(options.clone())
    };
    Ok(Connected {
        requests: pool(POOL_SIZE),
        background: pool(BACKGROUND_POOL_SIZE),
        options: options.clone(),
        url,
    })
}

fn connect_options(url: &PgUrl, schema: &PgSchema) -> Result<PgConnectOptions, OpenError> {
    let bad_url = |reason: String| OpenError::BadUrl {
        url: url.clone(),
        reason,
    };
    // Checked here rather than by clap, whose error would print the password.
    let scheme = url.expose().split_once("://").map(|(scheme, _)| scheme);
    if !matches!(scheme, Some("postgres" | "postgresql")) {
        return Err(bad_url("it must start with postgres:// or postgresql://".into()));
    }
    let options = PgConnectOptions::from_str(url.expose()).map_err(|err| bad_url(err.to_string()))?;
    let options = if options.get_application_name().is_none() {
        options.application_name("dynamic-mcp-registry")
    } else {
        options
    };
    Ok(options.options([
        ("search_path", schema.as_str()),
        // A replica that stalls inside a write must not hold the catalog lock for long ...
        ("idle_in_transaction_session_timeout", "30s"),
        // ... and a write stuck behind it fails (UNAVAILABLE, retry) instead of queueing forever.
        ("lock_timeout", "10s"),
    ]))
}

/// Waits for the database (as MCP_DYNAMIC_PG_INIT_* allow), creates the
/// schema if needed, runs the migrations and returns the catalog version.
/// Only "unreachable" errors are retried: a wrong password or missing
/// rights will not fix themselves.
pub async fn prepare(connected: &Connected, settings: &PostgresArgs) -> Result<u64, OpenError> {
    let mut backoff = Backoff::new(
        Duration::from_millis(settings.init_backoff_ms),
        super::MAX_RECONNECT_WAIT,
    );
    let mut attempt = 1;
    loop {
        let error = match prepare_once(connected, &settings.schema).await {
            Ok(version) => return Ok(version),
            Err(error) => error,
        };
        if !is_unavailable(&error) {
            return Err(OpenError::Refused {
                url: connected.url.clone(),
                schema: settings.schema.clone(),
                source: error,
            });
        }
        if attempt >= settings.init_max_attempts {
            return Err(OpenError::Unreachable {
                url: connected.url.clone(),
                attempts: attempt,
                source: error,
            });
        }
        let wait = backoff.next_wait();
        tracing::warn!(
            database = %connected.url,
            attempt,
            max_attempts = settings.init_max_attempts,
            retry_in_ms = wait.as_millis() as u64,
            error = %error,
            "the tool database is not reachable yet"
        );
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// One attempt. It connects on a connection of its own first, so a failure
/// reports the real cause ("connection refused", "password authentication
/// failed") rather than a pool timeout.
async fn prepare_once(connected: &Connected, schema: &PgSchema) -> Result<u64, sqlx::Error> {
    let mut conn = PgConnection::connect_with(&connected.options).await?;
    create_schema(&mut conn, schema).await?;
    conn.close().await?;
    // On the pool: with a `&mut PgConnection` the future would not be `Send`
    // (sqlx's "Acquire is not general enough"), and `serve` must be spawnable.
    MIGRATOR.run(&connected.requests).await?;
    let version: i64 = sqlx::query_scalar("SELECT version FROM catalog")
        .fetch_one(&connected.requests)
        .await?;
    rows::to_u64(version, "version")
}

/// Creates the schema only when it is missing: `CREATE SCHEMA IF NOT EXISTS`
/// needs CREATE on the database even when the schema exists, and a role given
/// just its own schema has no such right.
async fn create_schema(conn: &mut PgConnection, schema: &PgSchema) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    // Replicas starting together: one creates it, the others wait and then find it.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(schema.as_str())
        .fetch_one(&mut *tx)
        .await?;
    if !exists {
        tracing::info!(%schema, "creating the schema");
        // A PgSchema is a checked plain identifier, safe to put in SQL as it is.
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn settings(args: &[&str]) -> PostgresArgs {
        let mut argv = vec!["r", "--backend", "postgres"];
        argv.extend_from_slice(args);
        crate::config::RegistryConfig::try_parse_from(argv).unwrap().postgres
    }

    #[tokio::test]
    async fn a_missing_or_foreign_url_is_refused_without_showing_the_password() {
        let err = pools(&settings(&[])).err().unwrap();
        assert!(err.to_string().contains("needs MCP_DYNAMIC_PG_URL"), "{err}");

        let err = pools(&settings(&["--pg-url", "mysql://u:hunter2@db/tools"]))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("must start with postgres://"), "{err}");
        assert!(err.contains("u:***@db") && !err.contains("hunter2"), "{err}");

        let err = pools(&settings(&["--pg-url", "postgres://u:hunter2@db:notaport/tools"]))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("is not a usable PostgreSQL URL") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn connections_use_the_configured_schema() {
        let connected = pools(&settings(&[
            "--pg-url",
            "postgres://u@db/tools",
            "--pg-schema",
            "tools_a",
        ]))
        .unwrap();
        let options = connected.options.get_options().unwrap_or_default();
        assert!(options.contains("search_path=tools_a"), "{options}");
        assert_eq!(connected.options.get_application_name(), Some("dynamic-mcp-registry"));
    }
}
