//! One tool run: policy check → its dependencies from the cache → a
//! container from the source → the stdin envelope → the supervisor's
//! records (capped output, progress) under the run's timeout → exactly one
//! outcome, as soon as its `done` record is in. The container goes away
//! with the lease (in the background), whatever happens here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dynamic_mcp_proto::v1::{
    Dependency, DependencySetup, PrepareToolRequest, PrepareToolResponse, RunOutcome, RunToolRequest,
};
use serde_json::value::RawValue;

use crate::config::SandboxUser;
use crate::container::lease::Lease;
use crate::container::source::ContainerSource;
use crate::container::{ContainerSpec, Role, labels};
use crate::deps::{DepsCache, DepsKey};
use crate::error::ExecError;
use crate::harness;
use crate::outcome::{Ended, Judge};
use crate::policy::Policy;
use crate::progress::ProgressSender;
use crate::streams::{collect_into, feed};

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
    /// Whether the caller wants the code's progress reports.
    pub report_progress: bool,
}

pub struct Runner {
    policy: Policy,
    source: Arc<dyn ContainerSource>,
    deps: Arc<DepsCache>,
    judge: Judge,
    user: SandboxUser,
}

impl Runner {
    pub fn new(
        policy: Policy,
        source: Arc<dyn ContainerSource>,
        deps: Arc<DepsCache>,
        judge: Judge,
        user: SandboxUser,
    ) -> Self {
        Self {
            policy,
            source,
            deps,
            judge,
            user,
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
        let prepared = self.deps.ensure(&resolved.image, &request.dependencies).await?;
        Ok(PrepareToolResponse {
            image: resolved.image,
            timeout_ms: resolved.timeout_ms,
            dependency_setup: prepared.map(|p| DependencySetup {
                cached: p.cached,
                duration_ms: millis(p.took),
            }),
        })
    }

    /// Everything that can be refused without starting a container.
    pub fn plan(&self, request: RunToolRequest) -> Result<RunPlan, ExecError> {
        let resolved = self
            .policy
            .resolve(request.image.as_deref(), request.timeout_ms, &request.dependencies)?;
        Ok(RunPlan {
            image: resolved.image,
            timeout_ms: resolved.timeout_ms,
            args: parse_args(request.args_json)?,
            tool_name: request.tool_name,
            revision: request.revision,
            dependencies: request.dependencies,
            code: request.code,
            report_progress: request.report_progress,
        })
    }

    /// Runs the plan once. `on_started` gets the container id as soon as
    /// the container runs; the code's progress goes to `progress`. Dropping
    /// this future removes the container.
    pub async fn run(
        &self,
        plan: RunPlan,
        on_started: impl FnOnce(&str) + Send,
        progress: ProgressSender,
    ) -> Result<RunOutcome, ExecError> {
        // Normally cached by PrepareTool; installed here if not (e.g. the cache was cleared).
        let prepared = self.deps.ensure(&plan.image, &plan.dependencies).await?;
        let began = Instant::now();
        let deps = prepared.as_ref().map(|p| (self.deps.volume(), &p.key));
        let spec = container_spec(&plan.image, deps, &self.user).label(labels::TOOL, &plan.tool_name);
        let Lease {
            container,
            stdin,
            output,
        } = self.source.acquire(&spec).await?;
        on_started(container.id());

        let marker = harness::new_marker();
        let node_modules = prepared.map(|p| p.key.node_modules());
        let call = self.judge.call(
            &plan.code,
            &plan.args,
            node_modules.as_deref(),
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
        self.judge.outcome(captured, ended, plan.timeout_ms, began.elapsed())
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

/// Empty means `{}`; anything else must be JSON.
pub fn parse_args(args_json: String) -> Result<Box<RawValue>, ExecError> {
    let args_json = if args_json.trim().is_empty() {
        "{}".to_owned()
    } else {
        args_json
    };
    RawValue::from_string(args_json).map_err(ExecError::BadArgs)
}

pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
