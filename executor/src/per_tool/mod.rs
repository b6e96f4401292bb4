//! Container-per-tool mode: calls of one tool revision share a long-lived
//! hardened container (`container.rs`), talked to over its attached stdin
//! and stdout (`frames.rs`) — no `docker exec` per call. Each call still
//! gets a fresh JS realm used once (a worker thread or a process, see
//! `harness/`), its own marker and records, and the same judge as a run.
//!
//! A tool's container is started by its first call and retired when a
//! call brings a newer revision or another image or dependency set, and
//! when idle (which also covers a disabled or deleted tool). Calls of the
//! retired container finish in it; it is removed when the last one ends.

pub mod container;
pub mod frames;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dynamic_mcp_proto::v1::RunOutcome;
use tokio::sync::OnceCell;

use crate::setting_values::SandboxUser;
use crate::container::source::ColdStart;
use crate::container::{ContainerSpec, Role, labels};
use crate::deps::DepsKey;
use crate::error::ExecError;
use crate::harness::{self, Call, PerToolHarness};
use crate::outcome::{Ended, Judge};
use crate::progress::ProgressSender;
use crate::streams::Sink;
use container::ToolContainer;

/// How often idle containers are looked for, at most.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerToolSettings {
    pub harness: PerToolHarness,
    /// Calls one container runs at once.
    pub max_calls: usize,
    /// Without calls for this long, a tool's container is removed.
    pub idle_after: Duration,
}

/// What a call needs from its tool's container.
pub struct ToolCall<'a> {
    pub tool_name: &'a str,
    pub revision: u64,
    pub image: &'a str,
    /// The installed dependency set, in the cache volume.
    pub deps: Option<(&'a str, &'a DepsKey)>,
}

/// A tool's current container, started by the first call that needs it.
struct Entry {
    revision: u64,
    spec: ContainerSpec,
    container: OnceCell<Arc<ToolContainer>>,
}

pub struct PerTool {
    cold: Arc<ColdStart>,
    judge: Judge,
    user: SandboxUser,
    settings: PerToolSettings,
    tools: Mutex<HashMap<String, Arc<Entry>>>,
}

impl PerTool {
    pub fn new(cold: Arc<ColdStart>, judge: Judge, user: SandboxUser, settings: PerToolSettings) -> Self {
        Self {
            cold,
            judge,
            user,
            settings,
            tools: Mutex::new(HashMap::new()),
        }
    }

    fn tools(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.tools.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The container spec of a tool revision's calls.
    pub fn spec(&self, tool: &ToolCall<'_>) -> ContainerSpec {
        let command = harness::per_tool_command(&self.user, self.settings.harness);
        let mut spec = ContainerSpec::new(Role::PerTool, tool.image, command)
            .label(labels::TOOL, tool.tool_name)
            .label(labels::REVISION, tool.revision.to_string());
        if let Some((volume, key)) = tool.deps {
            spec = spec.label(labels::DEPS_KEY, key.as_str());
            spec.deps_volume = Some(volume.to_owned());
        }
        spec
    }

    /// The tool's container for this call, started if there is none or the
    /// current one is for an older revision, another image or set, or dead.
    async fn container(&self, tool: &ToolCall<'_>) -> Result<Arc<ToolContainer>, ExecError> {
        let spec = self.spec(tool);
        let entry = {
            let mut tools = self.tools();
            match tools.get(tool.tool_name) {
                // A call of an older revision still in flight runs beside the new ones.
                Some(entry)
                    if entry.revision >= tool.revision
                        && same_container(&entry.spec, &spec)
                        && !entry.container.get().is_some_and(|c| c.is_closed()) =>
                {
                    Arc::clone(entry)
                }
                _ => {
                    let entry = Arc::new(Entry {
                        revision: tool.revision,
                        spec,
                        container: OnceCell::new(),
                    });
                    if let Some(old) = tools.insert(tool.tool_name.to_owned(), Arc::clone(&entry)) {
                        tracing::info!(
                            tool = tool.tool_name,
                            revision = old.revision,
                            "per-tool container retired"
                        );
                    }
                    entry
                }
            }
        };
        let started = entry
            .container
            .get_or_try_init(|| async {
                let began = Instant::now();
                let container = ToolContainer::start(&self.cold, &entry.spec, self.settings.max_calls).await?;
                tracing::info!(
                    tool = tool.tool_name,
                    revision = entry.revision,
                    container = container.id(),
                    took_ms = began.elapsed().as_millis() as u64,
                    "per-tool container started"
                );
                Ok::<_, ExecError>(Arc::new(container))
            })
            .await?;
        Ok(Arc::clone(started))
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
        let container = self.container(&tool).await?;
        let _place = container.place().await?;
        on_started(container.id());
        let marker = harness::new_marker();
        let envelope = harness::envelope(&call, &marker);
        let mut captured = self.judge.output(&marker, Some(progress));
        let began = Instant::now();
        let mut open = container.open(&envelope)?;
        let timeout = Duration::from_millis(call.timeout_ms.into());
        let finished = tokio::time::timeout(timeout, async {
            while let Some(bytes) = open.next().await {
                captured.stdout(&bytes);
                if captured.complete() {
                    return true;
                }
            }
            false
        })
        .await;
        let ended = match finished {
            Ok(true) => {
                open.settled();
                Ended::Done
            }
            // Dropping the call tells the supervisor to end it.
            Err(_elapsed) => Ended::TimedOut,
            // The container ended under the call: what it exited with tells.
            Ok(false) => {
                let code = container.container().wait_exit().await?;
                let oom_killed =
                    captured.needs_oom_check(code) && container.container().oom_killed().await.unwrap_or(false);
                Ended::Exited { code, oom_killed }
            }
        };
        drop(open);
        self.judge.outcome(captured, ended, call.timeout_ms, began.elapsed())
    }

    /// Removes the containers without a call for the idle time; returns how many.
    pub fn retire_idle(&self) -> usize {
        let idle = self.settings.idle_after;
        let mut tools = self.tools();
        let before = tools.len();
        tools.retain(|tool, entry| {
            let retire = entry.container.get().is_some_and(|c| c.is_closed() || c.idle_for(idle));
            if retire {
                tracing::info!(tool = %tool, revision = entry.revision, "idle per-tool container removed");
            }
            !retire
        });
        before - tools.len()
    }

    /// Removes every per-tool container now (at shutdown).
    pub async fn close(&self) {
        let entries: Vec<_> = self.tools().drain().map(|(_, entry)| entry).collect();
        for entry in entries {
            if let Some(container) = entry.container.get() {
                container.container().remove_now().await;
            }
        }
    }
}

/// Two specs serve the same calls when only the revision label differs.
fn same_container(a: &ContainerSpec, b: &ContainerSpec) -> bool {
    let labels = |spec: &ContainerSpec| {
        spec.labels
            .iter()
            .filter(|(key, _)| *key != labels::REVISION)
            .cloned()
            .collect::<Vec<_>>()
    };
    a.image == b.image && a.deps_volume == b.deps_volume && a.command == b.command && labels(a) == labels(b)
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
