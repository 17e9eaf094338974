"""What the e2e tests of single processes share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dramatiq.brokers.redis import RedisBroker

from jobs.broker import close_broker, create_broker


@pytest.fixture
def broker(redis_url: str) -> Iterator[RedisBroker]:
    """Sends on the default namespace, the one the processes under test consume; emptied around the test."""
    broker = create_broker(redis_url)
    broker.flush_all()
    yield broker
    broker.flush_all()
    close_broker(broker)
