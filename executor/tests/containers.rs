//! The containers themselves: hardened as promised (seen by Docker and from
//! inside), removed when the caller goes away, and reaped at start.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, RemoveContainerOptionsBuilder,
};
use dynamic_mcp_proto::v1::{RunStatus, run_event};
use support::{IMAGE, SLEEP_A_MINUTE, TestExecutor, removed_within, request, start_run, unique_id};

/// A cold start: only a container made for one run carries its tool's label.
const POOL_OFF: (&str, &str) = ("MCP_EXECUTOR_WARM_POOL_SIZE", "0");

#[tokio::test]
async fn docker_inspect_shows_every_hardening_setting() {
    let executor = TestExecutor::start(&[POOL_OFF]).await;
    let (mut stream, started) = start_run(
        &executor.client,
        request(
            "await new Promise((r) => setTimeout(r, 3000)); return 'code-4f1d';",
            "{}",
            None,
        ),
    )
    .await;

    let labelled = executor.containers().await;
    assert_eq!(labelled.len(), 1);
    assert_eq!(labelled[0].id.as_deref(), Some(started.container_id.as_str()));
    let (host, config) = executor.inspect(&started.container_id).await;
    support::assert_run_profile(&host);
    assert_eq!(host.nano_cpus, Some(1_000_000_000));
    assert_eq!(host.ipc_mode.as_deref(), Some("none"));
    assert_eq!(host.log_config.and_then(|l| l.typ).as_deref(), Some("none"));
    let tmpfs = host.tmpfs.unwrap();
    assert!(
        tmpfs["/tmp"].contains("noexec") && tmpfs["/tmp"].contains("nosuid"),
        "{tmpfs:?}"
    );
    assert!(tmpfs["/work"].contains("noexec"), "{tmpfs:?}");
    // Root only to start the supervisor, which drops to 65534 (see below).
    assert_eq!(config.user.as_deref(), Some("0:0"));
    assert_eq!(config.network_disabled, Some(true));
    assert_eq!(config.working_dir.as_deref(), Some("/work"));
    let labels = config.labels.unwrap();
    assert_eq!(labels["dynamic-mcp.role"], "run");
    assert_eq!(labels["dynamic-mcp.tool"], "test.tool");
    // Code and args travel over stdin only.
    let visible = format!("{:?} {:?}", config.env, config.cmd);
    assert!(
        !visible.contains("code-4f1d"),
        "code is visible in docker inspect: {visible}"
    );

    let finished = stream.message().await.unwrap().and_then(|e| e.event);
    assert!(matches!(finished, Some(run_event::Event::Finished(ref o)) if o.status() == RunStatus::Ok));
    executor.stop().await;
}

#[tokio::test]
async fn the_sandbox_is_locked_down_from_the_inside() {
    let mut executor = TestExecutor::start(&[]).await;
    let code = r##"
        const fs = await import("node:fs");
        const os = await import("node:os");
        const { execFileSync } = await import("node:child_process");
        const attempt = (f) => { try { f(); return "allowed"; } catch (e) { return e.code || e.message; } };
        const status = fs.readFileSync("/proc/self/status", "utf8");
        fs.writeFileSync("/tmp/run.sh", "#!/bin/sh\necho hi\n", { mode: 0o755 });
        return {
            uid: process.getuid(),
            gid: process.getgid(),
            cwd: process.cwd(),
            writeRoot: attempt(() => fs.writeFileSync("/x", "1")),
            writeWork: attempt(() => fs.writeFileSync("/work/x", "1")),
            execTmp: attempt(() => execFileSync("/tmp/run.sh")),
            capEff: /CapEff:\s*(\w+)/.exec(status)[1],
            capPrm: /CapPrm:\s*(\w+)/.exec(status)[1],
            capBnd: /CapBnd:\s*(\w+)/.exec(status)[1],
            noNewPrivs: /NoNewPrivs:\s*(\d)/.exec(status)[1],
            // Every process in the container: [pid, uid, CapEff].
            processes: fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p)).map((pid) => {
                const s = fs.readFileSync(`/proc/${pid}/status`, "utf8");
                return [Number(pid), Number(/Uid:\s*(\d+)/.exec(s)[1]), /CapEff:\s*(\w+)/.exec(s)[1]];
            }),
            supervisorMemory: attempt(() => fs.openSync("/proc/1/mem", "r")),
            interfaces: Object.keys(os.networkInterfaces()),
            env: Object.keys(process.env).sort(),
        };
    "##;
    let ran = executor.run(code, "{}", None).await;
    assert_eq!(ran.outcome.status(), RunStatus::Ok, "{:?}", ran.outcome);
    let seen: serde_json::Value = serde_json::from_str(&ran.outcome.result_json).unwrap();
    assert_eq!(seen["uid"], 65534);
    assert_eq!(seen["gid"], 65534);
    assert_eq!(seen["cwd"], "/work");
    assert_eq!(seen["writeRoot"], "EROFS");
    assert_eq!(seen["writeWork"], "allowed");
    assert_eq!(seen["execTmp"], "EACCES");
    assert_eq!(seen["capEff"], "0000000000000000");
    assert_eq!(seen["capPrm"], "0000000000000000");
    // SETUID and SETGID stay in the bounding set, for the supervisor; with
    // no-new-privileges and no setuid file nothing can raise them again.
    assert_eq!(seen["capBnd"], "00000000000000c0");
    assert_eq!(seen["noNewPrivs"], "1");
    let processes = seen["processes"].as_array().unwrap();
    assert!(
        processes.iter().all(|p| p[1] == 65534 && p[2] == "0000000000000000"),
        "a process in the run container is root or holds capabilities: {processes:?}"
    );
    assert!(
        processes.iter().any(|p| p[0] == 1),
        "PID 1 is the supervisor: {processes:?}"
    );
    assert_eq!(seen["supervisorMemory"], "EACCES", "the supervisor is not dumpable");
    assert_eq!(seen["interfaces"], serde_json::json!(["lo"]));
    let env = seen["env"].as_array().unwrap();
    assert!(
        env.iter()
            .all(|k| ["HOSTNAME", "PATH", "HOME"].contains(&k.as_str().unwrap())),
        "unexpected environment: {env:?}"
    );
    executor.stop().await;
}

#[tokio::test]
async fn dropping_the_stream_removes_the_container() {
    let executor = TestExecutor::start(&[]).await;
    let (stream, started) = start_run(&executor.client, request(SLEEP_A_MINUTE, "{}", Some(60_000))).await;
    let ours = executor.containers_of("run").await;
    assert!(
        ours.iter()
            .any(|c| c.id.as_deref() == Some(started.container_id.as_str())),
        "{ours:?}"
    );
    drop(stream);

    let gone = removed_within(&executor.docker, &started.container_id, Duration::from_secs(5)).await;
    assert!(gone, "the container outlived its cancelled run by 5 s");
    executor.stop().await;
}

#[tokio::test]
async fn leftovers_are_reaped_at_start_but_not_other_executors_containers() {
    let docker = support::docker().await;
    let id = unique_id();
    let other_id = unique_id();
    let create = |owner: &str| {
        let docker = docker.clone();
        let body = ContainerCreateBody {
            image: Some(IMAGE.into()),
            cmd: Some(vec!["sleep".into(), "300".into()]),
            network_disabled: Some(true),
            labels: Some(HashMap::from([
                ("dynamic-mcp.managed".to_owned(), "true".to_owned()),
                ("dynamic-mcp.executor".to_owned(), owner.to_owned()),
                ("dynamic-mcp.role".to_owned(), "run".to_owned()),
            ])),
            ..Default::default()
        };
        let name = format!("dynamic-mcp-stale-{owner}");
        async move {
            let options = CreateContainerOptionsBuilder::default().name(&name).build();
            let created = docker.create_container(Some(options), body).await.unwrap();
            docker.start_container(&created.id, None).await.unwrap();
            created.id
        }
    };
    let stale = create(&id).await;
    let foreign = create(&other_id).await;

    let executor = TestExecutor::start_as(&id, &[]).await;
    let inspect = |container: String| {
        let docker = docker.clone();
        async move {
            docker
                .inspect_container(&container, None::<InspectContainerOptions>)
                .await
        }
    };
    assert!(inspect(stale).await.is_err(), "our stale container survived the start");
    assert!(
        inspect(foreign.clone()).await.is_ok(),
        "another executor's container was removed"
    );
    executor.stop().await;

    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    docker.remove_container(&foreign, Some(options)).await.unwrap();
}
