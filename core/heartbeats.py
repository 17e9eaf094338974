"""Liveness of background processes, written by the heartbeat job and read by `/readiness`.

A worker's heartbeat row is written by an actor that the scheduler enqueues: a fresh row proves
the whole path scheduler → Redis → worker → PostgreSQL, not just that a process exists.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class ServiceHeartbeat(Base):
    __tablename__ = "service_heartbeats"

    service: Mapped[str] = mapped_column(String(64), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(server_default=func.now())
    beats: Mapped[int] = mapped_column(default=1)


async def record_heartbeat(session: AsyncSession, service: str) -> None:
    statement = insert(ServiceHeartbeat).values(service=service, beat_at=func.now(), beats=1)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[ServiceHeartbeat.service],
            set_={"beat_at": func.now(), "beats": ServiceHeartbeat.beats + 1},
        )
    )


async def stale_services(session: AsyncSession, services: list[str], max_age: timedelta) -> list[str]:
    """The services among ``services`` with no heartbeat newer than ``max_age``."""
    if not services:
        return []
    fresh = await session.scalars(
        select(ServiceHeartbeat.service).where(
            ServiceHeartbeat.service.in_(services), ServiceHeartbeat.beat_at > func.now() - max_age
        )
    )
    alive = set(fresh)
    return [service for service in services if service not in alive]
