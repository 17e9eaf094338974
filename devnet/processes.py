"""Child processes that cannot outlive their parent.

Every server and daemon the devnet (or a test fixture) starts is a direct child with
``PR_SET_PDEATHSIG``: if the parent dies, even by SIGKILL, the kernel sends the child SIGTERM, so
no orphan PostgreSQL, Redis or Anvil stays behind.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if os.name == "posix" else None


def _die_with_parent(signal_number: int) -> Callable[[], None]:
    def set_parent_death_signal() -> None:
        if _libc is not None:
            _libc.prctl(_PR_SET_PDEATHSIG, signal_number)

    return set_parent_death_signal


# Below Linux's ephemeral range (32768-60999 by default), where the kernel never puts a client socket.
_SERVER_PORTS = range(20_000, 32_000)


def free_port() -> int:
    """A free port for a server to listen on, outside the ephemeral range. A port from the kernel's
    own pick (bind to 0) is in that range, where any outgoing connection may take it before the
    server binds it, or while a server restarts on it (a client retrying the stopped server can
    even connect to itself there, TCP's simultaneous open): the server then fails EADDRINUSE."""
    for port in random.sample(_SERVER_PORTS, 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_SERVER_PORTS.start}-{_SERVER_PORTS.stop - 1}")


def side_by_side_env(data_dir: Path) -> dict[str, str]:
    """The environment of a `virtuoz devnet` that runs beside another one (a test's, a benchmark's):
    its own data directory and a free port for everything it listens on."""
    ports = {name: free_port() for name in ("api", "pg", "redis", "ethereum", "polygon", "smtp", "trp-a", "trp-b")}
    return {
        **os.environ,
        "VIRTUOZ_ENV": "devnet",
        "VIRTUOZ_DATA_DIR": str(data_dir),
        "VIRTUOZ_API_PORT": str(ports["api"]),
        "VIRTUOZ_DEVNET_POSTGRES_PORT": str(ports["pg"]),
        "VIRTUOZ_DEVNET_REDIS_PORT": str(ports["redis"]),
        "VIRTUOZ_DEVNET_CHAIN_PORTS": json.dumps({"ethereum": ports["ethereum"], "polygon": ports["polygon"]}),
        "VIRTUOZ_DEVNET_SMTP_PORT": str(ports["smtp"]),
        "VIRTUOZ_DEVNET_METRICS_PORT": "0",
        "VIRTUOZ_TRAVEL_RULE_IDENTITIES": json.dumps([
            {"name": "virtuoz", "legal_name": "VirtuOZ Devnet VASP", "port": ports["trp-a"]},
            {"name": "counterparty", "legal_name": "Counterparty VASP Ltd (devnet)", "country": "DE",
             "port": ports["trp-b"]}]),
    }


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((host, port)) == 0


class ManagedProcess:
    """A named child process with its output in a log file, stopped gracefully then forcibly."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.user = user
        self.stop_signal = stop_signal
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(
                self.argv,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                user=self.user,
                preexec_fn=_die_with_parent(self.stop_signal),
                # Its own process group: a Ctrl-C in the terminal reaches the parent only, which
                # then stops the children in order (API first, PostgreSQL last).
                process_group=0,
            )
        log.info("started %s (pid %s)", self.name, self.process.pid)
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_until(self, ready: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited during start-up; see {self.log_path}:\n{self.tail()}")
            if ready():
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s; see {self.log_path}:\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal_stop(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(self.stop_signal)

    def wait_stopped(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs: killing it", self.name, timeout)
            self.process.kill()
            self.process.wait()
        log.info("stopped %s", self.name)

    def stop(self, timeout: float = 15.0) -> None:
        self.signal_stop()
        self.wait_stopped(timeout)


def stop_all(processes: list[ManagedProcess], timeout: float = 15.0) -> None:
    """Signal every process first, then wait: they shut down side by side, not one after another."""
    for process in processes:
        process.signal_stop()
    deadline = time.monotonic() + timeout
    for process in processes:
        process.wait_stopped(max(deadline - time.monotonic(), 0.1))
