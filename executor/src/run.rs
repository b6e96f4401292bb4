//! One run: policy check → a container from the source → the stdin envelope
//! → capped stdout/stderr under the run's timeout → exactly one outcome.
//! The container goes away with the lease, whatever happens here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dynamic_mcp_proto::v1::{Dependency, RunOutcome, RunStatus, RunToolRequest};
use futures::StreamExt;
use serde_json::value::RawValue;
use tokio::io::AsyncWriteExt;

use crate::container::hardening::SandboxLimits;
use crate::container::lease::{Lease, Output, Stdin};
use crate::container::source::ContainerSource;
use crate::container::{ContainerSpec, Role};
use crate::error::ExecError;
use crate::harness::{self, Frame};
use crate::output::{CappedBuffer, StdoutSplitter};
use crate::policy::{Policy, Resolved};

/// Exit codes that mean the kernel or V8 killed the run for its limits:
/// 137 SIGKILL (OOM killer), 134 abort and 139 segfault (V8 out of heap).
const RESOURCE_LIMIT_EXIT_CODES: [i64; 3] = [137, 134, 139];

/// Node's exit code when the awaited promise can never settle.
const UNSETTLED_PROMISE_EXIT_CODE: i64 = 13;

/// The result frame may be larger than the printed output, within reason:
/// it must still fit a gRPC message (4 MiB by default) next to the output.
const FRAME_CAP_FACTOR: usize = 4;

/// Checks a tool's settings against policy and against what this executor
/// can do, and fills in defaults. Used before storing a tool and before a run.
pub fn prepare(
    policy: &Policy,
    image: Option<&str>,
    timeout_ms: Option<u32>,
    dependencies: &[Dependency],
) -> Result<Resolved, ExecError> {
    let resolved = policy.resolve(image, timeout_ms, dependencies)?;
    // Installing npm dependencies comes in a later version; until then a
    // tool that needs them cannot run here, so say so before it is stored.
    if !dependencies.is_empty() {
        return Err(ExecError::DependenciesUnsupported);
    }
    Ok(resolved)
}

/// A run that passed policy, ready to start.
#[derive(Debug)]
pub struct RunPlan {
    pub tool_name: String,
    pub revision: u64,
    spec: ContainerSpec,
    timeout_ms: u32,
    code: String,
    args: Box<RawValue>,
}

pub struct Runner {
    policy: Policy,
    source: Arc<dyn ContainerSource>,
    max_output_bytes: usize,
    /// For RESOURCE_LIMIT messages, e.g. "512m memory, 128 processes".
    limits_summary: String,
}

impl Runner {
    pub fn new(
        policy: Policy,
        source: Arc<dyn ContainerSource>,
        max_output_bytes: usize,
        limits: &SandboxLimits,
    ) -> Self {
        Self {
            policy,
            source,
            max_output_bytes,
            limits_summary: format!("{} memory, {} processes", limits.memory, limits.pids),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Everything that can be refused without starting a container.
    pub fn plan(&self, request: RunToolRequest) -> Result<RunPlan, ExecError> {
        let resolved = prepare(
            &self.policy,
            request.image.as_deref(),
            request.timeout_ms,
            &request.dependencies,
        )?;
        let args_json = if request.args_json.trim().is_empty() {
            "{}".to_owned()
        } else {
            request.args_json
        };
        let args = RawValue::from_string(args_json).map_err(ExecError::BadArgs)?;
        Ok(RunPlan {
            spec: ContainerSpec {
                role: Role::Run,
                image: resolved.image,
                tool_name: request.tool_name.clone(),
            },
            tool_name: request.tool_name,
            revision: request.revision,
            timeout_ms: resolved.timeout_ms,
            code: request.code,
            args,
        })
    }

    /// Runs the plan once. `on_started` gets the container id as soon as
    /// the container runs. Dropping this future removes the container.
    pub async fn run(&self, plan: RunPlan, on_started: impl FnOnce(&str) + Send) -> Result<RunOutcome, ExecError> {
        let began = Instant::now();
        let Lease {
            container,
            stdin,
            output,
        } = self.source.acquire(&plan.spec).await?;
        on_started(container.id());

        let marker = harness::new_marker();
        let envelope = harness::envelope(&plan.code, &plan.args, &marker);
        let mut stdout = StdoutSplitter::new(
            marker.as_bytes(),
            self.max_output_bytes,
            self.max_output_bytes * FRAME_CAP_FACTOR,
        );
        let mut stderr = CappedBuffer::new(self.max_output_bytes);

        let timeout = Duration::from_millis(plan.timeout_ms.into());
        let finished = tokio::time::timeout(timeout, async {
            tokio::join!(feed(stdin, envelope), collect(output, &mut stdout, &mut stderr));
            container.wait_exit().await
        })
        .await;
        stdout.finish();

        let mut outcome = RunOutcome {
            timeout_ms: plan.timeout_ms,
            ..RunOutcome::default()
        };
        match finished {
            Err(_elapsed) => {
                if let Err(e) = container.kill().await {
                    tracing::warn!(error = %e, "cannot kill a timed-out run; removing it instead");
                }
                outcome.set_status(RunStatus::TimedOut);
                outcome.error_message = format!(
                    "the run did not finish within its timeout of {} ms and was killed",
                    plan.timeout_ms
                );
            }
            Ok(exit) => {
                let code = exit?;
                outcome.exit_code = Some(code);
                match stdout.frame() {
                    Some(frame) => self.judge_frame(frame, &mut outcome, &mut stderr),
                    None => {
                        // Only ask Docker about OOM when the exit code leaves it open.
                        let oom_killed =
                            !RESOURCE_LIMIT_EXIT_CODES.contains(&code) && container.oom_killed().await.unwrap_or(false);
                        self.judge_exit(code, oom_killed, &mut outcome);
                    }
                }
            }
        }

        outcome.stdout = stdout.user_output().to_text();
        outcome.stdout_truncated = stdout.user_output().truncated();
        outcome.stderr = stderr.to_text();
        outcome.stderr_truncated = stderr.truncated();
        outcome.duration_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(outcome)
    }

    fn judge_frame(&self, frame: &CappedBuffer, outcome: &mut RunOutcome, stderr: &mut CappedBuffer) {
        if frame.truncated() {
            outcome.set_status(RunStatus::BadResult);
            outcome.error_message = format!(
                "result too large (over {} bytes)",
                self.max_output_bytes * FRAME_CAP_FACTOR
            );
            return;
        }
        match Frame::parse(frame.bytes()) {
            Ok(Frame::Ok { result_json }) => {
                outcome.set_status(RunStatus::Ok);
                outcome.result_json = result_json;
            }
            Ok(Frame::Threw { name, message, stack }) => {
                outcome.set_status(RunStatus::Threw);
                outcome.error_name = name;
                outcome.error_message = message;
                // Where Node itself would print an uncaught error's stack.
                if !stack.is_empty() {
                    stderr.push(stack.as_bytes());
                    stderr.push(b"\n");
                }
            }
            Ok(Frame::Syntax { message }) => {
                outcome.set_status(RunStatus::SyntaxError);
                outcome.error_name = "SyntaxError".into();
                outcome.error_message = message;
            }
            Ok(Frame::BadResult { message }) => {
                outcome.set_status(RunStatus::BadResult);
                outcome.error_message = message;
            }
            Err(reason) => {
                outcome.set_status(RunStatus::BadResult);
                outcome.error_message = format!("the result could not be read: {reason}");
            }
        }
    }

    fn judge_exit(&self, code: i64, oom_killed: bool, outcome: &mut RunOutcome) {
        if oom_killed || RESOURCE_LIMIT_EXIT_CODES.contains(&code) {
            outcome.set_status(RunStatus::ResourceLimit);
            outcome.error_message = format!(
                "the run hit its memory or process limit ({}) and was killed",
                self.limits_summary
            );
            return;
        }
        outcome.set_status(RunStatus::Exited);
        outcome.error_message = format!("the code exited with code {code} before returning a result");
        if code == UNSETTLED_PROMISE_EXIT_CODE {
            outcome
                .error_message
                .push_str(" (it awaited a promise that can never settle)");
        }
    }
}

/// Writes the envelope and closes stdin, so the harness sees end of input.
/// A container that dies early closes the pipe: that shows in the outcome.
async fn feed(mut stdin: Stdin, envelope: Vec<u8>) {
    let written = async {
        stdin.write_all(&envelope).await?;
        stdin.shutdown().await
    };
    if let Err(e) = written.await {
        tracing::debug!(error = %e, "the run's stdin closed early");
    }
}

/// Reads stdout and stderr until the container closes them.
async fn collect(mut output: Output, stdout: &mut StdoutSplitter, stderr: &mut CappedBuffer) {
    while let Some(item) = output.next().await {
        match item {
            Ok(bollard::container::LogOutput::StdOut { message }) => stdout.push(&message),
            Ok(bollard::container::LogOutput::StdErr { message }) => stderr.push(&message),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "the run's output stream broke; keeping what arrived");
                return;
            }
        }
    }
}
