//! The harness protocol itself, against real hardened containers: envelopes
//! the executor's gRPC API cannot send yet (preload modules), the
//! supervisor's own timeout and rate limit, what the code's process can see,
//! and a supervisor that refuses to run where it would not be out of reach.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dynamic_mcp_executor::container::cap::ContainerCap;
use dynamic_mcp_executor::container::hardening::SandboxLimits;
use dynamic_mcp_executor::container::lease::Lease;
use dynamic_mcp_executor::container::source::{ColdStart, ContainerSource};
use dynamic_mcp_executor::container::{ContainerSpec, Role};
use dynamic_mcp_executor::docker::Engine;
use dynamic_mcp_executor::error::ExecError;
use dynamic_mcp_executor::harness::records::{Record, RecordReader};
use dynamic_mcp_executor::harness::{self, Call, Preload};
use dynamic_mcp_executor::outcome::{Ended, Judge};
use dynamic_mcp_executor::run::container_spec;
use dynamic_mcp_executor::setting_values::SandboxUser;
use dynamic_mcp_executor::socket_dir::SocketDirs;
use dynamic_mcp_executor::streams::{Sink, collect_into, feed};
use dynamic_mcp_proto::v1::{RunOutcome, RunStatus};
use serde_json::value::RawValue;

const USER: SandboxUser = SandboxUser { uid: 65534, gid: 65534 };

fn limits() -> SandboxLimits {
    SandboxLimits {
        memory: "256m".parse().unwrap(),
        cpus: 1.0,
        pids: 128,
        user: USER,
        tmpfs: "16m".parse().unwrap(),
        workdir: "16m".parse().unwrap(),
    }
}

struct Harness {
    source: ColdStart,
    judge: Judge,
    /// Where the source would make socket directories (these runs need none).
    _sockets: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Self {
        support::docker().await;
        let sockets = tempfile::tempdir().expect("a temp dir");
        let id = support::unique_id();
        let socket_dirs = SocketDirs::prepare(sockets.path(), None, &id).expect("a socket directory");
        let source = ColdStart::new(
            Arc::new(Engine::default()),
            ContainerCap::new(4),
            limits(),
            id,
            socket_dirs,
        );
        Self {
            source,
            judge: Judge::new(10_000, &limits()),
            _sockets: sockets,
        }
    }

    /// Runs one call in a fresh container made from `spec`; every byte the
    /// supervisor wrote also goes to `raw`.
    async fn run_in(&self, spec: &ContainerSpec, call: &Call<'_>, raw: &mut Vec<u8>) -> Result<RunOutcome, ExecError> {
        let marker = harness::new_marker();
        let Lease {
            container,
            stdin,
            output,
            ..
        } = self.source.acquire(spec).await.unwrap();
        let mut sink = Recording {
            inner: self.judge.output(&marker, None),
            raw,
        };
        let began = Instant::now();
        let run = async {
            let (_, complete) = tokio::join!(
                feed(stdin, harness::envelope(call, &marker)),
                collect_into(output, &mut sink)
            );
            if complete {
                Ended::Done
            } else {
                Ended::Exited {
                    code: container.wait_exit().await.unwrap(),
                    oom_killed: false,
                }
            }
        };
        let ended = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("the harness ends within 30 s");
        // Dropping the lease would remove it in a task this test's runtime
        // cancels as the test ends, leaving the container behind.
        container.remove_and_release().await;
        self.judge.outcome(sink.inner, ended, call.timeout_ms, began.elapsed())
    }

    async fn run(&self, call: &Call<'_>) -> (RunOutcome, Vec<u8>) {
        let mut raw = Vec::new();
        let outcome = self
            .run_in(&container_spec(support::IMAGE, None, &USER), call, &mut raw)
            .await
            .unwrap();
        (outcome, raw)
    }
}

/// Keeps a copy of the supervisor's stdout next to the judge's reading.
struct Recording<'a, S> {
    inner: S,
    raw: &'a mut Vec<u8>,
}

impl<S: Sink> Sink for Recording<'_, S> {
    fn stdout(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
        self.inner.stdout(bytes);
    }

    fn stderr(&mut self, bytes: &[u8]) {
        self.inner.stderr(bytes);
    }

    fn complete(&self) -> bool {
        self.inner.complete()
    }
}

fn call<'a>(code: &'a str, args: &'a RawValue) -> Call<'a> {
    Call {
        code,
        args,
        node_modules: None,
        progress: false,
        preload: &[],
        timeout_ms: 10_000,
        output_cap: 10_000,
        result_cap: 40_000,
    }
}

fn no_args() -> Box<RawValue> {
    RawValue::from_string("{}".into()).unwrap()
}

fn result(outcome: &RunOutcome) -> serde_json::Value {
    assert_eq!(outcome.status(), RunStatus::Ok, "{outcome:?}");
    serde_json::from_str(&outcome.result_json).unwrap()
}

#[tokio::test]
async fn preload_modules_prepare_the_environment_before_the_code_runs() {
    let harness = Harness::new().await;
    let preload = [
        Preload {
            name: "first.mjs".into(),
            source: "globalThis.order = ['first'];".into(),
            options: None,
        },
        Preload {
            name: "second.mjs".into(),
            source: "export async function prepare(options) { globalThis.order.push(options.say); }".into(),
            options: Some(serde_json::json!({"say": "prepared"})),
        },
    ];
    let args = no_args();
    let mut prepared = call("return globalThis.order;", &args);
    prepared.preload = &preload;
    let (outcome, _) = harness.run(&prepared).await;
    assert_eq!(result(&outcome), serde_json::json!(["first", "prepared"]));

    let failing = [Preload {
        name: "broken.mjs".into(),
        source: "throw new Error('no proxy');".into(),
        options: None,
    }];
    prepared.preload = &failing;
    let (outcome, _) = harness.run(&prepared).await;
    assert_eq!(outcome.status(), RunStatus::Threw, "{outcome:?}");
    assert_eq!(outcome.error_message, "the run could not be prepared: no proxy");
}

#[tokio::test]
async fn the_codes_process_never_holds_the_marker() {
    let harness = Harness::new().await;
    // The code looks for anything shaped like a marker in its own memory,
    // command line and environment; the supervisor's real one is in `raw`.
    let code = r#"
        const fs = await import("node:fs");
        const haystacks = { cmdline: fs.readFileSync("/proc/self/cmdline"), environ: fs.readFileSync("/proc/self/environ") };
        const mem = fs.openSync("/proc/self/mem", "r");
        const chunk = Buffer.alloc(1 << 20);
        const found = new Set();
        let scanned = 0;
        for (const line of fs.readFileSync("/proc/self/maps", "utf8").split("\n")) {
          const m = /^([0-9a-f]+)-([0-9a-f]+) r/.exec(line);
          if (!m) continue;
          for (let at = BigInt("0x" + m[1]); at < BigInt("0x" + m[2]); at += BigInt(chunk.length)) {
            let read = 0;
            try { read = fs.readSync(mem, chunk, 0, chunk.length, at); } catch { break; }
            scanned += read;
            // Every marker-shaped string: record separator, 32 hex digits, record separator.
            for (const hit of chunk.subarray(0, read).toString("latin1").matchAll(/\x1e[0-9a-f]{32}\x1e/g)) found.add(hit[0]);
          }
        }
        for (const [where, bytes] of Object.entries(haystacks)) {
          for (const hit of bytes.toString("latin1").matchAll(/\x1e[0-9a-f]{32}\x1e/g)) found.add(where + hit[0]);
        }
        return { scanned, found: [...found], uid: process.getuid(), supervisor: process.ppid };
    "#;
    let args = no_args();
    let (outcome, raw) = harness.run(&call(code, &args)).await;
    let seen = result(&outcome);
    let marker = String::from_utf8_lossy(&raw[..34]).into_owned();
    assert!(marker.starts_with('\u{1e}') && marker.ends_with('\u{1e}'), "{marker:?}");
    assert!(seen["scanned"].as_u64().unwrap() > 10 << 20, "{seen}");
    assert_eq!(
        seen["found"],
        serde_json::json!([]),
        "marker-shaped bytes in the code's process"
    );
    assert_eq!(
        (seen["uid"].as_u64(), seen["supervisor"].as_u64()),
        (Some(65534), Some(1))
    );
}

#[tokio::test]
async fn the_supervisor_stops_the_code_at_its_timeout() {
    let harness = Harness::new().await;
    let args = no_args();
    let mut looping = call("console.log('spinning'); while (true) {}", &args);
    looping.timeout_ms = 1000;
    let began = Instant::now();
    let (outcome, _) = harness.run(&looping).await;
    assert_eq!(outcome.status(), RunStatus::TimedOut, "{outcome:?}");
    assert_eq!(outcome.stdout, "spinning\n", "output up to the timeout is kept");
    assert!(began.elapsed() < Duration::from_secs(5), "took {:?}", began.elapsed());
}

#[tokio::test]
async fn progress_is_checked_and_rate_limited_but_the_last_report_is_kept() {
    let harness = Harness::new().await;
    let code = r#"
        for (let i = 1; i <= 2000; i++) await progress(i, 2000, `item ${i}`);
        await progress(1, 2000, "back to the start");
        return "done";
    "#;
    let args = no_args();
    let mut reporting = call(code, &args);
    reporting.progress = true;
    let began = Instant::now();
    let (outcome, raw) = harness.run(&reporting).await;
    let took = began.elapsed();
    assert_eq!(result(&outcome), "done");
    let mut reader = RecordReader::new(std::str::from_utf8(&raw[..34]).unwrap(), 40_000);
    let mut values = Vec::new();
    reader.push(&raw, &mut |record| {
        if let Record::Progress(report) = record {
            values.push(report.progress);
        }
    });
    assert_eq!(
        values.last(),
        Some(&2000.0),
        "the last report is never dropped: {values:?}"
    );
    assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
    // A burst of 10, then one per 50 ms (and the last one).
    let allowed = 10 + (took.as_millis() / 50) as usize + 1;
    assert!(values.len() <= allowed, "{} reports in {took:?}", values.len());

    // Without a progress token the reports go nowhere.
    reporting.progress = false;
    let (outcome, raw) = harness.run(&reporting).await;
    assert_eq!(result(&outcome), "done");
    let mut reports = 0;
    let mut reader = RecordReader::new(std::str::from_utf8(&raw[..34]).unwrap(), 40_000);
    reader.push(&raw, &mut |record| {
        reports += usize::from(matches!(record, Record::Progress(_)))
    });
    assert_eq!(reports, 0);
}

#[tokio::test]
async fn a_supervisor_that_cannot_drop_root_refuses_to_serve() {
    let harness = Harness::new().await;
    // An install container starts as the sandbox user, without capabilities:
    // the supervisor cannot put the code out of its reach, so it does not run it.
    let spec = ContainerSpec::new(Role::Install, support::IMAGE, harness::command(&USER, None));
    let args = no_args();
    let mut raw = Vec::new();
    let failed = harness.run_in(&spec, &call("return 1;", &args), &mut raw).await;
    match failed {
        Err(ExecError::Internal(message)) => assert!(
            message.contains("must start as root with CAP_SETUID and CAP_SETGID"),
            "{message}"
        ),
        other => panic!("the code ran anyway: {other:?}"),
    }
    assert!(
        raw.is_empty(),
        "the supervisor wrote records: {:?}",
        String::from_utf8_lossy(&raw)
    );
}

#[tokio::test]
async fn a_run_containers_supervisor_waits_after_done_to_be_removed_and_leaves_nothing_running() {
    let harness = Harness::new().await;
    let Lease {
        container,
        stdin,
        output,
        ..
    } = harness
        .source
        .acquire(&container_spec(support::IMAGE, None, &USER))
        .await
        .unwrap();
    let marker = harness::new_marker();
    let args = no_args();
    let code = r#"
        const { spawn } = await import("node:child_process");
        spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { detached: true, stdio: "ignore" }).unref();
        return 1;
    "#;
    let mut sink = harness.judge.output(&marker, None);
    let (_, complete) = tokio::join!(
        feed(stdin, harness::envelope(&call(code, &args), &marker)),
        collect_into(output, &mut sink)
    );
    assert!(complete, "the supervisor wrote its done record");
    // Its exit would start Docker's teardown beside the outcome's way back.
    let exited = tokio::time::timeout(Duration::from_secs(1), container.wait_exit()).await;
    // What the code left running is gone at done all the same: only the
    // supervisor is left (zombies aside).
    let docker = container.docker().clone();
    let alone = support::wait_for(Duration::from_secs(3), || async {
        support::node_processes(&docker, container.id()).await == 1
    })
    .await;
    container.remove_and_release().await;
    assert!(exited.is_err(), "PID 1 exited at done: {exited:?}");
    assert!(alone, "a process the code started outlived its run's done");
}
