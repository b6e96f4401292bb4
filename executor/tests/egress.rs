//! Controlled egress through the real binary, Docker and servers of the
//! test's own (no internet): allowed calls work from a tool and from a
//! session; forbidden hosts, IP literals, internal addresses, raw sockets
//! and DNS fail; one run cannot use another's credential; a tool without a
//! network list has none at all; secrets reach only their hosts and never
//! the container, `docker inspect` or the executor's log.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;
#[path = "support/egress_world.rs"]
mod world;

use std::time::Duration;

use dynamic_mcp_proto::v1::{
    EgressDecision, EgressEvent, EgressScheme, NetworkPolicy, PrepareToolRequest, RunJsInSessionRequest, RunStatus,
    RunToolRequest, StartSessionRequest, run_event,
};
use serde_json::{Value, json};
use support::{TestExecutor, exec_request};
use tonic::Code;
use world::{ALLOWED, FORBIDDEN, METADATA, OTHER, REBIND, World};

/// The executor settings of a test: the world's, plus `extra`.
fn settings(world: &World, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = world.executor_env();
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `network: {allow}`; none for an empty list.
fn network(allow: &[&str]) -> Option<NetworkPolicy> {
    (!allow.is_empty()).then(|| NetworkPolicy {
        allow: allow.iter().map(|h| (*h).to_owned()).collect(),
    })
}

fn egress_request(code: &str, args: Value, allow: &[&str], secrets: &[&str]) -> RunToolRequest {
    RunToolRequest {
        network: network(allow),
        secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
        ..support::request(code, &args.to_string(), Some(20_000))
    }
}

/// A session of "alice" that may reach `host`.
async fn session_reaching(executor: &mut TestExecutor, host: &str) -> dynamic_mcp_proto::v1::SessionInfo {
    executor
        .client
        .start_session(StartSessionRequest {
            owner: "alice".into(),
            network: network(&[host]),
            ..Default::default()
        })
        .await
        .expect("a session with network.allow starts")
        .into_inner()
        .session
        .expect("the session is described")
}

/// An executor with the world's settings and plain HTTP allowed.
async fn executor_for(world: &World) -> TestExecutor {
    let env = settings(world, &[("MCP_SANDBOX_EGRESS_ALLOW_PLAIN_HTTP", "true")]);
    TestExecutor::start(&as_refs(&env)).await
}

/// A world of test hosts and an executor that reaches them (plain HTTP on).
async fn world_and_executor() -> (bollard::Docker, World, TestExecutor) {
    let docker = support::docker().await;
    let world = World::start(&docker).await;
    let executor = executor_for(&world).await;
    (docker, world, executor)
}

fn result_of(outcome: &dynamic_mcp_proto::v1::RunOutcome) -> Value {
    assert_eq!(outcome.status(), RunStatus::Ok, "{outcome:?}");
    serde_json::from_str(&outcome.result_json).expect("the result is JSON")
}

fn find<'a>(events: &'a [EgressEvent], host: &str, port: u32) -> Vec<&'a EgressEvent> {
    events.iter().filter(|e| e.host == host && e.port == port).collect()
}

fn error_of(value: &Value) -> &str {
    value["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error, got {value}"))
}

/// Everything an attacker in a run or session tries: what gets through and
/// what fails, and why.
const PROBE: &str = r#"
const { ca, ip } = args;
const https = await import("node:https");
const net = await import("node:net");
const dns = await import("node:dns");
const dgram = await import("node:dgram");
const get = (url, options = {}) => new Promise((resolve) => {
  const request = https.get(url, { ca, ...options }, (response) => {
    let body = "";
    response.on("data", (chunk) => (body += chunk));
    response.on("end", () => resolve({ status: response.statusCode, body: JSON.parse(body) }));
  });
  request.on("error", (e) => resolve({ error: e.message, code: e.code }));
});
const attempt = async (f) => {
  try { return await f(); } catch (e) { return { error: e.message, code: e.code ?? e.cause?.code ?? null }; }
};
const out = {};
out.https = await get("https://api.allowed.test/hello");
out.fetchPlain = await attempt(async () => {
  const response = await fetch("http://api.allowed.test/plain?x=1");
  return { status: response.status, body: await response.json() };
});
out.forbidden = await attempt(() => fetch("https://evil.forbidden.test/"));
out.ipLiteral = await get(`https://${ip}/`);
out.rebind = await get("https://rebind.allowed.test/");
out.metadata = await attempt(() => fetch("http://metadata.allowed.test/latest/meta-data/"));
out.port = await get("https://api.allowed.test:8443/");
out.netConnect = await new Promise((resolve) => {
  const socket = net.connect({ host: ip, port: 443 });
  socket.on("connect", () => { socket.destroy(); resolve("connected"); });
  socket.on("error", (e) => resolve(e.code));
});
out.dns = await new Promise((resolve) => dns.lookup("api.allowed.test", (e, a) => resolve(e ? e.code : a)));
out.udp = await new Promise((resolve) => {
  const socket = dgram.createSocket("udp4");
  socket.send("x", 53, "8.8.8.8", (e) => { socket.close(); resolve(e ? e.code : "sent"); });
});
return out;
"#;

#[tokio::test]
async fn a_tool_reaches_its_hosts_and_nothing_else() {
    let (_, world, mut executor) = world_and_executor().await;

    let args = json!({"ca": world.ca_pem, "ip": world.allowed.ip});
    let ran = executor
        .run_request(egress_request(PROBE, args, &[ALLOWED, REBIND, METADATA], &[]))
        .await;
    let out = result_of(&ran.outcome);

    assert_eq!(out["https"]["status"], 200, "{out:#}");
    assert_eq!(out["https"]["body"]["host"], ALLOWED);
    assert_eq!(out["fetchPlain"]["status"], 200, "{out:#}");
    assert_eq!(out["fetchPlain"]["body"]["scheme"], "http");
    assert_eq!(out["fetchPlain"]["body"]["path"], "/plain?x=1");
    let forbidden = error_of(&out["forbidden"]);
    assert!(
        forbidden.contains("refused by policy")
            && forbidden.contains("evil.forbidden.test:443 is not in the network.allow of tool 'test.tool'"),
        "{forbidden}"
    );
    assert_eq!(out["forbidden"]["code"], "EGRESS_REFUSED");
    assert!(
        error_of(&out["ipLiteral"]).contains("connecting to an IP address is not allowed"),
        "{out:#}"
    );
    let rebind = error_of(&out["rebind"]);
    assert!(rebind.contains("127.0.0.1") && rebind.contains("loopback"), "{rebind}");
    assert!(error_of(&out["metadata"]).contains("link-local"), "{out:#}");
    assert!(
        error_of(&out["port"]).contains("api.allowed.test:8443 is not in the network.allow"),
        "{out:#}"
    );
    assert_eq!(out["netConnect"], "ENETUNREACH", "no route to anything: {out:#}");
    assert!(
        matches!(out["dns"].as_str(), Some("EAI_AGAIN" | "ENOTFOUND")),
        "no DNS: {out:#}"
    );
    assert_eq!(out["udp"], "ENETUNREACH", "{out:#}");

    // Every decision came back as an event, and only allowed requests arrived.
    let events = &ran.egress;
    let decided = |host: &str, port: u32| {
        find(events, host, port)
            .first()
            .map(|e| (e.decision(), e.reason.clone()))
    };
    assert_eq!(decided(ALLOWED, 443), Some((EgressDecision::Allowed, String::new())));
    assert_eq!(find(events, ALLOWED, 443)[0].scheme(), EgressScheme::Connect);
    assert_eq!(decided(ALLOWED, 80), Some((EgressDecision::Allowed, String::new())));
    assert_eq!(find(events, ALLOWED, 80)[0].scheme(), EgressScheme::Http);
    assert_eq!(
        decided(FORBIDDEN, 443),
        Some((EgressDecision::Refused, "host_not_allowed".into()))
    );
    assert_eq!(
        decided(&world.allowed.ip, 443),
        Some((EgressDecision::Refused, "ip_literal_not_allowed".into()))
    );
    assert_eq!(
        decided(REBIND, 443),
        Some((EgressDecision::Refused, "address_forbidden".into()))
    );
    assert_eq!(
        decided(METADATA, 80),
        Some((EgressDecision::Refused, "address_forbidden".into()))
    );
    assert_eq!(
        decided(ALLOWED, 8443),
        Some((EgressDecision::Refused, "host_not_allowed".into()))
    );
    assert!(events.iter().all(|e| !e.message.contains("Bearer")), "{events:?}");
    let paths: Vec<String> = world
        .received(&world.allowed)
        .await
        .iter()
        .map(|r| format!("{} {}", r["scheme"].as_str().unwrap(), r["path"].as_str().unwrap()))
        .collect();
    assert_eq!(paths, ["https /hello", "http /plain?x=1"]);
    assert!(world.received(&world.forbidden).await.is_empty());
    executor.stop().await;
}

#[tokio::test]
async fn policy_is_checked_before_anything_runs() {
    let docker = support::docker().await;
    let world = World::start(&docker).await;
    // Without the warm pool, so that any container start would be this test's.
    let env = settings(&world, &[("MCP_EXECUTOR_WARM_POOL_SIZE", "0")]);
    let mut executor = TestExecutor::start(&as_refs(&env)).await;
    let creations = executor.count_creations();

    let prepared = executor
        .client
        .prepare_tool(PrepareToolRequest {
            network: network(&["API.Allowed.Test", "api.allowed.test"]),
            ..Default::default()
        })
        .await
        .expect("an entry inside the ceiling is accepted")
        .into_inner();
    assert_eq!(prepared.network, network(&[ALLOWED]));

    for (allow, secrets, expected) in [
        (
            vec!["www.example.com"],
            vec![],
            "outside what this server allows (MCP_SANDBOX_EGRESS_ALLOWED_HOSTS",
        ),
        (vec!["10.0.0.1"], vec![], "MCP_SANDBOX_EGRESS_ALLOW_IP_LITERALS"),
        (vec!["https://api.allowed.test/"], vec![], "not a URL"),
        (vec![ALLOWED], vec!["API_KEY"], "MCP_SANDBOX_SECRETS_FILE is not set"),
    ] {
        let request = PrepareToolRequest {
            network: network(&allow),
            secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        };
        let status = executor.client.prepare_tool(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{allow:?}");
        assert!(status.message().contains(expected), "{allow:?}: {}", status.message());
        let run = egress_request("return 1;", json!({}), &allow, &secrets);
        let status = executor.client.run_tool(run).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "a run is refused at once: {allow:?}"
        );
    }
    let session = executor
        .client
        .start_session(StartSessionRequest {
            owner: "alice".into(),
            network: network(&[FORBIDDEN, "www.example.com"]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(session.code(), Code::InvalidArgument);
    assert!(
        session.message().contains("network.allow[1] 'www.example.com'"),
        "{}",
        session.message()
    );
    assert_eq!(
        creations.of("run").await + creations.of("session").await,
        0,
        "nothing started"
    );
    executor.stop().await;
}

#[tokio::test]
async fn a_tool_without_a_network_list_has_no_network_at_all() {
    let (docker, world, executor) = world_and_executor().await;
    const CODE: &str = r#"
const fs = await import("node:fs");
const os = await import("node:os");
const out = {};
out.egressDir = fs.existsSync("/run/dynamic-mcp-egress");
out.interfaces = Object.keys(os.networkInterfaces());
out.fetch = await fetch("http://api.allowed.test/").then(() => "reached", (e) => e.cause?.code ?? e.message);
out.env = Object.keys(process.env).filter((k) => /proxy|secret|egress/i.test(k));
await new Promise((r) => setTimeout(r, 1500));
return out;
"#;
    let (mut stream, started) = support::start_run(&executor.client, support::request(CODE, "{}", None)).await;
    let inspected = docker.inspect_container(&started.container_id, None).await.unwrap();
    let host = inspected.host_config.unwrap();
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    assert!(
        host.mounts
            .unwrap_or_default()
            .iter()
            .all(|m| m.target.as_deref() != Some("/run/dynamic-mcp-egress"))
    );
    let outcome = loop {
        match stream.message().await.unwrap().and_then(|e| e.event) {
            Some(run_event::Event::Finished(outcome)) => break outcome,
            Some(run_event::Event::Egress(event)) => panic!("a run without network.allow has no proxy: {event:?}"),
            Some(run_event::Event::Started(_) | run_event::Event::Progress(_)) => {}
            None => panic!("no outcome"),
        }
    };
    let out = result_of(&outcome);
    assert_eq!(out["egressDir"], false);
    assert_eq!(out["interfaces"], json!(["lo"]));
    assert!(
        matches!(out["fetch"].as_str(), Some("EAI_AGAIN" | "ENOTFOUND")),
        "{out:#}"
    );
    assert_eq!(out["env"], json!([]));
    assert!(world.received(&world.allowed).await.is_empty());
    executor.stop().await;
}

#[tokio::test]
async fn a_session_reaches_its_hosts_from_run_js_and_from_shell_commands() {
    let (_, world, mut executor) = world_and_executor().await;
    let session = session_reaching(&mut executor, ALLOWED).await;
    assert_eq!(session.network, network(&[ALLOWED]));

    let ran = executor
        .run_js_request(RunJsInSessionRequest {
            owner: "alice".into(),
            session_id: session.session_id.clone(),
            code: r#"const r = await fetch("http://api.allowed.test/from-run-js"); return (await r.json()).path;"#
                .into(),
            ..Default::default()
        })
        .await;
    assert_eq!(result_of(&ran.outcome), json!("/from-run-js"));
    assert!(
        ran.egress
            .iter()
            .any(|e| e.host == ALLOWED && e.decision() == EgressDecision::Allowed),
        "{:?}",
        ran.egress
    );

    let exec = executor
        .client
        .exec_in_session(exec_request(
            "alice",
            &session.session_id,
            &[
                r#"node -e 'fetch("http://api.allowed.test/from-exec").then(r => r.json()).then(j => console.log(j.path))'"#,
                r#"node -e 'fetch("http://evil.forbidden.test/").catch(e => console.log(e.message))'"#,
                "wget -q -T 3 -O - http://api.allowed.test/ 2>&1; echo exit=$?",
            ],
            Some(20_000),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exec.results[0].stdout.trim(), "/from-exec", "{:?}", exec.results[0]);
    assert!(
        exec.results[1]
            .stdout
            .contains("evil.forbidden.test:80 is not in the network.allow of this sandbox session"),
        "{:?}",
        exec.results[1]
    );
    assert!(
        !exec.results[2].stdout.contains("from") && !exec.results[2].stdout.contains("exit=0"),
        "a program that ignores the proxy gets nowhere: {:?}",
        exec.results[2]
    );
    let refused = exec
        .egress
        .iter()
        .find(|e| e.host == FORBIDDEN)
        .expect("the refusal is reported with the call");
    assert_eq!(
        (refused.decision(), refused.reason.as_str()),
        (EgressDecision::Refused, "host_not_allowed")
    );
    let paths: Vec<Value> = world
        .received(&world.allowed)
        .await
        .iter()
        .map(|r| r["path"].clone())
        .collect();
    assert_eq!(paths, [json!("/from-run-js"), json!("/from-exec")]);
    executor.stop().await;
}

#[tokio::test]
async fn a_run_cannot_use_another_runs_credential() {
    let (_, world, mut executor) = world_and_executor().await;
    // A session keeps its proxy (and credential) alive while the run tries it.
    let session = session_reaching(&mut executor, ALLOWED).await;
    let read_token = r#"return JSON.parse((await import("node:fs")).readFileSync("/run/dynamic-mcp-egress/egress.json", "utf8")).token;"#;
    let theirs = executor.run_js("alice", &session.session_id, read_token, "{}").await;
    let theirs = result_of(&theirs);
    const SEND: &str = r#"
const http = await import("node:http");
const fs = await import("node:fs");
const own = JSON.parse(fs.readFileSync("/run/dynamic-mcp-egress/egress.json", "utf8")).token;
const send = (token, path) => new Promise((resolve) => {
  const request = http.request({ path, headers: { host: "api.allowed.test", "proxy-authorization": "Bearer " + token } },
    (response) => { response.resume(); resolve(response.statusCode); });
  request.on("error", (e) => resolve(e.message));
  request.end();
});
return { ownIsDifferent: own !== args.theirs, stolen: await send(args.theirs, "/stolen"), own: await send(own, "/own"),
         mounted: fs.readdirSync("/run/dynamic-mcp-egress").sort() };
"#;
    let ran = executor
        .run_request(egress_request(SEND, json!({"theirs": theirs}), &[ALLOWED], &[]))
        .await;
    let out = result_of(&ran.outcome);
    assert_eq!(out["ownIsDifferent"], true);
    assert!(
        out["stolen"]
            .as_str()
            .is_some_and(|m| m.contains("the proxy credential is not this run's")),
        "{out:#}"
    );
    assert_eq!(out["own"], 200, "{out:#}");
    assert_eq!(
        out["mounted"],
        json!(["egress.json", "egress.mjs", "proxy.sock"]),
        "only its own socket"
    );
    assert!(
        ran.egress
            .iter()
            .any(|e| e.reason == "bad_credential" && e.decision() == EgressDecision::Refused)
    );
    let paths: Vec<Value> = world
        .received(&world.allowed)
        .await
        .iter()
        .map(|r| r["path"].clone())
        .collect();
    assert_eq!(paths, [json!("/own")], "the stolen credential got nothing through");
    executor.stop().await;
}

const SECRET_CODE: &str = r#"
const key = process.env.API_KEY;
const https = await import("node:https");
const fs = await import("node:fs");
const call = async (host) => {
  const response = await fetch(`https://${host}/echo?key=${key}`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ key }),
  });
  return response.json();
};
const basic = await new Promise((resolve, reject) => {
  https.get("https://api.allowed.test/basic", { auth: `user:${key}` }, (response) => {
    let body = "";
    response.on("data", (chunk) => (body += chunk));
    response.on("end", () => resolve(JSON.parse(body)));
  }).on("error", reject);
});
const allowed = await call("api.allowed.test");
const other = await call("other.allowed.test");
const plain = await fetch("http://api.allowed.test/").then(() => "reached", (e) => e.message);
const files = {};
for (const name of fs.readdirSync("/run/dynamic-mcp-egress")) {
  if (name !== "proxy.sock") files[name] = fs.readFileSync(`/run/dynamic-mcp-egress/${name}`, "utf8");
}
await new Promise((r) => setTimeout(r, args.lingerMs));
return { key, sameGlobal: globalThis.secrets.API_KEY === key, allowed, other, basic, plain, env: process.env, files };
"#;

#[tokio::test]
async fn secrets_reach_only_their_hosts_and_never_the_container() {
    let docker = support::docker().await;
    let world = World::start(&docker).await;
    let value = format!("sv-{:032x}", rand::random::<u128>());
    let secrets_dir = tempfile::tempdir().unwrap();
    let secrets_file = secrets_dir.path().join("secrets.json");
    std::fs::write(
        &secrets_file,
        json!({"secrets": [{"name": "API_KEY", "value": value, "hosts": [ALLOWED]}]}).to_string(),
    )
    .unwrap();
    let secrets_path = secrets_file.display().to_string();
    let env = settings(&world, &[("MCP_SANDBOX_SECRETS_FILE", secrets_path.as_str())]);
    let executor = TestExecutor::start_with_log(&as_refs(&env)).await;

    let run = egress_request(SECRET_CODE, json!({"lingerMs": 2500}), &[ALLOWED, OTHER], &["API_KEY"]);
    let (mut stream, started) = support::start_run(&executor.client, run).await;
    // While the run is alive: nowhere in its container, nor in what Docker says about it.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let inspected = docker.inspect_container(&started.container_id, None).await.unwrap();
    let inspected = serde_json::to_string(&inspected).unwrap();
    assert!(!inspected.contains(&value), "docker inspect shows the secret");
    let host_config_mounts = inspected.contains("/run/dynamic-mcp-egress");
    assert!(host_config_mounts, "the run has its egress directory");
    let seen = support::exec_output(
        &docker,
        &started.container_id,
        "cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline /run/dynamic-mcp-egress/egress.json \
         /run/dynamic-mcp-egress/ca.pem 2>/dev/null; find /tmp /work -type f -exec cat {} + 2>/dev/null",
    )
    .await;
    assert!(seen.len() > 100, "the look inside read something: {seen:?}");
    assert!(!seen.contains(&value), "the secret is inside the container");

    let mut events = Vec::new();
    let outcome = loop {
        match stream.message().await.unwrap().and_then(|e| e.event) {
            Some(run_event::Event::Finished(outcome)) => break outcome,
            Some(run_event::Event::Egress(event)) => events.push(event),
            Some(run_event::Event::Started(_) | run_event::Event::Progress(_)) => {}
            None => panic!("no outcome"),
        }
    };
    let out = result_of(&outcome);
    let placeholder = out["key"].as_str().unwrap().to_owned();
    assert!(
        placeholder.starts_with("dmcp_API_KEY_") && placeholder != value,
        "{placeholder}"
    );
    assert_eq!(out["sameGlobal"], true);
    // What the code saw: the placeholder, even where the server echoed the value.
    assert_eq!(out["allowed"]["authorization"], format!("Bearer {placeholder}"));
    assert_eq!(out["allowed"]["body"], json!({"key": placeholder}).to_string());
    assert_eq!(out["other"]["authorization"], format!("Bearer {placeholder}"));
    assert!(
        out["plain"].as_str().unwrap().contains("plain http:// is not allowed"),
        "{out:#}"
    );
    assert!(
        out["files"]["ca.pem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    let everything = format!("{outcome:?}");
    assert!(!everything.contains(&value), "the outcome holds the secret");

    // What the servers got: the value only on the secret's host.
    let received = world.received(&world.allowed).await;
    let on = |host: &str, path: &str| {
        received
            .iter()
            .find(|r| r["host"] == host && r["path"].as_str().unwrap().starts_with(path))
            .unwrap_or_else(|| panic!("{host}{path} was not received: {received:#?}"))
            .clone()
    };
    let allowed = on(ALLOWED, "/echo");
    assert_eq!(allowed["authorization"], format!("Bearer {value}"));
    assert_eq!(allowed["path"], format!("/echo?key={value}"));
    assert_eq!(allowed["body"], json!({"key": value}).to_string());
    let basic = on(ALLOWED, "/basic");
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("user:{value}"));
    assert_eq!(basic["authorization"], format!("Basic {expected}"));
    let other = on(OTHER, "/echo");
    assert_eq!(other["authorization"], format!("Bearer {placeholder}"));
    assert_eq!(other["path"], format!("/echo?key={placeholder}"));

    let injected = events
        .iter()
        .find(|e| e.secrets_injected == ["API_KEY"])
        .expect("the injection is reported");
    assert_eq!(injected.host, ALLOWED);
    let withheld = events
        .iter()
        .find(|e| e.secrets_withheld == ["API_KEY"])
        .expect("the placeholder sent elsewhere is reported");
    assert_eq!(withheld.host, OTHER);
    assert!(
        events
            .iter()
            .any(|e| e.reason == "plain_http_disabled" && e.decision() == EgressDecision::Refused)
    );
    let log = executor.log();
    assert!(log.contains("egress"), "the executor logged the run's egress: {log}");
    assert!(!log.contains(&value), "the executor's log holds the secret");
    executor.stop().await;
}

#[tokio::test]
async fn runs_with_egress_come_warm_from_the_pool_too() {
    let (docker, world, mut executor) = world_and_executor().await;
    let fetch = r#"return (await (await fetch("http://api.allowed.test/" + args.n)).json()).path;"#;
    let first = executor
        .run_request(egress_request(fetch, json!({"n": 1}), &[ALLOWED], &[]))
        .await;
    assert_eq!(result_of(&first.outcome), json!("/1"));
    // The first run of a key starts cold and makes the pool keep that key warm.
    let has_egress_dir = |id: String| {
        let docker = docker.clone();
        async move {
            let mounts = docker.inspect_container(&id, None).await.ok().and_then(|c| c.mounts);
            mounts
                .unwrap_or_default()
                .iter()
                .any(|m| m.destination.as_deref() == Some("/run/dynamic-mcp-egress"))
        }
    };
    let warm = support::wait_for(Duration::from_secs(30), || {
        let executor = &executor;
        let has_egress_dir = &has_egress_dir;
        async move {
            for id in executor.warm_containers(1).await {
                if has_egress_dir(id).await {
                    return true;
                }
            }
            false
        }
    })
    .await;
    assert!(warm, "no warm container with an egress directory appeared");
    let waiting = executor.warm_containers(1).await;
    let second = executor
        .run_request(egress_request(fetch, json!({"n": 2}), &[ALLOWED], &[]))
        .await;
    assert_eq!(result_of(&second.outcome), json!("/2"));
    assert!(
        waiting.contains(&second.container_id),
        "the second run got a warm container"
    );
    let paths: Vec<Value> = world
        .received(&world.allowed)
        .await
        .iter()
        .map(|r| r["path"].clone())
        .collect();
    assert_eq!(paths, [json!("/1"), json!("/2")]);
    executor.stop().await;
}
