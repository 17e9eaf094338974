"""Choosing large transactions: single, and the 24-hour aggregation (no database)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from compliance.prices import Conversion, major
from compliance.movements import Movement
from compliance.reporting.service import select_large

START = datetime(2001, 3, 1, tzinfo=UTC)


def movement(user: uuid.UUID, at: datetime, value: str, direction: str = "in") -> Movement:
    conversion = Conversion(Decimal(value), "USD", Decimal(value), "CAD", Decimal(1), uuid.uuid4(), START, "test")
    return Movement(uuid.uuid4(), f"ref-{uuid.uuid4()}", "deposit", None, at, user, "USD", Decimal(value), direction,
                    conversion)


def test_single_at_threshold_is_reported_below_is_not() -> None:
    user = uuid.uuid4()
    rows = [movement(user, START + timedelta(hours=1), "10000"), movement(user, START + timedelta(hours=30), "9999.99")]
    chosen = select_large(rows, START, Decimal(10000), 0)
    assert [(m, reason) for m, reason, _ in chosen] == [(rows[0], "single")]


def test_several_within_24_hours_are_aggregated_per_customer_and_direction() -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    rows = [
        movement(alice, START + timedelta(hours=1), "6000"),
        movement(bob, START + timedelta(hours=2), "6000"),  # another customer: not summed with alice
        movement(alice, START + timedelta(hours=3), "3000", "out"),  # another direction
        movement(alice, START + timedelta(hours=20), "4000"),  # 6000 + 4000 within 24 h
        movement(alice, START + timedelta(hours=50), "5000"),  # more than 24 h after both
    ]
    chosen = select_large(rows, START, Decimal(10000), 24)
    assert [(m, reason, total) for m, reason, total in chosen] == [
        (rows[0], "aggregated_24h", Decimal(10000)), (rows[3], "aggregated_24h", Decimal(10000))]
    assert select_large(rows, START, Decimal(10000), 0) == []


def test_the_window_looks_back_before_the_period_but_reports_only_inside_it() -> None:
    user = uuid.uuid4()
    rows = [movement(user, START - timedelta(hours=2), "7000"), movement(user, START + timedelta(hours=1), "3000")]
    chosen = select_large(rows, START, Decimal(10000), 24)
    assert [(m, total) for m, _, total in chosen] == [(rows[1], Decimal(10000))]


def test_major_is_exact() -> None:
    assert major(1_500_000_000_000_000_001, 18) == Decimal("1.500000000000000001")
    assert major(12345, 2) == Decimal("123.45")


def test_csv_cells_that_look_like_formulas_are_quoted_numbers_are_not() -> None:
    import csv
    import io

    from compliance.reporting.service import _csv

    content = _csv([{"a": '=HYPERLINK("x")', "b": "-12.50", "c": "@SUM(A1)", "d": "plain"}], ["a", "b", "c", "d"])
    assert list(csv.reader(io.StringIO(content.decode())))[1] == ["'=HYPERLINK(\"x\")", "-12.50", "'@SUM(A1)", "plain"]
