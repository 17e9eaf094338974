"""`virtuoz scheduler`: the periodic work of the platform, as a list of entries.

The scheduler only enqueues Dramatiq messages; workers do the work. So a slow report never
delays a heartbeat, and running two schedulers by mistake costs duplicate messages, which
idempotent jobs absorb, never duplicate effects.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dramatiq
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from prometheus_client import Counter, Gauge

from core.logging import configure_logging
from core.metrics import serve_metrics
from core.settings import Settings
from jobs import registry
from jobs.broker import close_broker, create_broker
from jobs.heartbeat import enqueue_heartbeats
from jobs.worker import stop_on_signals

log = logging.getLogger(__name__)

SHUTDOWN_POLL_SECONDS = 0.2

RUNS = Counter("virtuoz_scheduler_runs_total", "Scheduled tasks fired, by task and outcome (sent: its messages "
               "are queued; failed: the broker refused them, the next tick tries again).", ["task", "outcome"])
LAST_SENT = Gauge("virtuoz_scheduler_last_sent_timestamp_seconds", "When each task last queued its messages "
                  "(Unix time).", ["task"])


@dataclass(frozen=True)
class ScheduleEntry:
    """``enqueue(broker)`` sends the messages of one periodic task when ``trigger`` fires."""

    id: str
    enqueue: Callable[[dramatiq.Broker], None]
    trigger: Callable[[Settings], BaseTrigger]
    run_at_start: bool = False


def every_heartbeat_interval(settings: Settings) -> BaseTrigger:
    return IntervalTrigger(seconds=settings.heartbeat_interval_seconds)


def every_minute(settings: Settings) -> BaseTrigger:
    return IntervalTrigger(minutes=1)


def send(job_name: str) -> Callable[[dramatiq.Broker], None]:
    """Enqueue the job ``job_name`` (no arguments) by name: the scheduler imports no domain, and
    building its broker proves each name has an actor."""
    declared = registry.name(job_name)
    return lambda broker: broker.enqueue(registry.message(declared))


SCHEDULE: list[ScheduleEntry] = [
    ScheduleEntry("heartbeats", enqueue_heartbeats, every_heartbeat_interval, run_at_start=True),
    # One ``allocator.refill_all``: the allocator fans it out to a refill per configured chain (its
    # own settings name the chains).
    ScheduleEntry("deposit-address-pools", send("allocator.refill_all"), every_minute, run_at_start=True),
    ScheduleEntry("helpdesk-sla-breaches",
                  send("support.mark_breaches"),
                  lambda settings: IntervalTrigger(seconds=settings.helpdesk_breach_check_seconds)),
    # Withdrawals: receipts, confirmations, fee bumps and resends of lost messages.
    ScheduleEntry("withdrawal-tracking",
                  send("custody.track_withdrawals"),
                  lambda settings: IntervalTrigger(seconds=settings.withdrawal_track_seconds)),
    # Treasury: deposit addresses holding at least the minimum swept to the hot wallet (planned every
    # interval), and the sweeps in flight driven (top-ups, signatures, broadcasts, confirmations).
    ScheduleEntry("treasury-sweeps",
                  send("treasury.find_sweeps"),
                  lambda settings: IntervalTrigger(seconds=settings.sweep_interval_seconds), run_at_start=True),
    ScheduleEntry("treasury-sweep-tracking",
                  send("treasury.track_sweeps"),
                  lambda settings: IntervalTrigger(seconds=settings.sweep_track_seconds)),
    # Treasury: each hot wallet against its floor and ceiling (a refill request below, the surplus to the
    # cold wallet above), and the tracking of those transfers and refills.
    ScheduleEntry("treasury-hot-levels",
                  send("treasury.check_levels"),
                  lambda settings: IntervalTrigger(seconds=settings.treasury_check_seconds), run_at_start=True),
    # Compliance: yesterday's large_transactions and last month's monthly reports per
    # configured jurisdiction, at 00:15 UTC; a unique key per period makes repeated or catch-up runs
    # queue nothing. Then the automatic transaction rules (compliance.review.rules), every interval.
    ScheduleEntry("compliance-daily-reports",
                  send("compliance.schedule_reports"),
                  lambda settings: CronTrigger(hour=0, minute=15, timezone=UTC), run_at_start=True),
    # The reconciliation report of each interval just ended (VIRTUOZ_RECONCILIATION_INTERVAL_HOURS,
    # aligned on midnight UTC), a few minutes after it ends; one per interval (unique key).
    ScheduleEntry("compliance-reconciliation",
                  send("compliance.reconcile_balances"),
                  lambda settings: CronTrigger(hour=f"*/{settings.reconciliation_interval_hours}", minute=5,
                                               timezone=UTC), run_at_start=True),
    ScheduleEntry("compliance-transaction-rules",
                  send("compliance.apply_rules"),
                  lambda settings: IntervalTrigger(seconds=settings.compliance_rules_interval_seconds)),
    # Travel Rule transfers past their deadline (VIRTUOZ_TRAVEL_RULE_EXPIRY_HOURS after creation or
    # sending) expire, hourly.
    ScheduleEntry("travel-rule-expiry",
                  send("compliance.expire_travel_rule"),
                  lambda settings: IntervalTrigger(hours=1)),
    # Webhooks: pending deliveries whose time has come (retries after their backoff, and messages lost
    # in a crash) are sent to the webhooks worker again.
    ScheduleEntry("webhook-dispatch",
                  send("webhooks.dispatch_due"),
                  lambda settings: IntervalTrigger(seconds=settings.webhook_dispatch_seconds), run_at_start=True),
    # Proof of reserves: the day's epoch (Merkle sum trees of the liabilities, reserves on chain) at
    # 00:30 UTC, and at start; the day is the epoch's unique slot, so a restart or a redelivered
    # message builds nothing twice.
    ScheduleEntry("treasury-reserves",
                  send("treasury.build_reserves"),
                  lambda settings: CronTrigger(hour=0, minute=30, timezone=UTC), run_at_start=True),
]


def _counted(entry: ScheduleEntry) -> Callable[[dramatiq.Broker], None]:
    def fire(broker: dramatiq.Broker) -> None:
        try:
            entry.enqueue(broker)
        except Exception:
            RUNS.labels(entry.id, "failed").inc()
            raise  # APScheduler logs it
        RUNS.labels(entry.id, "sent").inc()
        LAST_SENT.labels(entry.id).set_to_current_time()

    return fire


def build_scheduler(
    settings: Settings, broker: dramatiq.Broker, schedule: Sequence[ScheduleEntry] = SCHEDULE
) -> BlockingScheduler:
    # coalesce + max_instances=1: after a pause (Redis down, host asleep) each task fires once,
    # not once per missed tick; misfire_grace_time=None: late is better than skipped.
    scheduler = BlockingScheduler(
        timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
    )
    for entry in schedule:
        # APScheduler reads next_run_time=None as "paused": leave it out unless running at start.
        start: dict[str, Any] = {"next_run_time": datetime.now(UTC)} if entry.run_at_start else {}
        scheduler.add_job(
            _counted(entry),
            entry.trigger(settings),
            args=[broker],
            id=entry.id,
            name=entry.id,
            coalesce=True,
            max_instances=1,
            **start,
        )
    return scheduler


def run_scheduler(settings: Settings) -> None:
    """Run the schedule until SIGTERM/SIGINT, then shut down cleanly and return."""
    settings.check()
    configure_logging(settings.log_level, json=settings.log_json, process="scheduler")
    # APScheduler logs two INFO lines per run: every few seconds, forever. Failures still show.
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    broker = create_broker(settings.require_redis_url())
    scheduler = build_scheduler(settings, broker)
    serve_metrics(settings, "scheduler")
    with stop_on_signals() as stop:
        # start() blocks its thread, so it gets a thread of its own: the main thread waits for
        # the signal and calls shutdown() outside the signal handler (see stop_on_signals).
        thread = threading.Thread(target=scheduler.start, name="scheduler", daemon=True)
        thread.start()
        log.info("scheduler running: %s", ", ".join(entry.id for entry in SCHEDULE))
        try:
            while not stop and thread.is_alive():
                thread.join(SHUTDOWN_POLL_SECONDS)
            if not stop:
                raise RuntimeError("the scheduler thread stopped on its own; see its traceback above")
        finally:
            while thread.is_alive():
                if scheduler.running:
                    scheduler.shutdown(wait=True)  # lets an enqueue in flight finish
                thread.join(SHUTDOWN_POLL_SECONDS)
            close_broker(broker)
    log.info("scheduler stopped")
