//! Every limit a dynamic tool is held to, in one place. The registry's rules,
//! the executor's policy, the frontend's input schemas and the messages that
//! explain a refusal all read them from here, so they cannot drift apart.
//!
//! Where the executor lets an operator lower a limit (the longest timeout,
//! the dependency count), the constant here is the ceiling that setting may
//! not exceed; what a server really allows is the executor's live value.

/// An inclusive range of lengths (in characters) or counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: usize,
    pub max: usize,
}

impl Bounds {
    pub const fn new(min: usize, max: usize) -> Self {
        Self { min, max }
    }

    pub fn contains(self, n: usize) -> bool {
        (self.min..=self.max).contains(&n)
    }
}

/// Tool names: a letter, then letters, digits, '.', '_' or '-'.
pub const NAME_CHARS: Bounds = Bounds::new(3, 64);
/// [`NAME_CHARS`] and the allowed characters as one regular expression, for schemas.
pub const NAME_PATTERN: &str = "^[a-zA-Z][a-zA-Z0-9._-]{2,63}$";
pub const TITLE_CHARS: Bounds = Bounds::new(1, 120);
pub const DESCRIPTION_CHARS: Bounds = Bounds::new(1, 4000);
pub const IMAGE_CHARS: Bounds = Bounds::new(1, 512);
/// The body of `export async function run(args)`.
pub const CODE_CHARS: Bounds = Bounds::new(1, 200_000);

/// No run may be shorter than this: Node alone takes a good part of it.
pub const MIN_TIMEOUT_MS: u32 = 1000;
/// The highest maximum an operator may configure (MCP_SANDBOX_MAX_TIMEOUT_MS).
pub const MAX_TIMEOUT_MS_CEILING: u32 = 120_000;
/// The timeout of a tool that sets none, unless the executor is configured otherwise.
pub const DEFAULT_TIMEOUT_MS: u32 = 30_000;

/// The most npm dependencies a tool may declare (MCP_SANDBOX_MAX_DEPENDENCIES may lower it).
pub const MAX_DEPENDENCIES: usize = 64;
/// npm's own limit on package names.
pub const NPM_NAME_MAX_CHARS: usize = 214;
pub const DEPENDENCY_VERSION_CHARS: Bounds = Bounds::new(1, 256);

/// The JSON text of a tool's inputSchema or outputSchema.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Self-tests a tool may carry.
pub const MAX_EXAMPLES: usize = 16;
/// The JSON text of one example's `args` or `expect`.
pub const MAX_EXAMPLE_BYTES: usize = 64 * 1024;
/// How many examples run at once when a tool is written.
pub const EXAMPLE_CONCURRENCY: usize = 4;

/// Entries in a tool's `network.allow`.
pub const MAX_NETWORK_ALLOW: usize = 32;
/// One `network.allow` entry: a host name (253) plus `:port`.
pub const NETWORK_ENTRY_CHARS: Bounds = Bounds::new(1, 259);
/// Secret names a tool may declare.
pub const MAX_SECRETS: usize = 16;
pub const SECRET_NAME_CHARS: Bounds = Bounds::new(1, 64);
/// Secret names: an upper-case letter, then upper-case letters, digits or '_'
/// (they may become environment variable names).
pub const SECRET_NAME_PATTERN: &str = "^[A-Z][A-Z0-9_]{0,63}$";

/// The JSON text of one call's `args`: with the largest code it must still fit
/// the executor's 4 MiB gRPC messages.
pub const MAX_ARGS_BYTES: usize = 3 << 20;

/// Shell commands in one `sandbox.exec` call.
pub const SESSION_COMMANDS: Bounds = Bounds::new(1, 20);

/// The longest idempotency key a write accepts.
pub const IDEMPOTENCY_KEY_CHARS: Bounds = Bounds::new(1, 128);
/// Revisions `dynamic.tool.history` returns when the caller sets no limit.
pub const DEFAULT_HISTORY_PAGE: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_pattern_says_what_the_bounds_say() {
        let pattern = format!("{{{},{}}}", NAME_CHARS.min - 1, NAME_CHARS.max - 1);
        assert!(NAME_PATTERN.contains(&pattern), "{NAME_PATTERN} vs {NAME_CHARS:?}");
        let secret = format!("{{0,{}}}", SECRET_NAME_CHARS.max - 1);
        assert!(SECRET_NAME_PATTERN.contains(&secret));
    }

    #[test]
    fn defaults_sit_inside_their_ranges() {
        assert!((MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS_CEILING).contains(&DEFAULT_TIMEOUT_MS));
        assert!(Bounds::new(1, 3).contains(3) && !Bounds::new(1, 3).contains(0));
    }
}
