#!/usr/bin/env python3
"""Kept-alive HTTP latency of the frontend itself, through `wrk`: stateless 2026-07-28
`tools/call system.health` (bench/wrk_mcp.lua: every answer checked) and `GET /healthz`,
on the same number of kept-alive connections, for one build or two ("before" and
"after"). It shows whether answers stall on Nagle's algorithm meeting the client's
delayed ACK (a cluster of calls at about 40 ms: the `stall` column) and how far p99 is
from p50. system.health never reaches the executor, so no container is involved. Prints
a table; asserts nothing about the figures (docs/BENCHMARKS.md has them).

    cargo build --release --bins
    python3 bench/http_keepalive.py [--connections 1,4,16] [--seconds 15]
        [--binary target/release/dynamic-mcp] [--before OLD/dynamic-mcp]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mcp_http import REPO, Product, ensure_wrk, run_wrk  # noqa: E402


def healthz_rate(port: int, connections: int, seconds: int) -> float:
    """Requests per second of `GET /healthz`, from wrk's summary."""
    threads = max(1, min(2, connections))
    done = subprocess.run(
        [ensure_wrk(), "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
         f"http://127.0.0.1:{port}/healthz"],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    )
    found = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if not found:
        raise RuntimeError(f"no rate in wrk's output: {done.stdout}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", default="1,4,16", help="comma-separated connection counts")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--binary", default=str(REPO / "target/release/dynamic-mcp"))
    parser.add_argument("--before", help="another build's dynamic-mcp, measured alongside")
    args = parser.parse_args()

    builds = [("after", Path(args.binary))] + ([("before", Path(args.before))] if args.before else [])
    rows = []
    for connections in [int(c) for c in args.connections.split(",")]:
        for label, binary in builds:
            product = Product(binary, {}).start()
            try:
                calls = run_wrk(product.port, "tools/call", {"name": "system.health", "arguments": {}},
                                "system.health", connections, args.seconds)
                if calls.errors:
                    sys.exit(f"{label}: {calls.errors} calls failed")
                rows.append((connections, label, calls, healthz_rate(product.port, connections, args.seconds)))
            finally:
                product.stop()
    print(f"{'conns':>5} {'build':<7} {'calls/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
          f"{'stall':>6} {'healthz/s':>10}")
    for connections, label, calls, healthz in rows:
        print(f"{connections:>5} {label:<7} {calls.rate:>8.0f} {calls.p50_ms:>7.2f} {calls.p90_ms:>7.2f} "
              f"{calls.p99_ms:>7.2f} {calls.stall_share:>6.1%} {healthz:>10.0f}")
    print("stall: the share of calls that took 36-48 ms. load average:", open("/proc/loadavg").read().split()[:3])


if __name__ == "__main__":
    main()
