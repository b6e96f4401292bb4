//! The operator's secrets (MCP_SANDBOX_SECRETS_FILE) and the placeholders
//! a run sees instead of them. A value lives only in this process: never in
//! a container, a log line, an event or a `Debug` print.
//!
//! The file is JSON:
//!
//! ```json
//! {"secrets": [
//!   {"name": "GITHUB_TOKEN", "value": "ghp_…", "hosts": ["api.github.com"]}
//! ]}
//! ```
//!
//! `hosts` uses the allow-list syntax (`allow_list.rs`); the proxy puts the
//! value in only in requests to those hosts, over TLS.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::allow_list::{Rule, Target, describe};

/// A value shorter than this would be redacted all over ordinary responses.
const MIN_VALUE_LEN: usize = 8;
const MAX_NAME_LEN: usize = 64;

/// One secret: its name, its value and where it may be sent.
pub struct Secret {
    pub name: String,
    value: Vec<u8>,
    pub hosts: Vec<Rule>,
}

impl Secret {
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// Whether the value may go to `target:port`.
    pub fn allowed_for(&self, target: &Target, port: u16) -> bool {
        self.hosts.iter().any(|rule| rule.matches(target, port))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("name", &self.name)
            .field("value", &"<hidden>")
            .field("hosts", &describe(&self.hosts))
            .finish()
    }
}

/// Every secret the operator defined, by name.
#[derive(Debug, Default, Clone)]
pub struct SecretStore {
    secrets: Vec<Arc<Secret>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsFileError {
    #[error("cannot read the secrets file {path} (MCP_SANDBOX_SECRETS_FILE): {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the secrets file {path} (MCP_SANDBOX_SECRETS_FILE) is not valid: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    secrets: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    value: String,
    hosts: Vec<String>,
}

impl SecretStore {
    /// Reads and checks the file; `allow_ip_literals` as for allow-lists.
    pub fn load(path: &Path, allow_ip_literals: bool) -> Result<Self, SecretsFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SecretsFileError::Read {
            path: shown.clone(),
            source,
        })?;
        warn_if_readable_by_others(path);
        Self::parse(&text, allow_ip_literals).map_err(|reason| SecretsFileError::Invalid { path: shown, reason })
    }

    /// The file's text to secrets; the error never quotes a value.
    pub fn parse(text: &str, allow_ip_literals: bool) -> Result<Self, String> {
        let file: File = serde_json::from_str(text).map_err(|e| {
            // "invalid type/value" messages quote the value they saw: never show it.
            let message = e.to_string();
            let what = if message.starts_with("invalid type") || message.starts_with("invalid value") {
                format!(
                    "a field has the wrong type at line {} column {}: name and value are strings, hosts a list of strings",
                    e.line(),
                    e.column()
                )
            } else {
                message
            };
            format!("{what} (expected {{\"secrets\": [{{\"name\", \"value\", \"hosts\"}}]}})")
        })?;
        let mut names = HashSet::new();
        let mut secrets = Vec::new();
        for (i, entry) in file.secrets.into_iter().enumerate() {
            let Entry { name, value, hosts } = entry;
            check_name(&name).map_err(|reason| format!("secrets[{i}]: {reason}"))?;
            if !names.insert(name.clone()) {
                return Err(format!("secrets[{i}]: '{name}' is defined twice"));
            }
            if value.len() < MIN_VALUE_LEN {
                return Err(format!(
                    "secrets[{i}] ('{name}'): the value is shorter than {MIN_VALUE_LEN} bytes"
                ));
            }
            if hosts.is_empty() {
                return Err(format!(
                    "secrets[{i}] ('{name}'): list the hosts it may be sent to in `hosts`"
                ));
            }
            let hosts = hosts
                .iter()
                .map(|h| h.parse::<Rule>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("secrets[{i}] ('{name}'): {e}"))?;
            if !allow_ip_literals && let Some(ip) = hosts.iter().find(|r| r.is_ip()) {
                return Err(format!(
                    "secrets[{i}] ('{name}'): '{ip}' is an IP address; name the host, or set \
                     MCP_SANDBOX_EGRESS_ALLOW_IP_LITERALS=true"
                ));
            }
            secrets.push(Arc::new(Secret {
                name,
                value: value.into_bytes(),
                hosts,
            }));
        }
        Ok(Self { secrets })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Secret>> {
        self.secrets.iter().find(|s| s.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.secrets.iter().map(|s| s.name.as_str()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

/// Names as environment variables spell them, so `process.env.NAME` works.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= MAX_NAME_LEN;
    if valid {
        Ok(())
    } else {
        Err(format!(
            "'{}' is not a secret name: use 1 to {MAX_NAME_LEN} of A-Z, 0-9 and '_', not starting with a digit",
            name.chars().take(MAX_NAME_LEN + 1).collect::<String>()
        ))
    }
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "the secrets file can be read by other users; chmod 600 it"
        );
    }
}

/// A secret as one run sees it: a random placeholder that stands for it.
#[derive(Clone)]
pub struct RunSecret {
    pub secret: Arc<Secret>,
    pub placeholder: String,
}

impl RunSecret {
    /// A fresh placeholder: only letters, digits and '_', so it survives
    /// URL, form and JSON encoding unchanged.
    pub fn new(secret: Arc<Secret>) -> Self {
        let placeholder = format!("dmcp_{}_{:024x}", secret.name, rand::random::<u128>() >> 32);
        Self { secret, placeholder }
    }
}

impl fmt::Debug for RunSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunSecret")
            .field("name", &self.secret.name)
            .field("placeholder", &self.placeholder)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{"secrets": [
        {"name": "API_KEY", "value": "s3cr3t-value-1", "hosts": ["api.example.com", "*.example.org:8443"]},
        {"name": "OTHER", "value": "another-secret", "hosts": ["other.example.com"]}
    ]}"#;

    #[test]
    fn a_good_file_loads_and_hides_its_values() {
        let store = SecretStore::parse(FILE, false).unwrap();
        assert_eq!(store.names(), ["API_KEY", "OTHER"]);
        let key = store.get("API_KEY").unwrap();
        assert_eq!(key.value(), b"s3cr3t-value-1");
        assert!(key.allowed_for(&Target::Name("api.example.com".into()), 443));
        assert!(key.allowed_for(&Target::Name("a.example.org".into()), 8443));
        assert!(!key.allowed_for(&Target::Name("other.example.com".into()), 443));
        let printed = format!("{store:?} {:?}", RunSecret::new(Arc::clone(key)));
        assert!(!printed.contains("s3cr3t"), "{printed}");
    }

    #[test]
    fn placeholders_are_fresh_and_plain() {
        let store = SecretStore::parse(FILE, false).unwrap();
        let key = store.get("API_KEY").unwrap();
        let (a, b) = (RunSecret::new(Arc::clone(key)), RunSecret::new(Arc::clone(key)));
        assert_ne!(a.placeholder, b.placeholder);
        assert!(a.placeholder.starts_with("dmcp_API_KEY_"), "{}", a.placeholder);
        assert!(a.placeholder.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }

    #[test]
    fn bad_files_are_refused_without_quoting_values() {
        for (text, why) in [
            ("{", "EOF"),
            (
                r#"{"secrets": [{"name": "k", "value": "longenough", "hosts": ["a.example"]}]}"#,
                "not a secret name",
            ),
            (
                r#"{"secrets": [{"name": "K", "value": "short", "hosts": ["a.example"]}]}"#,
                "shorter than 8",
            ),
            (
                r#"{"secrets": [{"name": "K", "value": "longenough", "hosts": []}]}"#,
                "list the hosts",
            ),
            (
                r#"{"secrets": [{"name": "K", "value": "longenough", "hosts": ["https://a"]}]}"#,
                "not a URL",
            ),
            (
                r#"{"secrets": [{"name": "K", "value": "longenough", "hosts": ["10.0.0.1"]}]}"#,
                "IP address",
            ),
            (
                r#"{"secrets": [{"name": "K", "value": "longenough", "hosts": ["a.example"]},
                               {"name": "K", "value": "longenough", "hosts": ["a.example"]}]}"#,
                "defined twice",
            ),
            (
                r#"{"secrets": [{"name": "K", "value": "longenough", "hosts": ["a.example"], "x": 1}]}"#,
                "unknown field",
            ),
            (
                r#"{"secrets": [{"name": "K", "value": 12345678987, "hosts": ["a.example"]}]}"#,
                "wrong type",
            ),
        ] {
            let err = SecretStore::parse(text, false).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
            assert!(
                !err.contains("longenough") && !err.contains("short\"") && !err.contains("12345678987"),
                "{err}"
            );
        }
        assert!(
            SecretStore::parse(
                r#"{"secrets": [{"name": "K", "value": "longenough", "hosts": ["10.0.0.1"]}]}"#,
                true
            )
            .is_ok()
        );
    }
}
