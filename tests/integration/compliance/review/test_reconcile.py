"""POST /admin/transactions/{tx_id}/reconcile against a real Anvil chain: deposits and withdrawals
booked in the ledger (through the custody services), compared with what the chain shows, before and
after a reorg; internal transfers and unknown ids refused."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy import select

from compliance.review.reconcile import AGGREGATE
from core import audit
from core.db import unit_of_work
from core.settings import ChainSettings, Settings
from custody import ledger
from custody.deposits import crediting
from custody.deposits.models import NATIVE_LOG_INDEX, Deposit
from custody.ledger.models import LedgerTransfer
from tests.chain_fixtures import anvil_chain, usdc_artifact, usdc_cache_dir  # noqa: F401
from tests.chain_wallet import SENDER_KEY, Sent
from tests.factories import make_withdrawal
from tests.integration.compliance.conftest import unmounted
from tests.integration.custody.deposits.conftest import usdc_address, wallet  # noqa: F401

ETH = 10**18
USDC = 10**6
CONFIRMATIONS = 2
HOT_WALLET = Account.from_key(SENDER_KEY).address  # the dev account the native transfers come from


@pytest.fixture
def chain_settings(anvil_chain, usdc_address: str) -> ChainSettings:  # noqa: F811
    # A chain name of the test's own: its deposits and withdrawals are its alone.
    return ChainSettings(name=f"rec{uuid.uuid4().hex[:8]}", chain_id=31337, rpc_url=anvil_chain.rpc_url, native="ETH",
                         confirmations=CONFIRMATIONS, tokens={"USDC": usdc_address})


@pytest.fixture
async def client(make_client, settings: Settings, chain_settings: ChainSettings):
    configured = settings.model_copy(update={"chains": [chain_settings], "sandbox_credit": "ETH:10,USDC:1000"})
    return await make_client(configured, extra_routes=unmounted(configured))


def reconcile_url(transfer_id: Any) -> str:
    return f"/api/v1/admin/transactions/{transfer_id}/reconcile"


async def reconcile(client, officer, transfer_id: Any, status: int = 200) -> dict:
    response = await client.post(reconcile_url(transfer_id), headers=officer.headers)
    body = await response.json()
    assert response.status == status, body
    return body


async def mined(wallet, sent: Sent, depth: int = CONFIRMATIONS) -> None:  # noqa: F811
    """Wait until ``sent`` has ``depth`` confirmations (mining now rather than waiting for the interval)."""
    assert sent.block_number is not None
    while await asyncio.to_thread(wallet.head) < sent.block_number + depth - 1:
        await asyncio.to_thread(wallet.mine)


async def credited_deposit(factory, chain: ChainSettings, user_id: uuid.UUID, sent: Sent, to: str, asset: str,
                           amount: int) -> uuid.UUID:
    """Record and credit the deposit as the scanner and the custody worker would; its credit transfer's id."""
    async with unit_of_work(factory) as session:
        deposit = Deposit(chain=chain.name, tx_hash=sent.tx_hash, log_index=sent.log_index,
                          block_number=sent.block_number, block_hash=sent.block_hash, to_address=to, user_id=user_id,
                          asset=asset, amount=amount, state="confirming", confirmations=CONFIRMATIONS,
                          required_confirmations=CONFIRMATIONS, source="scanner")
        session.add(deposit)
        await session.flush()
        assert await crediting.credit(session, deposit.id)
        return deposit.credit_transfer_id


async def confirmed_withdrawal(factory, wallet, chain: ChainSettings, user_id: uuid.UUID, sent: Sent, *,  # noqa: F811
                               to: str, asset: str, amount: int, hot_wallet: str, gas: int | None = None) -> uuid.UUID:
    """A withdrawal booked as the pipeline books a confirmed one (hold posted, gas charged); the post's transfer id."""
    receipt = await asyncio.to_thread(wallet.w3.eth.get_transaction_receipt, sent.tx_hash)
    paid = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    gas = paid if gas is None else gas
    withdrawal = await make_withdrawal(factory, user_id, chain.name, amount=amount, asset=asset, to_address=to,
                                       state="confirmed", hot_wallet=hot_wallet, nonce=None, tx_hash=sent.tx_hash,
                                       block_number=sent.block_number, confirmations=CONFIRMATIONS, gas_cost=gas)
    async with unit_of_work(factory) as session:
        await ledger.post_hold(session, withdrawal.hold_id, ledger.AccountRef.system("chain_withdrawals"), amount,
                               type="withdrawal_post", tx_hash=sent.tx_hash)
        return await session.scalar(select(LedgerTransfer.id).where(
            LedgerTransfer.reference_id == str(withdrawal.id), LedgerTransfer.type == "withdrawal_post"))


def fields(body: dict) -> dict[str, tuple[str | None, str | None]]:
    return {item["field"]: (item["ledger"], item["chain"]) for item in body["differences"]}


async def test_a_credited_deposit_matches_the_chain_until_a_reorg_drops_it(client, login_as, factory, wallet,  # noqa: F811
                                                                          chain_settings) -> None:
    customer, officer = await login_as(client), await login_as(client, "compliance")
    to = Account.create().address
    sent = await asyncio.to_thread(wallet.send_native, to, ETH // 4)
    await mined(wallet, sent)
    transfer_id = await credited_deposit(factory, chain_settings, customer.user_id, sent, to, "ETH", ETH // 4)

    body = await reconcile(client, officer, transfer_id)
    assert (body["matches"], body["differences"], body["kind"], body["ledger_state"]) == (True, [], "deposit",
                                                                                           "credited")
    assert (body["tx_hash"], body["chain"], body["required_confirmations"]) == (sent.tx_hash, chain_settings.name, 2)
    assert body["confirmations"] >= CONFIRMATIONS

    await asyncio.to_thread(wallet.reorg_from, sent.block_number)  # the transaction is dropped
    body = await reconcile(client, officer, transfer_id)
    assert body["matches"] is False
    found = fields(body)
    assert found["receipt"] == (f"mined in block {sent.block_number}", None)
    assert found["block_hash"][0] == sent.block_hash and found["block_hash"][1] not in (None, sent.block_hash)

    async with factory() as session:
        events = [e for e in await audit.events_of(session, AGGREGATE, transfer_id) if e.type == "transaction.reconciled"]
    assert [e.data["matches"] for e in events] == [True, False]
    assert all(e.actor == str(officer.user_id) for e in events)


async def test_a_token_deposit_booked_with_another_amount_and_too_few_confirmations_differs(
        client, login_as, factory, wallet, chain_settings) -> None:  # noqa: F811
    customer, officer = await login_as(client), await login_as(client, "admin")
    to = Account.create().address
    sent = await asyncio.to_thread(wallet.send_usdc, to, 12_500_000)
    await mined(wallet, sent, depth=1)
    # The ledger credited 13.5 USDC for a 12.5 USDC transfer, and already at one confirmation.
    async with unit_of_work(factory) as session:
        deposit = Deposit(chain=chain_settings.name, tx_hash=sent.tx_hash, log_index=sent.log_index,
                          block_number=sent.block_number, block_hash=sent.block_hash, to_address=to,
                          user_id=customer.user_id, asset="USDC", amount=13_500_000, state="confirming",
                          confirmations=10, required_confirmations=10, source="ingest")
        session.add(deposit)
        await session.flush()
        assert await crediting.credit(session, deposit.id)
        transfer_id = deposit.credit_transfer_id
    body = await reconcile(client, officer, transfer_id)
    found = fields(body)
    assert body["matches"] is False
    assert found["amount"] == ("13.5", "12.5")
    assert found["confirmations"][0] == "10" and int(found["confirmations"][1]) < 10
    assert set(found) == {"amount", "confirmations"}


async def test_a_confirmed_withdrawal_matches_and_a_wrong_booking_shows_each_field(client, login_as, factory,
                                                                                   wallet, chain_settings) -> None:  # noqa: F811
    customer, officer = await login_as(client), await login_as(client, "compliance")
    to = Account.create().address
    sent = await asyncio.to_thread(wallet.send_native, to, ETH // 2)
    await mined(wallet, sent)
    right = await confirmed_withdrawal(factory, wallet, chain_settings, customer.user_id, sent, to=to, asset="ETH",
                                       amount=ETH // 2, hot_wallet=HOT_WALLET)
    body = await reconcile(client, officer, right)
    assert (body["matches"], body["kind"], body["ledger_state"]) == (True, "withdrawal", "confirmed"), body["differences"]

    elsewhere = Account.create().address
    wrong = await confirmed_withdrawal(factory, wallet, chain_settings, customer.user_id, sent, to=elsewhere,
                                       asset="ETH", amount=ETH, hot_wallet=elsewhere, gas=10**15)
    found = fields(await reconcile(client, officer, wrong))
    paid = await asyncio.to_thread(wallet.w3.eth.get_transaction_receipt, sent.tx_hash)
    gas_paid = format(Decimal(paid["gasUsed"] * paid["effectiveGasPrice"]).scaleb(-18).normalize(), "f")
    assert found == {"amount": ("1", "0.5"), "to_address": (elsewhere, to), "from_address": (elsewhere, HOT_WALLET),
                     "gas_cost": ("0.001", gas_paid)}


async def test_internal_and_unmined_transfers_and_unknown_ids_are_refused(client, login_as, factory,
                                                                         chain_settings) -> None:
    customer, officer = await login_as(client), await login_as(client, "compliance")
    async with factory() as session:  # the sandbox credit of registration: internal
        credit = await session.scalar(select(LedgerTransfer.id).where(
            LedgerTransfer.reference.like(f"%{customer.user_id}%")).limit(1))
    assert credit is not None
    body = await reconcile(client, officer, credit, 409)
    assert body["error"]["code"] == "no_onchain_counterpart"

    # Requested, never sent: no transaction to compare.
    requested = await make_withdrawal(factory, customer.user_id, chain_settings.name, amount=ETH,
                                      to_address=Account.create().address)
    body = await reconcile(client, officer, requested.hold_id, 409)
    assert (body["error"]["code"], body["error"]["details"]) == ("not_on_chain", {"state": "requested"})

    for missing in (uuid.uuid4(), "not-a-uuid"):
        body = await reconcile(client, officer, missing, 404)
        assert body["error"]["code"] == "transaction_not_found"


async def test_a_chain_this_server_does_not_follow_is_a_503(make_client, settings, login_as, factory, wallet,  # noqa: F811
                                                            chain_settings) -> None:
    bare = settings.model_copy(update={"sandbox_credit": "ETH:10"})
    client = await make_client(bare, extra_routes=unmounted(bare))
    customer, officer = await login_as(client), await login_as(client, "compliance")
    to = Account.create().address
    sent = await asyncio.to_thread(wallet.send_native, to, ETH // 100)
    await mined(wallet, sent)
    transfer_id = await credited_deposit(factory, chain_settings, customer.user_id, sent, to, "ETH", ETH // 100)
    body = await reconcile(client, officer, transfer_id, 503)
    assert (body["error"]["code"], body["error"]["details"]) == ("chain_not_configured", {"chain": chain_settings.name})


@pytest.mark.parametrize("role", [None, "support", "operator"], ids=["customer", "support", "operator"])
async def test_only_compliance_and_admin_reconcile(client, login_as, role) -> None:
    caller = await login_as(client, *([role] if role else []))
    response = await client.post(reconcile_url(uuid.uuid4()), headers=caller.headers)
    assert response.status == 403


def test_native_log_index_is_the_deposits_own() -> None:
    from compliance.review import reconcile as module

    assert module.NATIVE_LOG_INDEX == NATIVE_LOG_INDEX
