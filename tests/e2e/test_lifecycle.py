"""A dynamic tool's whole life, in every transport and protocol era."""

from __future__ import annotations

import pytest

from docker_probe import SANDBOX_IMAGE
from mcp_calls import (
    LOWER_CODE,
    SEED_CODE,
    admin,
    create_tool,
    failure_message,
    listed_tool_names,
    run_tool,
    unique_name,
)

pytestmark = pytest.mark.anyio

VIEW_FIELDS = {
    "name",
    "description",
    "image",
    "timeoutMs",
    "dependencies",
    "enabled",
    "createdAt",
    "updatedAt",
    "revision",
    "codeSizeBytes",
}


async def test_system_health(frontend, mode):
    _transport, era = mode
    async with frontend.connect(era) as client:
        health = await admin(client, "system.health", {})
    assert health["status"] == "ok"
    assert isinstance(health["service"], str) and health["service"]
    assert isinstance(health["version"], str) and health["version"]
    assert isinstance(health["uptimeSeconds"], int | float) and health["uptimeSeconds"] >= 0


async def test_create_call_update_disable_enable_delete(frontend, mode):
    _transport, era = mode
    name = unique_name("upper")
    async with frontend.connect(era) as client:
        created = await create_tool(client, name, SEED_CODE)
        assert VIEW_FIELDS <= created.keys(), f"view lacks {VIEW_FIELDS - created.keys()}: {created}"
        assert "code" not in created, "create must not echo the code"
        assert (created["name"], created["revision"], created["enabled"]) == (name, 1, True)
        assert (created["image"], created["timeoutMs"], created["dependencies"]) == (SANDBOX_IMAGE, 30000, [])
        assert created["codeSizeBytes"] == len(SEED_CODE.encode())

        assert name in await listed_tool_names(client)
        assert await run_tool(client, name, {"text": "hello"}) == {"upper": "HELLO"}

        fetched = (await admin(client, "dynamic.tool.get", {"name": name}))["tool"]
        assert fetched["code"] == SEED_CODE and fetched["revision"] == 1

        updated = (await admin(client, "dynamic.tool.update", {"name": name, "patch": {"code": LOWER_CODE}}))["tool"]
        assert updated["revision"] == 2
        assert updated["codeSizeBytes"] == len(LOWER_CODE.encode())
        assert await run_tool(client, name, {"text": "HeLLo"}) == {"lower": "hello"}

        disabled = (await admin(client, "dynamic.tool.enable", {"name": name, "enabled": False}))["tool"]
        assert (disabled["enabled"], disabled["revision"]) == (False, 3)
        assert name not in await listed_tool_names(client)
        stored = (await admin(client, "dynamic.tool.list", {}))["tools"]
        assert [tool["enabled"] for tool in stored if tool["name"] == name] == [
            False
        ], "a disabled tool stays in dynamic.tool.list"
        await failure_message(client, name, {"args": {"text": "x"}})

        enabled = (await admin(client, "dynamic.tool.enable", {"name": name, "enabled": True}))["tool"]
        assert (enabled["enabled"], enabled["revision"]) == (True, 4)
        assert name in await listed_tool_names(client)
        assert await run_tool(client, name, {"text": "AbC"}) == {"lower": "abc"}

        deleted = await admin(client, "dynamic.tool.delete", {"name": name})
        assert deleted["deleted"] is True and deleted["tool"]["name"] == name
        assert name not in await listed_tool_names(client)
        assert name not in [tool["name"] for tool in (await admin(client, "dynamic.tool.list", {}))["tools"]]
        assert name in await failure_message(client, name, {"args": {"text": "x"}})
