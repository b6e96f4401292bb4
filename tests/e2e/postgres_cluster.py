"""A throwaway PostgreSQL server for the replica tests: `initdb` into a temp dir,
a server on a free port of 127.0.0.1 (its Unix socket stays in the temp dir), a
database `tools` and a role `registry` with only the rights the registry
documents (CONNECT and CREATE on the database). The same set-up as
registry/tests/support/postgres.rs.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres`
system user (the Debian packages create it), through `runuser`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from processes import free_tcp_port

DATABASE = "tools"
REGISTRY_ROLE = "registry"
REGISTRY_PASSWORD = "Reg1stry-pw-e2e"
ADMIN_PASSWORD = "admin-pw-e2e"
RUN_AS = "postgres"
PG_CTL_WAIT_SECONDS = 30
SQL_TIMEOUT_SECONDS = 30


def server_binaries() -> Path | None:
    """The directory of `initdb`, `pg_ctl` and `psql`: Debian's versioned
    directories first (newest wins), then PATH."""

    def complete(directory: Path) -> bool:
        return all((directory / name).is_file() for name in ("initdb", "pg_ctl", "psql"))

    root = Path("/usr/lib/postgresql")
    versioned = [path / "bin" for path in root.iterdir() if complete(path / "bin")] if root.is_dir() else []
    versioned.sort(key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0)
    if versioned:
        return versioned[-1]
    initdb = shutil.which("initdb")
    if initdb and complete(Path(initdb).resolve().parent):
        return Path(initdb).resolve().parent
    return None


class PgCluster:
    """One running server. `stop` crashes it (immediate shutdown) and
    `start_again` brings it back on the same port and data; `destroy` removes it."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.run_as_postgres = os.geteuid() == 0
        # Not under pytest's tmp_path: the `postgres` user must be able to enter it.
        self.dir = Path(tempfile.mkdtemp(prefix="dmcp-pg-", dir="/tmp"))
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "server.log"
        self.port = 0
        password_file = self.dir / "admin.pw"
        password_file.write_text(ADMIN_PASSWORD)
        if self.run_as_postgres:
            for path in (self.dir, password_file):
                shutil.chown(path, RUN_AS, RUN_AS)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={password_file}",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--wal-segsize=1",
        )
        # A free port can be taken between the probe and the bind: try a few.
        for _ in range(5):
            self.port = free_tcp_port()
            if self._try_start():
                break
        else:
            raise AssertionError(f"PostgreSQL did not start; its log:\n{self.log()}")
        for statement in (
            f"CREATE DATABASE {DATABASE}",
            f"REVOKE ALL ON DATABASE {DATABASE} FROM PUBLIC",
            f"CREATE ROLE {REGISTRY_ROLE} LOGIN PASSWORD '{REGISTRY_PASSWORD}'",
            f"GRANT CONNECT, CREATE ON DATABASE {DATABASE} TO {REGISTRY_ROLE}",
        ):
            self.sql(statement, database="postgres")

    def registry_url(self) -> str:
        """The registry's URL: its own role, over TCP, with a password."""
        return f"postgres://{REGISTRY_ROLE}:{REGISTRY_PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    def sql(self, statement: str, database: str = DATABASE) -> str:
        """Runs one statement as the superuser; returns its rows, unaligned, one per line."""
        answer = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                statement,
            ],
            env={**os.environ, "PGPASSWORD": ADMIN_PASSWORD, "PGCONNECT_TIMEOUT": "5"},
            capture_output=True,
            text=True,
            timeout=SQL_TIMEOUT_SECONDS,
        )
        assert answer.returncode == 0, f"psql {statement!r} failed: {answer.stderr}"
        return answer.stdout.strip()

    def stop(self) -> None:
        """Stops the server the hard way, as a crash would."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")

    def start_again(self) -> None:
        assert self._try_start(), f"PostgreSQL did not restart; its log:\n{self.log()}"

    def running(self) -> bool:
        return self._output("pg_ctl", "-D", str(self.data_dir), "status").returncode == 0

    def destroy(self) -> None:
        self._output("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "<no log>"

    def _try_start(self) -> bool:
        # fsync=off: a commit still reaches the OS before it is acknowledged, so
        # crashing the server loses nothing; only a machine crash would.
        options = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} -c fsync=off"
        )
        started = self._output(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            str(PG_CTL_WAIT_SECONDS),
            "start",
        )
        return started.returncode == 0

    def _run(self, program: str, *args: str) -> None:
        done = self._output(program, *args)
        assert done.returncode == 0, f"{program} {args} failed: {done.stderr}\n{self.log()}"

    def _output(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / program), *args]
        if self.run_as_postgres:
            argv = ["runuser", "-u", RUN_AS, "--", *argv]
        return subprocess.run(argv, cwd=self.dir, capture_output=True, text=True, timeout=PG_CTL_WAIT_SECONDS + 10)
