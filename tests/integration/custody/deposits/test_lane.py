"""A credit does not wait for withdrawals: with the custody queue backlogged and no custody worker
draining it (withdrawals in trouble: a chain node timing out, a signer down), a `deposits` worker
still credits a confirmed deposit, and leaves the custody backlog alone."""

from __future__ import annotations

import asyncio
import secrets
import uuid

import redis.asyncio
from sqlalchemy import select

import jobs
from core.db import unit_of_work
from custody import ledger
from custody.deposits.models import CONFIRMING, CREDITED, Deposit
from custody.deposits.tracking import CREDIT_DEPOSIT
from jobs.broker import queue_depths
from jobs.heartbeat import HEARTBEATS
from jobs.worker import start_worker, worker_queues
from tests.factories import make_user

BACKLOG = 200
WAIT = 30.0  # a bound for a hung test, not a performance limit


async def test_a_credit_is_processed_by_the_deposits_worker_while_the_custody_queue_is_backlogged(
    broker, factory, redis_url, namespace
) -> None:
    for _ in range(BACKLOG):
        broker.enqueue(HEARTBEATS["custody"].message())
    user_id = await make_user(factory, tag="lane", display_name="Depositor")
    amount = 7 * 10**15
    deposit = Deposit(chain=f"lane{uuid.uuid4().hex[:8]}", tx_hash="0x" + secrets.token_hex(32), log_index=-1,
                      block_number=100, block_hash="0x" + secrets.token_hex(32), from_address=None,
                      to_address="0x" + secrets.token_hex(20), user_id=user_id, asset="ETH", amount=amount,
                      state=CONFIRMING, confirmations=2, required_confirmations=2, source="scanner")
    async with unit_of_work(factory) as session:
        session.add(deposit)
        await session.flush()
        jobs.send_after_commit(session, CREDIT_DEPOSIT, str(deposit.id))

    worker = start_worker(broker, worker_queues("deposits"), worker_threads=2, poll_ms=50)
    try:
        deadline = asyncio.get_running_loop().time() + WAIT
        while True:
            async with factory() as session:
                state = await session.scalar(select(Deposit.state).where(Deposit.id == deposit.id))
            if state == CREDITED:
                break
            assert asyncio.get_running_loop().time() < deadline, f"not credited within {WAIT}s (state {state})"
            await asyncio.sleep(0.05)
    finally:
        await asyncio.to_thread(worker.stop, timeout=10_000)

    async with factory() as session:
        balance = next(row for row in await ledger.balances(session, user_id) if row.currency.code == "ETH")
    assert balance.available == amount
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        depths = await queue_depths(client, ["custody", "deposits"], namespace=namespace)
    finally:
        await client.aclose()
    assert depths == {"custody": BACKLOG, "deposits": 0}
