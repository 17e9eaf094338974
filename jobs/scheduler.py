"""`virtuoz scheduler`: the periodic work of the platform, as a list of entries.

The scheduler only enqueues Dramatiq messages; workers do the work. So a slow report never
delays a heartbeat.

It runs replicated: every replica ticks, only the one holding the lease sends (jobs.leadership),
and a standby takes over within ``scheduler_lease_seconds`` of the leader dying. Before it sends,
the leader records ``(entry, period)`` (jobs.runs), the period being when the trigger was due, so a
period is fired at most once, however leadership moved: a new leader fires at once what it skipped
while standing by, and a period its predecessor already fired is a no-op ("duplicate").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dramatiq
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from prometheus_client import Counter, Gauge

from core.logging import configure_logging
from core.metrics import serve_metrics
from core.settings import Settings
from core.time import utcnow
from jobs import registry
from jobs.broker import close_broker, create_broker
from jobs.heartbeat import enqueue_heartbeats
from jobs.leadership import Leadership
from jobs.runs import every, period_of
from jobs.worker import stop_on_signals

log = logging.getLogger(__name__)

SHUTDOWN_POLL_SECONDS = 0.2

RUNS = Counter("virtuoz_scheduler_runs_total", "Scheduled tasks fired, by task and outcome (sent: its messages "
               "are queued; failed: the broker refused them, the next tick tries again; duplicate: that period "
               "was fired already, by this replica or a leader before it).", ["task", "outcome"])
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
    return every(seconds=settings.heartbeat_interval_seconds)


def every_minute(settings: Settings) -> BaseTrigger:
    return every(minutes=1)


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
                  lambda settings: every(seconds=settings.helpdesk_breach_check_seconds)),
    # Withdrawals: receipts, confirmations, fee bumps and resends of lost messages.
    ScheduleEntry("withdrawal-tracking",
                  send("custody.track_withdrawals"),
                  lambda settings: every(seconds=settings.withdrawal_track_seconds)),
    # Treasury: deposit addresses holding at least the minimum swept to the hot wallet (planned every
    # interval), and the sweeps in flight driven (top-ups, signatures, broadcasts, confirmations).
    ScheduleEntry("treasury-sweeps",
                  send("treasury.find_sweeps"),
                  lambda settings: every(seconds=settings.sweep_interval_seconds), run_at_start=True),
    ScheduleEntry("treasury-sweep-tracking",
                  send("treasury.track_sweeps"),
                  lambda settings: every(seconds=settings.sweep_track_seconds)),
    # Treasury: each hot wallet against its floor and ceiling (a refill request below, the surplus to the
    # cold wallet above), and the tracking of those transfers and refills.
    ScheduleEntry("treasury-hot-levels",
                  send("treasury.check_levels"),
                  lambda settings: every(seconds=settings.treasury_check_seconds), run_at_start=True),
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
                  lambda settings: every(seconds=settings.compliance_rules_interval_seconds)),
    # Travel Rule transfers past their deadline (VIRTUOZ_TRAVEL_RULE_EXPIRY_HOURS after creation or
    # sending) expire, hourly.
    ScheduleEntry("travel-rule-expiry",
                  send("compliance.expire_travel_rule"),
                  lambda settings: every(hours=1)),
    # Webhooks: pending deliveries whose time has come (retries after their backoff, and messages lost
    # in a crash) are sent to the webhooks worker again.
    ScheduleEntry("webhook-dispatch",
                  send("webhooks.dispatch_due"),
                  lambda settings: every(seconds=settings.webhook_dispatch_seconds), run_at_start=True),
    # Proof of reserves: the day's epoch (Merkle sum trees of the liabilities, reserves on chain) at
    # 00:30 UTC, and at start; the day is the epoch's unique slot, so a restart or a redelivered
    # message builds nothing twice.
    ScheduleEntry("treasury-reserves",
                  send("treasury.build_reserves"),
                  lambda settings: CronTrigger(hour=0, minute=30, timezone=UTC), run_at_start=True),
]


def _counted(entry: ScheduleEntry, trigger: BaseTrigger, leadership: Leadership | None,
             clock: Callable[[], datetime], missed: Callable[[str], None]) -> Callable[[dramatiq.Broker], None]:
    def fire(broker: dramatiq.Broker) -> None:
        if leadership is not None:
            # At most once per period: the row is written first, so a crash between it and the send
            # loses that period rather than sending it twice. The next period is never far off, and
            # every job is idempotent and catches up on what the lost one would have done.
            claimed = leadership.claim(entry.id, period_of(trigger, clock()))
            if claimed is None:  # standing by: fired at once if this replica comes to lead
                missed(entry.id)
                return
            if not claimed:
                RUNS.labels(entry.id, "duplicate").inc()
                return
        try:
            entry.enqueue(broker)
        except Exception:
            RUNS.labels(entry.id, "failed").inc()
            raise  # APScheduler logs it
        RUNS.labels(entry.id, "sent").inc()
        LAST_SENT.labels(entry.id).set_to_current_time()

    return fire


def build_scheduler(
    settings: Settings, broker: dramatiq.Broker, schedule: Sequence[ScheduleEntry] = SCHEDULE,
    leadership: Leadership | None = None, clock: Callable[[], datetime] = utcnow,
) -> BlockingScheduler:
    """Without ``leadership`` every tick sends (tests drive entries by hand); with it, only the leader's."""
    # coalesce + max_instances=1: after a pause (Redis down, host asleep) each task fires once,
    # not once per missed tick; misfire_grace_time=None: late is better than skipped.
    scheduler = BlockingScheduler(
        timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
    )
    skipped: set[str] = set()
    skipped_lock = threading.Lock()

    def missed(entry_id: str) -> None:
        with skipped_lock:
            skipped.add(entry_id)

    def catch_up() -> None:
        # The period a dead leader may have missed (it died before its tick, the lease outlived it)
        # is fired late rather than never; one it did fire is a duplicate, skipped.
        with skipped_lock:
            due = sorted(skipped)
            skipped.clear()
        for entry_id in due:
            try:
                scheduler.modify_job(entry_id, next_run_time=datetime.now(UTC))
            except JobLookupError:  # the scheduler is shutting down
                pass

    if leadership is not None:
        leadership.on_lead = catch_up
    for entry in schedule:
        # APScheduler reads next_run_time=None as "paused": leave it out unless running at start.
        start: dict[str, Any] = {"next_run_time": datetime.now(UTC)} if entry.run_at_start else {}
        trigger = entry.trigger(settings)
        scheduler.add_job(
            _counted(entry, trigger, leadership, clock, missed),
            trigger,
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
    broker = create_broker(settings.require_redis_url(), broker_url=settings.broker_url)
    leadership = Leadership(settings.require_database_url(), settings.scheduler_lease_seconds)
    scheduler = build_scheduler(settings, broker, leadership=leadership)
    serve_metrics(settings, "scheduler")
    with stop_on_signals() as stop:
        leadership.start()
        # start() blocks its thread, so it gets a thread of its own: the main thread waits for
        # the signal and calls shutdown() outside the signal handler (see stop_on_signals).
        thread = threading.Thread(target=scheduler.start, name="scheduler", daemon=True)
        thread.start()
        log.info("scheduler running: %s", ", ".join(entry.id for entry in SCHEDULE))
        try:
            while not stop and thread.is_alive() and leadership.alive():
                thread.join(SHUTDOWN_POLL_SECONDS)
            if not stop:
                raise RuntimeError("the scheduler or its lease stopped on its own; see its traceback above")
        finally:
            while thread.is_alive():
                if scheduler.running:
                    scheduler.shutdown(wait=True)  # lets an enqueue in flight finish
                thread.join(SHUTDOWN_POLL_SECONDS)
            leadership.stop()  # after the last send: the standby leads from its next poll
            close_broker(broker)
    log.info("scheduler stopped")
