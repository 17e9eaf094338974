"""The scheduler asks for tracking every few seconds; an RPC outage must not turn that into a flood:
one tracking message per withdrawal in flight at most, no retries of its own, no dead letters."""

from __future__ import annotations

import logging

from core.db import unit_of_work
from custody.chains import ChainUnavailable
from jobs.context import using_settings
from jobs.registry import JobSpec, registered_jobs
from tests.unit.custody.withdrawals.conftest import CustodyWorker

TRACK = "custody.track_withdrawal"


def spec(name: str) -> JobSpec:
    return next(item for item in registered_jobs() if item.name == name)


async def tick(worker: CustodyWorker) -> None:
    with using_settings(worker.settings):
        async with unit_of_work(worker.factory) as session:
            await spec("custody.track_withdrawals").fn(session)


def tracked(worker: CustodyWorker) -> list[str]:
    return [args[0] for name, args in worker.queued("custody") if name == TRACK]


async def test_tracker_does_not_multiply_messages(worker, caplog) -> None:
    ours = {str(await worker.to_broadcast()) for _ in range(3)}
    worker.forget_queued()
    worker.chain.errors["head"] = ChainUnavailable(f"{worker.chain.name} is unreachable")  # an RPC outage

    for _ in range(50):  # the scheduler's ticks pile up while the worker cannot get through
        await tick(worker)

    waiting = tracked(worker)
    assert len(waiting) == len(set(waiting))  # every withdrawal in flight once, ours and any other
    assert ours <= set(waiting)
    assert spec(TRACK).max_retries == 0 and spec("custody.track_withdrawals").max_retries == 0

    # The worker gets to them: the outage is logged, not raised (no retry, no dead letter)…
    with caplog.at_level(logging.WARNING, logger="custody.withdrawals"):
        for withdrawal_id in ours:
            with using_settings(worker.settings):
                async with unit_of_work(worker.factory) as session:
                    await spec(TRACK).fn(session, withdrawal_id)
    assert sum("unreachable" in record.getMessage() for record in caplog.records) == len(ours)
    for withdrawal_id in ours:
        assert (await worker.withdrawal(withdrawal_id)).state == "broadcast"

    # …and once it has, the next tick may send one again (not before).
    worker.forget_queued()
    await tick(worker)
    await tick(worker)
    assert sorted(item for item in tracked(worker) if item in ours) == sorted(ours)
