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
