//! Container-per-tool mode: calls of one tool revision run in one
//! long-lived hardened container, over its channel socket, each
//! in a fresh JS realm — worker threads (the default) and processes. Calls
//! share no JS state, a hanging call is killed at its timeout while others
//! go on, a new revision retires the old container, an idle one is removed
//! (`stop` checks that nothing is left), and an operator can forbid the mode.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use std::time::Duration;

use dynamic_mcp_executor::config::PER_TOOL_SPARES;
use dynamic_mcp_proto::v1::{Isolation, PrepareToolRequest, RunStatus, RunToolRequest};
use support::{Ran, TestExecutor, removed_within, request, role_of};
use tonic::Code;

/// No warm pool: every container a test sees is a per-tool one. Idle ones
/// go quickly, so that `stop` sees them removed.
const NO_POOL: (&str, &str) = ("MCP_EXECUTOR_WARM_POOL_SIZE", "0");
const QUICK_IDLE: (&str, &str) = ("MCP_SANDBOX_PER_TOOL_IDLE_SECONDS", "2");
const PROCESSES: (&str, &str) = ("MCP_SANDBOX_PER_TOOL_REALM", "process");

/// Counts its calls in JS state that a shared realm would keep.
const COUNTER: &str = r#"
globalThis.calls = (globalThis.calls ?? 0) + 1;
console.log("call", globalThis.calls);
return { calls: globalThis.calls, upper: String(args.text).toUpperCase() };"#;

fn per_tool(code: &str, args_json: &str, timeout_ms: Option<u32>) -> RunToolRequest {
    RunToolRequest {
        isolation: Isolation::ContainerPerTool.into(),
        ..request(code, args_json, timeout_ms)
    }
}

async fn start(extra: &[(&str, &str)]) -> TestExecutor {
    let mut env = vec![NO_POOL, QUICK_IDLE];
    env.extend_from_slice(extra);
    TestExecutor::start(&env).await
}

async fn calls_share_a_container_but_no_state(extra: &[(&str, &str)]) {
    let mut executor = start(extra).await;
    let mut containers = Vec::new();
    for text in ["a", "b", "c"] {
        let ran = executor
            .run_request(per_tool(COUNTER, &format!(r#"{{"text":"{text}"}}"#), None))
            .await;
        assert_eq!(ran.outcome.status(), RunStatus::Ok, "{:?}", ran.outcome);
        let upper = text.to_uppercase();
        assert_eq!(ran.outcome.result_json, format!(r#"{{"calls":1,"upper":"{upper}"}}"#));
        assert_eq!(ran.outcome.stdout, "call 1\n");
        containers.push(ran.container_id);
    }
    containers.dedup();
    assert_eq!(containers.len(), 1, "one container serves the tool");
    let running = executor.containers().await;
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(role_of(&running[0]), Some("per-tool"));

    // The outcomes of a run, in the same container.
    let threw = executor
        .run_request(per_tool(r#"throw new TypeError("bad " + args.n);"#, r#"{"n":7}"#, None))
        .await;
    assert_eq!(threw.outcome.status(), RunStatus::Threw, "{:?}", threw.outcome);
    assert_eq!(
        (threw.outcome.error_name.as_str(), threw.outcome.error_message.as_str()),
        ("TypeError", "bad 7")
    );
    let syntax = executor.run_request(per_tool("return {", "{}", None)).await;
    assert_eq!(syntax.outcome.status(), RunStatus::SyntaxError, "{:?}", syntax.outcome);
    let exited = executor.run_request(per_tool("process.exit(3);", "{}", None)).await;
    assert_eq!(exited.outcome.status(), RunStatus::Exited, "{:?}", exited.outcome);
    assert_eq!(exited.outcome.exit_code, Some(3));
    let unsettled = executor
        .run_request(per_tool("await new Promise(() => {});", "{}", None))
        .await;
    assert_eq!(unsettled.outcome.status(), RunStatus::Exited, "{:?}", unsettled.outcome);
    assert!(
        unsettled.outcome.error_message.contains("can never settle"),
        "{:?}",
        unsettled.outcome
    );
    let content = executor
        .run_request(per_tool(r#"return mcp.content(["one", mcp.text("two")]);"#, "{}", None))
        .await;
    assert_eq!(content.outcome.status(), RunStatus::Ok, "{:?}", content.outcome);
    assert_eq!(content.outcome.content.as_ref().map(|c| c.blocks.len()), Some(2));
    // Over a pipe's 64 KiB: in the process realm a spare, waiting since it said
    // it was ready, reads it in several chunks.
    let large = serde_json::json!({ "text": "abc".repeat(100_000) }).to_string();
    let large = executor
        .run_request(per_tool(
            "return { length: args.text.length, tail: args.text.slice(-4) };",
            &large,
            None,
        ))
        .await;
    assert_eq!(large.outcome.status(), RunStatus::Ok, "{:?}", large.outcome);
    assert_eq!(large.outcome.result_json, r#"{"length":300000,"tail":"cabc"}"#);
    for ran in [&threw, &syntax, &exited, &unsettled, &content, &large] {
        assert_eq!(
            ran.container_id, containers[0],
            "a failed call does not cost the container"
        );
    }
    executor.stop().await;
}

#[tokio::test]
async fn worker_calls_share_a_container_but_no_state() {
    calls_share_a_container_but_no_state(&[]).await;
}

#[tokio::test]
async fn process_calls_share_a_container_but_no_state() {
    calls_share_a_container_but_no_state(&[PROCESSES]).await;
}

async fn a_hanging_call_is_killed_at_its_timeout_while_another_succeeds(extra: &[(&str, &str)]) {
    let mut executor = start(extra).await;
    // The container is up before the race starts.
    let first = executor.run_request(per_tool(COUNTER, r#"{"text":"x"}"#, None)).await;
    assert_eq!(first.outcome.status(), RunStatus::Ok, "{:?}", first.outcome);
    let mut client = executor.client.clone();
    let hanging = tokio::spawn(async move {
        let began = std::time::Instant::now();
        let stream = client
            .run_tool(per_tool("for (;;) {}", "{}", Some(2000)))
            .await
            .unwrap()
            .into_inner();
        (support::follow(stream).await, began.elapsed())
    });
    // While it spins: other calls get their outcomes at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let ran = executor.run_request(per_tool(COUNTER, r#"{"text":"y"}"#, None)).await;
        assert_eq!(ran.outcome.status(), RunStatus::Ok, "{:?}", ran.outcome);
        assert_eq!(ran.outcome.result_json, r#"{"calls":1,"upper":"Y"}"#);
        assert!(
            ran.wall < Duration::from_millis(1500),
            "a call waited for the hanging one: {:?}",
            ran.wall
        );
    }
    let (hung, took) = hanging.await.unwrap();
    assert_eq!(hung.outcome.status(), RunStatus::TimedOut, "{:?}", hung.outcome);
    assert!(hung.outcome.error_message.contains("2000 ms"), "{:?}", hung.outcome);
    assert!(
        took < Duration::from_secs(5),
        "killed at its timeout, not later: {took:?}"
    );
    // The container survived the kill.
    let after = executor.run_request(per_tool(COUNTER, r#"{"text":"z"}"#, None)).await;
    assert_eq!(after.outcome.status(), RunStatus::Ok, "{:?}", after.outcome);
    assert_eq!(after.container_id, first.container_id);
    executor.stop().await;
}

#[tokio::test]
async fn a_hanging_worker_call_is_killed_at_its_timeout_while_another_succeeds() {
    a_hanging_call_is_killed_at_its_timeout_while_another_succeeds(&[]).await;
}

#[tokio::test]
async fn a_hanging_process_call_is_killed_at_its_timeout_while_another_succeeds() {
    a_hanging_call_is_killed_at_its_timeout_while_another_succeeds(&[PROCESSES]).await;
}

#[tokio::test]
async fn a_call_past_its_heap_cap_ends_alone_with_a_resource_limit() {
    let mut executor = start(&[("MCP_SANDBOX_PER_TOOL_HEAP", "32m")]).await;
    let hog = "const keep = []; for (;;) keep.push(new Array(100000).fill(Math.random()));";
    let ran = executor.run_request(per_tool(hog, "{}", Some(20_000))).await;
    assert_eq!(ran.outcome.status(), RunStatus::ResourceLimit, "{:?}", ran.outcome);
    let after = executor.run_request(per_tool(COUNTER, r#"{"text":"ok"}"#, None)).await;
    assert_eq!(after.outcome.status(), RunStatus::Ok, "{:?}", after.outcome);
    assert_eq!(after.container_id, ran.container_id, "the container outlived the call");
    executor.stop().await;
}

#[tokio::test]
async fn a_new_revision_retires_the_old_container() {
    let mut executor = start(&[]).await;
    let old = executor.run_request(per_tool(COUNTER, r#"{"text":"v1"}"#, None)).await;
    assert_eq!(old.outcome.status(), RunStatus::Ok, "{:?}", old.outcome);
    let again = executor.run_request(per_tool(COUNTER, r#"{"text":"v1"}"#, None)).await;
    assert_eq!(again.container_id, old.container_id);
    let new = executor
        .run_request(RunToolRequest {
            revision: 2,
            ..per_tool(COUNTER, r#"{"text":"v2"}"#, None)
        })
        .await;
    assert_eq!(new.outcome.status(), RunStatus::Ok, "{:?}", new.outcome);
    assert_ne!(
        new.container_id, old.container_id,
        "revision 2 gets a container of its own"
    );
    assert!(
        removed_within(&executor.docker, &old.container_id, Duration::from_secs(10)).await,
        "revision 1's container was not retired"
    );
    let other_tool = executor
        .run_request(RunToolRequest {
            tool_name: "test.other".into(),
            ..per_tool(COUNTER, r#"{"text":"o"}"#, None)
        })
        .await;
    assert_ne!(
        other_tool.container_id, new.container_id,
        "tools never share a container"
    );
    executor.stop().await;
}

#[tokio::test]
async fn an_operator_can_forbid_per_tool_mode() {
    let executor = start(&[("MCP_SANDBOX_ALLOW_PER_TOOL", "false")]).await;
    let mut client = executor.client.clone();
    let refused = client.run_tool(per_tool(COUNTER, "{}", None)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("MCP_SANDBOX_ALLOW_PER_TOOL") && refused.message().contains("container-per-call"),
        "{}",
        refused.message()
    );
    let prepared = client
        .prepare_tool(PrepareToolRequest {
            isolation: Isolation::ContainerPerTool.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(prepared.code(), Code::InvalidArgument, "refused before it is stored");
    let per_call = client
        .prepare_tool(PrepareToolRequest {
            isolation: Isolation::ContainerPerCall.into(),
            ..Default::default()
        })
        .await;
    assert!(per_call.is_ok(), "{per_call:?}");
    assert!(executor.containers().await.is_empty());
    executor.stop().await;
}

#[tokio::test]
async fn the_server_default_can_be_per_tool() {
    let mut executor = start(&[("MCP_SANDBOX_ISOLATION", "container-per-tool")]).await;
    let ran: Ran = executor.run(COUNTER, r#"{"text":"d"}"#, None).await;
    assert_eq!(ran.outcome.status(), RunStatus::Ok, "{:?}", ran.outcome);
    let containers = executor.containers().await;
    assert_eq!(containers.iter().filter_map(role_of).collect::<Vec<_>>(), ["per-tool"]);
    let per_call = executor
        .run_request(RunToolRequest {
            isolation: Isolation::ContainerPerCall.into(),
            ..request(COUNTER, r#"{"text":"c"}"#, None)
        })
        .await;
    assert_ne!(
        per_call.container_id, ran.container_id,
        "a tool may still ask for its own container"
    );
    executor.stop().await;
}

#[tokio::test]
async fn under_load_a_tool_gets_another_container_and_loses_it_when_idle() {
    // Room for two calls each: the second call at once finds the first half busy.
    // Idle for 5 s, not 2: on a loaded machine the first container must still
    // be there when the two calls come (`stop` still sees both go).
    let settings = [
        ("MCP_SANDBOX_PER_TOOL_MAX_CALLS", "2"),
        ("MCP_SANDBOX_PER_TOOL_IDLE_SECONDS", "5"),
    ];
    let mut executor = start(&settings).await;
    let first = executor.run_request(per_tool(COUNTER, r#"{"text":"a"}"#, None)).await;
    assert_eq!(first.outcome.status(), RunStatus::Ok, "{:?}", first.outcome);
    let slow = "await new Promise((r) => setTimeout(r, 1500)); return 1;";
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let mut client = executor.client.clone();
            tokio::spawn(async move {
                let stream = client.run_tool(per_tool(slow, "{}", None)).await.unwrap().into_inner();
                support::follow(stream).await
            })
        })
        .collect();
    let mut ran_in = Vec::new();
    for call in calls {
        let followed = call.await.unwrap();
        assert_eq!(followed.outcome.status(), RunStatus::Ok, "{:?}", followed.outcome);
        ran_in.push(followed.started.unwrap().container_id);
    }
    ran_in.sort();
    ran_in.dedup();
    assert_eq!(ran_in.len(), 2, "two calls at once got two containers");
    assert!(ran_in.contains(&first.container_id), "the first container kept serving");
    executor.ran.extend(ran_in);
    assert_eq!(executor.containers_of("per-tool").await.len(), 2);
    // `stop` checks that both go once idle.
    executor.stop().await;
}

/// Sixteen callers back to back, more than a container has places for:
/// every call must come back Ok (no realm lost to a race between calls,
/// spares and the container's pids limit).
async fn a_burst_of_calls_all_succeed(extra: &[(&str, &str)]) {
    const CALLERS: usize = 16;
    const EACH: usize = 5;
    let executor = start(extra).await;
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let client = executor.client.clone();
            tokio::spawn(async move {
                let mut failed = Vec::new();
                for call in 0..EACH {
                    let text = format!("c{caller}n{call}");
                    let request = per_tool(COUNTER, &format!(r#"{{"text":"{text}"}}"#), Some(60_000));
                    let stream = client.clone().run_tool(request).await.unwrap().into_inner();
                    let outcome = support::follow(stream).await.outcome;
                    let expected = format!(r#"{{"calls":1,"upper":"{}"}}"#, text.to_uppercase());
                    if outcome.status() != RunStatus::Ok || outcome.result_json != expected {
                        failed.push(format!("{text}: {outcome:?}"));
                    }
                }
                failed
            })
        })
        .collect();
    let mut failed = Vec::new();
    for caller in callers {
        failed.extend(caller.await.unwrap());
    }
    assert!(
        failed.is_empty(),
        "{} of {} calls failed:\n{}",
        failed.len(),
        CALLERS * EACH,
        failed.join("\n")
    );
    executor.stop().await;
}

#[tokio::test]
async fn a_burst_of_worker_calls_all_succeed() {
    a_burst_of_calls_all_succeed(&[]).await;
}

#[tokio::test]
async fn a_burst_of_process_calls_all_succeed() {
    a_burst_of_calls_all_succeed(&[PROCESSES]).await;
}

#[tokio::test]
async fn a_call_that_finds_no_free_place_fails_at_its_timeout_and_says_why() {
    let executor = start(&[
        ("MCP_SANDBOX_PER_TOOL_MAX_CALLS", "1"),
        ("MCP_SANDBOX_PER_TOOL_MAX_CONTAINERS", "1"),
    ])
    .await;
    let slow = "await new Promise((r) => setTimeout(r, 4000)); return 1;";
    let mut client = executor.client.clone();
    let first = client
        .run_tool(per_tool(slow, "{}", Some(20_000)))
        .await
        .unwrap()
        .into_inner();
    let first = tokio::spawn(support::follow(first));
    // Once the first call runs, the only place is taken.
    let running = support::wait_for(Duration::from_secs(60), || async {
        !executor.containers_of("per-tool").await.is_empty()
    })
    .await;
    assert!(running, "the first call's container never ran");
    let asked = std::time::Instant::now();
    let waiting = client
        .run_tool(per_tool(slow, "{}", Some(1_000)))
        .await
        .unwrap()
        .into_inner();
    let status = support::follow_to_error(waiting).await;
    let waited = asked.elapsed();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("all 1 places") && status.message().contains("MCP_SANDBOX_PER_TOOL_MAX_CALLS"),
        "{status:?}"
    );
    assert!(
        waited >= Duration::from_millis(900),
        "it waited for its timeout ({waited:?})"
    );
    assert!(
        waited < Duration::from_millis(3_900),
        "it did not wait for the place ({waited:?})"
    );
    let first = first.await.unwrap();
    assert_eq!(
        first.outcome.status(),
        RunStatus::Ok,
        "the running call is unharmed: {:?}",
        first.outcome
    );
    executor.stop().await;
}

/// Returns, leaving up to 20 processes running: calls of it fill their
/// container's pids limit for good.
const LEAVE_SLEEPERS: &str = r#"
const { spawn } = await import("node:child_process");
let left = 0;
for (let i = 0; i < 20; i++) {
  const child = spawn("sleep", ["600"], { stdio: "ignore", detached: true });
  const started = await new Promise((r) => { child.once("spawn", () => r(true)); child.once("error", () => r(false)); });
  if (!started) break;
  child.unref();
  left += 1;
}
return left;"#;

/// Calls that leave processes behind fill their container's pids limit
/// until no process can start for a call. The call that gets none fails
/// alone (a resource limit, or, when Node started only partly, an error
/// that says the limit was full) and retires the container: the next calls
/// get a fresh one, and the full one goes.
#[tokio::test]
async fn a_process_realm_at_its_pids_limit_retires_its_container() {
    const MOST_CALLS: usize = 40;
    let mut executor = start(&[PROCESSES]).await;
    let mut full = None;
    let mut refused = None;
    let mut after = Vec::new();
    for call in 0..MOST_CALLS {
        let ran = executor.run_request(per_tool(LEAVE_SLEEPERS, "{}", Some(20_000))).await;
        let first = full.get_or_insert_with(|| ran.container_id.clone());
        let status = ran.outcome.status();
        let got_no_process = status == RunStatus::ResourceLimit
            || (status == RunStatus::BadResult && ran.outcome.error_message.contains("process limit was full"));
        match (status, refused) {
            (RunStatus::Ok, None) => assert_eq!(&ran.container_id, first, "call {call}"),
            (_, None) if got_no_process => {
                assert_eq!(&ran.container_id, first, "call {call}");
                refused = Some(call);
            }
            (RunStatus::Ok, Some(_)) => {
                assert_ne!(&ran.container_id, first, "a fresh container serves call {call}");
                after.push(ran.container_id);
                if after.len() == 2 {
                    break;
                }
            }
            (_, _) => panic!("call {call} (refused at {refused:?}): {:?}", ran.outcome),
        }
    }
    assert!(refused.is_some(), "no call of {MOST_CALLS} found the pids limit full");
    assert_eq!(after.len(), 2, "two calls ran after the refusal: {after:?}");
    assert_eq!(after[0], after[1], "the fresh container serves on");
    let full = full.unwrap();
    assert!(
        removed_within(&executor.docker, &full, Duration::from_secs(30)).await,
        "the retired container goes"
    );
    executor.stop().await;
}

/// A worker needs one of the pids its call's end frees, so calls that leave
/// processes behind fill the limit without starving the realm: the
/// container serves on, and is not retired.
#[tokio::test]
async fn a_worker_realm_serves_on_with_its_pids_limit_full() {
    let mut executor = start(&[]).await;
    let mut left = Vec::new();
    let mut containers = Vec::new();
    for _ in 0..12 {
        let ran = executor.run_request(per_tool(LEAVE_SLEEPERS, "{}", Some(20_000))).await;
        assert_eq!(ran.outcome.status(), RunStatus::Ok, "{:?}", ran.outcome);
        left.push(ran.outcome.result_json.parse::<u32>().unwrap());
        containers.push(ran.container_id);
    }
    assert!(left.iter().any(|&n| n < 20), "the pids limit got full: {left:?}");
    containers.dedup();
    assert_eq!(containers.len(), 1, "one container served every call");
    executor.stop().await;
}

/// Returns, leaving behind processes that write to the call's stdout as
/// fast as they can.
const LEAVE_A_FLOODER: &str = r#"
const { spawn } = await import("node:child_process");
const flood = "const bytes = Buffer.alloc(65536, 120); for (;;) require('fs').writeSync(1, bytes);";
for (let i = 0; i < 3; i++) spawn(process.execPath, ["-e", flood], { stdio: ["ignore", "inherit", "ignore"] });
await new Promise((resolve) => setTimeout(resolve, 300));
return "left";"#;

#[tokio::test]
async fn a_process_left_flooding_a_calls_output_does_not_stall_its_container() {
    let mut executor = start(&[PROCESSES]).await;
    let left = executor
        .run_request(per_tool(LEAVE_A_FLOODER, "{}", Some(20_000)))
        .await;
    assert_eq!(left.outcome.status(), RunStatus::Ok, "{:?}", left.outcome);
    assert!(left.outcome.stdout_truncated, "the flood is cut at the output cap");
    for text in ["a", "b"] {
        let after = executor
            .run_request(per_tool(COUNTER, &format!(r#"{{"text":"{text}"}}"#), Some(10_000)))
            .await;
        assert_eq!(after.outcome.status(), RunStatus::Ok, "{:?}", after.outcome);
        assert_eq!(after.container_id, left.container_id, "the same container serves on");
    }
    executor.stop().await;
}

/// What a per-tool call's code finds of its container's channel.
const CHANNEL_PROBE: &str = r#"
const fs = await import("node:fs");
const net = await import("node:net");
const dir = "/run/dynamic-mcp-channel";
const connected = await new Promise((resolve) => {
  const socket = net.connect(`${dir}/channel.sock`);
  socket.once("connect", () => { socket.destroy(); resolve("connected"); });
  socket.once("error", (error) => resolve(error.code));
});
let listed;
try { listed = fs.readdirSync(dir); } catch (error) { listed = error.code; }
return { listed, connected };"#;

/// The host directory mounted as a container's channel directory.
async fn channel_dir_of(docker: &bollard::Docker, container: &str) -> std::path::PathBuf {
    let inspected = docker
        .inspect_container(container, None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .unwrap();
    let mount = inspected
        .mounts
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.destination.as_deref() == Some("/run/dynamic-mcp-channel"))
        .expect("a per-tool container has its channel directory");
    assert_eq!(mount.rw, Some(false), "mounted read-only: {mount:?}");
    std::path::PathBuf::from(mount.source.unwrap())
}

#[tokio::test]
async fn each_container_has_a_channel_of_its_own_that_code_cannot_open_and_that_goes_with_it() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let mut executor = start(&[]).await;
    let first = executor.run_request(per_tool(CHANNEL_PROBE, "{}", None)).await;
    let other = executor
        .run_request(RunToolRequest {
            tool_name: "test.other".into(),
            ..per_tool(CHANNEL_PROBE, "{}", None)
        })
        .await;
    for ran in [&first, &other] {
        assert_eq!(ran.outcome.status(), RunStatus::Ok, "{:?}", ran.outcome);
        // The supervisor's connection was the only one: the socket is gone, and
        // the directory (the executor's) cannot even be listed from inside.
        assert_eq!(ran.outcome.result_json, r#"{"listed":"EACCES","connected":"ENOENT"}"#);
    }
    let first_dir = channel_dir_of(&executor.docker, &first.container_id).await;
    let other_dir = channel_dir_of(&executor.docker, &other.container_id).await;
    assert_ne!(first_dir, other_dir, "another tool's container never sees this channel");
    // The directory stays the executor's (root here) and unlistable: only its
    // socket was the sandbox user's, so nobody else could add or swap entries.
    let meta = std::fs::metadata(&first_dir).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.permissions().mode() & 0o777),
        (0, 0, 0o711),
        "{first_dir:?}"
    );

    // A new revision retires the first container, and its directory with it.
    let new = executor
        .run_request(RunToolRequest {
            revision: 2,
            ..per_tool(CHANNEL_PROBE, "{}", None)
        })
        .await;
    assert_eq!(new.outcome.status(), RunStatus::Ok, "{:?}", new.outcome);
    assert!(removed_within(&executor.docker, &first.container_id, Duration::from_secs(10)).await);
    assert!(
        support::wait_for(Duration::from_secs(10), || async { !first_dir.exists() }).await,
        "{first_dir:?} outlived its container"
    );
    assert!(other_dir.exists(), "another tool's channel stays");
    // Idle retirement takes the rest.
    assert!(
        support::wait_for(Duration::from_secs(20), || async { !other_dir.exists() }).await,
        "{other_dir:?} outlived its idle container"
    );
    executor.stop().await;
}

#[tokio::test]
async fn a_long_process_call_does_not_leave_its_container_short_of_spares() {
    let executor = start(&[PROCESSES]).await;
    // The container's first call: nothing ran in it before, nothing ends during it.
    let (stream, started) =
        support::start_run(&executor.client, per_tool(support::SLEEP_A_MINUTE, "{}", Some(30_000))).await;
    // The supervisor, the call's process and, replaced while it sleeps, every spare.
    let wanted = 2 + PER_TOOL_SPARES as usize;
    let count = || support::node_processes(&executor.docker, &started.container_id);
    let refilled = support::wait_for(Duration::from_secs(15), || async { count().await == wanted }).await;
    assert!(
        refilled,
        "{} node processes while a call sleeps, not {wanted}",
        count().await
    );
    drop(stream);
    executor.stop().await;
}

#[tokio::test]
async fn a_call_in_flight_when_its_container_dies_ends_at_once_with_its_exit() {
    let mut executor = start(&[]).await;
    let warm = executor.run_request(per_tool(COUNTER, r#"{"text":"x"}"#, None)).await;
    assert_eq!(warm.outcome.status(), RunStatus::Ok, "{:?}", warm.outcome);
    let (stream, started) =
        support::start_run(&executor.client, per_tool(support::SLEEP_A_MINUTE, "{}", Some(30_000))).await;
    assert_eq!(started.container_id, warm.container_id);
    let kill = bollard::query_parameters::KillContainerOptionsBuilder::default()
        .signal("SIGKILL")
        .build();
    executor
        .docker
        .kill_container(&started.container_id, Some(kill))
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), support::follow(stream))
        .await
        .expect("the call ends when its container dies, not at its timeout");
    // A SIGKILL from outside reads as the limits' kill, as in a run.
    assert_eq!(ended.outcome.status(), RunStatus::ResourceLimit, "{:?}", ended.outcome);
    assert_eq!(ended.outcome.exit_code, Some(137), "{:?}", ended.outcome);
    // The tool gets a fresh container.
    let after = executor.run_request(per_tool(COUNTER, r#"{"text":"y"}"#, None)).await;
    assert_eq!(after.outcome.status(), RunStatus::Ok, "{:?}", after.outcome);
    assert_ne!(after.container_id, warm.container_id);
    executor.stop().await;
}
