//! The egress settings, part of the executor's configuration (flattened
//! into `ExecutorConfig`), each both a flag and an `MCP_*` variable.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;

use super::allow_list::{IpNetwork, Rule, Target};

/// The default place for the containers' socket directories (egress
/// proxies, per-tool channels); it must be the same
/// directory for the executor and the Docker engine (see `--egress-socket-host-dir`).
pub const DEFAULT_SOCKET_DIR: &str = "/tmp/dynamic-mcp-egress";

#[derive(Debug, Clone, Args)]
pub struct EgressArgs {
    /// The hosts code may ever reach, comma-separated: the ceiling for every
    /// tool's and session's network.allow. Entries: api.example.com,
    /// *.example.com, either with :port (none: 443 and 80; :* any port), or
    /// * for any name. Empty (the default): no code gets any network.
    #[arg(
        long = "egress-allowed-hosts",
        env = "MCP_SANDBOX_EGRESS_ALLOWED_HOSTS",
        default_value = ""
    )]
    pub allowed_hosts: RuleList,

    /// Let network.allow (and the ceiling, and secrets' hosts) hold IP
    /// addresses and CIDRs, and code connect to IP addresses.
    #[arg(long = "egress-allow-ip-literals", env = "MCP_SANDBOX_EGRESS_ALLOW_IP_LITERALS", value_parser = clap::builder::FalseyValueParser::new(), default_value_t = false)]
    pub allow_ip_literals: bool,

    /// Let code send plain http:// requests (checked by their Host header).
    /// Off: only TLS through CONNECT.
    #[arg(long = "egress-allow-plain-http", env = "MCP_SANDBOX_EGRESS_ALLOW_PLAIN_HTTP", value_parser = clap::builder::FalseyValueParser::new(), default_value_t = false)]
    pub allow_plain_http: bool,

    /// Networks the proxy may connect to although they are internal
    /// (loopback, link-local, private, the executor's own), comma-separated
    /// CIDRs such as 10.20.0.0/16. Empty: none.
    #[arg(
        long = "egress-allowed-networks",
        env = "MCP_SANDBOX_EGRESS_ALLOWED_NETWORKS",
        default_value = ""
    )]
    pub allowed_networks: NetworkList,

    /// Names the proxy resolves to fixed addresses instead of asking DNS,
    /// comma-separated name=ip pairs (e.g. api.internal=10.20.0.5). The
    /// address checks apply to them as to any other.
    #[arg(long = "egress-resolve", env = "MCP_SANDBOX_EGRESS_RESOLVE", default_value = "")]
    pub resolve: PinList,

    /// Where the executor makes each egress run's directory (its proxy
    /// socket, mounted into that run only) and each per-tool container's
    /// (its channel socket). Must be on the Docker engine's machine, and
    /// ours or root's, writable by its owner only (created 0711 if missing).
    #[arg(long = "egress-socket-dir", env = "MCP_SANDBOX_EGRESS_SOCKET_DIR", default_value = DEFAULT_SOCKET_DIR)]
    pub socket_dir: PathBuf,

    /// The same directory as the Docker engine sees it, when the executor
    /// runs in a container and sees it elsewhere. Unset: the same path.
    #[arg(long = "egress-socket-host-dir", env = "MCP_SANDBOX_EGRESS_SOCKET_HOST_DIR")]
    pub socket_host_dir: Option<PathBuf>,

    /// A CA bundle (PEM, a path for the executor) the proxy trusts besides
    /// the public roots when it talks TLS to servers itself (runs with
    /// secrets), e.g. for a TLS-intercepting corporate proxy.
    #[arg(long = "egress-upstream-ca-file", env = "MCP_SANDBOX_EGRESS_UPSTREAM_CA_FILE")]
    pub upstream_ca_file: Option<PathBuf>,

    /// The operator's secrets: a JSON file {"secrets": [{"name", "value",
    /// "hosts"}]}. Tools declare the names they use; code sees placeholders,
    /// and the proxy puts a value only into requests to its hosts.
    #[arg(long = "secrets-file", env = "MCP_SANDBOX_SECRETS_FILE")]
    pub secrets_file: Option<PathBuf>,

    /// Connections one run may have open through the proxy at once.
    #[arg(long = "egress-max-connections", env = "MCP_SANDBOX_EGRESS_MAX_CONNECTIONS", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_connections: u32,
}

/// A comma-separated list of allow-list entries; may be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleList(pub Vec<Rule>);

impl FromStr for RuleList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        split(s)
            .map(|entry| entry.parse::<Rule>().map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// A comma-separated list of CIDRs; may be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkList(pub Vec<IpNetwork>);

impl FromStr for NetworkList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        split(s)
            .map(|entry| entry.parse::<IpNetwork>().map_err(|e| format!("'{entry}': {e}")))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// Comma-separated `name=ip` pairs; may be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinList(pub Vec<(String, IpAddr)>);

impl FromStr for PinList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        split(s)
            .map(|pair| {
                let (name, ip) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("'{pair}' is not name=ip (e.g. api.internal=10.20.0.5)"))?;
                let name = match Target::parse(name) {
                    Ok(Target::Name(name)) => name,
                    _ => return Err(format!("'{name}' is not a host name")),
                };
                let ip = ip
                    .trim()
                    .parse::<IpAddr>()
                    .map_err(|_| format!("'{ip}' is not an IP address"))?;
                Ok((name, ip))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

fn split(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty())
}
