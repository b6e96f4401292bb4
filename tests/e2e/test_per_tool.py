"""Container-per-tool mode through the real client: a tool with isolation
"container-per-tool" runs its calls in one long-lived hardened container of its
revision, each call in a fresh JS realm (no shared state); a hanging call ends at
its timeout while a concurrent one succeeds; a new revision retires the old
container; and an operator who forbids the mode gets a clear isError instead."""

from __future__ import annotations

import time

import anyio
import anyio.to_thread
import pytest

from docker_probe import LABEL_EXECUTOR, LABEL_ROLE, LABEL_TOOL, container_ids, wait_for_gone
from mcp_calls import admin, create_tool, failure_message, run_tool, run_tool_error, unique_name
from stack import ERA_MODERN

pytestmark = pytest.mark.anyio

PER_TOOL = {"isolation": "container-per-tool"}
COUNTER = """
globalThis.calls = (globalThis.calls ?? 0) + 1;
if (args.hang) for (;;) {}
return { calls: globalThis.calls, text: String(args.text ?? "") };"""
# No warm pool: every container this executor has is the tool's own.
SETTINGS = {"MCP_EXECUTOR_WARM_POOL_SIZE": "0"}


def per_tool_containers(executor_id: str, tool: str) -> list[str]:
    labels = {LABEL_EXECUTOR: executor_id, LABEL_ROLE: "per-tool", LABEL_TOOL: tool}
    return container_ids(labels, include_stopped=False)


async def test_per_tool_calls_share_a_container_not_state_and_a_new_revision_retires_it(launcher):
    frontend = launcher.http_frontend(settings=SETTINGS)
    name = unique_name("pertool")
    async with frontend.connect(ERA_MODERN) as client:
        created = await create_tool(client, name, COUNTER, **PER_TOOL)
        assert created["isolation"] == "container-per-tool"
        for text in ["a", "b", "c"]:
            assert await run_tool(client, name, {"text": text}) == {"calls": 1, "text": text}
        containers = await anyio.to_thread.run_sync(per_tool_containers, frontend.executor_id, name)
        assert len(containers) == 1, f"one container serves the tool: {containers}"

        await admin(client, "dynamic.tool.update", {"name": name, "patch": {"code": COUNTER + "\n// v2"}})
        assert await run_tool(client, name, {"text": "v2"}) == {"calls": 1, "text": "v2"}
        await wait_for_gone(containers[0], timeout=10)
        now = await anyio.to_thread.run_sync(per_tool_containers, frontend.executor_id, name)
        assert len(now) == 1 and now != containers, f"revision 2 runs in a container of its own: {now}"


async def test_a_hanging_per_tool_call_ends_at_its_timeout_while_another_succeeds(launcher):
    frontend = launcher.http_frontend(settings=SETTINGS)
    name = unique_name("pertool")
    async with frontend.connect(ERA_MODERN) as client:
        await create_tool(client, name, COUNTER, timeoutMs=3000, **PER_TOOL)
        assert await run_tool(client, name, {"text": "warm"}) == {"calls": 1, "text": "warm"}
        hung: dict[str, object] = {}

        async def hang() -> None:
            began = time.monotonic()
            hung["message"] = await run_tool_error(client, name, {"hang": True})
            hung["took"] = time.monotonic() - began

        async with anyio.create_task_group() as group:
            group.start_soon(hang)
            await anyio.sleep(0.5)
            for text in ["x", "y"]:
                began = time.monotonic()
                assert await run_tool(client, name, {"text": text}) == {"calls": 1, "text": text}
                assert time.monotonic() - began < 2, "a call waited for the hanging one"
            assert "took" not in hung, "the hanging call ended before its timeout"
        assert "3000 ms" in str(hung["message"]), hung
        assert float(hung["took"]) < 8, hung
        assert await run_tool(client, name, {"text": "after"}) == {"calls": 1, "text": "after"}
        containers = await anyio.to_thread.run_sync(per_tool_containers, frontend.executor_id, name)
        assert len(containers) == 1, f"the kill cost only the call, not the container: {containers}"


async def test_an_operator_can_forbid_per_tool_mode(launcher):
    frontend = launcher.http_frontend(settings={**SETTINGS, "MCP_SANDBOX_ALLOW_PER_TOOL": "false"})
    name = unique_name("pertool")
    async with frontend.connect(ERA_MODERN) as client:
        spec = {"name": name, "description": "per tool", "code": COUNTER, **PER_TOOL}
        message = await failure_message(client, "dynamic.tool.create", {"tool": spec})
        assert "MCP_SANDBOX_ALLOW_PER_TOOL" in message and "container-per-call" in message, message
        # Nothing was stored; the same tool per call is fine.
        await create_tool(client, name, COUNTER, isolation="container-per-call")
        assert await run_tool(client, name, {"text": "ok"}) == {"calls": 1, "text": "ok"}
        # An update that changes only the isolation is refused the same way, and stores nothing.
        patch = {"name": name, "patch": PER_TOOL}
        message = await failure_message(client, "dynamic.tool.update", patch)
        assert "MCP_SANDBOX_ALLOW_PER_TOOL" in message, message
        stored = (await admin(client, "dynamic.tool.get", {"name": name}))["tool"]
        assert stored["isolation"] == "container-per-call" and stored["revision"] == 1, stored
