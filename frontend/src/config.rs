//! The frontend's settings: every one is a flag and an `MCP_*` variable.

use clap::{Parser, ValueEnum};
use dynamic_mcp_common::addr::ServiceUrl;
use dynamic_mcp_common::telemetry::LogArgs;

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

    /// The executor's gRPC address (http://host:port or unix:/path). Unset:
    /// start `dynamic-mcp-executor` locally.
    #[arg(long, env = "MCP_EXECUTOR_URL")]
    pub executor_url: Option<ServiceUrl>,

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
    /// port, e.g. `https://app.example.com:443,http://localhost:*`. Empty: the
    /// Origin header is not checked.
    #[arg(long, env = "MCP_ALLOWED_ORIGINS", value_delimiter = ',')]
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

    #[command(flatten)]
    pub log: LogArgs,
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
        assert_eq!(config.executor_url, None);
        assert_eq!(config.allowed_hosts, ["localhost", "127.0.0.1", "::1"]);
        assert!(config.allowed_origins.is_empty());
        assert!(config.http_legacy_sessions);
    }

    #[test]
    fn parses_lists_urls_and_booleans() {
        let config = parse(&[
            "--transport=http",
            "--allowed-hosts=mcp.example.com,localhost",
            "--allowed-origins=https://app.example.com:443",
            "--registry-url=unix:/run/registry.sock",
            "--executor-url=http://executor:50052",
            "--http-legacy-sessions=false",
        ])
        .unwrap();
        assert_eq!(config.transport, Transport::Http);
        assert_eq!(config.allowed_hosts, ["mcp.example.com", "localhost"]);
        assert_eq!(config.allowed_origins, ["https://app.example.com:443"]);
        assert_eq!(config.registry_url, Some(ServiceUrl::Unix("/run/registry.sock".into())));
        assert!(matches!(config.executor_url, Some(ServiceUrl::Http(_))));
        assert!(!config.http_legacy_sessions);
    }

    #[test]
    fn rejects_bad_values_with_a_message() {
        let err = parse(&["--registry-url=localhost:1"]).unwrap_err().to_string();
        assert!(err.contains("http://host:port"), "{err}");
        let err = parse(&["--path=mcp"]).unwrap_err().to_string();
        assert!(err.contains("absolute path"), "{err}");
        assert!(parse(&["--transport=ws"]).is_err());
    }
}
