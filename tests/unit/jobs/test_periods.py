"""A scheduled entry's period: when its trigger was last due, the same on every replica."""

from __future__ import annotations

from datetime import UTC, datetime

from apscheduler.triggers.cron import CronTrigger

from jobs.runs import every, period_of

NOW = datetime(2030, 5, 4, 14, 7, 3, 250_000, tzinfo=UTC)


def test_an_interval_period_is_aligned_on_the_epoch_whenever_the_trigger_was_made() -> None:
    assert period_of(every(seconds=5), NOW) == datetime(2030, 5, 4, 14, 7, 0, tzinfo=UTC)
    assert period_of(every(minutes=1), NOW) == datetime(2030, 5, 4, 14, 7, tzinfo=UTC)
    assert period_of(every(hours=1), NOW) == datetime(2030, 5, 4, 14, tzinfo=UTC)
    assert period_of(every(seconds=1.5), NOW) == datetime(2030, 5, 4, 14, 7, 3, tzinfo=UTC)


def test_the_ticks_of_an_interval_fall_on_its_periods() -> None:
    due = every(seconds=7).get_next_fire_time(None, NOW)
    assert period_of(every(seconds=7), due) == due


def test_a_cron_period_is_its_latest_fire_time() -> None:
    daily = CronTrigger(hour=0, minute=15, timezone=UTC)
    assert period_of(daily, NOW) == datetime(2030, 5, 4, 0, 15, tzinfo=UTC)
    assert period_of(daily, datetime(2030, 5, 4, 0, 15, tzinfo=UTC)) == datetime(2030, 5, 4, 0, 15, tzinfo=UTC)
    assert period_of(daily, datetime(2030, 5, 4, 0, 14, tzinfo=UTC)) == datetime(2030, 5, 3, 0, 15, tzinfo=UTC)
    every_six_hours = CronTrigger(hour="*/6", minute=5, timezone=UTC)
    assert period_of(every_six_hours, NOW) == datetime(2030, 5, 4, 12, 5, tzinfo=UTC)
