"""What the benchmarks share: a minimal stateless MCP client (protocol 2026-07-28, plain
HTTP/1.1 keep-alive, no SDK in the way), the product started over HTTP with its three
processes' RSS, the host's CPU use, and `wrk` for rates a Python client cannot generate."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PROTOCOL = "2026-07-28"
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_mcp.lua"
# Generous guard limits: the benchmark measures the path, not the guard's refusals.
UNGUARDED = {"MCP_TOOL_MAX_CONCURRENCY": "256", "MCP_TOOL_MAX_CALLS_PER_WINDOW": "100000000"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request_body(method: str, params: dict[str, Any], request_id: int = 1) -> bytes:
    meta = {
        "io.modelcontextprotocol/protocolVersion": PROTOCOL,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "dynamic-mcp-bench", "version": "1"},
    }
    return json.dumps(
        {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**params, "_meta": meta}}
    ).encode()


def request_headers(method: str, name: str | None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": PROTOCOL,
        "Mcp-Method": method,
    }
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


def parse_answer(raw: bytes) -> dict[str, Any]:
    """The JSON-RPC answer, from a JSON body or the last `data:` line of an SSE body."""
    text = raw.decode()
    if text.lstrip().startswith("{"):
        return json.loads(text)
    data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:") and line[5:].strip()]
    return json.loads(data[-1])


class StatelessClient:
    """One kept-alive connection; every request carries its protocol metadata."""

    def __init__(self, port: int, path: str = "/mcp", headers: dict[str, str] | None = None):
        self.port, self.path, self.extra = port, path, headers or {}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.next_id = 1

    def rpc(self, method: str, params: dict[str, Any], name: str | None = None) -> dict[str, Any]:
        self.next_id += 1
        headers = {**request_headers(method, name), **self.extra}
        self.conn.request("POST", self.path, body=request_body(method, params, self.next_id), headers=headers)
        response = self.conn.getresponse()
        raw = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} answered HTTP {response.status}: {raw[:500]!r}")
        answer = parse_answer(raw)
        if "error" in answer:
            raise RuntimeError(f"{method} failed: {answer['error']}")
        return answer["result"]

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.rpc("tools/call", {"name": tool, "arguments": arguments}, name=tool)

    def call_ok(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = self.call(tool, arguments)
        if result.get("isError"):
            raise RuntimeError(f"{tool} failed: {json.dumps(result)[:800]}")
        return result

    def close(self) -> None:
        self.conn.close()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def process_name(pid: int) -> str:
    """The program's file name (comm is cut at 15 characters)."""
    return Path(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()).name


@dataclass
class Product:
    """`dynamic-mcp` over HTTP, with the registry and executor it starts itself."""

    binary: Path
    settings: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dmcp-bench-")))

    @property
    def executor_id(self) -> str:
        return self.settings.get("MCP_EXECUTOR_ID", f"bench-{os.getpid()}-{self.port}")

    def start(self) -> Product:
        env = {key: value for key, value in os.environ.items() if not key.startswith("MCP_")}
        env.update(
            {
                "MCP_TRANSPORT": "http",
                "MCP_HOST": "127.0.0.1",
                "MCP_PORT": str(self.port),
                "MCP_DYNAMIC_STORE": str(self.workdir / "tools.json"),
                "MCP_AUDIT_FILE": str(self.workdir / "audit.log"),
                "MCP_EXECUTOR_ID": self.executor_id,
                "MCP_LOG_LEVEL": "warn",
                **UNGUARDED,
                # A row's own settings win (e.g. MCP_LOG_LEVEL for timings).
                **self.settings,
            }
        )
        log = open(self.workdir / "server.log", "ab")
        self.process = subprocess.Popen([str(self.binary)], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.wait_ready()
        return self

    def wait_ready(self, within: float = 90) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                sys.exit(f"dynamic-mcp exited; see {self.workdir / 'server.log'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit(f"dynamic-mcp was not ready within {within} s; see {self.workdir / 'server.log'}")

    def client(self) -> StatelessClient:
        return StatelessClient(self.port)

    def pids(self) -> dict[str, int]:
        assert self.process is not None
        found = {"frontend": self.process.pid}
        for child in children(self.process.pid):
            name = process_name(child)
            if name == "dynamic-mcp-registry":
                found["registry"] = child
            elif name == "dynamic-mcp-executor":
                found["executor"] = child
        return found

    def rss_mib(self) -> dict[str, float]:
        return {role: rss_kib(pid) / 1024 for role, pid in self.pids().items()}

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


class CpuMeter:
    """The host's CPU use between `start` and `stop`, as a share of all cores."""

    def __init__(self) -> None:
        self.began = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        idle = values[3] + values[4]
        return sum(values), idle

    def busy_share(self) -> float:
        total, idle = self._read()
        d_total, d_idle = total - self.began[0], idle - self.began[1]
        return 0.0 if d_total == 0 else 1 - d_idle / d_total


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("wrk is needed: apt-get install wrk")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return shutil.which("wrk") or sys.exit("installing wrk failed")


@dataclass
class WrkResult:
    requests: int
    errors: int
    rate: float
    p50_ms: float
    p99_ms: float
    client_cpu: float
    p90_ms: float = 0.0
    # The share of calls at 36-48 ms, where a Nagle stall shows.
    stall_share: float = 0.0


def run_wrk(port: int, method: str, params: dict[str, Any], name: str | None, connections: int, seconds: int) -> WrkResult:
    """`wrk` posting one stateless request over and over on `connections` kept-alive
    connections; a non-200 answer or a JSON-RPC / isError answer counts as an error."""
    wrk = ensure_wrk()
    env = {
        **os.environ,
        "WRK_MCP_BODY": request_body(method, params).decode(),
        "WRK_MCP_HEADERS": "\n".join(f"{k}: {v}" for k, v in request_headers(method, name).items()),
    }
    threads = max(1, min(2, connections))
    started = os.times()
    done = subprocess.run(
        [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "120s", "-s", str(WRK_SCRIPT),
         f"http://127.0.0.1:{port}/mcp"],
        env=env, capture_output=True, text=True, timeout=seconds + 120,
    )
    ended = os.times()
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr}")
    summary = json.loads(done.stdout[done.stdout.rindex('{"requests"') :])
    client_cpu = (ended.children_user + ended.children_system - started.children_user - started.children_system) / seconds
    if summary["errors"]:
        print(f"wrk: {summary['errors']} failures ({summary['timeouts']} timeouts), e.g. {summary['example']}", file=sys.stderr)
    return WrkResult(
        requests=summary["requests"],
        errors=summary["errors"],
        rate=summary["requests"] / summary["seconds"],
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        client_cpu=client_cpu,
        p90_ms=summary["p90_us"] / 1000,
        stall_share=summary["stall_share"],
    )

