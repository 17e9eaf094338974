"""Withdrawals end to end: the API, the custody worker, the scheduler and the isolated signer as real
processes on Anvil. Every withdrawal leaves exactly once or not at all."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from decimal import Decimal
from functools import partial

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker

from compliance.travel_rule import trp
from core.sign_requests import SIGN_ACTOR, SIGNER_QUEUE
from custody.chains.transactions import Fees, payment_tx
from custody.withdrawals.authorization import _parse, authorize
from tests.chain_fixtures import usdc_artifact, usdc_cache_dir  # noqa: F401 - fixtures
from tests.e2e.withdrawal_cluster import (
    SIGNER_LIMITS,
    SIGNER_ONLY_SANCTIONED,
    STUCK_BLOCKS,
    Cluster,
    User,
    build_cluster,
    fresh_address,
    stop_cluster,
)

pytestmark = pytest.mark.e2e
ETH = 10**18


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres, usdc_artifact) -> Iterator[Cluster]:  # noqa: F811
    cluster = build_cluster(tmp_path_factory.mktemp("withdrawals"), postgres, usdc_artifact)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture(scope="module")
async def people(cluster: Cluster) -> AsyncIterator[dict]:
    await cluster.wait_ready()
    yield {"customer": await cluster.user(), "operators": [await cluster.approver() for _ in range(10)]}


@pytest.fixture
async def operator(cluster: Cluster, people: dict) -> User:
    """An approver of this test's own: each code is good once per 30 s step, and one approver shared
    by the module would have every test after the first few wait for the next step."""
    return await cluster.approver()


def journal_rows(cluster: Cluster, sql: str, *args: object) -> list[tuple]:
    connection = sqlite3.connect(f"file:{cluster.journal_file}?mode=ro", uri=True)
    try:
        return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


async def balances(cluster: Cluster, user) -> dict[str, dict[str, str]]:
    status, body = await cluster.call("GET", "/wallet/balances", user.headers)
    assert status == 200
    return {item["currency"]: item for item in body["balances"]}


async def test_eth_and_usdc_withdrawals_arrive_on_chain_and_debit_amount_plus_fee_once(cluster, people, operator) -> None:
    customer = people["customer"]
    before = await balances(cluster, customer)
    destination = fresh_address()
    eth = await cluster.request(customer, chain="ethereum", asset="ETH", to_address=destination, amount="1.25")
    usdc = await cluster.request(customer, chain="ethereum", asset="USDC", to_address=destination, amount="250.5")
    for created in (eth, usdc):
        assert (await cluster.approve(operator, created["id"]))["state"] == "approved"
    finals = await cluster.wait_final(customer, [eth["id"], usdc["id"]])
    assert [final["state"] for final in finals] == ["confirmed", "confirmed"], finals
    for final in finals:
        assert final["tx_hash"] and final["confirmations"] >= 1 and int(final["gas_cost_wei"]) > 0
        receipt = cluster.web3.eth.get_transaction_receipt(final["tx_hash"])
        assert receipt["status"] == 1 and receipt["from"] == cluster.hot_wallet
    assert cluster.web3.eth.get_balance(destination) == 125 * ETH // 100
    assert cluster.usdc_balance(destination) == 250_500_000
    after = await balances(cluster, customer)
    assert Decimal(before["ETH"]["available"]) - Decimal(after["ETH"]["available"]) == Decimal("1.251")
    assert Decimal(before["USDC"]["available"]) - Decimal(after["USDC"]["available"]) == Decimal("251.5")
    assert after["ETH"]["held"] == after["USDC"]["held"] == "0"
    # The hold was posted once: amount to chain_withdrawals, the fee to fees; gas is a platform cost.
    rows = await cluster.query("SELECT t.type, count(*) AS n FROM ledger_transfers t WHERE t.reference_id = ANY($1)"
                               " GROUP BY t.type", [eth["id"], usdc["id"]])
    assert {row["type"]: row["n"] for row in rows} == {"withdrawal_hold": 2, "withdrawal_post": 2,
                                                        "withdrawal_gas": 2}
    events = await cluster.query("SELECT type FROM audit_events WHERE aggregate_type = 'withdrawal'"
                                 " AND aggregate_id = $1 ORDER BY seq", eth["id"])
    assert [event["type"] for event in events] == [
        "withdrawal.requested", "withdrawal.approved", "withdrawal.signing", "withdrawal.signed",
        "withdrawal.broadcast", "withdrawal.confirmed"]
    notified = await cluster.query("SELECT type FROM notifications WHERE user_id = $1 AND data->>'withdrawal_id' = $2",
                                   uuid.UUID(customer.user_id), eth["id"])
    assert "withdrawal.confirmed" in {row["type"] for row in notified}


async def test_twenty_concurrent_withdrawals_get_consecutive_nonces_and_are_all_mined(cluster, people) -> None:
    customer = people["customer"]
    destinations = [fresh_address() for _ in range(20)]
    created = await asyncio.gather(*(cluster.request(customer, chain="ethereum", asset="ETH", to_address=address,
                                                     amount="0.01") for address in destinations))
    await cluster.approve_all(people["operators"], [item["id"] for item in created])
    finals = await cluster.wait_final(customer, [item["id"] for item in created])
    assert {final["state"] for final in finals} == {"confirmed"}
    nonces = sorted(final["nonce"] for final in finals)
    assert nonces == list(range(nonces[0], nonces[0] + 20))
    for address in destinations:
        assert cluster.web3.eth.get_balance(address) == ETH // 100
    assert cluster.web3.eth.get_transaction_count(cluster.hot_wallet) >= nonces[-1] + 1


async def test_a_signer_killed_mid_stream_still_sends_every_withdrawal_exactly_once(cluster, people) -> None:
    customer = people["customer"]
    destinations = [fresh_address() for _ in range(8)]
    created = [await cluster.request(customer, chain="ethereum", asset="ETH", to_address=address, amount="0.02")
               for address in destinations]
    ids = [item["id"] for item in created]
    placeholders = ",".join("?" * len(ids))
    # A signer that stops right after journaling its first new signature, before it answers...
    pause_file = cluster.data_dir / "signer-paused"
    pause_file.unlink(missing_ok=True)
    cluster.kill_signer()
    cluster.start_signer(pause_file=pause_file)
    await cluster.approve_all(people["operators"], ids)

    async def paused() -> bool:
        return pause_file.exists()

    await cluster.wait_for(paused, "the signer in its journaled-but-unanswered window")
    cluster.kill_signer()  # ...dies there by SIGKILL: a signature on disk that custody never heard of
    paused_on = pause_file.read_text()
    assert journal_rows(cluster, "SELECT count(*) FROM signatures WHERE withdrawal_id = ?", paused_on)[0][0] == 1
    signed_before_kill = journal_rows(cluster, f"SELECT count(*) FROM signatures WHERE withdrawal_id IN"
                                               f" ({placeholders})", *ids)[0][0]
    cluster.start_signer()
    finals = await cluster.wait_final(customer, ids)
    assert {final["state"] for final in finals} == {"confirmed"}, finals
    for address in destinations:
        assert cluster.web3.eth.get_balance(address) == 2 * ETH // 100  # not 0, not twice
    # The journal holds one nonce per withdrawal (a fee bump, if any, shares it) and one mined transaction each.
    signed = journal_rows(cluster, f"SELECT withdrawal_id, count(DISTINCT nonce), group_concat(tx_hash) FROM"
                                   f" signatures WHERE withdrawal_id IN ({placeholders}) GROUP BY withdrawal_id", *ids)
    assert sorted(row[0] for row in signed) == sorted(ids) and {row[1] for row in signed} == {1}
    for _, _, hashes in signed:
        receipts = [cluster.rpc("eth_getTransactionReceipt", tx_hash).get("result") for tx_hash in hashes.split(",")]
        assert len([receipt for receipt in receipts if receipt]) == 1
    assert 1 <= signed_before_kill <= len(ids)
    nonces = sorted(final["nonce"] for final in finals)
    assert nonces == list(range(nonces[0], nonces[0] + len(ids)))


async def test_tampered_and_over_limit_requests_sent_straight_to_the_signer_are_refused(cluster) -> None:
    await cluster.wait_ready()  # the signer's journal exists once it runs, whichever test comes first
    key = _parse((cluster.data_dir / "custody-request-key.pem").read_text())
    genuine = payment_tx(chain_id=31337, sender=cluster.hot_wallet, nonce=10_000, destination=fresh_address(),
                         amount=ETH // 10, token=None, gas=21_000, fees=Fees(3 * 10**9, 10**9))
    text = genuine.canonical()
    authorization = authorize(key, "00000000-0000-4000-8000-0000000000aa", text)
    cases = {
        "00000000-0000-4000-8000-0000000000aa": (replace(genuine, to=fresh_address()).canonical(), authorization),
        "00000000-0000-4000-8000-0000000000ab": (replace(genuine, value=ETH).canonical(), authorization),
    }
    over_limit = replace(genuine, nonce=10_001, value=6 * ETH).canonical()  # the signer's single limit is 5 ETH
    cases["00000000-0000-4000-8000-0000000000ac"] = (over_limit,
                                                     authorize(key, "00000000-0000-4000-8000-0000000000ac", over_limit))
    broker = RedisBroker(url=cluster.redis_url)
    try:
        for withdrawal_id, (unsigned, auth) in cases.items():
            broker.enqueue(dramatiq.Message(queue_name=SIGNER_QUEUE, actor_name=SIGN_ACTOR,
                                            args=(withdrawal_id, unsigned, auth), kwargs={}, options={}))
    finally:
        broker.close()
        broker.client.close()
    expected = {"00000000-0000-4000-8000-0000000000aa": "invalid_authorization",
                "00000000-0000-4000-8000-0000000000ab": "invalid_authorization",
                "00000000-0000-4000-8000-0000000000ac": "single_limit_exceeded"}

    async def refused() -> bool:
        rows = journal_rows(cluster, "SELECT withdrawal_id, reason FROM refusals")
        return set(expected.items()) <= set(rows)

    await cluster.wait_for(refused, "the signer's refusals")
    assert journal_rows(cluster, "SELECT count(*) FROM signatures WHERE withdrawal_id IN (?, ?, ?)",
                        *expected) == [(0,)]
    # And Prometheus sees them: the signer's decisions, by reason.
    exposition = cluster.signer_metrics()
    refusals = {reason: sum(float(line.split()[-1]) for line in exposition.splitlines()
                            if line.startswith("virtuoz_signer_decisions_total{") and f'reason="{reason}"' in line)
                for reason in ("invalid_authorization", "single_limit_exceeded")}
    assert refusals["invalid_authorization"] >= 2 and refusals["single_limit_exceeded"] >= 1
    assert SIGNER_LIMITS["ETH"]["single"] == "5"


async def test_an_over_limit_withdrawal_fails_audited_its_hold_voided_and_its_nonce_reused(cluster, people, operator) -> None:
    customer = people["customer"]
    before = await balances(cluster, customer)
    # Above the limits the custody side knows, a request is refused at once, holding nothing.
    status, body = await cluster.call("POST", "/platform/crypto/withdrawals/request", customer.headers,
                                      {"chain": "ethereum", "asset": "ETH", "to_address": fresh_address(),
                                       "amount": "10.5"})
    assert (status, body["error"]["code"]) == (403, "signer_limit_exceeded")
    # Under those but above the signer's own: the signer, the last word, refuses it after approval.
    big = await cluster.request(customer, chain="ethereum", asset="ETH", to_address=fresh_address(), amount="6")
    await cluster.approve(operator, big["id"])
    [failed] = await cluster.wait_final(customer, [big["id"]])
    assert (failed["state"], failed["failure_reason"]) == ("failed", "single_limit_exceeded")
    assert (await balances(cluster, customer))["ETH"] == before["ETH"]
    events = await cluster.query("SELECT type, data FROM audit_events WHERE aggregate_type = 'withdrawal'"
                                 " AND aggregate_id = $1 ORDER BY seq", big["id"])
    assert events[-1]["type"] == "withdrawal.failed" and "single_limit_exceeded" in events[-1]["data"]
    following = await cluster.request(customer, chain="ethereum", asset="ETH", to_address=fresh_address(),
                                      amount="0.1")
    await cluster.approve(operator, following["id"])
    [done] = await cluster.wait_final(customer, [following["id"]])
    assert done["state"] == "confirmed" and done["nonce"] == failed["nonce"]  # no gap left behind


async def test_rollback_before_signing_releases_and_after_broadcast_is_409(cluster, people, operator) -> None:
    customer = people["customer"]
    before = await balances(cluster, customer)
    created = await cluster.request(customer, chain="ethereum", asset="ETH", to_address=fresh_address(), amount="1")
    status, body = await cluster.call("POST", f"/platform/crypto/withdrawals/{created['id']}/rollback",
                                      customer.headers)
    assert (status, body["state"]) == (200, "rolled_back")
    assert (await balances(cluster, customer))["ETH"] == before["ETH"]
    sent = await cluster.request(customer, chain="ethereum", asset="ETH", to_address=fresh_address(), amount="0.1")
    await cluster.approve(operator, sent["id"])
    await cluster.wait_final(customer, [sent["id"]])
    status, body = await cluster.call("POST", f"/platform/crypto/withdrawals/{sent['id']}/rollback", operator.headers)
    assert (status, body["error"]["code"]) == (409, "already_broadcast")


async def test_a_stuck_transaction_is_replaced_with_higher_fees_and_mined_once(cluster, people, operator) -> None:
    """Mining is paused, the broadcast transaction dropped from the pool, blocks mined empty: the
    custody worker asks the signer for a fee bump at the same nonce, and only that one is mined."""
    customer = people["customer"]
    destination = fresh_address()
    cluster.rpc("evm_setIntervalMining", 0)
    try:
        created = await cluster.request(customer, chain="ethereum", asset="ETH", to_address=destination,
                                        amount="0.3")
        await cluster.approve(operator, created["id"])

        async def broadcast() -> bool:
            return (await cluster.withdrawal(customer, created["id"]))["state"] == "broadcast"

        await cluster.wait_for(broadcast, "the first broadcast")
        first_hash = (await cluster.withdrawal(customer, created["id"]))["tx_hash"]
        assert cluster.rpc("anvil_dropTransaction", first_hash)["result"] in (first_hash, None)

        async def mined_or_replaced() -> bool:
            cluster.rpc("anvil_mine", 1)
            state = (await cluster.withdrawal(customer, created["id"]))["state"]
            return state == "confirmed"

        await cluster.wait_for(mined_or_replaced, "the replacement to be mined")
    finally:
        cluster.rpc("evm_setIntervalMining", 1)
    final = await cluster.withdrawal(customer, created["id"])
    attempts = await cluster.query("SELECT attempt, tx_hash, max_fee_per_gas FROM withdrawal_attempts"
                                   " WHERE withdrawal_id = $1 ORDER BY attempt", uuid.UUID(created["id"]))
    assert len(attempts) >= 2 and attempts[0]["tx_hash"] == first_hash
    assert attempts[1]["max_fee_per_gas"] > attempts[0]["max_fee_per_gas"]
    assert final["tx_hash"] != first_hash and final["tx_hash"] in {row["tx_hash"] for row in attempts}
    assert cluster.web3.eth.get_balance(destination) == 3 * ETH // 10
    mined = [row["tx_hash"] for row in attempts
             if row["tx_hash"] and cluster.rpc("eth_getTransactionReceipt", row["tx_hash"]).get("result")]
    assert mined == [final["tx_hash"]]
    events = await cluster.query("SELECT type FROM audit_events WHERE aggregate_type = 'withdrawal'"
                                 " AND aggregate_id = $1", created["id"])
    assert {"withdrawal.fee_bump_requested", "withdrawal.replaced"} <= {row["type"] for row in events}
    assert STUCK_BLOCKS <= 5


async def test_refused_nonce_does_not_stall_later_withdrawals(cluster, people, operator) -> None:
    """The signer refuses a withdrawal (its own sanctions list names the destination; the API's does not)
    after the next nonce went to another withdrawal: a filler (0 ETH, hot wallet to itself) takes the
    refused nonce at once, so the later withdrawal is mined instead of waiting behind a gap for ever."""
    customer = people["customer"]
    refused = await cluster.request(customer, chain="ethereum", asset="ETH", to_address=SIGNER_ONLY_SANCTIONED,
                                    amount="0.01")
    later_destination = fresh_address()
    later = await cluster.request(customer, chain="ethereum", asset="ETH", to_address=later_destination,
                                  amount="0.02")
    signer = cluster.processes["signer"].process
    assert signer is not None
    signer.send_signal(signal.SIGSTOP)  # both get their nonces before the signer answers either

    async def signing(withdrawal_id: str) -> bool:
        return (await cluster.withdrawal(customer, withdrawal_id))["state"] == "signing"

    try:
        for created in (refused, later):
            await cluster.approve(operator, created["id"])
            await cluster.wait_for(partial(signing, created["id"]), "the sign request")
    finally:
        signer.send_signal(signal.SIGCONT)

    failed, mined = await cluster.wait_final(customer, [refused["id"], later["id"]])
    assert (failed["state"], failed["failure_reason"]) == ("failed", "sanctioned_address")
    assert mined["state"] == "confirmed" and mined["nonce"] == failed["nonce"] + 1
    assert cluster.web3.eth.get_balance(later_destination) == 2 * ETH // 100
    [filler] = await cluster.query("SELECT id, nonce, tx_hash FROM nonce_fillers WHERE nonce = $1",
                                   failed["nonce"])
    transaction = cluster.web3.eth.get_transaction(filler["tx_hash"])
    assert (transaction["from"], transaction["to"], transaction["value"], transaction["nonce"]) == (
        cluster.hot_wallet, cluster.hot_wallet, 0, failed["nonce"])
    assert cluster.web3.eth.get_transaction_receipt(filler["tx_hash"])["status"] == 1
    # The signer journaled it under the filler's own id, beside nothing else at that nonce.
    assert journal_rows(cluster, "SELECT withdrawal_id FROM signatures WHERE nonce = ?", str(failed["nonce"])) == [
        (str(filler["id"]),)]


# --- Travel Rule over TRP between two VASP identities ---------------------------------

async def beneficiary_account(cluster: Cluster) -> str:
    """A deposit address of a customer of the counterparty VASP (both identities share this database)."""
    beneficiary, address = await cluster.user(), fresh_address()
    await cluster.query("INSERT INTO deposit_addresses (id, chain, derivation_index, address, user_id, assigned_at)"
                        " VALUES ($1, 'ethereum', $2, $3, $4, now())", uuid.uuid4(),
                        1_000_000 + uuid.uuid4().int % 1_000_000_000, address, uuid.UUID(beneficiary.user_id))
    return address


def travel_rule_for(cluster: Cluster, account: str) -> dict[str, str]:
    counterparty = cluster.vasps[1]
    return {"beneficiary_name": "Beatrice Example", "beneficiary_vasp": counterparty["legal_name"],
            "travel_address": trp.travel_address(f"https://127.0.0.1:{counterparty['port']}/inquiry/{account}")}


async def travel_rule_rows(cluster: Cluster, withdrawal_id: str) -> list:
    outbound = await cluster.query("SELECT * FROM travel_rule_transfers WHERE withdrawal_id = $1",
                                   uuid.UUID(withdrawal_id))
    assert len(outbound) == 1
    inbound = await cluster.query("SELECT * FROM travel_rule_transfers WHERE direction = 'inbound'"
                                  " AND request_identifier = $1", outbound[0]["request_identifier"])
    return [outbound[0], *inbound]


async def test_a_withdrawal_above_the_threshold_waits_for_trp_acceptance_then_is_mined(cluster, people, operator) -> None:
    customer = people["customer"]
    account = await beneficiary_account(cluster)
    created = await cluster.request(customer, chain="ethereum", asset="USDC", to_address=account, amount="1500",
                                    travel_rule=travel_rule_for(cluster, account))
    assert created["state"] == "awaiting_travel_rule"

    async def accepted() -> bool:
        return (await cluster.withdrawal(customer, created["id"]))["state"] == "pending_approval"

    # The compliance worker sends the inquiry over mTLS; the counterparty's policy approves it.
    await cluster.wait_for(accepted, "the counterparty VASP accepting the Travel Rule transfer")
    outbound, inbound = await travel_rule_rows(cluster, created["id"])
    assert outbound["state"] == inbound["state"] == "accepted"
    assert inbound["counterparty"] == "virtuoz"  # the originator, as its client certificate names it
    assert inbound["amount"] == outbound["amount"] == 1500 * 10**6 and inbound["asset"] == "USDC"
    assert outbound["callback_url"].endswith(f"/confirm/{outbound['request_identifier']}")

    assert (await cluster.approve(operator, created["id"]))["state"] == "approved"
    (final,) = await cluster.wait_final(customer, [created["id"]])
    assert final["state"] == "confirmed" and cluster.usdc_balance(account) == 1500 * 10**6

    async def confirmed_to_the_counterparty() -> bool:
        rows = await travel_rule_rows(cluster, created["id"])
        return all(row["tx_hash"] == final["tx_hash"] for row in rows)

    await cluster.wait_for(confirmed_to_the_counterparty, "the txid sent to the counterparty's approval callback")
    events = await cluster.query("SELECT type FROM audit_events WHERE aggregate_type = 'withdrawal'"
                                 " AND aggregate_id = $1 ORDER BY seq", created["id"])
    assert [event["type"] for event in events][:3] == [
        "withdrawal.requested", "withdrawal.awaiting_travel_rule", "withdrawal.travel_rule_accepted"]


async def test_a_transfer_the_counterparty_rejects_fails_the_withdrawal_and_releases_the_hold(cluster, people) -> None:
    customer = people["customer"]
    before = await balances(cluster, customer)
    stranger = fresh_address()  # not an account of the counterparty's customers: its policy rejects it
    created = await cluster.request(customer, chain="ethereum", asset="USDC", to_address=stranger, amount="1200",
                                    travel_rule=travel_rule_for(cluster, stranger))
    assert created["state"] == "awaiting_travel_rule"

    async def failed() -> bool:
        return (await cluster.withdrawal(customer, created["id"]))["state"] == "failed"

    await cluster.wait_for(failed, "the rejected Travel Rule transfer failing the withdrawal")
    outbound, inbound = await travel_rule_rows(cluster, created["id"])
    assert outbound["state"] == inbound["state"] == "rejected"
    assert outbound["reason"] == inbound["reason"] == "unknown beneficiary account"
    after = await balances(cluster, customer)
    assert after["USDC"] == before["USDC"]  # the hold was voided
    assert cluster.usdc_balance(stranger) == 0
