"""Fixtures for the email tests: a real SMTP server writing a maildir, a real notifications worker.

Templates are written through the CMS admin routes (the ``cms`` fixture of tests/integration/conftest.py).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from dramatiq.brokers.redis import RedisBroker

from devnet.processes import free_port
from devnet.smtp import start_smtp_server
from jobs.broker import close_broker, create_broker
from jobs.context import using_settings
from jobs.worker import start_worker
from tests.integration.content.conftest import fetch_all, poll


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    return tmp_path / "mail"


@pytest.fixture
def smtp_port(maildir: Path) -> Iterator[int]:
    port = free_port()
    controller = start_smtp_server("127.0.0.1", port, maildir)
    yield port
    controller.stop()


@pytest.fixture
def empty_notifications_queue(redis_url: str) -> Iterator[None]:
    """Leftovers of other tests on this pytest worker's Redis are not ours to run, and ours not theirs."""
    def flush() -> None:
        broker = create_broker(redis_url)
        broker.flush("notifications")
        close_broker(broker)

    flush()
    yield
    flush()


@asynccontextmanager
async def notifications_worker(redis_url: str, database_url: str, settings) -> AsyncIterator[RedisBroker]:
    """A real worker in this process, on the queue the API sends to, with ``settings`` for its jobs."""
    broker = create_broker(redis_url, database_url=database_url, database_pool_size=2)
    with using_settings(settings):
        worker = start_worker(broker, {"notifications"}, worker_threads=2)
        try:
            yield broker
        finally:
            await asyncio.to_thread(worker.stop, timeout=20_000)
            close_broker(broker)


async def delivery_row(database_url: str, delivery_id: str):
    rows = await fetch_all(database_url, "SELECT * FROM email_deliveries WHERE id = :id", id=delivery_id)
    return rows[0] if rows else None


async def settled(database_url: str, delivery_id: str):
    async def check():
        row = await delivery_row(database_url, delivery_id)
        return row if row is not None and row.state != "queued" else None

    row = await poll(check, timeout=45)
    assert row is not None, f"delivery {delivery_id} still queued"
    return row


def messages(maildir: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for path in sorted(maildir.glob("*.eml"))]
