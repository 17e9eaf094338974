"""Database access: the async engine, the one place that commits, and the column types.

Services take an ``AsyncSession`` and only ``flush()``. The boundary (the HTTP middleware or
the job wrapper) opens a unit of work, commits once, and only then runs what was buffered with
``after_commit`` — so no message is ever sent about a row that was rolled back.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import DateTime, MetaData, Numeric, event, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from core.errors import ServiceUnavailable
from core.time import utcnow

log = logging.getLogger(__name__)

AFTER_COMMIT = "virtuoz.after_commit"
ON_ROLLBACK = "virtuoz.on_rollback"


class Money(TypeDecorator[int]):
    """Integer minor units (wei, cents) as ``NUMERIC(78,0)``: 2**256 fits, a bigint does not."""

    impl = Numeric(78, 0)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Any) -> int | None:
        if value is not None and not isinstance(value, int):
            raise TypeError(f"money is an int of minor units, not {type(value).__name__}")
        return value

    def process_result_value(self, value: Any, dialect: Any) -> int | None:
        return None if value is None else int(value)


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True), uuid.UUID: UUID(as_uuid=True)}


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # Python-side on update: the new value stays on the object (a server-side one would expire it
    # and force a lazy load, which async sessions cannot do).
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=utcnow)


def async_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use asyncpg for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int | None = None, connect_timeout: float = 5.0,
                  server_settings: dict[str, str] | None = None, pre_ping: bool = True,
                  read_only: bool = False) -> AsyncEngine:
    """``max_overflow``: connections opened past ``pool_size`` when every pooled one is in use, and
    closed as soon as they are given back while the pool is full (default: as many as the pool).

    ``server_settings``: PostgreSQL settings of every connection of this engine (``SET`` at connect).

    ``pre_ping`` (daemons): every checkout first asks the server whether the connection still
    works, so after PostgreSQL restarts a stale pooled connection is replaced instead of failing
    the next unit of work. That question is three round trips (BEGIN, a ping, ROLLBACK) per
    checkout; the API turns it off and relies on ``_drop_closed_on_checkout`` and on retrying
    read-only requests instead (api.middleware).

    ``read_only``: the connections never open a transaction (autocommit: no BEGIN, no COMMIT, one
    round trip per statement) and PostgreSQL refuses every write on them
    (``default_transaction_read_only``), so nothing a read-only route runs can change the database,
    and a statement that failed on a dead connection can be run again on another.
    """
    connect_args: dict[str, Any] = {"timeout": connect_timeout, "command_timeout": 30}
    settings = dict(server_settings or {})
    options: dict[str, Any] = {}
    if read_only:
        # Each statement is its own transaction, as each already has its own snapshot under the
        # READ COMMITTED default: a read gives up no consistency it had inside BEGIN … COMMIT.
        settings["default_transaction_read_only"] = "on"
        options["isolation_level"] = "AUTOCOMMIT"
    if settings:
        connect_args["server_settings"] = settings
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_pre_ping=pre_ping,
        pool_timeout=connect_timeout,
        connect_args=connect_args,
        **options,
    )
    if not pre_ping:
        event.listen(engine.sync_engine.pool, "checkout", _drop_closed_on_checkout)
    return engine


def _drop_closed_on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Replace a pooled connection whose socket is already closed, without a round trip.

    A restarting PostgreSQL ends every connection (FATAL, then the socket closes) and asyncpg notes it
    as the event loop reads the close, long before the server is back: the checkout after a restart
    then gets a fresh connection, as pre-ping would give. A connection lost without a word (a network
    cut) still fails its first statement: ``connection_lost`` tells the caller, and the pool drops
    every connection older than that failure.
    """
    driver = record.driver_connection
    if driver is not None and driver.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


class DatabaseUnavailable(ServiceUnavailable):
    code, message = "database_unavailable", "The database cannot be reached for a moment; retry the request."


# What asyncpg raises when the server went away mid-statement (restart, failover, a cut
# connection): the statement's fate is the transaction's, which was rolled back, so a retry is safe.
_CONNECTION_LOST = (OSError, asyncpg.PostgresConnectionError, asyncpg.InternalClientError,
                    asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError)


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` is the connection to PostgreSQL failing rather than the statement: worth a
    503 and a retry, not a 500 and a page to the on-call engineer."""
    if isinstance(error, PoolTimeout):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, _CONNECTION_LOST):
            return True
        seen = seen.__cause__ or getattr(seen, "orig", None)
    return False


def connection_lost(error: BaseException) -> bool:
    """Whether ``error`` is a connection found dead under a statement (PostgreSQL restarted, a cut
    connection): SQLAlchemy has invalidated it, and with it every connection the pool handed out
    before, so a read run again gets a fresh one. Not a refused connection or an exhausted pool:
    running again then only waits as long once more."""
    return isinstance(error, DBAPIError) and error.connection_invalidated


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


async def advisory_lock(session: AsyncSession, key: str) -> None:
    """Wait for, then hold until the transaction ends, the lock named ``key``: serializes work on
    something no row stands for yet (a user's next allocation, an external id's first upsert)."""
    await session.execute(_ADVISORY_LOCK, {"key": key})


def after_commit(session: AsyncSession, callback: Callable[..., Awaitable[Any] | Any], *args: Any) -> None:
    """Run ``callback(*args)`` once the session's transaction has committed; dropped on rollback."""
    session.info.setdefault(AFTER_COMMIT, []).append((callback, args))


def on_rollback(session: AsyncSession, callback: Callable[..., Awaitable[Any] | Any], *args: Any) -> None:
    """Undo an outside effect (a file written before its row) if the transaction does not commit."""
    session.info.setdefault(ON_ROLLBACK, []).append((callback, args))


async def commit(session: AsyncSession) -> None:
    """Commit, then run the work buffered with ``after_commit``."""
    try:
        await session.commit()
    except BaseException:
        await rollback(session)
        raise
    session.info.pop(ON_ROLLBACK, None)
    await _run_callbacks(session, AFTER_COMMIT)


async def rollback(session: AsyncSession) -> None:
    session.info.pop(AFTER_COMMIT, None)
    await session.rollback()
    await _run_callbacks(session, ON_ROLLBACK)


async def _run_callbacks(session: AsyncSession, key: str) -> None:
    for callback, args in session.info.pop(key, []):
        try:
            result = callback(*args)
            if isinstance(result, Awaitable):
                await result
        except Exception:  # the transaction is settled: report, don't undo
            log.exception("%s callback %s failed", key, getattr(callback, "__name__", callback))


@asynccontextmanager
async def unit_of_work(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """Open a session, commit once when the block succeeds, then run the after-commit work."""
    async with factory() as session:
        try:
            yield session
        except BaseException:
            await rollback(session)
            raise
        await commit(session)
