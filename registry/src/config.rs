//! The registry's settings: every one is a flag and an MCP_* variable.

use std::path::PathBuf;
use std::time::Duration;

use dynamic_mcp_common::addr::ListenAddr;
use dynamic_mcp_common::internal_auth::InternalAuthArgs;
use dynamic_mcp_common::telemetry::LogArgs;

use crate::history::Retention;

/// Holds dynamic tool definitions and announces every change over gRPC.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "dynamic-mcp-registry", version)]
pub struct RegistryConfig {
    /// Where to serve gRPC: host:port, or unix:/path/to.sock.
    #[arg(long, env = "MCP_REGISTRY_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: ListenAddr,

    /// Where tool definitions are stored.
    #[arg(long, env = "MCP_DYNAMIC_BACKEND", value_enum, default_value_t = Backend::File)]
    pub backend: Backend,

    /// The JSON file of the `file` backend (its directory is created if missing).
    #[arg(long, env = "MCP_DYNAMIC_STORE", default_value = ".dynamic-mcp/tools.json")]
    pub store: PathBuf,

    /// The most dynamic tools the registry holds.
    #[arg(long, env = "MCP_DYNAMIC_MAX_TOOLS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tools: u32,

    /// Revisions kept per tool, the current one included; older ones can no
    /// longer be fetched or rolled back to.
    #[arg(long, env = "MCP_DYNAMIC_HISTORY_LIMIT", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub history_limit: u32,

    /// Seconds a deleted tool's history is kept, so dynamic.tool.restore can bring it back (default 30 days).
    #[arg(long, env = "MCP_DYNAMIC_DELETED_RETENTION_SECONDS", default_value_t = 2_592_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub deleted_retention_seconds: u64,

    /// Seconds a write's idempotency key keeps answering retries with the first answer.
    #[arg(long, env = "MCP_DYNAMIC_IDEMPOTENCY_TTL_SECONDS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    pub idempotency_ttl_seconds: u64,

    #[command(flatten)]
    pub postgres: PostgresArgs,

    /// Stop when standard input closes; set by `dynamic-mcp` when it starts this service.
    #[arg(long, env = "MCP_EXIT_WITH_PARENT", value_parser = clap::builder::BoolishValueParser::new())]
    pub exit_with_parent: bool,

    #[command(flatten)]
    pub internal_auth: InternalAuthArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

impl RegistryConfig {
    pub fn retention(&self) -> Retention {
        Retention {
            revisions: self.history_limit as usize,
            deleted_for: Duration::from_secs(self.deleted_retention_seconds),
            idempotency_for: Duration::from_secs(self.idempotency_ttl_seconds),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// One JSON file, written atomically; one registry process per file.
    File,
    /// A PostgreSQL database shared by any number of registry replicas.
    Postgres,
}

/// Settings of the `postgres` backend.
#[derive(Debug, Clone, clap::Args)]
pub struct PostgresArgs {
    /// Database URL of the `postgres` backend (required with it), e.g.
    /// postgres://registry:PASSWORD@db.example:5432/tools?sslmode=require. Logged with the password hidden.
    #[arg(long = "pg-url", env = "MCP_DYNAMIC_PG_URL", hide_env_values = true)]
    pub url: Option<PgUrl>,

    /// The schema holding the registry's tables; created when missing. Lowercase letters, digits and '_'.
    #[arg(long = "pg-schema", env = "MCP_DYNAMIC_PG_SCHEMA", default_value = "dynamic_mcp")]
    pub schema: PgSchema,

    /// How many times to try reaching the database at startup before giving up.
    #[arg(
        long = "pg-init-max-attempts",
        env = "MCP_DYNAMIC_PG_INIT_MAX_ATTEMPTS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub init_max_attempts: u32,

    /// The first wait between startup attempts, doubled after each one up to 10 s. The change
    /// listener waits the same way between reconnects.
    #[arg(
        long = "pg-init-backoff-ms",
        env = "MCP_DYNAMIC_PG_INIT_BACKOFF_MS",
        default_value_t = 500,
        value_parser = clap::value_parser!(u64).range(1..=10_000)
    )]
    pub init_backoff_ms: u64,

    /// How long a request waits for a database connection before failing with UNAVAILABLE.
    #[arg(
        long = "pg-acquire-timeout-ms",
        env = "MCP_DYNAMIC_PG_ACQUIRE_TIMEOUT_MS",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(100..=600_000)
    )]
    pub acquire_timeout_ms: u64,
}

/// A database URL. It may hold a password, so it is never shown whole:
/// `Debug` and `Display` hide the password, and parsing never fails here
/// (clap would echo a refused value); the backend checks it when connecting.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl(String);

impl PgUrl {
    /// The URL with its password, for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for PgUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl std::str::FromStr for PgUrl {
    type Err = std::convert::Infallible;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Ok(Self(url.to_owned()))
    }
}

impl std::fmt::Display for PgUrl {
    /// The URL with `***` for the password, in the user info and in a `password=` parameter.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Ok(mut url) = url::Url::parse(&self.0) else {
            return f.write_str("<a URL that does not parse>");
        };
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        if url.query_pairs().any(|(key, _)| key == "password") {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(key, value)| {
                    let value = if key == "password" {
                        "***".into()
                    } else {
                        value.into_owned()
                    };
                    (key.into_owned(), value)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        f.write_str(url.as_str())
    }
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgUrl({self})")
    }
}

/// A schema name the registry can put in SQL without quoting: lowercase
/// ASCII letters, digits and '_', not starting with a digit or with `pg_`
/// (reserved by PostgreSQL), and short enough to name a notification channel too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSchema(String);

impl PgSchema {
    pub const MAX_CHARS: usize = 48;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for PgSchema {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let plain = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        let starts_well = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_');
        if plain && starts_well && name.len() <= Self::MAX_CHARS && !name.starts_with("pg_") {
            Ok(Self(name.to_owned()))
        } else {
            Err(format!(
                "'{name}' is not a plain schema name: use 1..{} lowercase letters, digits or '_', \
                 starting with a letter or '_' (not 'pg_')",
                Self::MAX_CHARS
            ))
        }
    }
}

impl std::fmt::Display for PgSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_match_the_documented_ones() {
        let config = RegistryConfig::try_parse_from(["dynamic-mcp-registry"]).unwrap();
        assert_eq!(config.listen, "127.0.0.1:50051".parse().unwrap());
        assert_eq!(config.backend, Backend::File);
        assert_eq!(config.store, PathBuf::from(".dynamic-mcp/tools.json"));
        assert_eq!(config.max_tools, 256);
        assert_eq!(config.retention(), Retention::default());
        assert!(!config.exit_with_parent);
        let postgres = config.postgres;
        assert_eq!(postgres.url, None);
        assert_eq!(postgres.schema.as_str(), "dynamic_mcp");
        assert_eq!(postgres.init_max_attempts, 30);
        assert_eq!(postgres.init_backoff_ms, 500);
        assert_eq!(postgres.acquire_timeout_ms, 5000);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(RegistryConfig::try_parse_from(["r", "--max-tools", "0"]).is_err());
        assert!(RegistryConfig::try_parse_from(["r", "--backend", "mysql"]).is_err());
        assert!(RegistryConfig::try_parse_from(["r", "--listen", "nowhere"]).is_err());
        assert!(RegistryConfig::try_parse_from(["r", "--pg-init-max-attempts", "0"]).is_err());
        assert!(RegistryConfig::try_parse_from(["r", "--pg-init-backoff-ms", "0"]).is_err());
    }

    #[test]
    fn the_postgres_backend_is_selectable() {
        let config = RegistryConfig::try_parse_from([
            "r",
            "--backend",
            "postgres",
            "--pg-url",
            "postgres://u:p@db/tools",
            "--pg-schema",
            "tools_v2",
        ])
        .unwrap();
        assert_eq!(config.backend, Backend::Postgres);
        assert_eq!(config.postgres.url.unwrap().expose(), "postgres://u:p@db/tools");
        assert_eq!(config.postgres.schema.as_str(), "tools_v2");
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["dynamic_mcp", "_x", "a1", &"s".repeat(48)] {
            assert!(good.parse::<PgSchema>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "Tools",
            "a-b",
            "a b",
            "x\"; drop",
            "pg_tools",
            &"s".repeat(49),
        ] {
            let err = bad.parse::<PgSchema>().unwrap_err();
            assert!(err.contains("is not a plain schema name"), "{bad}: {err}");
        }
    }

    #[test]
    fn urls_never_show_their_password() {
        let url: PgUrl = "postgres://registry:s3cr%40t@db:5432/tools?sslmode=require"
            .parse()
            .unwrap();
        assert_eq!(url.to_string(), "postgres://registry:***@db:5432/tools?sslmode=require");
        assert!(!format!("{url:?}").contains("s3cr"));
        let url: PgUrl = "postgresql://db/tools?user=r&password=hunter2&sslmode=disable"
            .parse()
            .unwrap();
        assert_eq!(
            url.to_string(),
            "postgresql://db/tools?user=r&password=***&sslmode=disable"
        );
        let url: PgUrl = "postgres://registry@db/tools".parse().unwrap();
        assert_eq!(url.to_string(), "postgres://registry@db/tools");
        let url: PgUrl = "not a url with secret".parse().unwrap();
        assert!(!url.to_string().contains("secret"));
    }
}
