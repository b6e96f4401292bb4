//! Work inside a session, each through Docker exec as the sandbox user in
//! /work: shell commands one after another, and JavaScript through the same
//! harness and outcome mapping as a tool run. What a call started is killed
//! at its timeout and when the caller goes away (see `container::exec`).

use dynamic_mcp_proto::v1::{
    CommandResult, ExecInSessionRequest, ExecInSessionResponse, RunJsInSessionRequest, RunOutcome,
};
use tokio::time::{Duration, Instant};

use super::{Call, Session, Sessions};
use crate::container::exec::{self, ExecSpec, RunningExec};
use crate::container::hardening::WORKDIR;
use crate::error::ExecError;
use crate::harness;
use crate::outcome::Ended;
use crate::output::CappedBuffer;
use crate::run::{millis, parse_args};
use crate::streams::{collect, collect_into, feed};

const MAX_COMMANDS: usize = 20;

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

    /// Runs JavaScript as a tool run would, with the session's /work.
    pub async fn run_js(&self, request: RunJsInSessionRequest) -> Result<RunOutcome, ExecError> {
        let args = parse_args(request.args_json)?;
        let call = self.checkout(&request.owner, &request.session_id)?;
        let session = call.session();
        let timeout_ms = self.policy.timeout(request.timeout_ms.or(Some(session.timeout_ms)))?;
        self.policy
            .resolve(Some(&session.image), Some(timeout_ms), &request.dependencies)?;
        let prepared = self.deps.ensure(&session.image, &request.dependencies).await?;

        let began = Instant::now();
        let deadline = began + Duration::from_millis(timeout_ms.into());
        let markers = harness::Markers::fresh();
        let node_modules = prepared.map(|p| p.key.node_modules());
        let envelope = harness::envelope(&request.code, &args, &markers, node_modules.as_deref());
        let RunningExec {
            stdin,
            output,
            mut process,
        } = self.start_exec(&call, harness::command(), true).await?;
        let mut captured = self.judge.output(&markers);
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
            // The harness exits by itself right after its end marker.
            Ok(true) => {
                process.ends_by_itself();
                Some(Ended::Framed)
            }
            Ok(false) => {
                let code = process.wait(deadline).await.map_err(|e| self.ended(session, e))?;
                process
                    .check_started(code, captured.stdout.user_output().bytes())
                    .await
                    .map_err(|e| self.ended(session, e))?;
                code.map(|code| Ended::Exited {
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
        Ok(self.judge.outcome(captured, ended, timeout_ms, began.elapsed()))
    }

    async fn run_command(&self, call: &Call, command: &str, deadline: Instant) -> Result<CommandResult, ExecError> {
        let mut result = CommandResult {
            command: command.to_owned(),
            ..CommandResult::default()
        };
        let began = Instant::now();
        let argv = ["sh", "-c", command].map(String::from).to_vec();
        let RunningExec {
            output, mut process, ..
        } = self.start_exec(call, argv, false).await?;
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

    async fn start_exec(&self, call: &Call, command: Vec<String>, stdin: bool) -> Result<RunningExec, ExecError> {
        let session: &Session = call.session();
        let spec = ExecSpec {
            command,
            user: self.settings.user.clone(),
            working_dir: WORKDIR.into(),
            stdin,
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
