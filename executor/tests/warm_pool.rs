//! The warm pool (MCP_EXECUTOR_WARM_POOL_SIZE): a pre-started container
//! gives exactly the outcomes of a cold one, is hardened the same, is used
//! once, counts against the cap, is recycled when old, and is removed at
//! shutdown (`stop` checks that nothing is left).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use std::time::Duration;

use dynamic_mcp_proto::v1::{RunStatus, StartSessionRequest};
use support::{Ran, SLEEP_A_MINUTE, TestExecutor, removed_within, request, start_run};
use tonic::Code;

const POOL: (&str, &str) = ("MCP_EXECUTOR_WARM_POOL_SIZE", "2");
const UPPER: &str = "const { text } = args; return { upper: String(text).toUpperCase() };";

/// Runs `code` once the pool is full, and checks it ran in a warm container.
async fn run_warm(executor: &mut TestExecutor, code: &str, args_json: &str, timeout_ms: Option<u32>) -> Ran {
    let warm = executor.warm_containers(2).await;
    let ran = executor.run(code, args_json, timeout_ms).await;
    assert!(
        warm.contains(&ran.container_id),
        "the run did not get a warm container: {} not in {warm:?}",
        ran.container_id
    );
    ran
}

#[tokio::test]
async fn warm_runs_have_the_outcomes_of_cold_ones() {
    let mut executor = TestExecutor::start(&[POOL]).await;
    let mut walls = Vec::new();
    for _ in 0..3 {
        let ran = run_warm(&mut executor, UPPER, r#"{"text":"hello"}"#, None).await;
        assert_eq!(ran.outcome.status(), RunStatus::Ok, "{:?}", ran.outcome);
        assert_eq!(ran.outcome.result_json, r#"{"upper":"HELLO"}"#);
        assert_eq!((ran.outcome.exit_code, ran.outcome.timeout_ms), (Some(0), 30_000));
        walls.push(ran.wall);
    }
    walls.sort();
    eprintln!("median RunTool wall time (warm pool): {:?}", walls[walls.len() / 2]);
    let mut ran_in = executor.ran.clone();
    ran_in.sort();
    ran_in.dedup();
    assert_eq!(ran_in.len(), 3, "a warm container was used twice: {ran_in:?}");

    let ran = run_warm(
        &mut executor,
        r#"throw new TypeError("bad input: " + args.n);"#,
        r#"{"n":7}"#,
        None,
    )
    .await;
    assert_eq!(ran.outcome.status(), RunStatus::Threw, "{:?}", ran.outcome);
    assert_eq!(
        (ran.outcome.error_name.as_str(), ran.outcome.error_message.as_str()),
        ("TypeError", "bad input: 7")
    );
    assert!(
        ran.outcome.stderr.contains("at Module.run (tool.mjs:1:"),
        "{}",
        ran.outcome.stderr
    );

    let ran = run_warm(&mut executor, "return { a: ;", "{}", None).await;
    assert_eq!(ran.outcome.status(), RunStatus::SyntaxError, "{:?}", ran.outcome);

    let ran = run_warm(&mut executor, "while (true) {}", "{}", Some(1000)).await;
    assert_eq!(ran.outcome.status(), RunStatus::TimedOut, "{:?}", ran.outcome);
    assert!(ran.wall < Duration::from_secs(3), "took {:?}", ran.wall);

    let flood = r#"
        console.log("hello from the tool");
        console.error("a warning");
        process.stdout.write("x".repeat(1024 * 1024));
        return { ok: true };
    "#;
    let ran = run_warm(&mut executor, flood, "{}", None).await;
    assert_eq!(ran.outcome.status(), RunStatus::Ok, "{}", ran.outcome.error_message);
    assert_eq!(ran.outcome.result_json, r#"{"ok":true}"#);
    assert!(ran.outcome.stdout.starts_with("hello from the tool\nxxx"));
    assert_eq!(
        (ran.outcome.stdout.len(), ran.outcome.stdout_truncated),
        (200_000, true)
    );
    assert_eq!(ran.outcome.stderr, "a warning\n");

    let ran = run_warm(&mut executor, "console.log('bye'); process.exit(3);", "{}", None).await;
    assert_eq!(ran.outcome.status(), RunStatus::Exited, "{:?}", ran.outcome);
    assert_eq!((ran.outcome.exit_code, ran.outcome.stdout.as_str()), (Some(3), "bye\n"));
    executor.stop().await;
}

#[tokio::test]
async fn a_warm_memory_balloon_hits_the_resource_limit() {
    let mut executor = TestExecutor::start(&[POOL, ("MCP_SANDBOX_MEMORY_LIMIT", "128m")]).await;
    let ran = run_warm(&mut executor, support::MEMORY_BALLOON, "{}", Some(20_000)).await;
    support::assert_hit_the_memory_limit(&ran.outcome);
    executor.stop().await;
}

#[tokio::test]
async fn warm_containers_are_hardened_like_cold_ones_and_carry_no_tool() {
    let mut executor = TestExecutor::start(&[POOL]).await;
    let warm = executor.warm_containers(2).await;
    let (host, config) = executor.inspect(&warm[0]).await;
    support::assert_run_profile(&host);
    assert_eq!(host.auto_remove, Some(false));
    assert_eq!(config.user.as_deref(), Some("0:0"));
    assert_eq!(config.network_disabled, Some(true));
    let labels = config.labels.unwrap();
    assert_eq!(labels["dynamic-mcp.managed"], "true");
    assert_eq!(labels["dynamic-mcp.executor"], executor.id);
    assert_eq!(labels["dynamic-mcp.role"], "run");
    assert!(!labels.contains_key("dynamic-mcp.tool"), "{labels:?}");
    // Once it waits, the supervisor has pre-spawned the code's process and
    // dropped root: two node processes, neither of them root.
    let users = || async {
        let top = executor.docker.top_processes(&warm[0], None).await.unwrap();
        let uid = top.titles.unwrap_or_default().iter().position(|t| t == "UID");
        let processes = top.processes.unwrap_or_default();
        uid.map(|uid| processes.iter().map(|p| p[uid].clone()).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let dropped = support::wait_for(Duration::from_secs(10), || async {
        let users = users().await;
        users.len() == 2 && users.iter().all(|u| u == "nobody" || u == "65534")
    })
    .await;
    assert!(dropped, "a waiting warm container runs {:?}", users().await);

    let probe = r#"
        const fs = await import("node:fs");
        const os = await import("node:os");
        const attempt = (f) => { try { f(); return "allowed"; } catch (e) { return e.code || e.message; } };
        const status = fs.readFileSync("/proc/self/status", "utf8");
        return {
            uid: process.getuid(),
            writeRoot: attempt(() => fs.writeFileSync("/x", "1")),
            capEff: /CapEff:\s*(\w+)/.exec(status)[1],
            interfaces: Object.keys(os.networkInterfaces()),
        };
    "#;
    let ran = run_warm(&mut executor, probe, "{}", None).await;
    let seen: serde_json::Value = serde_json::from_str(&ran.outcome.result_json).unwrap();
    assert_eq!(
        seen,
        serde_json::json!({"uid": 65534, "writeRoot": "EROFS", "capEff": "0000000000000000", "interfaces": ["lo"]})
    );
    executor.stop().await;
}

#[tokio::test]
async fn dropping_a_warm_run_removes_its_container_and_the_pool_refills() {
    let mut executor = TestExecutor::start(&[POOL]).await;
    let warm = executor.warm_containers(2).await;
    let (stream, started) = start_run(&executor.client, request(SLEEP_A_MINUTE, "{}", Some(60_000))).await;
    assert!(
        warm.contains(&started.container_id),
        "{} not in {warm:?}",
        started.container_id
    );
    executor.ran.push(started.container_id.clone());
    drop(stream);

    let gone = removed_within(&executor.docker, &started.container_id, Duration::from_secs(5)).await;
    assert!(gone, "the container outlived its cancelled run by 5 s");
    executor.warm_containers(2).await;
    executor.stop().await;
}

#[tokio::test]
async fn warm_containers_hold_cap_slots_but_give_them_up_to_callers() {
    let mut executor = TestExecutor::start(&[POOL, ("MCP_EXECUTOR_MAX_CONTAINERS", "3")]).await;
    let session = |owner: &str| StartSessionRequest {
        owner: owner.into(),
        ..Default::default()
    };
    executor.warm_containers(2).await;
    // Two warm containers leave one slot, which a session takes.
    executor.client.start_session(session("alice")).await.unwrap();
    // The cap is full now; an idle warm container makes room for the next caller.
    executor.client.start_session(session("bob")).await.unwrap();
    assert_eq!(executor.containers_of("session").await.len(), 2);
    assert!(executor.containers().await.len() <= 3);
    // No slot is spare, so the pool cannot refill; a run still gets the last warm one.
    let warm = executor.warm_containers(1).await;
    let (running, started) = start_run(&executor.client, request(SLEEP_A_MINUTE, "{}", Some(60_000))).await;
    assert!(warm.contains(&started.container_id), "{warm:?}");
    // With no warm container left and the cap full, a caller is refused at once.
    let refused = executor.client.start_session(session("carol")).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{}", refused.message());
    assert!(executor.containers().await.len() <= 3);
    drop(running);
    executor.ran.push(started.container_id);
    executor.stop().await;
}

#[tokio::test]
async fn idle_warm_containers_are_recycled_and_the_timeout_counts_from_hand_out() {
    let mut executor = TestExecutor::start(&[
        ("MCP_EXECUTOR_WARM_POOL_SIZE", "1"),
        ("MCP_EXECUTOR_WARM_POOL_MAX_AGE_SECONDS", "2"),
    ])
    .await;
    let first = executor.warm_containers(1).await;
    let recycled = removed_within(&executor.docker, &first[0], Duration::from_secs(10)).await;
    assert!(recycled, "a warm container outlived its max age (2 s) by 8 s");
    let replacement = executor.warm_containers(1).await;
    assert!(!replacement.contains(&first[0]));

    // Waiting in the pool does not eat into the run's timeout.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let ran = executor
        .run(
            "await new Promise((r) => setTimeout(r, 600)); return 1;",
            "{}",
            Some(1000),
        )
        .await;
    assert_eq!(ran.outcome.status(), RunStatus::Ok, "{:?}", ran.outcome);
    executor.stop().await;
}

#[tokio::test]
async fn with_the_pool_used_up_runs_start_cold_at_once() {
    let mut executor = TestExecutor::start(&[("MCP_EXECUTOR_WARM_POOL_SIZE", "1")]).await;
    let warm = executor.warm_containers(1).await;
    let runs = (0..3).map(|i| {
        let mut client = executor.client.clone();
        async move {
            let stream = client
                .run_tool(request(UPPER, &format!(r#"{{"text":"run {i}"}}"#), None))
                .await
                .unwrap()
                .into_inner();
            let followed = support::follow(stream).await;
            (followed.started.unwrap().container_id, followed.outcome)
        }
    });
    let ran = futures::future::join_all(runs).await;
    for (i, (_, outcome)) in ran.iter().enumerate() {
        assert_eq!(outcome.status(), RunStatus::Ok, "{outcome:?}");
        assert_eq!(outcome.result_json, format!(r#"{{"upper":"RUN {i}"}}"#));
    }
    let cold = ran.iter().filter(|(id, _)| !warm.contains(id)).count();
    assert!(
        cold >= 1,
        "three runs at once cannot all be warm with one warm container"
    );
    executor.ran.extend(ran.into_iter().map(|(id, _)| id));
    executor.stop().await;
}

#[tokio::test]
async fn a_warm_container_that_died_is_never_handed_out() {
    let mut executor = TestExecutor::start(&[("MCP_EXECUTOR_WARM_POOL_SIZE", "1")]).await;
    let warm = executor.warm_containers(1).await;
    executor
        .docker
        .kill_container(&warm[0], None::<bollard::query_parameters::KillContainerOptions>)
        .await
        .unwrap();
    let docker = executor.docker.clone();
    let stopped = support::wait_for(Duration::from_secs(10), || {
        let (docker, id) = (docker.clone(), warm[0].clone());
        async move {
            docker
                .inspect_container(&id, None)
                .await
                .map_or(true, |c| c.state.and_then(|s| s.running) != Some(true))
        }
    })
    .await;
    assert!(stopped, "the killed warm container still runs");
    let ran = executor.run(UPPER, r#"{"text":"x"}"#, None).await;
    assert_eq!(ran.outcome.status(), RunStatus::Ok, "{:?}", ran.outcome);
    assert_ne!(ran.container_id, warm[0], "a dead warm container was handed out");
    executor.ran.push(warm[0].clone());
    executor.stop().await;
}
