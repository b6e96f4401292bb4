//! What a tool may ask for: an allowed image, a timeout within bounds, npm
//! dependencies that are plain registry packages, and an isolation mode the
//! operator allows. Checked before a tool
//! is stored and again before every run, since the settings may change.

use dynamic_mcp_common::limits::{MIN_TIMEOUT_MS, NPM_NAME_MAX_CHARS as MAX_PACKAGE_NAME_LEN};
use dynamic_mcp_proto::v1::{Dependency, Isolation};

#[derive(Debug, Clone)]
pub struct Policy {
    /// Exact references; the first is the default.
    pub allowed_images: Vec<String>,
    pub default_timeout_ms: u32,
    pub max_timeout_ms: u32,
    pub blocked_packages: Vec<String>,
    pub max_dependencies: usize,
    /// What a tool that sets no isolation gets (never unspecified).
    pub default_isolation: Isolation,
    /// Whether tools may run container-per-tool (MCP_SANDBOX_ALLOW_PER_TOOL).
    pub per_tool_allowed: bool,
}

/// A tool's settings with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub image: String,
    pub timeout_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("image '{image}' is not allowed; allowed images: {allowed} (MCP_SANDBOX_ALLOWED_IMAGES)")]
    ImageNotAllowed { image: String, allowed: String },
    #[error("timeoutMs must be between {MIN_TIMEOUT_MS} and {max}, the server's maximum (got {got})")]
    TimeoutOutOfRange { got: u32, max: u32 },
    #[error("too many dependencies: {count}; at most {max} are allowed (MCP_SANDBOX_MAX_DEPENDENCIES)")]
    TooManyDependencies { count: usize, max: usize },
    #[error("dependency '{name}' is blocked by policy (matches '{blocked}' in MCP_SANDBOX_BLOCKED_PACKAGES)")]
    BlockedPackage { name: String, blocked: String },
    #[error("dependency name '{name}' is not a valid npm package name: {reason}")]
    BadPackageName { name: String, reason: &'static str },
    #[error(
        "isolation \"container-per-tool\" is turned off on this server (MCP_SANDBOX_ALLOW_PER_TOOL=false); \
         set the tool's isolation to \"container-per-call\" (or leave it out)"
    )]
    PerToolForbidden,
    #[error(
        "isolation \"container-per-tool\" cannot be combined with network.allow or secrets yet: a per-tool \
         container has no egress proxy; use \"container-per-call\" for tools that reach the network"
    )]
    PerToolWithEgress,
    #[error("dependency '{name}' is listed more than once")]
    DuplicateDependency { name: String },
    #[error("dependency '{name}' has version '{version}': {reason}; use a plain semver range such as ^1.2.3 or ~2.0")]
    BadVersion {
        name: String,
        version: String,
        reason: &'static str,
    },
}

impl Policy {
    /// Checks a tool's settings and fills in the defaults.
    pub fn resolve(
        &self,
        image: Option<&str>,
        timeout_ms: Option<u32>,
        dependencies: &[Dependency],
    ) -> Result<Resolved, PolicyError> {
        let image = self.image(image)?;
        let timeout_ms = self.timeout(timeout_ms)?;
        self.dependencies(dependencies)?;
        Ok(Resolved { image, timeout_ms })
    }

    /// The isolation a tool runs with: its own, or the server's default.
    /// `egress`: whether it reaches the network. A default of per-tool does
    /// not apply to such a tool (it runs container-per-call); asking for
    /// per-tool explicitly is refused.
    pub fn isolation(&self, requested: Isolation, egress: bool) -> Result<Isolation, PolicyError> {
        let explicit = requested != Isolation::Unspecified;
        let isolation = if explicit { requested } else { self.default_isolation };
        match isolation {
            Isolation::ContainerPerTool if !self.per_tool_allowed => Err(PolicyError::PerToolForbidden),
            Isolation::ContainerPerTool if egress && explicit => Err(PolicyError::PerToolWithEgress),
            Isolation::ContainerPerTool if !egress => Ok(Isolation::ContainerPerTool),
            _ => Ok(Isolation::ContainerPerCall),
        }
    }

    /// An unset or empty image means the default (the first allowed one).
    fn image(&self, requested: Option<&str>) -> Result<String, PolicyError> {
        let default = self.allowed_images.first().map(String::as_str).unwrap_or_default();
        let image = requested.filter(|i| !i.is_empty()).unwrap_or(default);
        if self.allowed_images.iter().any(|allowed| allowed == image) {
            Ok(image.to_owned())
        } else {
            Err(PolicyError::ImageNotAllowed {
                image: image.to_owned(),
                allowed: self.allowed_images.join(", "),
            })
        }
    }

    /// A requested timeout within bounds, or the default.
    pub fn timeout(&self, requested: Option<u32>) -> Result<u32, PolicyError> {
        match requested {
            None => Ok(self.default_timeout_ms),
            Some(ms) if (MIN_TIMEOUT_MS..=self.max_timeout_ms).contains(&ms) => Ok(ms),
            Some(got) => Err(PolicyError::TimeoutOutOfRange {
                got,
                max: self.max_timeout_ms,
            }),
        }
    }

    fn dependencies(&self, dependencies: &[Dependency]) -> Result<(), PolicyError> {
        if dependencies.len() > self.max_dependencies {
            return Err(PolicyError::TooManyDependencies {
                count: dependencies.len(),
                max: self.max_dependencies,
            });
        }
        for (i, dep) in dependencies.iter().enumerate() {
            // Blocked names first, so `node:child_process` reads as blocked, not as a bad name.
            if let Some(blocked) = self.blocked_match(&dep.name) {
                return Err(PolicyError::BlockedPackage {
                    name: dep.name.clone(),
                    blocked: blocked.to_owned(),
                });
            }
            check_package_name(&dep.name).map_err(|reason| PolicyError::BadPackageName {
                name: dep.name.clone(),
                reason,
            })?;
            if dependencies[..i].iter().any(|d| d.name == dep.name) {
                return Err(PolicyError::DuplicateDependency { name: dep.name.clone() });
            }
            check_version(&dep.version).map_err(|reason| PolicyError::BadVersion {
                name: dep.name.clone(),
                version: dep.version.clone(),
                reason,
            })?;
        }
        Ok(())
    }

    /// A blocked name matches the whole name or its unscoped part, ignoring
    /// case and a `node:` prefix: `@x/Child_Process` and `node:child_process`
    /// are both `child_process`.
    fn blocked_match(&self, name: &str) -> Option<&str> {
        let lower = name.trim().to_ascii_lowercase();
        let bare = lower.strip_prefix("node:").unwrap_or(&lower);
        let unscoped = bare.rsplit('/').next().unwrap_or(bare);
        self.blocked_packages
            .iter()
            .find(|blocked| {
                let blocked = blocked.to_ascii_lowercase();
                bare == blocked || unscoped == blocked
            })
            .map(String::as_str)
    }
}

/// npm's rules for registry names: `name` or `@scope/name`, URL-safe characters.
fn check_package_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_PACKAGE_NAME_LEN {
        return Err("it must be 1 to 214 characters long (npm's limit)");
    }
    let unscoped = match name.strip_prefix('@') {
        Some(scoped) => {
            let (scope, rest) = scoped.split_once('/').ok_or("a scoped name looks like @scope/name")?;
            check_name_part(scope)?;
            rest
        }
        None => name,
    };
    check_name_part(unscoped)
}

fn check_name_part(part: &str) -> Result<(), &'static str> {
    if part.is_empty() {
        return Err("a part of the name is empty");
    }
    if part.starts_with('.') || part.starts_with('_') {
        return Err("it must not start with '.' or '_'");
    }
    if part.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("it must be lower case: npm refuses capital letters in package names");
    }
    if !part
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
    {
        return Err("it may only contain letters, digits, '-', '.', '_' and '~' (and one '@scope/')");
    }
    Ok(())
}

/// Only plain semver ranges: anything npm would fetch from elsewhere (an
/// alias, a URL, git, a local path, a tarball) or resolve at install time (a
/// dist-tag such as `latest`) is refused.
fn check_version(version: &str) -> Result<(), &'static str> {
    let lower = version.trim().to_ascii_lowercase();
    if lower.is_empty() {
        return Err("it is empty (use \"*\" for any version)");
    }
    if lower.starts_with("npm:") {
        return Err("npm: aliases are not allowed (they install a different package than the one named)");
    }
    if lower.contains("://") {
        return Err("URLs are not allowed");
    }
    if ["git+", "git:", "github:", "gitlab:", "bitbucket:", "gist:"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return Err("git sources are not allowed");
    }
    if ["file:", "link:", "workspace:", "portal:"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return Err("local paths are not allowed");
    }
    if [".tgz", ".tar.gz", ".tar"].iter().any(|s| lower.ends_with(s)) {
        return Err("tarballs are not allowed");
    }
    if lower.contains('/') || lower.contains(':') {
        return Err("paths, URLs and aliases are not allowed");
    }
    if !lower.chars().all(|c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '*' | '^' | '~' | '<' | '>' | '=' | '|' | '-' | '+' | ' ')
    }) {
        return Err("it contains characters a semver range cannot have");
    }
    if !lower.split("||").all(is_range) {
        return Err("it is not a semver range");
    }
    Ok(())
}

/// One `||` branch: empty (any), a hyphen range `a - b`, or comparators.
fn is_range(range: &str) -> bool {
    let tokens = comparator_tokens(range);
    match tokens.as_slice() {
        [] => true,
        [low, dash, high] if dash == "-" => is_partial(low) && is_partial(high),
        _ => tokens.iter().all(|t| is_comparator(t)),
    }
}

/// Splits on spaces, rejoining an operator written apart from its version (`>= 1.2`).
fn comparator_tokens(range: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut pending_operator = false;
    for word in range.split_whitespace() {
        match tokens.last_mut() {
            Some(last) if pending_operator => last.push_str(word),
            _ => tokens.push(word.to_owned()),
        }
        pending_operator =
            !word.is_empty() && word != "-" && word.chars().all(|c| matches!(c, '<' | '>' | '=' | '~' | '^'));
    }
    tokens
}

fn is_comparator(token: &str) -> bool {
    let version = ["~>", ">=", "<=", ">", "<", "=", "~", "^"]
        .iter()
        .find_map(|op| token.strip_prefix(op))
        .unwrap_or(token);
    is_partial(version)
}

/// `1`, `1.2`, `1.x`, `*`, `v1.2.3-beta.1+build.5`, ...
fn is_partial(version: &str) -> bool {
    let version = version.strip_prefix('v').unwrap_or(version);
    let (version, build) = match version.split_once('+') {
        Some((v, b)) => (v, Some(b)),
        None => (version, None),
    };
    let (core, prerelease) = match version.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (version, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    let core_ok = (1..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| matches!(*p, "x" | "*") || (!p.is_empty() && p.chars().all(|c| c.is_ascii_digit())));
    let identifiers_ok = |s: &str| {
        s.split('.')
            .all(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    };
    core_ok && prerelease.is_none_or(identifiers_ok) && build.is_none_or(identifiers_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            allowed_images: vec!["dynamic-mcp-sandbox:latest".into(), "node@sha256:abc".into()],
            default_timeout_ms: 30_000,
            max_timeout_ms: 120_000,
            blocked_packages: vec!["child_process".into(), "node-pty".into(), "npm".into(), "PM2".into()],
            max_dependencies: 3,
            default_isolation: Isolation::ContainerPerCall,
            per_tool_allowed: true,
        }
    }

    fn dep(name: &str, version: &str) -> Dependency {
        Dependency {
            name: name.into(),
            version: version.into(),
        }
    }

    fn check_dep(name: &str, version: &str) -> Result<(), PolicyError> {
        policy().dependencies(&[dep(name, version)])
    }

    #[test]
    fn defaults_are_filled_in() {
        let resolved = policy().resolve(None, None, &[]).unwrap();
        assert_eq!(
            resolved,
            Resolved {
                image: "dynamic-mcp-sandbox:latest".into(),
                timeout_ms: 30_000
            }
        );
        assert_eq!(
            policy().resolve(Some(""), None, &[]).unwrap().image,
            "dynamic-mcp-sandbox:latest"
        );
    }

    #[test]
    fn images_must_match_exactly() {
        assert_eq!(policy().image(Some("node@sha256:abc")).unwrap(), "node@sha256:abc");
        for other in [
            "dynamic-mcp-sandbox",
            "dynamic-mcp-sandbox:latest ",
            "DYNAMIC-MCP-SANDBOX:latest",
            "node",
        ] {
            let err = policy().image(Some(other)).unwrap_err();
            assert!(matches!(err, PolicyError::ImageNotAllowed { .. }), "{other}");
        }
        let message = policy().image(Some("evil:1")).unwrap_err().to_string();
        assert!(
            message.contains("dynamic-mcp-sandbox:latest, node@sha256:abc"),
            "{message}"
        );
    }

    #[test]
    fn timeouts_must_be_in_range() {
        assert_eq!(policy().timeout(Some(1000)).unwrap(), 1000);
        assert_eq!(policy().timeout(Some(120_000)).unwrap(), 120_000);
        for bad in [0, 999, 120_001] {
            let err = policy().timeout(Some(bad)).unwrap_err();
            assert_eq!(err, PolicyError::TimeoutOutOfRange { got: bad, max: 120_000 });
        }
    }

    #[test]
    fn blocked_names_are_refused_however_spelled() {
        for name in [
            "child_process",
            "Child_Process",
            "node:child_process",
            "NODE:CHILD_PROCESS",
            "@evil/child_process",
            "@evil/CHILD_PROCESS",
            "npm",
            "pm2",
            " node-pty ",
        ] {
            let err = check_dep(name, "1.0.0").unwrap_err();
            assert!(matches!(err, PolicyError::BlockedPackage { .. }), "{name}: {err}");
        }
        assert!(check_dep("npm-run-all", "1.0.0").is_ok());
        assert!(check_dep("@npm/arborist", "1.0.0").is_ok());
    }

    #[test]
    fn package_names_follow_npm_rules() {
        for good in ["lodash", "@types/node", "jsonstream", "left-pad", "a.b_c~d"] {
            assert!(check_dep(good, "^1.0.0").is_ok(), "{good}");
        }
        for bad in [
            "",
            "@types",
            "@/x",
            ".hidden",
            "_private",
            "a b",
            "../x",
            "a/b",
            "x@1",
            "Lodash",
            "@Types/node",
            "@types/Node",
            &"a".repeat(215),
        ] {
            let err = check_dep(bad, "1.0.0").unwrap_err();
            assert!(matches!(err, PolicyError::BadPackageName { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn plain_semver_ranges_pass() {
        for good in [
            "1.2.3",
            "^1.2.3",
            "~1.2",
            "~>1.2",
            "1.x",
            "1.2.*",
            "*",
            "x",
            ">=1.0.0 <2.0.0",
            ">= 1.0.0",
            "1.0.0 - 2.0.0",
            "^1.0.0 || ^2.0.0",
            "v1.2.3",
            "=1.2.3",
            "1.0.0-beta.1",
            "1.0.0-rc.1+build.5",
        ] {
            assert_eq!(check_version(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn anything_but_a_semver_range_is_refused() {
        for bad in [
            "",
            "npm:lodash@4",
            "NPM:child_process@1",
            "https://example.com/x.tgz",
            "http://x",
            "git+https://github.com/a/b.git",
            "git://github.com/a/b",
            "git+ssh://git@github.com:a/b",
            "github:a/b",
            "a/b",
            "file:../x",
            "link:../x",
            "./x.tgz",
            "x.tar.gz",
            "latest",
            "next",
            "1.2.3.4",
            "^^1",
            "1 - ",
            "1.2.3;rm -rf",
            "$(id)",
        ] {
            assert!(check_version(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(check_version("npm:x@1").unwrap_err().contains("npm: aliases"));
        assert!(check_version("github:a/b").unwrap_err().contains("git"));
    }

    #[test]
    fn dependency_count_and_duplicates_are_limited() {
        let many: Vec<_> = ["a", "b", "c", "d"].iter().map(|n| dep(n, "1")).collect();
        assert_eq!(
            policy().dependencies(&many).unwrap_err(),
            PolicyError::TooManyDependencies { count: 4, max: 3 }
        );
        let twice = [dep("lodash", "1"), dep("lodash", "2")];
        assert!(matches!(
            policy().dependencies(&twice).unwrap_err(),
            PolicyError::DuplicateDependency { .. }
        ));
    }

    #[test]
    fn isolation_follows_the_tool_then_the_default_within_what_the_operator_allows() {
        let (call, tool, unset) = (
            Isolation::ContainerPerCall,
            Isolation::ContainerPerTool,
            Isolation::Unspecified,
        );
        let mut policy = policy();
        assert_eq!(policy.isolation(unset, false), Ok(call));
        assert_eq!(policy.isolation(tool, false), Ok(tool));
        assert_eq!(policy.isolation(tool, true), Err(PolicyError::PerToolWithEgress));
        policy.default_isolation = tool;
        assert_eq!(policy.isolation(unset, false), Ok(tool));
        assert_eq!(
            policy.isolation(unset, true),
            Ok(call),
            "a network tool keeps its proxy"
        );
        assert_eq!(policy.isolation(call, false), Ok(call));
        policy.per_tool_allowed = false;
        assert_eq!(policy.isolation(tool, false), Err(PolicyError::PerToolForbidden));
        assert_eq!(policy.isolation(call, false), Ok(call));
        let message = PolicyError::PerToolForbidden.to_string();
        assert!(message.contains("MCP_SANDBOX_ALLOW_PER_TOOL") && message.contains("container-per-call"));
    }
}
