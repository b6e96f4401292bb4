#!/usr/bin/env python3
"""A soak: ten minutes (by default) of mixed load against the release build, with
hostile connections alongside, printing a table of what grew and what failed.

Load, all at once, through MCP (stateless 2026-07-28 over HTTP):
  - callers calling a dynamic tool back to back;
  - a writer creating, updating and deleting tools;
  - a sandbox session user (initialize, exec, run_js, stop), over and over;
  - run_js_ephemeral calls;
  - slowloris connections (a header line every 5 s) and idle connections, each
    reopened when the server closes it.
Every 10 s it samples the RSS and open file descriptors of the three processes and the
executor's containers; per window it reports calls, p50/p99, errors by kind and how many
hostile connections the server closed. Nothing is asserted: read the table for growth.

    cargo build --release --bins
    python3 bench/soak.py [--minutes 10] [--callers 4] [--slowloris 50] [--idle 100]
"""

from __future__ import annotations

import argparse
import collections
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mcp_http import REPO, Product, StatelessClient  # noqa: E402

CODE = "const { text } = args;\nreturn { upper: String(text).toUpperCase() };"
SAMPLE_EVERY = 10.0


class Tally:
    """Latencies and errors per time window, shared by every load thread."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.began = time.monotonic()
        self.lock = threading.Lock()
        self.latencies: dict[int, list[float]] = collections.defaultdict(list)
        self.errors: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
        self.calls: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
        self.closed_by_server: dict[int, int] = collections.defaultdict(int)

    def window(self) -> int:
        return int((time.monotonic() - self.began) // self.window_s)

    def ok(self, kind: str, took_ms: float | None = None) -> None:
        with self.lock:
            w = self.window()
            self.calls[w][kind] += 1
            if took_ms is not None:
                self.latencies[w].append(took_ms)

    def failed(self, kind: str, error: Exception) -> None:
        with self.lock:
            w = self.window()
            self.calls[w][kind] += 1
            self.errors[w][f"{kind}: {str(error)[:60]}"] += 1

    def closed(self) -> None:
        with self.lock:
            self.closed_by_server[self.window()] += 1


def loop(stop: threading.Event, body) -> None:
    while not stop.is_set():
        body()


def caller(product: Product, tool: str, tally: Tally, stop: threading.Event) -> None:
    client = product.client()

    def once() -> None:
        began = time.perf_counter()
        try:
            client.call_ok(tool, {"args": {"text": "soak"}})
            tally.ok("call", (time.perf_counter() - began) * 1000)
        except Exception as error:  # noqa: BLE001 - every failure is counted by kind
            tally.failed("call", error)
            reconnect(client)

    loop(stop, once)


def reconnect(client: StatelessClient) -> None:
    client.close()
    client.conn = StatelessClient(client.port).conn


def writer(product: Product, tally: Tally, stop: threading.Event) -> None:
    client = product.client()
    counter = [0]

    def once() -> None:
        counter[0] += 1
        name = f"soak.w{counter[0] % 20:02d}"
        try:
            try:
                client.call_ok("dynamic.tool.delete", {"name": name})
            except RuntimeError:
                pass  # not there yet
            client.call_ok("dynamic.tool.create", {"tool": {"name": name, "description": "soak", "code": CODE}})
            client.call_ok("dynamic.tool.update", {"name": name, "patch": {"description": "soak, updated"}})
            tally.ok("write")
        except Exception as error:  # noqa: BLE001
            tally.failed("write", error)
            reconnect(client)
        stop.wait(0.5)

    loop(stop, once)


def session_user(product: Product, tally: Tally, stop: threading.Event) -> None:
    client = product.client()

    def once() -> None:
        try:
            session = client.call_ok("sandbox.initialize", {})["structuredContent"]["sessionId"]
            try:
                client.call_ok("sandbox.exec", {"sessionId": session, "commands": ["echo a > f", "cat f", "ls"]})
                client.call_ok("sandbox.run_js", {"sessionId": session, "code": "return 1 + 1;"})
            finally:
                client.call_ok("sandbox.stop", {"sessionId": session})
            tally.ok("session")
        except Exception as error:  # noqa: BLE001
            tally.failed("session", error)
            reconnect(client)

    loop(stop, once)


def ephemeral(product: Product, tally: Tally, stop: threading.Event) -> None:
    client = product.client()

    def once() -> None:
        try:
            client.call_ok("run_js_ephemeral", {"code": "return args.n * 2;", "args": {"n": 21}})
            tally.ok("ephemeral")
        except Exception as error:  # noqa: BLE001
            tally.failed("ephemeral", error)
            reconnect(client)
        stop.wait(0.2)

    loop(stop, once)


def hostile(product: Product, tally: Tally, stop: threading.Event, drip_s: float | None) -> None:
    """One connection that sends a header line every `drip_s` (slowloris) or nothing (idle);
    reopened whenever the server closes it."""
    while not stop.is_set():
        try:
            sock = socket.create_connection(("127.0.0.1", product.port), timeout=5)
        except OSError:
            stop.wait(1)
            continue
        sock.settimeout(drip_s or 5)
        try:
            if drip_s is not None:
                sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            while not stop.is_set():
                if drip_s is not None:
                    sock.sendall(b"X-Drip: 1\r\n")
                try:
                    if sock.recv(1024) == b"":
                        tally.closed()
                        break
                except TimeoutError:
                    continue
        except OSError:
            tally.closed()
        finally:
            sock.close()


def fd_count(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def executor_containers(executor_id: str) -> int:
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=dynamic-mcp.executor={executor_id}"],
        capture_output=True, text=True, timeout=30,
    )
    return len(listed.stdout.split())


def sampler(product: Product, samples: list, stop: threading.Event, began: float) -> None:
    while not stop.wait(SAMPLE_EVERY):
        pids = product.pids()
        samples.append(
            {
                "t": time.monotonic() - began,
                "rss": product.rss_mib(),
                "fds": {role: fd_count(pid) for role, pid in pids.items()},
                "containers": executor_containers(product.executor_id),
            }
        )


def print_table(tally: Tally, samples: list, windows: int) -> None:
    print("| min | calls | p50 ms | p99 ms | other ok | errors | closed hostile | RSS MiB f/r/e | FDs f/r/e | containers |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for w in range(windows):
        lat = sorted(tally.latencies.get(w, []))
        p50 = f"{statistics.median(lat):.1f}" if lat else "–"
        p99 = f"{lat[min(len(lat) - 1, int(len(lat) * 0.99))]:.1f}" if lat else "–"
        calls = tally.calls.get(w, collections.Counter())
        other = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()) if k != "call")
        errors = sum(tally.errors.get(w, collections.Counter()).values())
        in_window = [s for s in samples if int(s["t"] // tally.window_s) == w]
        last = in_window[-1] if in_window else None
        rss = "/".join(f"{last['rss'].get(r, 0):.0f}" for r in ("frontend", "registry", "executor")) if last else "–"
        fds = "/".join(str(last["fds"].get(r, 0)) for r in ("frontend", "registry", "executor")) if last else "–"
        containers = str(last["containers"]) if last else "–"
        print(f"| {w + 1} | {calls['call']} | {p50} | {p99} | {other} | {errors} | "
              f"{tally.closed_by_server.get(w, 0)} | {rss} | {fds} | {containers} |")
    kinds = collections.Counter()
    for counter in tally.errors.values():
        kinds.update(counter)
    print("\nerrors by kind:" + ("" if kinds else " none"))
    for kind, count in kinds.most_common():
        print(f"  {count:6d}  {kind}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=str(REPO / "target/release/dynamic-mcp"))
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--window-s", type=float, default=60, help="length of one table row")
    parser.add_argument("--callers", type=int, default=4)
    parser.add_argument("--slowloris", type=int, default=50)
    parser.add_argument("--idle", type=int, default=100)
    args = parser.parse_args()
    if not Path(args.binary).is_file():
        sys.exit(f"{args.binary} is missing: cargo build --release --bins")

    product = Product(Path(args.binary), {}).start()
    stop = threading.Event()
    tally = Tally(args.window_s)
    samples: list = []
    try:
        setup = product.client()
        setup.call_ok("dynamic.tool.create", {"tool": {"name": "soak.upper", "description": "soak", "code": CODE}})
        setup.close()
        threads = [threading.Thread(target=caller, args=(product, "soak.upper", tally, stop)) for _ in range(args.callers)]
        threads += [
            threading.Thread(target=writer, args=(product, tally, stop)),
            threading.Thread(target=session_user, args=(product, tally, stop)),
            threading.Thread(target=ephemeral, args=(product, tally, stop)),
        ]
        threads += [threading.Thread(target=hostile, args=(product, tally, stop, 5.0)) for _ in range(args.slowloris)]
        threads += [threading.Thread(target=hostile, args=(product, tally, stop, None)) for _ in range(args.idle)]
        threads.append(threading.Thread(target=sampler, args=(product, samples, stop, tally.began)))
        for thread in threads:
            thread.daemon = True
            thread.start()
        time.sleep(args.minutes * 60)
    finally:
        stop.set()
        time.sleep(1)
        windows = max(1, int(args.minutes * 60 // args.window_s))
        print_table(tally, samples, windows)
        product.stop()


if __name__ == "__main__":
    main()
