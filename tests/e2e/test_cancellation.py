"""A call the client gives up on stops what it started: the container of a dynamic tool or of
run_js_ephemeral goes away, and a command or run in a sandbox session is killed. Over stdio the
client sends notifications/cancelled; over Streamable HTTP (2026-07-28) it drops the request."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

import anyio
import pytest
from mcp import Client

from docker_probe import marker_code, wait_for_call_container, wait_for_gone
from mcp_calls import admin, create_tool, unique_name
from stack import ERA_LEGACY, ERA_MODERN

pytestmark = pytest.mark.anyio

WAY_OF_CANCELLING = {"stdio-notification": ("stdio", ERA_LEGACY), "http-disconnect": ("http", ERA_MODERN)}
APPEARS_WITHIN = 15.0
STOPPED_WITHIN = 10.0
SLEEP_A_MINUTE = "await new Promise((r) => setTimeout(r, 60000));\nreturn 'not cancelled';"


@pytest.fixture(params=list(WAY_OF_CANCELLING))
def way(request) -> tuple[str, str]:
    return WAY_OF_CANCELLING[request.param]


async def cancel_once_running(call: Callable[[], Awaitable[object]], running: Callable[[], Awaitable[None]]) -> None:
    """Start `call`, wait until `running` says its work is under way, then cancel the call."""
    async with anyio.create_task_group() as calls:
        calls.start_soon(call)
        await running()
        calls.cancel_scope.cancel()


async def count_in_session(client: Client, session: str, pattern: str) -> int:
    """Processes in the session whose command line matches `pattern` (written so it does not match itself)."""
    command = f"ps -o args | grep -c '{pattern}' || true"
    ran = await admin(client, "sandbox.exec", {"sessionId": session, "commands": [command]})
    return int(ran["results"][0]["stdout"])


async def wait_for_count(client: Client, session: str, pattern: str, wanted: int, within: float) -> None:
    deadline = time.monotonic() + within
    while (count := await count_in_session(client, session, pattern)) != wanted:
        assert time.monotonic() < deadline, f"{count} processes like {pattern!r} after {within} s, expected {wanted}"
        await anyio.sleep(0.1)


async def cancel_and_see_container_go(call: Callable[[], Awaitable[object]], executor_id: str, marker: str) -> None:
    """Cancel `call` once its container runs; that container must then go away."""
    found: list[str] = []

    async def running() -> None:
        found.append(await wait_for_call_container(executor_id, marker, APPEARS_WITHIN))

    await cancel_once_running(call, running)
    await wait_for_gone(found[0], STOPPED_WITHIN)


async def test_cancelling_a_dynamic_tool_removes_its_container(launcher, way):
    transport, era = way
    frontend = launcher.frontend(transport)
    name = unique_name("cancel")
    marker = f"cancel-{uuid.uuid4().hex}"
    async with frontend.connect(era) as client:
        await create_tool(client, name, marker_code(marker, SLEEP_A_MINUTE), timeoutMs=90000)
        await cancel_and_see_container_go(lambda: client.call_tool(name, {"args": {}}), frontend.executor_id, marker)
        assert (await admin(client, "system.health", {}))["status"] == "ok"


async def test_cancelling_run_js_ephemeral_removes_its_container(launcher, way):
    transport, era = way
    frontend = launcher.frontend(transport)
    marker = f"cancel-{uuid.uuid4().hex}"
    code = marker_code(marker, SLEEP_A_MINUTE)
    async with frontend.connect(era) as client:
        await cancel_and_see_container_go(
            lambda: client.call_tool("run_js_ephemeral", {"code": code, "timeoutMs": 90000}),
            frontend.executor_id,
            marker,
        )


async def test_cancelling_sandbox_exec_and_run_js_kills_their_processes(launcher, way):
    transport, era = way
    frontend = launcher.frontend(transport)
    async with frontend.connect(era) as client:
        session = (await admin(client, "sandbox.initialize", {"timeoutMs": 90000}))["sessionId"]

        await cancel_once_running(
            lambda: client.call_tool("sandbox.exec", {"sessionId": session, "commands": ["sleep 53"]}),
            lambda: wait_for_count(client, session, "^sleep 5[3]", 1, APPEARS_WITHIN),
        )
        await wait_for_count(client, session, "^sleep 5[3]", 0, STOPPED_WITHIN)

        await cancel_once_running(
            lambda: client.call_tool("sandbox.run_js", {"sessionId": session, "code": SLEEP_A_MINUTE}),
            # The harness's supervisor and the code's own process.
            lambda: wait_for_count(client, session, "[n]ode --input-type", 2, APPEARS_WITHIN),
        )
        await wait_for_count(client, session, "[n]ode --input-type", 0, STOPPED_WITHIN)

        still = await admin(client, "sandbox.exec", {"sessionId": session, "commands": ["echo still here"]})
        assert still["results"][0]["stdout"] == "still here\n", "the session did not survive the cancellations"
        await admin(client, "sandbox.stop", {"sessionId": session})
