"""Locking a user (a step-up, an MFA change) must not stall the money of that user.

Every row that names the user (a ledger account, a deposit, a notification) makes PostgreSQL check
its foreign key with FOR KEY SHARE on the user's row. A user locked FOR UPDATE blocks those checks:
a withdrawal request (its step-up locks the customer) and a deposit credit of the same customer
deadlocked in the scale-out test, and one of them failed with a 500.
"""

from __future__ import annotations

import redis.asyncio
from sqlalchemy import text

from core.db import create_engine, session_factory
from identity.service import require_step_up
from notifications.service import notify
from tests.factories import make_user


async def test_a_locked_user_still_lets_rows_that_name_it_be_written(database_url, redis_url, settings) -> None:
    engine = create_engine(database_url, pool_size=2)
    client = redis.asyncio.Redis.from_url(redis_url)
    sessions = session_factory(engine)
    try:
        user_id = await make_user(sessions, tag="locked")
        async with sessions() as stepping_up, sessions() as crediting:
            async with stepping_up.begin():
                await require_step_up(stepping_up, settings, client, user_id, None)  # holds the user's row
                async with crediting.begin():
                    # Waiting here is what formed the deadlock: a bounded wait fails the test instead.
                    await crediting.execute(text("SET LOCAL lock_timeout = '2s'"))
                    await notify(crediting, user_id, "deposit.credited", {"amount": "1"})
    finally:
        await client.aclose()
        await engine.dispose()
