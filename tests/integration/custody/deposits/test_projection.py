"""Deposits can be rebuilt from their audit events: seen, credited, reorged away and reversed."""

from __future__ import annotations

import asyncio
from functools import reduce

import pytest

from core import audit
from custody.deposits.models import CREDITED, REORGED
from custody.deposits.projection import reduce_deposit, stored_deposit

ETH = 10**18

pytestmark = pytest.mark.usefixtures("custody_worker")


async def folded_and_stored(deposits, deposit_id) -> tuple[dict, dict]:
    async with deposits.factory() as session:
        events = [audit.as_dict(event) for event in await audit.events_of(session, "deposit", deposit_id)]
        return reduce(reduce_deposit, events, None), await stored_deposit(session, str(deposit_id))


async def test_a_deposit_replays_without_drift_through_credit_and_reversal(deposits, wallet) -> None:
    await deposits.start_scanner()
    user, address = await deposits.user_with_address()
    sent = await asyncio.to_thread(wallet.send_native, address, 2 * ETH)

    async def in_state(state: str) -> bool:
        rows = await deposits.deposits(user)
        return len(rows) == 1 and rows[0].state == state and (state != REORGED or rows[0].reversed_at is not None)

    await deposits.wait_for(lambda: in_state(CREDITED), "the deposit credited")
    (row,) = await deposits.deposits(user)
    folded, stored = await folded_and_stored(deposits, row.id)
    assert folded == stored and stored["credit_transfer_id"] is not None

    await asyncio.to_thread(wallet.reorg_from, sent.block_number)
    await deposits.wait_for(lambda: in_state(REORGED), "the credit reversed")
    folded, stored = await folded_and_stored(deposits, row.id)
    assert folded == stored and stored["state"] == REORGED and stored["credit_transfer_id"] is None
