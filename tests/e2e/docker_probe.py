"""Looking at the containers the executor starts, through the docker CLI."""

from __future__ import annotations

import json
import subprocess
import time

import anyio.to_thread

SANDBOX_IMAGE = "dynamic-mcp-sandbox:latest"

LABEL_MANAGED = "dynamic-mcp.managed"
LABEL_EXECUTOR = "dynamic-mcp.executor"
LABEL_ROLE = "dynamic-mcp.role"
LABEL_TOOL = "dynamic-mcp.tool"
LABEL_DEPS_KEY = "dynamic-mcp.deps-key"


def docker(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def docker_problem() -> str | None:
    """Why the Docker engine cannot be used, or None when it answers."""
    try:
        docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    except (OSError, subprocess.TimeoutExpired, RuntimeError) as error:
        return str(error)
    return None


def image_present(image: str) -> bool:
    try:
        docker("image", "inspect", image)
    except RuntimeError:
        return False
    return True


def run_labels(executor_id: str, **extra: str) -> dict[str, str]:
    """The labels of tool-run containers started by one executor."""
    return {LABEL_EXECUTOR: executor_id, LABEL_ROLE: "run", **extra}


def container_ids(labels: dict[str, str], include_stopped: bool = True) -> list[str]:
    args = ["ps", "-q", "--no-trunc"]
    if include_stopped:
        args.append("-a")
    for key, value in labels.items():
        args += ["--filter", f"label={key}={value}"]
    return docker(*args).split()


def inspect(container_id: str) -> dict:
    return json.loads(docker("inspect", container_id))[0]


def process_users(container_id: str) -> list[str]:
    """The uid of every process running in the container, as the host sees it."""
    # Docker needs the pid column to find the container's processes among the host's.
    listing = docker("top", container_id, "-o", "pid,uid")
    return [line.split()[1] for line in listing.splitlines()[1:] if line.strip()]


def remove_executor_containers(executor_id_prefix: str) -> list[str]:
    """Force-remove containers whose executor label starts with the prefix (test cleanup)."""
    listing = docker(
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        f"label={LABEL_EXECUTOR}",
        "--format",
        '{{.ID}} {{.Label "' + LABEL_EXECUTOR + '"}}',
    )
    ours = [
        line.split()[0]
        for line in listing.splitlines()
        if len(line.split()) == 2 and line.split()[1].startswith(executor_id_prefix)
    ]
    if ours:
        docker("rm", "-f", *ours)
    return ours


async def wait_for_container(labels: dict[str, str], timeout: float) -> str:
    """The id of the first running container with these labels."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = await anyio.to_thread.run_sync(lambda: container_ids(labels, include_stopped=False))
        if ids:
            return ids[0]
        await anyio.sleep(0.05)
    raise AssertionError(f"no running container with labels {labels} appeared within {timeout} s")


async def wait_for_no_containers(labels: dict[str, str], timeout: float) -> None:
    """Every container with these labels (running or not) must be gone within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        ids = await anyio.to_thread.run_sync(lambda: container_ids(labels))
        if not ids:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"containers with labels {labels} still exist {timeout} s after the call: {ids}")
        await anyio.sleep(0.1)


def marker_code(marker: str, then: str) -> str:
    """Tool code that first leaves `marker` in its container's /tmp (see `wait_for_call_container`)."""
    return f"(await import('node:fs')).writeFileSync('/tmp/{marker}', '');\n{then}"


def holds_marker(container_id: str, marker: str) -> bool:
    try:
        docker("exec", container_id, "test", "-e", f"/tmp/{marker}", timeout=10)
    except (RuntimeError, subprocess.TimeoutExpired):
        return False
    return True


async def wait_for_call_container(executor_id: str, marker: str, timeout: float) -> str:
    """The run container that is running a call whose code began with `marker_code(marker, …)`.
    Runs are found by role and by what they run, never by the tool label: a warm container is
    started before anyone knows which tool it will run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = await anyio.to_thread.run_sync(lambda: container_ids(run_labels(executor_id), include_stopped=False))
        for container in running:
            if await anyio.to_thread.run_sync(holds_marker, container, marker):
                return container
        await anyio.sleep(0.05)
    raise AssertionError(f"no run container of executor {executor_id} ran the call marked {marker} within {timeout} s")


def exists(container_id: str) -> bool:
    try:
        docker("container", "inspect", container_id)
    except RuntimeError:
        return False
    return True


async def wait_for_gone(container_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await anyio.to_thread.run_sync(exists, container_id):
        if time.monotonic() > deadline:
            raise AssertionError(f"container {container_id} still exists {timeout} s after its call")
        await anyio.sleep(0.1)


def warm_pool_problems(executor_id: str, per_key: int) -> list[str]:
    """What is left of an executor that is not an idle warm container: anything but a running run
    container, or more running run containers of one image and dependency set than its pool keeps."""
    problems = []
    per_pool: dict[tuple[str, str], int] = {}
    for container in container_ids({LABEL_EXECUTOR: executor_id}):
        try:
            details = inspect(container)
        except RuntimeError:
            continue  # removed since it was listed
        labels = details["Config"].get("Labels") or {}
        if labels.get(LABEL_ROLE) != "run" or not details["State"].get("Running"):
            problems.append(f"{container[:12]} ({labels.get(LABEL_ROLE)}, {details['State'].get('Status')})")
            continue
        pool = (details["Config"].get("Image", ""), labels.get(LABEL_DEPS_KEY, ""))
        per_pool[pool] = per_pool.get(pool, 0) + 1
    problems += [f"{count} idle run containers for {pool}" for pool, count in per_pool.items() if count > per_key]
    return problems


async def wait_for_only_warm_containers(executor_id: str, timeout: float, per_key: int = 1) -> None:
    """Everything a call started is gone: at most `per_key` idle warm containers per pool remain
    (the executor's MCP_EXECUTOR_WARM_POOL_SIZE)."""
    deadline = time.monotonic() + timeout
    while problems := await anyio.to_thread.run_sync(warm_pool_problems, executor_id, per_key):
        if time.monotonic() > deadline:
            raise AssertionError(f"containers of executor {executor_id} left {timeout} s after the calls: {problems}")
        await anyio.sleep(0.1)
