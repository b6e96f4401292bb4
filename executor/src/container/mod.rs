//! Containers: how one is hardened, how many may exist, how a caller gets one
//! (the `ContainerSource` seam: cold, or from the warm `pool`), how it is
//! always removed afterwards, and how commands run inside a running one
//! (`exec`).

pub mod cap;
pub mod exec;
pub mod hardening;
pub mod lease;
pub mod pool;
pub mod source;

/// Every container we create carries these labels, so that leftovers can be
/// found and removed by whoever owns them — and only by them.
pub mod labels {
    pub const MANAGED: &str = "dynamic-mcp.managed";
    pub const EXECUTOR: &str = "dynamic-mcp.executor";
    pub const ROLE: &str = "dynamic-mcp.role";
    pub const TOOL: &str = "dynamic-mcp.tool";
    pub const SESSION: &str = "dynamic-mcp.session";
    /// A hash of the session owner's identity, never the identity itself.
    pub const OWNER: &str = "dynamic-mcp.owner";
    /// Which dependency set an install container fills.
    pub const DEPS_KEY: &str = "dynamic-mcp.deps-key";
    /// The tool revision a per-tool container serves.
    pub const REVISION: &str = "dynamic-mcp.revision";
}

/// What a container is for, shown on its `dynamic-mcp.role` label. The role
/// decides what the hardened profile lets the container have (see
/// `hardening.rs`): only installs reach a network by default and write to
/// the dependency cache, and only the cache setup runs as root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// One tool run, then removed.
    Run,
    /// One tool revision's calls, many at once, each in a fresh JS realm
    /// (`per_tool/`); removed when idle or when the tool changes.
    PerTool,
    /// A long-lived sandbox session that calls exec into.
    Session,
    /// One `npm install` into the dependency cache.
    Install,
    /// Makes a fresh dependency cache volume writable for the sandbox user.
    DepsSetup,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::PerTool => "per-tool",
            Self::Session => "session",
            Self::Install => "install",
            Self::DepsSetup => "deps-setup",
        }
    }
}

/// What a caller needs from a container. Every field is chosen by the
/// executor; nothing here comes from a tool's code or a caller's input
/// except the (allow-listed) image and label values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerSpec {
    pub role: Role,
    pub image: String,
    /// The executor's own program (the harness, an idle loop, the install
    /// script), never user input.
    pub command: Vec<String>,
    /// Labels beyond managed/executor/role, for operators and ownership checks.
    pub labels: Vec<(&'static str, String)>,
    /// The dependency cache volume, mounted at `/deps` (writable only for
    /// `Install` and `DepsSetup`).
    pub deps_volume: Option<String>,
    /// A Docker network to join; honoured only for `Session` and `Install`.
    pub network: Option<String>,
    /// `Install` only: environment for npm and a CA file on the Docker host.
    pub install_env: Vec<String>,
    pub extra_ca_file: Option<String>,
    /// `Run` and `Session` only: an egress directory of its own (its proxy
    /// socket; see `egress/`), mounted read-only.
    pub egress: EgressMount,
    /// `PerTool` only: its channel's socket directory on the Docker host
    /// (see `per_tool/channel.rs`), mounted read-only.
    pub channel: Option<String>,
    /// A CPU limit of its own in billionths of a CPU (per-tool containers),
    /// instead of MCP_SANDBOX_CPU_LIMIT.
    pub nano_cpus: Option<i64>,
}

/// Whether a container gets an egress directory. A spec asks for one
/// (`Wanted`, so that warm containers can be pooled by it); `ColdStart`
/// makes a fresh, empty one for each container it starts (`At`), and the
/// run's proxy moves in when the container is handed out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum EgressMount {
    #[default]
    None,
    Wanted,
    /// The directory on the Docker host.
    At(String),
}

impl ContainerSpec {
    /// A spec with nothing but the role, image and command.
    pub fn new(role: Role, image: impl Into<String>, command: Vec<String>) -> Self {
        Self {
            role,
            image: image.into(),
            command,
            labels: Vec::new(),
            deps_volume: None,
            network: None,
            install_env: Vec::new(),
            extra_ca_file: None,
            egress: EgressMount::None,
            channel: None,
            nano_cpus: None,
        }
    }

    pub fn label(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.labels.push((key, value.into()));
        self
    }
}
