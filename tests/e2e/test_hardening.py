"""The container a tool runs in, seen from the Docker engine while it runs, and after."""

from __future__ import annotations

import json
import uuid

import anyio
import anyio.to_thread
import pytest

from docker_probe import (
    LABEL_MANAGED,
    inspect,
    marker_code,
    process_users,
    wait_for_call_container,
    wait_for_gone,
    wait_for_only_warm_containers,
)
from mcp_calls import create_tool, run_tool, run_tool_error, unique_name
from stack import ERA_MODERN

pytestmark = pytest.mark.anyio

CONTAINER_APPEARS_WITHIN = 15.0
CONTAINERS_GONE_WITHIN = 5.0


def hardening_problems(details: dict) -> list[str]:
    """Every way the container falls short of the hardened profile."""
    host, config = details["HostConfig"], details["Config"]
    user = config.get("User") or ""
    tmpfs = host.get("Tmpfs") or {}
    checks = {
        "ReadonlyRootfs is true": host.get("ReadonlyRootfs") is True,
        "CapDrop is ['ALL']": [cap.upper() for cap in host.get("CapDrop") or []] == ["ALL"],
        # Only for the harness's supervisor, which drops them with root before the code runs.
        "CapAdd is SETUID and SETGID": sorted(cap.upper() for cap in host.get("CapAdd") or []) == ["SETGID", "SETUID"],
        "SecurityOpt has no-new-privileges": any(
            opt.startswith("no-new-privileges") for opt in host.get("SecurityOpt") or []
        ),
        "PidsLimit > 0": (host.get("PidsLimit") or 0) > 0,
        "Memory > 0": (host.get("Memory") or 0) > 0,
        "NanoCpus > 0": (host.get("NanoCpus") or 0) > 0,
        "NetworkMode is none": host.get("NetworkMode") == "none",
        # The supervisor starts as root and runs the code as the sandbox user; it is PID 1.
        "User is 0:0": user == "0:0",
        "Init is false": host.get("Init") is False,
        "/tmp is a noexec tmpfs": "noexec" in tmpfs.get("/tmp", ""),
        "labelled managed=true": (config.get("Labels") or {}).get(LABEL_MANAGED) == "true",
    }
    problems = [rule for rule, holds in checks.items() if not holds]
    if problems:
        problems.append(f"(HostConfig: {json.dumps(host, sort_keys=True)}; User: {user!r})")
    return problems


async def test_running_tool_container_is_hardened_and_holds_no_code_or_args(http_frontend):
    code_marker, args_marker = f"code-{uuid.uuid4().hex}", f"args-{uuid.uuid4().hex}"
    code = marker_code(code_marker, "await new Promise(r => setTimeout(r, 4000));\nreturn 1;")
    name = unique_name("sleeper")
    answers = []
    async with http_frontend.connect(ERA_MODERN) as client:
        await create_tool(client, name, code)

        async def call() -> None:
            answers.append(await run_tool(client, name, {"secret": args_marker}))

        async with anyio.create_task_group() as calls:
            calls.start_soon(call)
            container = await wait_for_call_container(http_frontend.executor_id, code_marker, CONTAINER_APPEARS_WITHIN)
            details = await anyio.to_thread.run_sync(inspect, container)
            users = await anyio.to_thread.run_sync(process_users, container)

    assert answers == [1]
    assert hardening_problems(details) == []
    # The supervisor and the code's process, both as the sandbox user: no root process is left.
    assert users == ["65534", "65534"], f"processes of the running tool's container run as {users}"
    exposed = json.dumps(details)
    assert code_marker not in exposed, "the tool's code is visible in `docker inspect`"
    assert args_marker not in exposed, "the call's args are visible in `docker inspect`"
    await wait_for_gone(container, CONTAINERS_GONE_WITHIN)


@pytest.mark.parametrize(
    ("code", "timeout_ms", "succeeds"),
    [
        ("return 1;", 30000, True),
        ('throw new Error("boom");', 30000, False),
        ("while (true) {}", 1000, False),
    ],
    ids=["success", "throws", "timeout"],
)
async def test_no_container_outlives_its_call(launcher, code, timeout_ms, succeeds):
    frontend = launcher.http_frontend(settings={"MCP_EXECUTOR_WARM_POOL_SIZE": "1"})
    name = unique_name("once")
    async with frontend.connect(ERA_MODERN) as client:
        await create_tool(client, name, code, timeoutMs=timeout_ms)
        if succeeds:
            await run_tool(client, name, {})
        else:
            await run_tool_error(client, name, {})
    await wait_for_only_warm_containers(frontend.executor_id, CONTAINERS_GONE_WITHIN)
