"""Retry waits: exponential from the base, capped, with full jitter (a uniform draw below the ceiling)."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from notifications.webhooks.delivery import backoff

BASE = timedelta(seconds=30)
CAP = timedelta(hours=1)


@given(failures=st.integers(min_value=1, max_value=10_000), seed=st.integers(min_value=0, max_value=2**32))
def test_the_wait_is_never_negative_nor_above_the_capped_exponential(failures: int, seed: int) -> None:
    ceiling = min(CAP.total_seconds(), BASE.total_seconds() * 2 ** min(failures - 1, 100))
    wait = backoff(failures, BASE, CAP, random.Random(seed))
    assert timedelta(0) <= wait <= timedelta(seconds=ceiling)


def test_the_ceiling_doubles_per_failure_until_the_cap() -> None:
    rng = random.Random(7)
    for failures, ceiling in ((1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (50, 3600)):
        waits = [backoff(failures, BASE, CAP, rng).total_seconds() for _ in range(2000)]
        assert max(waits) <= ceiling
        # Full jitter: the draws cover the whole range, not a band near the ceiling.
        assert min(waits) < 0.05 * ceiling and max(waits) > 0.95 * ceiling, (failures, min(waits), max(waits))


def test_two_endpoints_failing_together_do_not_retry_together() -> None:
    rng = random.Random(11)
    assert len({backoff(3, BASE, CAP, rng) for _ in range(100)}) == 100
