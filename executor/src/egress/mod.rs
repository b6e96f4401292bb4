//! Controlled egress: code reaches exactly the hosts its tool (or session)
//! names, through a proxy this executor owns, and secrets are used by its
//! requests without ever entering its container.
//!
//! - A run with egress still has no network interface but `lo`
//!   (`NetworkDisabled`); its only way out is its own proxy socket, mounted
//!   read-only into its container (`grant.rs`). Raw sockets, DNS and
//!   `net.connect` to any address fail as in every other run.
//! - What may be asked for: `policy.rs` (the operator's ceiling) with the
//!   entry syntax of `allow_list.rs`. What is checked per connection:
//!   `proxy.rs` (credential, destination) and `addresses.rs` (what names
//!   resolve to); a run's proxy state: `run_proxy.rs`; the proxy's own
//!   answers and the ones it passes back: `answers.rs`. TLS interception for runs with secrets: `intercept.rs`,
//!   `ca.rs`, `rewrite.rs`; the secrets themselves: `secrets.rs`.
//! - Every decision is an `EgressEvent` for the caller (`events.rs`).
//! - Inside the container, `harness/egress.mjs` makes `fetch`, `http` and
//!   `https` go through the socket.

mod addresses;
pub mod allow_list;
mod answers;
mod body;
mod ca;
mod events;
mod grant;
mod intercept;
pub mod policy;
mod proxy;
mod rewrite;
mod run_proxy;
pub mod secrets;
pub mod settings;
mod upstream;

use std::sync::Arc;

use dynamic_mcp_proto::v1::NetworkPolicy;

use self::addresses::AddressPolicy;
use self::ca::InterceptCa;
use self::events::Reporter;
pub use self::events::{EventSink, SinkCloser, closable};
pub use self::grant::{CONTAINER_DIR, Grant};
pub use self::policy::{EgressError, EgressPlan, EgressPolicy};
pub use self::run_proxy::Subject;
use self::run_proxy::{ProxyShared, RunProxy};
use self::secrets::{RunSecret, SecretStore};
use self::settings::EgressArgs;
use self::upstream::UpstreamTls;
use crate::socket_dir::SocketDir;

/// Why egress cannot be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum EgressSetupError {
    #[error(
        "MCP_SANDBOX_EGRESS_ALLOWED_HOSTS lists '{0}', an IP address or network; \
         set MCP_SANDBOX_EGRESS_ALLOW_IP_LITERALS=true or name hosts"
    )]
    IpInCeiling(String),
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsFileError),
    #[error(transparent)]
    UpstreamCa(#[from] upstream::UpstreamCaError),
    #[error("cannot make the interception CA: {0}")]
    Ca(#[from] ca::CaError),
}

/// The executor's egress: policy for everyone, proxies for runs.
pub struct Egress {
    policy: EgressPolicy,
    /// `None` when egress is off (an empty ceiling).
    proxies: Option<Proxies>,
}

struct Proxies {
    shared: Arc<ProxyShared>,
    max_connections: usize,
}

impl Egress {
    /// Egress that is off: every request for it is refused.
    pub fn disabled() -> Self {
        Self {
            policy: EgressPolicy::default(),
            proxies: None,
        }
    }

    /// Checks the settings and loads the secrets.
    pub fn new(args: &EgressArgs) -> Result<Self, EgressSetupError> {
        if !args.allow_ip_literals
            && let Some(ip) = args.allowed_hosts.0.iter().find(|r| r.is_ip())
        {
            return Err(EgressSetupError::IpInCeiling(ip.to_string()));
        }
        let secrets = match &args.secrets_file {
            Some(path) => SecretStore::load(path, args.allow_ip_literals)?,
            None => SecretStore::default(),
        };
        let policy = EgressPolicy {
            ceiling: args.allowed_hosts.0.clone(),
            allow_ip_literals: args.allow_ip_literals,
            allow_plain_http: args.allow_plain_http,
            secrets,
        };
        if !policy.enabled() {
            if !policy.secrets.is_empty() {
                tracing::warn!(
                    "MCP_SANDBOX_SECRETS_FILE defines secrets, but MCP_SANDBOX_EGRESS_ALLOWED_HOSTS is empty: \
                     no tool can use them"
                );
            }
            return Ok(Self { policy, proxies: None });
        }
        let ca = if policy.secrets.is_empty() {
            None
        } else {
            Some(Arc::new(InterceptCa::generate()?))
        };
        let shared = Arc::new(ProxyShared {
            addresses: AddressPolicy::new(args.allowed_networks.0.clone(), args.resolve.0.clone()),
            allow_ip_literals: args.allow_ip_literals,
            allow_plain_http: args.allow_plain_http,
            upstream_tls: UpstreamTls::new(args.upstream_ca_file.as_deref())?,
            ca,
        });
        tracing::info!(
            ceiling = %allow_list::describe(&policy.ceiling),
            secrets = policy.secrets.names().len(),
            "egress is on"
        );
        Ok(Self {
            policy,
            proxies: Some(Proxies {
                shared,
                max_connections: args.max_connections as usize,
            }),
        })
    }

    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// Checks a request for egress; `None` when it asks for none.
    pub fn check(
        &self,
        network: Option<&NetworkPolicy>,
        secrets: &[String],
    ) -> Result<Option<EgressPlan>, EgressError> {
        self.policy.check(network.map_or(&[], |n| n.allow.as_slice()), secrets)
    }

    /// Starts the proxy of one run (or session) with a checked plan, in its
    /// container's egress directory. Dropping the grant ends it.
    pub fn open(
        &self,
        plan: &EgressPlan,
        subject: Subject,
        sink: EventSink,
        dir: Option<SocketDir>,
    ) -> Result<Grant, EgressOpenError> {
        let proxies = self.proxies.as_ref().ok_or(EgressOpenError::Off)?;
        let secrets: Vec<RunSecret> = self.policy.secrets_of(plan).into_iter().map(RunSecret::new).collect();
        let ca_pem = match (&proxies.shared.ca, secrets.is_empty()) {
            (Some(ca), false) => Some(ca.cert_pem()),
            _ => None,
        };
        let proxy = RunProxy {
            shared: Arc::clone(&proxies.shared),
            reporter: Reporter::new(subject.label(), sink),
            subject,
            token: format!("{:032x}", rand::random::<u128>()),
            allow: plan.allow.clone(),
            secrets,
            stop: tokio_util::sync::CancellationToken::new(),
        };
        let dir = dir.ok_or(EgressOpenError::NoDirectory)?;
        Grant::open(dir, ca_pem.as_deref(), proxy, proxies.max_connections).map_err(EgressOpenError::Io)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EgressOpenError {
    #[error("egress is off on this executor")]
    Off,
    #[error("the container has no egress directory")]
    NoDirectory,
    #[error("cannot set up the run's egress proxy: {0}")]
    Io(std::io::Error),
}
