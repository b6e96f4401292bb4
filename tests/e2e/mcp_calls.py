"""MCP calls the tests make over and over, with the product's contract checked once, here."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult

# The seed README's example tool.
SEED_CODE = "const { text } = args;\nreturn { upper: String(text).toUpperCase() };"
LOWER_CODE = "const { text } = args;\nreturn { lower: String(text).toLowerCase() };"

LIST_CHANGED = "notifications/tools/list_changed"


def unique_name(prefix: str = "e2e") -> str:
    """A valid, unused tool name (letters only after the prefix, so digits in messages mean revisions)."""
    letters = "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:10])
    return f"{prefix}-{letters}"


def text_of(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def admin(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call a built-in tool that must succeed; returns its structured content."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, f"{tool} {arguments} failed: {text_of(result)}"
    assert isinstance(result.structured_content, dict), f"{tool} returned no structured content: {result}"
    return result.structured_content


async def create_tool(client: Client, name: str, code: str = SEED_CODE, **fields: Any) -> dict[str, Any]:
    spec = {"name": name, "description": f"e2e tool {name}", "code": code, **fields}
    return (await admin(client, "dynamic.tool.create", {"tool": spec}))["tool"]


async def failure_message(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    """Call something that must fail; the message of its JSON-RPC error or isError result."""
    try:
        result = await client.call_tool(tool, arguments)
    except MCPError as error:
        return error.message
    assert result.is_error, f"{tool} {arguments} should have failed but returned {result.structured_content!r}"
    message = text_of(result)
    assert message.strip(), f"{tool} failed without any message: {result}"
    return message


async def run_tool(client: Client, name: str, args: dict[str, Any]) -> Any:
    """Call a dynamic tool that must succeed; returns `result` from `{ok:true, result, durationMs}`."""
    result = await client.call_tool(name, {"args": args})
    assert not result.is_error, f"calling {name} failed: {text_of(result)}"
    outcome = result.structured_content
    assert isinstance(outcome, dict) and outcome.get("ok") is True, f"{name} answered {outcome!r}"
    assert isinstance(outcome.get("durationMs"), int | float), f"{name} answered without durationMs: {outcome!r}"
    return outcome["result"]


async def run_tool_error(client: Client, name: str, args: dict[str, Any]) -> str:
    """Call a dynamic tool whose code fails; it must be an isError result, not a protocol error."""
    result = await client.call_tool(name, {"args": args})
    assert result.is_error, f"{name} should have failed but returned {result.structured_content!r}"
    return text_of(result)


async def listed_tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


class ListChangedCounter:
    """A message handler that counts `notifications/tools/list_changed`."""

    def __init__(self, label: str):
        self.label = label
        self.count = 0

    async def __call__(self, message: Any) -> None:
        if getattr(message, "method", None) == LIST_CHANGED:
            self.count += 1


async def settled_counts(
    counters: list[ListChangedCounter], at_least: int, timeout: float = 5.0, settle: float = 0.7
) -> dict[str, int]:
    """Wait until every counter reaches `at_least` (or time runs out), then a while longer
    for stragglers, so duplicates have a chance to show."""
    with anyio.move_on_after(timeout):
        while any(counter.count < at_least for counter in counters):
            await anyio.sleep(0.02)
    await anyio.sleep(settle)
    return {counter.label: counter.count for counter in counters}
