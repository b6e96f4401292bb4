"""Controlled egress through the real stack and the Python MCP client, in both protocol eras: code
reaches exactly the hosts its call names (run_js_ephemeral, a sandbox session), a refusal says
which policy refused it, every connection is audited with the caller and counted per tool, and a
secret is used by requests to its host without ever reaching the code, the audit log or the logs.
The servers are the test's own, in containers (egress_world.py); no internet is needed.
"""

from __future__ import annotations

import json
import secrets
import urllib.request

import anyio
import pytest

from egress_world import ALLOWED, FORBIDDEN, OTHER, EgressWorld
from mcp_calls import admin, create_tool, failure_message, run_tool, text_of, unique_name
from stack import ERA_LEGACY, ERA_MODERN

pytestmark = pytest.mark.anyio

AUDIT_WITHIN = 10.0


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> EgressWorld:
    world = EgressWorld(tmp_path_factory.mktemp("egress"))
    yield world
    world.close()


@pytest.fixture
def secret_value() -> str:
    return f"e2e-secret-{secrets.token_hex(16)}"


@pytest.fixture
def admin_token() -> str:
    return f"e2e-admin-{secrets.token_hex(16)}"


@pytest.fixture
def server(launcher, world, tmp_path, secret_value, admin_token):
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps({"secrets": [{"name": "API_KEY", "value": secret_value, "hosts": [ALLOWED]}]}))
    secrets_file.chmod(0o600)
    audit = tmp_path / "audit.log"
    settings = {
        **world.executor_settings(),
        "MCP_SANDBOX_EGRESS_ALLOW_PLAIN_HTTP": "true",
        "MCP_SANDBOX_SECRETS_FILE": str(secrets_file),
        "MCP_ADMIN_TOKEN": admin_token,
        "MCP_AUDIT_FILE": str(audit),
        "MCP_LOG_LEVEL": "debug",
    }
    frontend = launcher.http_frontend(settings=settings, headers={"X-MCP-Admin-Token": admin_token})
    frontend.audit_path = audit
    return frontend


def audit_lines(server, action_prefix: str = "egress.") -> list[dict]:
    if not server.audit_path.exists():
        return []
    lines = [json.loads(line) for line in server.audit_path.read_text().splitlines() if line.strip()]
    return [line for line in lines if line["action"].startswith(action_prefix)]


async def wait_for_audit(server, predicate, what: str) -> list[dict]:
    with anyio.fail_after(AUDIT_WITHIN):
        while True:
            lines = audit_lines(server)
            if predicate(lines):
                return lines
            await anyio.sleep(0.1)


def outcome(result) -> dict:
    assert isinstance(result.structured_content, dict), f"no structured content: {result}"
    return result.structured_content


PROBE = """
const attempt = async (url) => {
  try { const response = await fetch(url); return { status: response.status, body: await response.json() }; }
  catch (error) { return { error: error.message }; }
};
return { allowed: await attempt("http://api.allowed.test/from-e2e"), forbidden: await attempt("http://evil.forbidden.test/") };
"""


@pytest.mark.parametrize("era", [ERA_LEGACY, ERA_MODERN])
async def test_code_reaches_only_the_hosts_its_call_names(server, world, era):
    async with server.connect(era) as client:
        result = await client.call_tool(
            "run_js_ephemeral", {"code": PROBE, "network": {"allow": [ALLOWED]}, "timeoutMs": 20000}
        )
        assert not result.is_error, text_of(result)
        out = outcome(result)["result"]
        assert out["allowed"]["status"] == 200 and out["allowed"]["body"]["path"] == "/from-e2e", out
        refused = out["forbidden"]["error"]
        assert "evil.forbidden.test:80 is not in the network.allow" in refused and "refused by policy" in refused, out

        without = await client.call_tool("run_js_ephemeral", {"code": PROBE, "timeoutMs": 20000})
        out = outcome(without)["result"]
        assert "error" in out["allowed"], f"without network.allow there is no network: {out}"

    assert [r["path"] for r in world.received(world.allowed)][-1] == "/from-e2e"
    assert world.received(world.forbidden) == []
    lines = await wait_for_audit(server, lambda lines: len(lines) >= 2, "two egress audit lines")
    allowed = next(line for line in lines if line["result"] == "success")
    denied = next(line for line in lines if line["result"] == "denied")
    assert allowed["action"] == "egress.connect" and allowed["target"] == "run_js_ephemeral", allowed
    assert allowed["actor"] == "anonymous"
    assert (allowed["details"]["host"], allowed["details"]["port"], allowed["details"]["scheme"]) == (ALLOWED, 80, "http")
    assert (denied["details"]["host"], denied["details"]["reason"]) == (FORBIDDEN, "host_not_allowed"), denied
    assert "/from-e2e" not in json.dumps(lines), "no path is audited"

    metrics = urllib.request.urlopen(f"{server.base_url}/metrics", timeout=5).read().decode()
    counted = [line for line in metrics.splitlines() if line.startswith("mcp_egress_connections_total{")]
    assert any('tool="run_js_ephemeral"' in line and 'decision="refused"' in line for line in counted), counted
    assert any('tool="run_js_ephemeral"' in line and 'decision="allowed"' in line for line in counted), counted


@pytest.mark.parametrize("era", [ERA_LEGACY, ERA_MODERN])
async def test_a_session_reaches_its_hosts(server, world, era):
    async with server.connect(era) as client:
        session = await admin(client, "sandbox.initialize", {"network": {"allow": [ALLOWED]}})
        assert session["network"] == {"allow": [ALLOWED]}, session
        session_id = session["sessionId"]
        try:
            ran = await client.call_tool(
                "sandbox.run_js",
                {"sessionId": session_id, "code": "return (await (await fetch('http://api.allowed.test/js')).json()).path;"},
            )
            assert outcome(ran)["result"] == "/js", text_of(ran)
            executed = await admin(
                client,
                "sandbox.exec",
                {
                    "sessionId": session_id,
                    "commands": [
                        "node -e 'fetch(\"http://api.allowed.test/sh\").then(r => r.json()).then(j => console.log(j.path))'",
                        "node -e 'fetch(\"http://evil.forbidden.test/\").catch(e => console.log(e.message))'",
                    ],
                    "timeoutMs": 20000,
                },
            )
            assert executed["results"][0]["stdout"].strip() == "/sh", executed
            assert "not in the network.allow of this sandbox session" in executed["results"][1]["stdout"], executed
            listed = await admin(client, "sandbox.session.list", {})
            assert [s["network"] for s in listed["sessions"] if s["id"] == session_id] == [{"allow": [ALLOWED]}]
        finally:
            await admin(client, "sandbox.stop", {"sessionId": session_id})
    lines = await wait_for_audit(server, lambda lines: any(line["result"] == "denied" for line in lines), "a refusal")
    assert {line["details"].get("sessionId") for line in lines} == {session_id}, lines
    assert {line["target"] for line in lines} == {"sandbox.run_js", "sandbox.exec"}, lines


async def test_hosts_outside_the_servers_ceiling_are_refused_before_anything_runs(server):
    async with server.connect(ERA_MODERN) as client:
        message = await failure_message(
            client, "run_js_ephemeral", {"code": "return 1;", "network": {"allow": ["www.example.com"]}}
        )
        assert "outside what this server allows (MCP_SANDBOX_EGRESS_ALLOWED_HOSTS" in message, message
        message = await failure_message(client, "sandbox.initialize", {"network": {"allow": ["10.0.0.1"]}})
        assert "MCP_SANDBOX_EGRESS_ALLOW_IP_LITERALS" in message, message
        message = await failure_message(
            client, "run_js_ephemeral", {"code": "return 1;", "network": {"allow": [ALLOWED]}, "secrets": ["NOPE"]}
        )
        assert "'NOPE' is not a secret of this server; known secrets: API_KEY" in message, message


SECRET_CODE = """
const key = process.env.API_KEY;
const call = async (host) => {
  const response = await fetch(`https://${host}/echo`, { headers: { "x-api-key": key } });
  return response.json();
};
return { key, same: secrets.API_KEY === key, allowed: await call("api.allowed.test"), other: await call("other.allowed.test") };
"""


async def test_a_secret_reaches_its_host_and_nothing_else(server, world, launcher, secret_value):
    async with server.connect(ERA_MODERN) as client:
        result = await client.call_tool(
            "run_js_ephemeral",
            {"code": SECRET_CODE, "network": {"allow": [ALLOWED, OTHER]}, "secrets": ["API_KEY"], "timeoutMs": 20000},
        )
        assert not result.is_error, text_of(result)
        out = outcome(result)["result"]
    placeholder = out["key"]
    assert placeholder.startswith("dmcp_API_KEY_") and out["same"] is True, out
    # The code sees the placeholder even where the server echoed the value back.
    assert out["allowed"]["apiKey"] == placeholder and out["other"]["apiKey"] == placeholder, out
    received = {(r["host"], r["apiKey"]) for r in world.received(world.allowed) if r["path"] == "/echo"}
    assert (ALLOWED, secret_value) in received, received
    assert (OTHER, placeholder) in received, received
    assert (OTHER, secret_value) not in received

    lines = await wait_for_audit(
        server, lambda lines: sum(line["action"] == "egress.secret" for line in lines) >= 2, "two secret uses"
    )
    uses = [line for line in lines if line["action"] == "egress.secret"]
    assert {(u["details"]["host"], tuple(u["details"].get("injected", ()))) for u in uses} >= {(ALLOWED, ("API_KEY",))}
    assert {(u["details"]["host"], tuple(u["details"].get("withheld", ()))) for u in uses} >= {(OTHER, ("API_KEY",))}
    everything = server.audit_path.read_text() + "".join(path.read_text() for path in launcher.log_paths)
    assert secret_value not in everything, "the secret is in the audit log or a log"
    assert placeholder not in server.audit_path.read_text(), "placeholders are not audited either"


TOOL_CODE = """
const response = await fetch("https://api.allowed.test/tool", { headers: { "x-api-key": process.env.API_KEY } });
return { seen: (await response.json()).apiKey, placeholder: process.env.API_KEY };
"""


@pytest.mark.parametrize("era", [ERA_LEGACY, ERA_MODERN])
async def test_a_stored_tool_reaches_its_host_with_its_secret(server, world, secret_value, era):
    name = unique_name("egress")
    async with server.connect(era) as client:
        created = await create_tool(client, name, TOOL_CODE, network={"allow": ["API.allowed.test"]}, secrets=["API_KEY"])
        assert created["network"] == {"allow": [ALLOWED]}, f"stored in the policy's spelling: {created}"
        out = await run_tool(client, name, {})
        assert out["seen"] == out["placeholder"] and out["placeholder"].startswith("dmcp_API_KEY_"), out
        message = await failure_message(
            client, "dynamic.tool.update", {"name": name, "patch": {"network": {"allow": ["www.example.com"]}}}
        )
        assert "outside what this server allows (MCP_SANDBOX_EGRESS_ALLOWED_HOSTS" in message, message
    assert any(r["path"] == "/tool" and r["apiKey"] == secret_value for r in world.received(world.allowed))
    lines = await wait_for_audit(
        server, lambda lines: any(line["target"] == name and line["action"] == "egress.secret" for line in lines), "the tool's secret use"
    )
    uses = [line for line in lines if line["target"] == name]
    assert {line["action"] for line in uses} == {"egress.connect", "egress.secret"}, uses
