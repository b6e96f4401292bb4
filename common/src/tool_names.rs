//! Names the frontend's built-in tools use. The registry refuses dynamic
//! tools that collide with them, so a stored tool can never shadow one.

/// The built-ins that manage dynamic tools, by name.
pub mod dynamic_tool {
    pub const CREATE: &str = "dynamic.tool.create";
    pub const UPDATE: &str = "dynamic.tool.update";
    pub const DELETE: &str = "dynamic.tool.delete";
    pub const LIST: &str = "dynamic.tool.list";
    pub const GET: &str = "dynamic.tool.get";
    pub const ENABLE: &str = "dynamic.tool.enable";
    pub const HISTORY: &str = "dynamic.tool.history";
    pub const ROLLBACK: &str = "dynamic.tool.rollback";
    pub const RESTORE: &str = "dynamic.tool.restore";
    pub const TEST: &str = "dynamic.tool.test";
}

/// The built-ins that run code in sandbox sessions, by name.
pub mod sandbox {
    pub const INITIALIZE: &str = "sandbox.initialize";
    pub const EXEC: &str = "sandbox.exec";
    pub const RUN_JS: &str = "sandbox.run_js";
    pub const STOP: &str = "sandbox.stop";
    pub const SESSION_LIST: &str = "sandbox.session.list";
}

/// The built-ins that report on this server, by name.
pub mod system {
    pub const GUARD_METRICS: &str = "system.guard_metrics";
    pub const HEALTH: &str = "system.health";
}

/// Every built-in tool, exactly as it appears in `tools/list`.
pub const BUILTIN_TOOL_NAMES: &[&str] = &[
    dynamic_tool::CREATE,
    dynamic_tool::UPDATE,
    dynamic_tool::DELETE,
    dynamic_tool::LIST,
    dynamic_tool::GET,
    dynamic_tool::ENABLE,
    dynamic_tool::HISTORY,
    dynamic_tool::ROLLBACK,
    dynamic_tool::RESTORE,
    dynamic_tool::TEST,
    sandbox::INITIALIZE,
    sandbox::EXEC,
    sandbox::RUN_JS,
    sandbox::STOP,
    sandbox::SESSION_LIST,
    system::GUARD_METRICS,
    system::HEALTH,
    RUN_JS_EPHEMERAL,
];

/// Every prompt this server offers.
pub const BUILTIN_PROMPT_NAMES: &[&str] = &["dynamic.tool.author"];

/// The built-ins that manage dynamic tools.
pub const ADMIN_PREFIX: &str = "dynamic.tool.";
/// The built-ins that run code in sandbox sessions.
pub const SANDBOX_PREFIX: &str = "sandbox.";
/// The built-ins that report on this server.
pub const SYSTEM_PREFIX: &str = "system.";
/// The built-in that runs code once, outside any session.
pub const RUN_JS_EPHEMERAL: &str = "run_js_ephemeral";

/// Prefixes kept for present and future built-ins.
pub const RESERVED_PREFIXES: &[&str] = &[ADMIN_PREFIX, SANDBOX_PREFIX, SYSTEM_PREFIX];

/// What a built-in tool does, read from its name: the guard counts calls by
/// it, and the access rules ask for the admin token by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinKind {
    /// `dynamic.tool.*`: managing dynamic tools.
    Admin,
    /// `sandbox.*` and `run_js_ephemeral`: code in sandbox containers.
    Sandbox,
    /// `system.*`: facts about this server.
    System,
}

impl BuiltinKind {
    pub fn of(name: &str) -> Self {
        if name.starts_with(ADMIN_PREFIX) {
            Self::Admin
        } else if name.starts_with(SANDBOX_PREFIX) || name == RUN_JS_EPHEMERAL {
            Self::Sandbox
        } else {
            Self::System
        }
    }
}

/// Why `name` is reserved, or `None` when a dynamic tool may use it.
/// Comparison ignores case so `System.Health` cannot pose as a built-in.
pub fn reserved_reason(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if let Some(builtin) = BUILTIN_TOOL_NAMES.iter().find(|b| **b == lower) {
        return Some(format!("'{name}' is the name of the built-in tool '{builtin}'"));
    }
    RESERVED_PREFIXES
        .iter()
        .find(|p| lower.starts_with(*p))
        .map(|p| format!("the prefix '{p}' is reserved for built-in tools"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_has_its_kind() {
        for name in BUILTIN_TOOL_NAMES {
            let kind = BuiltinKind::of(name);
            let expected = if name.starts_with(ADMIN_PREFIX) {
                BuiltinKind::Admin
            } else if name.starts_with(SYSTEM_PREFIX) {
                BuiltinKind::System
            } else {
                BuiltinKind::Sandbox
            };
            assert_eq!(kind, expected, "{name}");
        }
    }

    #[test]
    fn builtins_and_prefixes_are_reserved() {
        assert!(reserved_reason("system.health").is_some());
        assert!(reserved_reason("SYSTEM.HEALTH").is_some());
        assert!(reserved_reason("run_js_ephemeral").is_some());
        assert!(reserved_reason("sandbox.mine").is_some());
        assert!(reserved_reason("dynamic.tool.x").is_some());
    }

    #[test]
    fn ordinary_names_are_free() {
        assert_eq!(reserved_reason("text.upper"), None);
        assert_eq!(reserved_reason("dynamic.tools"), None);
        assert_eq!(reserved_reason("systemd"), None);
    }
}
