#!/usr/bin/env python3
"""End-to-end latency of a dynamic tool call, against `docker run --rm`.

Starts `dynamic-mcp` over Streamable HTTP (registry and executor as its
children), creates the seed's upper-case tool, calls it sequentially through
the real Python MCP client, and prints p50/p95/mean. Then times the same work
as a hardened `docker run --rm` for the baseline. Prints figures; asserts
nothing about them (speed goals live here, not in tests).

    python3 bench/tool_call_latency.py [--calls 30] [--mode 2026-07-28|legacy]
        [--warm-pool N] [--pause-ms MS] [--skip-docker-run]

--warm-pool sets MCP_EXECUTOR_WARM_POOL_SIZE for the executor (0 = off).
--pause-ms waits between calls, as an agent does between tool calls; with
the pool on it gives the background refill time to replace the container
just used (back to back, calls outrun the refill and start cold).
"""

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from mcp import Client

REPO = Path(__file__).resolve().parent.parent
CODE = "const { text } = args;\nreturn { upper: String(text).toUpperCase() };"
IMAGE = os.environ.get("MCP_SANDBOX_ALLOWED_IMAGES", "dynamic-mcp-sandbox:latest").split(",")[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, deadline_s: float = 60) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"server not ready at {url} after {deadline_s} s")


def summarize(label: str, samples_ms: list[float]) -> None:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    print(
        f"{label:<34} n={len(ordered):<4} p50={statistics.median(ordered):7.1f} ms  "
        f"p95={p95:7.1f} ms  mean={statistics.fmean(ordered):7.1f} ms"
    )


async def bench_mcp(url: str, calls: int, mode: str, pause_s: float) -> list[float]:
    async with Client(url, mode=mode) as client:
        name = f"bench.upper{os.getpid()}"
        created = await client.call_tool(
            "dynamic.tool.create", {"tool": {"name": name, "description": "bench", "code": CODE}}
        )
        if created.is_error:
            sys.exit(f"create failed: {created.content}")
        samples = []
        for i in range(calls + 2):
            await asyncio.sleep(pause_s)
            start = time.perf_counter()
            res = await client.call_tool(name, {"args": {"text": "hello"}})
            elapsed = (time.perf_counter() - start) * 1000
            if res.is_error or res.structured_content["result"] != {"upper": "HELLO"}:
                sys.exit(f"call failed: {res}")
            if i >= 2:  # the first calls warm caches and connections
                samples.append(elapsed)
        await client.call_tool("dynamic.tool.delete", {"name": name})
        return samples


def bench_docker_run(calls: int) -> list[float]:
    cmd = [
        "docker", "run", "--rm", "-i", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--pids-limit", "128", "--memory", "512m",
        "--memory-swap", "512m", "--cpus", "1", "--network", "none", "--user", "65534:65534",
        "--init", "--tmpfs", "/tmp:rw,noexec,nosuid,size=16m", IMAGE, "node", "-e",
        "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const {text}=JSON.parse(s);"
        "console.log(JSON.stringify({upper:String(text).toUpperCase()}))})",
    ]
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        subprocess.run(cmd, input=b'{"text":"hello"}', check=True, capture_output=True)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--mode", default="2026-07-28", choices=["2026-07-28", "legacy"])
    parser.add_argument("--binary", default=str(REPO / "target/release/dynamic-mcp"))
    parser.add_argument("--warm-pool", type=int, default=0, help="MCP_EXECUTOR_WARM_POOL_SIZE (0 = off)")
    parser.add_argument("--pause-ms", type=int, default=0, help="pause before each call")
    parser.add_argument("--skip-docker-run", action="store_true", help="skip the `docker run --rm` baseline")
    args = parser.parse_args()

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(
            os.environ,
            MCP_TRANSPORT="http",
            MCP_PORT=str(port),
            MCP_DYNAMIC_STORE=f"{tmp}/tools.json",
            MCP_EXECUTOR_ID=f"bench-{os.getpid()}",
            MCP_LOG_LEVEL="warn",
            MCP_EXECUTOR_WARM_POOL_SIZE=str(args.warm_pool),
        )
        server = subprocess.Popen([args.binary], env=env, stdin=subprocess.DEVNULL)
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz")
            if args.warm_pool:
                time.sleep(3)  # let the pool warm up before the first call
            url = f"http://127.0.0.1:{port}/mcp"
            mcp_samples = asyncio.run(bench_mcp(url, args.calls, args.mode, args.pause_ms / 1000))
        finally:
            server.terminate()
            server.wait(timeout=20)
    label = f"dynamic tool call ({args.mode}, HTTP, pool {args.warm_pool}, pause {args.pause_ms} ms)"
    summarize(label, mcp_samples)
    if not args.skip_docker_run:
        summarize("docker run --rm (hardened)", bench_docker_run(min(args.calls, 15)))


if __name__ == "__main__":
    main()
