"""Alembic's environment: runs migrations over asyncpg.

This file is Alembic's script, not a module of `core`. The tables it compares against
(`alembic revision --autogenerate`) are those of the models imported before it runs:
`virtuoz migrate` loads every domain's through `cli.registry` first.
"""

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from core.db import Base, async_url

target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(async_url(context.config.get_main_option("sqlalchemy.url")))
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
