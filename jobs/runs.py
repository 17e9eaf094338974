"""Which period of each scheduled entry has been fired: one row per ``(job, period)``.

A period is the time the entry's trigger was due (the latest fire time at or before now), the same
on every scheduler replica. The leader claims the row before it sends; a claim that finds the row
already there means the period was fired (by this replica or one before a failover) and nothing is
sent again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import DateTime, String, bindparam, func, text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base

# Interval triggers count from here, so every replica's ticks (and periods) fall at the same times.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# How far back a trigger's last fire time is looked for, widened in turn: an hourly cron is found in
# the first window, a daily one in the second.
_LOOKBACK = (timedelta(hours=1), timedelta(days=1), timedelta(days=32), timedelta(days=367))


class ScheduledRun(Base):
    __tablename__ = "scheduled_runs"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[datetime] = mapped_column(primary_key=True)
    fired_at: Mapped[datetime] = mapped_column(server_default=func.now())
    fired_by: Mapped[str] = mapped_column(String(128))


def every(**interval: float) -> IntervalTrigger:
    """An interval trigger aligned on the epoch: ``every(seconds=5)`` fires at :00, :05, … everywhere."""
    return IntervalTrigger(**interval, start_date=EPOCH, timezone=UTC)


def period_of(trigger: BaseTrigger, now: datetime) -> datetime:
    """The latest time at or before ``now`` when ``trigger`` was due."""
    if isinstance(trigger, IntervalTrigger):
        return trigger.start_date + (now - trigger.start_date) // trigger.interval * trigger.interval
    for lookback in _LOOKBACK:
        latest = None
        due = trigger.get_next_fire_time(None, now - lookback)
        while due is not None and due <= now:
            latest = due
            due = trigger.get_next_fire_time(due, due + timedelta(microseconds=1))
        if latest is not None:
            return latest
    raise ValueError(f"{trigger} was not due in the last year: no period to record")


# Claim the row of (job, period): one row back when this claim wrote it, none when it was there.
# The same statement drops that entry's rows an hour older than the new one: a period that old is
# never due again (replicas' clocks are not an hour apart), and a heartbeat every few seconds would
# otherwise leave millions of rows behind.
CLAIM = text("""
    WITH claimed AS (
        INSERT INTO scheduled_runs (job, period, fired_by) VALUES (:job, :period, :fired_by)
        ON CONFLICT (job, period) DO NOTHING
        RETURNING job, period
    ), pruned AS (
        DELETE FROM scheduled_runs AS old USING claimed
        WHERE old.job = claimed.job AND old.period < claimed.period - interval '1 hour'
    )
    SELECT job FROM claimed
""").bindparams(bindparam("period", type_=DateTime(timezone=True)))
