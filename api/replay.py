"""Audit export and projection replay: rebuild an aggregate from its events, compare to the row."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from identity.projection import reduce_user, stored_user
from support.projection import reduce_ticket, stored_ticket
from compliance.projections import (
    reduce_kyc_case,
    reduce_transaction_review,
    reduce_travel_rule,
    stored_kyc_case,
    stored_transaction_review,
    stored_travel_rule,
)
from core import audit
from core.errors import InvalidInput, NotFound

Reducer = Callable[[dict[str, Any] | None, dict[str, Any]], dict[str, Any] | None]
Loader = Callable[[AsyncSession, str], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class Projection:
    reduce: Reducer
    load: Loader


# One entry per aggregate with a current-state table; later domains add theirs here.
PROJECTIONS: dict[str, Projection] = {
    "user": Projection(reduce_user, stored_user),
    "ticket": Projection(reduce_ticket, stored_ticket),
    "kyc_case": Projection(reduce_kyc_case, stored_kyc_case),
    "transaction_review": Projection(reduce_transaction_review, stored_transaction_review),
    "travel_rule": Projection(reduce_travel_rule, stored_travel_rule),
}


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
    projection = PROJECTIONS.get(aggregate_type)
    if projection is None:
        raise InvalidInput("No projection is defined for this aggregate type.", code="unknown_aggregate_type",
                           details={"known": sorted(PROJECTIONS)})
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
