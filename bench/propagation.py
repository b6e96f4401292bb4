#!/usr/bin/env python3
"""Change propagation under load: three frontends (two on registry 1, one on registry 2),
two registries on one PostgreSQL server, and on every frontend a 2026-07-28 listener
(`subscriptions/listen`) and a legacy session client (its GET stream), all through the
real Python MCP client. Writers update tools (`dynamic.tool.update`, a new description)
at a fixed rate, spread round robin over the frontends, for a fixed time.

Every client should receive exactly one `notifications/tools/list_changed` per write. The
notifications carry nothing that names their write, so a client's i-th notification is
paired with the i-th write in order of acknowledgement. Where writes overlap, this can pair
neighbours, which moves a single sample by at most the overlap. Per client it prints the
p50, p99 and max from each write's acknowledgement to the notification (negative: the
notification came first, because the writer's frontend answers only once its own catalog
holds the write), the same from the moment the write was sent, and the missed and
duplicate notifications (received minus writes). Nothing is asserted.

    cargo build --bins                  # or --release, and pass --release
    python3 bench/propagation.py [--seconds 60] [--rate 50] [--release]

PostgreSQL comes from /usr/lib/postgresql/*/bin, as in the e2e tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import anyio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from docker_probe import remove_executor_containers  # noqa: E402
from mcp_calls import LIST_CHANGED, admin, create_tool, unique_name  # noqa: E402
from postgres_cluster import PgCluster, server_binaries  # noqa: E402
from replica_stack import Backend, ReplicaStack  # noqa: E402
from stack import ERA_LEGACY, ERA_MODERN, Launcher  # noqa: E402

PRIMING_ATTEMPTS = 20
SETTLE_S = 3.0


class Clock:
    """Arrival times of one client's `tools/list_changed`."""

    def __init__(self, label: str):
        self.label = label
        self.arrivals: list[float] = []

    async def __call__(self, message) -> None:
        if getattr(message, "method", None) == LIST_CHANGED:
            self.arrivals.append(time.monotonic())


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def prime(writer, tool: str, clocks: list[Clock]) -> None:
    """Change a tool until every client has heard of it (legacy clients open their GET stream
    in the background), then forget what they heard."""
    for attempt in range(PRIMING_ATTEMPTS):
        await admin(writer, "dynamic.tool.update", {"name": tool, "patch": {"description": f"priming {attempt}"}})
        with anyio.move_on_after(1.0):
            while any(not clock.arrivals for clock in clocks):
                await anyio.sleep(0.01)
        if all(clock.arrivals for clock in clocks):
            break
    else:
        raise SystemExit(f"never heard: {[c.label for c in clocks if not c.arrivals]}")
    await anyio.sleep(1.0)
    for clock in clocks:
        clock.arrivals.clear()


async def load(writers, tools: list[str], seconds: float, rate: float) -> tuple[list[tuple[float, float]], Counter]:
    """(sent, acknowledged) of every successful write, and the failures by message."""
    writes: list[tuple[float, float]] = []
    failures: Counter = Counter()

    async def write(client, tool: str, k: int) -> None:
        sent = time.monotonic()
        result = await client.call_tool("dynamic.tool.update", {"name": tool, "patch": {"description": f"write {k}"}})
        acked = time.monotonic()
        if result.is_error:
            failures[" ".join(getattr(b, "text", "") for b in result.content)[:120]] += 1
        else:
            writes.append((sent, acked))

    began = time.monotonic()
    async with anyio.create_task_group() as group:
        for k in range(int(seconds * rate)):
            await anyio.sleep(max(0.0, began + k / rate - time.monotonic()))
            # Round robin over the frontends (writers are listed frontend by frontend); one tool
            # per write in turn, so no two writes in flight touch the same tool.
            group.start_soon(write, writers[k % len(writers)], tools[k % len(tools)], k)
    return writes, failures


def row(clock: Clock, writes: list[tuple[float, float]]) -> str:
    paired = list(zip(sorted(writes, key=lambda w: w[1]), clock.arrivals, strict=False))
    from_ack = [(arrived - acked) * 1000 for (_, acked), arrived in paired]
    from_sent = [(arrived - sent) * 1000 for (sent, _), arrived in paired]
    missed = max(0, len(writes) - len(clock.arrivals))
    duplicates = max(0, len(clock.arrivals) - len(writes))
    if not paired:
        return f"| {clock.label} | 0 | — | — | — | — | — | {missed} | {duplicates} |"
    return (
        f"| {clock.label} | {len(clock.arrivals)} | {percentile(from_ack, 0.5):.1f} | {percentile(from_ack, 0.99):.1f} "
        f"| {max(from_ack):.1f} | {percentile(from_sent, 0.5):.1f} | {percentile(from_sent, 0.99):.1f} "
        f"| {missed} | {duplicates} |"
    )


async def run(args: argparse.Namespace) -> None:
    bin_dir = server_binaries()
    if bin_dir is None:
        raise SystemExit("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    log_dir = Path(tempfile.mkdtemp(prefix="dmcp-bench-propagation-"))
    launcher = Launcher(log_dir, f"bench{uuid.uuid4().hex[:8]}")
    cluster = PgCluster(bin_dir)
    try:
        stack = ReplicaStack.start(launcher, Backend.postgres(cluster), registries=2)
        # The guard (8 calls at once, 300 a minute per caller by default) would refuse writes, not measure them.
        unguarded = {"MCP_TOOL_MAX_CONCURRENCY": "256", "MCP_TOOL_MAX_CALLS_PER_WINDOW": "1000000"}
        frontends = stack.frontends([0, 0, 1], legacy_sessions=True, **unguarded)
        names = ["A (registry 1)", "B (registry 1)", "C (registry 2)"]
        async with AsyncExitStack() as clients:
            clocks: list[Clock] = []
            for name, frontend in zip(names, frontends, strict=True):
                modern = Clock(f"{name}, 2026-07-28 listener")
                listener = await clients.enter_async_context(frontend.connect(ERA_MODERN, message_handler=modern))
                await clients.enter_async_context(listener.listen(tools_list_changed=True))
                legacy = Clock(f"{name}, legacy session")
                await clients.enter_async_context(frontend.connect(ERA_LEGACY, message_handler=legacy))
                clocks += [modern, legacy]
            writers = [
                await clients.enter_async_context(frontend.connect(ERA_MODERN))
                for _ in range(args.writers_per_frontend)
                for frontend in frontends
            ]
            tools = [unique_name("propagation") for _ in range(args.tools)]
            for tool in tools:
                await create_tool(writers[0], tool)
            await prime(writers[0], tools[0], clocks)

            print(f"writing {args.rate:g}/s for {args.seconds:g} s over {len(frontends)} frontends ...", flush=True)
            writes, failures = await load(writers, tools, args.seconds, args.rate)
            await anyio.sleep(SETTLE_S)

        achieved = len(writes) / (max(w[1] for w in writes) - min(w[0] for w in writes)) if writes else 0.0
        acks = [(acked - sent) * 1000 for sent, acked in writes]
        print(f"\nwrites acknowledged: {len(writes)} ({achieved:.1f}/s); failed: {sum(failures.values())}")
        for message, count in failures.most_common(5):
            print(f"  {count} x {message}")
        if acks:
            print(
                f"write latency (sent to ack): p50 {percentile(acks, 0.5):.1f} ms, "
                f"p99 {percentile(acks, 0.99):.1f} ms, max {max(acks):.1f} ms"
            )
        print("\n| client | notifications | from ack p50 | p99 | max | from send p50 | p99 | missed | duplicates |")
        print("|---|---|---|---|---|---|---|---|---|")
        for clock in clocks:
            print(row(clock, writes))
        load1 = os.getloadavg()[0]
        print(f"\n1-minute load average at the end: {load1:.1f}; binaries: {os.environ.get('DYNAMIC_MCP_BIN', 'target/debug')}")
    finally:
        launcher.stop_all()
        cluster.destroy()
        remove_executor_containers(launcher.executor_id_prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=50.0, help="writes per second, over all frontends")
    parser.add_argument("--tools", type=int, default=30, help="tools the writes update in turn")
    parser.add_argument("--writers-per-frontend", type=int, default=2)
    parser.add_argument("--release", action="store_true", help="use target/release instead of target/debug")
    args = parser.parse_args()
    if args.release:
        os.environ["DYNAMIC_MCP_BIN"] = str(REPO / "target" / "release" / "dynamic-mcp")
    anyio.run(run, args)


if __name__ == "__main__":
    main()
