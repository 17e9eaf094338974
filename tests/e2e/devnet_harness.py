"""A `virtuoz devnet` run as a user starts it: a subprocess with its own data dir and free ports."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import asyncpg
import psutil

from devnet.processes import side_by_side_env

START_TIMEOUT = 180.0


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class Devnet:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env = {**side_by_side_env(data_dir), "VIRTUOZ_HEARTBEAT_INTERVAL_SECONDS": "1"}
        self.process: subprocess.Popen | None = None
        self.output = data_dir.parent / "devnet-output.log"

    @property
    def manifest(self) -> Path:
        return self.data_dir / "devnet.json"

    def start(self) -> tuple[dict, float]:
        started = time.monotonic()
        with open(self.output, "ab") as output:
            self.process = subprocess.Popen([sys.executable, "-m", "cli", "devnet"], env=self.env,
                                            stdout=output, stderr=subprocess.STDOUT)
        deadline = started + START_TIMEOUT
        while not self.manifest.exists():
            assert self.process.poll() is None, self.output.read_text()[-4000:]
            assert time.monotonic() < deadline, self.output.read_text()[-4000:]
            time.sleep(0.1)
        return json.loads(self.manifest.read_text()), time.monotonic() - started

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)


def wait_gone(processes: list[psutil.Process], timeout: float = 30.0) -> list[str]:
    gone, alive = psutil.wait_procs(processes, timeout=timeout)
    return [f"{process.pid} {process.name()}" for process in alive]


async def count_marker(database_url: str, marker: str, insert: bool) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        if insert:
            await connection.execute("INSERT INTO service_heartbeats (service) VALUES ($1)", marker)
        return await connection.fetchval("SELECT count(*) FROM service_heartbeats WHERE service = $1", marker)
    finally:
        await connection.close()


