"""SLA due times against hand-computed cases (Mon–Fri 09:00–18:00 UTC; urgent 24/7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.sla import PRIORITIES, Policy, SlaDue, calendar_of, due_times, packaged_policy

# 2026-03-02 is a Monday.
MON, TUE, WED, FRI, SAT, SUN = 2, 3, 4, 6, 7, 8


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def test_the_calendar_is_what_the_test_assumes() -> None:
    assert at(MON, 9).weekday() == 0 and at(FRI, 9).weekday() == 4 and at(SAT, 9).weekday() == 5


def test_friday_17h_with_a_4_hour_target_is_due_monday_noon() -> None:
    # high: first response 4 business hours: Fri 17–18 (1 h), Mon 09–12 (3 h).
    # resolution 18 h: Fri 1 h, Mon 9 h, Tue 09–17 (8 h).
    assert due_times("high", at(FRI, 17)) == SlaDue(at(MON + 7, 12), at(TUE + 7, 17))


def test_created_at_night_starts_counting_next_morning() -> None:
    assert due_times("high", at(TUE, 22)).first_response_due == at(WED, 13)
    assert due_times("high", at(WED, 3, 30)).first_response_due == at(WED, 13)


def test_a_target_ending_at_closing_time_is_due_at_closing_time() -> None:
    # normal: 9 h = one business day; created before opening → due the same day at 18:00, not next morning.
    assert due_times("normal", at(WED, 7)).first_response_due == at(WED, 18)


def test_created_at_closing_time_starts_next_business_day() -> None:
    assert due_times("high", at(FRI, 18)).first_response_due == at(MON + 7, 13)


def test_created_over_the_weekend_starts_on_monday() -> None:
    assert due_times("high", at(SAT, 10)).first_response_due == at(MON + 7, 13)
    assert due_times("high", at(SUN, 23, 59)).first_response_due == at(MON + 7, 13)


def test_targets_span_weekends() -> None:
    # normal resolution 45 h = five business days: Wed 12:00 → Wed 12:00 a week later.
    assert due_times("normal", at(WED, 12)).resolution_due == at(WED + 7, 12)
    # low: 18 h first response = two business days; Thursday 15:00 → Monday 15:00.
    assert due_times("low", at(5, 15)).first_response_due == at(MON + 7, 15)


def test_a_pause_inside_business_hours_shifts_by_its_length() -> None:
    created = at(MON, 9)
    assert due_times("high", created).first_response_due == at(MON, 13)
    assert due_times("high", created, [(at(MON, 10), at(MON, 11))]).first_response_due == at(MON, 14)


def test_a_pause_across_closing_time_shifts_by_the_business_time_it_covers() -> None:
    # Unpaused: Mon 16–18 (2 h) + Tue 09–11 → Tue 11:00.
    # Paused Mon 17:00 → Tue 10:00 covers 2 business hours: Mon 16–17, Tue 10–13 → Tue 13:00.
    created = at(MON, 16)
    assert due_times("high", created).first_response_due == at(TUE, 11)
    assert due_times("high", created, [(at(MON, 17), at(TUE, 10))]).first_response_due == at(TUE, 13)


def test_a_pause_outside_business_hours_shifts_nothing() -> None:
    created = at(FRI, 15)
    unpaused = due_times("high", created)
    assert due_times("high", created, [(at(SAT, 10), at(SUN, 20)), (at(FRI, 19), at(FRI, 23))]) == unpaused


def test_overlapping_pauses_count_once() -> None:
    created = at(MON, 9)
    pauses = [(at(MON, 10, 30), at(MON, 11, 30)), (at(MON, 10), at(MON, 11))]
    assert due_times("high", created, pauses).first_response_due == at(MON, 14, 30)


def test_a_pause_before_creation_shifts_nothing() -> None:
    assert due_times("high", at(MON, 12), [(at(MON, 9), at(MON, 11))]) == due_times("high", at(MON, 12))


def test_a_pause_at_creation_delays_the_start() -> None:
    assert due_times("high", at(MON, 9), [(at(MON, 9), at(MON, 12))]).first_response_due == at(MON, 16)


def test_urgent_runs_around_the_clock() -> None:
    assert calendar_of("urgent") == "always"
    assert due_times("urgent", at(SAT, 23, 30)) == SlaDue(at(SUN, 0, 30), at(SUN, 7, 30))
    # and its pauses shift it by their whole length, night or day
    paused = due_times("urgent", at(SAT, 23, 30), [(at(SUN, 0), at(SUN, 0, 45))])
    assert paused == SlaDue(at(SUN, 1, 15), at(SUN, 8, 15))


def test_other_offsets_are_the_same_instant() -> None:
    plus_two = timezone(timedelta(hours=2))
    created = datetime(2026, 3, FRI, 19, 0, tzinfo=plus_two)  # = Friday 17:00 UTC
    due = due_times("high", created)
    assert due.first_response_due == at(MON + 7, 12) and due.first_response_due.tzinfo == UTC


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        due_times("high", datetime(2026, 3, 2, 9))
    with pytest.raises(ValueError, match="timezone-aware"):
        due_times("high", at(MON, 9), [(datetime(2026, 3, 2, 10), at(MON, 11))])


def test_a_pause_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="before it starts"):
        due_times("high", at(MON, 9), [(at(MON, 11), at(MON, 10))])


def test_unknown_priority_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown priority"):
        due_times("critical", at(MON, 9))


def test_holidays_are_closed_days() -> None:
    data = packaged_policy().model_dump()
    data["business_hours"]["holidays"] = [at(MON + 7, 0).date()]
    policy = Policy.model_validate(data)
    assert due_times("high", at(FRI, 17), policy=policy).first_response_due == at(TUE + 7, 12)


def test_the_packaged_policy_covers_every_priority_and_is_ordered() -> None:
    policy = packaged_policy()
    assert set(policy.priorities) == set(PRIORITIES)
    for target in policy.priorities.values():
        assert target.first_response_hours <= target.resolution_hours


def test_a_policy_whose_calendar_never_opens_is_refused() -> None:
    data = packaged_policy().model_dump()
    data["business_hours"]["start"], data["business_hours"]["end"] = "18:00", "09:00"
    with pytest.raises(ValueError, match="start before"):
        Policy.model_validate(data)


moments = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC))
pause_lists = st.lists(st.tuples(moments, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=9))),
                       max_size=5).map(lambda pauses: [(start, start + length) for start, length in pauses])


@given(priority=st.sampled_from(PRIORITIES), created=moments, pauses=pause_lists)
def test_pauses_never_bring_a_due_time_earlier(priority: str, created: datetime, pauses) -> None:
    plain, paused = due_times(priority, created), due_times(priority, created, pauses)
    assert created < plain.first_response_due <= plain.resolution_due
    assert paused.first_response_due >= plain.first_response_due
    assert paused.resolution_due >= plain.resolution_due


@given(created=moments, length=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)))
def test_around_the_clock_a_pause_from_creation_shifts_by_exactly_its_length(created: datetime, length) -> None:
    plain, paused = due_times("urgent", created), due_times("urgent", created, [(created, created + length)])
    assert paused == SlaDue(plain.first_response_due + length, plain.resolution_due + length)


@given(priority=st.sampled_from(["low", "normal", "high"]), created=moments,
       weeks=st.integers(min_value=0, max_value=3), start=st.integers(min_value=0, max_value=47),
       hours=st.integers(min_value=0, max_value=48))
def test_business_hours_pauses_over_a_weekend_shift_nothing(priority: str, created: datetime, weeks: int,
                                                            start: int, hours: int) -> None:
    saturday = (created + timedelta(days=(5 - created.weekday()) % 7 + 7 * weeks)).replace(hour=0, minute=0, second=0,
                                                                                        microsecond=0)
    pause_start = saturday + timedelta(hours=start)
    pause_end = min(pause_start + timedelta(hours=hours), saturday + timedelta(days=2))
    assert due_times(priority, created, [(pause_start, pause_end)]) == due_times(priority, created)
