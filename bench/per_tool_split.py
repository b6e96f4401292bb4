#!/usr/bin/env python3
"""Where a per-tool call's time goes, with an agent's pause between calls.

Starts the release `dynamic-mcp` over Streamable HTTP with the executor's per-tool
timings on (debug log of `dynamic_mcp_executor::per_tool`), creates the seed's
upper-case tool in container-per-tool mode, and alternates, one at a time:
  - a call of the tool, as a client would (stateless 2026-07-28 JSON-RPC);
  - a `dynamic.tool.get` of it: the same client, HTTP and frontend path, no executor.
It prints the medians of what the client saw, and of the executor's own split of
each call: the time to find the container, to get a place in it, and from the
envelope sent to the outcome read (the container's share). What is left of a call,
after the get's round trip and the container's share, is the frontend and executor
work around a run and their gRPC hop. Nothing is asserted about the timings.

    cargo build --release --bins
    python3 bench/per_tool_split.py [--calls 60] [--pause-ms 300]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from pathlib import Path

from mcp_http import Product

ROOT = Path(__file__).resolve().parent.parent
SEED_CODE = "return { upper: String(args.text).toUpperCase() };"
TIMINGS = re.compile(r"(\w+)_us=(\d+)")
WARM_UP = 5


def median(values: list[float] | list[int]) -> float:
    """The median after the warm-up calls."""
    return statistics.median(values[WARM_UP:]) if len(values) > WARM_UP else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", type=Path, default=ROOT / "target/release/dynamic-mcp")
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--pause-ms", type=int, default=300)
    args = parser.parse_args()

    product = Product(args.binary, {"MCP_LOG_LEVEL": "warn,dynamic_mcp_executor::per_tool=debug"}).start()
    client = product.client()
    try:
        tool = {"name": "upper", "description": "upper case", "code": SEED_CODE, "isolation": "container-per-tool"}
        client.call_ok("dynamic.tool.create", {"tool": tool})
        calls, gets = [], []
        for _ in range(args.calls + WARM_UP):
            time.sleep(args.pause_ms / 1000)
            began = time.perf_counter()
            client.call_ok("upper", {"args": {"text": "x"}})
            calls.append((time.perf_counter() - began) * 1000)
            began = time.perf_counter()
            client.call_ok("dynamic.tool.get", {"name": "upper"})
            gets.append((time.perf_counter() - began) * 1000)
    finally:
        client.close()
        # The log first: stop() removes the work directory.
        log = (product.workdir / "server.log").read_text()
        product.stop()

    split: dict[str, list[int]] = {}
    for line in log.splitlines():
        if "per-tool call timings" in line:
            for name, micros in TIMINGS.findall(line):
                split.setdefault(name, []).append(int(micros))
    call, get = median(calls), median(gets)
    container = median(split.get("outcome", [])) / 1000
    print(f"{args.calls} calls, {args.pause_ms} ms pause, medians in ms")
    print("| part | ms |")
    print("|---|---|")
    print(f"| the call, as the client saw it | {call:.2f} |")
    print(f"| dynamic.tool.get, as the client saw it (client, HTTP, frontend) | {get:.2f} |")
    print(f"| finding the tool's container | {median(split.get('container', [])) / 1000:.2f} |")
    print(f"| waiting for a place in it | {median(split.get('place_wait', [])) / 1000:.2f} |")
    print(f"| in the container: envelope sent to outcome read | {container:.2f} |")
    print(f"| the rest: frontend and executor around the run, gRPC | {call - get - container:.2f} |")


if __name__ == "__main__":
    main()
