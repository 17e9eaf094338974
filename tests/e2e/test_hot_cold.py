"""Hot over its ceiling, end to end: the scheduler, the treasury and custody workers and the isolated
signer as real processes on Anvil send the hot wallet's surplus to the cold wallet.

The cluster is the withdrawal cluster's (``tests.e2e.withdrawal_cluster``) without the API, the
compliance worker and the Travel Rule endpoints: the treasury worker, the custody worker (it hears the
signer's replies), the scheduler and the signer, whose own configuration names the cold wallet. The
signer's ETH limits here are 5 a withdrawal and 80 a day: the 480 ETH of surplus moves all the same.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from custody.books.cli import verify as verify_books
from tests.chain_fixtures import usdc_artifact, usdc_cache_dir  # noqa: F401 - fixtures
from tests.e2e.withdrawal_cluster import (
    CHAIN_ID,
    CUSTODY_SIGNER_LIMITS,
    Cluster,
    lay_ground,
    stop_cluster,
)

pytestmark = pytest.mark.e2e
ETH = 10**18
USDC = 10**6
LEVELS = {"ethereum": {"ETH": {"hot_floor": "2", "hot_target": "20", "hot_ceiling": "50"},
                       "USDC": {"hot_floor": "1000", "hot_target": "20000", "hot_ceiling": "50000"}}}


def build_treasury_cluster(root: Path, postgres, artifact) -> tuple[Cluster, str]:
    # Far above the ceilings (50 ETH, 50,000 USDC).
    ground = lay_ground(root, postgres, artifact, database_prefix="hot_cold", native_wei=500 * ETH,
                        usdc_minor=1_000_000 * USDC)
    data_dir, anvil, usdc = ground.data_dir, ground.anvil, ground.usdc
    cold = Account.create().address  # watch-only: nobody here needs its key
    chains = [{"name": "ethereum", "chain_id": CHAIN_ID, "rpc_url": anvil.rpc_url, "native": "ETH",
               "confirmations": 1, "tokens": {"USDC": usdc}, "account": 0, "cold_wallet": cold}]
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("VIRTUOZ_")},
        "VIRTUOZ_ENV": "test",
        "VIRTUOZ_DATA_DIR": str(data_dir),
        "VIRTUOZ_DATABASE_URL": ground.database_url,
        "VIRTUOZ_REDIS_URL": ground.redis.url(),
        "VIRTUOZ_CHAINS": json.dumps(chains),
        "VIRTUOZ_LOG_JSON": "false",
        "VIRTUOZ_HEARTBEAT_INTERVAL_SECONDS": "1",
        "VIRTUOZ_SIGNER_LIMITS": json.dumps(CUSTODY_SIGNER_LIMITS),
        "VIRTUOZ_TREASURY_HOT_LEVELS": json.dumps(LEVELS),
        "VIRTUOZ_TREASURY_CHECK_SECONDS": "1",
        "VIRTUOZ_WITHDRAWAL_RESEND_SECONDS": "2",
        # The signer's own copy: the only address it pays a hot wallet's surplus to.
        "VIRTUOZ_SIGNER_COLD_WALLETS": json.dumps({"ethereum": cold}),
    }
    cluster = ground.cluster(artifact, "", env)
    cluster.start_signer()
    cluster.start("worker-custody", ["worker", "custody"])
    cluster.start("worker-treasury", ["worker", "treasury"])
    cluster.start("scheduler", ["scheduler"])
    return cluster, cold


@pytest.fixture(scope="module")
def treasury_cluster(tmp_path_factory: pytest.TempPathFactory, postgres,
                     usdc_artifact) -> Iterator[tuple[Cluster, str]]:  # noqa: F811
    cluster, cold = build_treasury_cluster(tmp_path_factory.mktemp("hot-cold"), postgres, usdc_artifact)
    try:
        yield cluster, cold
    finally:
        stop_cluster(cluster)


async def test_the_hot_wallet_over_its_ceiling_sends_the_surplus_to_the_cold_wallet(treasury_cluster) -> None:
    cluster, cold = treasury_cluster

    async def both_confirmed() -> bool:
        rows = await cluster.query("SELECT asset, state FROM cold_transfers")
        return sorted(tuple(row) for row in rows) == [("ETH", "confirmed"), ("USDC", "confirmed")]

    await cluster.wait_for(both_confirmed, "the surplus of ETH and USDC to reach the cold wallet", timeout=90)
    transfers = {row["asset"]: row for row in await cluster.query(
        "SELECT id, asset, amount, nonce, tx_hash, gas_cost, cold_wallet FROM cold_transfers")}
    web3 = cluster.web3
    # USDC: exactly the surplus down to the target.
    assert cluster.usdc_balance(cold) == int(transfers["USDC"]["amount"]) == 980_000 * USDC
    assert cluster.usdc_balance(cluster.hot_wallet) == 20_000 * USDC
    # ETH: the surplus less the gas of the transfer itself; the hot wallet keeps about its target.
    assert web3.eth.get_balance(cold) == int(transfers["ETH"]["amount"]) > 479 * ETH
    assert 19 * ETH < web3.eth.get_balance(cluster.hot_wallet) <= 20 * ETH
    assert {row["cold_wallet"] for row in transfers.values()} == {cold}

    # The hot wallet's nonces came from the sequence withdrawals take theirs from.
    assert sorted(int(row["nonce"]) for row in transfers.values()) == [0, 1]
    [nonces] = await cluster.query("SELECT next_nonce FROM hot_wallet_nonces WHERE address = $1", cluster.hot_wallet)
    assert nonces["next_nonce"] == 2

    # Audited step by step, and the gas booked as a platform cost.
    for row in transfers.values():
        events = await cluster.query("SELECT type FROM audit_events WHERE aggregate_type = 'cold_transfer' AND "
                                     "aggregate_id = $1 ORDER BY seq", str(row["id"]))
        assert [event["type"] for event in events] == ["cold_transfer.requested", "cold_transfer.signing",
                                                       "cold_transfer.signed", "cold_transfer.broadcast",
                                                       "cold_transfer.confirmed"]
        [gas] = await cluster.query("SELECT type FROM ledger_transfers WHERE reference = $1",
                                    f"cold_transfer:{row['id']}:gas")
        assert gas["type"] == "cold_transfer_gas"

    # The signer journaled both, counted against no value limit (the money stays in custody).
    connection = sqlite3.connect(f"file:{cluster.journal_file}?mode=ro", uri=True)
    try:
        journaled = connection.execute("SELECT withdrawal_id, destination, first FROM signatures").fetchall()
    finally:
        connection.close()
    assert sorted(journaled) == sorted((str(row["id"]), cold, 0) for row in transfers.values())

    # Back within its levels: the next checks move nothing more.
    async def levels_ok() -> bool:
        rows = await cluster.query("SELECT asset, state FROM treasury_hot_levels")
        return sorted(tuple(row) for row in rows) == [("ETH", "ok"), ("USDC", "ok")]

    await cluster.wait_for(levels_ok, "the next check to find the hot wallet within its levels")
    assert len(await cluster.query("SELECT id FROM cold_transfers")) == 2
    assert await verify_books(cluster.database_url) == 0
