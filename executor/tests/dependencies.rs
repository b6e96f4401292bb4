//! npm dependencies through the real binary, Docker and the npm registry:
//! policy refusals, one real install per set (single-flighted, cached,
//! never half-done), and runs that import the packages with no network and
//! a read-only cache. Each test has its own cache volume, so each installs
//! for real.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{
    InspectContainerOptions, ListVolumesOptionsBuilder, RemoveVolumeOptions, RemoveVolumeOptionsBuilder,
};
use dynamic_mcp_proto::v1::{
    Dependency, PrepareToolRequest, RunJsInSessionRequest, RunStatus, StartSessionRequest, run_event,
};
use support::{TestExecutor, request, start_run, wait_for};
use tonic::Code;

const IS_NUMBER: &str = "const { default: isNumber } = await import('is-number'); return isNumber(args.x);";

fn dependency(name: &str, version: &str) -> Dependency {
    Dependency {
        name: name.into(),
        version: version.into(),
    }
}

fn prepare(dependencies: Vec<Dependency>) -> PrepareToolRequest {
    PrepareToolRequest {
        dependencies,
        ..Default::default()
    }
}

/// Labels the cache volumes these tests make, with their creation time.
const TEST_VOLUME_LABEL: &str = "dynamic-mcp.test-volume-created";

/// An executor with its own, fresh cache volume (removed by `finish`, or by
/// a later test run if this one panics first).
async fn executor_with_cache(extra: &[(&str, &str)]) -> (TestExecutor, String) {
    let docker = support::docker().await;
    remove_stale_test_volumes(&docker).await;
    let volume = format!("dynamic-mcp-deps-{}", support::unique_id());
    let request = VolumeCreateRequest {
        name: Some(volume.clone()),
        labels: Some(HashMap::from([(TEST_VOLUME_LABEL.to_owned(), unix_now().to_string())])),
        ..Default::default()
    };
    docker.create_volume(request).await.expect("a test cache volume");
    let mut env = support::install_env();
    env.push(("MCP_SANDBOX_DEPS_VOLUME", volume.as_str()));
    env.extend_from_slice(extra);
    let executor = TestExecutor::start(&env).await;
    (executor, volume)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Test cache volumes over an hour old belong to runs that panicked.
async fn remove_stale_test_volumes(docker: &bollard::Docker) {
    let filters = HashMap::from([("label", vec![TEST_VOLUME_LABEL.to_owned()])]);
    let options = ListVolumesOptionsBuilder::default().filters(&filters).build();
    let Ok(listed) = docker.list_volumes(Some(options)).await else {
        return;
    };
    for volume in listed.volumes.unwrap_or_default() {
        let created: u64 = volume
            .labels
            .get(TEST_VOLUME_LABEL)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        if created + 3600 < unix_now() {
            let _ = docker.remove_volume(&volume.name, None::<RemoveVolumeOptions>).await;
        }
    }
}

async fn finish(executor: TestExecutor, volume: &str) {
    let docker = executor.docker.clone();
    executor.stop().await;
    let options = RemoveVolumeOptionsBuilder::default().force(true).build();
    docker
        .remove_volume(volume, Some(options))
        .await
        .expect("the test cache volume can be removed");
}

/// What the cache volume holds, as seen from a session (which mounts it).
async fn cache_listing(executor: &mut TestExecutor) -> String {
    let session = executor.start_session("user:inspector").await.session_id;
    let listing = executor.exec("user:inspector", &session, &["ls -a /deps"]).await;
    listing[0].stdout.clone()
}

#[tokio::test]
async fn a_dependency_is_installed_once_and_imported_by_tools_and_sessions() {
    let (mut executor, volume) = executor_with_cache(&[]).await;
    let deps = vec![dependency("is-number", "^7.0.0")];

    let began = Instant::now();
    let first = executor
        .client
        .prepare_tool(prepare(deps.clone()))
        .await
        .unwrap()
        .into_inner();
    let install_wall = began.elapsed();
    let setup = first.dependency_setup.expect("a setup is reported");
    assert!(!setup.cached, "a fresh cache cannot have it");

    let creations = executor.count_creations();
    let began = Instant::now();
    let second = executor
        .client
        .prepare_tool(prepare(deps.clone()))
        .await
        .unwrap()
        .into_inner();
    let cached_wall = began.elapsed();
    assert!(second.dependency_setup.unwrap().cached);
    assert!(
        cached_wall < Duration::from_millis(500),
        "a cached prepare took {cached_wall:?}"
    );
    assert_eq!(creations.of("install").await, 0, "a cached prepare started an install");

    // A tool run imports it, without network and with the cache read-only.
    let mut run = request(
        "await new Promise((r) => setTimeout(r, 500)); \
         const fs = await import('node:fs'); const os = await import('node:os'); \
         const { default: isNumber } = await import('is-number'); \
         let write; try { fs.writeFileSync(new URL(import.meta.resolve('is-number')).pathname, ''); write = 'allowed'; } \
         catch (e) { write = e.code; } \
         return { five: isNumber(args.x), word: isNumber('abc'), write, \
                  interfaces: Object.keys(os.networkInterfaces()), ca: 'NODE_EXTRA_CA_CERTS' in process.env };",
        r#"{"x":5}"#,
        None,
    );
    run.dependencies = deps.clone();
    let (mut stream, started) = start_run(&executor.client, run).await;
    let inspected = executor
        .docker
        .inspect_container(&started.container_id, None::<InspectContainerOptions>)
        .await
        .unwrap();
    assert_eq!(inspected.host_config.unwrap().network_mode.as_deref(), Some("none"));
    let mounts = inspected.mounts.unwrap();
    let cache = mounts
        .iter()
        .find(|m| m.destination.as_deref() == Some("/deps"))
        .expect("the cache is mounted");
    assert_eq!((cache.name.as_deref(), cache.rw), (Some(volume.as_str()), Some(false)));
    let Some(run_event::Event::Finished(outcome)) = stream.message().await.unwrap().and_then(|e| e.event) else {
        panic!("then `finished`");
    };
    assert_eq!(outcome.status(), RunStatus::Ok, "{outcome:?}");
    let seen: serde_json::Value = serde_json::from_str(&outcome.result_json).unwrap();
    assert_eq!(
        seen,
        serde_json::json!({"five": true, "word": false, "write": "EROFS", "interfaces": ["lo"], "ca": false})
    );

    // And so does run_js in a session started before or after the install.
    let session = executor.start_session("user:alice").await.session_id;
    let outcome = executor
        .client
        .run_js_in_session(RunJsInSessionRequest {
            owner: "user:alice".into(),
            session_id: session,
            code: IS_NUMBER.into(),
            args_json: r#"{"x":"12"}"#.into(),
            dependencies: deps,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let outcome = support::follow(outcome).await.outcome;
    assert_eq!(
        (outcome.status(), outcome.result_json.as_str()),
        (RunStatus::Ok, "true")
    );
    assert_eq!(creations.of("install").await, 0, "runs reused the cached set");
    eprintln!("npm install of is-number (PrepareTool, cold): {install_wall:?}; cached PrepareTool: {cached_wall:?}");
    finish(executor, &volume).await;
}

#[tokio::test]
async fn concurrent_prepares_of_one_set_install_it_once() {
    let (executor, volume) = executor_with_cache(&[]).await;
    let creations = executor.count_creations();
    let deps = vec![dependency("is-number", "7.0.0")];
    let prepares = (0..3).map(|_| {
        let mut client = executor.client.clone();
        let deps = deps.clone();
        async move { client.prepare_tool(prepare(deps)).await }
    });
    let results = futures::future::join_all(prepares).await;
    let cached: Vec<bool> = results
        .into_iter()
        .map(|r| {
            r.expect("every prepare succeeds")
                .into_inner()
                .dependency_setup
                .unwrap()
                .cached
        })
        .collect();
    assert_eq!(cached.iter().filter(|c| !**c).count(), 1, "{cached:?}");
    assert_eq!(creations.of("install").await, 1, "the set was installed more than once");
    finish(executor, &volume).await;
}

#[tokio::test]
async fn a_failed_install_is_reported_and_leaves_nothing_behind() {
    let (mut executor, volume) = executor_with_cache(&[]).await;
    let status = executor
        .client
        .prepare_tool(prepare(vec![dependency("is-number", "^99.0.0")]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let message = status.message();
    assert!(
        message.starts_with("installing the npm dependencies failed (npm exited with code 1):")
            && message.contains("is-number@^99.0.0")
            && !message.contains("complete log"),
        "{message}"
    );
    eprintln!("a failed install reads: {message}");
    let listing = cache_listing(&mut executor).await;
    assert_eq!(listing.split_whitespace().collect::<Vec<_>>(), [".", ".."], "{listing}");
    finish(executor, &volume).await;
}

#[tokio::test]
async fn a_cancelled_prepare_removes_its_install_container() {
    let (mut executor, volume) = executor_with_cache(&[]).await;
    let mut client = executor.client.clone();
    let call = tokio::spawn(async move { client.prepare_tool(prepare(vec![dependency("is-odd", "^3.0.1")])).await });
    let installing = wait_for(Duration::from_secs(20), || {
        let executor = &executor;
        async move { !executor.containers_of("install").await.is_empty() }
    })
    .await;
    assert!(installing, "no install container appeared");
    call.abort();
    let removed = wait_for(Duration::from_secs(5), || {
        let executor = &executor;
        async move { executor.containers_of("install").await.is_empty() }
    })
    .await;
    assert!(removed, "the install container outlived its cancelled call");
    let listing = cache_listing(&mut executor).await;
    assert!(
        !listing.split_whitespace().any(|e| e.len() == 64),
        "a cancelled install left a set: {listing}"
    );
    finish(executor, &volume).await;
}

#[tokio::test]
async fn blocked_packages_and_non_registry_versions_are_refused_before_any_container() {
    let mut executor = TestExecutor::start(&[]).await;
    let creations = executor.count_creations();
    for name in ["child_process", "NPM", "@evil/pm2", "node:child_process"] {
        let status = executor
            .client
            .prepare_tool(prepare(vec![dependency(name, "1.0.0")]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{name}");
        assert!(
            status.message().contains("is blocked by policy")
                && status.message().contains("MCP_SANDBOX_BLOCKED_PACKAGES"),
            "{name}: {}",
            status.message()
        );
    }
    for version in [
        "npm:foo@1",
        "git+https://github.com/a/b.git",
        "file:../x",
        "https://example.com/x-1.0.0.tgz",
        "latest",
    ] {
        let status = executor
            .client
            .prepare_tool(prepare(vec![dependency("lodash", version)]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{version}");
        assert!(
            status
                .message()
                .starts_with(&format!("dependency 'lodash' has version '{version}': "))
                && status
                    .message()
                    .ends_with("use a plain semver range such as ^1.2.3 or ~2.0"),
            "{}",
            status.message()
        );
    }
    let session = executor
        .client
        .start_session(StartSessionRequest {
            owner: "user:alice".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let status = executor
        .client
        .run_js_in_session(RunJsInSessionRequest {
            owner: "user:alice".into(),
            session_id: session.session_id,
            code: "return 1;".into(),
            dependencies: vec![dependency("pm2", "^5.0.0")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(creations.of("install").await, 0);
    executor.stop().await;
}

#[tokio::test]
async fn an_unreachable_registry_fails_fast_with_what_to_check() {
    // The container's own loopback: nothing listens there.
    let (mut executor, volume) = executor_with_cache(&[("MCP_SANDBOX_NPM_REGISTRY", "http://127.0.0.1:9/")]).await;
    let began = Instant::now();
    let refused = executor
        .client
        .prepare_tool(prepare(vec![dependency("is-number", "^7.0.0")]))
        .await
        .unwrap_err();
    let took = began.elapsed();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{}", refused.message());
    let message = refused.message();
    assert!(
        message.starts_with("the npm registry http://127.0.0.1:9/ cannot be reached from the install network 'bridge'"),
        "{message}"
    );
    assert!(message.contains("ECONNREFUSED"), "{message}");
    assert!(message.contains("MCP_SANDBOX_NPM_REGISTRY"), "{message}");
    assert!(!message.contains("    at "), "a stack trace in: {message}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // Nothing half-installed was kept.
    assert!(!cache_listing(&mut executor).await.contains(".partial"));
    finish(executor, &volume).await;
}
