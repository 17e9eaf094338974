"""`virtuoz api`: one process, or a parent and ``VIRTUOZ_API_WORKERS`` worker processes on one port.

One event loop uses one core. With more than one worker the parent binds nothing itself: it
starts the workers (``virtuoz api --worker N``), each of which binds the same host and port with
SO_REUSEPORT, so the kernel spreads incoming connections over them, and each opens its own
database pool, Redis clients and control-channel listener. The parent forwards SIGTERM and SIGINT
to them and exits once they all have; a worker that exits on its own, nobody having asked, stops
the others too, and the parent exits non-zero so that its supervisor (the devnet's, systemd,
Kubernetes) starts the whole group again.

Metrics: each worker writes its values to files in ``<data dir>/metrics/api-<port>``, emptied when
the parent starts, and /metrics, whichever worker answers, reads them all (``api.metrics``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from aiohttp import web
from prometheus_client.multiprocess import mark_process_dead

from api.app import create_app
from api.metrics import HttpMetrics
from core.settings import Settings

log = logging.getLogger(__name__)

# prometheus-client reads it when it is imported: it must be in a worker's environment from the start.
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# aiohttp gives open connections up to 60 s to finish after a stop signal; past this, SIGKILL.
STOP_SECONDS = 70.0
POLL_SECONDS = 0.2
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)  # loaded here: between fork and exec, only the call


def serve(settings: Settings, host: str, port: int, *, metrics: HttpMetrics | None = None,
          reuse_port: bool = False) -> None:
    web.run_app(create_app(settings, metrics=metrics), host=host, port=port, reuse_port=reuse_port or None,
                access_log=None, print=None)


def run_api(settings: Settings, host: str, port: int) -> int:
    if settings.api_workers == 1:
        serve(settings, host, port)
        return 0
    return _supervise(settings, host, port)


def run_worker(settings: Settings, host: str, port: int, index: int, metrics_dir: Path) -> int:
    """One worker of a `virtuoz api` parent (the parent passes ``--worker`` and ``--metrics-dir``)."""
    serve(settings, host, port, metrics=HttpMetrics(metrics_dir, worker=index), reuse_port=True)
    return 0


def metrics_dir_for(settings: Settings, port: int) -> Path:
    return (settings.data_dir / "metrics" / f"api-{port}").resolve()


def _refuse_a_port_in_use(host: str, port: int) -> None:
    """SO_REUSEPORT lets a second `virtuoz api` of the same user share a port silently, splitting the
    traffic with the first: bind without it first, which a listening socket on the port refuses."""
    for family, kind, protocol, _, address in socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                                 flags=socket.AI_PASSIVE):
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds: TIME_WAIT is free
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as error:
                raise SystemExit(f"virtuoz api: cannot listen on {host}:{port}: {error.strerror}") from None


def _die_with_parent() -> None:
    # Even a SIGKILLed parent takes its workers with it: the kernel sends them SIGTERM.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _supervise(settings: Settings, host: str, port: int) -> int:
    _refuse_a_port_in_use(host, port)
    metrics_dir = metrics_dir_for(settings, port)
    shutil.rmtree(metrics_dir, ignore_errors=True)  # the last run's values (and dead pids) are not ours
    metrics_dir.mkdir(parents=True)
    env = {**os.environ, MULTIPROCESS_DIR_VARIABLE: str(metrics_dir)}
    stop: list[int] = []  # the signal that asked the group to stop, once one has

    def record_stop(signum: int, frame: object) -> None:
        if not stop:  # forwarded once: a second signal would cut a worker's graceful shutdown short
            stop.append(signum)

    previous = {sig: signal.signal(sig, record_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(settings.api_workers):
            if stop:
                break
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "cli", "api", "--host", host, "--port", str(port), "--worker", str(index),
                 "--metrics-dir", str(metrics_dir)],
                # preexec_fn: this parent runs no thread of its own.
                env=env, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,  # noqa: PLW1509
                # Their own process group: a Ctrl-C in the terminal reaches the parent only, which
                # forwards it once.
                process_group=0,
            ))
        log.info("API on %s:%s: %d workers (pids %s)", host, port, len(workers),
                 ", ".join(str(worker.pid) for worker in workers))
        return _wait(workers, stop, metrics_dir)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _wait(workers: list[subprocess.Popen[bytes]], stop: list[int], metrics_dir: Path) -> int:
    exit_code = 0
    exited: set[int] = set()
    signalled: set[int] = set()
    deadline: float | None = None
    while True:
        for worker in workers:
            code = worker.poll()
            if code is None or worker.pid in exited:
                continue
            exited.add(worker.pid)
            mark_process_dead(worker.pid, str(metrics_dir))
            if not stop:
                log.error("API worker pid %s exited with %s: stopping the others", worker.pid, code)
                stop.append(signal.SIGTERM)
                exit_code = code if code > 0 else 1
            elif code not in (0, -stop[0]) and not exit_code:
                log.warning("API worker pid %s exited with %s while stopping", worker.pid, code)
                exit_code = code if code > 0 else 1
        if len(exited) == len(workers):
            return exit_code
        if stop:
            for worker in workers:
                if worker.pid not in signalled and worker.poll() is None:
                    worker.send_signal(stop[0])
                    signalled.add(worker.pid)
            deadline = deadline or time.monotonic() + STOP_SECONDS
            if time.monotonic() > deadline:
                log.warning("API workers still running %.0fs after %s: killing them", STOP_SECONDS,
                            signal.Signals(stop[0]).name)
                for worker in workers:
                    if worker.poll() is None:
                        worker.kill()
        time.sleep(POLL_SECONDS)
