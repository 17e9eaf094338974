"""Transfers from the platform's own addresses reach deposit addresses as internal movements, never as
customer deposits: the scanner loop (in this process) against Anvil, PostgreSQL and a real worker."""

from __future__ import annotations

import asyncio

import pytest
from eth_account import Account
from sqlalchemy import select

from core.db import unit_of_work
from custody.deposits.models import CREDITED, Deposit
from custody.ledger import verify_ledger
from custody.treasury.models import InternalMovement
from custody.withdrawals.models import HotWalletNonce, WithdrawalAttempt
from devnet.chains import ANVIL_DEV_KEYS
from tests.factories import make_funded_user, make_withdrawal

ETH = 10**18
HOT_KEY = ANVIL_DEV_KEYS[3]  # stands in for the chain's hot wallet: the platform sends from it
HOT = Account.from_key(HOT_KEY).address

pytestmark = pytest.mark.usefixtures("custody_worker")


async def make_platform_sender(deposits, address: str) -> None:
    """What the treasury does before its first top-up is signed: the wallet's nonce row exists."""
    async with unit_of_work(deposits.factory) as session:
        session.add(HotWalletNonce(chain=deposits.chain.name, address=address, next_nonce=0))


async def movements(deposits) -> list[InternalMovement]:
    async with deposits.factory() as session:
        return list(await session.scalars(select(InternalMovement).where(
            InternalMovement.chain == deposits.chain.name).order_by(InternalMovement.block_number)))


async def test_gas_topup_is_not_credited(deposits, wallet) -> None:
    await make_platform_sender(deposits, HOT)
    user, address = await deposits.user_with_address()
    # The hot wallet's gas top-up of the address, then a customer's own deposit to it.
    topup = await asyncio.to_thread(wallet.send_native, address, 3 * 10**14, key=HOT_KEY)
    deposit = await asyncio.to_thread(wallet.send_native, address, ETH // 4)
    await deposits.start_scanner()

    async def customer_deposit_credited() -> bool:
        return any(row.state == CREDITED for row in await deposits.deposits(user))

    await deposits.wait_for(customer_deposit_credited, "the customer's deposit credited")
    rows = await deposits.deposits(user)
    assert [(row.tx_hash, row.amount) for row in rows] == [(deposit.tx_hash, ETH // 4)]  # the top-up is no deposit
    assert await deposits.available(user, "ETH") == ETH // 4
    (moved,) = await movements(deposits)
    assert (moved.tx_hash, moved.from_address, moved.to_address, moved.asset, moved.amount, moved.tx_log_index) == (
        topup.tx_hash, HOT, address, "ETH", 3 * 10**14, -1)
    assert moved.block_number == topup.block_number and moved.block_hash == topup.block_hash
    async with deposits.factory() as session:
        assert await verify_ledger(session) == []


async def test_a_move_between_deposit_addresses_is_internal_and_a_withdrawal_to_one_is_a_deposit(
    deposits, wallet
) -> None:
    await make_platform_sender(deposits, HOT)
    payer = await make_funded_user(deposits.factory, "ETH:1")
    payee, address = await deposits.user_with_address()
    # A customer's withdrawal from the hot wallet to another customer's deposit address: the payer's
    # balance went down for it, so the payee is credited (it is recognised by its signed attempt).
    paid = await asyncio.to_thread(wallet.send_native, address, ETH // 10, key=HOT_KEY)
    withdrawal = await make_withdrawal(deposits.factory, payer, deposits.chain.name, amount=ETH // 10,
                                       to_address=address, state="signing")
    async with unit_of_work(deposits.factory) as session:
        session.add(WithdrawalAttempt(withdrawal_id=withdrawal.id, attempt=1, unsigned_tx="{}", request_digest="0" * 64,
                                      authorization="-", max_fee_per_gas=1, max_priority_fee_per_gas=1,
                                      raw_tx="0x00", tx_hash=paid.tx_hash))
    # Another of the platform's sending addresses (a deposit address being swept, say) paying this one: internal.
    inner = Account.from_key(ANVIL_DEV_KEYS[4]).address
    await make_platform_sender(deposits, inner)
    moved_tx = await asyncio.to_thread(wallet.send_native, address, ETH // 20, key=ANVIL_DEV_KEYS[4])
    await deposits.start_scanner()

    async def payment_credited() -> bool:
        return any(row.state == CREDITED for row in await deposits.deposits(payee))

    await deposits.wait_for(payment_credited, "the withdrawal's payment credited to the payee")

    async def movement_seen() -> bool:
        return any(item.tx_hash == moved_tx.tx_hash for item in await movements(deposits))

    await deposits.wait_for(movement_seen, "the internal move recorded")
    assert [row.tx_hash for row in await deposits.deposits(payee)] == [paid.tx_hash]
    assert [item.tx_hash for item in await movements(deposits)] == [moved_tx.tx_hash]
    assert await deposits.count(Deposit, Deposit.tx_hash == moved_tx.tx_hash) == 0


async def test_an_internal_movement_reorged_away_is_forgotten_and_read_again(deposits, wallet) -> None:
    await make_platform_sender(deposits, HOT)
    user, address = await deposits.user_with_address()
    await deposits.start_scanner()
    topup = await asyncio.to_thread(wallet.send_native, address, 10**15, key=HOT_KEY)

    async def recorded() -> bool:
        return [item.tx_hash for item in await movements(deposits)] == [topup.tx_hash]

    await deposits.wait_for(recorded, "the top-up recorded as a movement")
    # Replace its block (the transaction is dropped with it): the movement goes with the old chain.
    await asyncio.to_thread(wallet.reorg_from, topup.block_number)
    await asyncio.to_thread(wallet.mine, 3)

    async def forgotten() -> bool:
        return await movements(deposits) == []

    await deposits.wait_for(forgotten, "the reorged movement forgotten")
    assert await deposits.deposits(user) == []  # never a deposit, before or after


@pytest.fixture
async def api(make_client, settings, chain_settings):
    return await make_client(settings.model_copy(update={"chains": [chain_settings]}))


async def test_an_ingested_top_up_is_refused_as_an_internal_transfer(api, login_as, deposits, wallet,
                                                                     chain_settings) -> None:
    await make_platform_sender(deposits, HOT)
    user, address = await deposits.user_with_address()
    topup = await asyncio.to_thread(wallet.send_native, address, 3 * 10**14, key=HOT_KEY)
    operator = await login_as(api, "operator")
    event = {"chain": chain_settings.name, "tx_hash": topup.tx_hash, "log_index": -1,
             "block_number": topup.block_number, "block_hash": topup.block_hash, "to_address": address,
             "asset": "ETH", "amount": "0.0003"}
    response = await api.post("/api/v1/platform/crypto/scanner/ingest", json=event, headers=operator.headers)
    body = await response.json()
    assert (response.status, body["error"]["code"]) == (422, "event_mismatch"), body
    assert body["error"]["details"]["reasons"] == ["internal_transfer"]
    assert await deposits.deposits(user) == []
