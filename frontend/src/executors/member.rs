//! One executor of those configured: where it is, whether it is in the
//! rotation, and the executor id it reported (the prefix of its session ids).

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use dynamic_mcp_common::addr::ServiceUrl;
use dynamic_mcp_common::internal_auth::{InternalAuthError, InternalChannel};
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use tonic_health::pb::health_client::HealthClient;
use tower::discover::Change;

use super::endpoint::{Endpoint, FailureReport, MemberChannel, endpoint};
use crate::links::ServiceLink;

/// What the balancer learns about membership: executors joining and leaving.
pub type Discovered = UnboundedReceiver<Result<Change<usize, Endpoint>, Infallible>>;

/// The balancer's membership feed and how many executors are in rotation.
pub struct Rotation {
    changes: UnboundedSender<Result<Change<usize, Endpoint>, Infallible>>,
    size: AtomicUsize,
}

impl Rotation {
    pub fn new() -> (Arc<Self>, Discovered) {
        let (changes, discovered) = unbounded();
        let rotation = Self {
            changes,
            size: AtomicUsize::new(0),
        };
        (Arc::new(rotation), discovered)
    }

    /// How many executors are in rotation now.
    pub fn size(&self) -> usize {
        self.size.load(Ordering::Acquire)
    }

    fn send(&self, change: Change<usize, Endpoint>) {
        // The receiver lives in the balancer, as long as any client does.
        let _ = self.changes.unbounded_send(Ok(change));
    }
}

#[derive(Default)]
struct State {
    in_rotation: bool,
    executor_id: Option<String>,
    /// Why it is kept out although healthy (logged once per reason).
    refused: Option<String>,
}

pub struct Member {
    /// Its place in MCP_EXECUTOR_URL, from 1: names it in logs and messages.
    pub number: usize,
    pub url: ServiceUrl,
    channel: InternalChannel,
    health: HealthClient<InternalChannel>,
    rotation: Arc<Rotation>,
    state: Mutex<State>,
}

impl Member {
    pub fn new(
        number: usize,
        link: &ServiceLink,
        server_name: Option<&str>,
        rotation: Arc<Rotation>,
    ) -> Result<Self, InternalAuthError> {
        let channel = link.channel(server_name)?;
        Ok(Self {
            number,
            url: link.url.clone(),
            health: HealthClient::new(channel.clone()),
            channel,
            rotation,
            state: Mutex::default(),
        })
    }

    /// Its channel; a failed connection takes it out of rotation.
    pub fn channel(self: &Arc<Self>) -> MemberChannel {
        let report: Arc<dyn FailureReport> = self.clone();
        MemberChannel::new(self.channel.clone(), report)
    }

    pub fn health(&self) -> HealthClient<InternalChannel> {
        self.health.clone()
    }

    pub fn in_rotation(&self) -> bool {
        self.state().in_rotation
    }

    pub fn executor_id(&self) -> Option<String> {
        self.state().executor_id.clone()
    }

    /// Into rotation, as the executor `executor_id`.
    pub fn join(self: &Arc<Self>, executor_id: String) {
        let mut state = self.state();
        state.refused = None;
        state.executor_id = Some(executor_id);
        if !state.in_rotation {
            state.in_rotation = true;
            self.rotation.size.fetch_add(1, Ordering::AcqRel);
            self.rotation
                .send(Change::Insert(self.number, endpoint(self.channel())));
            tracing::info!(executor = self.number, url = %self.url, executor_id = state.executor_id.as_deref(),
                "executor joined the rotation");
        }
    }

    /// Out of rotation (if it was in), because of `why`.
    pub fn leave(&self, why: &str) {
        let mut state = self.state();
        if state.in_rotation {
            state.in_rotation = false;
            self.rotation.size.fetch_sub(1, Ordering::AcqRel);
            self.rotation.send(Change::Remove(self.number));
            tracing::warn!(executor = self.number, url = %self.url, why, "executor left the rotation");
        }
    }

    /// Kept out although healthy, because of `why`.
    pub fn refuse(&self, why: String) {
        self.leave(&why);
        let mut state = self.state();
        if state.refused.as_ref() != Some(&why) {
            tracing::error!(executor = self.number, url = %self.url, "{why}");
            state.refused = Some(why);
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FailureReport for Member {
    fn transport_failed(&self, why: &str) {
        self.leave(why);
    }
}
