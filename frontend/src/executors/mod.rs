//! The executors this frontend uses (MCP_EXECUTOR_URL: one, or several).
//!
//! Runs and new sessions spread over the executors in rotation by load —
//! the streams each one is serving — through tower's power-of-two-choices
//! balancer. An executor leaves the rotation when its health check or a
//! call's connection fails, and rejoins once its health check passes
//! again. A call that never reached its executor is retried on another
//! one; a call that did is not (its work may have started). Every call for
//! a session goes to the executor its id names ([`session_id`]).
//!
//! [`session_id`]: dynamic_mcp_common::session_id

mod endpoint;
mod member;
mod run_channel;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use dynamic_mcp_common::internal_auth::InternalAuthError;
use dynamic_mcp_common::session_id;
use dynamic_mcp_proto::v1::executor_client::ExecutorClient;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::Status;

pub use endpoint::MemberChannel;
use member::{Member, Rotation};
pub use run_channel::RunChannel;

use crate::clients::{HealthOf, Service, ServiceLink, check_health, executor_client};

#[derive(Debug, thiserror::Error)]
pub enum ExecutorsError {
    #[error("no executor to connect to")]
    NoneGiven,
    #[error(transparent)]
    Credentials(#[from] InternalAuthError),
}

/// The executors, cheap to clone; their health is watched while a clone lives.
#[derive(Clone)]
pub struct Executors {
    inner: Arc<Inner>,
}

struct Inner {
    members: Vec<Arc<Member>>,
    runs: ExecutorClient<RunChannel>,
    _watching: DropGuard,
}

impl Executors {
    /// Lazily connecting clients for `links` (at least one), and a task that
    /// puts each executor into the rotation once it is healthy.
    pub fn connect(links: &[ServiceLink], server_name: Option<&str>) -> Result<Self, ExecutorsError> {
        let (rotation, discover) = Rotation::new();
        let members = links
            .iter()
            .enumerate()
            .map(|(index, link)| {
                Ok(Arc::new(Member::new(
                    index + 1,
                    link,
                    server_name,
                    Arc::clone(&rotation),
                )?))
            })
            .collect::<Result<Vec<_>, InternalAuthError>>()?;
        let first = members.first().ok_or(ExecutorsError::NoneGiven)?;
        let runs = executor_client(RunChannel::new(discover, first, rotation));
        let stop = CancellationToken::new();
        tokio::spawn(watch::keep_watching(members.clone(), stop.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                members,
                runs,
                _watching: stop.drop_guard(),
            }),
        })
    }

    /// `call` with `request` and a client whose calls go to the executor in rotation with
    /// the least load of two picked at random; retried on another executor
    /// as long as the call never reached the one it was sent to.
    pub async fn balanced<R, T, F, Fut>(&self, request: R, mut call: F) -> Result<T, Status>
    where
        R: Clone,
        F: FnMut(ExecutorClient<RunChannel>, R) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut attempts = self.inner.members.len();
        loop {
            match call(self.inner.runs.clone(), request.clone()).await {
                Err(status) if attempts > 1 && endpoint::never_reached(&status) => {
                    attempts -= 1;
                    tracing::debug!(
                        message = status.message(),
                        "the call never reached its executor; trying another"
                    );
                }
                outcome => return outcome,
            }
        }
    }

    /// `call` with a client for the executor that owns `session_id`. When
    /// that executor is out of rotation or cannot be reached, the caller
    /// hears at once that the session has ended (NOT_FOUND).
    pub async fn in_session<T, F, Fut>(&self, session_id: &str, call: F) -> Result<T, Status>
    where
        F: FnOnce(ExecutorClient<MemberChannel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let (member, client) = self.for_session(session_id)?;
        match call(client).await {
            Err(status) if endpoint::never_reached(&status) => Err(ended(session_id, &member)),
            outcome => outcome,
        }
    }

    /// The executor that owns `session_id`, or the NOT_FOUND a caller gets
    /// when no executor in rotation does.
    fn for_session(&self, session_id: &str) -> Result<(Arc<Member>, ExecutorClient<MemberChannel>), Status> {
        let members = &self.inner.members;
        let owner = session_id::executor_of(session_id)
            .and_then(|id| members.iter().find(|m| m.executor_id().as_deref() == Some(id)));
        match (owner, members.as_slice()) {
            (Some(member), _) if member.in_rotation() => Ok((Arc::clone(member), executor_client(member.channel()))),
            (Some(member), _) => Err(ended(session_id, member)),
            // One executor answers for every id itself, also for ids it never made.
            (None, [only]) => Ok((Arc::clone(only), executor_client(only.channel()))),
            (None, _) => Err(Status::not_found(format!(
                "no session '{}' for this caller",
                clipped(session_id)
            ))),
        }
    }

    /// A client for each executor in rotation (each owns its own sessions).
    pub fn in_rotation(&self) -> Vec<ExecutorClient<MemberChannel>> {
        self.inner
            .members
            .iter()
            .filter(|m| m.in_rotation())
            .map(|m| executor_client(m.channel()))
            .collect()
    }

    /// Ready when at least one executor says it can run code, within `within`.
    pub async fn check(&self, within: Duration) -> Result<(), String> {
        let members = &self.inner.members;
        let checks = members
            .iter()
            .map(|m| check_health(m.health(), HealthOf::Service(Service::Executor), within));
        let outcomes = futures::future::join_all(checks).await;
        if outcomes.iter().any(Result::is_ok) {
            return Ok(());
        }
        Err(match (members.len(), outcomes.as_slice()) {
            (1, [Err(why)]) => why.clone(),
            (total, _) => members
                .iter()
                .zip(outcomes)
                .filter_map(|(m, outcome)| {
                    outcome
                        .err()
                        .map(|why| format!("executor {} of {total}: {why}", m.number))
                })
                .collect::<Vec<_>>()
                .join("; "),
        })
    }

    /// How many executors are configured.
    pub fn configured(&self) -> usize {
        self.inner.members.len()
    }

    /// Where the executors are, for the log.
    pub fn addresses(&self) -> String {
        let urls: Vec<String> = self.inner.members.iter().map(|m| m.url.to_string()).collect();
        urls.join(",")
    }
}

/// What a caller hears about a session whose executor is gone.
fn ended(session_id: &str, member: &Member) -> Status {
    Status::not_found(format!(
        "session '{}' has ended: its executor ({}) stopped or cannot be reached; start a new one",
        clipped(session_id),
        member
            .executor_id()
            .unwrap_or_else(|| format!("executor {}", member.number))
    ))
}

/// Ids come from callers: echo a bounded part.
fn clipped(id: &str) -> String {
    id.chars().take(128).collect()
}
