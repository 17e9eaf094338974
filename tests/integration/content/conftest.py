"""Helpers for the CMS, email template and content preview tests (the CMS admin driver, ``cms``, is
in tests/integration/conftest.py: the email tests of notifications drive it too).

The database is shared by every test of a pytest worker and never cleaned, so every document gets
a unique slug.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text

from core import audit
from core.db import create_engine, session_factory

API = "/api/v1"
SUBJECT = "Escrow {{ escrow_title }} funded"
BODY = "Hello **{{ display_name }}**,\n\n{{ amount }} {{ currency }} are held for {{ escrow_title }}.\n"
VARIABLES = {"display_name": "Ada <Lovelace>", "amount": "8000.00", "currency": "USDC", "escrow_title": "Servers"}


def unique_slug(tag: str = "doc") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}"


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


async def email_template(cms, slug: str | None = None, *, publish: bool = False, subject: str = SUBJECT,
                         body: str = BODY) -> str:
    """An email template document (a draft, or published), its slug."""
    slug = slug or unique_slug("mail")
    await cms.draft("email", slug, title="Funded", body=body, metadata={"subject": subject})
    if publish:
        await cms.publish("email", slug, note="test template")
    return slug
