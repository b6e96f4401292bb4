#!/usr/bin/env python3
"""What controlled egress adds to a call's latency, through the real MCP client.

Starts the test world of the egress e2e tests (a Docker network of its own with two web servers
in containers; tests/e2e/egress_world.py), then the release `dynamic-mcp` over Streamable HTTP
with egress settings pointing at it (bench/mcp_http.py: stateless 2026-07-28 over HTTP/1.1), and
calls `run_js_ephemeral` (a fresh hardened container per call, as a tool run) one call at a time,
for each setup:

  none         no network.allow; the code returns at once
  allow        network.allow set; the code makes no request (the proxy, its socket and the shim)
  http         one plain-HTTP fetch through the proxy
  https        one HTTPS GET through a CONNECT tunnel (TLS end to end)
  secret       one HTTPS fetch with a secret (TLS intercepted by the proxy, value put in)

Besides the whole call, the code times its own requests (first and second, the second on a
kept-alive connection where there is one). The same requests made directly, without the proxy,
from a plain container on the servers' network (`docker run`, not hardened) are the baseline for
those in-run figures: a first request pays for Node's own lazy start-up of fetch or TLS either
way. Then, in a sandbox session with network.allow, it times `node -e 0` started with and without
the shim, to isolate the shim's start-up cost. Prints figures; asserts nothing about them.

    cargo build --release --bins
    python3 bench/egress_latency.py [--calls 30] [--pause-ms 300] [--setups none,allow,http,https,secret]
"""

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from mcp_http import REPO, Product, StatelessClient  # noqa: E402

from egress_world import ALLOWED, EgressWorld  # noqa: E402

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
        globalThis.httpsModule.get('https://api.allowed.test/bench', { ca: args.ca, agent: globalThis.keepAlive }, (r) => {
          r.resume(); r.on('end', resolve);
        }).on('error', reject);
      })""",
    "secret": """async () => (await fetch('https://api.allowed.test/bench',
        { headers: { authorization: 'Bearer ' + process.env.API_KEY } })).text()""",
}

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


def summarize(label: str, samples_ms: list[float]) -> None:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    print(f"{label:<40} n={len(ordered):<4} p50={statistics.median(ordered):7.1f} ms  "
          f"p95={p95:7.1f} ms  mean={statistics.fmean(ordered):7.1f} ms")


def bench_calls(client: StatelessClient, setup: str, calls: int, pause_s: float, ca: str) -> tuple[list, list, list]:
    walls, firsts, seconds = [], [], []
    for i in range(calls + 2):
        time.sleep(pause_s)
        began = time.perf_counter()
        result = client.call_ok("run_js_ephemeral", call_arguments(setup, ca))
        took = (time.perf_counter() - began) * 1000
        if i < 2:  # the first calls warm caches and connections
            continue
        walls.append(took)
        times = result["structuredContent"]["result"]
        if times:
            firsts.append(times[0])
            seconds.append(times[1])
    return walls, firsts, seconds


DIRECT = """
const https = await import("node:https");
const args = JSON.parse(process.env.ARGS);
globalThis.httpsModule = https;
globalThis.keepAlive = new https.Agent({ keepAlive: true });
const run = async () => { BODY };
console.log(JSON.stringify(await run()));
"""


def bench_direct(world: EgressWorld, setup: str, runs: int) -> tuple[list, list]:
    """The in-run request times of `setup` without the proxy, from a container on the servers' network."""
    code = DIRECT.replace("BODY", TIMED.replace("args.request()", f"({REQUESTS[setup]})()"))
    firsts, seconds = [], []
    for _ in range(runs):
        done = subprocess.run(
            ["docker", "run", "--rm", "--network", world.network,
             "--add-host", f"{ALLOWED}:{world.ip(world.allowed)}", "-e", f"ARGS={json.dumps({'ca': world.ca_pem})}",
             "--entrypoint", "node", "dynamic-mcp-sandbox:latest", "--input-type=module", "-e", code],
            capture_output=True, text=True, timeout=60, check=True,
        )
        first, second = json.loads(done.stdout.strip().splitlines()[-1])
        firsts.append(first)
        seconds.append(second)
    return firsts, seconds


def bench_startup(client: StatelessClient, runs: int) -> dict:
    session = client.call_ok("sandbox.initialize", {"network": {"allow": [ALLOWED]}})["structuredContent"]["sessionId"]
    try:
        arguments = {"sessionId": session, "code": STARTUP, "args": {"runs": runs}, "timeoutMs": 120000}
        return client.call_ok("sandbox.run_js", arguments)["structuredContent"]["result"]
    finally:
        client.call_ok("sandbox.stop", {"sessionId": session})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--pause-ms", type=int, default=300, help="pause before each call")
    parser.add_argument("--startup-runs", type=int, default=20)
    parser.add_argument("--direct-runs", type=int, default=10, help="docker runs per direct baseline")
    parser.add_argument("--binary", default=str(REPO / "target/release/dynamic-mcp"))
    parser.add_argument("--setups", default="none,allow,http,https,secret")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        world = EgressWorld(Path(tmp))
        product = None
        try:
            secrets_file = Path(tmp) / "secrets.json"
            value = secrets.token_hex(16)
            secrets_file.write_text(json.dumps({"secrets": [{"name": "API_KEY", "value": value, "hosts": [ALLOWED]}]}))
            settings = {
                **world.executor_settings(),
                "MCP_SANDBOX_EGRESS_ALLOW_PLAIN_HTTP": "true",
                "MCP_SANDBOX_SECRETS_FILE": str(secrets_file),
            }
            product = Product(Path(args.binary), settings).start()
            client = product.client()
            for setup in args.setups.split(","):
                walls, firsts, seconds = bench_calls(client, setup, args.calls, args.pause_ms / 1000, world.ca_pem)
                summarize(f"call, {setup}", walls)
                if firsts:
                    summarize(f"  in the run: 1st request, {setup}", firsts)
                    summarize(f"  in the run: 2nd request, {setup}", seconds)
                if setup in ("http", "https"):
                    direct_firsts, direct_seconds = bench_direct(world, setup, args.direct_runs)
                    summarize(f"  direct, no proxy: 1st request, {setup}", direct_firsts)
                    summarize(f"  direct, no proxy: 2nd request, {setup}", direct_seconds)
            startup = bench_startup(client, args.startup_runs)
            summarize("node -e 0 (in a session)", startup["plain"])
            summarize("node --import=egress.mjs -e 0", startup["shim"])
            difference = statistics.median(startup["shim"]) - statistics.median(startup["plain"])
            print(f"shim start-up, difference of the medians: {difference:.1f} ms")
        finally:
            if product is not None:
                product.stop()
            world.close()


if __name__ == "__main__":
    main()
