//! Turns what a harness process left behind — its result frame, its output,
//! its exit code, or a timeout — into exactly one `RunOutcome`. A complete
//! frame settles the outcome without waiting for the process to exit. The same for
//! a tool run in its own container and for run_js in a session.

use std::time::Duration;

use dynamic_mcp_proto::v1::{RunOutcome, RunStatus};

use crate::container::hardening::SandboxLimits;
use crate::harness::{Frame, Markers};
use crate::output::{CappedBuffer, MarkerSplitter};
use crate::streams::Sink;

/// Exit codes that mean the kernel or V8 killed the run for its limits:
/// 137 SIGKILL (OOM killer), 134 abort and 139 segfault (V8 out of heap).
const RESOURCE_LIMIT_EXIT_CODES: [i64; 3] = [137, 134, 139];

/// Node's exit code when the awaited promise can never settle.
const UNSETTLED_PROMISE_EXIT_CODE: i64 = 13;

/// The result frame may be larger than the printed output, within reason:
/// it must still fit a gRPC message (4 MiB by default) next to the output.
const FRAME_CAP_FACTOR: usize = 4;

/// How a harness process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It wrote its whole frame and then its end marker; it exits 0 right
    /// after, which is not waited for.
    Framed,
    /// It outlived its timeout and was killed.
    TimedOut,
    Exited {
        code: i64,
        oom_killed: bool,
    },
}

/// The capture buffers of one harness run.
pub struct HarnessOutput {
    pub stdout: MarkerSplitter,
    /// Only the output before the end marker is kept.
    pub stderr: MarkerSplitter,
}

impl Sink for HarnessOutput {
    fn stdout(&mut self, bytes: &[u8]) {
        self.stdout.push(bytes);
    }

    fn stderr(&mut self, bytes: &[u8]) {
        self.stderr.push(bytes);
    }

    /// The frame ends with its newline (its JSON has none), and the end
    /// marker, written after it, has come: nothing the run printed before
    /// its frame is still on the way.
    fn complete(&self) -> bool {
        let frame_whole = self.stdout.frame().is_some_and(|f| f.bytes().ends_with(b"\n"));
        frame_whole && self.stderr.frame().is_some()
    }
}

impl HarnessOutput {
    /// Only when there is no frame and the exit code leaves it open does it
    /// matter whether the OOM killer struck (which only Docker can say).
    pub fn needs_oom_check(&self, exit_code: i64) -> bool {
        self.stdout.frame().is_none() && !RESOURCE_LIMIT_EXIT_CODES.contains(&exit_code)
    }
}

/// Judges harness runs under one executor's output cap and limits.
#[derive(Debug, Clone)]
pub struct Judge {
    max_output_bytes: usize,
    /// For RESOURCE_LIMIT messages, e.g. "512m memory, 128 processes".
    limits_summary: String,
}

impl Judge {
    pub fn new(max_output_bytes: usize, limits: &SandboxLimits) -> Self {
        Self {
            max_output_bytes,
            limits_summary: format!("{} memory, {} processes", limits.memory, limits.pids),
        }
    }

    /// Fresh buffers for a run with these markers.
    pub fn output(&self, markers: &Markers) -> HarnessOutput {
        HarnessOutput {
            stdout: MarkerSplitter::new(
                markers.frame.as_bytes(),
                self.max_output_bytes,
                self.max_output_bytes * FRAME_CAP_FACTOR,
            ),
            // Whatever follows the end marker is dropped.
            stderr: MarkerSplitter::new(markers.end.as_bytes(), self.max_output_bytes, 0),
        }
    }

    pub fn outcome(&self, output: HarnessOutput, ended: Ended, timeout_ms: u32, took: Duration) -> RunOutcome {
        let HarnessOutput { mut stdout, mut stderr } = output;
        stdout.finish();
        stderr.finish();
        let mut stderr = stderr.into_user_output();
        let mut outcome = RunOutcome {
            timeout_ms,
            ..RunOutcome::default()
        };
        // A framed run exits 0 straight after its end marker.
        let exited = match ended {
            Ended::Framed => Some((0, false)),
            Ended::Exited { code, oom_killed } => Some((code, oom_killed)),
            Ended::TimedOut => None,
        };
        match exited {
            None => {
                outcome.set_status(RunStatus::TimedOut);
                outcome.error_message =
                    format!("the run did not finish within its timeout of {timeout_ms} ms and was killed");
            }
            Some((code, oom_killed)) => {
                outcome.exit_code = Some(code);
                match stdout.frame() {
                    Some(frame) => self.judge_frame(frame, &mut outcome, &mut stderr),
                    None => self.judge_exit(code, oom_killed, &mut outcome),
                }
            }
        }
        outcome.stdout = stdout.user_output().to_text();
        outcome.stdout_truncated = stdout.user_output().truncated();
        outcome.stderr = stderr.to_text();
        outcome.stderr_truncated = stderr.truncated();
        outcome.duration_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        outcome
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

#[cfg(test)]
mod tests {
    use super::*;

    fn judge() -> Judge {
        let limits = SandboxLimits {
            memory: "128m".parse().unwrap(),
            cpus: 1.0,
            pids: 64,
            user: "65534:65534".parse().unwrap(),
            tmpfs: "16m".parse().unwrap(),
            workdir: "16m".parse().unwrap(),
        };
        Judge::new(100, &limits)
    }

    fn markers() -> Markers {
        Markers {
            frame: "|M|".into(),
            end: "|E|".into(),
        }
    }

    fn judged(stdout: &[u8], ended: Ended) -> RunOutcome {
        let judge = judge();
        let mut output = judge.output(&markers());
        output.stdout.push(stdout);
        judge.outcome(output, ended, 1000, Duration::from_millis(5))
    }

    #[test]
    fn a_frame_decides_over_the_exit_code() {
        let outcome = judged(
            br#"hi|M|{"status":"ok","result":[1]}"#,
            Ended::Exited {
                code: 0,
                oom_killed: false,
            },
        );
        assert_eq!(outcome.status(), RunStatus::Ok);
        assert_eq!((outcome.result_json.as_str(), outcome.stdout.as_str()), ("[1]", "hi"));
        assert_eq!(outcome.duration_ms, 5);
    }

    #[test]
    fn a_run_is_complete_with_the_whole_frame_and_the_end_marker() {
        let judge = judge();
        let mut output = judge.output(&markers());
        output.stderr(b"warn|E");
        output.stdout(b"hi|M|{\"status\":\"ok\",");
        assert!(!output.complete());
        output.stdout(b"\"result\":2}\n");
        assert!(!output.complete(), "the end marker is still cut");
        output.stderr(b"|after");
        assert!(output.complete());
        let outcome = judge.outcome(output, Ended::Framed, 1000, Duration::from_millis(5));
        assert_eq!(outcome.status(), RunStatus::Ok);
        assert_eq!(outcome.exit_code, Some(0));
        assert_eq!(outcome.result_json, "2");
        assert_eq!((outcome.stdout.as_str(), outcome.stderr.as_str()), ("hi", "warn"));
    }

    #[test]
    fn the_end_marker_alone_does_not_complete_a_run() {
        let judge = judge();
        let mut output = judge.output(&markers());
        output.stderr(b"|E|");
        assert!(!output.complete());
        output.stdout(b"|M|{\"status\":\"ok\",\"result\":1}");
        assert!(!output.complete(), "the frame has no newline yet");
    }

    #[test]
    fn without_a_frame_the_exit_code_decides() {
        let exited = |code, oom_killed| judged(b"", Ended::Exited { code, oom_killed }).status();
        assert_eq!(exited(137, false), RunStatus::ResourceLimit);
        assert_eq!(exited(1, true), RunStatus::ResourceLimit);
        assert_eq!(exited(3, false), RunStatus::Exited);
        let unsettled = judged(
            b"",
            Ended::Exited {
                code: 13,
                oom_killed: false,
            },
        );
        assert!(unsettled.error_message.contains("can never settle"));
        let limit = judged(
            b"",
            Ended::Exited {
                code: 137,
                oom_killed: false,
            },
        );
        assert!(limit.error_message.contains("(128m memory, 64 processes)"));
    }

    #[test]
    fn a_timeout_names_the_timeout() {
        let outcome = judged(b"partial", Ended::TimedOut);
        assert_eq!(outcome.status(), RunStatus::TimedOut);
        assert_eq!(outcome.exit_code, None);
        assert_eq!(outcome.stdout, "partial");
        assert!(outcome.error_message.contains("1000 ms"));
    }

    #[test]
    fn the_oom_question_is_asked_only_when_open() {
        let judge = judge();
        let mut output = judge.output(&markers());
        assert!(output.needs_oom_check(1));
        assert!(!output.needs_oom_check(137));
        output.stdout.push(br#"|M|{"status":"ok","result":1}"#);
        assert!(!output.needs_oom_check(1));
    }
}
