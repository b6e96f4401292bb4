//! The `network` and `secrets` fields of the tools that run code: the hosts
//! the code may reach and the operator secrets it uses. The frontend only
//! shapes them; the executor checks them against the operator's ceiling
//! (MCP_SANDBOX_EGRESS_ALLOWED_HOSTS) and its secrets, and says what to fix.

use dynamic_mcp_common::limits::{MAX_NETWORK_ALLOW, NETWORK_ENTRY_CHARS};
use dynamic_mcp_proto::v1::NetworkPolicy;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `network: {allow: [...]}` as callers write it.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkInput {
    /// Entries like `api.example.com`, `*.example.com` (names below it), either
    /// with `:port` (without one: 443 and 80); each must be within what the
    /// server allows.
    #[schemars(length(min = 1, max = MAX_NETWORK_ALLOW),
        inner(length(min = NETWORK_ENTRY_CHARS.min, max = NETWORK_ENTRY_CHARS.max)))]
    pub allow: Vec<String>,
}

pub fn network_to_proto(network: NetworkInput) -> NetworkPolicy {
    NetworkPolicy { allow: network.allow }
}

/// What the `network` field of `run_js_ephemeral` and `sandbox.initialize` says.
pub fn network_description(subject: &str) -> String {
    format!(
        "Hosts {subject} may reach over HTTPS (and plain HTTP where the server allows it), through the server's \
         egress proxy; fetch, http and https go through it by themselves. Without it: no network at all. Refused \
         requests fail with an error that names the policy."
    )
}

/// What the `secrets` field of `run_js_ephemeral` says.
pub const SECRETS_DESCRIPTION: &str = "Names of secrets the server's operator defined. The code sees a placeholder \
     for each (`process.env.NAME`, `secrets.NAME`) and puts it where the API expects the secret; the server puts the \
     real value in only in requests to that secret's hosts.";
