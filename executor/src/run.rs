//! One tool run: policy check → its dependencies from the cache → a
//! container from the source → the stdin envelope → the supervisor's
//! records (capped output, progress) under the run's timeout → exactly one
//! outcome, as soon as its `done` record is in. The container goes away
//! with the lease (in the background), whatever happens here; after a
//! `done` record, only once the outcome is on its way back. A run with
//! egress gets its own proxy (`egress/`) for its lifetime, and its socket in
//! the container. A tool whose isolation is container-per-tool runs in its
//! revision's long-lived container instead (`per_tool/`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use dynamic_mcp_proto::v1::{
    Dependency, DependencySetup, Isolation, PrepareToolRequest, PrepareToolResponse, RunOutcome, RunToolRequest,
    content_block, embedded_resource,
};
use serde_json::value::RawValue;

use crate::container::lease::Lease;
use crate::container::source::ContainerSource;
use crate::container::{ContainerSpec, EgressMount, Role, labels};
use crate::deps::{DepsCache, DepsKey};
use crate::durations::millis;
use crate::egress::{Egress, EgressPlan, EventSink, Grant, Subject};
use crate::error::ExecError;
use crate::harness;
use crate::outcome::{Ended, Judge};
use crate::per_tool::{PerTool, ToolCall};
use crate::policy::Policy;
use crate::progress::ProgressSender;
use crate::setting_values::SandboxUser;
use crate::streams::{collect_into, feed};

/// A run that ended at its `done` record keeps its container a little:
/// the outcome's way back (executor, frontend, client) takes 3–5 ms on 2
/// cores, and the pool's refill, then Docker's kill and teardown of the
/// used container, would take CPU from it. The supervisor, as the
/// container's PID 1, waits to be removed rather than exiting at `done`.
const REFILL_AFTER_OUTCOME: Duration = Duration::from_millis(5);
const REMOVAL_AFTER_OUTCOME: Duration = Duration::from_millis(15);

/// A run that passed policy, ready to start.
#[derive(Debug)]
pub struct RunPlan {
    pub tool_name: String,
    pub revision: u64,
    image: String,
    timeout_ms: u32,
    dependencies: Vec<Dependency>,
    code: String,
    args: Box<RawValue>,
    egress: Option<EgressPlan>,
    /// Container-per-call or container-per-tool, never unspecified.
    pub isolation: Isolation,
    /// Whether the caller wants the code's progress reports.
    pub report_progress: bool,
}

pub struct Runner {
    policy: Policy,
    egress: Arc<Egress>,
    source: Arc<dyn ContainerSource>,
    deps: Arc<DepsCache>,
    judge: Judge,
    user: SandboxUser,
    per_tool: Arc<PerTool>,
}

impl Runner {
    pub fn new(
        policy: Policy,
        egress: Arc<Egress>,
        source: Arc<dyn ContainerSource>,
        deps: Arc<DepsCache>,
        judge: Judge,
        user: SandboxUser,
        per_tool: Arc<PerTool>,
    ) -> Self {
        Self {
            policy,
            egress,
            source,
            deps,
            judge,
            user,
            per_tool,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Checks a tool's settings against policy, fills in defaults and
    /// installs its dependencies (once per image and set), so that a stored
    /// tool can run. Dropping the future stops an install under way.
    pub async fn prepare(&self, request: PrepareToolRequest) -> Result<PrepareToolResponse, ExecError> {
        let resolved = self
            .policy
            .resolve(request.image.as_deref(), request.timeout_ms, &request.dependencies)?;
        let egress = self.egress.check(request.network.as_ref(), &request.secrets)?;
        self.policy.isolation(request.isolation(), egress.is_some())?;
        let prepared = self.deps.ensure(&resolved.image, &request.dependencies).await?;
        Ok(PrepareToolResponse {
            image: resolved.image,
            timeout_ms: resolved.timeout_ms,
            dependency_setup: prepared.map(|p| DependencySetup {
                cached: p.cached,
                duration_ms: millis(p.took),
            }),
            network: egress.as_ref().map(EgressPlan::network),
        })
    }

    /// Everything that can be refused without starting a container.
    pub fn plan(&self, request: RunToolRequest) -> Result<RunPlan, ExecError> {
        let resolved = self
            .policy
            .resolve(request.image.as_deref(), request.timeout_ms, &request.dependencies)?;
        let egress = self.egress.check(request.network.as_ref(), &request.secrets)?;
        let isolation = self.policy.isolation(request.isolation(), egress.is_some())?;
        Ok(RunPlan {
            isolation,
            image: resolved.image,
            timeout_ms: resolved.timeout_ms,
            egress,
            args: parse_args(request.args_json)?,
            tool_name: request.tool_name,
            revision: request.revision,
            dependencies: request.dependencies,
            code: request.code,
            report_progress: request.report_progress,
        })
    }

    /// Runs the plan once. `on_started` gets the container id as soon as
    /// the container runs; the code's progress goes to `progress`, and what
    /// its egress proxy decides, if it has one, to `egress_events`. Dropping
    /// this future removes the container and stops the proxy.
    pub async fn run(
        &self,
        plan: RunPlan,
        on_started: impl FnOnce(&str) + Send,
        progress: ProgressSender,
        egress_events: EventSink,
    ) -> Result<RunOutcome, ExecError> {
        // Normally cached by PrepareTool; installed here if not (e.g. the cache was cleared).
        let prepared = self.deps.ensure(&plan.image, &plan.dependencies).await?;
        let deps = prepared.as_ref().map(|p| (self.deps.volume(), &p.key));
        if plan.isolation == Isolation::ContainerPerTool {
            let node_modules = prepared.as_ref().map(|p| p.key.node_modules());
            let call = self.judge.call(
                &plan.code,
                &plan.args,
                node_modules.as_deref(),
                &[],
                plan.report_progress,
                plan.timeout_ms,
            );
            let tool = ToolCall {
                tool_name: &plan.tool_name,
                revision: plan.revision,
                image: &plan.image,
                deps,
            };
            return self.per_tool.run(tool, call, on_started, progress).await;
        }
        let began = Instant::now();
        let mut spec = container_spec(&plan.image, deps, &self.user).label(labels::TOOL, &plan.tool_name);
        if plan.egress.is_some() {
            spec.egress = EgressMount::Wanted;
        }
        let Lease {
            container,
            stdin,
            output,
            egress_dir,
        } = self.source.acquire(&spec).await?;
        // Before the envelope: the shim it names must be in place.
        let grant = match &plan.egress {
            Some(egress) => {
                Some(
                    self.egress
                        .open(egress, Subject::Tool(plan.tool_name.clone()), egress_events, egress_dir)?,
                )
            }
            None => None,
        };
        on_started(container.id());

        let marker = harness::new_marker();
        let node_modules = prepared.map(|p| p.key.node_modules());
        let preload: Vec<_> = grant.iter().map(|_| Grant::preload()).collect();
        let call = self.judge.call(
            &plan.code,
            &plan.args,
            node_modules.as_deref(),
            &preload,
            plan.report_progress,
            plan.timeout_ms,
        );
        let envelope = harness::envelope(&call, &marker);
        let mut captured = self.judge.output(&marker, Some(progress));
        // From hand-out: how long a warm container waited does not count.
        let timeout = Duration::from_millis(plan.timeout_ms.into());
        let finished = tokio::time::timeout(timeout, async {
            let (_, complete) = tokio::join!(feed(stdin, envelope), collect_into(output, &mut captured));
            // Without the outcome record only the exit code can tell.
            if complete {
                Ok(None)
            } else {
                container.wait_exit().await.map(Some)
            }
        })
        .await;
        let ended = match finished {
            Err(_elapsed) => {
                if let Err(e) = container.kill().await {
                    tracing::warn!(error = %e, "cannot kill a timed-out run; removing it instead");
                }
                Ended::TimedOut
            }
            Ok(Ok(None)) => Ended::Done,
            Ok(Ok(Some(code))) => {
                let oom_killed = captured.needs_oom_check(code) && container.oom_killed().await.unwrap_or(false);
                Ended::Exited { code, oom_killed }
            }
            Ok(Err(e)) => return Err(e),
        };
        let done = matches!(ended, Ended::Done);
        let mut outcome = self.judge.outcome(captured, ended, plan.timeout_ms, began.elapsed())?;
        if done {
            container.retire_later(REFILL_AFTER_OUTCOME, REMOVAL_AFTER_OUTCOME);
        }
        if let Some(grant) = &grant {
            scrub(grant, &mut outcome);
        }
        Ok(outcome)
    }
}

/// The container a run of `image` needs, before its tool label: the same
/// for every tool with no dependencies, and for every tool with the same
/// dependency set (in the cache `volume`), so the warm pool can serve them.
pub fn container_spec(image: &str, deps: Option<(&str, &DepsKey)>, user: &SandboxUser) -> ContainerSpec {
    let spec = ContainerSpec::new(Role::Run, image, harness::command(user, None));
    match deps {
        Some((volume, key)) => {
            let mut spec = spec.label(labels::DEPS_KEY, key.as_str());
            spec.deps_volume = Some(volume.to_owned());
            spec
        }
        None => spec,
    }
}

/// No secret value leaves with an outcome, whatever the code managed.
pub fn scrub(grant: &Grant, outcome: &mut RunOutcome) {
    for text in [
        &mut outcome.result_json,
        &mut outcome.error_message,
        &mut outcome.stdout,
        &mut outcome.stderr,
    ] {
        grant.scrub(text);
    }
    let blocks = outcome.content.iter_mut().flat_map(|content| content.blocks.iter_mut());
    for block in blocks.filter_map(|b| b.block.as_mut()) {
        match block {
            content_block::Block::Text(text) => grant.scrub(&mut text.text),
            content_block::Block::ResourceLink(link) => {
                grant.scrub(&mut link.uri);
                grant.scrub(&mut link.name);
                link.title
                    .iter_mut()
                    .chain(link.description.iter_mut())
                    .for_each(|t| grant.scrub(t));
            }
            content_block::Block::Resource(resource) => {
                grant.scrub(&mut resource.uri);
                if let Some(embedded_resource::Contents::Text(text)) = &mut resource.contents {
                    grant.scrub(text);
                }
            }
            content_block::Block::Image(_) | content_block::Block::Audio(_) => {}
        }
    }
}

/// Empty means `{}`; anything else must be JSON.
pub fn parse_args(args_json: String) -> Result<Box<RawValue>, ExecError> {
    let args_json = if args_json.trim().is_empty() {
        "{}".to_owned()
    } else {
        args_json
    };
    RawValue::from_string(args_json).map_err(ExecError::BadArgs)
}
