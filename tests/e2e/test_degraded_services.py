"""When a backing service cannot do its work, the frontend still starts and answers, and its
errors say what is missing and to retry; where it was looked for goes to the log, never to the client."""

from __future__ import annotations

import json
import re
import uuid
import urllib.error
import urllib.request

import anyio
import pytest

from docker_probe import marker_code, wait_for_call_container
from mcp_calls import (
    SEED_CODE,
    admin,
    create_tool,
    failure_message,
    run_tool,
    run_tool_error,
    text_of,
    unique_name,
)
from processes import wait_until
from stack import ERA_MODERN

pytestmark = pytest.mark.anyio


def readiness(base_url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{base_url}/readyz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_without_docker_the_frontend_starts_and_runs_say_why_they_fail(launcher, tmp_path):
    # The executor this frontend starts inherits DOCKER_HOST and finds no engine there.
    no_docker = {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    frontend = launcher.http_frontend(settings=no_docker, ready_path="/healthz")
    status, body = readiness(frontend.base_url)
    assert status == 503 and "executor" in body["failed"] and "registry" not in body["failed"], body

    name = unique_name("nodocker")
    async with frontend.connect(ERA_MODERN) as client:
        assert (await admin(client, "system.health", {}))["status"] == "ok"
        await create_tool(client, name)  # policy checks need no Docker
        message = await run_tool_error(client, name, {})
    assert "cannot reach the Docker engine" in message and "try again" in message, message


async def test_a_registry_that_is_down_is_named_without_its_address(launcher):
    services = launcher.start_services()
    frontend = launcher.http_frontend(services)
    frontend_process = launcher.processes[-1]
    async with frontend.connect(ERA_MODERN) as client:
        await create_tool(client, unique_name("before"))
        services.registry.kill_hard()
        spec = {"name": unique_name("after"), "description": "created while the registry is down", "code": "return 1;"}
        result = await client.call_tool("dynamic.tool.create", {"tool": spec})
    assert result.is_error
    message = result.content[0].text
    expected = r"the registry is unavailable: it cannot be reached \(.+\); try again in a few seconds$"
    assert re.match(expected, message), message
    assert str(services.registry_socket) not in message and "/tmp" not in message, message

    # The operator finds the address in the frontend's log.
    def logged() -> bool:
        lines = frontend_process.log_path.read_text(errors="replace").splitlines()
        return any("backing service call failed" in line and str(services.registry_socket) in line for line in lines)

    wait_until("the frontend to log the registry's address", logged, 10, frontend_process)


async def test_calls_get_and_list_keep_working_from_the_catalog_while_the_registry_is_down(launcher):
    """dynamic.tool.get and .list, like calls, are served from the frontend's catalog: no
    registry round trip. Only what the catalog cannot know (an older revision) needs it."""
    services = launcher.start_services()
    frontend = launcher.http_frontend(services)
    name = unique_name("cached")
    async with frontend.connect(ERA_MODERN) as client:
        await create_tool(client, name)
        assert await run_tool(client, name, {"text": "a"}) == {"upper": "A"}
        services.registry.kill_hard()
        assert await run_tool(client, name, {"text": "b"}) == {"upper": "B"}
        got = (await admin(client, "dynamic.tool.get", {"name": name}))["tool"]
        assert (got["name"], got["revision"], got["code"]) == (name, 1, SEED_CODE), got
        listed = (await admin(client, "dynamic.tool.list", {}))["tools"]
        assert [t["name"] for t in listed] == [name] and "code" not in listed[0], listed
        message = await failure_message(client, "dynamic.tool.get", {"name": name, "revision": 1})
    assert "registry is unavailable" in message, message


async def test_an_executor_crash_mid_call_says_the_call_can_be_retried(launcher):
    services = launcher.start_services()
    frontend = launcher.http_frontend(services)
    name = unique_name("slow")
    answers = []
    async with frontend.connect(ERA_MODERN) as client:
        marker = uuid.uuid4().hex
        await create_tool(client, name, marker_code(marker, "await new Promise((r) => setTimeout(r, 30000)); return 1;"))

        async def call() -> None:
            answers.append(await client.call_tool(name, {"args": {}}))

        async with anyio.create_task_group() as calls:
            calls.start_soon(call)
            # The call's own container, not a warm one that has run nothing yet.
            await wait_for_call_container(services.executor_id, marker, 30)
            services.executor.kill_hard()
    [result] = answers
    assert result.is_error
    message = text_of(result)
    assert "the executor stopped during the call (it crashed or restarted)" in message, message
    assert "can be retried" in message and "h2" not in message, message
