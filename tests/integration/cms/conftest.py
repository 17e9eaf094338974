"""Factories for the CMS, email and content-platform tests.

The database is shared by every test of a pytest worker and never cleaned, so every document gets
a unique slug. The route tables are mounted as extra routes until api/app.py lists them.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import text

from api.app import route_tables
from api.cms.routes import cms_admin, cms_public, email_templates
from api.i18n.routes import platform_content
from core import audit
from core.db import create_engine, session_factory
from core.settings import Settings
from devnet.processes import free_port
from devnet.smtp import start_smtp_server
from jobs.broker import close_broker, create_broker
from jobs.context import using_settings
from jobs.worker import start_worker

API = "/api/v1"
CMS_TABLES = (cms_public, cms_admin, email_templates, platform_content)


def missing_tables(settings: Settings) -> list:
    """The CMS tables api/app.py does not mount yet (none, once it does)."""
    root, v1 = route_tables(settings)
    return [table for table in CMS_TABLES if not any(table is mounted for mounted in [*root, *v1])]


def unique_slug(tag: str = "doc") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def cms_client(make_client, settings) -> TestClient:
    return await make_client(settings, extra_routes=missing_tables(settings))


@pytest.fixture
async def admin(cms_client, login_as):
    return await login_as(cms_client, "admin")


async def fetch_all(database_url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            return list(await connection.execute(text(sql), params))
    finally:
        await engine.dispose()


async def audit_types(database_url: str, document_id: str) -> list[str]:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            return [event.type for event in await audit.events_of(session, "cms_document", document_id)]
    finally:
        await engine.dispose()


async def poll(check: Callable[[], Awaitable[Any]], timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval)


# --- email: a real SMTP server writing a maildir, a real notifications worker --------------------

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


class Cms:
    """The admin routes, driven as an admin would."""

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers

    async def post(self, path: str, payload: dict[str, Any], *, status: int | None = None) -> Any:
        response = await self.client.post(f"{API}{path}", json=payload, headers=self.headers)
        body = await response.json()
        if status is not None:
            assert response.status == status, body
        return response.status, body

    async def draft(self, kind: str, slug: str, *, title: str = "Title", body: str = "Body", locale: str = "en",
                    metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        payload = {"title": title, "body": body, "locale": locale, "metadata": metadata or {}}
        return (await self.post(f"/admin/cms/{kind}/{slug}/draft", payload, status=201))[1]

    async def transition(self, kind: str, slug: str, to: str, *, locale: str = "en") -> tuple[int, dict[str, Any]]:
        return await self.post(f"/admin/cms/{kind}/{slug}/transition", {"to": to, "locale": locale})

    async def publish(self, kind: str, slug: str, **payload: Any) -> tuple[int, dict[str, Any]]:
        return await self.post(f"/admin/cms/{kind}/{slug}/publish", payload)

    async def rollback(self, kind: str, slug: str, version: int, **payload: Any) -> tuple[int, dict[str, Any]]:
        return await self.post(f"/admin/cms/{kind}/{slug}/rollback", {"version": version, **payload})

    async def document(self, kind: str, slug: str, *, locale: str = "en") -> dict[str, Any]:
        response = await self.client.get(f"{API}/admin/cms/{kind}/{slug}", params={"locale": locale},
                                         headers=self.headers)
        body = await response.json()
        assert response.status == 200, body
        return body

    async def drive_to(self, kind: str, slug: str, state: str, *, locale: str = "en") -> None:
        """From a fresh draft to ``state`` through legal moves."""
        path = {"draft": [], "in_review": ["in_review"], "approved": ["in_review", "approved"],
                "published": ["in_review", "approved", "published"],
                "archived": ["in_review", "approved", "published", "archived"]}[state]
        for step in path:
            status, body = await self.transition(kind, slug, step, locale=locale)
            assert status == 200, body

    async def published_doc(self, kind: str, slug: str, *, title: str = "Title", body: str = "Body",
                            locale: str = "en", metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        draft = await self.draft(kind, slug, title=title, body=body, locale=locale, metadata=metadata)
        await self.drive_to(kind, slug, "published", locale=locale)
        return draft


@pytest.fixture
async def cms(cms_client, admin) -> AsyncIterator[Cms]:
    yield Cms(cms_client, admin.headers)
