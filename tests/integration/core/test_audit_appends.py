"""Concurrent appends to one aggregate: each waits for the lock, then sees the event committed before it."""

from __future__ import annotations

import asyncio
import uuid

from core import audit
from core.db import create_engine, session_factory, unit_of_work


async def test_concurrent_appends_to_one_aggregate_chain_gap_free(database_url):
    engine = create_engine(database_url, pool_size=10)
    sessions = session_factory(engine)
    aggregate = uuid.uuid4()

    async def append(n: int) -> None:
        async with unit_of_work(sessions) as session:
            await audit.append(session, "test_race", aggregate, "race.appended", {"n": n}, actor="tester")

    try:
        await asyncio.gather(*(append(n) for n in range(20)))
        async with sessions() as session:
            events = [audit.as_dict(event) for event in await audit.events_of(session, "test_race", aggregate)]
    finally:
        await engine.dispose()
    assert [event["seq"] for event in events] == list(range(1, 21))
    assert sorted(event["data"]["n"] for event in events) == list(range(20))
    assert audit.verify_chain(events) == []


async def test_an_append_rolled_back_leaves_no_gap(database_url):
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    aggregate = uuid.uuid4()
    try:
        async with unit_of_work(sessions) as session:
            await audit.append(session, "test_race", aggregate, "race.first")
        async with sessions() as session:
            await audit.append(session, "test_race", aggregate, "race.rolled_back")
            await session.rollback()
        async with unit_of_work(sessions) as session:
            await audit.append(session, "test_race", aggregate, "race.second", {"note": "ünïcode ✓"})
        async with sessions() as session:
            events = [audit.as_dict(event) for event in await audit.events_of(session, "test_race", aggregate)]
    finally:
        await engine.dispose()
    assert [(event["seq"], event["type"]) for event in events] == [(1, "race.first"), (2, "race.second")]
    assert audit.verify_chain(events) == []
