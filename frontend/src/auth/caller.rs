//! Who is calling: the identity the guard budgets, the audit log names and
//! sandbox sessions belong to.

use std::fmt;
use std::net::SocketAddr;
use std::sync::OnceLock;

/// A caller whose bearer token was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`.
    pub subject: String,
    /// From `scope` and `scp`, without duplicates.
    pub scopes: Vec<String>,
}

impl Principal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// The TCP peer of the HTTP connection a request came on: where failed
/// credential checks are counted, besides the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The stdio client: whoever started this process, as the OS user.
    Local,
    /// A Streamable HTTP client while authentication is off.
    Anonymous,
    /// A Streamable HTTP client with a verified bearer token.
    Authenticated(Principal),
}

impl Caller {
    /// The actor of audit lines: the token's subject, `anonymous`, or
    /// `local:<user>` for stdio.
    pub fn actor(&self) -> String {
        match self {
            Self::Local => format!("local:{}", local_user()),
            Self::Anonymous => "anonymous".to_owned(),
            Self::Authenticated(principal) => principal.subject.clone(),
        }
    }

    /// The caller's identity: what the guard budgets by and sandbox
    /// sessions belong to. The kinds never collide. Without JWT, every HTTP
    /// caller is the same `anonymous`; a stdio caller is the OS user that
    /// started this process.
    pub fn key(&self) -> String {
        match self {
            Self::Local => format!("local:{}", local_user()),
            Self::Anonymous => "anonymous".to_owned(),
            Self::Authenticated(principal) => format!("sub:{}", principal.subject),
        }
    }

    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Self::Authenticated(principal) => Some(principal),
            Self::Local | Self::Anonymous => None,
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local => f.write_str("stdio"),
            Self::Anonymous => f.write_str("http"),
            Self::Authenticated(principal) => write!(f, "http:{}", principal.subject),
        }
    }
}

/// The OS user this process runs as, from the environment (stdio SHOULD take
/// its identity from there), else the numeric uid.
fn local_user() -> &'static str {
    static USER: OnceLock<String> = OnceLock::new();
    USER.get_or_init(|| {
        ["USER", "LOGNAME"]
            .iter()
            .find_map(|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| {
                std::fs::metadata("/proc/self")
                    .map(|m| std::os::unix::fs::MetadataExt::uid(&m).to_string())
                    .unwrap_or_else(|_| "unknown".to_owned())
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_different_kinds_never_collide() {
        let sneaky = Caller::Authenticated(Principal {
            subject: "local".into(),
            scopes: vec![],
        });
        assert_ne!(sneaky.key(), Caller::Local.key());
        assert!(Caller::Local.key().starts_with("local:"));
        assert_eq!(sneaky.actor(), "local");
        assert!(Caller::Local.actor().starts_with("local:"));
        assert_eq!(Caller::Anonymous.actor(), "anonymous");
    }
}
