//! The admin token: one static secret that unlocks the admin tools.
//!
//! It comes from MCP_ADMIN_TOKEN (environment only: a flag would show it in
//! the process list) or from the file MCP_ADMIN_TOKEN_FILE names. It is kept
//! only as a SHA-256 digest and compared in constant time, so neither its
//! value nor its length leaks through timing, logs or `Debug`.

use std::fmt;
use std::path::{Path, PathBuf};

use dynamic_mcp_common::secret::SecretDigest;

/// The environment variable that may hold the token itself.
pub const ENV: &str = "MCP_ADMIN_TOKEN";
/// Shorter tokens are accepted with a warning.
const RECOMMENDED_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    #[error("both MCP_ADMIN_TOKEN and MCP_ADMIN_TOKEN_FILE are set; set only one of them")]
    Both,
    #[error("cannot read the admin token file {} (MCP_ADMIN_TOKEN_FILE): {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the admin token file {} (MCP_ADMIN_TOKEN_FILE) is empty; put the token in it", .0.display())]
    Empty(PathBuf),
}

pub struct AdminToken {
    digest: SecretDigest,
}

impl AdminToken {
    /// The configured token, if any: from `file`, else from this process's
    /// MCP_ADMIN_TOKEN (an empty value counts as unset).
    pub fn configured(file: Option<&Path>) -> Result<Option<Self>, AdminTokenError> {
        Self::load(file, std::env::var(ENV).ok())
    }

    fn load(file: Option<&Path>, from_env: Option<String>) -> Result<Option<Self>, AdminTokenError> {
        let from_env = from_env.filter(|v| !v.trim().is_empty());
        let token = match (file, from_env) {
            (Some(_), Some(_)) => return Err(AdminTokenError::Both),
            (None, None) => return Ok(None),
            (None, Some(value)) => value.trim().to_owned(),
            (Some(path), None) => {
                let text = std::fs::read_to_string(path).map_err(|source| AdminTokenError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(AdminTokenError::Empty(path.to_owned()));
                }
                token.to_owned()
            }
        };
        if token.chars().count() < RECOMMENDED_LEN {
            tracing::warn!("the admin token is shorter than {RECOMMENDED_LEN} characters; use a long random one");
        }
        Ok(Some(Self::new(&token)))
    }

    pub fn new(token: &str) -> Self {
        Self {
            digest: SecretDigest::of(token.as_bytes()),
        }
    }

    /// Whether `presented` is the token, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        self.digest.matches(presented.trim().as_bytes())
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_file_trimmed_or_the_environment_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin");
        std::fs::write(&file, "file-token-0123456789\n").unwrap();
        let token = AdminToken::load(Some(&file), None).unwrap().unwrap();
        assert!(token.matches("file-token-0123456789"));
        assert!(!token.matches("file-token-012345678"));
        let token = AdminToken::load(None, Some("env-token-0123456789".into()))
            .unwrap()
            .unwrap();
        assert!(token.matches("env-token-0123456789"));
        assert!(AdminToken::load(None, Some(String::new())).unwrap().is_none());
        assert!(AdminToken::load(None, None).unwrap().is_none());
    }

    #[test]
    fn refuses_ambiguous_or_empty_settings_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin");
        std::fs::write(&file, " \n").unwrap();
        let both = AdminToken::load(Some(&file), Some("x".into())).unwrap_err();
        assert!(both.to_string().contains("set only one"), "{both}");
        let empty = AdminToken::load(Some(&file), None).unwrap_err();
        assert!(empty.to_string().contains("is empty"), "{empty}");
        let missing = AdminToken::load(Some(&dir.path().join("absent")), None).unwrap_err();
        assert!(missing.to_string().contains("absent"), "{missing}");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = AdminToken::new("super-secret-value");
        assert!(!format!("{token:?}").contains("super"));
    }
}
