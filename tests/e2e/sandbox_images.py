"""Images the tests build for themselves, offline, from the sandbox image."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from docker_probe import SANDBOX_IMAGE, docker, image_present

IMAGES_DIR = Path(__file__).resolve().parent / "images"
BUILD_TIMEOUT = 300


def stock_style_image() -> str:
    """An image shaped like an official Node image (see images/stock/Dockerfile).
    Tagged by the Dockerfile and base image, so it is built once and reused."""
    dockerfile = IMAGES_DIR / "stock" / "Dockerfile"
    base_id = docker("image", "inspect", "-f", "{{.Id}}", SANDBOX_IMAGE).strip()
    digest = hashlib.sha256(dockerfile.read_bytes() + base_id.encode()).hexdigest()[:12]
    tag = f"dynamic-mcp-e2e-stock:{digest}"
    if not image_present(tag):
        # The legacy builder: there is no BuildKit here, and the base exists only locally.
        built = subprocess.run(
            ["docker", "build", "-q", "--build-arg", f"BASE={SANDBOX_IMAGE}", "-t", tag, str(dockerfile.parent)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        if built.returncode != 0:
            raise RuntimeError(f"building {tag} failed: {built.stderr[-2000:]}")
    return tag
