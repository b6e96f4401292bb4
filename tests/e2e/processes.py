"""Starting, waiting for and stopping the product's processes.

Every process gets its own process group and a log file, so a test can stop
exactly what it started (also the children a frontend spawns) and show the
logs when it fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

STOP_GRACE_SECONDS = 5.0


class ManagedProcess:
    """One product process started by the tests, with its log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exited(self) -> bool:
        return self.popen.poll() is not None

    def kill_hard(self) -> None:
        """SIGKILL this process only (a crash, as `kill -9` does it)."""
        if not self.exited():
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=STOP_GRACE_SECONDS)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL for the whole group if it lingers."""
        if not self.exited():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        try:
            # Children the process spawned share its group; none may outlive the test.
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.popen.poll() is None:
            self.popen.wait(timeout=STOP_GRACE_SECONDS)
        self._log.close()

    def log_tail(self, max_bytes: int = 4000) -> str:
        return tail(self.log_path, max_bytes)


def tail(path: Path, max_bytes: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return "<no log>"
    return data[-max_bytes:].decode("utf-8", "replace")


def wait_until(what: str, ready: Callable[[], bool], timeout: float, process: ManagedProcess | None = None) -> None:
    """Poll `ready` until true; fail with the process's log if it dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if process is not None and process.exited():
            raise AssertionError(
                f"{process.name} exited with code {process.popen.returncode} before {what}.\n"
                f"--- {process.log_path} ---\n{process.log_tail()}"
            )
        time.sleep(0.05)
    log = f"\n--- {process.log_path} ---\n{process.log_tail()}" if process else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{log}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def unix_socket_accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
