"""`virtuoz devnet` as a user runs it: cold start, readiness, chains advancing, a clean stop that
leaves no process behind, a warm restart that keeps the data, and a SIGKILL that orphans nothing."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request

import pytest

from tests.e2e.devnet_harness import Devnet, count_marker, get_json, wait_gone

pytestmark = pytest.mark.e2e


# What each kind of process must export (a line of the exposition that starts so).
PROCESS_METRICS = {
    "api": ["virtuoz_http_request_duration_seconds", "virtuoz_withdrawals_in_flight{"],
    "worker-custody": ["virtuoz_queue_depth{queue=\"custody\"}", "virtuoz_queue_dead_letters{queue=\"custody\"}",
                       "# TYPE virtuoz_withdrawal_events_total counter", "# TYPE virtuoz_job_latency_seconds histogram"],
    "worker-compliance": ["virtuoz_queue_depth{queue=\"reports\"}", "# TYPE virtuoz_reconciliation_shortfall gauge"],
    "worker-treasury": ["# TYPE virtuoz_sweep_events_total counter"],
    "scheduler": ["virtuoz_scheduler_runs_total{"],
    "scanner-ethereum": ["virtuoz_scanner_blocks_total{chain=\"ethereum\"}"],
    "signer": ["virtuoz_signer_heartbeat_timestamp_seconds ", "# TYPE virtuoz_signer_decisions_total counter"],
    "trp": ["# TYPE virtuoz_trp_requests_total counter"],
}


def assert_every_process_serves_metrics(urls: dict[str, str]) -> None:
    assert set(PROCESS_METRICS) <= set(urls)
    assert len(set(urls.values())) == len(urls), "one port per process"
    for process, url in urls.items():
        with urllib.request.urlopen(url, timeout=10) as response:
            lines = response.read().decode().splitlines()
        assert any(line.startswith("process_") or line.startswith("virtuoz_api_worker") for line in lines), process
        for wanted in PROCESS_METRICS.get(process, []):
            assert any(line.startswith(wanted) for line in lines), f"{process} lacks {wanted}"
        if process == "signer":
            beat = next(line for line in lines if line.startswith("virtuoz_signer_heartbeat_timestamp_seconds "))
            assert time.time() - float(beat.split()[1]) < 30, "the signer's heartbeat moves while it consumes"


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

        assert_every_process_serves_metrics(manifest["metrics"])

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
