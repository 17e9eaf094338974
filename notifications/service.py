"""Notifications to users: persisted per recipient, fanned out over Redis pub/sub after commit.

``seq`` is monotonic per user and assigned under a per-user lock held until commit, so a stream
that resumes from ``Last-Event-ID`` never skips an event committed out of order.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import (
    BigInteger,
    ForeignKey,
    String,
    UniqueConstraint,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, after_commit

PUBLISHER_INFO_KEY = "virtuoz.notifications.redis"
CHANNEL_PREFIX = "virtuoz:notifications:"


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("user_id", "seq", name="uq_notifications_user_seq"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(80))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


def channel(user_id: uuid.UUID | str) -> str:
    return f"{CHANNEL_PREFIX}{user_id}"


def bind_publisher(factory: async_sessionmaker[AsyncSession], redis: Redis) -> None:
    """Let sessions from ``factory`` publish notifications after commit."""
    factory.configure(info={**factory.kw.get("info", {}), PUBLISHER_INFO_KEY: redis})


def wire(notification: Notification) -> str:
    return json.dumps({"seq": notification.seq, "type": notification.type, "data": notification.data},
                      separators=(",", ":"))


async def notify(session: AsyncSession, user_id: uuid.UUID, type: str, data: dict[str, Any]) -> Notification:
    """Persist a notification for ``user_id``; it is published once the transaction commits.

    ``data`` is what the user may see: never internal notes, secrets or other users' data.
    """
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 1))"),
                          {"key": f"notifications:{user_id}"})
    last = await session.scalar(select(func.max(Notification.seq)).where(Notification.user_id == user_id))
    notification = Notification(user_id=user_id, seq=(last or 0) + 1, type=type, data=data)
    session.add(notification)
    await session.flush()
    redis = session.info.get(PUBLISHER_INFO_KEY)
    if redis is not None:  # a process without Redis still persists: streams replay from the table
        after_commit(session, redis.publish, channel(user_id), wire(notification))
    return notification


async def notify_many(session: AsyncSession, items: list[tuple[uuid.UUID, str, dict[str, Any]]]) -> None:
    """``notify`` for many notifications in three statements (a scanner's batch of deposits).

    The recipients' locks are taken in one statement, in one order (by key), so two batches never
    deadlock on each other; each user's notifications get consecutive seqs in ``items`` order.
    After the commit they are published in one Redis round trip.
    """
    if not items:
        return
    users = sorted({user_id for user_id, _, _ in items}, key=str)
    await session.execute(_LOCK_MANY, {"keys": sorted(f"notifications:{user_id}" for user_id in users)})
    last = dict((await session.execute(
        select(Notification.user_id, func.max(Notification.seq))
        .where(Notification.user_id.in_(users)).group_by(Notification.user_id))).all())
    seqs = []
    for user_id, _, _ in items:
        last[user_id] = seq = (last.get(user_id) or 0) + 1
        seqs.append(seq)
    documents = [json.dumps(data, separators=(",", ":")) for _, _, data in items]
    # One statement over arrays: its text never changes, so it is prepared once per connection.
    await session.execute(_INSERT_MANY, {"users": [user_id for user_id, _, _ in items], "seqs": seqs,
                                         "types": [type for _, type, _ in items], "documents": documents})
    redis = session.info.get(PUBLISHER_INFO_KEY)
    if redis is not None:
        after_commit(session, _publish_all, redis, [
            (channel(user_id), wire(Notification(seq=seq, type=type, data=data)))
            for (user_id, type, data), seq in zip(items, seqs, strict=True)])


async def _publish_all(redis: Redis, messages: list[tuple[str, str]]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for name, message in messages:
            pipe.publish(name, message)
        await pipe.execute()


_INSERT_MANY = text(
    "INSERT INTO notifications (user_id, seq, type, data)"
    " SELECT x.user_id, x.seq, x.type, CAST(x.document AS jsonb) FROM unnest(CAST(:users AS uuid[]),"
    " CAST(:seqs AS bigint[]), CAST(:types AS varchar[]), CAST(:documents AS text[])) AS x(user_id, seq, type, document)"
)
_LOCK_MANY = text("SELECT count(pg_advisory_xact_lock(hashtextextended(key, 1)))"
                  " FROM (SELECT unnest(CAST(:keys AS text[])) AS key ORDER BY 1) AS ordered")

async def since(session: AsyncSession, user_id: uuid.UUID, after_seq: int, limit: int = 500) -> list[Notification]:
    result = await session.scalars(
        select(Notification)
        .where(Notification.user_id == user_id, Notification.seq > after_seq)
        .order_by(Notification.seq)
        .limit(limit)
    )
    return list(result)
