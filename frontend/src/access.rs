//! Who may call which tool: the admin tools (`dynamic.tool.*`, `sandbox.*`,
//! `run_js_ephemeral`) need admin rights when an admin token is configured or
//! JWT auth is on, and so does setting a tool's `network` or `secrets`
//! (`changes_egress`); writes are refused on a read-only server.
//!
//! Admin rights come from the admin token — in the X-MCP-Admin-Token HTTP
//! header, or the `adminToken` argument older clients send — or, in JWT mode,
//! from the admin scope on the caller's token. A wrong token is a denial even
//! if another credential would have passed, so every bad guess is audited.
//!
//! Wrong tokens count towards a back-off ([`FailedAuth`]) per client address
//! and caller: while one is in force the token is refused without being
//! checked. A wrong argument next to a right header is denied but not
//! counted, so an injected argument cannot pause the admin's header.

use std::sync::Arc;
use std::time::Duration;

use dynamic_mcp_common::tool_names::{BuiltinKind, dynamic_tool};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject};

use crate::auth::Caller;
use crate::auth::admin_token::AdminToken;
use crate::auth::failed_auth::{FailedAuth, Key, Realm};
use crate::call_context::CallContext;
use crate::metrics;

/// The compatibility argument that carries the admin token.
pub const ADMIN_TOKEN_ARGUMENT: &str = "adminToken";

/// Whether `tool` is an admin tool.
pub fn needs_admin(tool: &str) -> bool {
    matches!(BuiltinKind::of(tool), BuiltinKind::Admin | BuiltinKind::Sandbox)
}

/// Whether the call sets what a tool may reach or use: `network` or
/// `secrets` of a created tool or of an update's patch. That always needs
/// admin rights, whatever rights creating and updating may need.
pub fn changes_egress(tool: &str, args: &JsonObject) -> bool {
    let fields = match tool {
        dynamic_tool::CREATE => args.get("tool"),
        dynamic_tool::UPDATE => args.get("patch"),
        _ => return false,
    };
    fields
        .and_then(|f| f.as_object())
        .is_some_and(|f| f.contains_key("network") || f.contains_key("secrets"))
}

/// Whether `tool` changes the dynamic tool catalog.
pub fn is_write(tool: &str) -> bool {
    [
        dynamic_tool::CREATE,
        dynamic_tool::UPDATE,
        dynamic_tool::DELETE,
        dynamic_tool::ENABLE,
        dynamic_tool::ROLLBACK,
        dynamic_tool::RESTORE,
    ]
    .contains(&tool)
}

/// Where a presented admin token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Header,
    Argument,
}

impl TokenSource {
    fn describe(self) -> &'static str {
        match self {
            Self::Header => "the X-MCP-Admin-Token header",
            Self::Argument => "the adminToken argument",
        }
    }

    fn realm(self) -> Realm {
        match self {
            Self::Header => Realm::AdminHeader,
            Self::Argument => Realm::AdminArgument,
        }
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    AdminRequired {
        tool: String,
        over_http: bool,
        admin_scope: Option<String>,
        token_configured: bool,
    },
    WrongAdminToken {
        source: TokenSource,
    },
    /// Too many wrong tokens came from this client or caller lately.
    BackingOff {
        source: TokenSource,
        retry_after: Duration,
    },
    ReadOnly {
        tool: String,
    },
}

impl Denial {
    /// A short label for audit lines.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::AdminRequired { .. } => "admin_token_missing",
            Self::WrongAdminToken { .. } => "admin_token_invalid",
            Self::BackingOff { .. } => "admin_token_backoff",
            Self::ReadOnly { .. } => "read_only",
        }
    }

    /// What the model reads: how to get through, never the token.
    pub fn message(&self) -> String {
        match self {
            Self::AdminRequired {
                tool,
                over_http,
                admin_scope,
                token_configured,
            } => {
                let mut ways = Vec::new();
                if *token_configured {
                    if *over_http {
                        ways.push("send the admin token in the X-MCP-Admin-Token HTTP header".to_owned());
                    }
                    ways.push("pass the admin token as the `adminToken` argument".to_owned());
                }
                if let Some(scope) = admin_scope {
                    ways.push(format!("use an access token with the scope '{scope}'"));
                }
                format!("{tool} needs admin rights: {}", ways.join(", or "))
            }
            Self::WrongAdminToken { source } => format!(
                "the admin token in {} is wrong; use the token the server was started with \
                 (MCP_ADMIN_TOKEN or MCP_ADMIN_TOKEN_FILE)",
                source.describe()
            ),
            Self::BackingOff { source, retry_after } => format!(
                "too many wrong admin tokens came from this client: {} is not checked for another {} ms \
                 (the pause doubles with every further wrong token); retry then with the token the server \
                 was started with",
                source.describe(),
                retry_after.as_millis().max(1)
            ),
            Self::ReadOnly { tool } => format!(
                "{tool} is refused: this server is read-only (MCP_DYNAMIC_READ_ONLY=true), so dynamic tools cannot \
                 be created, changed, enabled or deleted here; dynamic.tool.list and dynamic.tool.get still work"
            ),
        }
    }

    pub fn into_result(self) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text(self.message())])
    }
}

/// The access rules of this server.
#[derive(Debug, Default)]
pub struct AccessPolicy {
    pub admin_token: Option<AdminToken>,
    /// In JWT mode: the scope that grants admin rights.
    pub admin_scope: Option<String>,
    pub read_only: bool,
    /// The back-off after failed credential checks (shared with the bearer layer).
    pub failed_auth: Arc<FailedAuth>,
}

impl AccessPolicy {
    pub fn check(&self, tool: &str, call: &CallContext, args: &JsonObject) -> Result<(), Denial> {
        if needs_admin(tool) || changes_egress(tool, args) {
            self.check_admin(tool, call, args)?;
        }
        if self.read_only && is_write(tool) {
            return Err(Denial::ReadOnly { tool: tool.to_owned() });
        }
        Ok(())
    }

    fn check_admin(&self, tool: &str, call: &CallContext, args: &JsonObject) -> Result<(), Denial> {
        if self.admin_token.is_none() && self.admin_scope.is_none() {
            return Ok(());
        }
        if let Some(token) = &self.admin_token {
            let keys = failure_keys(call);
            let header = match call.admin_header.as_deref() {
                Some(value) => self.present(token, TokenSource::Header, value, &keys, false)?,
                None => false,
            };
            let argument = match args.get(ADMIN_TOKEN_ARGUMENT).and_then(|v| v.as_str()) {
                Some(value) => self.present(token, TokenSource::Argument, value, &keys, header)?,
                None => false,
            };
            if header || argument {
                return Ok(());
            }
        }
        let scoped = self
            .admin_scope
            .as_deref()
            .zip(call.caller.principal())
            .is_some_and(|(scope, principal)| principal.has_scope(scope));
        if scoped {
            return Ok(());
        }
        Err(Denial::AdminRequired {
            tool: tool.to_owned(),
            over_http: call.over_http,
            admin_scope: self.admin_scope.clone(),
            token_configured: self.admin_token.is_some(),
        })
    }

    /// Checks one presented token unless its source is backing off; a wrong
    /// one is counted unless `proven` (the header already passed).
    fn present(
        &self,
        token: &AdminToken,
        source: TokenSource,
        value: &str,
        keys: &[Key],
        proven: bool,
    ) -> Result<bool, Denial> {
        let realm = source.realm();
        if !proven && let Err(paused) = self.failed_auth.check(realm, keys) {
            metrics::auth_backoff_refusal(realm.as_str());
            return Err(Denial::BackingOff {
                source,
                retry_after: paused.retry_after,
            });
        }
        if token.matches(value) {
            self.failed_auth.succeeded(realm, keys);
            return Ok(true);
        }
        if !proven && let Some(pause) = self.failed_auth.failed(realm, keys) {
            tracing::warn!(
                source = source.describe(),
                pause_ms = pause.as_millis() as u64,
                "wrong admin tokens keep coming from one client; its admin-token checks are paused"
            );
        }
        Err(Denial::WrongAdminToken { source })
    }
}

/// What wrong tokens are counted against: the client's address, and the
/// caller when it has an identity of its own (every HTTP caller without JWT
/// is the same `anonymous`: counting that would pause everyone).
fn failure_keys(call: &CallContext) -> Vec<Key> {
    let mut keys: Vec<Key> = call.client.map(Key::address).into_iter().collect();
    if call.caller != Caller::Anonymous {
        keys.push(Key::Caller(call.caller.key()));
    }
    keys
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::auth::{Caller, Principal};

    const TOKEN: &str = "correct-admin-token-123";

    fn call(caller: Caller, header: Option<&str>) -> CallContext {
        CallContext {
            over_http: caller != Caller::Local,
            client: None,
            caller,
            admin_header: header.map(str::to_owned),
            request_id: None,
            cancel: CancellationToken::new(),
            progress: None,
        }
    }

    fn args(value: serde_json::Value) -> JsonObject {
        value.as_object().cloned().unwrap_or_default()
    }

    fn with_token() -> AccessPolicy {
        AccessPolicy {
            admin_token: Some(AdminToken::new(TOKEN)),
            ..Default::default()
        }
    }

    fn admin(scopes: &[&str]) -> Caller {
        Caller::Authenticated(Principal {
            subject: "alice".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    #[test]
    fn without_a_token_or_jwt_everything_is_open() {
        let open = AccessPolicy::default();
        assert!(
            open.check("dynamic.tool.create", &call(Caller::Local, None), &JsonObject::new())
                .is_ok()
        );
    }

    #[test]
    fn the_token_is_accepted_from_the_header_or_the_argument() {
        let policy = with_token();
        let tool = "dynamic.tool.list";
        assert!(
            policy
                .check(tool, &call(Caller::Anonymous, Some(TOKEN)), &JsonObject::new())
                .is_ok()
        );
        assert!(
            policy
                .check(tool, &call(Caller::Local, None), &args(json!({"adminToken": TOKEN})))
                .is_ok()
        );
        assert!(
            policy
                .check("system.health", &call(Caller::Local, None), &JsonObject::new())
                .is_ok()
        );
        assert!(
            policy
                .check("some.dynamic", &call(Caller::Local, None), &JsonObject::new())
                .is_ok()
        );
    }

    #[test]
    fn a_missing_or_wrong_token_is_denied_with_directions() {
        let policy = with_token();
        let missing = policy
            .check("sandbox.exec", &call(Caller::Anonymous, None), &JsonObject::new())
            .unwrap_err();
        assert_eq!(missing.reason(), "admin_token_missing");
        assert_eq!(
            missing.message(),
            "sandbox.exec needs admin rights: send the admin token in the X-MCP-Admin-Token HTTP header, or pass \
             the admin token as the `adminToken` argument"
        );
        let stdio = policy
            .check("dynamic.tool.get", &call(Caller::Local, None), &JsonObject::new())
            .unwrap_err();
        assert!(!stdio.message().contains("header"), "{}", stdio.message());
        let wrong = policy
            .check(
                "dynamic.tool.get",
                &call(Caller::Anonymous, Some("guess")),
                &args(json!({"adminToken": TOKEN})),
            )
            .unwrap_err();
        assert_eq!(
            wrong,
            Denial::WrongAdminToken {
                source: TokenSource::Header
            }
        );
        assert!(!wrong.message().contains(TOKEN) && !wrong.message().contains("guess"));
    }

    #[test]
    fn in_jwt_mode_the_admin_scope_grants_admin_rights() {
        let policy = AccessPolicy {
            admin_scope: Some("mcp:admin".into()),
            ..Default::default()
        };
        let tool = "dynamic.tool.create";
        assert!(
            policy
                .check(tool, &call(admin(&["mcp:admin"]), None), &JsonObject::new())
                .is_ok()
        );
        let denied = policy
            .check(tool, &call(admin(&["tools:call"]), None), &JsonObject::new())
            .unwrap_err();
        assert_eq!(
            denied.message(),
            "dynamic.tool.create needs admin rights: use an access token with the scope 'mcp:admin'"
        );
    }

    #[test]
    fn setting_network_or_secrets_is_an_admin_change() {
        assert!(changes_egress(
            "dynamic.tool.create",
            &args(json!({"tool": {"name": "t", "network": {"allow": ["a.example"]}}}))
        ));
        assert!(changes_egress(
            "dynamic.tool.update",
            &args(json!({"name": "t", "patch": {"secrets": ["K"]}}))
        ));
        assert!(!changes_egress(
            "dynamic.tool.update",
            &args(json!({"name": "t", "patch": {"code": "return 1;"}}))
        ));
        assert!(!changes_egress("some.tool", &args(json!({"args": {"network": 1}}))));
        let denied = with_token()
            .check(
                "dynamic.tool.update",
                &call(Caller::Anonymous, None),
                &args(json!({"name": "t", "patch": {"network": {"allow": []}}})),
            )
            .unwrap_err();
        assert_eq!(denied.reason(), "admin_token_missing");
    }

    #[test]
    fn read_only_refuses_writes_only() {
        let policy = AccessPolicy {
            read_only: true,
            ..Default::default()
        };
        let caller = call(Caller::Local, None);
        for tool in [
            "dynamic.tool.create",
            "dynamic.tool.update",
            "dynamic.tool.delete",
            "dynamic.tool.enable",
        ] {
            let denied = policy.check(tool, &caller, &JsonObject::new()).unwrap_err();
            assert!(denied.message().contains("MCP_DYNAMIC_READ_ONLY=true"), "{tool}");
        }
        assert!(policy.check("dynamic.tool.list", &caller, &JsonObject::new()).is_ok());
    }
}
