"""The sweep path as real processes: the API, the allocator, the scanner, the deposits and treasury workers,
the scheduler and the signer, on a fresh Anvil chain.

One cluster per test module (per pytest worker), built like the withdrawal cluster
(``tests.e2e.withdrawal_cluster``, whose ``Cluster`` it reuses): its own database, Redis and Anvil chain
(0.2 s blocks, 2 confirmations, so that waiting for a top-up's confirmations shows), USDC, a keystore
made with the public devnet passphrase, the custody request key pair and a funded hot wallet. Only the
processes the sweep path needs run (the CI machine has 2 cores); the scheduler looks for sweeps every
second and drives them twice a second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from core.settings import default_signer_fee_caps
from devnet.processes import ManagedProcess, free_port
from devnet.servers import EmbeddedPostgres
from signer.keystore import DEVNET_PASSPHRASE
from tests.e2e.withdrawal_cluster import CHAIN_ID, REPO_ROOT, Cluster, lay_ground

BLOCK_TIME = 0.2
CONFIRMATIONS = 2
SWEEP_MINIMUMS = {"ETH": "0.01", "USDC": "10"}


def start_signer(cluster: Cluster, *, pause_file: Path | None = None, max_gas: int | None = None) -> ManagedProcess:
    """The signer; ``pause_file``: it stops after journaling its first new signature, before answering
    (the window a crash test must hit); ``max_gas``: a signer whose own fee caps allow less gas per
    transaction than the treasury believes (a token sweep is then refused, its top-up signed)."""
    env = {**cluster.env, "VIRTUOZ_SIGNER_PASSPHRASE": DEVNET_PASSPHRASE}
    if pause_file is not None:
        env["VIRTUOZ_SIGNER_TEST_PAUSE_FILE"] = str(pause_file)
    if max_gas is not None:
        caps = default_signer_fee_caps()["ethereum"].model_copy(update={"max_gas": max_gas})
        env["VIRTUOZ_SIGNER_FEE_CAPS"] = json.dumps({"ethereum": caps.model_dump()})
    return cluster.start("signer", ["signer"], env)


def kill(cluster: Cluster, name: str) -> None:
    process = cluster.processes[name].process
    assert process is not None
    process.kill()
    process.wait(10)


def ledger_verify(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", "ledger", "verify"], env=cluster.env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def build_sweep_cluster(root: Path, postgres: EmbeddedPostgres, artifact: dict[str, Any]) -> Cluster:
    ground = lay_ground(root, postgres, artifact, database_prefix="sweeps", native_wei=100 * 10**18,
                        usdc_minor=10**9)
    data_dir, anvil, usdc = ground.data_dir, ground.anvil, ground.usdc
    api_port = free_port()
    chains = [{"name": "ethereum", "chain_id": CHAIN_ID, "rpc_url": anvil.rpc_url, "native": "ETH",
               "confirmations": CONFIRMATIONS, "tokens": {"USDC": usdc}, "account": 0, "start_height": 0}]
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("VIRTUOZ_")},
        "VIRTUOZ_ENV": "test",
        "VIRTUOZ_DATA_DIR": str(data_dir),
        "VIRTUOZ_DATABASE_URL": ground.database_url,
        "VIRTUOZ_REDIS_URL": ground.redis.url(),
        "VIRTUOZ_CHAINS": json.dumps(chains),
        "VIRTUOZ_API_PORT": str(api_port),
        "VIRTUOZ_API_WORKERS": "2",  # the multi-process API, whatever the number of cores
        "VIRTUOZ_LOG_JSON": "false",
        "VIRTUOZ_HEARTBEAT_INTERVAL_SECONDS": "2",
        "VIRTUOZ_WORKER_POLL_MS": "50",
        "VIRTUOZ_SCANNER_POLL_SECONDS": "0.1",
        "VIRTUOZ_ADDRESS_POOL_LOW_WATER": "4",
        "VIRTUOZ_ADDRESS_POOL_BATCH": "8",
        "VIRTUOZ_SWEEP_MINIMUMS": json.dumps(SWEEP_MINIMUMS),
        "VIRTUOZ_SWEEP_INTERVAL_SECONDS": "1",
        "VIRTUOZ_SWEEP_TRACK_SECONDS": "0.5",
        "VIRTUOZ_SWEEP_RETRY_SECONDS": "2",
        "VIRTUOZ_WITHDRAWAL_RESEND_SECONDS": "2",
    }
    cluster = ground.cluster(artifact, f"http://127.0.0.1:{api_port}", env)
    start_signer(cluster)
    for name in ("allocator", "deposits", "treasury"):
        cluster.start(f"worker-{name}", ["worker", name])
    cluster.start("scanner", ["scanner", "--chain", "ethereum"])
    cluster.start("scheduler", ["scheduler"])
    cluster.start("api", ["api"])
    return cluster
