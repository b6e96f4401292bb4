//! The `network` and `secrets` fields of the tools that run code: the hosts
//! the code may reach and the operator secrets it uses. The frontend only
//! shapes them; the executor checks them against the operator's ceiling
//! (MCP_SANDBOX_EGRESS_ALLOWED_HOSTS) and its secrets, and says what to fix.

use dynamic_mcp_common::limits::{MAX_NETWORK_ALLOW, MAX_SECRETS, NETWORK_ENTRY_CHARS, SECRET_NAME_PATTERN};
use dynamic_mcp_proto::v1::NetworkPolicy;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `network: {allow: [...]}` as callers write it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInput {
    pub allow: Vec<String>,
}

pub fn network_to_proto(network: NetworkInput) -> NetworkPolicy {
    NetworkPolicy { allow: network.allow }
}

/// The `network` field of `run_js_ephemeral` and `sandbox.initialize`.
pub fn network_field(subject: &str) -> Value {
    json!({
        "type": "object",
        "description": format!(
            "Hosts {subject} may reach over HTTPS (and plain HTTP where the server allows it), through the server's \
             egress proxy; fetch, http and https go through it by themselves. Without it: no network at all. \
             Refused requests fail with an error that names the policy."
        ),
        "properties": {
            "allow": {
                "type": "array", "minItems": 1, "maxItems": MAX_NETWORK_ALLOW,
                "description": "Entries like `api.example.com`, `*.example.com` (names below it), either with `:port` \
                    (without one: 443 and 80); each must be within what the server allows.",
                "items": {"type": "string", "minLength": NETWORK_ENTRY_CHARS.min, "maxLength": NETWORK_ENTRY_CHARS.max}
            }
        },
        "required": ["allow"],
        "additionalProperties": false
    })
}

/// The `secrets` field of `run_js_ephemeral`.
pub fn secrets_field() -> Value {
    json!({
        "type": "array", "maxItems": MAX_SECRETS, "uniqueItems": true,
        "description": "Names of secrets the server's operator defined. The code sees a placeholder for each \
            (`process.env.NAME`, `secrets.NAME`) and puts it where the API expects the secret; the server puts the \
            real value in only in requests to that secret's hosts.",
        "items": {"type": "string", "pattern": SECRET_NAME_PATTERN}
    })
}
