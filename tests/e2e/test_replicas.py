"""Many replicas behind a load balancer: registries sharing one Postgres
database (or one registry on the file backend, which has one writer), one
executor, and frontends serving HTTP statelessly (MCP_HTTP_LEGACY_SESSIONS=false).

Frontends A and B use registry 1 and frontend C registry 2 (registry 1 too
on the file backend). Every test runs on both backends where it applies; the
Postgres server is started here, on a free port, and restarted by one test.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from mcp_calls import LIST_CHANGED, admin, create_tool, listed_tool_names, run_tool, text_of, unique_name
from postgres_cluster import PgCluster, server_binaries
from processes import http_ok, wait_until
from replica_stack import FILE, POSTGRES, Backend, ReplicaStack
from stack import ERA_LEGACY, ERA_MODERN, HttpFrontend

pytestmark = pytest.mark.anyio

NOTIFY_WITHIN = 1.0
AGREE_WITHIN = 5.0
PRIMING_ATTEMPTS = 10
LEGACY_VERSION = "2025-11-25"


@pytest.fixture(scope="module")
def pg_cluster():
    """One PostgreSQL server for this module; each test gets a schema of its own."""
    bin_dir = server_binaries()
    if bin_dir is None:
        missing = (
            "the PostgreSQL server binaries (initdb, pg_ctl, psql) are not in /usr/lib/postgresql/*/bin or on PATH"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"{missing}, and CI=true forbids skipping: install postgresql-15 "
                "(DYNAMIC_MCP_SETUP_TESTS=1 scripts/setup.sh does)"
            )
        pytest.skip(f"{missing}; with CI=true this is a failure")
    cluster = PgCluster(bin_dir)
    yield cluster
    cluster.destroy()


@pytest.fixture
def postgres_backend(request, pg_cluster) -> Iterator[Backend]:
    """A schema of its own in the module's server; the server's log is shown when the test fails,
    and a server the test left stopped is started again for the next one."""
    yield Backend.postgres(pg_cluster)
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print(f"\n----- postgres server.log -----\n{pg_cluster.log()}")
    if not pg_cluster.running():
        pg_cluster.start_again()


@pytest.fixture(params=[POSTGRES, FILE])
def backend(request, launcher) -> Backend:
    if request.param == FILE:
        return Backend.file(launcher)
    return request.getfixturevalue("postgres_backend")


def replicas(launcher, backend: Backend, **registry_settings: str) -> ReplicaStack:
    return ReplicaStack.start(launcher, backend, backend.max_registries, **registry_settings)


def abc(stack: ReplicaStack, **settings: str) -> list[HttpFrontend]:
    """Frontends A and B on the first registry, C on the last."""
    last = len(stack.registries) - 1
    return stack.frontends([0, 0, last], **settings)


class ListChangedClock:
    """A message handler that records when each `notifications/tools/list_changed` arrives."""

    def __init__(self, label: str):
        self.label = label
        self.arrivals: list[float] = []

    async def __call__(self, message: Any) -> None:
        if getattr(message, "method", None) == LIST_CHANGED:
            self.arrivals.append(time.monotonic())

    async def wait_for(self, count: int, timeout: float) -> bool:
        with anyio.move_on_after(timeout):
            while len(self.arrivals) < count:
                await anyio.sleep(0.01)
        return len(self.arrivals) >= count


async def listen_on(stack: AsyncExitStack, frontend: HttpFrontend, label: str) -> ListChangedClock:
    """A 2026-07-28 client on `frontend` with a toolsListChanged subscription."""
    clock = ListChangedClock(label)
    client = await stack.enter_async_context(frontend.connect(ERA_MODERN, message_handler=clock))
    subscription = await stack.enter_async_context(client.listen(tools_list_changed=True))
    assert subscription.honored.tools_list_changed, f"{label}: the toolsListChanged subscription was refused"
    return clock


async def prime(writer: Client, clocks: list[ListChangedClock]) -> None:
    """Change something until every listener has heard of it (a legacy client opens
    its GET stream in the background), then forget what they heard."""
    primer = unique_name("primer")
    await create_tool(writer, primer)
    enabled = True
    for _ in range(PRIMING_ATTEMPTS):
        heard = [await clock.wait_for(1, 1.0) for clock in clocks]
        if all(heard):
            break
        enabled = not enabled
        await admin(writer, "dynamic.tool.enable", {"name": primer, "enabled": enabled})
    else:
        pytest.fail(f"some listeners never received tools/list_changed: {[c.label for c in clocks]}")
    await anyio.sleep(0.3)
    for clock in clocks:
        clock.arrivals.clear()


async def dynamic_listing(frontend: HttpFrontend, prefix: str) -> set[str]:
    async with frontend.connect(ERA_MODERN) as client:
        return {name for name in await listed_tool_names(client) if name.startswith(prefix)}


async def listings_once_agreed(frontends: list[HttpFrontend], prefix: str, expected: set[str]) -> list[set[str]]:
    """Every frontend's dynamic tools under `prefix`, polled until all equal `expected` (or time runs out)."""
    with anyio.move_on_after(AGREE_WITHIN):
        while True:
            listings = [await dynamic_listing(frontend, prefix) for frontend in frontends]
            if all(listing == expected for listing in listings):
                break
            await anyio.sleep(0.1)
    return listings


async def test_a_create_through_frontend_a_reaches_clients_of_every_replica(launcher, backend):
    stack = replicas(launcher, backend)
    a, b, c = abc(stack)
    # The sticky-session alternative: legacy clients keep a GET stream on one replica.
    [sticky] = stack.frontends([len(stack.registries) - 1], legacy_sessions=True)
    name = unique_name("replica")
    async with AsyncExitStack() as stack_of_clients:
        writer = await stack_of_clients.enter_async_context(a.connect(ERA_MODERN))
        modern = await listen_on(stack_of_clients, c, "frontend C, 2026-07-28 listen")
        legacy = ListChangedClock("frontend D (legacy sessions), legacy GET stream")
        await stack_of_clients.enter_async_context(sticky.connect(ERA_LEGACY, message_handler=legacy))
        await prime(writer, [modern, legacy])

        sent = time.monotonic()
        await create_tool(writer, name)
        for clock in (modern, legacy):
            assert await clock.wait_for(1, NOTIFY_WITHIN), f"{clock.label}: no tools/list_changed within 1 s"
        await anyio.sleep(0.5)
        delays = {clock.label: [round(t - sent, 3) for t in clock.arrivals] for clock in (modern, legacy)}
        for label, arrivals in delays.items():
            assert len(arrivals) == 1 and arrivals[0] < NOTIFY_WITHIN, f"{label}: list_changed after {arrivals} s"
        print(f"list_changed after the create was sent ({backend.kind}): {delays}")

    every = [a, b, c, sticky]
    listings = await listings_once_agreed(every, "replica-", {name})
    assert listings == [{name}] * len(every), f"tools/list disagrees across frontends: {listings}"
    for frontend in every:
        async with frontend.connect(ERA_MODERN) as client:
            assert await run_tool(client, name, {"text": "hello"}) == {"upper": "HELLO"}, frontend.url


async def test_the_tool_limit_holds_for_200_concurrent_creates_across_frontends(launcher, backend):
    limit, attempts = 100, 200
    stack = replicas(launcher, backend, MCP_DYNAMIC_MAX_TOOLS=str(limit))
    frontends = abc(stack, MCP_TOOL_MAX_CONCURRENCY="256", MCP_TOOL_MAX_CALLS_PER_WINDOW="10000")
    created: list[str] = []
    refused: dict[str, str] = {}

    async def create(client: Client, name: str) -> None:
        spec = {"name": name, "description": f"race {name}", "code": "return 1;"}
        result = await client.call_tool("dynamic.tool.create", {"tool": spec})
        if result.is_error:
            refused[name] = text_of(result)
        else:
            created.append(name)

    started = time.monotonic()
    async with AsyncExitStack() as clients_stack:
        clients = [await clients_stack.enter_async_context(f.connect(ERA_MODERN)) for f in frontends]
        async with anyio.create_task_group() as creates:
            for i in range(attempts):
                creates.start_soon(create, clients[i % len(clients)], f"race.tool-{i:03d}")
    print(f"{attempts} creates across {len(frontends)} frontends ({backend.kind}): {time.monotonic() - started:.2f} s")

    unexpected = {name: why for name, why in refused.items() if "tool limit reached" not in why}
    assert not unexpected, f"creates refused for another reason than the limit: {dict(list(unexpected.items())[:5])}"
    assert (len(created), len(refused)) == (limit, attempts - limit)
    assert backend.stored_names() == sorted(created), f"the {backend.kind} backend does not hold exactly the {limit}"
    listings = await listings_once_agreed(frontends, "race.", set(created))
    assert [len(listing) for listing in listings] == [limit] * len(frontends)
    assert all(listing == set(created) for listing in listings)


async def call_into(
    outcomes: dict[int, tuple[bool, str]], key: int, client: Client, tool: str, arguments: dict[str, Any]
) -> None:
    """Calls `tool`; records (succeeded, text) under `key`."""
    result = await client.call_tool(tool, arguments)
    outcomes[key] = (not result.is_error, text_of(result))


async def test_concurrent_updates_with_one_expected_revision_have_exactly_one_winner(launcher, backend):
    rounds, contenders_per_frontend = 5, 2
    stack = replicas(launcher, backend)
    frontends = abc(stack)
    name = unique_name("cas")
    async with AsyncExitStack() as clients_stack:
        clients = [
            await clients_stack.enter_async_context(frontend.connect(ERA_MODERN))
            for frontend in frontends
            for _ in range(contenders_per_frontend)
        ]
        revision = (await create_tool(clients[0], name))["revision"]
        for round_ in range(rounds):
            outcomes: dict[int, tuple[bool, str]] = {}
            async with anyio.create_task_group() as updates:
                for contender, client in enumerate(clients):
                    arguments = {
                        "name": name,
                        "patch": {"description": f"round {round_} contender {contender}"},
                        "expectedRevision": revision,
                    }
                    updates.start_soon(call_into, outcomes, contender, client, "dynamic.tool.update", arguments)

            winners = [contender for contender, (won, _) in outcomes.items() if won]
            assert len(winners) == 1, f"round {round_}: {len(winners)} updates won: {outcomes}"
            conflict = f"expectedRevision is {revision} but the current revision is {revision + 1}"
            for contender, (won, message) in outcomes.items():
                if not won:
                    assert "revision conflict" in message and conflict in message, f"contender {contender}: {message}"
            stored = (await admin(clients[-1], "dynamic.tool.get", {"name": name}))["tool"]
            assert (stored["revision"], stored["description"]) == (
                revision + 1,
                f"round {round_} contender {winners[0]}",
            ), f"round {round_}: the stored tool is not the winner's"
            revision += 1


@dataclass
class Attempt:
    name: str
    writer: str
    started: float
    ended: float
    error: str | None


class Writers:
    """Creates without pause through several clients; every attempt is recorded."""

    ANSWER_WITHIN = 20.0

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.stop = anyio.Event()

    def acknowledged(self, after: float = 0.0) -> list[str]:
        return [a.name for a in self.attempts if a.error is None and a.started >= after]

    async def write(self, label: str, client: Client) -> None:
        while not self.stop.is_set():
            name = unique_name("outage")
            spec = {"name": name, "description": f"outage test {name}", "code": f"return {json.dumps(name)};"}
            started = time.monotonic()
            try:
                with anyio.fail_after(self.ANSWER_WITHIN):
                    result = await client.call_tool("dynamic.tool.create", {"tool": spec})
                error = text_of(result) if result.is_error else None
            except MCPError as failure:
                error = f"JSON-RPC error: {failure.message}"
            except TimeoutError:
                error = f"no answer within {self.ANSWER_WITHIN} s"
            self.attempts.append(Attempt(name, label, started, time.monotonic(), error))
            if error is not None:
                await anyio.sleep(0.1)

    async def until(self, what: str, done: Callable[[], Any], timeout: float) -> None:
        with anyio.move_on_after(timeout):
            while not done():
                await anyio.sleep(0.05)
        if not done():
            outcomes = [(x.writer, x.error or "ok") for x in self.attempts[-6:]]
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last attempts: {outcomes}")


def readyz(frontend: HttpFrontend) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"{frontend.base_url}/readyz", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def test_a_postgres_restart_fails_writes_clearly_and_loses_nothing(launcher, postgres_backend, pg_cluster):
    backend = postgres_backend
    stack = replicas(launcher, backend)
    a, b, c = abc(stack)
    writers = Writers()
    async with AsyncExitStack() as clients_stack:
        listener = await listen_on(clients_stack, c, "frontend C, 2026-07-28 listen")
        via_a = await clients_stack.enter_async_context(a.connect(ERA_MODERN))
        via_c = await clients_stack.enter_async_context(c.connect(ERA_MODERN))
        async with anyio.create_task_group() as writing:
            writing.start_soon(writers.write, "A", via_a)
            writing.start_soon(writers.write, "C", via_c)
            await writers.until("10 creates", lambda: len(writers.acknowledged()) >= 10, 20)

            pg_cluster.stop()
            down_at = time.monotonic()

            def refused_while_down(label: str) -> list[Attempt]:
                return [x for x in writers.attempts if x.writer == label and x.started >= down_at and x.error]

            await writers.until(
                "a refused create through each frontend",
                lambda: refused_while_down("A") and refused_while_down("C"),
                20,
            )
            readiness = await anyio.to_thread.run_sync(readyz, a)
            with anyio.fail_after(10):
                while readiness[0] != 503:
                    await anyio.sleep(0.2)
                    readiness = await anyio.to_thread.run_sync(readyz, a)
            assert "registry" in readiness[1], f"/readyz does not name the registry: {readiness}"

            pg_cluster.start_again()
            up_at = time.monotonic()
            await writers.until(
                "creates after the restart",
                lambda: len(writers.acknowledged(after=up_at)) >= 6,
                30,
            )
            recovered_in = min(x.ended for x in writers.attempts if x.started >= up_at and not x.error) - up_at
            writers.stop.set()
        print(f"outage {up_at - down_at:.2f} s; first acknowledged create {recovered_in:.2f} s after the restart")

        during = [x for x in writers.attempts if x.started >= down_at and x.ended <= up_at]
        assert during and all(x.error for x in during), f"creates during the outage succeeded: {during}"
        slowest = max(x.ended - x.started for x in during)
        print(f"{len(during)} creates refused during the outage (slowest {slowest:.2f} s), e.g. {during[-1].error!r}")
        unclear = [x for x in writers.attempts if x.error and "database is unavailable" not in x.error]
        assert not unclear, f"writes failed without saying the database is unavailable: {unclear[:3]}"

        # Nothing acknowledged is missing: in the table, and on every frontend.
        acknowledged = set(writers.acknowledged())
        stored = set(backend.stored_names())
        assert acknowledged <= stored, f"acknowledged creates lost: {sorted(acknowledged - stored)}"
        assert stored <= {x.name for x in writers.attempts}, "the table holds tools nobody created"
        listings = await listings_once_agreed([a, b, c], "outage-", stored)
        assert listings == [stored] * 3, "the frontends did not resync with the database after its restart"

        # The feed is live again, with nothing restarted: A's next create reaches C's listener.
        listener.arrivals.clear()
        last = unique_name("outage")
        sent = time.monotonic()
        await create_tool(via_a, last)
        assert await listener.wait_for(1, NOTIFY_WITHIN), "no tools/list_changed on C after the restart"
        print(f"list_changed on C {listener.arrivals[0] - sent:.3f} s after the create through A")
        assert last in await dynamic_listing(c, "outage-"), "C announced a change but does not list the new tool"
    for frontend in (a, b, c):
        url = f"{frontend.base_url}/readyz"
        wait_until(f"{url} to answer 200 again after the restart", lambda u=url: http_ok(u), 5)


def post_jsonrpc(url: str, message: dict[str, Any], protocol_version: str | None) -> tuple[int, dict[str, str], Any]:
    """One raw Streamable HTTP POST; returns (status, headers, the JSON-RPC answer or None)."""
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if protocol_version:
        headers["MCP-Protocol-Version"] = protocol_version
    request = urllib.request.Request(url, data=json.dumps(message).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read().decode()
        answer_headers = {key.lower(): value for key, value in response.headers.items()}
        if not body.strip():
            return response.status, answer_headers, None
        if answer_headers.get("content-type", "").startswith("text/event-stream"):
            data = [line[5:].strip() for line in body.splitlines() if line.startswith("data:")]
            answers = [json.loads(d) for d in data if d]
            return response.status, answer_headers, next((m for m in answers if "id" in m), None)
        return response.status, answer_headers, json.loads(body)


def get_endpoint(url: str) -> int:
    request = urllib.request.Request(
        url, headers={"Accept": "text/event-stream", "MCP-Protocol-Version": LEGACY_VERSION}, method="GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


async def test_stateless_legacy_clients_need_no_sticky_session(launcher, backend):
    stack = replicas(launcher, backend)
    a, b, c = abc(stack)
    name = unique_name("stateless")
    async with c.connect(ERA_MODERN) as writer:
        await create_tool(writer, name)
    # Other replicas learn of it through their registry's feed, a moment later.
    listings = await listings_once_agreed([a, b, c], "stateless-", {name})
    assert listings == [{name}] * 3, f"not every frontend lists the new tool: {listings}"

    # SDK legacy clients, one on A and one on B: the same tools, and calls work.
    listings = []
    for frontend in (a, b):
        async with frontend.connect(ERA_LEGACY) as client:
            assert client.protocol_version == LEGACY_VERSION
            listings.append(await listed_tool_names(client))
            assert await run_tool(client, name, {"text": frontend.url}) == {"upper": frontend.url.upper()}
    assert name in listings[0] and listings[0] == listings[1], f"A and B list different tools: {listings}"

    # One legacy conversation spread over three replicas: no session id, so nothing to stick to.
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "e2e-raw", "version": "1"},
        },
    }
    status, headers, answer = await anyio.to_thread.run_sync(post_jsonrpc, a.url, initialize, None)
    assert status == 200 and answer["result"]["protocolVersion"] == LEGACY_VERSION, answer
    assert "mcp-session-id" not in headers, f"a stateless frontend handed out a session: {headers}"
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    status, _, _ = await anyio.to_thread.run_sync(post_jsonrpc, b.url, initialized, LEGACY_VERSION)
    assert status in (200, 202), status
    listed = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    status, _, answer = await anyio.to_thread.run_sync(post_jsonrpc, c.url, listed, LEGACY_VERSION)
    assert name in {tool["name"] for tool in answer["result"]["tools"]}, answer
    called = {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {"name": name, "arguments": {"args": {"text": "hop"}}},
    }
    status, _, answer = await anyio.to_thread.run_sync(post_jsonrpc, a.url, called, LEGACY_VERSION)
    assert answer["result"]["structuredContent"]["result"] == {"upper": "HOP"}, answer

    # No sessions means no GET stream for server-to-client messages.
    for frontend in (a, b, c):
        assert await anyio.to_thread.run_sync(get_endpoint, frontend.url) == 405, frontend.url
