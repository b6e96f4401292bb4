//! What a tool (or session) may ask for: `network.allow` entries inside the
//! operator's ceiling (MCP_SANDBOX_EGRESS_ALLOWED_HOSTS; empty = no egress
//! for anyone), IP literals only if the operator enables them, and secrets
//! the operator defined, each reachable through the allow-list. Checked in
//! PrepareTool (before a tool is stored) and again before every run, since
//! the settings may change between the two.

use std::sync::Arc;

use dynamic_mcp_common::limits::{MAX_NETWORK_ALLOW, MAX_SECRETS};
use dynamic_mcp_proto::v1::NetworkPolicy;

use super::allow_list::{Rule, describe};
use super::secrets::{Secret, SecretStore};

#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    pub ceiling: Vec<Rule>,
    pub allow_ip_literals: bool,
    pub allow_plain_http: bool,
    pub secrets: SecretStore,
}

/// A checked request for egress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPlan {
    /// Canonical, without duplicates, in the order given.
    pub allow: Vec<Rule>,
    pub secrets: Vec<String>,
}

impl EgressPlan {
    /// The allow-list in its canonical spelling, as callers store and show it.
    pub fn network(&self) -> NetworkPolicy {
        NetworkPolicy {
            allow: self.allow.iter().map(ToString::to_string).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error(
        "network.allow is not available: this server gives no code network access \
         (MCP_SANDBOX_EGRESS_ALLOWED_HOSTS is empty); remove `network`, or ask the operator to allow the hosts"
    )]
    Disabled,
    #[error("network.allow[{index}]: {reason}")]
    BadEntry { index: usize, reason: String },
    #[error(
        "network.allow[{index}] '{entry}' is an IP address or network; name the host instead \
         (IP literals need MCP_SANDBOX_EGRESS_ALLOW_IP_LITERALS=true)"
    )]
    IpLiteral { index: usize, entry: String },
    #[error(
        "network.allow[{index}] '{entry}' is outside what this server allows (MCP_SANDBOX_EGRESS_ALLOWED_HOSTS: \
         {ceiling}); use hosts within it"
    )]
    OutsideCeiling {
        index: usize,
        entry: String,
        ceiling: String,
    },
    #[error("network.allow has {count} entries; at most {MAX_NETWORK_ALLOW} are allowed")]
    TooManyEntries { count: usize },
    #[error("secrets has {count} names; at most {MAX_SECRETS} are allowed")]
    TooManySecrets { count: usize },
    #[error("secrets: this server has no secrets (MCP_SANDBOX_SECRETS_FILE is not set); remove `secrets`")]
    NoSecrets,
    #[error("secrets: '{name}' is not a secret of this server; known secrets: {known}")]
    UnknownSecret { name: String, known: String },
    #[error("secrets: '{name}' is listed more than once")]
    DuplicateSecret { name: String },
    #[error(
        "secrets: '{name}' may only be sent to {hosts}, and network.allow reaches none of them; \
         add one of them to network.allow"
    )]
    SecretUnreachable { name: String, hosts: String },
}

impl EgressPolicy {
    /// Whether any code may have egress at all.
    pub fn enabled(&self) -> bool {
        !self.ceiling.is_empty()
    }

    /// Checks a request; `None` when it asks for no egress.
    pub fn check(&self, network_allow: &[String], secrets: &[String]) -> Result<Option<EgressPlan>, EgressError> {
        if network_allow.is_empty() && secrets.is_empty() {
            return Ok(None);
        }
        if !self.enabled() {
            return Err(EgressError::Disabled);
        }
        if network_allow.len() > MAX_NETWORK_ALLOW {
            return Err(EgressError::TooManyEntries {
                count: network_allow.len(),
            });
        }
        let mut allow: Vec<Rule> = Vec::new();
        for (index, entry) in network_allow.iter().enumerate() {
            let rule: Rule = entry
                .parse()
                .map_err(|e: super::allow_list::BadEntry| EgressError::BadEntry {
                    index,
                    reason: e.to_string(),
                })?;
            if rule.is_ip() && !self.allow_ip_literals {
                return Err(EgressError::IpLiteral {
                    index,
                    entry: rule.to_string(),
                });
            }
            if !self.ceiling.iter().any(|outer| outer.covers(&rule)) {
                return Err(EgressError::OutsideCeiling {
                    index,
                    entry: rule.to_string(),
                    ceiling: describe(&self.ceiling),
                });
            }
            if !allow.contains(&rule) {
                allow.push(rule);
            }
        }
        self.check_secrets(secrets, &allow)?;
        Ok(Some(EgressPlan {
            allow,
            secrets: secrets.to_vec(),
        }))
    }

    /// The secrets of a checked plan.
    pub fn secrets_of(&self, plan: &EgressPlan) -> Vec<Arc<Secret>> {
        plan.secrets
            .iter()
            .filter_map(|name| self.secrets.get(name).cloned())
            .collect()
    }

    fn check_secrets(&self, names: &[String], allow: &[Rule]) -> Result<(), EgressError> {
        if names.is_empty() {
            return Ok(());
        }
        if self.secrets.is_empty() {
            return Err(EgressError::NoSecrets);
        }
        if names.len() > MAX_SECRETS {
            return Err(EgressError::TooManySecrets { count: names.len() });
        }
        for (i, name) in names.iter().enumerate() {
            let secret = self.secrets.get(name).ok_or_else(|| EgressError::UnknownSecret {
                name: name.chars().take(64).collect(),
                known: self.secrets.names().join(", "),
            })?;
            if names[..i].contains(name) {
                return Err(EgressError::DuplicateSecret { name: name.clone() });
            }
            // Reachable: some host of the secret is one the allow-list lets through.
            let reachable = secret
                .hosts
                .iter()
                .any(|host| allow.iter().any(|rule| rule.covers(host) || host.covers(rule)));
            if !reachable {
                return Err(EgressError::SecretUnreachable {
                    name: name.clone(),
                    hosts: describe(&secret.hosts),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ceiling: &[&str]) -> EgressPolicy {
        EgressPolicy {
            ceiling: ceiling.iter().map(|c| c.parse().unwrap()).collect(),
            secrets: SecretStore::parse(
                r#"{"secrets": [{"name": "API_KEY", "value": "0123456789", "hosts": ["api.example.com"]}]}"#,
                false,
            )
            .unwrap(),
            ..Default::default()
        }
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn no_request_needs_no_egress() {
        assert_eq!(EgressPolicy::default().check(&[], &[]), Ok(None));
    }

    #[test]
    fn an_empty_ceiling_refuses_every_entry() {
        let err = EgressPolicy::default()
            .check(&strings(&["api.example.com"]), &[])
            .unwrap_err();
        assert_eq!(err, EgressError::Disabled);
        assert!(err.to_string().contains("MCP_SANDBOX_EGRESS_ALLOWED_HOSTS is empty"));
    }

    #[test]
    fn entries_must_be_inside_the_ceiling() {
        let policy = policy(&["*.example.com", "other.example.net:8443"]);
        let plan = policy
            .check(
                &strings(&["API.example.com", "api.example.com", "other.example.net:8443"]),
                &[],
            )
            .unwrap()
            .unwrap();
        assert_eq!(describe(&plan.allow), "api.example.com, other.example.net:8443");
        let err = policy
            .check(&strings(&["api.example.com", "evil.test"]), &[])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "network.allow[1] 'evil.test' is outside what this server allows (MCP_SANDBOX_EGRESS_ALLOWED_HOSTS: \
             *.example.com, other.example.net:8443); use hosts within it"
        );
        assert!(matches!(
            policy.check(&strings(&["other.example.net"]), &[]),
            Err(EgressError::OutsideCeiling { .. })
        ));
        assert!(matches!(
            policy.check(&strings(&["https://api.example.com/"]), &[]),
            Err(EgressError::BadEntry { index: 0, .. })
        ));
        let many: Vec<String> = (0..65).map(|i| format!("h{i}.example.com")).collect();
        assert_eq!(
            policy.check(&many, &[]).unwrap_err(),
            EgressError::TooManyEntries { count: 65 }
        );
    }

    #[test]
    fn ip_literals_need_the_operator() {
        let mut policy = policy(&["203.0.113.0/24"]);
        assert!(matches!(
            policy.check(&strings(&["203.0.113.7"]), &[]),
            Err(EgressError::IpLiteral { .. })
        ));
        policy.allow_ip_literals = true;
        assert!(policy.check(&strings(&["203.0.113.7"]), &[]).unwrap().is_some());
        assert!(matches!(
            policy.check(&strings(&["198.51.100.7"]), &[]),
            Err(EgressError::OutsideCeiling { .. })
        ));
    }

    #[test]
    fn secrets_must_exist_and_be_reachable() {
        let policy = policy(&["*.example.com"]);
        let allow = strings(&["api.example.com"]);
        let plan = policy.check(&allow, &strings(&["API_KEY"])).unwrap().unwrap();
        assert_eq!(policy.secrets_of(&plan).len(), 1);
        assert_eq!(
            policy.check(&allow, &strings(&["NOPE"])).unwrap_err().to_string(),
            "secrets: 'NOPE' is not a secret of this server; known secrets: API_KEY"
        );
        assert!(matches!(
            policy.check(&allow, &strings(&["API_KEY", "API_KEY"])),
            Err(EgressError::DuplicateSecret { .. })
        ));
        let err = policy
            .check(&strings(&["www.example.com"]), &strings(&["API_KEY"]))
            .unwrap_err();
        assert!(matches!(err, EgressError::SecretUnreachable { .. }), "{err}");
        assert!(
            policy
                .check(&strings(&["*.example.com"]), &strings(&["API_KEY"]))
                .is_ok(),
            "a wildcard that covers the secret's host reaches it"
        );
        assert_eq!(
            policy.check(&[], &strings(&["API_KEY"])).unwrap_err(),
            EgressError::SecretUnreachable {
                name: "API_KEY".into(),
                hosts: "api.example.com".into()
            }
        );
        let bare = EgressPolicy {
            ceiling: vec!["*".parse().unwrap()],
            ..Default::default()
        };
        assert_eq!(
            bare.check(&allow, &strings(&["API_KEY"])).unwrap_err(),
            EgressError::NoSecrets
        );
    }
}
