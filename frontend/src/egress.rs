//! The executor's egress events, as the frontend keeps them: one audit line
//! per connection the code opened or tried (host, port, decision, reason,
//! secrets by name — never a path, a header, a body or a value), with the
//! caller and the tool, and a count per tool and decision in metrics. The
//! executor cannot do this itself: it does not know the caller.

use dynamic_mcp_proto::v1::{EgressDecision, EgressEvent, EgressEventKind, EgressScheme};
use serde_json::{Map, Value, json};

use crate::audit::{AuditEvent, AuditResult};
use crate::call_context::CallContext;
use crate::metrics;
use crate::state::ServerState;

/// The audit actions: a connection, and a request that carried secrets.
pub const CONNECT_ACTION: &str = "egress.connect";
pub const SECRET_ACTION: &str = "egress.secret";

/// Who ran what, for the lines of one call's egress.
pub struct EgressWitness {
    actor: String,
    request_id: Option<String>,
    tool: String,
    session: Option<String>,
}

impl EgressWitness {
    /// For a call of `tool` (a dynamic tool, or the built-in that ran code).
    pub fn new(call: &CallContext, tool: &str) -> Self {
        Self {
            actor: call.caller.actor(),
            request_id: call.request_id.clone(),
            tool: tool.to_owned(),
            session: None,
        }
    }

    /// For a call in a sandbox session.
    pub fn in_session(call: &CallContext, tool: &str, session: &str) -> Self {
        Self {
            session: Some(session.to_owned()),
            ..Self::new(call, tool)
        }
    }

    pub fn record(&self, state: &ServerState, event: &EgressEvent) {
        metrics::egress(&self.tool, event);
        state.audit.record(self.audit_event(event));
    }

    pub fn record_all(&self, state: &ServerState, events: &[EgressEvent]) {
        for event in events {
            self.record(state, event);
        }
    }

    fn audit_event(&self, event: &EgressEvent) -> AuditEvent {
        let result = match event.decision() {
            EgressDecision::Allowed => AuditResult::Success,
            EgressDecision::Refused => AuditResult::Denied,
            EgressDecision::Failed | EgressDecision::Unspecified => AuditResult::Error,
        };
        let mut details = Map::new();
        details.insert("host".into(), json!(event.host));
        details.insert("port".into(), json!(event.port));
        details.insert("scheme".into(), json!(scheme(event.scheme())));
        if !event.reason.is_empty() {
            details.insert("reason".into(), json!(event.reason));
            details.insert("message".into(), json!(event.message));
        }
        // Names only; "secret" in a key would be redacted by the audit log.
        if !event.secrets_injected.is_empty() {
            details.insert("injected".into(), json!(event.secrets_injected));
        }
        if !event.secrets_withheld.is_empty() {
            details.insert("withheld".into(), json!(event.secrets_withheld));
        }
        if let Some(session) = &self.session {
            details.insert("sessionId".into(), json!(session));
        }
        if let Some(id) = &self.request_id {
            details.insert("requestId".into(), json!(id));
        }
        let action = match event.kind() {
            EgressEventKind::Connection => CONNECT_ACTION,
            EgressEventKind::SecretUse => SECRET_ACTION,
        };
        AuditEvent::new(action, &self.actor, result)
            .target(&self.tool)
            .details(Value::Object(details))
    }
}

pub fn scheme(scheme: EgressScheme) -> &'static str {
    match scheme {
        EgressScheme::Connect => "connect",
        EgressScheme::Http => "http",
        EgressScheme::Unspecified => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::auth::{Caller, Principal};

    fn call() -> CallContext {
        CallContext {
            caller: Caller::Authenticated(Principal {
                subject: "alice".into(),
                scopes: vec![],
            }),
            over_http: true,
            client: None,
            admin_header: None,
            request_id: Some("req-7".into()),
            cancel: CancellationToken::new(),
            progress: None,
        }
    }

    #[test]
    fn an_audit_line_names_host_caller_and_tool_and_never_more() {
        let witness = EgressWitness::new(&call(), "weather.get");
        let refused = EgressEvent {
            host: "evil.test".into(),
            port: 443,
            scheme: EgressScheme::Connect.into(),
            decision: EgressDecision::Refused.into(),
            reason: "host_not_allowed".into(),
            message: "egress to evil.test:443 refused by policy: …".into(),
            ..Default::default()
        };
        let line = witness.audit_event(&refused);
        assert_eq!(
            (
                line.action.as_str(),
                line.actor.as_str(),
                line.target.as_deref(),
                line.result
            ),
            (CONNECT_ACTION, "alice", Some("weather.get"), AuditResult::Denied)
        );
        assert_eq!(
            line.details,
            Some(
                json!({"host": "evil.test", "port": 443, "scheme": "connect", "reason": "host_not_allowed",
                "message": "egress to evil.test:443 refused by policy: …", "requestId": "req-7"})
            )
        );
        let injected = EgressEvent {
            host: "api.test".into(),
            port: 443,
            scheme: EgressScheme::Connect.into(),
            decision: EgressDecision::Allowed.into(),
            secrets_injected: vec!["API_KEY".into()],
            kind: EgressEventKind::SecretUse.into(),
            ..Default::default()
        };
        let line = EgressWitness::in_session(&call(), "sandbox.run_js", "s-1").audit_event(&injected);
        assert_eq!(
            (line.action.as_str(), line.result),
            (SECRET_ACTION, AuditResult::Success)
        );
        let details = line.details.unwrap();
        assert_eq!(details["injected"], json!(["API_KEY"]));
        assert_eq!(details["sessionId"], "s-1");
        let encoded = crate::audit::encode(&line_with(details), 10_000, time::OffsetDateTime::UNIX_EPOCH);
        assert!(
            encoded.contains(r#""injected":["API_KEY"]"#),
            "names survive redaction: {encoded}"
        );
    }

    fn line_with(details: Value) -> AuditEvent {
        AuditEvent::new(SECRET_ACTION, "alice", AuditResult::Success).details(details)
    }
}
