"""Several replicas, as a scaled-out deployment runs them: registries on one
backend (a Postgres database, or one JSON file), one executor, and HTTP
frontends that each point at one registry.

Frontends here serve legacy clients statelessly (MCP_HTTP_LEGACY_SESSIONS=false)
unless asked otherwise, so any of them can answer any request.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from postgres_cluster import PgCluster
from processes import ManagedProcess, free_tcp_port, http_ok, unix_socket_accepts, wait_until
from stack import (
    EXECUTOR_BINARY,
    REGISTRY_BINARY,
    STARTUP_TIMEOUT,
    HttpFrontend,
    Launcher,
    frontend_binary,
    product_env,
    service_binary,
)

POSTGRES = "postgres"
FILE = "file"


@dataclass
class Backend:
    """Where the registries keep tools: a schema of its own in a shared
    cluster, or a JSON file (which only one registry may own)."""

    kind: str
    cluster: PgCluster | None = None
    schema: str = ""
    store: Path | None = None

    @classmethod
    def postgres(cls, cluster: PgCluster) -> Backend:
        return cls(POSTGRES, cluster=cluster, schema=f"e2e_{uuid.uuid4().hex[:10]}")

    @classmethod
    def file(cls, launcher: Launcher) -> Backend:
        return cls(FILE, store=launcher.new_store())

    @property
    def max_registries(self) -> int:
        return 2 if self.kind == POSTGRES else 1

    def registry_settings(self) -> dict[str, str]:
        if self.kind == POSTGRES:
            assert self.cluster is not None
            return {
                "MCP_DYNAMIC_BACKEND": "postgres",
                "MCP_DYNAMIC_PG_URL": self.cluster.registry_url(),
                "MCP_DYNAMIC_PG_SCHEMA": self.schema,
            }
        return {"MCP_DYNAMIC_BACKEND": "file", "MCP_DYNAMIC_STORE": str(self.store)}

    def stored_names(self) -> list[str]:
        """Every tool name as the backend holds it: the rows of the `tools`
        table (read with psql), or the tools of the JSON file."""
        if self.kind == POSTGRES:
            assert self.cluster is not None
            rows = self.cluster.sql(f"SELECT name FROM {self.schema}.tools ORDER BY name")
            return rows.splitlines() if rows else []
        assert self.store is not None
        return sorted(tool["name"] for tool in json.loads(self.store.read_text())["tools"])


@dataclass
class ReplicaStack:
    launcher: Launcher
    backend: Backend
    executor_socket: Path
    executor_id: str
    registry_sockets: list[Path] = field(default_factory=list)
    registries: list[ManagedProcess] = field(default_factory=list)

    @classmethod
    def start(cls, launcher: Launcher, backend: Backend, registries: int, **registry_settings: str) -> ReplicaStack:
        """`registries` registries on `backend` and one executor, all on Unix sockets."""
        assert registries <= backend.max_registries, f"the {backend.kind} backend has one writer"
        executor_socket = launcher.socket_dir / "executor.sock"
        stack = cls(launcher, backend, executor_socket, launcher.new_executor_id())
        executor = launcher.spawn(
            "executor",
            service_binary(EXECUTOR_BINARY),
            product_env(MCP_EXECUTOR_LISTEN=f"unix:{executor_socket}", MCP_EXECUTOR_ID=stack.executor_id),
        )
        for index in range(registries):
            socket = launcher.socket_dir / f"registry-{index + 1}.sock"
            env = product_env(MCP_REGISTRY_LISTEN=f"unix:{socket}", **backend.registry_settings(), **registry_settings)
            stack.registries.append(launcher.spawn(f"registry-{index + 1}", service_binary(REGISTRY_BINARY), env))
            stack.registry_sockets.append(socket)
        for socket, process in zip(stack.registry_sockets, stack.registries, strict=True):
            wait_until(
                f"the registry to accept on {socket}", lambda s=socket: unix_socket_accepts(s), STARTUP_TIMEOUT, process
            )
        wait_until(
            f"the executor to accept on {executor_socket}",
            lambda: unix_socket_accepts(executor_socket),
            STARTUP_TIMEOUT,
            executor,
        )
        return stack

    def frontends(self, registries: list[int], legacy_sessions: bool = False, **settings: str) -> list[HttpFrontend]:
        """One HTTP frontend per entry, on the registry of that index; started
        together, then each waited for until its /readyz answers 200."""
        started = []
        for index in registries:
            port = free_tcp_port()
            env = product_env(
                MCP_TRANSPORT="http",
                MCP_HOST="127.0.0.1",
                MCP_PORT=str(port),
                MCP_PATH="/mcp",
                MCP_REGISTRY_URL=f"unix:{self.registry_sockets[index]}",
                MCP_EXECUTOR_URL=f"unix:{self.executor_socket}",
                MCP_HTTP_LEGACY_SESSIONS=str(legacy_sessions).lower(),
                MCP_AUDIT_FILE=str(self.launcher.log_dir / f"audit-{port}.log"),
                **settings,
            )
            process = self.launcher.spawn(f"frontend-{port}", frontend_binary(), env)
            started.append((HttpFrontend(port, self.executor_id), process))
        for frontend, process in started:
            wait_until(
                f"{frontend.base_url}/readyz to answer 200",
                lambda f=frontend: http_ok(f"{f.base_url}/readyz"),
                STARTUP_TIMEOUT,
                process,
            )
        return [frontend for frontend, _ in started]
