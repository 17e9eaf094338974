"""Deposits recorded ahead of the scanner (an ingested event): the scanner checks them against the blocks it reads."""

from __future__ import annotations

import asyncio

import pytest

from core.audit import events_of
from core.db import unit_of_work
from custody.deposits import tracking
from custody.deposits.models import CREDITED, REORGED
from custody.deposits.tracking import Observed

ETH = 10**18

pytestmark = pytest.mark.usefixtures("custody_worker")


async def test_an_event_recorded_ahead_in_a_replaced_block_is_reorged_and_one_in_the_real_block_kept(
        deposits, wallet) -> None:
    user, address = await deposits.user_with_address()
    sent = await asyncio.to_thread(wallet.send_native, address, ETH)
    chain = deposits.chain.name
    # As the ingest route records them before the scanner gets there: the real transfer, and one at
    # the same height under a block hash the chain does not have (its block was replaced since).
    gone = Observed(chain, "0x" + "ab" * 32, -1, sent.block_number, "0x" + "cd" * 32, None, address, user, "ETH", 5)
    real = Observed(chain, sent.tx_hash, -1, sent.block_number, sent.block_hash, None, address, user, "ETH", ETH)
    announcements = tracking.Announcements()
    async with unit_of_work(deposits.factory) as session:
        await tracking.record(session, [gone, real], announcements, required_confirmations=2, source="ingest")
        await announcements.write(session, actor="test")
    await asyncio.to_thread(wallet.mine, 2)

    await deposits.start_scanner()

    async def settled() -> bool:
        states = {row.tx_hash: row.state for row in await deposits.deposits(user)}
        return states.get(gone.tx_hash) == REORGED and states.get(real.tx_hash) == CREDITED

    await deposits.wait_for(settled, "the replaced one reorged, the real one credited")
    rows = await deposits.deposits(user)
    assert len(rows) == 2  # the scanner found the real transfer as the row already recorded, not a new one
    (reorged,) = [row for row in rows if row.tx_hash == gone.tx_hash]
    async with deposits.factory() as session:
        assert [event.type for event in await events_of(session, "deposit", reorged.id)] == \
            ["deposit.seen", "deposit.reorged"]
