#!/usr/bin/env python3
"""What controlled egress adds to a call's latency, through the real MCP client.

Starts the test world of the egress e2e tests (a Docker network of its own with two web servers
in containers; tests/e2e/egress_world.py), then the release `dynamic-mcp` over Streamable HTTP
with egress settings pointing at it, and calls `run_js_ephemeral` (a fresh hardened container per
call, as a tool run) one call at a time, for each setup:

  none         no network.allow; the code returns at once
  allow        network.allow set; the code makes no request (the proxy, its socket and the shim)
  http         one plain-HTTP fetch through the proxy
  https        one HTTPS GET through a CONNECT tunnel (TLS end to end)
  secret       one HTTPS fetch with a secret (TLS intercepted by the proxy, value put in)

Besides the whole call, the code times its own requests (first and second, the second on a
kept-alive connection where there is one). Then, in a sandbox session with network.allow, it
times `node -e 0` started with and without the shim, to isolate the shim's start-up cost. Prints
figures; asserts nothing about them.

    python3 bench/egress_latency.py [--calls 30] [--pause-ms 300] [--binary target/release/dynamic-mcp]
"""

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from mcp import Client  # noqa: E402

from egress_world import ALLOWED, EgressWorld  # noqa: E402
from tool_call_latency import free_port, summarize, wait_ready  # noqa: E402

TIMED = """
const times = [];
for (let i = 0; i < 2; i++) {
  const started = performance.now();
  await args.request();
  times.push(performance.now() - started);
}
return times;
"""

REQUESTS = {
    "http": "async () => (await fetch('http://api.allowed.test/bench')).text()",
    "https": """() => new Promise((resolve, reject) => {
        const https = globalThis.httpsModule;
        https.get('https://api.allowed.test/bench', { ca: args.ca, agent: globalThis.keepAlive }, (r) => {
          r.resume(); r.on('end', resolve);
        }).on('error', reject);
      })""",
    "secret": """async () => (await fetch('https://api.allowed.test/bench',
        { headers: { authorization: 'Bearer ' + process.env.API_KEY } })).text()""",
}


def code_for(setup: str) -> str:
    if setup in ("none", "allow"):
        return "return [];"
    prelude = ""
    if setup == "https":
        prelude = (
            "globalThis.httpsModule = await import('node:https');\n"
            "globalThis.keepAlive = new globalThis.httpsModule.Agent({ keepAlive: true });\n"
        )
    return prelude + TIMED.replace("args.request()", f"({REQUESTS[setup]})()")


def call_arguments(setup: str, ca: str) -> dict:
    arguments = {"code": code_for(setup), "args": {"ca": ca}, "timeoutMs": 20000}
    if setup != "none":
        arguments["network"] = {"allow": [ALLOWED]}
    if setup == "secret":
        arguments["secrets"] = ["API_KEY"]
    return arguments


async def bench_calls(url: str, setup: str, calls: int, pause_s: float, ca: str) -> tuple[list, list, list]:
    async with Client(url, mode="2026-07-28") as client:
        walls, firsts, seconds = [], [], []
        for i in range(calls + 2):
            await asyncio.sleep(pause_s)
            start = time.perf_counter()
            result = await client.call_tool("run_js_ephemeral", call_arguments(setup, ca))
            elapsed = (time.perf_counter() - start) * 1000
            if result.is_error:
                sys.exit(f"{setup}: the call failed: {result.content}")
            if i < 2:  # the first calls warm caches and connections
                continue
            walls.append(elapsed)
            times = result.structured_content["result"]
            if times:
                firsts.append(times[0])
                seconds.append(times[1])
        return walls, firsts, seconds


STARTUP = """
const { spawnSync } = await import("node:child_process");
const env = { ...process.env };
delete env.NODE_OPTIONS;
const time = (argv) => {
  const started = performance.now();
  const ran = spawnSync("node", argv, { env });
  if (ran.status !== 0) throw new Error(String(ran.stderr));
  return performance.now() - started;
};
const plain = [], shim = [];
for (let i = 0; i < args.runs; i++) {
  plain.push(time(["-e", "0"]));
  shim.push(time(["--import=file:///run/dynamic-mcp-egress/egress.mjs", "-e", "0"]));
}
return { plain, shim };
"""


async def bench_startup(url: str, runs: int) -> dict:
    async with Client(url, mode="2026-07-28") as client:
        started = await client.call_tool("sandbox.initialize", {"network": {"allow": [ALLOWED]}})
        session = started.structured_content["sessionId"]
        try:
            result = await client.call_tool(
                "sandbox.run_js", {"sessionId": session, "code": STARTUP, "args": {"runs": runs}, "timeoutMs": 120000}
            )
            if result.is_error:
                sys.exit(f"start-up timing failed: {result.content}")
            return result.structured_content["result"]
        finally:
            await client.call_tool("sandbox.stop", {"sessionId": session})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--pause-ms", type=int, default=300, help="pause before each call")
    parser.add_argument("--startup-runs", type=int, default=20)
    parser.add_argument("--binary", default=str(REPO / "target/release/dynamic-mcp"))
    parser.add_argument("--setups", default="none,allow,http,https,secret")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        world = EgressWorld(Path(tmp))
        try:
            secrets_file = Path(tmp) / "secrets.json"
            value = secrets.token_hex(16)
            secrets_file.write_text(json.dumps({"secrets": [{"name": "API_KEY", "value": value, "hosts": [ALLOWED]}]}))
            port = free_port()
            env = dict(
                os.environ,
                **world.executor_settings(),
                MCP_SANDBOX_EGRESS_ALLOW_PLAIN_HTTP="true",
                MCP_SANDBOX_SECRETS_FILE=str(secrets_file),
                MCP_TRANSPORT="http",
                MCP_PORT=str(port),
                MCP_DYNAMIC_STORE=f"{tmp}/tools.json",
                MCP_EXECUTOR_ID=f"bench-egress-{os.getpid()}",
                MCP_LOG_LEVEL="warn",
                MCP_TOOL_MAX_CALLS_PER_WINDOW="100000",
            )
            server = subprocess.Popen([args.binary], env=env, stdin=subprocess.DEVNULL)
            try:
                wait_ready(f"http://127.0.0.1:{port}/readyz")
                url = f"http://127.0.0.1:{port}/mcp"
                for setup in args.setups.split(","):
                    walls, firsts, seconds = asyncio.run(
                        bench_calls(url, setup, args.calls, args.pause_ms / 1000, world.ca_pem)
                    )
                    summarize(f"call, {setup}", walls)
                    if firsts:
                        summarize(f"  in the run: 1st request, {setup}", firsts)
                        summarize(f"  in the run: 2nd request, {setup}", seconds)
                startup = asyncio.run(bench_startup(url, args.startup_runs))
                summarize("node -e 0 (in a session)", startup["plain"])
                summarize("node --import=egress.mjs -e 0", startup["shim"])
                print(f"shim start-up, median difference: "
                      f"{statistics.median(startup['shim']) - statistics.median(startup['plain']):.1f} ms")
            finally:
                server.terminate()
                server.wait(timeout=20)
        finally:
            world.close()


if __name__ == "__main__":
    main()
