"""`virtuoz hot-wallet migrate` as a real process against the real signer and custody worker on Anvil:
the hot wallet of before (m/44'/60'/0'/1/0, under the exported xpub) is emptied into the new one."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from core.sign_requests import load_signer_public_key
from custody.hd import load_xpubs, retired_hot_wallet_address
from devnet.chains import fund_wallet
from tests.chain_fixtures import usdc_artifact, usdc_cache_dir  # noqa: F401 - fixtures
from tests.e2e.withdrawal_cluster import REPO_ROOT, Cluster, build_cluster, stop_cluster

pytestmark = pytest.mark.e2e
ETH = 10**18
COMMAND_TIMEOUT = 120


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres, usdc_artifact) -> Iterator[Cluster]:  # noqa: F811
    cluster = build_cluster(tmp_path_factory.mktemp("hot-wallet-move"), postgres, usdc_artifact)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


def migrate(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", "hot-wallet", "migrate", "--chain", "ethereum",
                           "--operator", "ops@example.com", "--timeout", "90"],
                          env=cluster.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)


async def test_the_old_hot_wallets_balance_moves_to_the_new_one_audited(cluster, usdc_artifact) -> None:  # noqa: F811
    await cluster.wait_ready()
    xpub = load_xpubs(cluster.data_dir / "xpubs.json",
                      load_signer_public_key(cluster.data_dir / "signer-key.pub"))["ethereum"].xpub
    retired = retired_hot_wallet_address(xpub)
    assert retired != cluster.hot_wallet
    # What a platform running before the move has on its old hot wallet.
    await asyncio.to_thread(fund_wallet, cluster.anvil.rpc_url, retired, usdc_artifact, cluster.usdc,
                            native_wei=3 * ETH, usdc_minor=12_345_000)
    new_eth, new_usdc = cluster.web3.eth.get_balance(cluster.hot_wallet), cluster.usdc_balance(cluster.hot_wallet)

    done = await asyncio.to_thread(migrate, cluster)

    assert done.returncode == 0, done.stdout + done.stderr + cluster.logs()
    assert cluster.usdc_balance(retired) == 0
    assert cluster.usdc_balance(cluster.hot_wallet) == new_usdc + 12_345_000
    left = cluster.web3.eth.get_balance(retired)
    moved = cluster.web3.eth.get_balance(cluster.hot_wallet) - new_eth
    assert moved > 0 and left < ETH // 100 and moved + left < 3 * ETH  # the rest paid the gas
    events = await cluster.query("SELECT aggregate_id, type, actor, data FROM audit_events"
                                 " WHERE aggregate_type = 'hot_wallet_move' ORDER BY id")
    by_move: dict[str, list[str]] = {}
    for event in events:
        by_move.setdefault(event["aggregate_id"], []).append(event["type"])
    assert sorted(json.loads(event["data"])["asset"] for event in events
                  if event["type"] == "hot_wallet_move.requested") == ["ETH", "USDC"]
    assert all(types == ["hot_wallet_move.requested", "hot_wallet_move.signed", "hot_wallet_move.broadcast",
                         "hot_wallet_move.confirmed"] for types in by_move.values()), by_move
    assert {event["actor"] for event in events if event["type"] != "hot_wallet_move.signed"} == {"ops@example.com"}
    gas = await cluster.query("SELECT count(*) AS n FROM ledger_transfers WHERE reference_kind = 'hot_wallet_move'")
    assert gas[0]["n"] == 2  # the gas of each transfer, booked as a platform cost

    # What the gas refunds left is moved by another run while it pays for its own gas, then nothing is left.
    for _ in range(3):
        again = await asyncio.to_thread(migrate, cluster)
        assert again.returncode == 0, again.stdout + again.stderr
        if "nothing left" in again.stdout:
            break
    assert "nothing left" in again.stdout
    assert cluster.web3.eth.get_balance(retired) <= left
