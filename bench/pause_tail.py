#!/usr/bin/env python3
"""The slowest of a row of paused calls, beside what Docker did around each.

Starts the release `dynamic-mcp` over Streamable HTTP (with any MCP_ settings given
as NAME=value), creates the seed's upper-case tool, and calls it one at a time with
an agent's pause, as `speed.py --rows defaults-pause` does, while `docker events`
records the create, start, kill and destroy of the executor's containers. It prints
p50/p95/p99 and, for each of the slowest calls, the calls and container events of
the second before it, relative to its start: whether a warm container was still
starting, or a used one still being torn down, when it came. Nothing is asserted.

    cargo build --release --bins
    python3 bench/pause_tail.py [--calls 200] [--pause-ms 300] [--slowest 3] [MCP_EXECUTOR_WARM_POOL_MIN=2 ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mcp_http import REPO, Product  # noqa: E402
from speed import create_tool, dated_calls, percentiles  # noqa: E402

EVENTS = ("create", "start", "kill", "destroy")


class DockerEvents:
    """The container events of one executor, as (time, action, short id)."""

    def __init__(self, executor_id: str):
        self.seen: list[tuple[float, str, str]] = []
        self.process = subprocess.Popen(
            [
                "docker", "events", "--format", "{{json .}}",
                "--filter", "type=container",
                "--filter", f"label=dynamic-mcp.executor={executor_id}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            if event.get("Action") in EVENTS:
                self.seen.append((event["timeNano"] / 1e9, event["Action"], event["id"][:8]))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=str(REPO / "target/release/dynamic-mcp"))
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--pause-ms", type=int, default=300)
    parser.add_argument("--slowest", type=int, default=3, help="how many of the slowest calls to show")
    parser.add_argument("settings", nargs="*", help="MCP_NAME=value for the server")
    args = parser.parse_args()
    if not Path(args.binary).is_file():
        sys.exit(f"{args.binary} is missing: cargo build --release --bins")
    settings = dict(setting.split("=", 1) for setting in args.settings)

    product = Product(Path(args.binary), settings).start()
    events = DockerEvents(product.executor_id)
    try:
        time.sleep(2)  # the pool fills, as in speed.py
        client = product.client()
        tool = f"bench.upper{product.port}"
        create_tool(client, tool)
        calls = dated_calls(client, tool, args.calls, args.pause_ms / 1000)
        client.close()
        time.sleep(0.5)  # the last call's events arrive
    finally:
        events.stop()
        product.stop()

    figures = percentiles([took for _, took in calls])
    print(f"{figures['n']} calls: p50 {figures['p50']:.1f} p95 {figures['p95']:.1f} p99 {figures['p99']:.1f} ms")
    for began_at, took in sorted(calls, key=lambda call: -call[1])[: args.slowest]:
        print(f"\na call of {took:.1f} ms; the second before it (s from its start):")
        window = [(t, f"call of {ms:.1f} ms") for t, ms in calls if began_at - 1 <= t < began_at]
        window += [(t, f"{action} {short_id}") for t, action, short_id in events.seen if began_at - 1 <= t <= began_at + took / 1000]
        for t, what in sorted(window):
            print(f"  {t - began_at:+.3f} {what}")


if __name__ == "__main__":
    main()
