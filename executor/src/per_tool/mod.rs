//! Container-per-tool mode: calls of one tool revision share a long-lived
//! hardened container (`container.rs`), talked to over one Unix socket
//! connection to its supervisor (`channel.rs`, framed by `frames.rs`) — no
//! `docker exec` per call, and neither dockerd nor the containerd shim
//! between a call and its realm. Each call still
//! gets a fresh JS realm used once (a worker thread or a process, see
//! `harness/`), its own marker and records, and the same judge as a run.
//!
//! A tool's container is started by its first call. Under load it gets
//! more: when each of its containers runs half of MCP_SANDBOX_PER_TOOL_MAX_CALLS,
//! another starts (up to MCP_SANDBOX_PER_TOOL_MAX_CONTAINERS); calls go to
//! the oldest container with room, so the extra ones fall idle first when
//! the load drops. Containers are retired when a call brings a newer
//! revision or another image or dependency set, when idle (which also
//! covers a disabled or deleted tool), and when one could not start a
//! call's realm (its limits are full, perhaps for good). Calls of a retired
//! container finish in it; it is removed when the last one ends.

pub mod channel;
pub mod container;
pub mod frames;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use dynamic_mcp_proto::v1::RunOutcome;

use crate::container::source::ColdStart;
use crate::container::{ContainerSpec, Role, labels};
use crate::deps::DepsKey;
use crate::durations::micros;
use crate::error::ExecError;
use crate::harness::{self, Call, PerToolHarness};
use crate::outcome::{Ended, Judge};
use crate::progress::ProgressSender;
use crate::setting_values::SandboxUser;
use crate::streams::Sink;
use container::ToolContainer;

/// How often idle containers are looked for, at most.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// How long a call whose channel closed waits for its container's exit code.
/// A container still running then (its channel or its output broke) cannot
/// answer any more: it is killed.
const EXIT_AFTER_CLOSE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerToolSettings {
    pub harness: PerToolHarness,
    /// Calls one container runs at once.
    pub max_calls: usize,
    /// Containers one tool revision may have at once.
    pub max_containers: usize,
    /// Without calls for this long, a tool's container is removed.
    pub idle_after: Duration,
    /// Each container's CPU limit, if not the runs' one.
    pub nano_cpus: Option<i64>,
}

/// What a call needs from its tool's container.
pub struct ToolCall<'a> {
    pub tool_name: &'a str,
    pub revision: u64,
    pub image: &'a str,
    /// The installed dependency set, in the cache volume.
    pub deps: Option<(&'a str, &'a DepsKey)>,
}

/// What, besides the revision, decides which containers a call can use:
/// the rest of a container's spec is the same for every tool (`spec`).
struct ContainerKey {
    image: String,
    deps: Option<DepsKey>,
}

impl ContainerKey {
    fn of(tool: &ToolCall<'_>) -> Self {
        Self {
            image: tool.image.to_owned(),
            deps: tool.deps.map(|(_, key)| key.clone()),
        }
    }

    /// Whether `tool`'s calls can use these containers (no copy on a call's path).
    fn fits(&self, tool: &ToolCall<'_>) -> bool {
        self.image == tool.image && self.deps.as_ref() == tool.deps.map(|(_, key)| key)
    }
}

/// A tool's current containers, oldest first.
struct Entry {
    revision: u64,
    key: ContainerKey,
    spec: ContainerSpec,
    containers: Mutex<Vec<Arc<ToolContainer>>>,
    /// Held while one more container starts, so that a burst starts one.
    starting: tokio::sync::Mutex<()>,
}

impl Entry {
    fn containers(&self) -> std::sync::MutexGuard<'_, Vec<Arc<ToolContainer>>> {
        self.containers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The oldest open container with fewer than `busy` calls, or, with
    /// `None`, the least busy one; dead and retired ones are dropped on the
    /// way (their calls in flight hold them until they end).
    fn pick(&self, busy: Option<usize>) -> Option<Arc<ToolContainer>> {
        let mut containers = self.containers();
        containers.retain(|c| c.takes_calls());
        match busy {
            Some(below) => containers.iter().find(|c| c.busy() < below).cloned(),
            None => containers.iter().min_by_key(|c| c.busy()).cloned(),
        }
    }
}

pub struct PerTool {
    cold: Arc<ColdStart>,
    judge: Judge,
    user: SandboxUser,
    settings: PerToolSettings,
    /// Read by every call, written only when a tool revision first runs.
    tools: RwLock<HashMap<String, Arc<Entry>>>,
}

impl PerTool {
    pub fn new(cold: Arc<ColdStart>, judge: Judge, user: SandboxUser, settings: PerToolSettings) -> Self {
        Self {
            cold,
            judge,
            user,
            settings,
            tools: RwLock::default(),
        }
    }

    /// The container spec of a tool revision's calls. What in it can differ
    /// between two calls of one tool must be in `ContainerKey` too.
    fn spec(&self, tool: &ToolCall<'_>) -> ContainerSpec {
        let command = harness::per_tool_command(
            &self.user,
            self.settings.harness,
            self.settings.max_calls,
            &channel::container_socket(),
        );
        let mut spec = ContainerSpec::new(Role::PerTool, tool.image, command)
            .label(labels::TOOL, tool.tool_name)
            .label(labels::REVISION, tool.revision.to_string());
        spec.nano_cpus = self.settings.nano_cpus;
        if let Some((volume, key)) = tool.deps {
            spec = spec.label(labels::DEPS_KEY, key.as_str());
            spec.deps_volume = Some(volume.to_owned());
        }
        spec
    }

    /// The tool's current entry, a fresh one if there is none or it is for
    /// an older revision, or another image or dependency set. Calls share a
    /// read lock; only a revision's first call takes the write lock.
    fn entry(&self, tool: &ToolCall<'_>) -> Arc<Entry> {
        // A call of an older revision still in flight runs beside the new ones.
        let current = |entry: &Arc<Entry>| entry.revision >= tool.revision && entry.key.fits(tool);
        let tools = self.tools.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = tools.get(tool.tool_name).filter(|entry| current(entry)) {
            return Arc::clone(entry);
        }
        drop(tools);
        let mut tools = self.tools.write().unwrap_or_else(PoisonError::into_inner);
        // Another call may have made it meanwhile.
        if let Some(entry) = tools.get(tool.tool_name).filter(|entry| current(entry)) {
            return Arc::clone(entry);
        }
        let entry = Arc::new(Entry {
            revision: tool.revision,
            key: ContainerKey::of(tool),
            spec: self.spec(tool),
            containers: Mutex::new(Vec::new()),
            starting: tokio::sync::Mutex::new(()),
        });
        if let Some(old) = tools.insert(tool.tool_name.to_owned(), Arc::clone(&entry)) {
            tracing::info!(
                tool = tool.tool_name,
                revision = old.revision,
                "per-tool containers retired"
            );
        }
        entry
    }

    /// The container for this call: the oldest with room, else a new one
    /// while the tool has fewer than the most, else the least busy.
    async fn container(&self, tool: &ToolCall<'_>) -> Result<Arc<ToolContainer>, ExecError> {
        let entry = self.entry(tool);
        let room = self.settings.max_calls.div_ceil(2);
        if let Some(container) = entry.pick(Some(room)) {
            return Ok(container);
        }
        let _starting = entry.starting.lock().await;
        // Another call may have started one meanwhile.
        if let Some(container) = entry.pick(Some(room)) {
            return Ok(container);
        }
        if entry.containers().len() >= self.settings.max_containers
            && let Some(container) = entry.pick(None)
        {
            return Ok(container);
        }
        let began = Instant::now();
        let container =
            Arc::new(ToolContainer::start(&self.cold, &entry.spec, self.settings.max_calls, self.user).await?);
        tracing::info!(
            tool = tool.tool_name,
            revision = entry.revision,
            container = container.id(),
            took_ms = began.elapsed().as_millis() as u64,
            "per-tool container started"
        );
        entry.containers().push(Arc::clone(&container));
        Ok(container)
    }

    /// Runs one call in the tool's container. `on_started` gets the
    /// container's id; dropping the future ends the call (not the container).
    pub async fn run(
        &self,
        tool: ToolCall<'_>,
        call: Call<'_>,
        on_started: impl FnOnce(&str) + Send,
        progress: ProgressSender,
    ) -> Result<RunOutcome, ExecError> {
        let arrived = Instant::now();
        // One deadline for the call: waiting for a place counts, running too.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(call.timeout_ms.into());
        let container = self.container(&tool).await?;
        let got_container = arrived.elapsed();
        let _place = match tokio::time::timeout_at(deadline, container.place()).await {
            Ok(place) => place?,
            Err(_elapsed) => {
                return Err(ExecError::PerToolBusy {
                    tool: tool.tool_name.to_owned(),
                    places: self.settings.max_calls * self.settings.max_containers,
                    timeout_ms: call.timeout_ms,
                });
            }
        };
        let placed = arrived.elapsed();
        on_started(container.id());
        let marker = harness::new_marker();
        let envelope = harness::envelope(&call, &marker);
        let mut captured = self.judge.output(&marker, Some(progress));
        let began = Instant::now();
        let mut open = container.open(&envelope)?;
        let mut first_bytes = None;
        let finished = tokio::time::timeout_at(deadline, async {
            while let Some(bytes) = open.next().await {
                first_bytes.get_or_insert_with(|| began.elapsed());
                captured.stdout(&bytes);
                if captured.complete() {
                    return true;
                }
            }
            false
        })
        .await;
        tracing::debug!(
            tool = tool.tool_name,
            container = container.id(),
            container_us = micros(got_container),
            place_wait_us = micros(placed - got_container),
            first_record_us = first_bytes.map(micros),
            outcome_us = micros(began.elapsed()),
            "per-tool call timings"
        );
        let ended = match finished {
            Ok(true) => {
                open.settled();
                Ended::Done
            }
            // Dropping the call tells the supervisor to end it.
            Err(_elapsed) => Ended::TimedOut,
            // The container ended under the call: what it exited with tells.
            Ok(false) => {
                let Ok(code) = tokio::time::timeout(EXIT_AFTER_CLOSE, container.container().wait_exit()).await else {
                    if let Err(e) = container.container().kill().await {
                        tracing::warn!(container = container.id(), error = %e, "cannot kill a per-tool container that stopped answering");
                    }
                    return Err(ExecError::Internal(format!(
                        "the tool's container {} stopped answering while still running; it was killed, and the next \
                         call starts a new one",
                        container.id()
                    )));
                };
                let code = code?;
                let oom_killed =
                    captured.needs_oom_check(code) && container.container().oom_killed().await.unwrap_or(false);
                Ended::Exited { code, oom_killed }
            }
        };
        drop(open);
        if captured.realm_refused() {
            // Full for good, as likely as for now (processes a call left
            // running hold its pids): the next calls get a fresh container.
            container.retire();
            tracing::warn!(
                tool = tool.tool_name,
                container = container.id(),
                "a per-tool container could not start a call's realm (its limits are full); retired"
            );
        }
        self.judge.outcome(captured, ended, call.timeout_ms, began.elapsed())
    }

    /// Removes the containers without a call for the idle time, and dead
    /// or retired ones; returns how many.
    pub fn retire_idle(&self) -> usize {
        let idle = self.settings.idle_after;
        let mut retired = 0;
        let mut tools = self.tools.write().unwrap_or_else(PoisonError::into_inner);
        tools.retain(|tool, entry| {
            let mut containers = entry.containers();
            let before = containers.len();
            containers.retain(|c| c.takes_calls() && !c.idle_for(idle));
            if containers.len() < before {
                tracing::info!(tool = %tool, revision = entry.revision, removed = before - containers.len(),
                    "idle, dead or retired per-tool containers removed");
            }
            retired += before - containers.len();
            // An entry whose first container is still starting has none yet.
            !containers.is_empty() || entry.starting.try_lock().is_err()
        });
        retired
    }

    /// Removes every per-tool container now (at shutdown).
    pub async fn close(&self) {
        let entries: Vec<_> = {
            let mut tools = self.tools.write().unwrap_or_else(PoisonError::into_inner);
            tools.drain().map(|(_, entry)| entry).collect()
        };
        let containers: Vec<_> = entries.iter().flat_map(|entry| entry.containers().clone()).collect();
        for container in containers {
            container.container().remove_now().await;
        }
    }
}

/// Retires idle per-tool containers, forever (abort the task to stop).
pub async fn retire_idle(per_tool: Arc<PerTool>) {
    let every = (per_tool.settings.idle_after / 4).clamp(Duration::from_millis(200), SWEEP_EVERY);
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        per_tool.retire_idle();
    }
}
