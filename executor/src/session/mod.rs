//! Sandbox sessions: long-lived hardened containers, each owned by one
//! caller. The executor is the single place that knows them, so the limit
//! holds however many frontends there are.
//!
//! - A session is visible, usable and stoppable only by its owner; for
//!   anyone else it does not exist (the same NotFound as a wrong id).
//! - The limit (MCP_SANDBOX_MAX_SESSIONS) is reserved before a container
//!   starts, and the reservation is given back if the start fails.
//! - Idle sessions expire (`sweeper.rs`); all are removed at shutdown, and
//!   leftovers of a crash by the reaper at the next start.
//! - Removal only ever touches a container whose labels say it is this
//!   session of this owner on this executor.
//! - A session started with `network` has its own egress proxy
//!   (`egress/`) for its lifetime; what it decides is handed to the next
//!   call's response.

mod calls;
mod sweeper;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use dynamic_mcp_common::session_id;
use dynamic_mcp_common::timestamp::rfc3339_millis;
use dynamic_mcp_proto::v1::{EgressEvent, NetworkPolicy, SessionInfo};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use self::calls::JsPlan;
pub use self::sweeper::expire_idle;
use crate::container::lease::{Lease, OwnedContainer};
use crate::container::source::ContainerSource;
use crate::container::{ContainerSpec, EgressMount, Role, labels};
use crate::deps::DepsCache;
use crate::docker::{call_failed, is_not_found};
use crate::egress::{Egress, EventSink, Grant, Subject};
use crate::error::ExecError;
use crate::outcome::Judge;
use crate::policy::Policy;
use crate::setting_values::SandboxUser;

/// What a session container runs: nothing, until exec brings work. The
/// loop needs only /bin/sh and `sleep`, which every Node image has. It runs
/// as root under tini (see `hardening.rs`) and reads nothing.
const IDLE_LOOP: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";

/// Owners are opaque identities (e.g. a JWT subject); this bounds them.
const MAX_OWNER_BYTES: usize = 1024;

/// Egress events a session keeps for its next call; older ones are dropped.
const MAX_PENDING_EGRESS: usize = 1000;
/// Enough for any id we hand out (a 64-character executor id, '.', a UUID).
const MAX_ECHOED_ID_CHARS: usize = 128;

/// Session settings, from the executor's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    pub max_sessions: u32,
    pub idle_timeout: Duration,
    /// A Docker network sessions join; `None` (the default): no network.
    pub network: Option<String>,
    /// The sandbox user commands and code run as.
    pub user: SandboxUser,
    pub max_output_bytes: usize,
}

pub struct Sessions {
    executor_id: String,
    settings: SessionSettings,
    policy: Policy,
    egress: Arc<Egress>,
    source: Arc<dyn ContainerSource>,
    deps: Arc<DepsCache>,
    judge: Judge,
    /// One permit per session, taken before its container starts.
    slots: Arc<Semaphore>,
    /// Read by every call, written when a session starts or ends.
    open: RwLock<HashMap<String, Arc<Session>>>,
}

/// One open session.
pub struct Session {
    id: String,
    owner: String,
    image: String,
    timeout_ms: u32,
    created_at: SystemTime,
    activity: Mutex<Activity>,
    /// Its egress proxy, if it has network.allow; events wait for a call.
    egress: Option<SessionEgress>,
    /// Removed (and its container-cap slot freed) when the session is dropped.
    container: OwnedContainer,
    _slot: OwnedSemaphorePermit,
}

struct SessionEgress {
    /// Stops the proxy when the session goes.
    _grant: Grant,
    network: NetworkPolicy,
    pending: Arc<Mutex<Vec<EgressEvent>>>,
}

#[derive(Debug, Clone, Copy)]
struct Activity {
    last_used: SystemTime,
    calls_running: usize,
}

/// A call in progress: the session cannot expire meanwhile, and its idle
/// clock restarts when the call ends.
pub struct Call {
    session: Arc<Session>,
}

impl Sessions {
    pub fn new(
        executor_id: String,
        settings: SessionSettings,
        policy: Policy,
        egress: Arc<Egress>,
        source: Arc<dyn ContainerSource>,
        deps: Arc<DepsCache>,
        judge: Judge,
    ) -> Self {
        Self {
            executor_id,
            slots: Arc::new(Semaphore::new(settings.max_sessions as usize)),
            settings,
            policy,
            egress,
            source,
            deps,
            judge,
            open: RwLock::default(),
        }
    }

    /// Starts a session for `owner`. The slot is reserved first, so the
    /// limit holds under any number of concurrent starts; a start that fails
    /// (or whose caller goes away) gives it back.
    pub async fn start(
        &self,
        owner: &str,
        image: Option<&str>,
        timeout_ms: Option<u32>,
        network: Option<&NetworkPolicy>,
    ) -> Result<SessionInfo, ExecError> {
        check_owner(owner)?;
        let resolved = self.policy.resolve(image, timeout_ms, &[])?;
        let egress_plan = self.egress.check(network, &[])?;
        let slot = Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| ExecError::TooManySessions {
                max: self.settings.max_sessions,
            })?;
        // Sessions mount the dependency cache from the start: run_js may
        // need any set, installed now or later.
        self.deps.ensure_volume().await?;
        // Named after us, so a frontend with several executors routes it here.
        let id = session_id::compose(&self.executor_id, &uuid::Uuid::new_v4().to_string());
        let mut spec = ContainerSpec::new(
            Role::Session,
            resolved.image.as_str(),
            ["sh", "-c", IDLE_LOOP].map(String::from).to_vec(),
        )
        .label(labels::SESSION, &id)
        .label(labels::OWNER, owner_tag(owner));
        spec.deps_volume = Some(self.deps.volume().to_owned());
        spec.network = self.settings.network.clone();
        if egress_plan.is_some() {
            spec.egress = EgressMount::Wanted;
        }
        let Lease {
            container, egress_dir, ..
        } = self.source.acquire(&spec).await?;
        let egress = match egress_plan {
            Some(plan) => {
                let pending = Arc::new(Mutex::new(Vec::new()));
                let grant = self.egress.open(
                    &plan,
                    Subject::Session(id.clone()),
                    keep_for_next_call(&pending),
                    egress_dir,
                )?;
                Some(SessionEgress {
                    _grant: grant,
                    network: plan.network(),
                    pending,
                })
            }
            None => None,
        };
        let now = SystemTime::now();
        let session = Arc::new(Session {
            id: id.clone(),
            owner: owner.to_owned(),
            image: resolved.image,
            timeout_ms: resolved.timeout_ms,
            created_at: now,
            activity: Mutex::new(Activity {
                last_used: now,
                calls_running: 0,
            }),
            egress,
            container,
            _slot: slot,
        });
        let info = session.info(self.settings.idle_timeout);
        self.table_mut().insert(id, session);
        tracing::info!(session = %info.session_id, image = %info.image, "session started");
        Ok(info)
    }

    /// The owner's sessions, oldest first.
    pub fn list(&self, owner: &str) -> Result<Vec<SessionInfo>, ExecError> {
        check_owner(owner)?;
        let mut mine: Vec<Arc<Session>> = self.table().values().filter(|s| s.owner == owner).cloned().collect();
        mine.sort_by_key(|s| s.created_at);
        Ok(mine.iter().map(|s| s.info(self.settings.idle_timeout)).collect())
    }

    /// Stops the owner's session `id` and removes its container; calls still
    /// running in it end at once.
    pub async fn stop(&self, owner: &str, id: &str) -> Result<(), ExecError> {
        check_owner(owner)?;
        let session = {
            let mut open = self.table_mut();
            match open.get(id) {
                Some(session) if session.owner == owner => open.remove(id),
                _ => None,
            }
        }
        .ok_or_else(|| not_found(id))?;
        self.remove(&session, "stopped by its owner").await
    }

    /// Removes every session (at shutdown).
    pub async fn stop_all(&self) {
        let all: Vec<Arc<Session>> = self.table_mut().drain().map(|(_, s)| s).collect();
        futures::future::join_all(all.iter().map(|s| self.remove(s, "the executor is stopping"))).await;
    }

    /// Begins a call in the owner's session `id`.
    fn checkout(&self, owner: &str, id: &str) -> Result<Call, ExecError> {
        check_owner(owner)?;
        // Under the table's lock, so the sweeper cannot expire it in between.
        let open = self.table();
        let session = open.get(id).filter(|s| s.owner == owner).ok_or_else(|| not_found(id))?;
        session.touch(|activity| activity.calls_running += 1);
        Ok(Call {
            session: Arc::clone(session),
        })
    }

    /// Forgets a session whose container died under a call.
    fn forget_ended(&self, session: &Session) -> ExecError {
        let mut open = self.table_mut();
        if open.get(&session.id).is_some_and(|s| std::ptr::eq(s.as_ref(), session)) {
            open.remove(&session.id);
        }
        ExecError::SessionEnded { id: session.id.clone() }
    }

    /// Removes the container, after checking from its labels that it is
    /// this session of this owner on this executor: a wrong entry must never
    /// remove someone else's container.
    async fn remove(&self, session: &Session, why: &str) -> Result<(), ExecError> {
        let docker = session.container.docker();
        let inspected = match docker.inspect_container(session.container.id(), None).await {
            Ok(inspected) => inspected,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(call_failed("inspect a session container", e)),
        };
        let found = inspected.config.and_then(|c| c.labels).unwrap_or_default();
        let owner_tag = owner_tag(&session.owner);
        let expected = [
            (labels::MANAGED, "true"),
            (labels::EXECUTOR, self.executor_id.as_str()),
            (labels::ROLE, Role::Session.label()),
            (labels::SESSION, session.id.as_str()),
            (labels::OWNER, owner_tag.as_str()),
        ];
        if !expected
            .iter()
            .all(|(k, v)| found.get(*k).map(String::as_str) == Some(*v))
        {
            tracing::error!(session = %session.id, "a session's container does not carry its labels; not removing it");
            return Err(ExecError::Internal(format!(
                "refusing to remove the container of session '{}': its labels do not match",
                session.id
            )));
        }
        session.container.remove_now().await;
        tracing::info!(session = %session.id, why, "session removed");
        Ok(())
    }

    fn table(&self) -> RwLockReadGuard<'_, HashMap<String, Arc<Session>>> {
        self.open.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn table_mut(&self) -> RwLockWriteGuard<'_, HashMap<String, Arc<Session>>> {
        self.open.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The egress events of the owner's session `id` since the last call
    /// took them; none for a session without egress (or not the owner's).
    pub fn take_egress(&self, owner: &str, id: &str) -> Vec<EgressEvent> {
        let session = self.table().get(id).filter(|s| s.owner == owner).cloned();
        session
            .and_then(|s| {
                s.egress
                    .as_ref()
                    .map(|e| std::mem::take(&mut *e.pending.lock().unwrap_or_else(|p| p.into_inner())))
            })
            .unwrap_or_default()
    }
}

/// A sink that keeps a session's events until a call hands them on.
fn keep_for_next_call(pending: &Arc<Mutex<Vec<EgressEvent>>>) -> EventSink {
    let pending = Arc::clone(pending);
    Arc::new(move |event| {
        let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_PENDING_EGRESS {
            pending.remove(0);
        }
        pending.push(event);
    })
}

impl Session {
    fn touch(&self, change: impl FnOnce(&mut Activity)) {
        let mut activity = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut activity);
        activity.last_used = SystemTime::now();
    }

    fn activity(&self) -> Activity {
        *self.activity.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn info(&self, idle_timeout: Duration) -> SessionInfo {
        let last_used = self.activity().last_used;
        SessionInfo {
            session_id: self.id.clone(),
            image: self.image.clone(),
            created_at: rfc3339_millis(self.created_at),
            last_used_at: rfc3339_millis(last_used),
            expires_at: rfc3339_millis(last_used + idle_timeout),
            timeout_ms: self.timeout_ms,
            network: self.egress.as_ref().map(|e| e.network.clone()),
        }
    }

    /// What processes started in this session need in their environment.
    fn exec_env(&self) -> Vec<String> {
        self.egress.iter().map(|_| Grant::node_options()).collect()
    }
}

impl Call {
    pub fn session(&self) -> &Session {
        &self.session
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.session
            .touch(|activity| activity.calls_running = activity.calls_running.saturating_sub(1));
    }
}

fn check_owner(owner: &str) -> Result<(), ExecError> {
    if owner.trim().is_empty() || owner.len() > MAX_OWNER_BYTES {
        return Err(ExecError::BadRequest(format!(
            "owner must be a caller identity of 1 to {MAX_OWNER_BYTES} bytes"
        )));
    }
    Ok(())
}

fn not_found(id: &str) -> ExecError {
    let id: String = id.chars().take(MAX_ECHOED_ID_CHARS).collect();
    ExecError::SessionNotFound { id }
}

/// What a container's label says about its owner: a hash, never the identity.
fn owner_tag(owner: &str) -> String {
    format!("{:x}", Sha256::digest(owner.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_hashed_and_bounded() {
        assert_eq!(owner_tag("alice").len(), 64);
        assert_ne!(owner_tag("alice"), owner_tag("bob"));
        assert!(check_owner("").is_err());
        assert!(check_owner("  ").is_err());
        assert!(check_owner(&"x".repeat(MAX_OWNER_BYTES + 1)).is_err());
        assert!(check_owner("user:42").is_ok());
    }

    #[test]
    fn not_found_never_echoes_a_huge_id() {
        let message = not_found(&"x".repeat(10_000)).to_string();
        assert!(message.len() < MAX_ECHOED_ID_CHARS + 50, "{message}");
    }
}
