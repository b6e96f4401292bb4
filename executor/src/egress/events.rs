//! What the proxy tells the world about each connection: an `EgressEvent`
//! for the caller (the frontend audits it, with the caller's identity, and
//! counts it per tool) and a structured log line here. Neither ever holds a
//! path, a header, a body or a secret's value.

use std::sync::{Arc, Mutex};

use dynamic_mcp_proto::v1::{EgressDecision, EgressEvent, EgressEventKind, EgressScheme};
use hyper::StatusCode;

use super::allow_list::Target;

/// Where a run's or session's events go.
pub type EventSink = Arc<dyn Fn(EgressEvent) + Send + Sync>;

/// A sink that delivers until closed, and drops what comes after: a run's
/// stream must end with its outcome, even if a connection is still
/// reporting as the run ends.
pub fn closable(deliver: impl Fn(EgressEvent) + Send + Sync + 'static) -> (EventSink, SinkCloser) {
    let slot: Arc<Mutex<Option<EventSink>>> = Arc::new(Mutex::new(Some(Arc::new(deliver))));
    let sink_slot = Arc::clone(&slot);
    let sink: EventSink = Arc::new(move |event| {
        if let Some(deliver) = sink_slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            deliver(event);
        }
    });
    (sink, SinkCloser(slot))
}

/// Closes a [`closable`] sink.
pub struct SinkCloser(Arc<Mutex<Option<EventSink>>>);

impl SinkCloser {
    pub fn close(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Why a connection was refused, or could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    HostNotAllowed,
    IpLiteralNotAllowed,
    AddressForbidden,
    PlainHttpDisabled,
    BadCredential,
    BadRequest,
    TooManyConnections,
    BodyTooLarge,
    Unresolvable,
    ConnectFailed,
    UpstreamTlsFailed,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Self::HostNotAllowed => "host_not_allowed",
            Self::IpLiteralNotAllowed => "ip_literal_not_allowed",
            Self::AddressForbidden => "address_forbidden",
            Self::PlainHttpDisabled => "plain_http_disabled",
            Self::BadCredential => "bad_credential",
            Self::BadRequest => "bad_request",
            Self::TooManyConnections => "too_many_connections",
            Self::BodyTooLarge => "body_too_large",
            Self::Unresolvable => "unresolvable",
            Self::ConnectFailed => "connect_failed",
            Self::UpstreamTlsFailed => "upstream_tls_failed",
        }
    }

    /// Refused by policy, or allowed but failed on the way.
    pub fn decision(self) -> EgressDecision {
        match self {
            Self::Unresolvable | Self::ConnectFailed | Self::UpstreamTlsFailed => EgressDecision::Failed,
            _ => EgressDecision::Refused,
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::BadCredential => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unresolvable | Self::ConnectFailed | Self::UpstreamTlsFailed => StatusCode::BAD_GATEWAY,
            _ => StatusCode::FORBIDDEN,
        }
    }
}

/// A refusal (or failure) with the sentence the code gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Reports one run's (or session's) egress, labelled with its subject.
#[derive(Clone)]
pub struct Reporter {
    /// `tool 'x'` or `session 'y'`, for log lines.
    subject: Arc<str>,
    sink: EventSink,
}

/// Where a connection wanted to go, as it asked.
#[derive(Debug, Clone)]
pub struct Destination {
    pub host: String,
    pub port: u16,
    pub scheme: EgressScheme,
}

impl Destination {
    pub fn new(target: &Target, port: u16, scheme: EgressScheme) -> Self {
        Self {
            host: target.to_string(),
            port,
            scheme,
        }
    }
}

impl Reporter {
    pub fn new(subject: impl Into<Arc<str>>, sink: EventSink) -> Self {
        Self {
            subject: subject.into(),
            sink,
        }
    }

    pub fn allowed(&self, to: &Destination, injected: Vec<String>, withheld: Vec<String>) {
        self.allow(EgressEventKind::Connection, to, injected, withheld);
    }

    /// A request in an intercepted connection that carried placeholders.
    pub fn secret_use(&self, to: &Destination, injected: Vec<String>, withheld: Vec<String>) {
        self.allow(EgressEventKind::SecretUse, to, injected, withheld);
    }

    fn allow(&self, kind: EgressEventKind, to: &Destination, injected: Vec<String>, withheld: Vec<String>) {
        self.send(EgressEvent {
            kind: kind.into(),
            host: to.host.clone(),
            port: u32::from(to.port),
            scheme: to.scheme.into(),
            decision: EgressDecision::Allowed.into(),
            secrets_injected: injected,
            secrets_withheld: withheld,
            ..Default::default()
        });
    }

    pub fn refused(&self, to: &Destination, refusal: &Refusal) {
        self.send(EgressEvent {
            host: to.host.clone(),
            port: u32::from(to.port),
            scheme: to.scheme.into(),
            decision: refusal.reason.decision().into(),
            reason: refusal.reason.code().to_owned(),
            message: refusal.message.clone(),
            ..Default::default()
        });
    }

    fn send(&self, event: EgressEvent) {
        let decision = event.decision().as_str_name();
        if event.decision() == EgressDecision::Allowed {
            tracing::info!(
                subject = %self.subject, host = %event.host, port = event.port, scheme = event.scheme().as_str_name(),
                kind = event.kind().as_str_name(), decision, injected = ?event.secrets_injected,
                withheld = ?event.secrets_withheld, "egress"
            );
        } else {
            tracing::info!(
                subject = %self.subject, host = %event.host, port = event.port, scheme = event.scheme().as_str_name(),
                decision, reason = %event.reason, "egress"
            );
        }
        (self.sink)(event);
    }
}
