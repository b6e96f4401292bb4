//! Sandbox sessions through the real binary, gRPC and Docker: their life,
//! their owners, their limit, their expiry, and what a timeout or a caller
//! going away does to the commands they run.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use std::time::{Duration, Instant};

use bollard::query_parameters::InspectContainerOptions;
use dynamic_mcp_proto::v1::{ListSessionsRequest, RunJsInSessionRequest, RunStatus, StartSessionRequest};
use support::{TestExecutor, exec_request, wait_for};
use tonic::Code;

const ALICE: &str = "user:alice";
const MALLORY: &str = "user:mallory";

/// Counts processes in the session whose command line matches the regex
/// `needle` (write it so it does not match itself, e.g. `sleep 4[5]`).
async fn processes_like(executor: &mut TestExecutor, session: &str, needle: &str) -> usize {
    let script = format!(
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c '{needle}' || true"
    );
    let results = executor.exec(ALICE, session, &[&script]).await;
    results[0].stdout.trim().parse().expect("a count")
}

#[tokio::test]
async fn a_session_keeps_its_files_between_calls_until_stopped() {
    let mut executor = TestExecutor::start(&[]).await;
    let session = executor.start_session(ALICE).await;
    let id = session.session_id.clone();
    assert_eq!(session.image, support::IMAGE);
    assert_eq!(session.timeout_ms, 30_000);
    assert!(session.created_at.ends_with('Z') && session.expires_at > session.created_at);

    let first = executor.exec(ALICE, &id, &["echo hi > f; cat f"]).await;
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].stdout.as_str(), first[0].exit_code), ("hi\n", Some(0)));

    let second = executor
        .exec(ALICE, &id, &["cat f", "echo oops >&2; exit 3", "pwd; id -u"])
        .await;
    assert_eq!(second.len(), 3, "a failing command does not stop the next");
    assert_eq!(second[0].stdout, "hi\n");
    assert_eq!(second[1].exit_code, Some(3));
    assert_eq!(second[1].stderr, "oops\n");
    assert_eq!(second[2].stdout, "/work\n65534\n");
    assert!(!second.iter().any(|r| r.timed_out));

    let code = r#"const fs = await import("node:fs"); return { f: fs.readFileSync("f", "utf8"), n: args.n + 1 };"#;
    let outcome = executor.run_js(ALICE, &id, code, r#"{"n":41}"#).await;
    assert_eq!(outcome.status(), RunStatus::Ok, "{outcome:?}");
    assert_eq!(outcome.result_json, r#"{"f":"hi\n","n":42}"#);
    let outcome = executor.run_js(ALICE, &id, "\n\nthrow new RangeError('x');", "").await;
    assert_eq!(outcome.status(), RunStatus::Threw);
    assert!(outcome.stderr.contains("(tool.mjs:3:"), "{}", outcome.stderr);

    let listed = |executor: &mut TestExecutor| {
        let mut client = executor.client.clone();
        async move {
            client
                .list_sessions(ListSessionsRequest { owner: ALICE.into() })
                .await
                .unwrap()
                .into_inner()
                .sessions
        }
    };
    let before = listed(&mut executor).await;
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].session_id, id);
    tokio::time::sleep(Duration::from_millis(20)).await;
    executor.exec(ALICE, &id, &["true"]).await;
    let after = listed(&mut executor).await;
    assert!(
        after[0].last_used_at > before[0].last_used_at,
        "lastUsedAt did not move: {} -> {}",
        before[0].last_used_at,
        after[0].last_used_at
    );
    assert_eq!(after[0].created_at, before[0].created_at);

    let container = executor.containers_of("session").await;
    assert_eq!(container.len(), 1);
    executor.stop_session(ALICE, &id).await.unwrap();
    assert!(listed(&mut executor).await.is_empty());
    assert!(
        executor.containers_of("session").await.is_empty(),
        "the container outlived its session"
    );
    let gone = executor
        .client
        .exec_in_session(exec_request(ALICE, &id, &["true"], None))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    executor.stop().await;
}

/// Call after call on one session, each answer is its own (how fast they come
/// is for benchmarks to say, not a test).
#[tokio::test]
async fn a_session_answers_call_after_call() {
    let (mut executor, id) = TestExecutor::with_session(&[], ALICE).await;
    for i in 0..7 {
        let exec = executor.exec(ALICE, &id, &[&format!("echo $(({i} * {i}))")]).await;
        assert_eq!(exec[0].exit_code, Some(0), "{exec:?}");
        assert_eq!(exec[0].stdout, format!("{}\n", i * i));
        let run = executor.run_js(ALICE, &id, &format!("return {i} * 3;"), "").await;
        assert_eq!(run.result_json, (i * 3).to_string());
    }
    executor.stop().await;
}

#[tokio::test]
async fn a_session_joins_only_the_network_the_operator_names() {
    let (mut executor, id) = TestExecutor::with_session(&[("MCP_SANDBOX_SESSION_NETWORK", "bridge")], ALICE).await;
    let interfaces = executor.exec(ALICE, &id, &["ls /sys/class/net"]).await;
    assert!(interfaces[0].stdout.contains("eth0"), "{:?}", interfaces[0]);
    // Tool runs stay offline whatever sessions get.
    let ran = executor
        .run(
            "return Object.keys((await import('node:os')).networkInterfaces());",
            "{}",
            None,
        )
        .await;
    assert_eq!(ran.outcome.result_json, r#"["lo"]"#);
    executor.stop().await;
}

#[tokio::test]
async fn another_owner_can_neither_see_nor_use_nor_stop_a_session() {
    let (mut executor, id) = TestExecutor::with_session(&[], ALICE).await;
    let mut client = executor.client.clone();

    let listed = client
        .list_sessions(ListSessionsRequest { owner: MALLORY.into() })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.sessions.is_empty());
    let expected = format!("no session '{id}' for this caller");
    let exec = client
        .exec_in_session(exec_request(MALLORY, &id, &["id"], None))
        .await
        .unwrap_err();
    let run_js = client
        .run_js_in_session(support::run_js_request(MALLORY, &id, "return 1;"))
        .await
        .unwrap_err();
    let stop = executor.stop_session(MALLORY, &id).await.unwrap_err();
    for status in [exec, run_js, stop] {
        assert_eq!((status.code(), status.message()), (Code::NotFound, expected.as_str()));
    }
    // Exactly what a session that does not exist looks like.
    let unknown = client
        .exec_in_session(exec_request(ALICE, "no-such-session", &["id"], None))
        .await
        .unwrap_err();
    assert_eq!(
        (unknown.code(), unknown.message()),
        (Code::NotFound, "no session 'no-such-session' for this caller")
    );
    let no_owner = client
        .list_sessions(ListSessionsRequest { owner: String::new() })
        .await
        .unwrap_err();
    assert_eq!(no_owner.code(), Code::InvalidArgument);

    let still_there = executor.exec(ALICE, &id, &["echo mine"]).await;
    assert_eq!(still_there[0].stdout, "mine\n");
    executor.stop().await;
}

#[tokio::test]
async fn the_session_limit_is_reserved_before_any_container_starts() {
    let mut executor = TestExecutor::start(&[("MCP_SANDBOX_MAX_SESSIONS", "2")]).await;
    let creations = executor.count_creations();
    let starts = (0..6).map(|i| {
        let mut client = executor.client.clone();
        async move {
            client
                .start_session(StartSessionRequest {
                    owner: format!("user:{i}"),
                    ..Default::default()
                })
                .await
        }
    });
    let results = futures::future::join_all(starts).await;
    let started = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(started, 2, "{results:?}");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert!(
            refused.message().contains("MCP_SANDBOX_MAX_SESSIONS") && refused.message().contains("sandbox.stop"),
            "{}",
            refused.message()
        );
    }
    assert_eq!(creations.of("session").await, 2, "a refused start created a container");
    assert_eq!(executor.containers_of("session").await.len(), 2);

    // Stopping one frees its place.
    let (owner, first) = results
        .iter()
        .enumerate()
        .find_map(|(i, r)| r.as_ref().ok().map(|s| (format!("user:{i}"), s.get_ref().clone())))
        .unwrap();
    executor
        .stop_session(&owner, &first.session.unwrap().session_id)
        .await
        .unwrap();
    executor.start_session("user:late").await;
    executor.stop().await;
}

#[tokio::test]
async fn idle_sessions_expire_but_busy_ones_do_not() {
    let mut executor = TestExecutor::start(&[("MCP_SANDBOX_SESSION_TIMEOUT_SECONDS", "2")]).await;
    let idle = executor.start_session(ALICE).await.session_id;
    let busy = executor.start_session(ALICE).await.session_id;
    let began = Instant::now();
    // Busy for longer than the idle timeout: a running call keeps it alive.
    let slept = executor.exec(ALICE, &busy, &["sleep 3; echo done"]).await;
    assert_eq!(slept[0].stdout, "done\n");

    let listed = executor.sessions_of(ALICE).await;
    let ids: Vec<&str> = listed.iter().map(|s| s.session_id.as_str()).collect();
    assert_eq!(ids, [busy.as_str()], "after {:?}", began.elapsed());
    let expired = executor
        .client
        .exec_in_session(exec_request(ALICE, &idle, &["true"], None))
        .await
        .unwrap_err();
    assert_eq!(expired.code(), Code::NotFound);

    let docker = executor.docker.clone();
    let id = executor.id.clone();
    let all_gone = wait_for(Duration::from_secs(6), || {
        let docker = docker.clone();
        let id = id.clone();
        async move {
            let left = support::labelled_containers(&docker, &id).await;
            left.iter().all(|c| support::role_of(c) != Some("session"))
        }
    })
    .await;
    assert!(all_gone, "expired sessions left containers behind");
    executor.stop().await;
}

#[tokio::test]
async fn a_timeout_kills_the_command_and_its_children_and_the_session_survives() {
    let (mut executor, id) = TestExecutor::with_session(&[], ALICE).await;
    let began = Instant::now();
    let response = executor
        .client
        .exec_in_session(exec_request(
            ALICE,
            &id,
            &["echo before", "sleep 41 & sleep 42; echo never", "echo skipped"],
            Some(1500),
        ))
        .await
        .unwrap()
        .into_inner();
    let wall = began.elapsed();
    assert!(wall < Duration::from_secs(5), "took {wall:?}");
    assert_eq!(response.results.len(), 2);
    assert_eq!(response.skipped, 1);
    assert_eq!(response.results[0].stdout, "before\n");
    let killed = &response.results[1];
    assert!(killed.timed_out && killed.exit_code.is_none(), "{killed:?}");
    assert_eq!(killed.stdout, "");
    assert_eq!(processes_like(&mut executor, &id, "sleep 4[12]").await, 0);

    let outcome = executor
        .client
        .run_js_in_session(RunJsInSessionRequest {
            owner: ALICE.into(),
            session_id: id.clone(),
            code: "while (true) {}".into(),
            timeout_ms: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let outcome = support::follow(outcome).await.outcome;
    assert_eq!(outcome.status(), RunStatus::TimedOut, "{outcome:?}");
    assert_eq!(processes_like(&mut executor, &id, "input-type=modul[e]").await, 0);

    let alive = executor.exec(ALICE, &id, &["echo alive"]).await;
    assert_eq!(alive[0].stdout, "alive\n");
    executor.stop().await;
}

#[tokio::test]
async fn dropping_an_exec_call_kills_its_process() {
    let (mut executor, id) = TestExecutor::with_session(&[], ALICE).await;
    let mut client = executor.client.clone();
    let call = client.exec_in_session(exec_request(ALICE, &id, &["sleep 45"], Some(60_000)));
    assert!(
        tokio::time::timeout(Duration::from_secs(1), call).await.is_err(),
        "the call should still be running"
    );
    let mut remaining = usize::MAX;
    for _ in 0..50 {
        remaining = processes_like(&mut executor, &id, "sleep 4[5]").await;
        if remaining == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(remaining, 0, "the abandoned command kept running");
    executor.stop().await;
}

#[tokio::test]
async fn a_session_is_hardened_like_a_run() {
    let (mut executor, id) = TestExecutor::with_session(&[], ALICE).await;
    let container = executor.containers_of("session").await.remove(0);
    let inspected = executor
        .docker
        .inspect_container(container.id.as_deref().unwrap(), None::<InspectContainerOptions>)
        .await
        .unwrap();
    let host = inspected.host_config.unwrap();
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    assert_eq!(host.pids_limit, Some(128));
    let labels = inspected.config.unwrap().labels.unwrap();
    assert_eq!(labels["dynamic-mcp.session"], id);
    assert_eq!(labels["dynamic-mcp.owner"].len(), 64, "the owner is hashed");
    assert!(!labels.values().any(|v| v.contains("alice")));
    let deps = inspected.mounts.unwrap();
    assert!(
        deps.iter()
            .any(|m| m.destination.as_deref() == Some("/deps") && m.rw == Some(false)),
        "{deps:?}"
    );

    let seen = executor
        .exec(
            ALICE,
            &id,
            &[
                "touch /x 2>&1 || true",
                "ls /sys/class/net",
                "touch /deps/x 2>&1 || true",
                "grep CapEff /proc/self/status",
            ],
        )
        .await;
    assert!(seen[0].stdout.contains("Read-only file system"), "{:?}", seen[0]);
    assert_eq!(seen[1].stdout, "lo\n");
    assert!(seen[2].stdout.contains("Read-only file system"), "{:?}", seen[2]);
    assert!(seen[3].stdout.contains("0000000000000000"), "{:?}", seen[3]);
    executor.stop().await;
}

#[tokio::test]
async fn a_restarted_executor_reaps_the_sessions_of_its_crashed_self() {
    let mut crashed = TestExecutor::start(&[]).await;
    let id = crashed.id.clone();
    crashed.start_session(ALICE).await;
    let docker = crashed.docker.clone();
    crashed.crash().await;
    let sessions_of = |docker: bollard::Docker, id: String| async move {
        support::labelled_containers(&docker, &id)
            .await
            .into_iter()
            .filter(|c| support::role_of(c) == Some("session"))
            .count()
    };
    assert_eq!(sessions_of(docker.clone(), id.clone()).await, 1);

    let mut restarted = TestExecutor::start_as(&id, &[]).await;
    assert!(
        restarted.containers_of("session").await.is_empty(),
        "the stale session survived"
    );
    let listed = restarted
        .client
        .list_sessions(ListSessionsRequest { owner: ALICE.into() })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.sessions.is_empty());
    restarted.stop().await;
}

#[tokio::test]
async fn shutdown_removes_open_sessions() {
    let mut executor = TestExecutor::start(&[]).await;
    executor.start_session(ALICE).await;
    executor.start_session(MALLORY).await;
    assert_eq!(executor.containers_of("session").await.len(), 2);
    // `stop` asserts that nothing is left after a graceful shutdown.
    executor.stop().await;
}

#[tokio::test]
async fn stopping_a_session_ends_the_calls_running_in_it() {
    let (mut executor, id) = TestExecutor::with_session(&[], ALICE).await;
    let mut client = executor.client.clone();
    let running = tokio::spawn({
        let id = id.clone();
        async move {
            client
                .exec_in_session(exec_request(ALICE, &id, &["sleep 30"], Some(60_000)))
                .await
        }
    });
    // Until the command runs in the session (`3[0]`: not this grep itself).
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_like(&mut executor, &id, "sleep 3[0]").await == 0 {
        assert!(Instant::now() < deadline, "`sleep 30` never started in the session");
    }
    let began = Instant::now();
    executor.stop_session(ALICE, &id).await.unwrap();
    let ended = running.await.unwrap().unwrap_err();
    assert!(began.elapsed() < Duration::from_secs(5), "took {:?}", began.elapsed());
    assert_eq!(ended.code(), Code::NotFound, "{}", ended.message());
    assert!(ended.message().contains("has ended"), "{}", ended.message());
    executor.stop().await;
}

#[tokio::test]
async fn sessions_count_against_the_container_cap() {
    let mut executor = TestExecutor::start(&[("MCP_EXECUTOR_MAX_CONTAINERS", "1")]).await;
    executor.start_session(ALICE).await;
    let mut run = executor
        .client
        .run_tool(support::request("return 1;", "{}", None))
        .await
        .unwrap()
        .into_inner();
    let busy = run.message().await.unwrap_err();
    assert_eq!(busy.code(), Code::ResourceExhausted);
    assert!(busy.message().starts_with("executor busy"), "{}", busy.message());
    let second = executor
        .client
        .start_session(StartSessionRequest {
            owner: MALLORY.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(second.code(), Code::ResourceExhausted);
    executor.stop().await;
}

#[tokio::test]
async fn a_call_right_after_the_session_died_says_it_has_ended() {
    let docker = support::docker().await;
    let mut executor = TestExecutor::start(&[]).await;
    // The session's init is root's, out of the code's reach, so the session
    // dies from outside; the next command starts while Docker may still
    // count the container as running.
    let kill_session = |id: String| {
        let docker = docker.clone();
        async move {
            docker
                .kill_container(&id, None::<bollard::query_parameters::KillContainerOptions>)
                .await
                .expect("the session's container is killed");
        }
    };
    for round in 0..3 {
        let id = executor.start_session(ALICE).await.session_id;
        let container = executor.containers_of("session").await.remove(0).id.unwrap();
        kill_session(container).await;
        let began = Instant::now();
        let answer = executor
            .client
            .exec_in_session(exec_request(ALICE, &id, &["echo still here"], None))
            .await;
        let ended = match answer {
            Err(status) => status,
            Ok(response) => panic!("round {round}: the dead session answered {:?}", response.into_inner()),
        };
        assert_eq!(ended.code(), Code::NotFound, "{}", ended.message());
        assert!(ended.message().contains("has ended"), "{}", ended.message());
        assert!(began.elapsed() < Duration::from_secs(10), "took {:?}", began.elapsed());
        let listed = executor.sessions_of(ALICE).await;
        assert!(
            listed.is_empty(),
            "round {round}: a dead session is still listed: {listed:?}"
        );
        assert!(
            wait_for(Duration::from_secs(10), || async {
                executor.containers_of("session").await.is_empty()
            })
            .await,
            "round {round}: a dead session's container was left behind"
        );
    }
    // JavaScript right after the death.
    let id = executor.start_session(ALICE).await.session_id;
    let container = executor.containers_of("session").await.remove(0).id.unwrap();
    kill_session(container).await;
    let answer = executor
        .client
        .run_js_in_session(support::run_js_request(ALICE, &id, "return 1;"))
        .await;
    let js = match answer {
        Err(status) => status,
        Ok(stream) => support::follow_to_error(stream.into_inner()).await,
    };
    assert_eq!(js.code(), Code::NotFound, "{}", js.message());
    assert!(js.message().contains("has ended"), "{}", js.message());
    assert!(
        wait_for(Duration::from_secs(10), || async {
            executor.containers_of("session").await.is_empty()
        })
        .await,
        "a dead session's container was left behind"
    );
    executor.stop().await;
}

#[tokio::test]
async fn run_js_in_a_session_reports_progress_and_returns_content() {
    let (mut executor, id) = TestExecutor::with_session(&[], ALICE).await;
    let session_container = executor.containers_of("session").await.remove(0).id.unwrap();
    let followed = executor
        .run_js_request(RunJsInSessionRequest {
            owner: ALICE.into(),
            session_id: id.clone(),
            code: "await progress(1, 3); await progress(3, 3, 'done'); return mcp.text('from the session');".into(),
            report_progress: true,
            ..Default::default()
        })
        .await;
    assert_eq!(followed.outcome.status(), RunStatus::Ok, "{:?}", followed.outcome);
    assert_eq!(followed.started.map(|s| s.container_id), Some(session_container));
    let values: Vec<f64> = followed.progress.iter().map(|p| p.progress).collect();
    assert_eq!(values, [1.0, 3.0]);
    assert_eq!(followed.outcome.content.map(|c| c.blocks.len()), Some(1));
    // Neither process of the call is left behind.
    assert_eq!(processes_like(&mut executor, &id, "input-type=modul[e]").await, 0);
    executor.stop().await;
}
