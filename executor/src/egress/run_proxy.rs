//! One run's proxy state, and what every run's proxy shares.

use std::sync::Arc;

use hyper::Response;
use tokio_util::sync::CancellationToken;

use super::addresses::AddressPolicy;
use super::allow_list::Rule;
use super::answers::refusal_response;
use super::body::ProxyBody;
use super::ca::InterceptCa;
use super::events::{Destination, Refusal, Reporter};
use super::secrets::RunSecret;
use super::upstream::UpstreamTls;

/// What every run's proxy shares: the operator's settings.
pub struct ProxyShared {
    pub addresses: AddressPolicy,
    pub allow_ip_literals: bool,
    pub allow_plain_http: bool,
    pub upstream_tls: UpstreamTls,
    /// Only when the operator defined secrets.
    pub ca: Option<Arc<InterceptCa>>,
}

/// Who a run's proxy serves, for the fix a refusal suggests.
#[derive(Debug, Clone)]
pub enum Subject {
    Tool(String),
    Session(String),
}

impl Subject {
    pub fn whose(&self) -> String {
        match self {
            Self::Tool(name) => format!("tool '{name}'"),
            Self::Session(_) => "this sandbox session".into(),
        }
    }

    pub fn how_to_add(&self) -> &'static str {
        match self {
            Self::Tool(_) => "add it to the tool's network.allow with dynamic.tool.update",
            Self::Session(_) => "start a session whose network.allow includes it",
        }
    }

    pub fn label(&self) -> String {
        match self {
            Self::Tool(name) => format!("tool '{name}'"),
            Self::Session(id) => format!("session '{id}'"),
        }
    }
}

/// One run's proxy state.
pub struct RunProxy {
    pub shared: Arc<ProxyShared>,
    pub subject: Subject,
    pub token: String,
    pub allow: Vec<Rule>,
    pub secrets: Vec<RunSecret>,
    pub reporter: Reporter,
    /// Cancelled when the run ends: every connection of it closes.
    pub stop: CancellationToken,
}

impl RunProxy {
    /// Reports a refused request to the run and answers it.
    pub fn refuse(&self, to: &Destination, refusal: &Refusal) -> Response<ProxyBody> {
        self.reporter.refused(to, refusal);
        refusal_response(refusal)
    }
}
