"""The deployment: docker-compose.yml with every image built offline by deploy/build-images.sh.

One stack per module, under its own Compose project name and on free loopback
ports: Postgres, the registry on it, two executors with the Docker socket, three
frontends and the load balancer, which sticks legacy sessions to their frontend. MCP clients reach it through the
load balancer, and each frontend directly through ports that only this test
publishes (an extra compose file). `down -v` runs whatever happens.

The images are built from the debug binaries the rest of the suite uses
(DYNAMIC_MCP_CARGO_PROFILE=dev) and tagged `e2e`, so the test adds no second
compile of the workspace and leaves the `latest` images alone; the images
differ from release ones only in the binaries they copy. Still slow (five
images, a base image on a new machine): select it with `-m compose`, leave it
out with `-m "not compose"`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from docker_probe import docker, inspect, wait_for_only_warm_containers
from egress_world import ALLOWED, FORBIDDEN, EgressWorld
from mcp_calls import (
    SEED_CODE,
    ListChangedCounter,
    failure_message,
    listed_tool_names,
    run_tool,
    settled_counts,
    unique_name,
)
from processes import free_tcp_port, http_ok
from stack import CALL_TIMEOUT, ERA_LEGACY, ERA_MODERN, HTTP_READ_TIMEOUT, REPO_ROOT, product_env

pytestmark = [pytest.mark.compose, pytest.mark.timeout(1800)]

FRONTENDS = ("frontend-1", "frontend-2", "frontend-3")
EXECUTORS = ("executor", "executor-2")
# Services that must never be reachable from outside the Compose networks.
PRIVATE_SERVICES = ("postgres", "registry", *EXECUTORS)

# Test images: debug binaries, their own tag (DYNAMIC_MCP_E2E_TAG keeps the images of two
# checkouts on one engine apart). Set "release" to test the release build too.
IMAGE_SETTINGS = {"DYNAMIC_MCP_CARGO_PROFILE": "dev", "DYNAMIC_MCP_TAG": os.environ.get("DYNAMIC_MCP_E2E_TAG", "e2e")}
BUILD_TIMEOUT = 1500  # a cold build on 2 cores, plus the base image and the apt-built ones
UP_TIMEOUT = 300
HEALTHY_TIMEOUT = 180
DOWN_TIMEOUT = 120
CATALOG_SETTLE_TIMEOUT = 10.0


def compose_command() -> list[str]:
    """The wrapper the README tells users to run: Compose v2 where present, else docker-compose 1.29."""
    return [str(REPO_ROOT / "deploy" / "compose.sh")]


@dataclass
class Stack:
    project: str
    env_file: Path
    override_file: Path
    env: dict[str, str]
    lb_url: str
    frontend_urls: dict[str, str]
    admin_token: str
    executor_id: str
    world: EgressWorld | None = None

    @property
    def executor_ids(self) -> tuple[str, str]:
        """Of `executor` and `executor-2` (docker-compose.yml appends "-2")."""
        return self.executor_id, f"{self.executor_id}-2"

    def compose(self, *args: str, timeout: float = UP_TIMEOUT, check: bool = True) -> str:
        argv = [
            *compose_command(),
            "--env-file",
            str(self.env_file),
            "-p",
            self.project,
            "-f",
            str(REPO_ROOT / "docker-compose.yml"),
            "-f",
            str(self.override_file),
            *args,
        ]
        done = subprocess.run(argv, cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout + done.stderr

    def container(self, service: str) -> dict:
        ids = docker(
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        ).split()
        assert len(ids) == 1, f"expected one running container of {service}, found {ids}"
        return inspect(ids[0])

    def health(self) -> dict[str, str]:
        """Each container of the project: its health status, or its state if it has no health check."""
        listing = docker(
            "ps",
            "-a",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            "--format",
            '{{.Label "com.docker.compose.service"}}\t{{.State}}\t{{.Status}}',
        )
        statuses = {}
        for line in listing.splitlines():
            service, state, status = line.split("\t")
            health = next((h for h in ("healthy", "unhealthy", "starting") if f"({h}" in status), None)
            statuses[service] = health or state
        return statuses


def run_script(script: Path, env: dict[str, str], timeout: float) -> None:
    done = subprocess.run(
        ["bash", str(script)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{script} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"


def write_override(path: Path, frontend_ports: dict[str, int]) -> None:
    """Publish each frontend on loopback too, so the test can reach every replica directly."""
    services = {name: {"ports": [f"127.0.0.1:{port}:8788"]} for name, port in frontend_ports.items()}
    # JSON is YAML; Compose reads either.
    path.write_text(json.dumps({"services": services}, indent=2))


def lb_routes(url: str) -> bool:
    """The load balancer answers /mcp from a frontend (anything but its own 503 "no server")."""
    request = urllib.request.Request(url, method="GET", headers={"Accept": "text/event-stream"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status != 503
    except urllib.error.HTTPError as error:
        return error.code != 503
    except (urllib.error.URLError, OSError):
        return False


def wait_for(what: str, ready, timeout: float, stack: Stack) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; health: {stack.health()}")


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory, executor_id_prefix) -> Iterator[Stack]:
    env = product_env(**IMAGE_SETTINGS)
    started = time.monotonic()
    run_script(REPO_ROOT / "deploy" / "build-images.sh", env, BUILD_TIMEOUT)
    built = time.monotonic()

    workdir = tmp_path_factory.mktemp("compose")
    # Hosts for the executor's egress proxy: test servers on a network of their own, which the
    # executor joins once it runs.
    world = EgressWorld(workdir)
    project = f"dmcp-e2e-{uuid.uuid4().hex[:8]}"
    executor_id = f"{executor_id_prefix}-compose"
    lb_port = free_tcp_port()
    frontend_ports = {name: free_tcp_port() for name in FRONTENDS}
    env_file = workdir / "compose.env"
    override_file = workdir / "compose.ports.json"
    settings = {
        "DYNAMIC_MCP_SECRETS_DIR": str(workdir / "secrets"),
        "DYNAMIC_MCP_ENV_FILE": str(env_file),
        "DYNAMIC_MCP_PORT": str(lb_port),
        "DYNAMIC_MCP_EXECUTOR_ID": executor_id,
        "DYNAMIC_MCP_EGRESS_DIR": str(workdir / "egress"),
    }
    run_script(REPO_ROOT / "deploy" / "configure.sh", {**env, **settings}, 60)
    # The deps cache is a volume of the engine, not of the project: one per run, removed below.
    egress = {key: value for key, value in world.executor_settings().items() if "UPSTREAM_CA" not in key}
    env = {
        **env,
        "DYNAMIC_MCP_DEPS_VOLUME": f"{project}-deps",
        **egress,
        "MCP_SANDBOX_EGRESS_ALLOW_PLAIN_HTTP": "true",
    }
    write_override(override_file, frontend_ports)

    stack = Stack(
        project=project,
        env_file=env_file,
        override_file=override_file,
        env=env,
        lb_url=f"http://127.0.0.1:{lb_port}/mcp",
        frontend_urls={name: f"http://127.0.0.1:{port}/mcp" for name, port in frontend_ports.items()},
        admin_token=(workdir / "secrets" / "admin_token").read_text().strip(),
        executor_id=executor_id,
    )
    try:
        stack.compose("up", "-d")
        services = {*PRIVATE_SERVICES, *FRONTENDS, "lb"}
        wait_for(
            "every container to be healthy",
            lambda: stack.health() == dict.fromkeys(services, "healthy"),
            HEALTHY_TIMEOUT,
            stack,
        )
        for name, port in frontend_ports.items():
            wait_for(f"{name}'s /readyz", lambda port=port: http_ok(f"http://127.0.0.1:{port}/readyz"), 30, stack)
        wait_for("the load balancer to route to a frontend", lambda: lb_routes(stack.lb_url), 30, stack)
        for executor in EXECUTORS:
            docker("network", "connect", world.network, stack.container(executor)["Id"])
        stack.world = world
        up = time.monotonic()
        print(f"\ncompose stack: images built in {built - started:.0f} s, up and healthy in {up - built:.0f} s")
        yield stack
    except BaseException:
        print_logs(stack)
        raise
    finally:
        stack.compose("down", "-v", "--remove-orphans", timeout=DOWN_TIMEOUT, check=False)
        for volume in (env["DYNAMIC_MCP_DEPS_VOLUME"], f"{env['DYNAMIC_MCP_DEPS_VOLUME']}-2"):
            subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)
        # The secrets belong to the containers' users; root (who runs this) removes them.
        shutil.rmtree(workdir / "secrets", ignore_errors=True)
        shutil.rmtree(workdir / "egress", ignore_errors=True)
        world.close()


def print_logs(stack: Stack) -> None:
    print(
        f"\n----- compose logs ({stack.project}) -----\n{stack.compose('logs', '--no-color', '--tail=60', check=False)}"
    )


@pytest.fixture(autouse=True)
def logs_on_failure(request, stack: Stack) -> Iterator[None]:
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print_logs(stack)


async def create_seed_tool(client: Client, name: str, admin_token: str) -> None:
    spec = {"name": name, "description": f"e2e tool {name}", "code": SEED_CODE}
    result = await client.call_tool("dynamic.tool.create", {"tool": spec, "adminToken": admin_token})
    assert not result.is_error, f"dynamic.tool.create through the load balancer failed: {result.content}"


def client(url: str, era: str, message_handler=None) -> Client:
    mode = "legacy" if era == ERA_LEGACY else ERA_MODERN
    return Client(url, mode=mode, cache=None, read_timeout_seconds=CALL_TIMEOUT, message_handler=message_handler)


@pytest.mark.anyio
async def test_a_tool_created_through_the_load_balancer_runs_in_both_eras(stack: Stack):
    name = unique_name("compose")
    async with client(stack.lb_url, ERA_MODERN) as modern:
        await create_seed_tool(modern, name, stack.admin_token)
        assert await run_tool(modern, name, {"text": "hello"}) == {"upper": "HELLO"}
    async with client(stack.lb_url, ERA_LEGACY) as legacy:
        assert await run_tool(legacy, name, {"text": "hello"}) == {"upper": "HELLO"}
        # The admin token from the secret file is in force.
        refused = await failure_message(
            legacy, "dynamic.tool.create", {"tool": {"name": unique_name("compose"), "description": "d", "code": "1"}}
        )
        assert "admin" in refused.lower(), refused
    # The run's sandbox was a sibling container on the host's engine, and it is gone: what is
    # left is the warm pools (the default image's, at most MCP_EXECUTOR_WARM_POOL_MAX of 4).
    for executor_id in stack.executor_ids:
        await wait_for_only_warm_containers(executor_id, timeout=10, per_key=4)


@pytest.mark.anyio
async def test_every_frontend_lists_the_same_tools(stack: Stack):
    name = unique_name("compose")
    async with client(stack.lb_url, ERA_MODERN) as through_lb:
        await create_seed_tool(through_lb, name, stack.admin_token)

    listings: dict[str, set[str]] = {}
    for frontend, url in stack.frontend_urls.items():
        for era in (ERA_MODERN, ERA_LEGACY):
            names: set[str] = set()
            # Other frontends learn of the change through the registry's feed: give it a moment.
            with anyio.move_on_after(CATALOG_SETTLE_TIMEOUT):
                while True:
                    async with client(url, era) as direct:
                        names = await listed_tool_names(direct)
                    if name in names:
                        break
                    await anyio.sleep(0.2)
            listings[f"{frontend} ({era})"] = names
    async with client(stack.lb_url, ERA_LEGACY) as through_lb:
        listings["load balancer"] = await listed_tool_names(through_lb)

    missing = [where for where, names in listings.items() if name not in names]
    assert not missing, f"{name} is missing on {missing}"
    distinct = {frozenset(names) for names in listings.values()}
    assert len(distinct) == 1, f"the frontends disagree: {listings}"


@pytest.mark.anyio
async def test_a_subscription_through_the_load_balancer_hears_a_change_made_on_another_frontend(stack: Stack):
    """The notification stream passes the load balancer unbuffered, and the change feed
    reaches whichever frontend holds the stream."""
    counter = ListChangedCounter("through the load balancer")
    async with (
        client(stack.lb_url, ERA_MODERN, message_handler=counter) as listener,
        listener.listen(tools_list_changed=True) as subscription,
    ):
        assert subscription.honored.tools_list_changed, "the subscription was not accepted through the load balancer"
        async with client(stack.frontend_urls["frontend-2"], ERA_MODERN) as writer:
            await create_seed_tool(writer, unique_name("compose"), stack.admin_token)
        counts = await settled_counts([counter], at_least=1)
    assert counts[counter.label] >= 1, f"no tools/list_changed arrived through the load balancer: {counts}"


def test_only_the_load_balancer_is_published_and_only_the_executors_have_docker(stack: Stack):
    lb = stack.container("lb")
    lb_bindings = [b for bindings in lb["NetworkSettings"]["Ports"].values() if bindings for b in bindings]
    assert lb_bindings and all(b["HostIp"] == "127.0.0.1" for b in lb_bindings), lb_bindings
    for service in PRIVATE_SERVICES:
        ports = stack.container(service)["NetworkSettings"]["Ports"] or {}
        published = {port: bindings for port, bindings in ports.items() if bindings}
        assert not published, f"{service} is published on the host: {published}"

    for service in (*PRIVATE_SERVICES, *FRONTENDS, "lb"):
        container = stack.container(service)
        host = container["HostConfig"]
        user = container["Config"]["User"]
        assert user and user.split(":")[0] not in ("0", "root"), f"{service} runs as root ({user!r})"
        assert host["ReadonlyRootfs"], f"{service} has a writable root filesystem"
        assert host["Init"], f"{service} runs without an init"
        assert "ALL" in (host["CapDrop"] or []), f"{service} keeps capabilities: {host['CapDrop']}"
        assert host["Memory"] > 0 and host["NanoCpus"] > 0 and host["PidsLimit"], f"{service} has no resource limits"
        sockets = [m for m in container["Mounts"] if m["Destination"] == "/var/run/docker.sock"]
        if service in EXECUTORS:
            assert sockets, f"{service} has no Docker socket"
        else:
            assert not sockets, f"{service} has the Docker socket"


EGRESS_PROBE = """
const attempt = async (url) => {
  try { const response = await fetch(url); return { status: response.status, body: await response.json() }; }
  catch (error) { return { error: error.message }; }
};
return { allowed: await attempt("http://api.allowed.test/from-compose"), forbidden: await attempt("http://evil.forbidden.test/") };
"""


@pytest.mark.anyio
async def test_code_reaches_its_hosts_through_the_proxy_of_the_executor_in_a_container(stack: Stack):
    """The executor runs in a container here: its egress proxy's sockets live in a host directory
    that it and the sandboxes (siblings on the host's engine) both mount."""
    async with client(stack.lb_url, ERA_MODERN) as modern:
        result = await modern.call_tool(
            "run_js_ephemeral",
            {"code": EGRESS_PROBE, "network": {"allow": [ALLOWED]}, "adminToken": stack.admin_token,
             "timeoutMs": 20000},
        )
    assert not result.is_error, result.content
    out = result.structured_content["result"]
    assert out["allowed"]["status"] == 200 and out["allowed"]["body"]["path"] == "/from-compose", out
    assert f"{FORBIDDEN}:80 is not in the network.allow" in out["forbidden"]["error"], out
    assert [r["path"] for r in stack.world.received(stack.world.allowed)] == ["/from-compose"]


def ping_in_session(url: str, session_id: str) -> int:
    """The HTTP status of a legacy `ping` sent in `session_id` to `url`."""
    request = urllib.request.Request(
        url,
        method="POST",
        data=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode(),
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "Mcp-Session-Id": session_id,
            "MCP-Protocol-Version": "2025-11-25",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


async def toggle_until_heard(writer: Client, stack: Stack, counters: list[ListChangedCounter]) -> None:
    """Change a tool until every counter has heard of it (a legacy client opens its GET stream
    in the background), then forget what they heard."""
    primer = unique_name("primer")
    await create_seed_tool(writer, primer, stack.admin_token)
    enabled = True
    for _ in range(10):
        counts = await settled_counts(counters, at_least=1, timeout=1.0, settle=0.0)
        if all(count >= 1 for count in counts.values()):
            break
        enabled = not enabled
        arguments = {"name": primer, "enabled": enabled, "adminToken": stack.admin_token}
        result = await writer.call_tool("dynamic.tool.enable", arguments)
        assert not result.is_error, result.content
    else:
        pytest.fail(f"some listeners never received tools/list_changed: {[c.label for c in counters]}")
    await anyio.sleep(0.5)
    for counter in counters:
        counter.count = 0


@pytest.mark.anyio
async def test_a_legacy_session_sticks_to_its_frontend_and_hears_changes_made_on_another(stack: Stack):
    session_ids: list[str] = []

    async def remember_session(response) -> None:
        if session_id := response.headers.get("mcp-session-id"):
            session_ids.append(session_id)

    legacy_counter = ListChangedCounter("legacy session through the load balancer")
    modern_counter = ListChangedCounter("2026-07-28 listener through the load balancer")
    timeout = httpx2.Timeout(CALL_TIMEOUT, read=HTTP_READ_TIMEOUT)
    async with (
        httpx2.AsyncClient(timeout=timeout, event_hooks={"response": [remember_session]}) as http,
        Client(
            streamable_http_client(stack.lb_url, http_client=http),
            mode="legacy",
            cache=None,
            read_timeout_seconds=CALL_TIMEOUT,
            message_handler=legacy_counter,
        ) as legacy,
        client(stack.lb_url, ERA_MODERN, message_handler=modern_counter) as modern,
        modern.listen(tools_list_changed=True) as subscription,
    ):
        assert subscription.honored.tools_list_changed
        # Every request of the session goes through the load balancer; a wrong frontend would 404.
        for _ in range(6):
            await listed_tool_names(legacy)
        assert session_ids and len(set(session_ids)) == 1, f"one session id expected, saw {set(session_ids)}"
        [session_id] = set(session_ids)
        answers = {name: ping_in_session(url, session_id) for name, url in stack.frontend_urls.items()}
        owners = [name for name, status in answers.items() if status == 200]
        assert len(owners) == 1 and sorted(answers.values()) == [200, 404, 404], answers
        [owner] = owners
        other = next(name for name in FRONTENDS if name != owner)

        async with client(stack.frontend_urls[other], ERA_MODERN) as writer:
            await toggle_until_heard(writer, stack, [legacy_counter, modern_counter])
            await create_seed_tool(writer, unique_name("compose"), stack.admin_token)
            counts = await settled_counts([legacy_counter, modern_counter], at_least=1)
        assert counts == {legacy_counter.label: 1, modern_counter.label: 1}, counts

    # A restarted frontend has forgotten its sessions: through the load balancer, the session
    # gets 404 (the client's cue to initialize again), whichever frontend answers.
    stack.compose("restart", owner)
    owner_ready = f"{stack.frontend_urls[owner].removesuffix('/mcp')}/readyz"
    wait_for(f"{owner}'s /readyz after its restart", lambda: http_ok(owner_ready), 60, stack)
    assert ping_in_session(stack.lb_url, session_id) == 404
    assert ping_in_session(stack.frontend_urls[owner], session_id) == 404


def test_every_frontend_uses_both_executors(stack: Stack):
    for name, url in stack.frontend_urls.items():
        ready = f"{url.removesuffix('/mcp')}/readyz"
        with urllib.request.urlopen(ready, timeout=5) as response:
            executors = json.loads(response.read())["executors"]
        assert executors == {"configured": 2, "inRotation": 2}, f"{name}: {executors}"
