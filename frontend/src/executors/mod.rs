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

use crate::links::{HealthOf, Service, ServiceLink, check_health, executor_client};

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
    /// Stops the health watch when the last clone goes.
    _watching: Option<DropGuard>,
}

impl Executors {
    /// Lazily connecting clients for `links` (at least one), and a task that
    /// puts each executor into the rotation once it is healthy.
    pub fn connect(links: &[ServiceLink], server_name: Option<&str>) -> Result<Self, ExecutorsError> {
        let stop = CancellationToken::new();
        let executors = Self::new(links, server_name, Some(stop.clone().drop_guard()))?;
        tokio::spawn(watch::keep_watching(executors.inner.members.clone(), stop));
        Ok(executors)
    }

    /// The clients, all out of rotation, with nobody watching their health.
    #[cfg(test)]
    fn unwatched(links: &[ServiceLink]) -> Result<Self, ExecutorsError> {
        Self::new(links, None, None)
    }

    fn new(
        links: &[ServiceLink],
        server_name: Option<&str>,
        watching: Option<DropGuard>,
    ) -> Result<Self, ExecutorsError> {
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
        Ok(Self {
            inner: Arc::new(Inner {
                members,
                runs,
                _watching: watching,
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

    /// `call` with a client for the executor that owns `session_id`, also
    /// while it is out of rotation (one failed call may have put it out,
    /// and its sessions may live on). When it cannot be reached, the caller
    /// hears that the session has ended (NOT_FOUND), without waiting longer
    /// than a connection attempt.
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
    /// when no executor does.
    fn for_session(&self, session_id: &str) -> Result<(Arc<Member>, ExecutorClient<MemberChannel>), Status> {
        let members = &self.inner.members;
        let owner = session_id::executor_of(session_id)
            .and_then(|id| members.iter().find(|m| m.executor_id().as_deref() == Some(id)));
        match (owner, members.as_slice()) {
            (Some(member), _) => Ok((Arc::clone(member), executor_client(member.channel()))),
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

#[cfg(test)]
mod tests {
    use dynamic_mcp_common::addr::ServiceUrl;
    use dynamic_mcp_common::internal_auth::InternalAuth;
    use tonic::Code;

    use super::*;

    fn executors(count: usize) -> Executors {
        let links: Vec<ServiceLink> = (1..=count)
            .map(|n| ServiceLink {
                url: ServiceUrl::Unix(format!("/nonexistent/executor-{n}.sock").into()),
                auth: InternalAuth::default(),
            })
            .collect();
        Executors::unwatched(&links).unwrap()
    }

    fn member(executors: &Executors, number: usize) -> &Arc<Member> {
        &executors.inner.members[number - 1]
    }

    fn refusal(outcome: Result<(Arc<Member>, ExecutorClient<MemberChannel>), Status>) -> Status {
        match outcome {
            Ok((member, _)) => panic!("routed to executor {}", member.number),
            Err(status) => status,
        }
    }

    #[tokio::test]
    async fn a_session_goes_to_the_executor_its_id_names() {
        let executors = executors(2);
        member(&executors, 1).join("east".into());
        member(&executors, 2).join("west.2".into());
        let (owner, _) = executors
            .for_session("west.2.0b7d5c1e-93c4-4be9-8a31-6a8f3e0e9b10")
            .unwrap();
        assert_eq!(owner.number, 2);
        let (owner, _) = executors
            .for_session("east.0b7d5c1e-93c4-4be9-8a31-6a8f3e0e9b10")
            .unwrap();
        assert_eq!(owner.number, 1);
        assert_eq!(executors.in_rotation().len(), 2);
    }

    #[tokio::test]
    async fn a_session_whose_executor_cannot_be_reached_has_ended() {
        let executors = executors(2);
        member(&executors, 1).join("east".into());
        member(&executors, 2).join("west".into());
        member(&executors, 2).leave("killed");
        let (owner, _) = executors.for_session("west.0b7d5c1e").unwrap();
        assert_eq!(owner.number, 2, "out of rotation, it still owns its sessions");
        let status = executors
            .in_session("west.0b7d5c1e", |mut client| async move {
                client
                    .list_sessions(dynamic_mcp_proto::v1::ListSessionsRequest { owner: "me".into() })
                    .await
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(
            status.message(),
            "session 'west.0b7d5c1e' has ended: its executor (west) stopped or cannot be reached; start a new one"
        );
        assert_eq!(executors.in_rotation().len(), 1);
    }

    #[tokio::test]
    async fn with_several_executors_an_id_naming_none_is_not_found() {
        let executors = executors(2);
        member(&executors, 1).join("east".into());
        for id in ["north.0b7d5c1e", "0b7d5c1e-93c4-4be9-8a31-6a8f3e0e9b10", ""] {
            let status = refusal(executors.for_session(id));
            assert_eq!(status.code(), Code::NotFound);
            assert_eq!(status.message(), format!("no session '{id}' for this caller"));
        }
    }

    #[tokio::test]
    async fn one_executor_answers_for_every_id_itself() {
        let executors = executors(1);
        for id in ["north.0b7d5c1e", "0b7d5c1e-93c4-4be9-8a31-6a8f3e0e9b10"] {
            let (owner, _) = executors.for_session(id).unwrap();
            assert_eq!(owner.number, 1);
        }
    }

    #[tokio::test]
    async fn a_call_that_cannot_connect_is_marked_never_reached_and_takes_its_executor_out() {
        let executors = executors(2);
        member(&executors, 1).join("east".into());
        let mut client = executor_client(member(&executors, 1).channel());
        let status = client
            .describe_sandbox(dynamic_mcp_proto::v1::DescribeSandboxRequest {})
            .await
            .unwrap_err();
        assert!(endpoint::never_reached(&status), "{status:?}");
        assert!(!member(&executors, 1).in_rotation());
        assert!(!endpoint::never_reached(&Status::unavailable("h2 protocol error")));
    }

    #[tokio::test]
    async fn balanced_calls_try_every_executor_once_when_none_can_be_reached() {
        let executors = executors(3);
        for (number, id) in [(1, "a"), (2, "b"), (3, "c")] {
            member(&executors, number).join(id.into());
        }
        let mut attempts = 0;
        let status = executors
            .balanced((), |mut client, ()| {
                attempts += 1;
                async move {
                    client
                        .describe_sandbox(dynamic_mcp_proto::v1::DescribeSandboxRequest {})
                        .await
                }
            })
            .await
            .unwrap_err();
        assert_eq!(attempts, 3);
        assert!(endpoint::never_reached(&status));
        assert!(
            executors.in_rotation().is_empty(),
            "each failed connection takes its executor out"
        );
    }
}
