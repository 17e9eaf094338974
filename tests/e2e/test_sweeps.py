"""Sweeps end to end: deposits credited by the scanner and the deposits worker are swept to the hot wallet
by the treasury worker and the isolated signer, as real processes on Anvil. Customer balances never
move; a token sweep waits for its gas top-up's confirmations; nothing is topped up twice, nothing
swept twice, whatever is killed; `virtuoz ledger verify` passes."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.chain_fixtures import usdc_artifact, usdc_cache_dir  # noqa: F401 - fixtures
from tests.chain_wallet import ChainWallet
from tests.e2e.sweep_cluster import (
    CONFIRMATIONS,
    build_sweep_cluster,
    kill,
    ledger_verify,
    start_signer,
)
from tests.e2e.withdrawal_cluster import Cluster, User, stop_cluster

pytestmark = pytest.mark.e2e
ETH = 10**18
USDC = 10**6
TIMEOUT = 90.0  # a bound for a hung test, not a performance limit


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres, usdc_artifact) -> Iterator[Cluster]:  # noqa: F811
    cluster = build_sweep_cluster(tmp_path_factory.mktemp("sweeps"), postgres, usdc_artifact)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture(scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[User]:
    await cluster.wait_ready()
    yield await cluster.user("operator")


@pytest.fixture(scope="module")
def wallet(cluster: Cluster) -> ChainWallet:
    return ChainWallet(cluster.anvil.rpc_url, cluster.usdc, cluster.usdc_abi)


async def deposit_address(cluster: Cluster) -> tuple[User, str]:
    """A new customer and their deposit address on the cluster's chain (the pool may be refilling)."""
    customer = await cluster.user()
    found: dict[str, Any] = {}

    async def allocated() -> bool:
        status, body = await cluster.call("POST", "/platform/crypto/address/allocate", customer.headers,
                                          {"chain": "ethereum", "asset": "USDC"})
        if status in (200, 201):
            found.update(body)
        return status in (200, 201)

    await cluster.wait_for(allocated, "a deposit address", TIMEOUT)
    return customer, found["address"]


async def sweeps_of(cluster: Cluster, address: str) -> list[Any]:
    return await cluster.query("SELECT * FROM treasury_sweeps WHERE address = $1 ORDER BY created_at", address)


async def wait_swept(cluster: Cluster, address: str, asset: str) -> Any:
    """The address's confirmed sweep of ``asset``."""
    async def confirmed() -> bool:
        return any(row["state"] == "confirmed" and row["asset"] == asset for row in await sweeps_of(cluster, address))

    await cluster.wait_for(confirmed, f"the {asset} of {address} swept", TIMEOUT)
    return next(row for row in await sweeps_of(cluster, address) if row["state"] == "confirmed"
                and row["asset"] == asset)


async def transactions(cluster: Cluster, sweep_id: uuid.UUID, kind: str) -> list[Any]:
    return await cluster.query("SELECT * FROM treasury_sweep_transactions WHERE sweep_id = $1 AND kind = $2"
                               " ORDER BY requested_at, attempt", sweep_id, kind)


async def events(cluster: Cluster, sweep_id: uuid.UUID) -> list[str]:
    rows = await cluster.query("SELECT type FROM audit_events WHERE aggregate_type = 'sweep' AND aggregate_id = $1"
                               " ORDER BY seq", str(sweep_id))
    return [row["type"] for row in rows]


async def balances(cluster: Cluster, user: User) -> dict[str, str]:
    status, body = await cluster.call("GET", "/wallet/balances", user.headers)
    assert status == 200, body
    return {item["currency"]: item["available"] for item in body["balances"]}


def receipt(cluster: Cluster, tx_hash: str) -> dict[str, Any]:
    return cluster.rpc("eth_getTransactionReceipt", tx_hash)["result"]


async def test_usdc_and_native_deposits_are_swept_after_confirmations_and_the_usdc_waits_for_its_topup(
    cluster, operator, wallet
) -> None:
    usdc_customer, usdc_address = await deposit_address(cluster)
    eth_customer, eth_address = await deposit_address(cluster)
    hot_usdc = cluster.usdc_balance(cluster.hot_wallet)
    await asyncio.to_thread(wallet.send_usdc, usdc_address, 250 * USDC)
    await asyncio.to_thread(wallet.send_native, eth_address, ETH // 2)

    token = await wait_swept(cluster, usdc_address, "USDC")
    native = await wait_swept(cluster, eth_address, "ETH")

    # The USDC went to the hot wallet, all of it; the native coin less the gas of its one transfer.
    assert cluster.usdc_balance(usdc_address) == 0
    assert cluster.usdc_balance(cluster.hot_wallet) == hot_usdc + 250 * USDC
    assert token["amount"] == 250 * USDC and token["hot_wallet"] == cluster.hot_wallet
    assert native["amount"] == ETH // 2 - native["gas_limit"] * native["max_fee_per_gas"]
    assert native["topup_amount"] == 0 and native["topup_tx_hash"] is None
    swept = receipt(cluster, native["sweep_tx_hash"])
    assert swept["status"] == "0x1" and swept["from"].lower() == eth_address.lower()
    assert swept["to"].lower() == cluster.hot_wallet.lower()

    # The token sweep's gas came first, exactly gas limit × max fee per gas of the token transfer, and
    # the sweep was asked for only once the top-up had its confirmations.
    (topup,) = await transactions(cluster, token["id"], "topup")
    (sweep_tx,) = await transactions(cluster, token["id"], "sweep")
    assert topup["value"] == token["topup_amount"] == token["gas_limit"] * token["max_fee_per_gas"]
    assert topup["sender"] == cluster.hot_wallet and topup["status"] == 1
    assert sweep_tx["sender"] == usdc_address and sweep_tx["status"] == 1
    assert sweep_tx["requested_block"] >= topup["block_number"] + CONFIRMATIONS - 1
    assert sweep_tx["block_number"] > topup["block_number"]
    assert await events(cluster, token["id"]) == [
        "sweep.created", "sweep.topup_requested", "sweep.topup_signed", "sweep.topup_sent",
        "sweep.topup_confirmed", "sweep.sweep_requested", "sweep.sweep_signed", "sweep.sweep_broadcast",
        "sweep.confirmed"]
    assert await events(cluster, native["id"]) == [
        "sweep.created", "sweep.sweep_requested", "sweep.sweep_signed", "sweep.sweep_broadcast", "sweep.confirmed"]

    # Customer balances never moved; the top-up is an internal movement, not the customer's deposit.
    assert (await balances(cluster, usdc_customer)).get("USDC") == "250"
    assert (await balances(cluster, usdc_customer)).get("ETH", "0") == "0"
    assert (await balances(cluster, eth_customer)).get("ETH") == "0.5"
    deposits = await cluster.query("SELECT asset FROM deposits WHERE to_address = $1", usdc_address)
    assert [row["asset"] for row in deposits] == ["USDC"]
    moved = await cluster.query("SELECT tx_hash, from_address, amount FROM treasury_movements WHERE to_address = $1",
                                usdc_address)
    assert [(row["tx_hash"], row["from_address"], row["amount"]) for row in moved] == [
        (topup["tx_hash"], cluster.hot_wallet, topup["value"])]

    # The gas of both transfers is a platform cost: fees → network_fees, once each.
    booked = await cluster.query("SELECT reference, type FROM ledger_transfers WHERE reference_kind = 'sweep'"
                                 " AND reference_id = ANY($1) ORDER BY reference", [str(token["id"]), str(native["id"])])
    assert sorted(row["type"] for row in booked) == ["sweep_gas", "sweep_gas", "sweep_topup_gas"]

    # Operators see both, with their transactions and totals; customers are refused.
    status, listed = await cluster.call("GET", "/admin/treasury/sweeps?chain=ethereum&state=confirmed",
                                        operator.headers)
    assert status == 200, listed
    by_id = {item["id"]: item for item in listed["items"]}
    assert by_id[str(token["id"])]["topup_tx_hash"] == topup["tx_hash"]
    assert by_id[str(token["id"])]["sweep_tx_hash"] == sweep_tx["tx_hash"]
    assert (by_id[str(token["id"])]["asset"], by_id[str(token["id"])]["amount"]) == ("USDC", "250")
    assert by_id[str(native["id"])]["address"] == eth_address
    totals = {item["asset"]: item for item in listed["totals"]}
    assert totals["USDC"]["sweeps"] >= 1 and totals["ETH"]["sweeps"] >= 1
    status, refused = await cluster.call("GET", "/admin/treasury/sweeps", usdc_customer.headers)
    assert status == 403, refused

    verified = ledger_verify(cluster)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_a_failed_sweep_after_its_topup_is_not_topped_up_twice(cluster, wallet) -> None:
    # A signer whose own caps allow less gas than a token transfer needs: the top-up (21 000 gas) is
    # signed, the token sweep (100 000) refused.
    kill(cluster, "signer")
    start_signer(cluster, max_gas=60_000)
    _, address = await deposit_address(cluster)
    await asyncio.to_thread(wallet.send_usdc, address, 40 * USDC)

    async def failed() -> bool:
        return any(row["state"] == "failed" for row in await sweeps_of(cluster, address))

    await cluster.wait_for(failed, "the token sweep refused by the signer", TIMEOUT)
    (first,) = await sweeps_of(cluster, address)
    assert first["failure_reason"] == "gas_limit_above_cap"
    assert (await transactions(cluster, first["id"], "topup"))[0]["status"] == 1  # its gas arrived
    kill(cluster, "signer")
    start_signer(cluster)

    swept = await wait_swept(cluster, address, "USDC")
    assert swept["id"] != first["id"]
    # The second sweep used the gas the first top-up left: no second top-up, on chain or asked for.
    assert swept["topup_amount"] == 0 and await transactions(cluster, swept["id"], "topup") == []
    moved = await cluster.query("SELECT tx_hash FROM treasury_movements WHERE to_address = $1", address)
    assert len(moved) == 1
    assert cluster.usdc_balance(address) == 0
    verified = ledger_verify(cluster)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def journal(cluster: Cluster, sql: str, *args: object) -> list[tuple]:
    connection = sqlite3.connect(f"file:{cluster.journal_file}?mode=ro", uri=True)
    try:
        return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


async def test_killing_the_treasury_worker_and_the_signer_mid_sweep_loses_nothing_and_doubles_nothing(
    cluster, wallet
) -> None:
    pause_file = cluster.data_dir / "signer-paused"
    pause_file.unlink(missing_ok=True)
    kill(cluster, "signer")
    start_signer(cluster, pause_file=pause_file)
    _, usdc_address = await deposit_address(cluster)
    _, eth_address = await deposit_address(cluster)
    hot_usdc = cluster.usdc_balance(cluster.hot_wallet)
    await asyncio.to_thread(wallet.send_usdc, usdc_address, 75 * USDC)
    await asyncio.to_thread(wallet.send_native, eth_address, ETH // 5)

    async def paused() -> bool:
        return pause_file.exists()

    await cluster.wait_for(paused, "the signer in its journaled-but-unanswered window", TIMEOUT)
    # A signature on disk that the treasury never heard of, and the treasury worker gone with it.
    kill(cluster, "signer")
    kill(cluster, "worker-treasury")
    paused_on = pause_file.read_text()
    assert journal(cluster, "SELECT count(*) FROM signatures WHERE withdrawal_id = ?", paused_on) == [(1,)]
    cluster.start("worker-treasury", ["worker", "treasury"])
    start_signer(cluster)

    token = await wait_swept(cluster, usdc_address, "USDC")
    native = await wait_swept(cluster, eth_address, "ETH")
    assert cluster.usdc_balance(usdc_address) == 0
    assert cluster.usdc_balance(cluster.hot_wallet) == hot_usdc + 75 * USDC  # swept once, not twice
    assert native["amount"] == ETH // 5 - native["gas_limit"] * native["max_fee_per_gas"]
    for sweep in (token, native):
        assert len(await sweeps_of(cluster, sweep["address"])) == 1
        (sweep_tx,) = await transactions(cluster, sweep["id"], "sweep")
        assert journal(cluster, "SELECT count(*) FROM signatures WHERE withdrawal_id = ?",
                       str(sweep_tx["request_id"])) == [(1,)]
    # One top-up asked for, signed once, mined once.
    (topup,) = await transactions(cluster, token["id"], "topup")
    assert journal(cluster, "SELECT count(*) FROM signatures WHERE withdrawal_id = ?", str(topup["request_id"])) \
        == [(1,)]
    moved = await cluster.query("SELECT tx_hash FROM treasury_movements WHERE to_address = $1", usdc_address)
    assert [row["tx_hash"] for row in moved] == [topup["tx_hash"]]
    verified = ledger_verify(cluster)
    assert verified.returncode == 0, verified.stdout + verified.stderr
