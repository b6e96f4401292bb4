//! Commands inside a running container (a session): Docker exec with the
//! output attached, and the guarantee that a command we stop waiting for is
//! killed — at its timeout and when the caller's future is dropped.
//!
//! Docker has no "kill this exec" call, so every exec carries a random tag
//! in its environment (children inherit it), and killing means a second
//! exec that SIGKILLs every process in the container that has it there or
//! as an argument (a non-dumpable process's environment cannot be read, its
//! command line can).
//!
//! For a moment after a container's init has died, Docker still counts it
//! as running: an exec then "ends" with 126 and Docker's own error in its
//! output. [`ExecProcess::check_started`] tells that from a command's exit.

use std::time::Duration;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::WaitContainerOptionsBuilder;
use futures::StreamExt;
use tokio::time::Instant;

use super::lease::{Output, Stdin};
use crate::docker::{call_failed, is_not_found};

use crate::error::ExecError;

/// The environment variable that marks an exec's processes.
pub const MARKER_VAR: &str = "DYNAMIC_MCP_CALL";

/// Kills every process whose initial environment or command line has the
/// entry `DYNAMIC_MCP_CALL=$1`. The comparison stays inside this shell, so
/// none of its own processes carries that entry. Two rounds, so a child
/// forked during the first one is caught too.
const KILL_SCRIPT: &str = r#"want="DYNAMIC_MCP_CALL=$1"
has() { tr '\0' '\n' < "$1" 2>/dev/null | { while IFS= read -r entry; do [ "$entry" = "$want" ] && exit 0; done; exit 1; }; }
for round in 1 2; do
  for p in /proc/[0-9]*; do
    if has "$p/environ" || has "$p/cmdline"; then kill -9 "${p#/proc/}" 2>/dev/null; fi
  done
done"#;

/// The kill itself must not hang a call that is already over time.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// What Docker writes into an exec's output, with exit code 126, when runc
/// cannot start it because the container has stopped.
const STOPPED_STATE: &[u8] = b"cannot exec in a stopped state";
const START_FAILED: i64 = 126;
/// How long Docker may take to see that such a container has stopped.
const STOPPING_WITHIN: Duration = Duration::from_secs(5);

/// What marks one exec's processes: `DYNAMIC_MCP_CALL=<tag>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecTag(String);

impl ExecTag {
    pub fn fresh() -> Self {
        Self(format!("{:032x}", rand::random::<u128>()))
    }

    /// The `VAR=value` entry the exec's environment gets.
    pub fn entry(&self) -> String {
        format!("{MARKER_VAR}={}", self.0)
    }
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    pub command: Vec<String>,
    pub tag: ExecTag,
    pub user: String,
    /// Who may kill what the exec started: the user its processes end up as.
    pub kill_as: String,
    pub working_dir: String,
    /// Whether the process reads our input; otherwise its stdin is empty.
    pub stdin: bool,
    /// `VAR=value` for the process, besides the kill marker.
    pub env: Vec<String>,
}

/// A started exec: its streams and the handle that kills it if need be.
pub struct RunningExec {
    pub stdin: Option<Stdin>,
    pub output: Output,
    pub process: ExecProcess,
}

/// The process an exec started. Dropped before it is known to have ended,
/// it kills the process (in the background).
pub struct ExecProcess {
    docker: Docker,
    container_id: String,
    exec_id: String,
    kill_as: String,
    tag: ExecTag,
    settled: bool,
}

/// Starts `spec` in the running container `container_id`.
pub async fn start(docker: &Docker, container_id: &str, spec: ExecSpec) -> Result<RunningExec, ExecError> {
    let options = CreateExecOptions {
        attach_stdin: Some(spec.stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        env: Some(std::iter::once(spec.tag.entry()).chain(spec.env).collect()),
        cmd: Some(spec.command),
        user: Some(spec.user),
        working_dir: Some(spec.working_dir),
        ..Default::default()
    };
    let created = docker.create_exec(container_id, options).await.map_err(exec_failed)?;
    let process = ExecProcess {
        docker: docker.clone(),
        container_id: container_id.to_owned(),
        exec_id: created.id,
        kill_as: spec.kill_as,
        tag: spec.tag,
        settled: false,
    };
    match docker.start_exec(&process.exec_id, None).await.map_err(exec_failed)? {
        StartExecResults::Attached { output, input } => Ok(RunningExec {
            stdin: spec.stdin.then_some(input),
            output,
            process,
        }),
        StartExecResults::Detached => Err(ExecError::Internal(
            "the Docker engine started an exec detached although we asked to attach".into(),
        )),
    }
}

impl ExecProcess {
    /// Waits (until `deadline`) for the process to end and returns its exit
    /// code; `None` when the deadline came first. Call it once the output
    /// has closed: the exit code shows up right after.
    pub async fn wait(&mut self, deadline: Instant) -> Result<Option<i64>, ExecError> {
        let mut pause = Duration::from_millis(2);
        loop {
            let inspected = self.docker.inspect_exec(&self.exec_id).await.map_err(exec_failed)?;
            if inspected.running == Some(false) {
                self.settled = true;
                return Ok(Some(inspected.exit_code.unwrap_or(-1)));
            }
            if Instant::now() + pause > deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Whether an exec that ended with `code`, printing `stdout`, really ran:
    /// if it never started because the container has stopped, the container
    /// is gone for good ([`ExecError::ContainerGone`]). The words alone could
    /// come from the command itself, so they count only once Docker agrees
    /// that the container has stopped.
    pub async fn check_started(&self, code: Option<i64>, stdout: &[u8]) -> Result<(), ExecError> {
        if code != Some(START_FAILED) || !stdout.windows(STOPPED_STATE.len()).any(|w| w == STOPPED_STATE) {
            return Ok(());
        }
        let options = WaitContainerOptionsBuilder::default().condition("not-running").build();
        let mut waits = self.docker.wait_container(&self.container_id, Some(options));
        match tokio::time::timeout(STOPPING_WITHIN, waits.next()).await {
            Ok(Some(Ok(_) | Err(bollard::errors::Error::DockerContainerWaitError { .. }))) => {
                Err(ExecError::ContainerGone)
            }
            Ok(Some(Err(e))) if is_gone(&e) => Err(ExecError::ContainerGone),
            _ => Ok(()),
        }
    }

    /// The process is known to end on its own: dropping it must not kill
    /// what it may have left running, as a process that ended would not.
    pub fn ends_by_itself(&mut self) {
        self.settled = true;
    }

    /// SIGKILLs every process this exec started, and waits for that.
    pub async fn kill(&mut self) {
        self.settled = true;
        kill_tagged(&self.docker, &self.container_id, &self.kill_as, &self.tag).await;
    }
}

impl Drop for ExecProcess {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no runtime to kill an abandoned exec; it ends with its session");
            return;
        };
        let (docker, container_id, kill_as, tag) = (
            self.docker.clone(),
            std::mem::take(&mut self.container_id),
            std::mem::take(&mut self.kill_as),
            self.tag.clone(),
        );
        runtime.spawn(async move {
            kill_tagged(&docker, &container_id, &kill_as, &tag).await;
            tracing::debug!("killed an exec whose caller went away");
        });
    }
}

async fn kill_tagged(docker: &Docker, container_id: &str, user: &str, tag: &ExecTag) {
    let kill = async {
        let options = CreateExecOptions {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(vec!["sh", "-c", KILL_SCRIPT, "sh", tag.0.as_str()]),
            user: Some(user),
            ..Default::default()
        };
        let created = docker.create_exec(container_id, options).await?;
        if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&created.id, None).await? {
            while output.next().await.is_some() {}
        }
        Ok::<_, bollard::errors::Error>(())
    };
    match tokio::time::timeout(KILL_TIMEOUT, kill).await {
        Ok(Ok(())) => {}
        // The container is gone, and the process with it.
        Ok(Err(e)) if is_gone(&e) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot kill an exec's processes; they end with the session"),
        Err(_) => tracing::warn!("killing an exec's processes took over 5 s; they end with the session"),
    }
}

/// 404: no such container; 409: it is not running (or 500 saying so, as
/// Docker answers while a container is stopping).
fn is_gone(err: &bollard::errors::Error) -> bool {
    match err {
        bollard::errors::Error::DockerResponseServerError { status_code: 409, .. } => true,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message,
        } => message.contains("is not running"),
        _ => is_not_found(err),
    }
}

fn exec_failed(err: bollard::errors::Error) -> ExecError {
    if is_gone(&err) {
        ExecError::ContainerGone
    } else {
        call_failed("run a command in a container", err)
    }
}
