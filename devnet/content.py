"""Starter CMS content for the devnet (api/cms/seed.py), created once and never overwritten."""

from __future__ import annotations

import asyncio

from content.seed import seed_content
from core.db import create_engine, session_factory, unit_of_work


async def _seed(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            return await seed_content(session)
    finally:
        await engine.dispose()


def ensure_demo_content(database_url: str) -> list[str]:
    return asyncio.run(_seed(database_url))
