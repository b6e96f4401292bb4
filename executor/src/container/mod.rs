//! Containers: how one is hardened, how many may exist, how a run gets one
//! (the `ContainerSource` seam) and how it is always removed afterwards.

pub mod cap;
pub mod hardening;
pub mod lease;
pub mod source;

/// Every container we create carries these labels, so that leftovers can be
/// found and removed by whoever owns them — and only by them.
pub mod labels {
    pub const MANAGED: &str = "dynamic-mcp.managed";
    pub const EXECUTOR: &str = "dynamic-mcp.executor";
    pub const ROLE: &str = "dynamic-mcp.role";
    pub const TOOL: &str = "dynamic-mcp.tool";
}

/// What a container is for, shown on its `dynamic-mcp.role` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// One tool run, then removed.
    Run,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Self::Run => "run",
        }
    }
}

/// What a caller needs from a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub role: Role,
    pub image: String,
    /// Shown on the container's labels for operators; never trusted.
    pub tool_name: String,
}
