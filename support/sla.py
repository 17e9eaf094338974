"""SLA due times in business time: one pure function, one packaged policy (``sla_policy.json``).

The policy is data. As shipped:

- business hours are Monday–Friday 09:00–18:00 UTC (9 hours a day), with a ``holidays`` list of
  ISO dates (empty as shipped) that count as closed days;
- targets are counted in working hours of the priority's calendar:

  ========  ==============  ===============  ==========
  priority  first response  resolution       calendar
  ========  ==============  ===============  ==========
  low       18 h (2 days)   90 h (10 days)   business
  normal    9 h (1 day)     45 h (5 days)    business
  high      4 h             18 h (2 days)    business
  urgent    1 h             8 h              always (24/7)
  ========  ==============  ===============  ==========

  Urgent runs around the clock: a stuck withdrawal does not wait for Monday morning.

- the clock runs only while a ticket is ``open`` or ``in_progress``: waiting on the customer
  (``pending_customer``) and ``resolved`` pause it. A pause shifts both due times by the working
  time it covered — a pause at night or over a weekend shifts nothing for a business-hours
  ticket.

``due_times`` is what tickets store and what ``POST /platform/helpdesk/sla`` previews: the two
can never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from importlib import resources
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, model_validator

Priority = Literal["low", "normal", "high", "urgent"]
PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high", "urgent")
Interval = tuple[datetime, datetime]

# A bound on the search for working time: a policy whose calendar never opens (every weekday a
# holiday) fails loudly instead of looping forever.
MAX_DAYS = 366 * 20


class BusinessHours(BaseModel):
    timezone: str = "UTC"
    weekdays: frozenset[int] = Field(min_length=1)  # Monday is 0
    start: time
    end: time
    holidays: frozenset[date] = frozenset()

    @model_validator(mode="after")
    def _sane(self) -> BusinessHours:
        if not self.start < self.end:
            raise ValueError("business hours must start before they end (overnight shifts are not supported)")
        if not self.weekdays <= set(range(7)):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        ZoneInfo(self.timezone)  # an unknown zone fails at load, not on the first ticket
        return self


class Target(BaseModel):
    first_response_hours: float = Field(gt=0)
    resolution_hours: float = Field(gt=0)
    calendar: Literal["business", "always"]


class Policy(BaseModel):
    business_hours: BusinessHours
    priorities: dict[Priority, Target]

    @model_validator(mode="after")
    def _every_priority(self) -> Policy:
        missing = set(PRIORITIES) - set(self.priorities)
        if missing:
            raise ValueError(f"the SLA policy has no target for {sorted(missing)}")
        return self


@dataclass(frozen=True)
class SlaDue:
    first_response_due: datetime
    resolution_due: datetime


@cache
def packaged_policy() -> Policy:
    text = resources.files(__package__).joinpath("sla_policy.json").read_text(encoding="utf-8")
    return Policy.model_validate(json.loads(text))


def due_times(
    priority: str, created_at: datetime, paused: Sequence[Interval] = (), policy: Policy | None = None
) -> SlaDue:
    """When the first response and the resolution are due, in the priority's working time.

    ``paused`` are closed intervals ``(start, end)`` during which the clock stood still; they may
    overlap or lie outside working hours. Every datetime must be timezone-aware; results are UTC.
    """
    policy = policy or packaged_policy()
    if priority not in policy.priorities:
        raise ValueError(f"unknown priority {priority!r}; priorities are {', '.join(PRIORITIES)}")
    target = policy.priorities[priority]  # type: ignore[index]
    start = _utc(created_at)
    pauses = _merged(paused)
    windows = _business_windows if target.calendar == "business" else _always_windows

    def due(hours: float) -> datetime:
        return _add_working_time(start, timedelta(hours=hours), windows(start, policy.business_hours), pauses)

    return SlaDue(due(target.first_response_hours), due(target.resolution_hours))


def calendar_of(priority: str, policy: Policy | None = None) -> str:
    policy = policy or packaged_policy()
    return policy.priorities[priority].calendar  # type: ignore[index]


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("SLA times must be timezone-aware")
    return moment.astimezone(UTC)


def _merged(paused: Iterable[Interval]) -> list[Interval]:
    intervals = sorted((_utc(start), _utc(end)) for start, end in paused)
    merged: list[Interval] = []
    for start, end in intervals:
        if end < start:
            raise ValueError(f"a pause ends ({end.isoformat()}) before it starts ({start.isoformat()})")
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _business_windows(since: datetime, hours: BusinessHours) -> Iterator[Interval]:
    """The open hours from ``since`` on, in order, the first one clipped to start at ``since``."""
    zone = ZoneInfo(hours.timezone)
    first_day = since.astimezone(zone).date()
    for offset in range(MAX_DAYS):
        day = first_day + timedelta(days=offset)
        if day.weekday() not in hours.weekdays or day in hours.holidays:
            continue
        opens = datetime.combine(day, hours.start, zone).astimezone(UTC)
        closes = datetime.combine(day, hours.end, zone).astimezone(UTC)
        if closes > since:
            yield max(opens, since), closes
    raise ValueError(f"the business calendar has no open hours within {MAX_DAYS} days")


def _always_windows(since: datetime, hours: BusinessHours) -> Iterator[Interval]:
    for offset in range(MAX_DAYS):
        yield since + timedelta(days=offset), since + timedelta(days=offset + 1)
    raise ValueError(f"no working time within {MAX_DAYS} days")


def _without_pauses(window: Interval, pauses: list[Interval]) -> Iterator[Interval]:
    start, end = window
    for pause_start, pause_end in pauses:
        if pause_end <= start:
            continue
        if pause_start >= end:
            break
        if pause_start > start:
            yield start, pause_start
        start = max(start, pause_end)
        if start >= end:
            return
    yield start, end


def _add_working_time(since: datetime, span: timedelta, windows: Iterator[Interval], pauses: list[Interval]) -> datetime:
    remaining = span
    for window in windows:
        for start, end in _without_pauses(window, pauses):
            # A target that ends exactly at closing time is due at closing time, not next morning.
            if end - start >= remaining:
                return start + remaining
            remaining -= end - start
    raise AssertionError("unreachable: the window generators raise when they run out")
