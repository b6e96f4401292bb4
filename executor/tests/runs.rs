//! Every outcome a run can have, through the real binary, gRPC and Docker.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use std::time::Duration;

use dynamic_mcp_proto::v1::{Dependency, PrepareToolRequest, RunStatus};
use support::{SLEEP_A_MINUTE, TestExecutor, request};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

const UPPER: &str = "const { text } = args; return { upper: String(text).toUpperCase() };";

#[tokio::test]
async fn the_upper_case_example_returns_its_result() {
    let mut executor = TestExecutor::start(&[]).await;
    let mut walls = Vec::new();
    let mut containers = Vec::new();
    for _ in 0..5 {
        let ran = executor.run(UPPER, r#"{"text":"hello"}"#, None).await;
        assert_eq!(ran.outcome.status(), RunStatus::Ok, "{:?}", ran.outcome);
        assert_eq!(ran.outcome.result_json, r#"{"upper":"HELLO"}"#);
        assert_eq!(ran.outcome.exit_code, Some(0));
        assert_eq!(ran.outcome.timeout_ms, 30_000);
        assert!(!containers.contains(&ran.container_id), "a container was reused");
        containers.push(ran.container_id);
        walls.push(ran.wall);
    }
    walls.sort();
    eprintln!("median RunTool wall time (cold start): {:?}", walls[walls.len() / 2]);
    executor.stop().await;
}

#[tokio::test]
async fn health_follows_the_docker_engine() {
    let executor = TestExecutor::start(&[]).await;
    assert_eq!(
        support::serving_status(&executor.channel, support::SERVICE).await,
        ServingStatus::Serving
    );
    executor.stop().await;

    let no_docker = [("DOCKER_HOST", "unix:///nonexistent/docker.sock")];
    let support::Spawned {
        mut child,
        dir: _dir,
        channel,
        ..
    } = support::spawn(&support::unique_id(), &no_docker).await;
    assert_eq!(support::serving_status(&channel, "").await, ServingStatus::Serving);
    assert_eq!(
        support::serving_status(&channel, support::SERVICE).await,
        ServingStatus::NotServing
    );
    drop(child.stdin.take());
    assert!(child.wait().await.unwrap().success());
}

#[tokio::test]
async fn without_docker_runs_are_unavailable_but_policy_checks_work() {
    let no_docker = [("DOCKER_HOST", "unix:///nonexistent/docker.sock")];
    let support::Spawned {
        mut client,
        mut child,
        dir: _dir,
        ..
    } = support::spawn(&support::unique_id(), &no_docker).await;
    let prepared = client
        .prepare_tool(PrepareToolRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(prepared.image, support::IMAGE);
    let mut stream = client.run_tool(request(UPPER, "{}", None)).await.unwrap().into_inner();
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status
            .message()
            .starts_with("the executor cannot reach the Docker engine")
            && !status.message().contains("/nonexistent"),
        "{}",
        status.message()
    );
    drop(child.stdin.take());
    assert!(child.wait().await.unwrap().success());
}

#[tokio::test]
async fn a_thrown_error_keeps_its_message_and_name() {
    let mut executor = TestExecutor::start(&[]).await;
    let ran = executor
        .run(r#"throw new TypeError("bad input: " + args.n);"#, r#"{"n":7}"#, None)
        .await;
    assert_eq!(ran.outcome.status(), RunStatus::Threw, "{:?}", ran.outcome);
    assert_eq!(ran.outcome.error_message, "bad input: 7");
    assert_eq!(ran.outcome.error_name, "TypeError");
    // The wrapper shares the code's first line: line numbers are the code's own.
    assert!(
        ran.outcome.stderr.contains("at Module.run (tool.mjs:1:"),
        "{}",
        ran.outcome.stderr
    );
    let ran = executor.run("const a = 1;\n\nnull.boom;", "{}", None).await;
    assert_eq!(ran.outcome.error_name, "TypeError");
    assert!(ran.outcome.stderr.contains("(tool.mjs:3:"), "{}", ran.outcome.stderr);

    let ran = executor.run(r#"throw "plain string";"#, "{}", None).await;
    assert_eq!(ran.outcome.status(), RunStatus::Threw);
    assert_eq!(ran.outcome.error_message, "plain string");
    executor.stop().await;
}

#[tokio::test]
async fn a_syntax_error_is_reported_as_such() {
    let mut executor = TestExecutor::start(&[]).await;
    let ran = executor.run("return { a: ;", "{}", None).await;
    assert_eq!(ran.outcome.status(), RunStatus::SyntaxError, "{:?}", ran.outcome);
    assert!(!ran.outcome.error_message.is_empty());
    executor.stop().await;
}

#[tokio::test]
async fn a_result_that_is_not_json_is_a_bad_result() {
    let mut executor = TestExecutor::start(&[]).await;
    let ran = executor.run("return { big: 10n };", "{}", None).await;
    assert_eq!(ran.outcome.status(), RunStatus::BadResult, "{:?}", ran.outcome);
    assert!(
        ran.outcome
            .error_message
            .starts_with("the returned value is not JSON-serialisable: ")
            && ran.outcome.error_message.contains("BigInt"),
        "{}",
        ran.outcome.error_message
    );
    executor.stop().await;
}

#[tokio::test]
async fn a_result_over_the_frame_cap_is_too_large() {
    let mut executor = TestExecutor::start(&[("MCP_SANDBOX_MAX_OUTPUT_BYTES", "1000")]).await;
    let ran = executor.run(r#"return "x".repeat(10000);"#, "{}", None).await;
    assert_eq!(ran.outcome.status(), RunStatus::BadResult, "{:?}", ran.outcome);
    assert_eq!(ran.outcome.error_message, "result too large (over 4000 bytes)");
    executor.stop().await;
}

#[tokio::test]
async fn an_endless_loop_times_out_and_is_killed() {
    let mut executor = TestExecutor::start(&[]).await;
    let ran = executor.run("while (true) {}", "{}", Some(1000)).await;
    assert_eq!(ran.outcome.status(), RunStatus::TimedOut, "{:?}", ran.outcome);
    assert_eq!(ran.outcome.timeout_ms, 1000);
    assert!(ran.wall < Duration::from_secs(3), "took {:?}", ran.wall);
    executor.stop().await;
}

#[tokio::test]
async fn noise_and_a_megabyte_of_stdout_do_not_break_the_result() {
    let mut executor = TestExecutor::start(&[]).await;
    let code = r#"
        console.log("hello from the tool");
        console.error("a warning");
        process.stdout.write("x".repeat(1024 * 1024));
        console.log("\u001e not a frame \u001e");
        return { ok: true };
    "#;
    let ran = executor.run(code, "{}", None).await;
    let outcome = ran.outcome;
    assert_eq!(outcome.status(), RunStatus::Ok, "{}", outcome.error_message);
    assert_eq!(outcome.result_json, r#"{"ok":true}"#);
    assert!(outcome.stdout.starts_with("hello from the tool\nxxx"));
    assert_eq!(outcome.stdout.len(), 200_000);
    assert!(outcome.stdout_truncated);
    assert_eq!(outcome.stderr, "a warning\n");
    assert!(!outcome.stderr_truncated);
    executor.stop().await;
}

#[tokio::test]
async fn process_exit_before_returning_is_exited() {
    let mut executor = TestExecutor::start(&[]).await;
    let ran = executor.run("console.log('bye'); process.exit(3);", "{}", None).await;
    assert_eq!(ran.outcome.status(), RunStatus::Exited, "{:?}", ran.outcome);
    assert_eq!(ran.outcome.exit_code, Some(3));
    assert_eq!(
        ran.outcome.error_message,
        "the code exited with code 3 before returning a result"
    );
    assert_eq!(ran.outcome.stdout, "bye\n");
    executor.stop().await;
}

#[tokio::test]
async fn a_memory_balloon_hits_the_resource_limit() {
    let mut executor = TestExecutor::start(&[("MCP_SANDBOX_MEMORY_LIMIT", "128m")]).await;
    let ran = executor.run(support::MEMORY_BALLOON, "{}", Some(20_000)).await;
    support::assert_hit_the_memory_limit(&ran.outcome);
    executor.stop().await;
}

#[tokio::test]
async fn an_image_off_the_allow_list_is_refused() {
    let mut executor = TestExecutor::start(&[]).await;
    let mut run = request(UPPER, "{}", None);
    run.image = Some("node:20".into());
    let status = executor.client.run_tool(run).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("image 'node:20' is not allowed"),
        "{}",
        status.message()
    );
    executor.stop().await;
}

#[tokio::test]
async fn a_missing_image_names_the_build_script() {
    let images = "dynamic-mcp-sandbox:latest,dynamic-mcp-absent:never";
    let mut executor = TestExecutor::start(&[("MCP_SANDBOX_ALLOWED_IMAGES", images)]).await;
    let mut run = request(UPPER, "{}", None);
    run.image = Some("dynamic-mcp-absent:never".into());
    let mut stream = executor.client.run_tool(run).await.unwrap().into_inner();
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("sandbox/build-offline.sh"),
        "{}",
        status.message()
    );
    executor.stop().await;
}

#[tokio::test]
async fn prepare_tool_fills_defaults_and_enforces_dependency_policy() {
    let mut executor = TestExecutor::start(&[("MCP_SANDBOX_DEFAULT_TIMEOUT_MS", "5000")]).await;
    let prepared = executor
        .client
        .prepare_tool(PrepareToolRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!((prepared.image.as_str(), prepared.timeout_ms), (support::IMAGE, 5000));

    let with = |name: &str, version: &str| PrepareToolRequest {
        dependencies: vec![Dependency {
            name: name.into(),
            version: version.into(),
        }],
        ..Default::default()
    };
    let blocked = executor
        .client
        .prepare_tool(with("@x/Child_Process", "1.0.0"))
        .await
        .unwrap_err();
    assert_eq!(blocked.code(), Code::InvalidArgument);
    assert!(blocked.message().contains("blocked"), "{}", blocked.message());
    let alias = executor
        .client
        .prepare_tool(with("lodash", "npm:evil@1"))
        .await
        .unwrap_err();
    assert_eq!(alias.code(), Code::InvalidArgument);
    let too_long = PrepareToolRequest {
        timeout_ms: Some(500_000),
        ..Default::default()
    };
    let status = executor.client.prepare_tool(too_long).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("between 1000 and 120000"),
        "{}",
        status.message()
    );
    executor.stop().await;
}

#[tokio::test]
async fn past_the_container_cap_a_run_is_refused_at_once() {
    let mut executor = TestExecutor::start(&[("MCP_EXECUTOR_MAX_CONTAINERS", "1")]).await;
    let mut sleeping = executor
        .client
        .run_tool(request(SLEEP_A_MINUTE, "{}", Some(60_000)))
        .await
        .unwrap()
        .into_inner();
    sleeping.message().await.unwrap().expect("the first run starts");

    let began = std::time::Instant::now();
    let mut second = executor
        .client
        .run_tool(request(UPPER, "{}", None))
        .await
        .unwrap()
        .into_inner();
    let status = second.message().await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "executor busy: 1 containers already running (MCP_EXECUTOR_MAX_CONTAINERS); retry shortly"
    );
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "refused after {:?}",
        began.elapsed()
    );
    drop(sleeping);
    executor.stop().await;
}

#[tokio::test]
async fn progress_arrives_as_events_and_content_comes_back_checked() {
    let mut executor = TestExecutor::start(&[]).await;
    let code = r#"
        await progress(1, 2, "half");
        await new Promise((r) => setTimeout(r, 60));
        await progress(2, 2);
        return mcp.content(["a dot", mcp.image(Buffer.from([137, 80, 78, 71]), "image/png")]);
    "#;
    let mut run = request(code, "{}", None);
    run.report_progress = true;
    let ran = executor.run_request(run).await;
    assert_eq!(ran.outcome.status(), RunStatus::Ok, "{:?}", ran.outcome);
    let reports: Vec<_> = ran
        .progress
        .iter()
        .map(|p| (p.progress, p.total, p.message.clone()))
        .collect();
    assert_eq!(
        reports,
        [(1.0, Some(2.0), Some("half".to_owned())), (2.0, Some(2.0), None)]
    );
    let blocks = ran.outcome.content.expect("a content result").blocks;
    assert_eq!(blocks.len(), 2);
    assert_eq!(ran.outcome.result_json, "");

    // Without `report_progress` the same code sends no events.
    let ran = executor.run(code, "{}", None).await;
    assert!(ran.progress.is_empty(), "{:?}", ran.progress);
    executor.stop().await;
}
