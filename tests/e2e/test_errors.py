"""Bad requests and failing code get clear, specific messages (not a generic failure)."""

from __future__ import annotations

import re
import time

import pytest

from mcp_calls import admin, create_tool, failure_message, run_tool_error, unique_name
from stack import ERA_MODERN

pytestmark = pytest.mark.anyio

TIMEOUT_ANSWER_WITHIN_SECONDS = 3.0


def create_args(name: str) -> dict:
    return {"tool": {"name": name, "description": "an e2e tool", "code": "return 1;"}}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("1abc", r"1abc|letter"),
        ("a:b", r":"),
        ("system.health", r"system\.health"),
        ("sandbox.foo", r"sandbox\."),
    ],
    ids=["starts-with-digit", "colon", "builtin-name", "reserved-prefix"],
)
async def test_create_refuses_bad_or_reserved_names(http_frontend, name, expected):
    async with http_frontend.connect(ERA_MODERN) as client:
        message = await failure_message(client, "dynamic.tool.create", create_args(name))
        assert re.search(expected, message), f"creating {name!r}: the message should match {expected!r}: {message}"
        stored = (await admin(client, "dynamic.tool.list", {}))["tools"]
        assert stored == [], f"a refused tool was stored: {stored}"


async def test_create_refuses_a_duplicate(http_frontend):
    name = unique_name("dup")
    async with http_frontend.connect(ERA_MODERN) as client:
        await create_tool(client, name)
        message = await failure_message(client, "dynamic.tool.create", create_args(name))
    assert name in message and re.search(r"exist", message, re.I), f"duplicate create: {message}"


async def test_stale_expected_revision_names_both_revisions(http_frontend):
    name = unique_name("stale")  # no digits in the name, so digits in the message are revisions
    async with http_frontend.connect(ERA_MODERN) as client:
        await create_tool(client, name)
        for description in ("second", "third"):
            await admin(client, "dynamic.tool.update", {"name": name, "patch": {"description": description}})
        message = await failure_message(
            client, "dynamic.tool.update", {"name": name, "patch": {"description": "lost"}, "expectedRevision": 1}
        )
        assert {"1", "3"} <= set(
            re.findall(r"\d+", message)
        ), f"a conflict must name the expected (1) and the current (3) revision: {message}"
        tool = (await admin(client, "dynamic.tool.get", {"name": name}))["tool"]
        assert (tool["revision"], tool["description"]) == (3, "third"), "a conflicting update changed the tool"


async def test_calling_an_unknown_tool_names_it(http_frontend):
    name = unique_name("missing")
    async with http_frontend.connect(ERA_MODERN) as client:
        message = await failure_message(client, name, {"args": {}})
    assert name in message, f"unknown tool: {message}"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ('throw new Error("boom");', "boom"),
        ("return {", "syntax"),
        ("return 10n;", "json"),
    ],
    ids=["throws", "syntax-error", "not-json"],
)
async def test_failing_code_reports_why(http_frontend, code, expected):
    name = unique_name("fails")
    async with http_frontend.connect(ERA_MODERN) as client:
        await create_tool(client, name, code)
        message = await run_tool_error(client, name, {})
    assert expected in message.lower(), f"code {code!r} should fail with {expected!r}: {message}"


async def test_runaway_code_times_out_promptly(http_frontend):
    name = unique_name("spin")
    async with http_frontend.connect(ERA_MODERN) as client:
        await create_tool(client, name, "while (true) {}", timeoutMs=1000)
        started = time.monotonic()
        message = await run_tool_error(client, name, {})
        elapsed = time.monotonic() - started
    assert "timed out" in message.lower(), f"a runaway tool must report a timeout: {message}"
    assert (
        elapsed < TIMEOUT_ANSWER_WITHIN_SECONDS
    ), f"a 1000 ms timeout was answered after {elapsed:.2f} s (limit {TIMEOUT_ANSWER_WITHIN_SECONDS} s)"
