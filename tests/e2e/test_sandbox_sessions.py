"""Sandbox sessions through the real stack (their life, their owners, their limit and their output),
and npm dependencies installed from the real registry: for a session's run_js, and for a dynamic
tool at create time, with progress notifications while npm runs."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest

from docker_probe import (
    LABEL_EXECUTOR,
    LABEL_ROLE,
    SANDBOX_IMAGE,
    container_ids,
    docker,
    wait_for_no_containers,
    wait_for_only_warm_containers,
)
from jwt_issuer import JwtIssuer
from mcp_calls import admin, create_tool, failure_message, run_tool, text_of, unique_name
from stack import ERA_LEGACY, ERA_MODERN

pytestmark = pytest.mark.anyio

CONTAINERS_GONE_WITHIN = 10.0
# This machine's CA bundle holds the CA of its TLS-intercepting proxy; installs need it to reach npm.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IS_NUMBER = [{"name": "is-number", "version": "^7.0.0"}]
USES_IS_NUMBER = """const { default: isNumber } = await import('is-number');
return [isNumber(args.x), isNumber('nope')];"""
INSTALL_TIMEOUT = 120.0


def session_labels(executor_id: str) -> dict[str, str]:
    return {LABEL_EXECUTOR: executor_id, LABEL_ROLE: "session"}


@pytest.mark.parametrize("era", [ERA_MODERN, ERA_LEGACY])
async def test_a_session_keeps_its_files_and_reports_every_command(http_frontend, era):
    async with http_frontend.connect(era) as client:
        started = await admin(client, "sandbox.initialize", {"timeoutMs": 20000})
        session = started["sessionId"]
        assert started["image"] == "dynamic-mcp-sandbox:latest" and started["timeoutMs"] == 20000, started
        assert started["createdAt"] <= started["lastUsedAt"] < started["expiresAt"], started

        ran = await admin(
            client,
            "sandbox.exec",
            {"sessionId": session, "commands": ["echo hi > f; cat f", "echo oops >&2; exit 3", "cat f; pwd; id -u"]},
        )
        first, failing, last = ran["results"]
        assert (first["stdout"], first["exitCode"], first["timedOut"]) == ("hi\n", 0, False), ran
        assert (failing["stderr"], failing["exitCode"]) == ("oops\n", 3), "a failing command must report itself"
        assert last["stdout"] == "hi\n/work\n65534\n", "a failing command must not stop or hide the others"
        assert ran["skipped"] == 0 and all(isinstance(r["durationMs"], int) for r in ran["results"]), ran

        code = "const fs = await import('node:fs');\nreturn { file: fs.readFileSync('f', 'utf8'), n: args.n + 1 };"
        result = await client.call_tool("sandbox.run_js", {"sessionId": session, "code": code, "args": {"n": 41}})
        assert not result.is_error, text_of(result)
        assert result.structured_content["result"] == {"file": "hi\n", "n": 42}

        listed = (await admin(client, "sandbox.session.list", {}))["sessions"]
        assert [s["id"] for s in listed] == [session], listed
        assert set(listed[0]) >= {"id", "image", "createdAt", "lastUsedAt"}, listed

        stopped = await admin(client, "sandbox.stop", {"sessionId": session})
        assert stopped == {"stopped": True, "sessionId": session}
        assert (await admin(client, "sandbox.session.list", {}))["sessions"] == []
        message = await failure_message(client, "sandbox.exec", {"sessionId": session, "commands": ["true"]})
        assert f"no session '{session}'" in message, message
    await wait_for_no_containers(session_labels(http_frontend.executor_id), CONTAINERS_GONE_WITHIN)


async def test_a_command_past_the_timeout_is_killed_and_the_rest_skipped(http_frontend):
    async with http_frontend.connect(ERA_MODERN) as client:
        session = (await admin(client, "sandbox.initialize", {}))["sessionId"]
        began = time.monotonic()
        result = await client.call_tool(
            "sandbox.exec",
            {"sessionId": session, "commands": ["echo before", "sleep 47", "echo never"], "timeoutMs": 1500},
        )
        elapsed = time.monotonic() - began
        assert result.is_error, "a command killed at the timeout must be reported as an error"
        assert "commands[1] did not finish" in text_of(result), text_of(result)
        before, killed = result.structured_content["results"]
        assert before["stdout"] == "before\n", "the output before the timeout must be kept"
        assert (killed["timedOut"], killed["exitCode"]) == (True, None), killed
        assert result.structured_content["skipped"] == 1
        assert elapsed < 6, f"a 1500 ms timeout was answered after {elapsed:.1f} s"
        count = "ps -o args | grep -c '^sleep 4[7]' || true"
        left = await admin(client, "sandbox.exec", {"sessionId": session, "commands": [count]})
        assert left["results"][0]["stdout"] == "0\n", "the timed-out command still runs"
        await admin(client, "sandbox.stop", {"sessionId": session})


@pytest.fixture
def jwt_issuer():
    issuer = JwtIssuer()
    yield issuer
    issuer.close()


async def test_sessions_belong_to_their_caller(launcher, jwt_issuer):
    frontend = launcher.http_frontend(settings=jwt_issuer.settings())
    alice, bob = jwt_issuer.bearer("alice"), jwt_issuer.bearer("bob")
    async with frontend.connect(ERA_MODERN, headers=alice) as as_alice:
        session = (await admin(as_alice, "sandbox.initialize", {}))["sessionId"]
        async with frontend.connect(ERA_MODERN, headers=bob) as as_bob:
            assert (await admin(as_bob, "sandbox.session.list", {}))["sessions"] == []
            for tool, arguments in [
                ("sandbox.exec", {"sessionId": session, "commands": ["id"]}),
                ("sandbox.run_js", {"sessionId": session, "code": "return 1;"}),
                ("sandbox.stop", {"sessionId": session}),
            ]:
                message = await failure_message(as_bob, tool, arguments)
                assert message == f"no session '{session}' for this caller", f"{tool} as bob: {message}"
            unknown = await failure_message(as_bob, "sandbox.stop", {"sessionId": str(uuid.uuid4())})
            assert "for this caller" in unknown, "another caller's session must look exactly like a missing one"
        mine = await admin(as_alice, "sandbox.exec", {"sessionId": session, "commands": ["echo mine"]})
        assert mine["results"][0]["stdout"] == "mine\n"
        assert [s["id"] for s in (await admin(as_alice, "sandbox.session.list", {}))["sessions"]] == [session]
        await admin(as_alice, "sandbox.stop", {"sessionId": session})
    await wait_for_no_containers(session_labels(frontend.executor_id), CONTAINERS_GONE_WITHIN)


async def test_the_session_limit_holds_before_any_container_starts(launcher):
    frontend = launcher.http_frontend(settings={"MCP_SANDBOX_MAX_SESSIONS": "2"})
    async with frontend.connect(ERA_MODERN) as client:
        first = (await admin(client, "sandbox.initialize", {}))["sessionId"]
        await admin(client, "sandbox.initialize", {})
        message = await failure_message(client, "sandbox.initialize", {})
        assert "session limit reached" in message and "MCP_SANDBOX_MAX_SESSIONS" in message, message
        assert len(container_ids(session_labels(frontend.executor_id))) == 2, "a refused session started a container"
        await admin(client, "sandbox.stop", {"sessionId": first})
        await admin(client, "sandbox.initialize", {})  # the freed place can be taken again
        for session in (await admin(client, "sandbox.session.list", {}))["sessions"]:
            await admin(client, "sandbox.stop", {"sessionId": session["id"]})
    await wait_for_no_containers(session_labels(frontend.executor_id), CONTAINERS_GONE_WITHIN)


@pytest.fixture
def deps_volume():
    """A dependency cache of this test's own, so the install really reaches the npm registry."""
    name = f"dynamic-mcp-e2e-deps-{uuid.uuid4().hex[:10]}"
    yield name
    subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True, timeout=60)


@pytest.fixture
def deps_frontend(deps_volume, launcher):
    # A fixed pool, so that whatever is left beyond it is a leak.
    settings = {"MCP_SANDBOX_DEPS_VOLUME": deps_volume, "MCP_EXECUTOR_WARM_POOL_SIZE": "1"}
    if HOST_CA_BUNDLE.is_file():
        settings["MCP_SANDBOX_EXTRA_CA_FILE"] = str(HOST_CA_BUNDLE)
    return launcher.http_frontend(settings=settings)


class ProgressLog:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.messages.append(message or "")


@pytest.mark.timeout(300)
async def test_a_dynamic_tool_gets_its_npm_dependency_at_create_time(deps_frontend, deps_volume):
    name = unique_name("isnum")
    progress = ProgressLog()
    async with deps_frontend.connect(ERA_MODERN) as client:
        spec = {"name": name, "description": "uses is-number", "code": USES_IS_NUMBER, "dependencies": IS_NUMBER}
        created = await client.call_tool(
            "dynamic.tool.create", {"tool": spec}, read_timeout_seconds=INSTALL_TIMEOUT, progress_callback=progress
        )
        assert not created.is_error, text_of(created)
        setup = created.structured_content["dependencySetup"]
        assert setup["cached"] is False and setup["durationMs"] > 0, setup
        assert progress.messages and progress.messages[0].startswith("installing 1 npm dependency"), progress.messages
        assert await run_tool(client, name, {"x": 7}) == [True, False]

        again = await create_tool(client, unique_name("isnum"), USES_IS_NUMBER, dependencies=IS_NUMBER)
        assert again["dependencies"] == IS_NUMBER
        cache = f"{deps_volume}:/deps:ro"
        listing = docker("run", "--rm", "--network", "none", "-v", cache, "--entrypoint", "ls", SANDBOX_IMAGE, "/deps")
        assert len(listing.split()) == 1, f"the same dependency set was installed twice: {listing}"


@pytest.mark.timeout(300)
async def test_an_install_error_surfaces_at_create(deps_frontend):
    name = unique_name("nover")
    async with deps_frontend.connect(ERA_MODERN) as client:
        spec = {
            "name": name,
            "description": "asks for a version that does not exist",
            "code": USES_IS_NUMBER,
            "dependencies": [{"name": "is-number", "version": "^99.0.0"}],
        }
        result = await client.call_tool("dynamic.tool.create", {"tool": spec}, read_timeout_seconds=INSTALL_TIMEOUT)
        assert result.is_error, "a dependency that cannot be installed must fail the create"
        message = text_of(result)
        assert "installing the npm dependencies failed" in message and "is-number@^99.0.0" in message, message
        assert (await admin(client, "dynamic.tool.list", {}))["tools"] == [], "a tool that cannot run was stored"
    await wait_for_only_warm_containers(deps_frontend.executor_id, CONTAINERS_GONE_WITHIN)


@pytest.mark.timeout(120)
async def test_an_unreachable_npm_registry_fails_the_create_fast_with_progress_meanwhile(launcher, deps_volume):
    # The install container's own loopback: nothing answers there.
    settings = {"MCP_SANDBOX_DEPS_VOLUME": deps_volume, "MCP_SANDBOX_NPM_REGISTRY": "http://127.0.0.1:9/"}
    frontend = launcher.http_frontend(settings=settings)
    progress = ProgressLog()
    async with frontend.connect(ERA_MODERN) as client:
        spec = {"name": unique_name("noreg"), "description": "d", "code": USES_IS_NUMBER, "dependencies": IS_NUMBER}
        began = time.monotonic()
        result = await client.call_tool(
            "dynamic.tool.create", {"tool": spec}, read_timeout_seconds=INSTALL_TIMEOUT, progress_callback=progress
        )
        took = time.monotonic() - began
        assert result.is_error, "a create whose dependencies cannot be fetched must fail"
        message = text_of(result)
        assert "cannot be reached from the install network" in message and "ECONNREFUSED" in message, message
        assert "MCP_SANDBOX_NPM_REGISTRY" in message, message
        assert took < 30, f"the create took {took:.1f} s"
        assert progress.messages and progress.messages[0].startswith("installing 1 npm dependency"), progress.messages
        assert (await admin(client, "dynamic.tool.list", {}))["tools"] == []


@pytest.mark.timeout(300)
async def test_run_js_in_a_session_imports_an_npm_dependency(deps_frontend):
    progress = ProgressLog()
    async with deps_frontend.connect(ERA_MODERN) as client:
        session = (await admin(client, "sandbox.initialize", {}))["sessionId"]
        arguments = {"sessionId": session, "code": USES_IS_NUMBER, "args": {"x": 3}, "dependencies": IS_NUMBER}
        result = await client.call_tool(
            "sandbox.run_js", arguments, read_timeout_seconds=INSTALL_TIMEOUT, progress_callback=progress
        )
        assert not result.is_error, text_of(result)
        assert result.structured_content["result"] == [True, False]
        assert progress.messages, "no progress was reported while npm ran"
        # The cache is read-only inside the session.
        tamper = await admin(client, "sandbox.exec", {"sessionId": session, "commands": ["touch /deps/x"]})
        assert "Read-only file system" in tamper["results"][0]["stderr"], tamper
        await admin(client, "sandbox.stop", {"sessionId": session})
    await wait_for_only_warm_containers(deps_frontend.executor_id, CONTAINERS_GONE_WITHIN)
