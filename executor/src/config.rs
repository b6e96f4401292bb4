//! Every setting of the executor, each both a flag and an `MCP_*` variable.
//! Values are checked when they are parsed, so a bad one stops the process at
//! start with a message naming the setting.

use std::time::Duration;

use clap::Parser;
use dynamic_mcp_common::addr::ListenAddr;
use dynamic_mcp_common::internal_auth::InternalAuthArgs;
use dynamic_mcp_common::limits;
use dynamic_mcp_common::telemetry::LogArgs;

use dynamic_mcp_proto::v1::{Isolation, SandboxDescription};

use crate::container::hardening::{SandboxLimits, nano_cpus};
use crate::container::pool::PoolSettings;
use crate::deps::InstallSettings;
use crate::egress::settings::EgressArgs;
use crate::harness::{PerToolHarness, Realm};
use crate::per_tool::PerToolSettings;
use crate::policy::Policy;
use crate::session::SessionSettings;
use crate::setting_values::{
    ByteSize, ImageList, NameList, SandboxUser, parse_cpus, parse_docker_name, parse_executor_id, parse_host_path,
    parse_max_dependencies, parse_memory, parse_registry,
};

/// Runs dynamic-mcp tool code in hardened, throwaway Docker containers.
/// This is the only dynamic-mcp process that talks to Docker.
#[derive(Debug, Clone, Parser)]
#[command(name = "dynamic-mcp-executor", version)]
pub struct ExecutorConfig {
    /// Where the gRPC service listens: host:port or unix:/path/to.sock.
    #[arg(long, env = "MCP_EXECUTOR_LISTEN", default_value = "127.0.0.1:50052")]
    pub listen: ListenAddr,

    /// This executor's name, stamped on its containers' labels so that two
    /// executors sharing one Docker engine never remove each other's containers.
    #[arg(long, env = "MCP_EXECUTOR_ID", default_value = "default", value_parser = parse_executor_id)]
    pub executor_id: String,

    /// Images tools may run in: a comma-separated list of exact references
    /// (digests allowed). The first is the default.
    #[arg(
        long,
        env = "MCP_SANDBOX_ALLOWED_IMAGES",
        default_value = "dynamic-mcp-sandbox:latest"
    )]
    pub allowed_images: ImageList,

    /// Memory per run (no swap on top), docker style: 512m, 1g, 65536k.
    #[arg(long, env = "MCP_SANDBOX_MEMORY_LIMIT", default_value = "512m", value_parser = parse_memory)]
    pub memory_limit: ByteSize,

    /// CPUs per run; fractions allowed (0.5 = half a CPU).
    #[arg(long, env = "MCP_SANDBOX_CPU_LIMIT", default_value_t = 1.0, value_parser = parse_cpus)]
    pub cpu_limit: f64,

    /// Processes and threads per run (Node itself needs about a dozen).
    #[arg(long, env = "MCP_SANDBOX_PIDS_LIMIT", default_value_t = 128, value_parser = clap::value_parser!(i64).range(16..))]
    pub pids_limit: i64,

    /// Bytes of stdout and of stderr kept per run; the rest is counted and dropped.
    #[arg(long, env = "MCP_SANDBOX_MAX_OUTPUT_BYTES", default_value_t = 200_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_output_bytes: u32,

    /// The longest timeout a tool may ask for, in milliseconds; the default is also the highest allowed.
    #[arg(long, env = "MCP_SANDBOX_MAX_TIMEOUT_MS", default_value_t = limits::MAX_TIMEOUT_MS_CEILING, value_parser = clap::value_parser!(u32).range(i64::from(limits::MIN_TIMEOUT_MS)..=i64::from(limits::MAX_TIMEOUT_MS_CEILING)))]
    pub max_timeout_ms: u32,

    /// The timeout of tools that set none, in milliseconds (lowered to the max if above it).
    #[arg(long, env = "MCP_SANDBOX_DEFAULT_TIMEOUT_MS", default_value_t = limits::DEFAULT_TIMEOUT_MS, value_parser = clap::value_parser!(u32).range(i64::from(limits::MIN_TIMEOUT_MS)..=i64::from(limits::MAX_TIMEOUT_MS_CEILING)))]
    pub default_timeout_ms: u32,

    /// The user code runs as, as numeric uid:gid; never root. Numeric so
    /// the executor can give every tmpfs to this user on any image.
    #[arg(long, env = "MCP_SANDBOX_USER", default_value = "65534:65534")]
    pub user: SandboxUser,

    /// Size of each run's writable, noexec /tmp.
    #[arg(long, env = "MCP_SANDBOX_TMPFS_SIZE", default_value = "16m")]
    pub tmpfs_size: ByteSize,

    /// Size of each run's writable, noexec working directory /work.
    #[arg(long, env = "MCP_SANDBOX_WORKDIR_SIZE", default_value = "16m")]
    pub workdir_size: ByteSize,

    /// npm packages tools may never depend on, comma-separated. Matched
    /// case-insensitively against the name and its unscoped part.
    #[arg(
        long,
        env = "MCP_SANDBOX_BLOCKED_PACKAGES",
        default_value = "child_process,node-pty,npm,pm2"
    )]
    pub blocked_packages: NameList,

    /// The most npm dependencies one tool may declare (at most 64).
    #[arg(long, env = "MCP_SANDBOX_MAX_DEPENDENCIES", default_value_t = limits::MAX_DEPENDENCIES, value_parser = parse_max_dependencies)]
    pub max_dependencies: usize,

    /// The most containers this executor keeps at once; past it, runs are
    /// refused at once with "executor busy" instead of queueing.
    #[arg(long, env = "MCP_EXECUTOR_MAX_CONTAINERS", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_containers: u32,

    /// The warm pool's smallest size: run containers kept started ahead of
    /// time per image and dependency set in use (the default image's from
    /// the start), so a run skips container start-up. Each is used once,
    /// then removed, and holds one of MCP_EXECUTOR_MAX_CONTAINERS while it
    /// waits. The pool grows with demand up to MCP_EXECUTOR_WARM_POOL_MAX.
    #[arg(long, env = "MCP_EXECUTOR_WARM_POOL_MIN", default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub warm_pool_min: u32,

    /// The warm pool's largest size per image and dependency set. 0 (with
    /// MCP_EXECUTOR_WARM_POOL_MIN=0) turns the pool off: every run starts
    /// its own container.
    #[arg(long, env = "MCP_EXECUTOR_WARM_POOL_MAX", default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub warm_pool_max: u32,

    /// A fixed warm pool size instead of MIN and MAX (both set to it); 0
    /// turns the pool off.
    #[arg(long, env = "MCP_EXECUTOR_WARM_POOL_SIZE", value_parser = clap::value_parser!(u32).range(0..=64))]
    pub warm_pool_size: Option<u32>,

    /// Seconds without a run after which an image and dependency set's pool
    /// shrinks: the default image's to MIN, any other's to nothing.
    #[arg(long, env = "MCP_EXECUTOR_WARM_POOL_IDLE_SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub warm_pool_idle_seconds: u64,

    /// Seconds a warm container may wait unused before it is replaced by a
    /// fresh one.
    #[arg(long, env = "MCP_EXECUTOR_WARM_POOL_MAX_AGE_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub warm_pool_max_age_seconds: u64,

    /// The isolation of tools that set none. container-per-call: every
    /// call gets a fresh hardened container. container-per-tool: calls of a
    /// tool revision share a long-lived hardened container, each call in a
    /// fresh JS realm (see MCP_SANDBOX_PER_TOOL_REALM and docs/SECURITY.md);
    /// tools with network access stay container-per-call.
    #[arg(long, env = "MCP_SANDBOX_ISOLATION", value_enum, default_value_t = IsolationMode::ContainerPerCall)]
    pub isolation: IsolationMode,

    /// Whether tools may use isolation container-per-tool at all; false
    /// refuses such tools (at creation and at every call) with an error
    /// naming this setting.
    #[arg(long, env = "MCP_SANDBOX_ALLOW_PER_TOOL", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_per_tool: bool,

    /// Where a per-tool container runs each call's code. worker: a fresh
    /// worker thread per call in one process (cheapest; a call can read the
    /// memory of calls running beside it). process: a fresh, pre-spawned
    /// process per call (each about a dozen of MCP_SANDBOX_PIDS_LIMIT).
    #[arg(long, env = "MCP_SANDBOX_PER_TOOL_REALM", value_enum, default_value_t = Realm::Worker)]
    pub per_tool_realm: Realm,

    /// The heap cap of each call in a per-tool container (worker threads;
    /// the container's MCP_SANDBOX_MEMORY_LIMIT caps all calls together).
    #[arg(long, env = "MCP_SANDBOX_PER_TOOL_HEAP", default_value = "128m", value_parser = parse_memory)]
    pub per_tool_heap: ByteSize,

    /// Calls one per-tool container runs at once; more wait for a place.
    #[arg(long, env = "MCP_SANDBOX_PER_TOOL_MAX_CALLS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub per_tool_max_calls: u32,

    /// Per-tool containers one tool revision may have at once: another
    /// starts when each runs half of MCP_SANDBOX_PER_TOOL_MAX_CALLS (each
    /// gets MCP_SANDBOX_PER_TOOL_CPU_LIMIT), the extra ones go when idle.
    #[arg(long, env = "MCP_SANDBOX_PER_TOOL_MAX_CONTAINERS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub per_tool_max_containers: u32,

    /// CPUs of each per-tool container (fractions allowed); unset, it gets
    /// MCP_SANDBOX_CPU_LIMIT like a run. Each call starts a fresh realm,
    /// which costs CPU: more than 1 lets a busy tool start several at once.
    #[arg(long, env = "MCP_SANDBOX_PER_TOOL_CPU_LIMIT", value_parser = parse_cpus)]
    pub per_tool_cpu_limit: Option<f64>,

    /// Seconds without a call after which a tool's per-tool container is
    /// removed (a new revision retires it at its next call). Each holds one
    /// of MCP_EXECUTOR_MAX_CONTAINERS while it lives.
    #[arg(long, env = "MCP_SANDBOX_PER_TOOL_IDLE_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub per_tool_idle_seconds: u64,

    /// The most sandbox sessions open at once, across all callers. Each also
    /// holds one of MCP_EXECUTOR_MAX_CONTAINERS while it lives.
    #[arg(long, env = "MCP_SANDBOX_MAX_SESSIONS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sessions: u32,

    /// Seconds a sandbox session may stay idle before it is removed.
    #[arg(long, env = "MCP_SANDBOX_SESSION_TIMEOUT_SECONDS", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..))]
    pub session_timeout_seconds: u64,

    /// A Docker network every sandbox session joins, all or nothing. Unset
    /// (the default): sessions have no network at all. RISK: once set,
    /// untrusted code in a session reaches whatever that network reaches
    /// (the internet, other containers, cloud metadata endpoints). Prefer
    /// per-session network.allow under MCP_SANDBOX_EGRESS_ALLOWED_HOSTS.
    #[arg(long, env = "MCP_SANDBOX_SESSION_NETWORK", value_parser = parse_docker_name)]
    pub session_network: Option<String>,

    /// The Docker network dependency installs use to reach the npm registry.
    /// Only install containers join it; runs and sessions never do.
    #[arg(long, env = "MCP_SANDBOX_INSTALL_NETWORK", default_value = "bridge", value_parser = parse_docker_name)]
    pub install_network: String,

    /// The npm registry installs use (http or https URL). Unset: npm's default.
    #[arg(long, env = "MCP_SANDBOX_NPM_REGISTRY", value_parser = parse_registry)]
    pub npm_registry: Option<String>,

    /// A CA bundle (PEM) installs trust, for a TLS-intercepting proxy: a path
    /// on the Docker host, mounted read-only into install containers only.
    #[arg(long, env = "MCP_SANDBOX_EXTRA_CA_FILE", value_parser = parse_host_path)]
    pub extra_ca_file: Option<String>,

    /// Seconds one dependency install may take before it is stopped.
    #[arg(long, env = "MCP_SANDBOX_INSTALL_TIMEOUT_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(10..))]
    pub install_timeout_seconds: u64,

    /// The Docker volume that caches installed dependency sets (one
    /// directory per image and set). Safe to delete while no executor runs.
    #[arg(long, env = "MCP_SANDBOX_DEPS_VOLUME", default_value = "dynamic-mcp-deps", value_parser = parse_docker_name)]
    pub deps_volume: String,

    /// Stop when standard input closes (set by `dynamic-mcp` when it starts
    /// this service, so the executor never outlives it).
    #[arg(long, env = "MCP_EXIT_WITH_PARENT", value_parser = clap::builder::FalseyValueParser::new(), default_value_t = false)]
    pub exit_with_parent: bool,

    #[command(flatten)]
    pub egress: EgressArgs,

    #[command(flatten)]
    pub internal_auth: InternalAuthArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

impl ExecutorConfig {
    /// What tools may ask for.
    pub fn policy(&self) -> Policy {
        Policy {
            allowed_images: self.allowed_images.0.clone(),
            default_timeout_ms: self.default_timeout_ms.min(self.max_timeout_ms),
            max_timeout_ms: self.max_timeout_ms,
            blocked_packages: self.blocked_packages.0.clone(),
            max_dependencies: self.max_dependencies,
            default_isolation: self.isolation.into(),
            per_tool_allowed: self.allow_per_tool,
        }
    }

    /// What callers are told about this executor's policy and limits.
    pub fn description(&self) -> SandboxDescription {
        let policy = self.policy();
        SandboxDescription {
            allowed_images: policy.allowed_images,
            min_timeout_ms: limits::MIN_TIMEOUT_MS,
            max_timeout_ms: policy.max_timeout_ms,
            default_timeout_ms: policy.default_timeout_ms,
            max_output_bytes: self.max_output_bytes.into(),
            max_dependencies: u32::try_from(policy.max_dependencies).unwrap_or(u32::MAX),
            blocked_packages: policy.blocked_packages,
            memory_limit: self.memory_limit.to_string(),
            cpu_limit: self.cpu_limit,
            executor_id: self.executor_id.clone(),
        }
    }

    /// What every container gets.
    pub fn limits(&self) -> SandboxLimits {
        SandboxLimits {
            memory: self.memory_limit.clone(),
            cpus: self.cpu_limit,
            pids: self.pids_limit,
            user: self.user,
            tmpfs: self.tmpfs_size.clone(),
            workdir: self.workdir_size.clone(),
        }
    }
}

impl ExecutorConfig {
    pub fn install_settings(&self) -> InstallSettings {
        InstallSettings {
            volume: self.deps_volume.clone(),
            network: self.install_network.clone(),
            registry: self.npm_registry.clone(),
            extra_ca_file: self.extra_ca_file.clone(),
            timeout: Duration::from_secs(self.install_timeout_seconds),
        }
    }

    /// `None` when the warm pool is off; an error when MIN is above MAX.
    pub fn pool_settings(&self) -> Result<Option<PoolSettings>, String> {
        let (min, max) = match self.warm_pool_size {
            Some(size) => (size, size),
            None => (self.warm_pool_min, self.warm_pool_max),
        };
        if min > max {
            return Err(format!(
                "MCP_EXECUTOR_WARM_POOL_MIN ({min}) is above MCP_EXECUTOR_WARM_POOL_MAX ({max})"
            ));
        }
        Ok((max > 0).then(|| PoolSettings {
            min: min as usize,
            max: max as usize,
            max_age: Duration::from_secs(self.warm_pool_max_age_seconds),
            idle_after: Duration::from_secs(self.warm_pool_idle_seconds),
        }))
    }

    /// An error when the default isolation is one the operator forbids.
    pub fn per_tool_settings(&self) -> Result<PerToolSettings, String> {
        if self.isolation == IsolationMode::ContainerPerTool && !self.allow_per_tool {
            return Err("MCP_SANDBOX_ISOLATION is container-per-tool, but MCP_SANDBOX_ALLOW_PER_TOOL is false".into());
        }
        let max_calls = match self.per_tool_realm {
            Realm::Worker => self.per_tool_max_calls,
            // Room for every call's process, and the spares, under the container's
            // pids limit (the supervisor never has more alive at once).
            Realm::Process => {
                let spares = i64::from(PER_TOOL_SPARES) * PROCESS_REALM_PIDS;
                let fit = (self.pids_limit - PER_TOOL_BASE_PIDS - spares) / PROCESS_REALM_PIDS;
                if fit < 1 {
                    return Err(format!(
                        "MCP_SANDBOX_PIDS_LIMIT={} leaves no room for a call's process in the per-tool process \
                         realm (MCP_SANDBOX_PER_TOOL_REALM=process needs at least {})",
                        self.pids_limit,
                        PER_TOOL_BASE_PIDS + spares + PROCESS_REALM_PIDS
                    ));
                }
                self.per_tool_max_calls.min(u32::try_from(fit).unwrap_or(1))
            }
        };
        Ok(PerToolSettings {
            harness: PerToolHarness {
                realm: self.per_tool_realm,
                heap_mb: (self.per_tool_heap.bytes >> 20).max(8),
                spares: PER_TOOL_SPARES,
            },
            max_calls: max_calls as usize,
            max_containers: self.per_tool_max_containers as usize,
            nano_cpus: self.per_tool_cpu_limit.map(nano_cpus),
            idle_after: Duration::from_secs(self.per_tool_idle_seconds),
        })
    }

    pub fn session_settings(&self) -> SessionSettings {
        SessionSettings {
            max_sessions: self.max_sessions,
            idle_timeout: Duration::from_secs(self.session_timeout_seconds),
            network: self.session_network.clone(),
            user: self.user,
            max_output_bytes: self.max_output_bytes as usize,
        }
    }
}

/// Realms a per-tool container keeps started ahead of its calls.
pub const PER_TOOL_SPARES: u32 = 2;

/// Threads of a per-tool container besides its calls' (supervisor, Node's
/// own), and of each call's process in the process realm.
const PER_TOOL_BASE_PIDS: i64 = 24;
const PROCESS_REALM_PIDS: i64 = 12;

/// MCP_SANDBOX_ISOLATION's values, as tools spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IsolationMode {
    ContainerPerCall,
    ContainerPerTool,
}

impl From<IsolationMode> for Isolation {
    fn from(mode: IsolationMode) -> Self {
        match mode {
            IsolationMode::ContainerPerCall => Self::ContainerPerCall,
            IsolationMode::ContainerPerTool => Self::ContainerPerTool,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ExecutorConfig, clap::Error> {
        ExecutorConfig::try_parse_from(std::iter::once("dynamic-mcp-executor").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.executor_id, "default");
        assert_eq!(config.allowed_images.0, ["dynamic-mcp-sandbox:latest"]);
        assert_eq!(config.memory_limit.bytes, 512 << 20);
        assert_eq!(config.pids_limit, 128);
        assert_eq!(config.user.to_string(), "65534:65534");
        assert_eq!(config.blocked_packages.0, ["child_process", "node-pty", "npm", "pm2"]);
        assert_eq!(config.policy().default_timeout_ms, 30_000);
        assert!(!config.exit_with_parent);
        assert_eq!(
            config.pool_settings(),
            Ok(Some(PoolSettings {
                min: 1,
                max: 4,
                max_age: Duration::from_secs(300),
                idle_after: Duration::from_secs(120),
            })),
            "the warm pool is on by default"
        );
        let policy = config.policy();
        assert_eq!(
            (policy.default_isolation, policy.per_tool_allowed),
            (Isolation::ContainerPerCall, true)
        );
        let per_tool = config.per_tool_settings().unwrap();
        assert_eq!(per_tool.harness.realm, Realm::Worker);
        assert_eq!((per_tool.harness.heap_mb, per_tool.max_calls), (128, 16));
        assert_eq!(per_tool.max_containers, 2);
        assert_eq!(per_tool.idle_after, Duration::from_secs(300));
        let sessions = config.session_settings();
        assert_eq!(sessions.max_sessions, 20);
        assert_eq!(sessions.idle_timeout, Duration::from_secs(1800));
        assert_eq!(sessions.network, None);
        let installs = config.install_settings();
        assert_eq!(installs.volume, "dynamic-mcp-deps");
        assert_eq!(installs.network, "bridge");
        assert_eq!((installs.registry, installs.extra_ca_file), (None, None));
        assert_eq!(installs.timeout, Duration::from_secs(300));
        assert!(config.egress.allowed_hosts.0.is_empty(), "no egress by default");
        assert!(!config.egress.allow_ip_literals && !config.egress.allow_plain_http);
        assert_eq!(config.egress.secrets_file, None);
    }

    #[test]
    fn egress_settings_are_checked() {
        let config = parse(&["--egress-allowed-hosts", "api.example.com, *.example.org:8443"]).unwrap();
        assert_eq!(config.egress.allowed_hosts.0.len(), 2);
        assert!(parse(&["--egress-allowed-hosts", "https://x"]).is_err());
        assert!(parse(&["--egress-allowed-networks", "10.0.0.0/8,172.30.0.0/16"]).is_ok());
        assert!(parse(&["--egress-allowed-networks", "10.0.0.1/8"]).is_err());
        assert!(parse(&["--egress-max-connections", "0"]).is_err());
    }

    #[test]
    fn install_and_session_settings_are_checked() {
        assert!(parse(&["--npm-registry", "ftp://x"]).is_err());
        assert!(parse(&["--npm-registry", "https://"]).is_err());
        assert!(parse(&["--npm-registry", "https://npm.example/"]).is_ok());
        assert!(parse(&["--extra-ca-file", "relative/ca.pem"]).is_err());
        assert!(parse(&["--extra-ca-file", "/etc/ssl/certs/ca-certificates.crt"]).is_ok());
        assert!(parse(&["--session-network", "bad name"]).is_err());
        assert!(parse(&["--deps-volume", "-x"]).is_err());
        assert!(parse(&["--max-sessions", "0"]).is_err());
        assert!(parse(&["--install-timeout-seconds", "1"]).is_err());
    }

    #[test]
    fn the_user_must_be_numeric_and_not_root() {
        for bad in ["root", "0", "0:0", "65534:0", "root:65534", "1000:root", "node", "1000"] {
            assert!(parse(&["--user", bad]).is_err(), "{bad} should be refused");
        }
        assert_eq!(
            parse(&["--user", "1000:1001"]).unwrap().user,
            SandboxUser { uid: 1000, gid: 1001 }
        );
        let err = parse(&["--user", "node"]).unwrap_err().to_string();
        assert!(err.contains("not a numeric uid:gid"), "{err}");
    }

    #[test]
    fn an_empty_allow_list_is_refused() {
        let err = parse(&["--allowed-images", " , "]).unwrap_err().to_string();
        assert!(err.contains("at least one image"), "{err}");
        let config = parse(&["--allowed-images", "a:1, b@sha256:abc"]).unwrap();
        assert_eq!(config.allowed_images.0, ["a:1", "b@sha256:abc"]);
    }

    #[test]
    fn the_default_timeout_is_lowered_to_the_max() {
        let config = parse(&["--max-timeout-ms", "5000", "--default-timeout-ms", "9000"]).unwrap();
        assert_eq!(config.policy().default_timeout_ms, 5000);
    }

    #[test]
    fn bad_numbers_are_refused() {
        assert!(parse(&["--memory-limit", "8m"]).is_err());
        assert!(parse(&["--cpu-limit", "0"]).is_err());
        assert!(parse(&["--cpu-limit", "abc"]).is_err());
        assert!(parse(&["--pids-limit", "4"]).is_err());
        assert!(parse(&["--max-timeout-ms", "10"]).is_err());
        assert!(parse(&["--max-timeout-ms", "120001"]).is_err());
        assert!(parse(&["--max-dependencies", "65"]).is_err());
        assert!(parse(&["--executor-id", "a b"]).is_err());
        assert!(parse(&["--max-containers", "0"]).is_err());
        assert!(parse(&["--warm-pool-size", "65"]).is_err());
        assert!(parse(&["--warm-pool-max-age-seconds", "0"]).is_err());
    }

    #[test]
    fn the_warm_pool_takes_a_fixed_size_or_bounds() {
        let fixed = parse(&["--warm-pool-size", "2"])
            .unwrap()
            .pool_settings()
            .unwrap()
            .unwrap();
        assert_eq!((fixed.min, fixed.max), (2, 2));
        let bounded = parse(&["--warm-pool-min", "0", "--warm-pool-max", "8"])
            .unwrap()
            .pool_settings()
            .unwrap()
            .unwrap();
        assert_eq!((bounded.min, bounded.max), (0, 8));
        assert_eq!(parse(&["--warm-pool-size", "0"]).unwrap().pool_settings(), Ok(None));
        assert_eq!(
            parse(&["--warm-pool-min", "0", "--warm-pool-max", "0"])
                .unwrap()
                .pool_settings(),
            Ok(None)
        );
        let err = parse(&["--warm-pool-min", "5", "--warm-pool-max", "2"])
            .unwrap()
            .pool_settings()
            .unwrap_err();
        assert!(err.contains("MIN (5) is above"), "{err}");
    }

    #[test]
    fn per_tool_settings_are_checked_and_fit_the_pids_limit() {
        let forbidden = parse(&["--isolation", "container-per-tool", "--allow-per-tool", "false"]).unwrap();
        assert!(
            forbidden
                .per_tool_settings()
                .unwrap_err()
                .contains("MCP_SANDBOX_ALLOW_PER_TOOL")
        );
        let default_per_tool = parse(&["--isolation", "container-per-tool"]).unwrap();
        assert_eq!(default_per_tool.policy().default_isolation, Isolation::ContainerPerTool);
        let processes = parse(&["--per-tool-realm", "process"]).unwrap();
        assert_eq!(
            processes.per_tool_settings().unwrap().max_calls,
            6,
            "(128 - 24 - 2 spares * 12) / 12"
        );
        let cramped = parse(&["--per-tool-realm", "process", "--pids-limit", "59"]).unwrap();
        assert!(cramped.per_tool_settings().unwrap_err().contains("at least 60"));
        let per_tool_cpus = parse(&["--per-tool-cpu-limit", "2"]).unwrap();
        assert_eq!(
            per_tool_cpus.per_tool_settings().unwrap().nano_cpus,
            Some(2_000_000_000)
        );
        assert_eq!(parse(&[]).unwrap().per_tool_settings().unwrap().nano_cpus, None);
        assert!(parse(&["--isolation", "per-tool"]).is_err());
    }
}
