"""Deposit credits run in a lane of their own: the `deposits` queue, consumed by `virtuoz worker
deposits` only, so a custody worker busy with withdrawals in trouble never delays a credit."""

from __future__ import annotations

from core.settings import ReadinessPolicy
from custody.deposits.actors import credit_deposit, reverse_deposit
from devnet.supervisor import SERVICES
from jobs.heartbeat import HEARTBEATS
from jobs.registry import QUEUES, WORKERS
from jobs.worker import worker_queues


def test_deposit_crediting_actors_are_bound_to_the_deposits_queue() -> None:
    assert "deposits" in QUEUES
    # A reversal must not wait behind withdrawals either, and it races the credit of the same
    # deposit: both stay in one lane.
    assert (credit_deposit.queue, reverse_deposit.queue) == ("deposits", "deposits")
    assert credit_deposit.message("00000000-0000-0000-0000-000000000000").queue_name == "deposits"


def test_the_custody_worker_does_not_consume_the_deposits_queue() -> None:
    assert "deposits" not in worker_queues("custody")
    assert worker_queues("deposits") == {"deposits"}
    assert [name for name, queues in WORKERS.items() if "deposits" in queues] == ["deposits"]
    # Its heartbeat travels its own queue: readiness proves that lane drains, not the custody one.
    assert HEARTBEATS["deposits"].queue == "deposits"


def test_the_devnet_starts_every_worker_kind_and_readiness_waits_for_each() -> None:
    started = {argv[1] for name, argv in SERVICES if argv[0] == "worker"}
    assert started == set(WORKERS)
    assert ("worker-deposits", ["worker", "deposits"]) in SERVICES
    assert set(ReadinessPolicy().workers) == set(WORKERS)
