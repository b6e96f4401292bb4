"""The images code runs in: the sandbox image builds on a machine that never had busybox, and runs
and sessions can write their work dir and /tmp on a stock-style image that has no /work."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from docker_probe import SANDBOX_IMAGE, docker, image_present
from mcp_calls import admin, create_tool, run_tool, unique_name
from sandbox_images import stock_style_image
from stack import ERA_LEGACY, ERA_MODERN, REPO_ROOT

pytestmark = pytest.mark.anyio

BUILD_SCRIPT = REPO_ROOT / "sandbox" / "build-offline.sh"
BUILD_TIMEOUT = 600
HOST_BUSYBOX = Path("/bin/busybox")

WRITES_BOTH = """const fs = await import('node:fs');
fs.writeFileSync('note.txt', 'work:' + args.n);
fs.writeFileSync('/tmp/note.txt', 'tmp:' + args.n);
return { cwd: process.cwd(), work: fs.readFileSync('note.txt', 'utf8'), tmp: fs.readFileSync('/tmp/note.txt', 'utf8') };"""


def downloaded_busybox(into: Path) -> Path:
    """Debian's static busybox, fetched into `into`: what a new machine can always get."""
    subprocess.run(["apt-get", "download", "busybox-static"], cwd=into, check=True, capture_output=True, timeout=120)
    (deb,) = into.glob("busybox-static_*.deb")
    extracted = into / "extracted"
    extracted.mkdir()
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True, timeout=60)
    subprocess.run(["tar", "-x", "-C", str(extracted), "./bin/busybox"], input=tar.stdout, check=True, timeout=60)
    return extracted / "bin" / "busybox"


def build_without_host_busybox(tag: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Runs the build script where /bin/busybox cannot be seen: in a private mount namespace with
    /bin/busybox covered when this host has one, so a host-dependent build fails here as on a new machine."""
    command = ["bash", str(BUILD_SCRIPT), tag]
    if HOST_BUSYBOX.exists() or HOST_BUSYBOX.is_symlink():
        hide = f"mount --bind /dev/null {HOST_BUSYBOX} && exec \"$@\""
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", hide, "build", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT, env=env)


@pytest.mark.parametrize("source", ["explicit", "debian-package"])
def test_the_sandbox_image_builds_without_a_host_busybox(tmp_path, source):
    env = {key: value for key, value in os.environ.items() if key != "SANDBOX_BUSYBOX"}
    if source == "explicit":
        env["SANDBOX_BUSYBOX"] = str(downloaded_busybox(tmp_path))
    tag = f"dynamic-mcp-e2e-sandbox:{uuid.uuid4().hex[:12]}"
    try:
        built = build_without_host_busybox(tag, env)
        assert built.returncode == 0, f"build-offline.sh failed:\n{built.stderr[-3000:]}"
        assert image_present(tag)
        probe = (
            "readlink /bin/sh; readlink /usr/bin/env; echo x > /tmp/x && cat /tmp/x; "
            "/usr/bin/env node -e 'process.stdout.write(String(1+1))'"
        )
        out = docker("run", "--rm", "--network", "none", "--user", "65534:65534", tag, "sh", "-c", probe)
        assert out == "/bin/busybox\n/bin/busybox\nx\n2", out
    finally:
        if image_present(tag):
            docker("image", "rm", "-f", tag)


def test_the_build_refuses_a_busybox_that_is_not_there(tmp_path):
    env = {**os.environ, "SANDBOX_BUSYBOX": str(tmp_path / "missing")}
    built = subprocess.run(
        ["bash", str(BUILD_SCRIPT), f"dynamic-mcp-e2e-sandbox:{uuid.uuid4().hex[:12]}"],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        env=env,
    )
    assert built.returncode != 0
    assert "SANDBOX_BUSYBOX" in built.stderr and "not an executable file" in built.stderr, built.stderr


@pytest.fixture(scope="module")
def stock_image() -> str:
    assert shutil.which("docker"), "the docker CLI is needed"
    return stock_style_image()


@pytest.mark.parametrize("era", [ERA_MODERN, ERA_LEGACY])
async def test_runs_and_sessions_write_work_and_tmp_on_a_stock_style_image(launcher, stock_image, era):
    frontend = launcher.http_frontend(settings={"MCP_SANDBOX_ALLOWED_IMAGES": f"{SANDBOX_IMAGE},{stock_image}"})
    async with frontend.connect(era) as client:
        name = unique_name()
        await create_tool(client, name, WRITES_BOTH, image=stock_image)
        assert await run_tool(client, name, {"n": 7}) == {"cwd": "/work", "work": "work:7", "tmp": "tmp:7"}

        session = (await admin(client, "sandbox.initialize", {"image": stock_image}))["sessionId"]
        try:
            ran = await admin(
                client,
                "sandbox.exec",
                {"sessionId": session, "commands": ["echo x > note.txt && cat note.txt", "echo y > /tmp/y && cat /tmp/y"]},
            )
            assert [(r["stdout"], r["exitCode"]) for r in ran["results"]] == [("x\n", 0), ("y\n", 0)], ran
            ran_js = await admin(client, "sandbox.run_js", {"sessionId": session, "code": WRITES_BOTH, "args": {"n": 8}})
            assert ran_js["result"] == {"cwd": "/work", "work": "work:8", "tmp": "tmp:8"}, ran_js
        finally:
            await admin(client, "sandbox.stop", {"sessionId": session})
