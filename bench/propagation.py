#!/usr/bin/env python3
"""Change propagation under load: three frontends (two on registry 1, one on registry 2),
two registries on one PostgreSQL server, and on every frontend a 2026-07-28 listener
(`subscriptions/listen`) and a legacy session client (its GET stream), all through the
real Python MCP client in a process of its own. Writer processes (two per frontend by
default) update tools (`dynamic.tool.update`, a new description) at a fixed rate, spread
round robin over the frontends, for a fixed time. No Python event loop is shared by two
clients, so the driver does not fall behind at 50 writes/s.

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
import multiprocessing
import os
import queue
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import anyio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from docker_probe import remove_executor_containers  # noqa: E402
from mcp_calls import LIST_CHANGED, admin, create_tool, unique_name  # noqa: E402
from postgres_cluster import PgCluster, server_binaries  # noqa: E402
from replica_stack import Backend, ReplicaStack  # noqa: E402
from stack import ERA_LEGACY, ERA_MODERN, Launcher, open_client  # noqa: E402

PRIMING_ATTEMPTS = 20
SETTLE_S = 3.0


class Clock:
    """Arrival times of one client's `tools/list_changed`."""

    def __init__(self, label: str, heard=None):
        self.label = label
        self.arrivals: list[float] = []
        self.heard = heard  # a shared counter the coordinator reads while priming

    async def __call__(self, message) -> None:
        if getattr(message, "method", None) == LIST_CHANGED:
            self.arrivals.append(time.monotonic())
            if self.heard is not None:
                with self.heard.get_lock():
                    self.heard.value += 1


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def wait_for(event, poll_s: float = 0.02) -> None:
    while not event.is_set():
        await anyio.sleep(poll_s)


def listener_process(label: str, url: str, headers: dict, era: str, heard, stop, results) -> None:
    """One client in a process of its own: it hears until `stop`, then reports its arrivals."""

    async def main() -> None:
        clock = Clock(label, heard)
        async with open_client(url, era, clock, headers) as client:
            if era == ERA_MODERN:
                async with client.listen(tools_list_changed=True):
                    await wait_for(stop)
            else:
                await wait_for(stop)
        results.put(("listener", label, clock.arrivals))

    anyio.run(main)


def writer_process(
    index: int, url: str, headers: dict, tools: list[str], rate: float, writers: int, count: int, began, results
) -> None:
    """Once connected, says so and waits for the start time in `began`; then writes k = index,
    index + writers, ... of the run at `began + k / rate`, each on its own tool in turn,
    concurrently; reports (sent, acknowledged) of each success and the failures."""

    async def main() -> None:
        writes: list[tuple[float, float]] = []
        failures: Counter = Counter()
        async with open_client(url, ERA_MODERN, None, headers) as client:
            await client.list_tools()  # the client's first call fetches the list; not a write's cost
            results.put(("ready", index, None))
            while began.value == 0.0:
                await anyio.sleep(0.01)

            async def write(k: int) -> None:
                sent = time.monotonic()
                patch = {"description": f"write {k}"}
                result = await client.call_tool("dynamic.tool.update", {"name": tools[k % len(tools)], "patch": patch})
                acked = time.monotonic()
                if result.is_error:
                    failures[" ".join(getattr(b, "text", "") for b in result.content)[:120]] += 1
                else:
                    writes.append((sent, acked))

            async with anyio.create_task_group() as group:
                for k in range(index, count, writers):
                    await anyio.sleep(max(0.0, began.value + k / rate - time.monotonic()))
                    group.start_soon(write, k)
        results.put(("writer", index, (writes, dict(failures))))

    anyio.run(main)


async def prime(writer, tool: str, heard: list, labels: list[str]) -> None:
    """Change a tool until every client has heard of it (legacy clients open their GET stream
    in the background, listeners start in their own processes)."""
    for attempt in range(PRIMING_ATTEMPTS):
        await admin(writer, "dynamic.tool.update", {"name": tool, "patch": {"description": f"priming {attempt}"}})
        with anyio.move_on_after(1.0):
            while any(counter.value == 0 for counter in heard):
                await anyio.sleep(0.01)
        if all(counter.value for counter in heard):
            return
    raise SystemExit(f"never heard: {[label for label, c in zip(labels, heard, strict=True) if not c.value]}")


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


def collect(results, expected: int, timeout_s: float, what: str) -> list:
    """`expected` reports from child processes, or an exit that says how many never came."""
    got = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expected:
            got.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
    except queue.Empty:
        raise SystemExit(f"only {len(got)} of {expected} {what} reported within {timeout_s:g} s") from None
    return got


async def run(args: argparse.Namespace) -> None:
    bin_dir = server_binaries()
    if bin_dir is None:
        raise SystemExit("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    log_dir = Path(tempfile.mkdtemp(prefix="dmcp-bench-propagation-"))
    launcher = Launcher(log_dir, f"bench{uuid.uuid4().hex[:8]}")
    cluster = PgCluster(bin_dir)
    # Every client and writer has a process of its own, so that no single Python event loop
    # sits on the measured path; time.monotonic() is the same clock in all of them.
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    stop = spawn.Event()
    children: list = []
    try:
        stack = ReplicaStack.start(launcher, Backend.postgres(cluster), registries=2)
        # The guard (8 calls at once, 300 a minute per caller by default) would refuse writes, not measure them.
        unguarded = {"MCP_TOOL_MAX_CONCURRENCY": "256", "MCP_TOOL_MAX_CALLS_PER_WINDOW": "1000000"}
        frontends = stack.frontends([0, 0, 1], legacy_sessions=True, **unguarded)
        names = ["A (registry 1)", "B (registry 1)", "C (registry 2)"]
        labels: list[str] = []
        heard: list = []
        for name, frontend in zip(names, frontends, strict=True):
            for era, kind in [(ERA_MODERN, "2026-07-28 listener"), (ERA_LEGACY, "legacy session")]:
                label = f"{name}, {kind}"
                counter = spawn.Value("i", 0)
                child = spawn.Process(
                    target=listener_process,
                    args=(label, frontend.url, frontend.headers, era, counter, stop, results),
                    daemon=True,
                )
                child.start()
                children.append(child)
                labels.append(label)
                heard.append(counter)

        async with open_client(frontends[0].url, ERA_MODERN, None, frontends[0].headers) as setup:
            tools = [unique_name("propagation") for _ in range(args.tools)]
            for tool in tools:
                await create_tool(setup, tool)
            await prime(setup, tools[0], heard, labels)
        await anyio.sleep(1.0)
        primed_at = time.monotonic()

        # Writer i serves writes i, i + W, ...: with W a multiple of three, each writer stays
        # on one frontend, and the writes go round robin over the frontends.
        writers = args.writers_per_frontend * len(frontends)
        count = int(args.seconds * args.rate)
        began = spawn.Value("d", 0.0)
        for index in range(writers):
            frontend = frontends[index % len(frontends)]
            child = spawn.Process(
                target=writer_process,
                args=(index, frontend.url, frontend.headers, tools, args.rate, writers, count, began, results),
                daemon=True,
            )
            child.start()
            children.append(child)
        collect(results, writers, 60, "writers (connected)")
        began.value = time.monotonic() + 0.1
        print(f"writing {args.rate:g}/s for {args.seconds:g} s over {len(frontends)} frontends "
              f"from {writers} writer processes ...", flush=True)
        reports = collect(results, writers, args.seconds + 120, "writers")
        await anyio.sleep(SETTLE_S)
        stop.set()
        reports += collect(results, len(labels), 60, "listeners")

        writes: list[tuple[float, float]] = []
        failures: Counter = Counter()
        arrivals: dict[str, list[float]] = {}
        for kind, key, payload in reports:
            if kind == "writer":
                writes += payload[0]
                failures.update(payload[1])
            else:
                arrivals[key] = [t for t in payload if t > primed_at]

        achieved = len(writes) / (max(w[1] for w in writes) - min(w[0] for w in writes)) if writes else 0.0
        acks = [(acked - sent) * 1000 for sent, acked in writes]
        print(f"\nwrites acknowledged: {len(writes)} ({achieved:.1f}/s); failed: {sum(failures.values())}")
        for message, count_ in failures.most_common(5):
            print(f"  {count_} x {message}")
        if acks:
            print(
                f"write latency (sent to ack): p50 {percentile(acks, 0.5):.1f} ms, "
                f"p99 {percentile(acks, 0.99):.1f} ms, max {max(acks):.1f} ms"
            )
        print("\n| client | notifications | from ack p50 | p99 | max | from send p50 | p99 | missed | duplicates |")
        print("|---|---|---|---|---|---|---|---|---|")
        for label in labels:
            clock = Clock(label)
            clock.arrivals = arrivals.get(label, [])
            print(row(clock, writes))
        load1 = os.getloadavg()[0]
        print(f"\n1-minute load average at the end: {load1:.1f}; binaries: {os.environ.get('DYNAMIC_MCP_BIN', 'target/debug')}")
    finally:
        stop.set()
        for child in children:
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
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
