"""The product as the tests run it: frontends (stdio or HTTP) and, when several
frontends must share state, a standalone registry and executor.

A `Launcher` belongs to one test. It names every executor uniquely (so the
test can find its containers by label), keeps every log, and stops every
process it started when the test ends.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx2
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from processes import ManagedProcess, free_tcp_port, http_ok, unix_socket_accepts, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]

ERA_LEGACY = "legacy"
ERA_MODERN = "2026-07-28"

STARTUP_TIMEOUT = 30.0
CALL_TIMEOUT = 30.0
# How long an HTTP response stream may stay quiet (a long call sends nothing until it ends).
HTTP_READ_TIMEOUT = 300.0


def frontend_binary() -> Path:
    return Path(os.environ.get("DYNAMIC_MCP_BIN", REPO_ROOT / "target" / "debug" / "dynamic-mcp"))


def service_binary(name: str) -> Path:
    """Registry and executor binaries sit next to the frontend unless overridden."""
    override = os.environ.get(f"{name.upper().replace('-', '_')}_BIN")
    return Path(override) if override else frontend_binary().parent / name


REGISTRY_BINARY = "dynamic-mcp-registry"
EXECUTOR_BINARY = "dynamic-mcp-executor"


def product_env(**settings: str) -> dict[str, str]:
    """This environment without any MCP_* setting of the caller's, plus `settings`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MCP_")}
    env.update(settings)
    return env


@dataclass
class Services:
    """A standalone registry and executor that several frontends share."""

    registry: ManagedProcess
    executor: ManagedProcess
    registry_socket: Path
    executor_socket: Path
    store: Path
    executor_id: str

    def frontend_settings(self) -> dict[str, str]:
        return {"MCP_REGISTRY_URL": f"unix:{self.registry_socket}", "MCP_EXECUTOR_URL": f"unix:{self.executor_socket}"}


@dataclass
class Executor:
    """A standalone executor on a Unix socket."""

    process: ManagedProcess
    socket: Path
    executor_id: str

    @property
    def url(self) -> str:
        return f"unix:{self.socket}"


@asynccontextmanager
async def open_client(
    server: Any, era: str, message_handler: Any = None, headers: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    """An MCP client speaking `era`: the initialize handshake, or 2026-07-28 via server/discover.
    `headers` (for an HTTP URL) go with every request, e.g. the admin token or a bearer token."""
    if headers:
        timeout = httpx2.Timeout(CALL_TIMEOUT, read=HTTP_READ_TIMEOUT)
        async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
            async with open_client(streamable_http_client(server, http_client=http), era, message_handler) as client:
                yield client
        return
    mode = "legacy" if era == ERA_LEGACY else "auto"
    async with Client(
        server,
        mode=mode,
        cache=None,  # tools/list must always reach the server
        read_timeout_seconds=CALL_TIMEOUT,
        message_handler=message_handler,
    ) as client:
        if era == ERA_MODERN:
            assert (
                client.protocol_version == ERA_MODERN
            ), f"server/discover did not negotiate {ERA_MODERN}; got {client.protocol_version!r}"
        yield client


class Frontend(Protocol):
    """A way to reach one frontend; `connect` opens an MCP client to it."""

    transport: str
    executor_id: str | None  # the executor running this frontend's tools

    def connect(self, era: str, message_handler: Any = None) -> AbstractAsyncContextManager[Client]: ...


class HttpFrontend:
    transport = "http"

    def __init__(self, port: int, executor_id: str | None, headers: dict[str, str] | None = None):
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.url = f"{self.base_url}/mcp"
        self.executor_id = executor_id
        self.headers = headers or {}

    def connect(self, era: str, message_handler: Any = None, headers: dict[str, str] | None = None):
        """A client; `headers` add to (or override) the frontend's own, e.g. another caller's bearer token."""
        return open_client(self.url, era, message_handler, {**self.headers, **(headers or {})})


class StdioFrontend:
    """Each `connect` starts its own `dynamic-mcp` process over stdio, with the same settings.
    Without shared services, connect one client at a time: the store is one registry's."""

    transport = "stdio"

    def __init__(self, launcher: Launcher, env: dict[str, str], executor_id: str | None):
        self.launcher = launcher
        self.env = env
        self.executor_id = executor_id

    @asynccontextmanager
    async def connect(self, era: str, message_handler: Any = None) -> AsyncIterator[Client]:
        log_path = self.launcher.new_log("frontend-stdio")
        params = StdioServerParameters(command=str(frontend_binary()), env=self.env)
        with open(log_path, "a") as errlog:
            async with open_client(stdio_client(params, errlog=errlog), era, message_handler) as client:
                yield client


class Launcher:
    def __init__(self, log_dir: Path, executor_id_prefix: str):
        self.log_dir = log_dir
        self.executor_id_prefix = executor_id_prefix
        # Unix socket paths must stay under ~100 bytes, so they live in a short directory.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="dmcp-", dir="/tmp"))
        self.processes: list[ManagedProcess] = []
        self.log_paths: list[Path] = []
        self._counter = itertools.count(1)

    def new_executor_id(self) -> str:
        return f"{self.executor_id_prefix}-{next(self._counter)}"

    def new_log(self, name: str) -> Path:
        path = self.log_dir / f"{name}-{next(self._counter)}.log"
        self.log_paths.append(path)
        return path

    def new_store(self) -> Path:
        return self.log_dir / f"tools-{next(self._counter)}.json"

    def spawn(self, name: str, binary: Path, env: dict[str, str]) -> ManagedProcess:
        process = ManagedProcess(name, [str(binary)], env, self.new_log(name))
        self.processes.append(process)
        return process

    def start_registry(self, store: Path, socket: Path) -> ManagedProcess:
        env = product_env(MCP_REGISTRY_LISTEN=f"unix:{socket}", MCP_DYNAMIC_STORE=str(store))
        process = self.spawn("registry", service_binary(REGISTRY_BINARY), env)
        wait_until(f"the registry to accept on {socket}", lambda: unix_socket_accepts(socket), STARTUP_TIMEOUT, process)
        return process

    def start_executor(self, executor_id: str | None = None, socket: Path | None = None) -> Executor:
        """A new executor, or (given its id and socket) one started again where it was."""
        executor_id = executor_id or self.new_executor_id()
        socket = socket or self.socket_dir / f"executor-{next(self._counter)}.sock"
        env = product_env(MCP_EXECUTOR_LISTEN=f"unix:{socket}", MCP_EXECUTOR_ID=executor_id)
        process = self.spawn("executor", service_binary(EXECUTOR_BINARY), env)
        wait_until(f"the executor to accept on {socket}", lambda: unix_socket_accepts(socket), STARTUP_TIMEOUT, process)
        return Executor(process, socket, executor_id)

    def start_services(self) -> Services:
        store = self.new_store()
        registry_socket = self.socket_dir / "registry.sock"
        registry = self.start_registry(store, registry_socket)
        executor = self.start_executor()
        return Services(registry, executor.process, registry_socket, executor.socket, store, executor.executor_id)

    def _frontend_settings(self, services: Services | None) -> tuple[dict[str, str], str]:
        """Settings for a frontend of its own (it starts its services) or one on shared services."""
        if services is not None:
            return services.frontend_settings(), services.executor_id
        executor_id = self.new_executor_id()
        return {"MCP_DYNAMIC_STORE": str(self.new_store()), "MCP_EXECUTOR_ID": executor_id}, executor_id

    def http_frontend(
        self,
        services: Services | None = None,
        settings: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        ready_path: str = "/readyz",
    ) -> HttpFrontend:
        """An HTTP frontend; `settings` are extra variables for it (and the services it starts),
        `headers` go with every request its clients send. It counts as started once `ready_path`
        answers 200 (/healthz for a frontend whose services are expected to be unready)."""
        services_settings, executor_id = self._frontend_settings(services)
        port = free_tcp_port()
        env = product_env(
            MCP_TRANSPORT="http",
            MCP_HOST="127.0.0.1",
            MCP_PORT=str(port),
            MCP_PATH="/mcp",
            **services_settings,
            **(settings or {}),
        )
        process = self.spawn("frontend-http", frontend_binary(), env)
        frontend = HttpFrontend(port, executor_id, headers)
        wait_until(
            f"{frontend.base_url}{ready_path} to answer 200",
            lambda: http_ok(f"{frontend.base_url}{ready_path}"),
            STARTUP_TIMEOUT,
            process,
        )
        return frontend

    def stdio_frontend(self, services: Services | None = None) -> StdioFrontend:
        settings, executor_id = self._frontend_settings(services)
        return StdioFrontend(self, product_env(MCP_TRANSPORT="stdio", **settings), executor_id)

    def frontend(self, transport: str, services: Services | None = None) -> Frontend:
        return self.http_frontend(services) if transport == "http" else self.stdio_frontend(services)

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        shutil.rmtree(self.socket_dir, ignore_errors=True)
