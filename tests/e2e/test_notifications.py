"""Every change reaches every connected client as exactly one tools/list_changed,
in both eras and across frontends that share one registry."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
from mcp import Client

from mcp_calls import (
    LOWER_CODE,
    ListChangedCounter,
    admin,
    create_tool,
    listed_tool_names,
    run_tool,
    settled_counts,
    unique_name,
)
from stack import ERA_LEGACY, ERA_MODERN, Frontend

pytestmark = pytest.mark.anyio

PRIMING_ATTEMPTS = 10


async def connect_listener(stack: AsyncExitStack, frontend: Frontend, era: str) -> ListChangedCounter:
    """A client that counts list_changed: legacy clients get them unasked (stdio, or HTTP's GET
    stream), 2026-07-28 clients through subscriptions/listen."""
    counter = ListChangedCounter(f"{frontend.transport}-{era}")
    client = await stack.enter_async_context(frontend.connect(era, message_handler=counter))
    if era == ERA_MODERN:
        subscription = await stack.enter_async_context(client.listen(tools_list_changed=True))
        assert subscription.honored.tools_list_changed, "the server did not accept a toolsListChanged subscription"
    return counter


async def prime(writer: Client, counters: list[ListChangedCounter]) -> None:
    """Make changes until every listener has seen one (a legacy HTTP client opens its GET
    stream in the background after connecting), then start counting from zero."""
    primer = unique_name("primer")
    await create_tool(writer, primer)
    enabled = True
    for _ in range(PRIMING_ATTEMPTS):
        counts = await settled_counts(counters, at_least=1, timeout=1.0)
        if all(count >= 1 for count in counts.values()):
            break
        enabled = not enabled
        await admin(writer, "dynamic.tool.enable", {"name": primer, "enabled": enabled})
    else:
        pytest.fail(f"some listeners never received tools/list_changed: {counts}")
    for counter in counters:
        counter.count = 0


async def assert_one_notification_each(counters: list[ListChangedCounter], change: str) -> None:
    counts = await settled_counts(counters, at_least=1)
    assert counts == {
        counter.label: 1 for counter in counters
    }, f"after {change}, every client must get exactly one tools/list_changed; got {counts}"
    for counter in counters:
        counter.count = 0


async def test_every_change_notifies_every_client_exactly_once(launcher):
    services = launcher.start_services()
    http = launcher.http_frontend(services)
    name = unique_name("notify")
    async with AsyncExitStack() as stack:
        writer_counter = ListChangedCounter("stdio-legacy (the writer itself)")
        writer = await stack.enter_async_context(
            launcher.stdio_frontend(services).connect(ERA_LEGACY, message_handler=writer_counter)
        )
        counters = [
            writer_counter,
            await connect_listener(stack, launcher.stdio_frontend(services), ERA_MODERN),
            await connect_listener(stack, http, ERA_LEGACY),
            await connect_listener(stack, http, ERA_MODERN),
        ]
        await prime(writer, counters)

        await create_tool(writer, name)
        await assert_one_notification_each(counters, "create")
        await admin(writer, "dynamic.tool.update", {"name": name, "patch": {"code": LOWER_CODE}})
        await assert_one_notification_each(counters, "update")
        await admin(writer, "dynamic.tool.enable", {"name": name, "enabled": False})
        await assert_one_notification_each(counters, "disable")
        await admin(writer, "dynamic.tool.enable", {"name": name, "enabled": True})
        await assert_one_notification_each(counters, "enable")
        await admin(writer, "dynamic.tool.delete", {"name": name})
        await assert_one_notification_each(counters, "delete")


async def test_change_through_one_frontend_reaches_clients_of_another(launcher):
    services = launcher.start_services()
    frontend_a = launcher.http_frontend(services)
    frontend_b = launcher.http_frontend(services)
    name = unique_name("shared")
    async with AsyncExitStack() as stack:
        writer = await stack.enter_async_context(frontend_a.connect(ERA_MODERN))
        reader = await stack.enter_async_context(frontend_b.connect(ERA_MODERN))
        counters = [
            await connect_listener(stack, frontend_b, ERA_LEGACY),
            await connect_listener(stack, frontend_b, ERA_MODERN),
        ]
        await prime(writer, counters)

        await create_tool(writer, name)
        await assert_one_notification_each(counters, "create through frontend A")
        assert name in await listed_tool_names(reader), "frontend B does not list a tool created through A"
        assert await run_tool(reader, name, {"text": "hello"}) == {"upper": "HELLO"}

        await admin(writer, "dynamic.tool.delete", {"name": name})
        await assert_one_notification_each(counters, "delete through frontend A")
        assert name not in await listed_tool_names(reader), "frontend B still lists a tool deleted through A"
