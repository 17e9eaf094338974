"""Audit export and projection replay: rebuild an aggregate from its events, compare to the row.

Which aggregates can be replayed is whatever the domains registered with
``core.audit.register_projection``; this module keeps no list of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import InvalidInput, NotFound


@dataclass(frozen=True)
class Replay:
    events: int
    chain_valid: bool
    problems: list[str]
    drift: list[dict[str, Any]]


async def export(session: AsyncSession, aggregate_type: str, aggregate_id: str) -> list[dict[str, Any]]:
    events = await audit.events_of(session, aggregate_type, aggregate_id)
    if not events:
        raise NotFound("No events for this aggregate.", code="aggregate_not_found")
    return [audit.as_dict(event) for event in events]


async def replay(session: AsyncSession, aggregate_type: str, aggregate_id: str) -> Replay:
    projection = audit.projection(aggregate_type)
    if projection is None:
        raise InvalidInput("No projection is defined for this aggregate type.", code="unknown_aggregate_type",
                           details={"known": audit.projected_types()})
    events = await export(session, aggregate_type, aggregate_id)
    state: dict[str, Any] | None = None
    for event in events:
        state = projection.reduce(state, event)
    stored = await projection.load(session, aggregate_id) or {}
    replayed = state or {}
    drift = [
        {"field": field, "stored": stored.get(field), "replayed": replayed.get(field)}
        for field in sorted(set(stored) | set(replayed))
        if stored.get(field) != replayed.get(field)
    ]
    problems = audit.verify_chain(events)
    return Replay(events=len(events), chain_valid=not problems, problems=problems, drift=drift)
