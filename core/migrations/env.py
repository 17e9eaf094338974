"""Alembic's environment: runs migrations over asyncpg.

This file is Alembic's script, not a module of `core`: it loads every domain's models by name
(MODEL_MODULES) so that `alembic revision --autogenerate` sees all tables.
"""

import asyncio
import importlib

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from core.db import Base, async_url

MODEL_MODULES = ["core.heartbeats", "core.audit", "notifications.service", "identity.models", "api.idempotency",
                 "support.models", "content.models", "custody.escrow.models",
                 "custody.ledger.models", "custody.addresses.models", "custody.deposits.models",
                 "custody.withdrawals.models", "custody.freezes",  # withdrawals (issue 8)
                 "compliance.models",  # compliance (issue 9)
                 "compliance.travel_rule.models"]  # Travel Rule transfers (issue 9)

for module in MODEL_MODULES:
    importlib.import_module(module)

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
