#!/usr/bin/env python3
"""Speed of dynamic-mcp, every row in one run on one machine, as one table.

Each row starts the release `dynamic-mcp` over Streamable HTTP (it starts its registry
and executor), creates the seed's upper-case tool, and calls it through MCP as a client
would: stateless 2026-07-28 JSON-RPC over HTTP/1.1 keep-alive. Latency rows call one at
a time from Python; rate rows use `wrk` (bench/wrk_mcp.lua), which a Python client could
not keep up with. Every answer is checked (an error fails the row); nothing is asserted
about the timings.

Rows:
  docker-run     the hardened `docker run --rm -i` of the same code (the baseline)
  defaults       our defaults (the warm pool on, sized by demand), with an agent's pause
                 between calls, and back to back
  defaults-pause the first half of `defaults` alone, for A/B rounds of two builds
  cold           the pool off: a fresh container per call
  pool-4         a fixed pool of 4 (MCP_EXECUTOR_WARM_POOL_SIZE=4)
  per-tool       a tool with isolation "container-per-tool" (a fresh worker thread per call),
                 with an agent's pause and back to back
  per-tool-2cpu  per-tool mode back to back with MCP_SANDBOX_PER_TOOL_CPU_LIMIT=2
  per-tool-process  the same with MCP_SANDBOX_PER_TOOL_REALM=process (a fresh process per call)
  control-plane  dynamic.tool.get and tools/list with 1,000 stored tools
Columns: p50/p95/p99 at concurrency 1, calls/s at concurrency 1, 4 and 16, what limited
the rate (CPU, container creation, or the client), and the resident memory of the three
processes idle and under load.

    cargo build --release --bins
    python3 bench/speed.py [--calls 100] [--pause-ms 300] [--seconds 10] [--rows defaults,cold]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mcp_http import REPO, CpuMeter, Product, StatelessClient, run_wrk  # noqa: E402

CODE = "const { text } = args;\nreturn { upper: String(text).toUpperCase() };"
ARGS = {"args": {"text": "hello"}}
IMAGE = "dynamic-mcp-sandbox:latest"
CONCURRENCIES = (1, 4, 16)
CONTROL_PLANE_TOOLS = 1000


@dataclass
class Row:
    name: str
    latency: dict[str, float] = field(default_factory=dict)
    rates: dict[int, float] = field(default_factory=dict)
    limits: dict[int, str] = field(default_factory=dict)
    rss_idle: dict[str, float] = field(default_factory=dict)
    rss_load: dict[str, float] = field(default_factory=dict)
    note: str = ""


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))]

    return {"p50": statistics.median(ordered), "p95": at(0.95), "p99": at(0.99), "n": len(ordered)}


def containers_started(executor_id: str, since: float, until: float) -> int:
    listed = subprocess.run(
        ["docker", "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}", "--filter", "type=container",
         "--filter", "event=start", "--filter", f"label=dynamic-mcp.executor={executor_id}", "--format", "{{.ID}}"],
        capture_output=True, text=True, timeout=60,
    )
    return len(listed.stdout.split())


def idle_pool_memory_mib(executor_id: str) -> list[float]:
    """The memory cgroup usage of each idle warm container of an executor."""
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=dynamic-mcp.executor={executor_id}",
         "--filter", "label=dynamic-mcp.role=run"],
        capture_output=True, text=True, timeout=60,
    ).stdout.split()
    if not ids:
        return []
    stats = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", *ids],
        capture_output=True, text=True, timeout=120,
    ).stdout.splitlines()
    units = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0, "B": 1 / 1024 / 1024}
    used = []
    for line in stats:
        amount = line.split("/")[0].strip()
        for unit, factor in units.items():
            if amount.endswith(unit):
                used.append(float(amount[: -len(unit)]) * factor)
                break
    return used


def limit_of(host_cpu: float, client_cpu: float, containers_per_s: float, rate: float) -> str:
    if client_cpu >= 0.9:
        return "client"
    if host_cpu >= 0.85:
        return "container creation" if containers_per_s >= 0.5 * rate else "CPU"
    return f"none (CPU {host_cpu:.0%})"


def timed_calls(client: StatelessClient, tool: str, calls: int, pause_s: float) -> list[float]:
    return [took for _, took in dated_calls(client, tool, calls, pause_s)]


def dated_calls(client: StatelessClient, tool: str, calls: int, pause_s: float) -> list[tuple[float, float]]:
    """(wall-clock start, ms) of each call, one at a time with `pause_s` before each."""
    samples = []
    for i in range(calls + 3):
        time.sleep(pause_s)
        began_at, began = time.time(), time.perf_counter()
        result = client.call_ok(tool, ARGS)
        took = (time.perf_counter() - began) * 1000
        if result.get("structuredContent", {}).get("result") != {"upper": "HELLO"}:
            raise RuntimeError(f"unexpected answer: {json.dumps(result)[:300]}")
        if i >= 3:  # the first calls warm connections, caches and the pool's demand estimate
            samples.append((began_at, took))
    return samples


def create_tool(client: StatelessClient, name: str, **fields) -> None:
    client.call_ok("dynamic.tool.create", {"tool": {"name": name, "description": "bench", "code": CODE, **fields}})


def rates(product: Product, tool: str, seconds: int, row: Row) -> None:
    executor_id = product.executor_id
    peak: dict[str, float] = {}
    for connections in CONCURRENCIES:
        meter, since = CpuMeter(), time.time()
        sampler = RssSampler(product)
        result = run_wrk(product.port, "tools/call", {"name": tool, "arguments": ARGS}, tool, connections, seconds)
        sampler.stop()
        host_cpu, until = meter.busy_share(), time.time()
        if result.errors:
            raise RuntimeError(f"{row.name}: {result.errors} of {result.requests} calls failed at c={connections}")
        started = containers_started(executor_id, since, until) / max(until - since, 1e-9)
        row.rates[connections] = result.rate
        row.limits[connections] = limit_of(host_cpu, result.client_cpu, started, result.rate)
        for role, mib in sampler.peak.items():
            peak[role] = max(peak.get(role, 0.0), mib)
    row.rss_load = peak


class RssSampler:
    """The highest RSS of each process while a load runs."""

    def __init__(self, product: Product):
        self.product, self.peak, self.done = product, {}, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            for role, mib in self.product.rss_mib().items():
                self.peak[role] = max(self.peak.get(role, 0.0), mib)
            self.done.wait(0.25)

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def product_row(args, name: str, settings: dict[str, str], pause_s: float | None, tool_fields=None) -> Row:
    row = Row(name)
    product = Product(Path(args.binary), settings).start()
    try:
        time.sleep(2)  # let the pool fill and the processes settle before the idle reading
        row.rss_idle = product.rss_mib()
        if settings.get("MCP_EXECUTOR_WARM_POOL_SIZE", "1") != "0":
            idle = idle_pool_memory_mib(product.executor_id)
            if idle:
                row.note = f"{len(idle)} idle warm containers, {statistics.fmean(idle):.1f} MiB each (cgroup memory)"
        client = product.client()
        tool = f"bench.upper{product.port}"
        try:
            create_tool(client, tool, **(tool_fields or {}))
        except RuntimeError as refused:
            row.note = f"not available: {refused}"[:160]
            return row
        if pause_s is not None:
            row.latency = percentiles(timed_calls(client, tool, args.calls, pause_s))
            row.name += f", {int(pause_s * 1000)} ms pause"
        else:
            row.latency = percentiles(timed_calls(client, tool, args.calls, 0))
            rates(product, tool, args.seconds, row)
        client.close()
    finally:
        product.stop()
    return row


def docker_run_row(args) -> Row:
    """The same work as a hardened `docker run --rm -i` through the CLI."""
    command = [
        "docker", "run", "--rm", "-i", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--pids-limit", "128", "--memory", "512m", "--memory-swap", "512m", "--cpus", "1", "--network", "none",
        "--user", "65534:65534", "--init", "--tmpfs", "/tmp:rw,noexec,nosuid,size=16m", IMAGE, "node", "-e",
        "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const {text}=JSON.parse(s);"
        "console.log(JSON.stringify({upper:String(text).toUpperCase()}))})",
    ]

    def once() -> float:
        began = time.perf_counter()
        done = subprocess.run(command, input=b'{"text":"hello"}', capture_output=True, timeout=120)
        if done.returncode != 0 or b"HELLO" not in done.stdout:
            raise RuntimeError(f"docker run failed: {done.stderr[-500:]!r}")
        return (time.perf_counter() - began) * 1000

    row = Row("docker run --rm (baseline)")
    row.latency = percentiles([once() for _ in range(args.docker_calls)])
    for connections in CONCURRENCIES:
        meter, count, stop_at = CpuMeter(), [0], time.monotonic() + args.seconds

        def worker() -> None:
            while time.monotonic() < stop_at:
                once()
                count[0] += 1

        workers = [threading.Thread(target=worker) for _ in range(connections)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        rate = count[0] / args.seconds
        row.rates[connections] = rate
        row.limits[connections] = limit_of(meter.busy_share(), 0.0, rate, rate)
    return row


def control_plane_row(args) -> Row:
    row = Row(f"control plane, {CONTROL_PLANE_TOOLS} tools")
    # Above the default MCP_DYNAMIC_MAX_TOOLS (256), so the catalog can hold them.
    product = Product(Path(args.binary), {"MCP_DYNAMIC_MAX_TOOLS": str(2 * CONTROL_PLANE_TOOLS)}).start()
    try:
        row.rss_idle = product.rss_mib()
        clients = [product.client() for _ in range(8)]
        names = [f"bench.t{i:04d}" for i in range(CONTROL_PLANE_TOOLS)]

        def create_share(k: int) -> None:
            for name in names[k::len(clients)]:
                create_tool(clients[k], name)

        creators = [threading.Thread(target=create_share, args=(k,)) for k in range(len(clients))]
        for c in creators:
            c.start()
        for c in creators:
            c.join()
        listed = clients[0].rpc("tools/list", {})
        if len([t for t in listed["tools"] if t["name"].startswith("bench.t")]) != CONTROL_PLANE_TOOLS:
            raise RuntimeError("not every tool was listed")
        peak: dict[str, float] = {}
        for label, method, params, name in [
            ("dynamic.tool.get", "tools/call", {"name": "dynamic.tool.get", "arguments": {"name": names[500]}},
             "dynamic.tool.get"),
            ("tools/list", "tools/list", {}, None),
        ]:
            meter = CpuMeter()
            sampler = RssSampler(product)
            result = run_wrk(product.port, method, params, name, 16, args.seconds)
            sampler.stop()
            if result.errors:
                raise RuntimeError(f"{label}: {result.errors} of {result.requests} failed")
            row.note += f"{label}: {result.rate:,.0f}/s p50 {result.p50_ms:.2f} ms p99 {result.p99_ms:.2f} ms " \
                        f"(c=16, {limit_of(meter.busy_share(), result.client_cpu, 0, result.rate)}); "
            for role, mib in sampler.peak.items():
                peak[role] = max(peak.get(role, 0.0), mib)
        row.rss_load = peak
        for client in clients:
            client.close()
    finally:
        product.stop()
    return row


def rss_text(rss: dict[str, float]) -> str:
    if not rss:
        return "–"
    parts = [f"{rss.get(role, 0):.0f}" for role in ("frontend", "registry", "executor")]
    return f"{sum(rss.values()):.0f} ({'/'.join(parts)})"


def print_table(rows: list[Row], load: tuple[float, float]) -> None:
    print(f"\nload average before: {load[0]:.2f}, after: {load[1]:.2f}; {os.cpu_count()} cores")
    print("| row | p50 | p95 | p99 | c=1 /s | c=4 /s | c=16 /s | limit at c=16 | RSS idle MiB (f/r/e) | RSS load MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        lat = row.latency
        cells = [f"{lat[k]:.1f}" if k in lat else "–" for k in ("p50", "p95", "p99")]
        cells += [f"{row.rates[c]:.1f}" if c in row.rates else "–" for c in CONCURRENCIES]
        cells.append(row.limits.get(16, "–"))
        cells += [rss_text(row.rss_idle), rss_text(row.rss_load)]
        print(f"| {row.name} | " + " | ".join(cells) + " |")
        if row.note:
            print(f"|   ↳ {row.note} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=str(REPO / "target/release/dynamic-mcp"))
    parser.add_argument("--calls", type=int, default=100, help="latency samples per row")
    parser.add_argument("--docker-calls", type=int, default=20, help="latency samples of the docker run baseline")
    parser.add_argument("--pause-ms", type=int, default=300, help="an agent's pause between calls")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each rate measurement")
    parser.add_argument("--rows", default="docker-run,defaults,cold,pool-4,per-tool,per-tool-process,control-plane")
    args = parser.parse_args()
    if not Path(args.binary).is_file():
        sys.exit(f"{args.binary} is missing: cargo build --release --bins")

    wanted = args.rows.split(",")
    load_before = os.getloadavg()[0]
    rows: list[Row] = []
    pause = args.pause_ms / 1000
    plan = {
        "docker-run": lambda: [docker_run_row(args)],
        "defaults": lambda: [product_row(args, "defaults", {}, pause), product_row(args, "defaults, back to back", {}, None)],
        "defaults-pause": lambda: [product_row(args, "defaults", {}, pause)],
        "cold": lambda: [product_row(args, "cold start (pool off)", {"MCP_EXECUTOR_WARM_POOL_SIZE": "0"}, None)],
        "pool-4": lambda: [product_row(args, "warm pool of 4, back to back", {"MCP_EXECUTOR_WARM_POOL_SIZE": "4"}, None)],
        "per-tool": lambda: [
            product_row(args, "per-tool mode", {}, pause, {"isolation": "container-per-tool"}),
            product_row(args, "per-tool mode, back to back", {}, None, {"isolation": "container-per-tool"}),
        ],
        "per-tool-2cpu": lambda: [
            product_row(
                args,
                "per-tool mode, 2 CPUs per container, back to back",
                {"MCP_SANDBOX_PER_TOOL_CPU_LIMIT": "2"},
                None,
                {"isolation": "container-per-tool"},
            ),
        ],
        "per-tool-process": lambda: [
            product_row(
                args,
                "per-tool mode, process realm",
                {"MCP_SANDBOX_PER_TOOL_REALM": "process"},
                pause,
                {"isolation": "container-per-tool"},
            ),
            product_row(
                args,
                "per-tool mode, process realm, back to back",
                {"MCP_SANDBOX_PER_TOOL_REALM": "process"},
                None,
                {"isolation": "container-per-tool"},
            ),
        ],
        "control-plane": lambda: [control_plane_row(args)],
    }
    for name in wanted:
        if name not in plan:
            sys.exit(f"unknown row '{name}'; rows: {', '.join(plan)}")
        print(f"measuring {name}…", file=sys.stderr)
        rows += plan[name]()
    print_table(rows, (load_before, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
