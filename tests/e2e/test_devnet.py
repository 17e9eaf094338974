"""`virtuoz devnet` as a user runs it: cold start, readiness, chains advancing, a clean stop that
leaves no process behind, a warm restart that keeps the data, and a SIGKILL that orphans nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import asyncpg
import psutil
import pytest

from devnet.processes import free_port

pytestmark = pytest.mark.e2e

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
        ports = {name: free_port() for name in ("api", "pg", "redis", "ethereum", "polygon")}
        self.env = {
            **os.environ,
            "VIRTUOZ_ENV": "devnet",
            "VIRTUOZ_DATA_DIR": str(data_dir),
            "VIRTUOZ_API_PORT": str(ports["api"]),
            "VIRTUOZ_DEVNET_POSTGRES_PORT": str(ports["pg"]),
            "VIRTUOZ_DEVNET_REDIS_PORT": str(ports["redis"]),
            "VIRTUOZ_DEVNET_CHAIN_PORTS": json.dumps({"ethereum": ports["ethereum"], "polygon": ports["polygon"]}),
            "VIRTUOZ_HEARTBEAT_INTERVAL_SECONDS": "1",
        }
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


def test_devnet_runs_stops_cleanly_resumes_and_never_orphans(tmp_path):
    devnet = Devnet(tmp_path / "devnet")
    manifest, cold_seconds = devnet.start()
    try:
        chains = {chain["name"]: chain for chain in manifest["chains"]}
        assert set(chains) == {"ethereum", "polygon"}
        assert (chains["ethereum"]["chain_id"], chains["ethereum"]["native"], chains["ethereum"]["confirmations"]) == (31337, "ETH", 3)
        assert (chains["polygon"]["chain_id"], chains["polygon"]["native"], chains["polygon"]["confirmations"]) == (31338, "POL", 2)
        for chain in chains.values():
            assert chain["tokens"]["USDC"].startswith("0x") and len(chain["tokens"]["USDC"]) == 42
            assert chain["faucet_private_key"].startswith("0x") and chain["rpc_url"].startswith("http://127.0.0.1:")
        assert {user["role"] for user in manifest["users"]} == {"customer", "support", "operator", "compliance", "admin"}
        admin = next(user for user in manifest["users"] if user["role"] == "admin")
        login = urllib.request.Request(
            manifest["api_url"] + "/api/v1/auth/login",
            data=json.dumps({"email": admin["email"], "password": admin["password"]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(login, timeout=10) as response:
            assert json.loads(response.read())["user"]["roles"] == ["admin"]

        status, readiness = get_json(manifest["api_url"] + "/readiness")
        assert status == 200, readiness
        assert {"database", "redis", "chain:ethereum", "chain:polygon", "workers"} <= {c["name"] for c in readiness["checks"]}

        _, first = get_json(manifest["api_url"] + "/api/v1/status")
        time.sleep(2.5)
        _, second = get_json(manifest["api_url"] + "/api/v1/status")
        heights = {chain["name"]: chain["height"] for chain in first["chains"]}
        for chain in second["chains"]:
            assert chain["height"] > heights[chain["name"]], "interval mining must advance both chains"

        assert asyncio.run(count_marker(manifest["database_url"], "resume-marker", insert=True)) == 1
        children = devnet.descendants()
        assert {"postgres", "anvil", "redis-server"} <= {child.name() for child in children}
        assert devnet.stop(signal.SIGTERM) == 0
        assert wait_gone(children) == []
        assert not devnet.manifest.exists(), "devnet.json must not outlive the devnet"

        # Warm start on the same data dir: the database, the chains and USDC are still there.
        warm, warm_seconds = devnet.start()
        print(f"\ndevnet start: cold {cold_seconds:.1f}s, warm {warm_seconds:.1f}s")
        assert [c["tokens"]["USDC"] for c in warm["chains"]] == [c["tokens"]["USDC"] for c in manifest["chains"]]
        assert warm["users"] == manifest["users"], "demo passwords are generated once and kept"
        assert asyncio.run(count_marker(warm["database_url"], "resume-marker", insert=False)) == 1
        _, resumed = get_json(warm["api_url"] + "/api/v1/status")
        for chain in resumed["chains"]:
            assert chain["height"] >= heights[chain["name"]], "a resumed chain keeps its blocks"

        # A SIGKILL gives the devnet no chance to clean up: the parent-death signal must.
        children = devnet.descendants()
        devnet.stop(signal.SIGKILL)
        assert wait_gone(children) == []
    finally:
        if devnet.process and devnet.process.poll() is None:
            devnet.process.kill()
