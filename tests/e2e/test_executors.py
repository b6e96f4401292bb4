"""One frontend over two executors on one Docker engine, each with its own executor id: runs and
sessions spread over both, a session's calls go to its own executor, and when one is killed
(-9) runs keep working on the other, its sessions are reported ended at once, it rejoins when
started again, and no container of either is left once everything has stopped."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import anyio
import anyio.to_thread
import pytest

from docker_probe import (
    LABEL_EXECUTOR,
    LABEL_ROLE,
    container_ids,
    docker,
    holds_marker,
    run_labels,
    wait_for_no_containers,
)
from mcp_calls import admin, create_tool, failure_message, run_tool, unique_name
from stack import ERA_MODERN, Executor, HttpFrontend, Launcher

pytestmark = pytest.mark.anyio

# A held run waits until the test has seen its container (and released it with a file), so
# the runs of one batch overlap, the balancer sees their load, and a loaded machine's slow
# `docker exec` probes cannot miss a run that ended first. HOLD_MS bounds the wait.
HOLD_MS = 20_000
SLOW_CODE = f"""const fs = await import('node:fs');
fs.writeFileSync('/tmp/' + args.marker, '');
const until = Date.now() + {HOLD_MS};
while (args.hold && !fs.existsSync('/tmp/' + args.marker + '.go') && Date.now() < until) {{
  await new Promise((resolve) => setTimeout(resolve, 20));
}}
return args.marker;"""
BATCH = 4
FOUND_WITHIN = 20.0
ROTATION_WITHIN = 15.0
ENDED_WITHIN = 10.0
CONTAINERS_GONE_WITHIN = 20.0


def readiness(frontend: HttpFrontend) -> dict:
    try:
        with urllib.request.urlopen(f"{frontend.base_url}/readyz", timeout=2) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())
    except OSError:
        return {}


async def wait_for_rotation(frontend: HttpFrontend, in_rotation: int) -> None:
    deadline = time.monotonic() + ROTATION_WITHIN
    while True:
        seen = await anyio.to_thread.run_sync(readiness, frontend)
        if seen.get("executors", {}).get("inRotation") == in_rotation:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz never showed {in_rotation} executors in rotation; last: {seen}")
        await anyio.sleep(0.1)


def executor_running(executors: list[Executor], marker: str) -> tuple[str, str] | None:
    """The executor id and container of the run that holds `marker`, if one does now."""
    for executor in executors:
        for container in container_ids(run_labels(executor.executor_id), include_stopped=False):
            if holds_marker(container, marker):
                return executor.executor_id, container
    return None


def release(container: str, marker: str) -> None:
    """Lets a held run return."""
    docker("exec", container, "touch", f"/tmp/{marker}.go", timeout=30)


async def run_batch(client, tool: str, executors: list[Executor]) -> set[str]:
    """BATCH overlapping runs; the ids of the executors that ran them (seen in Docker meanwhile)."""
    markers = [unique_name("run") for _ in range(BATCH)]
    ran_on: dict[str, str] = {}
    results: dict[str, object] = {}

    async def call(marker: str) -> None:
        results[marker] = await run_tool(client, tool, {"marker": marker, "hold": True})

    async def locate(marker: str) -> None:
        deadline = time.monotonic() + FOUND_WITHIN
        while marker not in ran_on and marker not in results:
            found = await anyio.to_thread.run_sync(executor_running, executors, marker)
            if found is not None:
                ran_on[marker], container = found
                await anyio.to_thread.run_sync(release, container, marker)
            elif time.monotonic() > deadline:
                raise AssertionError(f"no executor's container ran {marker} within {FOUND_WITHIN} s")
            await anyio.sleep(0.05)

    async with anyio.create_task_group() as group:
        for marker in markers:
            group.start_soon(call, marker)
            group.start_soon(locate, marker)
    assert results == {marker: marker for marker in markers}, results
    assert set(ran_on) == set(markers), f"runs seen in no container: {set(markers) - set(ran_on)}"
    return set(ran_on.values())


async def sessions_on_both(client, executors: list[Executor]) -> dict[str, str]:
    """Sessions started until each executor owns one: {executor id: session id} (extras stopped)."""
    owned: dict[str, str] = {}
    for _ in range(12):
        if len(owned) == len(executors):
            return owned
        async with anyio.create_task_group() as group:
            started: list[str] = []

            async def start() -> None:
                started.append((await admin(client, "sandbox.initialize", {}))["sessionId"])

            group.start_soon(start)
            group.start_soon(start)
        for session in started:
            owner = next((e.executor_id for e in executors if session.startswith(f"{e.executor_id}.")), None)
            assert owner is not None, f"session id {session!r} names none of {[e.executor_id for e in executors]}"
            if owner in owned:
                await admin(client, "sandbox.stop", {"sessionId": session})
            else:
                owned[owner] = session
    raise AssertionError(f"new sessions never landed on every executor; got {owned}")


async def listed(client) -> set[str]:
    return {s["id"] for s in (await admin(client, "sandbox.session.list", {}))["sessions"]}


async def exec_echo(client, session: str, text: str) -> None:
    answer = await admin(client, "sandbox.exec", {"sessionId": session, "commands": [f"echo {text}"]})
    assert answer["results"][0]["stdout"] == f"{text}\n", answer


def two_executor_frontend(launcher: Launcher) -> tuple[HttpFrontend, Executor, Executor]:
    registry_socket = launcher.socket_dir / "registry.sock"
    launcher.start_registry(launcher.new_store(), registry_socket)
    a, b = launcher.start_executor(), launcher.start_executor()
    frontend = launcher.http_frontend(
        settings={"MCP_REGISTRY_URL": f"unix:{registry_socket}", "MCP_EXECUTOR_URL": f"{a.url},{b.url}"}
    )
    return frontend, a, b


async def test_two_executors_share_the_work_and_survive_one_being_killed(launcher):
    frontend, a, b = two_executor_frontend(launcher)
    await wait_for_rotation(frontend, 2)
    tool = unique_name("slow")
    async with frontend.connect(ERA_MODERN) as client:
        await create_tool(client, tool, SLOW_CODE)
        assert await run_batch(client, tool, [a, b]) == {a.executor_id, b.executor_id}, "runs did not spread"

        sessions = await sessions_on_both(client, [a, b])
        assert await listed(client) == set(sessions.values()), "the list must gather both executors' sessions"
        for owner, session in sessions.items():
            await exec_echo(client, session, owner.replace("-", ""))

        a.process.kill_hard()
        # Every run succeeds: one sent to the dead executor never reached it and goes to the other.
        for _ in range(3):
            assert await run_tool(client, tool, {"marker": unique_name("after")}) is not None
        with anyio.fail_after(ENDED_WITHIN):
            message = await failure_message(
                client, "sandbox.exec", {"sessionId": sessions[a.executor_id], "commands": ["true"]}
            )
        assert "has ended" in message and a.executor_id in message, message
        assert await listed(client) == {sessions[b.executor_id]}
        await exec_echo(client, sessions[b.executor_id], "stillhere")

        restarted = launcher.start_executor(a.executor_id, a.socket)
        await wait_for_rotation(frontend, 2)
        # The restart removed what the killed process left, and forgot its sessions.
        await wait_for_no_containers({LABEL_EXECUTOR: a.executor_id, LABEL_ROLE: "session"}, CONTAINERS_GONE_WITHIN)
        gone = await failure_message(client, "sandbox.exec", {"sessionId": sessions[a.executor_id], "commands": ["true"]})
        assert gone == f"no session '{sessions[a.executor_id]}' for this caller", gone
        assert await run_batch(client, tool, [restarted, b]) == {a.executor_id, b.executor_id}, "it did not rejoin"

    for process in reversed(launcher.processes):
        process.stop()
    for executor_id in (a.executor_id, b.executor_id):
        await wait_for_no_containers({LABEL_EXECUTOR: executor_id}, CONTAINERS_GONE_WITHIN)


async def test_executors_with_the_same_id_are_not_both_used(launcher):
    registry_socket = launcher.socket_dir / "registry.sock"
    launcher.start_registry(launcher.new_store(), registry_socket)
    a = launcher.start_executor()
    twin = launcher.start_executor(a.executor_id)
    frontend = launcher.http_frontend(
        settings={"MCP_REGISTRY_URL": f"unix:{registry_socket}", "MCP_EXECUTOR_URL": f"{a.url},{twin.url}"}
    )
    await wait_for_rotation(frontend, 1)
    # It stays that way: the second is refused, not flapping in and out.
    with anyio.move_on_after(3):
        while True:
            assert (await anyio.to_thread.run_sync(readiness, frontend))["executors"] == {"configured": 2, "inRotation": 1}
            await anyio.sleep(0.2)
    log = "".join(p.log_tail(20_000) for p in launcher.processes if p.name == "frontend-http")
    assert f"both have the executor id '{a.executor_id}'" in log, log[-3000:]
