//! Work inside a session, each through Docker exec in /work: shell
//! commands one after another as the sandbox user, and JavaScript through
//! the same harness and outcome mapping as a tool run (its supervisor
//! starts as root with SETUID and SETGID only, and runs the code as the
//! sandbox user). What a call started is killed at its timeout and when
//! the caller goes away (see `container::exec`).

use dynamic_mcp_proto::v1::{
    CommandResult, ExecInSessionRequest, ExecInSessionResponse, RunJsInSessionRequest, RunOutcome,
};
use tokio::time::{Duration, Instant};

use super::{Call, Session, Sessions};
use crate::container::exec::{self, ExecSpec, ExecTag, RunningExec};
use crate::container::hardening::WORKDIR;
use crate::durations::millis;
use crate::egress::Grant;
use crate::error::ExecError;
use crate::harness;
use crate::outcome::Ended;
use crate::output::CappedBuffer;
use crate::progress::ProgressSender;
use crate::run::parse_args;
use crate::streams::{collect, collect_into, feed};

/// Who a run_js exec starts as: root, for the supervisor to drop from.
const SUPERVISOR_START_USER: &str = "0:0";

const MAX_COMMANDS: usize = 20;

/// A run_js call that passed its checks, holding its session busy.
pub struct JsPlan {
    call: Call,
    args: Box<serde_json::value::RawValue>,
    timeout_ms: u32,
    code: String,
    dependencies: Vec<dynamic_mcp_proto::v1::Dependency>,
    report_progress: bool,
}

/// One argv string: Linux refuses longer ones (MAX_ARG_STRLEN is 128 KiB).
const MAX_COMMAND_BYTES: usize = 64 * 1024;

impl Sessions {
    /// Runs the commands one after another. A failing command does not stop
    /// the next; a timeout does (the rest are counted as skipped), and every
    /// result so far is returned either way.
    pub async fn exec(&self, request: ExecInSessionRequest) -> Result<ExecInSessionResponse, ExecError> {
        check_commands(&request.commands)?;
        let call = self.checkout(&request.owner, &request.session_id)?;
        let timeout_ms = self
            .policy
            .timeout(request.timeout_ms.or(Some(call.session().timeout_ms)))?;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms.into());
        let mut response = ExecInSessionResponse::default();
        for (i, command) in request.commands.iter().enumerate() {
            if Instant::now() >= deadline {
                response.skipped = u32::try_from(request.commands.len() - i).unwrap_or(u32::MAX);
                break;
            }
            let result = self.run_command(&call, command, deadline).await?;
            self.still_open(call.session())?;
            let timed_out = result.timed_out;
            response.results.push(result);
            if timed_out {
                response.skipped = u32::try_from(request.commands.len() - i - 1).unwrap_or(u32::MAX);
                break;
            }
        }
        Ok(response)
    }

    /// Everything about a run_js call that can be refused at once: its
    /// args, the session (now busy with this call), timeout and dependencies.
    pub fn plan_js(&self, request: RunJsInSessionRequest) -> Result<JsPlan, ExecError> {
        let args = parse_args(request.args_json)?;
        let call = self.checkout(&request.owner, &request.session_id)?;
        let session = call.session();
        let timeout_ms = self.policy.timeout(request.timeout_ms.or(Some(session.timeout_ms)))?;
        self.policy
            .resolve(Some(&session.image), Some(timeout_ms), &request.dependencies)?;
        Ok(JsPlan {
            call,
            args,
            timeout_ms,
            code: request.code,
            dependencies: request.dependencies,
            report_progress: request.report_progress,
        })
    }

    /// Runs JavaScript as a tool run would, with the session's /work.
    /// `on_started` gets the session's container id once its dependencies
    /// are ready and the exec begins; progress goes to `progress`.
    pub async fn run_js(
        &self,
        plan: JsPlan,
        on_started: impl FnOnce(&str) + Send,
        progress: ProgressSender,
    ) -> Result<RunOutcome, ExecError> {
        let JsPlan {
            call,
            args,
            timeout_ms,
            code,
            dependencies,
            report_progress,
        } = plan;
        let session = call.session();
        let prepared = self.deps.ensure(&session.image, &dependencies).await?;

        let began = Instant::now();
        let deadline = began + Duration::from_millis(timeout_ms.into());
        let marker = harness::new_marker();
        let node_modules = prepared.map(|p| p.key.node_modules());
        let preload: Vec<_> = session.egress.iter().map(|_| Grant::preload()).collect();
        let input = self.judge.call(
            &code,
            &args,
            node_modules.as_deref(),
            &preload,
            report_progress,
            timeout_ms,
        );
        let envelope = harness::envelope(&input, &marker);
        let tag = ExecTag::fresh();
        let command = harness::command(&self.settings.user, Some(&tag.entry()));
        on_started(session.container.id());
        let RunningExec {
            stdin,
            output,
            mut process,
        } = self
            .start_exec(&call, command, tag, SUPERVISOR_START_USER, Vec::new(), true)
            .await?;
        let mut captured = self.judge.output(&marker, Some(progress));
        let collected = tokio::time::timeout_at(deadline, async {
            let feeding = async {
                if let Some(stdin) = stdin {
                    feed(stdin, envelope).await;
                }
            };
            tokio::join!(feeding, collect_into(output, &mut captured)).1
        })
        .await;
        let settled = match collected {
            // The supervisor exits by itself right after its outcome.
            Ok(true) => {
                process.ends_by_itself();
                Some(Ended::Done)
            }
            Ok(false) => {
                let exited = process.wait(deadline).await.map_err(|e| self.ended(session, e))?;
                process
                    .check_started(exited, captured.user_stdout())
                    .await
                    .map_err(|e| self.ended(session, e))?;
                // The supervisor ended without an outcome (it was killed): what
                // it started must not live on.
                process.kill().await;
                exited.map(|code| Ended::Exited {
                    code,
                    oom_killed: false,
                })
            }
            Err(_elapsed) => None,
        };
        let ended = match settled {
            Some(ended) => ended,
            None => {
                process.kill().await;
                Ended::TimedOut
            }
        };
        self.still_open(session)?;
        self.judge.outcome(captured, ended, timeout_ms, began.elapsed())
    }

    async fn run_command(&self, call: &Call, command: &str, deadline: Instant) -> Result<CommandResult, ExecError> {
        let mut result = CommandResult {
            command: command.to_owned(),
            ..CommandResult::default()
        };
        let began = Instant::now();
        let argv = ["sh", "-c", command].map(String::from).to_vec();
        let user = self.settings.user.to_string();
        let RunningExec {
            output, mut process, ..
        } = self
            .start_exec(call, argv, ExecTag::fresh(), &user, call.session().exec_env(), false)
            .await?;
        let mut stdout = CappedBuffer::new(self.settings.max_output_bytes);
        let mut stderr = CappedBuffer::new(self.settings.max_output_bytes);
        let closed = tokio::time::timeout_at(deadline, collect(output, &mut stdout, &mut stderr))
            .await
            .is_ok();
        result.exit_code = if closed {
            process
                .wait(deadline)
                .await
                .map_err(|e| self.ended(call.session(), e))?
        } else {
            None
        };
        if result.exit_code.is_none() {
            process.kill().await;
            result.timed_out = true;
        }
        process
            .check_started(result.exit_code, stdout.bytes())
            .await
            .map_err(|e| self.ended(call.session(), e))?;
        result.stdout = stdout.to_text();
        result.stdout_truncated = stdout.truncated();
        result.stderr = stderr.to_text();
        result.stderr_truncated = stderr.truncated();
        result.duration_ms = millis(began.elapsed());
        Ok(result)
    }

    async fn start_exec(
        &self,
        call: &Call,
        command: Vec<String>,
        tag: ExecTag,
        user: &str,
        env: Vec<String>,
        stdin: bool,
    ) -> Result<RunningExec, ExecError> {
        let session: &Session = call.session();
        let spec = ExecSpec {
            command,
            tag,
            user: user.to_owned(),
            kill_as: self.settings.user.to_string(),
            working_dir: WORKDIR.into(),
            stdin,
            env,
        };
        exec::start(session.container.docker(), session.container.id(), spec)
            .await
            .map_err(|e| self.ended(session, e))
    }

    /// A call whose session was stopped meanwhile reports that, rather than
    /// the kill it suffered.
    fn still_open(&self, session: &Session) -> Result<(), ExecError> {
        let open = self.table();
        match open.get(&session.id) {
            Some(current) if std::ptr::eq(current.as_ref(), session) => Ok(()),
            _ => Err(ExecError::SessionEnded { id: session.id.clone() }),
        }
    }

    /// A container gone from under a call ends its session.
    fn ended(&self, session: &Session, error: ExecError) -> ExecError {
        match error {
            ExecError::ContainerGone => self.forget_ended(session),
            other => other,
        }
    }
}

fn check_commands(commands: &[String]) -> Result<(), ExecError> {
    if commands.is_empty() || commands.len() > MAX_COMMANDS {
        return Err(ExecError::BadRequest(format!(
            "commands must hold 1 to {MAX_COMMANDS} commands (got {})",
            commands.len()
        )));
    }
    for (i, command) in commands.iter().enumerate() {
        let problem = if command.trim().is_empty() {
            "is empty".to_owned()
        } else if command.contains('\0') {
            "contains a NUL character".to_owned()
        } else if command.len() > MAX_COMMAND_BYTES {
            format!(
                "is {} bytes long; at most {MAX_COMMAND_BYTES} are allowed (write a longer script to a file first)",
                command.len()
            )
        } else {
            continue;
        };
        return Err(ExecError::BadRequest(format!("commands[{i}] {problem}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(commands: &[&str]) -> Result<(), String> {
        let commands: Vec<String> = commands.iter().map(|c| (*c).to_owned()).collect();
        check_commands(&commands).map_err(|e| e.to_string())
    }

    #[test]
    fn commands_are_bounded_and_named_by_index() {
        assert!(check(&["echo hi", "ls"]).is_ok());
        assert_eq!(check(&[]).unwrap_err(), "commands must hold 1 to 20 commands (got 0)");
        assert!(check(&["true"; 21]).unwrap_err().contains("got 21"));
        assert_eq!(check(&["ls", "  "]).unwrap_err(), "commands[1] is empty");
        assert_eq!(check(&["a\0b"]).unwrap_err(), "commands[0] contains a NUL character");
        let long = "x".repeat(MAX_COMMAND_BYTES + 1);
        assert!(
            check(&[&long])
                .unwrap_err()
                .starts_with("commands[0] is 65537 bytes long")
        );
    }
}
