//! The registry's settings: every one is a flag and an MCP_* variable.

use std::path::PathBuf;

use dynamic_mcp_common::addr::ListenAddr;
use dynamic_mcp_common::telemetry::LogArgs;

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

    /// Stop when standard input closes; set by `dynamic-mcp` when it starts this service.
    #[arg(long, env = "MCP_EXIT_WITH_PARENT", value_parser = clap::builder::BoolishValueParser::new())]
    pub exit_with_parent: bool,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// One JSON file, written atomically; one registry process per file.
    File,
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
        assert!(!config.exit_with_parent);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(RegistryConfig::try_parse_from(["r", "--max-tools", "0"]).is_err());
        assert!(RegistryConfig::try_parse_from(["r", "--backend", "postgres"]).is_err());
        assert!(RegistryConfig::try_parse_from(["r", "--listen", "nowhere"]).is_err());
    }
}
