"""kill -9 of the registry in the middle of a burst of creates loses no acknowledged
write and leaves no half-written tool (through the real stack)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from mcp_calls import admin, text_of, unique_name
from stack import ERA_LEGACY

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]

WRITERS = 8
KILL_AFTER_ACKS = 24
KEEP_WRITING_AFTER_KILL = 0.5
PAUSE_AFTER_REFUSAL = 0.05
ANSWER_WITHIN = 20.0
RECONNECT_WITHIN = 20.0


def spec_for(name: str) -> dict[str, Any]:
    """A tool whose every field can be recomputed from its name, to check it came back intact."""
    return {"name": name, "description": f"crash test tool {name}", "code": f"return {json.dumps(name)};"}


def strings_in(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(strings_in(v) for v in value.values()), set())
    if isinstance(value, list):
        return set().union(*(strings_in(v) for v in value), set())
    return set()


class Burst:
    """Concurrent creates, each recorded as acknowledged, refused, or unanswered."""

    def __init__(self, client: Client):
        self.client = client
        self.attempted: set[str] = set()
        self.acknowledged: dict[str, dict[str, Any]] = {}
        self.refused: dict[str, str] = {}
        self.unanswered: list[str] = []
        self.enough_acks = anyio.Event()
        self.stop = anyio.Event()

    async def writer(self) -> None:
        while not self.stop.is_set():
            name = unique_name("crash")
            self.attempted.add(name)
            try:
                with anyio.fail_after(ANSWER_WITHIN):
                    result = await self.client.call_tool("dynamic.tool.create", {"tool": spec_for(name)})
            except TimeoutError:
                self.unanswered.append(name)
                continue
            except MCPError as error:
                self.refused[name] = error.message
                await anyio.sleep(PAUSE_AFTER_REFUSAL)
                continue
            if result.is_error:
                self.refused[name] = text_of(result)
                await anyio.sleep(PAUSE_AFTER_REFUSAL)
                continue
            self.acknowledged[name] = result.structured_content["tool"]
            if len(self.acknowledged) >= KILL_AFTER_ACKS:
                self.enough_acks.set()


def problems_with(stored: dict[str, dict[str, Any]], burst: Burst) -> list[str]:
    problems = [f"acknowledged create of {name} is lost" for name in burst.acknowledged if name not in stored]
    for name, tool in stored.items():
        if name not in burst.attempted:
            problems.append(f"{name} was never created")
            continue
        spec = spec_for(name)
        if (tool.get("description"), tool.get("code"), tool.get("revision"), tool.get("enabled")) != (
            spec["description"],
            spec["code"],
            1,
            True,
        ):
            problems.append(f"{name} came back damaged: {tool}")
        acked = burst.acknowledged.get(name)
        if acked is not None and tool.get("createdAt") != acked.get("createdAt"):
            problems.append(f"{name} has createdAt {tool.get('createdAt')}, acknowledged {acked.get('createdAt')}")
    return problems


async def test_acknowledged_creates_survive_kill_9_of_the_registry(launcher):
    services = launcher.start_services()
    frontend = launcher.stdio_frontend(services)
    async with frontend.connect(ERA_LEGACY) as client:
        burst = Burst(client)
        async with anyio.create_task_group() as writers:
            for _ in range(WRITERS):
                writers.start_soon(burst.writer)
            with anyio.fail_after(ANSWER_WITHIN):
                await burst.enough_acks.wait()
            services.registry.kill_hard()
            await anyio.sleep(KEEP_WRITING_AFTER_KILL)
            burst.stop.set()

        assert not burst.unanswered, f"creates left unanswered after the registry died: {burst.unanswered}"
        assert burst.refused, "no create failed, so the kill did not land mid-burst"

        launcher.start_registry(services.store, services.registry_socket)
        on_disk = json.loads(services.store.read_text())  # must be valid JSON
        lost_on_disk = set(burst.acknowledged) - strings_in(on_disk)
        assert not lost_on_disk, f"acknowledged creates missing from {services.store}: {sorted(lost_on_disk)}"

        async with launcher.stdio_frontend(services).connect(ERA_LEGACY) as fresh:
            listing = await admin(fresh, "dynamic.tool.list", {"includeCode": True})
        stored = {tool["name"]: tool for tool in listing["tools"]}
        assert problems_with(stored, burst) == []

        # The frontend that saw the registry die must work again once it is back.
        await create_once_reconnected(client)


async def create_once_reconnected(client: Client) -> None:
    with anyio.fail_after(RECONNECT_WITHIN):
        while True:
            try:
                result = await client.call_tool("dynamic.tool.create", {"tool": spec_for(unique_name("after"))})
                if not result.is_error:
                    return
            except MCPError:
                pass
            await anyio.sleep(0.5)
