"""Shared fixtures of the end-to-end tests.

These tests drive the real binaries (target/debug/dynamic-mcp, or $DYNAMIC_MCP_BIN)
with the real Python MCP client against a real Docker engine. Run them from the
repository root: `python3 -m pytest tests/e2e -q`.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest

from docker_probe import SANDBOX_IMAGE, docker_problem, image_present, remove_executor_containers
from processes import tail
from stack import (
    ERA_LEGACY,
    ERA_MODERN,
    EXECUTOR_BINARY,
    REGISTRY_BINARY,
    REPO_ROOT,
    Frontend,
    HttpFrontend,
    Launcher,
    frontend_binary,
    service_binary,
)

# The four ways a client reaches the product: transport x protocol era.
MODES = {
    "stdio-legacy": ("stdio", ERA_LEGACY),
    "stdio-2026-07-28": ("stdio", ERA_MODERN),
    "http-legacy": ("http", ERA_LEGACY),
    "http-2026-07-28": ("http", ERA_MODERN),
}

SANDBOX_BUILD_TIMEOUT = 600


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def _ensure_sandbox_image() -> None:
    if image_present(SANDBOX_IMAGE):
        return
    script = REPO_ROOT / "sandbox" / "build-offline.sh"
    if not script.exists():
        pytest.exit(
            f"the sandbox image {SANDBOX_IMAGE} is missing and {script} does not exist to build it", returncode=1
        )
    built = subprocess.run(
        ["bash", str(script), SANDBOX_IMAGE], capture_output=True, text=True, timeout=SANDBOX_BUILD_TIMEOUT
    )
    if built.returncode != 0 or not image_present(SANDBOX_IMAGE):
        pytest.exit(f"building the sandbox image with {script} failed:\n{built.stderr[-3000:]}", returncode=1)


@pytest.fixture(scope="session", autouse=True)
def prerequisites() -> None:
    """Docker, the binaries and the sandbox image. Without them the session fails, CI or not:
    these are tests of the real thing, and skipping would report success for nothing."""
    problem = docker_problem()
    if problem is not None:
        pytest.exit(
            f"the e2e tests need a running Docker engine, and `docker info` failed: {problem}\n"
            "Start one (scripts/setup.sh does) and run again.",
            returncode=1,
        )
    binaries = [frontend_binary(), service_binary(REGISTRY_BINARY), service_binary(EXECUTOR_BINARY)]
    missing = [str(path) for path in binaries if not path.is_file()]
    if missing:
        pytest.exit(
            f"missing binaries {missing}: run `cargo build --workspace --bins` "
            "(or point DYNAMIC_MCP_BIN at the frontend)",
            returncode=1,
        )
    _ensure_sandbox_image()


@pytest.fixture(scope="session")
def executor_id_prefix():
    """Every executor of this session gets an id with this prefix; its leftovers are removed at the end."""
    prefix = f"e2e{uuid.uuid4().hex[:8]}"
    yield prefix
    remove_executor_containers(prefix)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def launcher(request, tmp_path, executor_id_prefix):
    """Starts the product's processes for one test and stops them all afterwards;
    when the test failed, the tail of every log is printed with the report."""
    launcher = Launcher(tmp_path, f"{executor_id_prefix}-{uuid.uuid4().hex[:6]}")
    try:
        yield launcher
    finally:
        launcher.stop_all()
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            for path in launcher.log_paths:
                print(f"\n----- {path.name} -----\n{tail(path)}")


@pytest.fixture(params=list(MODES))
def mode(request) -> tuple[str, str]:
    """(transport, era) for tests that must hold in all four modes."""
    return MODES[request.param]


@pytest.fixture
def frontend(launcher, mode) -> Frontend:
    """A frontend with its own registry, executor and store, reachable in `mode`'s transport."""
    transport, _era = mode
    return launcher.frontend(transport)


@pytest.fixture
def http_frontend(launcher) -> HttpFrontend:
    return launcher.http_frontend()
