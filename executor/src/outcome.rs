//! Turns what a harness left behind — the supervisor's records, its exit
//! code, or a timeout — into exactly one `RunOutcome`. The `done` record
//! settles the outcome without waiting for the process to exit. The same
//! for a tool run in its own container and for run_js in a session.

use std::time::Duration;

use dynamic_mcp_proto::v1::{RunOutcome, RunStatus};
use serde_json::value::RawValue;

use crate::container::hardening::SandboxLimits;
use crate::content;
use crate::error::ExecError;
use crate::harness::records::{Done, Ending, Format, Record, RecordReader};
use crate::harness::{Call, Preload};
use crate::output::CappedBuffer;
use crate::progress::ProgressSender;
use crate::streams::Sink;

/// Exit codes that mean the kernel or V8 killed the run for its limits:
/// 137 SIGKILL (OOM killer), 134 abort and 139 segfault (V8 out of heap).
const RESOURCE_LIMIT_EXIT_CODES: [i64; 3] = [137, 134, 139];

/// Node's exit code when the awaited promise can never settle.
const UNSETTLED_PROMISE_EXIT_CODE: i64 = 13;

/// The supervisor's exit code when the harness itself failed (never the
/// code: its process cannot end the supervisor with it).
const HARNESS_FAILED_EXIT_CODE: i64 = 70;

/// The result may be larger than the printed output, within reason: it
/// must still fit a gRPC message (4 MiB by default) next to the output.
const RESULT_CAP_FACTOR: usize = 4;

/// How a harness process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Its `done` record arrived; it exits right after, which is not waited for.
    Done,
    /// It outlived its timeout and was killed.
    TimedOut,
    Exited {
        code: i64,
        oom_killed: bool,
    },
}

/// What one harness run has sent so far.
pub struct HarnessOutput {
    records: RecordReader,
    stdout: CappedBuffer,
    stderr: CappedBuffer,
    /// The supervisor's own stderr: empty unless the harness failed.
    diagnostics: CappedBuffer,
    done: Option<Done>,
    progress: Option<ProgressSender>,
}

impl Sink for HarnessOutput {
    fn stdout(&mut self, bytes: &[u8]) {
        let Self {
            records,
            stdout,
            stderr,
            done,
            progress,
            ..
        } = self;
        records.push(bytes, &mut |record| match record {
            Record::Stdout(bytes) => stdout.push(bytes),
            Record::Stderr(bytes) => stderr.push(bytes),
            Record::Stray(bytes) => stdout.push(&bytes),
            Record::Progress(report) => {
                if let Some(progress) = progress {
                    progress.report(report);
                }
            }
            Record::Done(record) => *done = Some(record),
        });
    }

    fn stderr(&mut self, bytes: &[u8]) {
        self.diagnostics.push(bytes);
    }

    /// Nothing follows the `done` record.
    fn complete(&self) -> bool {
        self.done.is_some()
    }
}

impl HarnessOutput {
    /// Only when there is no outcome and the exit code leaves it open does
    /// it matter whether the OOM killer struck (which only Docker can say).
    pub fn needs_oom_check(&self, exit_code: i64) -> bool {
        self.done.is_none() && !RESOURCE_LIMIT_EXIT_CODES.contains(&exit_code)
    }

    /// Whether the call ended for want of a realm: none could start in its
    /// per-tool container (its limits are full).
    pub fn realm_refused(&self) -> bool {
        self.done.as_ref().is_some_and(|done| done.realm_refused)
    }

    /// The stdout kept so far, where Docker's own words land when an exec
    /// never started.
    pub fn user_stdout(&self) -> &[u8] {
        self.stdout.bytes()
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

    fn output_cap(&self) -> usize {
        self.max_output_bytes
    }

    /// The largest result, JSON or content, in bytes.
    fn result_cap(&self) -> usize {
        self.max_output_bytes * RESULT_CAP_FACTOR
    }

    /// One call's input for the harness, with this executor's caps.
    pub fn call<'a>(
        &self,
        code: &'a str,
        args: &'a RawValue,
        node_modules: Option<&'a str>,
        preload: &'a [Preload],
        progress: bool,
        timeout_ms: u32,
    ) -> Call<'a> {
        Call {
            code,
            args,
            node_modules,
            progress,
            preload,
            timeout_ms,
            output_cap: self.output_cap(),
            result_cap: self.result_cap(),
        }
    }

    /// Fresh buffers for a call with this marker; progress goes to `progress`.
    pub fn output(&self, marker: &str, progress: Option<ProgressSender>) -> HarnessOutput {
        HarnessOutput {
            records: RecordReader::new(marker, self.result_cap()),
            stdout: CappedBuffer::new(self.max_output_bytes),
            stderr: CappedBuffer::new(self.max_output_bytes),
            diagnostics: CappedBuffer::new(self.max_output_bytes),
            done: None,
            progress,
        }
    }

    /// The outcome, or an error when the harness itself failed.
    pub fn outcome(
        &self,
        output: HarnessOutput,
        ended: Ended,
        timeout_ms: u32,
        took: Duration,
    ) -> Result<RunOutcome, ExecError> {
        let HarnessOutput {
            stdout,
            mut stderr,
            diagnostics,
            done,
            ..
        } = output;
        let mut outcome = RunOutcome {
            timeout_ms,
            ..RunOutcome::default()
        };
        let (mut stdout_dropped, mut stderr_dropped) = (0, 0);
        match (ended, done) {
            (Ended::TimedOut, _) => timed_out(&mut outcome, timeout_ms),
            (_, Some(done)) => {
                stdout_dropped = done.stdout_dropped;
                stderr_dropped = done.stderr_dropped;
                self.judge_done(done.ending, &mut outcome, &mut stderr, timeout_ms);
            }
            (Ended::Exited { code, .. }, None) if code == HARNESS_FAILED_EXIT_CODE => {
                return Err(ExecError::Internal(format!(
                    "the sandbox harness failed: {}",
                    diagnostics.to_text().trim()
                )));
            }
            (Ended::Exited { code, oom_killed }, None) => {
                outcome.exit_code = Some(code);
                self.judge_exit(code, oom_killed, &mut outcome);
                // Whatever Node said about a harness that died.
                stderr.push(diagnostics.bytes());
            }
            (Ended::Done, None) => {
                return Err(ExecError::Internal(
                    "a run was judged finished without its outcome".into(),
                ));
            }
        }
        outcome.stdout = stdout.to_text();
        outcome.stdout_truncated = stdout.truncated() || stdout_dropped > 0;
        outcome.stderr = stderr.to_text();
        outcome.stderr_truncated = stderr.truncated() || stderr_dropped > 0;
        outcome.duration_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        Ok(outcome)
    }

    fn judge_done(&self, ending: Ending, outcome: &mut RunOutcome, stderr: &mut CappedBuffer, timeout_ms: u32) {
        // A reported outcome comes from a process that is stopped right after.
        outcome.exit_code = Some(0);
        match ending {
            Ending::Returned { payload: None, .. } => self.too_large(outcome),
            Ending::Returned {
                format: Format::Json,
                payload: Some(json),
            } => match String::from_utf8(json).map_err(|e| e.to_string()).and_then(|json| {
                RawValue::from_string(json)
                    .map(|raw| raw.get().to_owned())
                    .map_err(|e| e.to_string())
            }) {
                Ok(json) => {
                    outcome.set_status(RunStatus::Ok);
                    outcome.result_json = json;
                }
                Err(reason) => {
                    outcome.set_status(RunStatus::BadResult);
                    outcome.error_message = format!("the result could not be read: {reason}");
                }
            },
            Ending::Returned {
                format: Format::Content,
                payload: Some(blocks),
            } => match content::checked(&blocks) {
                Ok(content) => {
                    outcome.set_status(RunStatus::Ok);
                    outcome.content = Some(content);
                }
                Err(problem) => {
                    outcome.set_status(RunStatus::BadResult);
                    outcome.error_message = problem;
                }
            },
            Ending::Threw { name, message, stack } => {
                outcome.set_status(RunStatus::Threw);
                outcome.error_name = name;
                outcome.error_message = message;
                // Where Node itself would print an uncaught error's stack.
                if !stack.is_empty() {
                    stderr.push(stack.as_bytes());
                    stderr.push(b"\n");
                }
            }
            Ending::Syntax { message } => {
                outcome.set_status(RunStatus::SyntaxError);
                outcome.error_name = "SyntaxError".into();
                outcome.error_message = message;
            }
            Ending::BadResult { message } => {
                outcome.set_status(RunStatus::BadResult);
                outcome.error_message = message;
            }
            Ending::Exited { code } => {
                outcome.exit_code = Some(code);
                self.judge_exit(code, false, outcome);
            }
            Ending::TimedOut => timed_out(outcome, timeout_ms),
        }
    }

    fn too_large(&self, outcome: &mut RunOutcome) {
        outcome.set_status(RunStatus::BadResult);
        outcome.error_message = format!("result too large (over {} bytes)", self.result_cap());
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

fn timed_out(outcome: &mut RunOutcome, timeout_ms: u32) {
    outcome.exit_code = None;
    outcome.set_status(RunStatus::TimedOut);
    outcome.error_message = format!("the run did not finish within its timeout of {timeout_ms} ms and was killed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress;

    const MARKER: &str = "\u{1e}0123456789abcdef0123456789abcdef\u{1e}";

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

    fn record(header: &str, payload: &str) -> Vec<u8> {
        format!("{MARKER}{header}\n{payload}").into_bytes()
    }

    fn judged(records: &[Vec<u8>], ended: Ended) -> Result<RunOutcome, ExecError> {
        let judge = judge();
        let mut output = judge.output(MARKER, None);
        for bytes in records {
            output.stdout(bytes);
        }
        judge.outcome(output, ended, 1000, Duration::from_millis(5))
    }

    fn done(status: &str, payload: &str) -> Vec<u8> {
        let bytes = payload.len();
        record(&format!(r#"{{"kind":"done",{status},"bytes":{bytes}}}"#), payload)
    }

    #[test]
    fn the_done_record_settles_the_outcome_with_the_output_before_it() {
        let judge = judge();
        let mut output = judge.output(MARKER, None);
        output.stdout(&record(r#"{"kind":"stdout","bytes":3}"#, "hi\n"));
        output.stdout(&record(r#"{"kind":"stderr","bytes":4}"#, "warn"));
        assert!(!output.complete());
        output.stdout(&done(r#""status":"ok","format":"json""#, r#"{"z":1,"a":[1, 2]}"#));
        assert!(output.complete());
        let outcome = judge
            .outcome(output, Ended::Done, 1000, Duration::from_millis(5))
            .unwrap();
        assert_eq!(outcome.status(), RunStatus::Ok);
        assert_eq!(
            outcome.result_json, r#"{"z":1,"a":[1, 2]}"#,
            "the code's JSON text, as it wrote it"
        );
        assert_eq!((outcome.stdout.as_str(), outcome.stderr.as_str()), ("hi\n", "warn"));
        assert_eq!((outcome.exit_code, outcome.duration_ms), (Some(0), 5));
        assert!(outcome.content.is_none());
    }

    #[test]
    fn content_is_checked_before_it_counts() {
        let good = done(
            r#""status":"ok","format":"content""#,
            r#"[{"type":"text","text":"hi"},{"type":"image","data":"AAAA","mimeType":"image/png"}]"#,
        );
        let outcome = judged(&[good], Ended::Done).unwrap();
        assert_eq!(outcome.status(), RunStatus::Ok);
        assert_eq!(outcome.content.unwrap().blocks.len(), 2);
        assert_eq!(outcome.result_json, "");

        let bad = done(
            r#""status":"ok","format":"content""#,
            r#"[{"type":"image","data":"AAAA","mimeType":"text/plain"}]"#,
        );
        let outcome = judged(&[bad], Ended::Done).unwrap();
        assert_eq!(outcome.status(), RunStatus::BadResult);
        assert_eq!(
            outcome.error_message,
            "content[0] (image): `mimeType` 'text/plain' is not an image/* type"
        );
    }

    #[test]
    fn results_over_the_cap_and_unreadable_json_are_bad_results() {
        let big = "x".repeat(401);
        let outcome = judged(&[done(r#""status":"ok","format":"json""#, &big)], Ended::Done).unwrap();
        assert_eq!(outcome.status(), RunStatus::BadResult);
        assert_eq!(outcome.error_message, "result too large (over 400 bytes)");
        let outcome = judged(&[done(r#""status":"ok","format":"json""#, "{")], Ended::Done).unwrap();
        assert!(
            outcome.error_message.starts_with("the result could not be read"),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_thrown_error_keeps_its_name_message_and_stack() {
        let threw = record(
            r#"{"kind":"done","status":"threw","name":"TypeError","message":"boom","stack":"at tool.mjs:1"}"#,
            "",
        );
        let outcome = judged(&[threw], Ended::Done).unwrap();
        assert_eq!(outcome.status(), RunStatus::Threw);
        assert_eq!(
            (outcome.error_name.as_str(), outcome.error_message.as_str()),
            ("TypeError", "boom")
        );
        assert_eq!(outcome.stderr, "at tool.mjs:1\n");
    }

    #[test]
    fn an_exit_the_supervisor_saw_is_judged_by_its_code() {
        let exited = |code: i64| {
            let header = format!(r#"{{"kind":"done","status":"exited","exitCode":{code}}}"#);
            judged(&[record(&header, "")], Ended::Done).unwrap()
        };
        assert_eq!(exited(137).status(), RunStatus::ResourceLimit);
        assert!(exited(137).error_message.contains("(128m memory, 64 processes)"));
        assert_eq!(exited(3).status(), RunStatus::Exited);
        assert_eq!(exited(3).exit_code, Some(3));
        assert!(exited(13).error_message.contains("can never settle"));
    }

    #[test]
    fn without_a_done_record_the_exit_code_decides() {
        let exited = |code, oom_killed| judged(&[], Ended::Exited { code, oom_killed }).unwrap().status();
        assert_eq!(exited(137, false), RunStatus::ResourceLimit);
        assert_eq!(exited(1, true), RunStatus::ResourceLimit);
        assert_eq!(exited(3, false), RunStatus::Exited);
        let judge = judge();
        let mut output = judge.output(MARKER, None);
        output.stderr(b"dynamic-mcp supervisor: must start as root\n");
        let failed = judge.outcome(
            output,
            Ended::Exited {
                code: 70,
                oom_killed: false,
            },
            1000,
            Duration::ZERO,
        );
        assert!(
            matches!(&failed, Err(ExecError::Internal(m)) if m.ends_with("must start as root")),
            "{failed:?}"
        );
    }

    #[test]
    fn a_timeout_names_the_timeout_and_keeps_the_output() {
        let output = record(r#"{"kind":"stdout","bytes":7}"#, "partial");
        let outcome = judged(&[output], Ended::TimedOut).unwrap();
        assert_eq!(outcome.status(), RunStatus::TimedOut);
        assert_eq!((outcome.exit_code, outcome.stdout.as_str()), (None, "partial"));
        assert!(outcome.error_message.contains("1000 ms"));
        let supervisor = judged(&[record(r#"{"kind":"done","status":"timed_out"}"#, "")], Ended::Done).unwrap();
        assert_eq!(supervisor.status(), RunStatus::TimedOut);
    }

    #[test]
    fn output_the_supervisor_dropped_marks_the_stream_truncated() {
        let done = record(
            r#"{"kind":"done","status":"ok","format":"json","bytes":1,"stdoutDropped":9}"#,
            "1",
        );
        let outcome = judged(&[done], Ended::Done).unwrap();
        assert!(outcome.stdout_truncated && !outcome.stderr_truncated);
    }

    #[tokio::test]
    async fn progress_records_reach_the_sender() {
        let judge = judge();
        let (sender, mut receiver) = progress::channel();
        let mut output = judge.output(MARKER, Some(sender));
        output.stdout(&record(
            r#"{"kind":"progress","progress":2,"total":4,"message":"half"}"#,
            "",
        ));
        drop(output);
        let report = receiver.next().await.unwrap();
        assert_eq!(
            (report.progress, report.total, report.message.as_deref()),
            (2.0, Some(4.0), Some("half"))
        );
        assert_eq!(receiver.next().await, None);
    }

    #[test]
    fn the_oom_question_is_asked_only_when_open() {
        let judge = judge();
        let mut output = judge.output(MARKER, None);
        assert!(output.needs_oom_check(1));
        assert!(!output.needs_oom_check(137));
        output.stdout(&done(r#""status":"ok","format":"json""#, "1"));
        assert!(!output.needs_oom_check(1));
    }
}
