//! The frontend's settings: every one is a flag and an `MCP_*` variable,
//! except the admin token itself, which is read from the environment only
//! (MCP_ADMIN_TOKEN) so that it never shows in the process list.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser, ValueEnum};
use dynamic_mcp_common::addr::ServiceUrl;
use dynamic_mcp_common::internal_auth::InternalAuthArgs;
use dynamic_mcp_common::telemetry::LogArgs;
use url::Url;

use crate::auth::failed_auth;

/// dynamic-mcp: an MCP server whose tools are created, changed and removed at
/// run time, and run in hardened Docker containers.
///
/// It serves MCP over stdio (default) or Streamable HTTP. It needs a registry
/// (tool definitions) and an executor (runs code in Docker). When
/// MCP_REGISTRY_URL or MCP_EXECUTOR_URL is unset, it starts that service itself
/// on a private Unix socket and passes its own environment on to it, so one
/// command runs everything; `dynamic-mcp-registry --help` and
/// `dynamic-mcp-executor --help` list the settings those services read.
#[derive(Debug, Clone, Parser)]
#[command(name = "dynamic-mcp", version)]
pub struct FrontendConfig {
    /// How MCP clients reach this server.
    #[arg(long, env = "MCP_TRANSPORT", value_enum, default_value_t = Transport::Stdio)]
    pub transport: Transport,

    /// HTTP mode: the address to listen on.
    #[arg(long, env = "MCP_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// HTTP mode: the port to listen on.
    #[arg(long, env = "MCP_PORT", default_value_t = 8788)]
    pub port: u16,

    /// HTTP mode: the path of the MCP endpoint.
    #[arg(long, env = "MCP_PATH", default_value = "/mcp", value_parser = parse_mcp_path)]
    pub path: String,

    /// The registry's gRPC address (http://host:port or unix:/path). Unset:
    /// start `dynamic-mcp-registry` locally.
    #[arg(long, env = "MCP_REGISTRY_URL")]
    pub registry_url: Option<ServiceUrl>,

    /// The executors' gRPC addresses (http://host:port or unix:/path),
    /// comma-separated. With several, runs and new sessions spread over the
    /// healthy ones by load, and each session's calls go to its own. Unset:
    /// start `dynamic-mcp-executor` locally.
    #[arg(long = "executor-url", env = "MCP_EXECUTOR_URL", value_delimiter = ',')]
    pub executor_urls: Vec<ServiceUrl>,

    /// HTTP mode: comma-separated Host header values to accept (DNS-rebinding
    /// protection). Add your public host name when serving beyond loopback;
    /// empty accepts any Host (not recommended).
    #[arg(
        long,
        env = "MCP_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1"
    )]
    pub allowed_hosts: Vec<String>,

    /// HTTP mode: comma-separated browser origins to accept, with scheme and
    /// port, e.g. `https://app.example.com:443,http://localhost:*`. A request
    /// with another Origin header is refused (403); requests without one pass.
    /// Empty: the Origin header is not checked (not recommended).
    #[arg(
        long,
        env = "MCP_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = "http://localhost:*,http://127.0.0.1:*,http://[::1]:*"
    )]
    pub allowed_origins: Vec<String>,

    /// HTTP mode: give clients of protocol versions before 2026-07-28
    /// sessions and a GET stream, so they receive tools/list_changed. `false`
    /// serves them statelessly, so any replica can answer any request.
    #[arg(
        long,
        env = "MCP_HTTP_LEGACY_SESSIONS",
        default_value_t = true,
        action = clap::ArgAction::Set,
    )]
    pub http_legacy_sessions: bool,

    /// File holding the admin token (one line). When an admin token is set
    /// (here, or in the environment variable MCP_ADMIN_TOKEN — never as a flag,
    /// so it stays out of the process list), the `dynamic.tool.*`,
    /// `sandbox.*` and `run_js_ephemeral` tools require it: in the
    /// X-MCP-Admin-Token HTTP header or the `adminToken` argument. Set only
    /// one of the two.
    #[arg(long, env = "MCP_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Refuse every change to dynamic tools (create, update, delete, enable):
    /// for catalogs that are managed elsewhere and must not change at run time.
    #[arg(
        long = "read-only",
        env = "MCP_DYNAMIC_READ_ONLY",
        default_value_t = false,
        value_parser = BoolishValueParser::new(),
        action = ArgAction::Set,
    )]
    pub read_only: bool,

    #[command(flatten)]
    pub jwt: JwtArgs,

    #[command(flatten)]
    pub http_limits: HttpLimitsArgs,

    #[command(flatten)]
    pub guard: GuardArgs,

    #[command(flatten)]
    pub failed_auth: FailedAuthArgs,

    #[command(flatten)]
    pub audit: AuditArgs,

    #[command(flatten)]
    pub internal_auth: InternalAuthArgs,

    /// The name the registry's and executor's TLS certificates must carry
    /// (default: the host of their URL, or `localhost` for a Unix socket).
    #[arg(long, env = "MCP_INTERNAL_TLS_SERVER_NAME")]
    pub internal_tls_server_name: Option<String>,

    #[command(flatten)]
    pub log: LogArgs,
}

/// HTTP mode: OAuth 2.1 resource server settings (the MCP authorization spec).
#[derive(Debug, Clone, clap::Args)]
pub struct JwtArgs {
    /// HTTP mode: `jwt` requires `Authorization: Bearer <JWT>` on every MCP
    /// request, checked against the authorization server's JWKS. stdio never
    /// uses it.
    #[arg(long = "auth-mode", env = "MCP_AUTH_MODE", value_enum, default_value_t = AuthMode::None)]
    pub mode: AuthMode,

    /// jwt mode: the URL of the authorization server's JSON Web Key Set.
    #[arg(long = "auth-jwks-url", env = "MCP_AUTH_JWKS_URL")]
    pub jwks_url: Option<Url>,

    /// jwt mode: the `iss` every token must carry; also announced as the
    /// authorization server in the protected resource metadata.
    #[arg(long = "auth-issuer", env = "MCP_AUTH_ISSUER")]
    pub issuer: Option<String>,

    /// jwt mode: the `aud` every token must carry (default: the resource URL).
    #[arg(long = "auth-audience", env = "MCP_AUTH_AUDIENCE")]
    pub audience: Option<String>,

    /// jwt mode: scopes every token must carry, separated by spaces or commas;
    /// a token without them gets 403 insufficient_scope.
    #[arg(long = "auth-required-scopes", env = "MCP_AUTH_REQUIRED_SCOPES", value_parser = parse_scopes, default_value = "")]
    pub required_scopes: ScopeList,

    /// jwt mode: the scope that grants the admin tools (`dynamic.tool.*`,
    /// `sandbox.*`, `run_js_ephemeral`) without the admin token. In jwt mode those tools always
    /// need this scope or the admin token; empty leaves them to any
    /// authenticated caller unless MCP_ADMIN_TOKEN is set.
    #[arg(long = "auth-admin-scope", env = "MCP_AUTH_ADMIN_SCOPE", default_value = "mcp:admin")]
    pub admin_scope: String,

    /// jwt mode: this server's canonical URL, e.g. https://mcp.example.com/mcp,
    /// used in the protected resource metadata and WWW-Authenticate (default:
    /// http://MCP_HOST:MCP_PORT + MCP_PATH).
    #[arg(long = "auth-resource-url", env = "MCP_AUTH_RESOURCE_URL")]
    pub resource_url: Option<Url>,

    /// jwt mode: seconds of clock skew allowed when checking `exp` and `nbf`.
    #[arg(long = "auth-leeway-secs", env = "MCP_AUTH_LEEWAY_SECS", default_value_t = 30)]
    pub leeway_secs: u64,

    /// jwt mode: how often the JWKS is fetched again, in seconds.
    #[arg(long = "auth-jwks-refresh-secs", env = "MCP_AUTH_JWKS_REFRESH_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub jwks_refresh_secs: u64,

    /// jwt mode: the shortest time between two JWKS fetches caused by tokens
    /// with an unknown key id, in milliseconds (limits what bad tokens cost).
    #[arg(
        long = "auth-jwks-min-refetch-ms",
        env = "MCP_AUTH_JWKS_MIN_REFETCH_MS",
        default_value_t = 30_000
    )]
    pub jwks_min_refetch_ms: u64,
}

/// How HTTP clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// No authentication (bind to loopback, or put a proxy in front).
    None,
    /// Bearer JWTs from an OAuth 2.1 authorization server.
    Jwt,
}

/// Scopes, in the order given, without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeList(pub Vec<String>);

fn parse_scopes(text: &str) -> Result<ScopeList, String> {
    let mut scopes = Vec::new();
    for scope in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
    {
        if scope.contains('"') || scope.contains('\\') {
            return Err(format!(
                "'{scope}' is not a scope: scopes cannot contain quotes or backslashes"
            ));
        }
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    Ok(ScopeList(scopes))
}

/// The execution guard shared by every client of this process.
#[derive(Debug, Clone, clap::Args)]
pub struct GuardArgs {
    /// Tool calls (dynamic runs, admin and sandbox tools) that may run at once
    /// in this process; more are refused with a retry hint, not queued.
    #[arg(long = "tool-max-concurrency", env = "MCP_TOOL_MAX_CONCURRENCY", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: u32,

    /// Tool calls one caller may make per scope (dynamic, admin, sandbox,
    /// system) within MCP_TOOL_RATE_WINDOW_MS.
    #[arg(long = "tool-max-calls-per-window", env = "MCP_TOOL_MAX_CALLS_PER_WINDOW", default_value_t = 300,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_calls_per_window: u32,

    /// The sliding window of the rate limit, in milliseconds.
    #[arg(long = "tool-rate-window-ms", env = "MCP_TOOL_RATE_WINDOW_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_window_ms: u64,
}

/// HTTP mode: how many connections, streams and sessions, and for how long.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpLimitsArgs {
    /// HTTP mode: open connections at most; one more is answered 503 and
    /// closed (mcp_http_connections_refused_total counts them). Keep it
    /// below the process's open-file limit.
    #[arg(long = "http-max-connections", env = "MCP_HTTP_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// HTTP mode: milliseconds from a request's first byte to the end of its
    /// headers; a slower client is disconnected (slowloris).
    #[arg(long = "http-header-read-timeout-ms", env = "MCP_HTTP_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,

    /// HTTP mode: milliseconds a request body may take to arrive; a slower
    /// (or stalled) upload is answered 408 and the memory it held is freed.
    #[arg(long = "http-body-read-timeout-ms", env = "MCP_HTTP_BODY_READ_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_ms: u64,

    /// HTTP mode: milliseconds a kept-alive connection with no request in
    /// progress stays open. A long-lived stream (subscriptions/listen, the
    /// legacy GET stream) is a request in progress, so it is never idle.
    #[arg(long = "http-idle-timeout-ms", env = "MCP_HTTP_IDLE_TIMEOUT_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_ms: u64,

    /// HTTP mode: long-lived response streams (2026-07-28
    /// subscriptions/listen, the legacy GET stream) open at once; another is
    /// answered 503.
    #[arg(long = "http-max-streams", env = "MCP_HTTP_MAX_STREAMS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: u32,

    /// HTTP mode: legacy sessions (MCP_HTTP_LEGACY_SESSIONS) open at once;
    /// another `initialize` is answered 503. A session ends on DELETE or
    /// after 5 minutes without use.
    #[arg(long = "http-max-legacy-sessions", env = "MCP_HTTP_MAX_LEGACY_SESSIONS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_legacy_sessions: u32,
}

/// Back-off after failed credential checks (a wrong admin token, an invalid
/// bearer token), per caller and per client address; separate from the
/// guard's rate limit, so guessing never uses up anyone else's budget.
#[derive(Debug, Clone, clap::Args)]
pub struct FailedAuthArgs {
    /// Failed checks a caller (or client address) may make before it has to
    /// back off.
    #[arg(long = "auth-failures-before-backoff", env = "MCP_AUTH_FAILURES_BEFORE_BACKOFF",
          default_value_t = failed_auth::DEFAULT_FAILURES_BEFORE_BACKOFF,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub failures_before_backoff: u32,

    /// The first back-off, in milliseconds; it doubles with every further
    /// failure.
    #[arg(long = "auth-backoff-base-ms", env = "MCP_AUTH_BACKOFF_BASE_MS",
          default_value_t = failed_auth::DEFAULT_BACKOFF_BASE_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub backoff_base_ms: u64,

    /// The longest back-off, in milliseconds.
    #[arg(long = "auth-backoff-max-ms", env = "MCP_AUTH_BACKOFF_MAX_MS",
          default_value_t = failed_auth::DEFAULT_BACKOFF_MAX_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub backoff_max_ms: u64,
}

/// The audit log: one JSON line per privileged or runtime action.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Write the audit log.
    #[arg(
        long = "audit-enabled",
        env = "MCP_AUDIT_ENABLED",
        default_value_t = true,
        value_parser = BoolishValueParser::new(),
        action = ArgAction::Set,
    )]
    pub enabled: bool,

    /// The audit log file (JSON lines); its directory is created if missing.
    #[arg(
        long = "audit-file",
        env = "MCP_AUDIT_FILE",
        default_value = ".dynamic-mcp/audit.log"
    )]
    pub file: PathBuf,

    /// The largest audit line in bytes; a larger event keeps its other fields
    /// and gets `details: {truncated: true, originalBytes}`.
    #[arg(long = "audit-max-event-bytes", env = "MCP_AUDIT_MAX_EVENT_BYTES", default_value_t = 20_000,
          value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_event_bytes: u32,

    /// The size at which the audit file is rotated (FILE → FILE.1 → FILE.2 …).
    #[arg(long = "audit-max-file-bytes", env = "MCP_AUDIT_MAX_FILE_BYTES", default_value_t = 10 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(4096..))]
    pub max_file_bytes: u64,

    /// How many audit files to keep, the current one included.
    #[arg(long = "audit-max-files", env = "MCP_AUDIT_MAX_FILES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_files: u32,
}

/// How MCP clients reach this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// MCP frames on stdin/stdout; logs on stderr.
    Stdio,
    /// Streamable HTTP at MCP_HOST:MCP_PORT + MCP_PATH.
    Http,
}

fn parse_mcp_path(path: &str) -> Result<String, String> {
    if path.starts_with('/') && path.len() > 1 && !path.ends_with('/') {
        Ok(path.to_owned())
    } else {
        Err(format!(
            "'{path}' is not an endpoint path: use an absolute path like /mcp, without a trailing slash"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<FrontendConfig, clap::Error> {
        FrontendConfig::try_parse_from(std::iter::once("dynamic-mcp").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_run_stdio_with_local_services() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.transport, Transport::Stdio);
        assert_eq!(
            (config.host.as_str(), config.port, config.path.as_str()),
            ("127.0.0.1", 8788, "/mcp")
        );
        assert_eq!(config.registry_url, None);
        assert!(config.executor_urls.is_empty());
        assert_eq!(config.allowed_hosts, ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(
            config.allowed_origins,
            ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]
        );
        assert!(config.http_legacy_sessions);
        assert_eq!(config.admin_token_file, None);
        assert!(!config.read_only);
        assert_eq!(config.jwt.mode, AuthMode::None);
        assert_eq!(config.jwt.admin_scope, "mcp:admin");
        assert_eq!(config.jwt.leeway_secs, 30);
        assert!(config.jwt.required_scopes.0.is_empty());
        assert_eq!(
            (
                config.guard.max_concurrency,
                config.guard.max_calls_per_window,
                config.guard.rate_window_ms
            ),
            (8, 300, 60_000)
        );
        let http = &config.http_limits;
        assert_eq!(
            (
                http.max_connections,
                http.header_read_timeout_ms,
                http.body_read_timeout_ms,
                http.idle_timeout_ms,
                http.max_streams,
                http.max_legacy_sessions
            ),
            (1024, 10_000, 30_000, 60_000, 256, 256)
        );
        let failed_auth = &config.failed_auth;
        assert_eq!(
            (
                failed_auth.failures_before_backoff,
                failed_auth.backoff_base_ms,
                failed_auth.backoff_max_ms
            ),
            (5, 1000, 300_000)
        );
        assert!(config.audit.enabled);
        assert_eq!(config.audit.file, PathBuf::from(".dynamic-mcp/audit.log"));
        assert_eq!(
            (
                config.audit.max_event_bytes,
                config.audit.max_file_bytes,
                config.audit.max_files
            ),
            (20_000, 10 * 1024 * 1024, 5)
        );
    }

    #[test]
    fn scopes_split_on_spaces_and_commas() {
        let config = parse(&["--auth-required-scopes=tools:call, files:read tools:call"]).unwrap();
        assert_eq!(config.jwt.required_scopes.0, ["tools:call", "files:read"]);
        assert!(parse(&["--auth-required-scopes=a\"b"]).is_err());
    }

    #[test]
    fn there_is_no_flag_for_the_admin_token_itself() {
        let err = parse(&["--admin-token=secret"]).unwrap_err().to_string();
        assert!(err.contains("unexpected argument"), "{err}");
    }

    #[test]
    fn parses_lists_urls_and_booleans() {
        let config = parse(&[
            "--transport=http",
            "--allowed-hosts=mcp.example.com,localhost",
            "--allowed-origins=https://app.example.com:443",
            "--registry-url=unix:/run/registry.sock",
            "--executor-url=http://executor-a:50052,unix:/run/executor-b.sock",
            "--http-legacy-sessions=false",
            "--read-only=yes",
            "--audit-enabled=0",
        ])
        .unwrap();
        assert_eq!(config.transport, Transport::Http);
        assert_eq!(config.allowed_hosts, ["mcp.example.com", "localhost"]);
        assert_eq!(config.allowed_origins, ["https://app.example.com:443"]);
        assert_eq!(config.registry_url, Some(ServiceUrl::Unix("/run/registry.sock".into())));
        assert!(matches!(
            config.executor_urls.as_slice(),
            [ServiceUrl::Http(_), ServiceUrl::Unix(path)] if path.to_str() == Some("/run/executor-b.sock")
        ));
        assert!(!config.http_legacy_sessions);
        assert!(config.read_only);
        assert!(!config.audit.enabled);
    }

    #[test]
    fn rejects_bad_values_with_a_message() {
        let err = parse(&["--registry-url=localhost:1"]).unwrap_err().to_string();
        assert!(err.contains("http://host:port"), "{err}");
        let err = parse(&["--path=mcp"]).unwrap_err().to_string();
        assert!(err.contains("absolute path"), "{err}");
        assert!(parse(&["--transport=ws"]).is_err());
        assert!(parse(&["--tool-max-concurrency=0"]).is_err());
        assert!(parse(&["--audit-max-event-bytes=10"]).is_err());
    }
}
