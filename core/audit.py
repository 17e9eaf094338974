"""The audit event store: every state change appends an event in the same transaction.

Events are hash-chained per aggregate: ``hash = SHA-256(canonical JSON of the event + prev_hash)``,
so an auditor can verify an export offline. ``seq`` is gap-free per aggregate: it is assigned
under a transaction-scoped advisory lock on the aggregate (``core.db.advisory_lock``'s, taken by
``audit_append()``), and a unique constraint backs it.
The table refuses UPDATE and DELETE (a trigger, in the migration).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base
from core.time import rfc3339, utcnow

GENESIS = "0" * 64


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (UniqueConstraint("aggregate_type", "aggregate_id", "seq", name="uq_audit_events_aggregate_seq"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    aggregate_type: Mapped[str] = mapped_column(String(40))
    aggregate_id: Mapped[str] = mapped_column(String(80))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(80))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    actor: Mapped[str | None] = mapped_column(String(120))
    occurred_at: Mapped[datetime]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


# --- observers: a higher layer hears every appended event, inside the appending transaction -------

# ``observer(session, aggregate_type, aggregate_id, type, data)``, awaited right after the event's
# insert: what it writes commits or rolls back with the change (the webhooks outbox, installed by
# cli.registry). ``data`` is the event's data as stored (plain JSON).
Observer = Callable[[AsyncSession, str, str, str, dict[str, Any]], Awaitable[None]]

_observers: list[Observer] = []


def install_observer(observer: Observer) -> None:
    """Called once at process start by the process wiring; installing the same observer again changes nothing."""
    if observer not in _observers:
        _observers.append(observer)


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def event_hash(event: dict[str, Any], prev_hash: str) -> str:
    """The chain link: what an offline verifier recomputes from an export."""
    body = {key: event[key] for key in ("aggregate_type", "aggregate_id", "seq", "type", "data", "actor", "occurred_at")}
    return hashlib.sha256(canonical(body) + prev_hash.encode()).hexdigest()


def as_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "seq": event.seq,
        "type": event.type,
        "data": event.data,
        "actor": event.actor,
        "occurred_at": rfc3339(event.occurred_at),
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


async def append(
    session: AsyncSession,
    aggregate_type: str,
    aggregate_id: uuid.UUID | str,
    type: str,
    data: dict[str, Any] | None = None,
    *,
    actor: uuid.UUID | str | None = None,
) -> None:
    """Append one event to the aggregate's chain, in the caller's transaction.

    ``data`` must never hold secrets (passwords, tokens, TOTP secrets, keys): events are exported.
    """
    aggregate = str(aggregate_id)
    # Microseconds are what PostgreSQL keeps: hash exactly what will be read back.
    occurred_at = utcnow()
    document = canonical(data or {})
    event = {
        "aggregate_type": aggregate_type,
        "aggregate_id": aggregate,
        "type": type,
        "data": json.loads(document),
        "actor": None if actor is None else str(actor),
        "occurred_at": rfc3339(occurred_at),
    }
    head, tail = hashed_around_seq(event)
    # One round trip: audit_append() (migration 0033) takes the aggregate's advisory lock, then, in
    # a statement of its own (a fresh snapshot under READ COMMITTED, which sees every event
    # committed by whoever held the lock before us), reads the last seq and hash and inserts.
    await session.execute(_APPEND, {"aggregate_type": aggregate_type, "aggregate_id": aggregate, "type": type,
                                    "data": document.decode(), "actor": event["actor"], "occurred_at": occurred_at,
                                    "genesis": GENESIS, "head": head, "tail": tail})
    for observer in _observers:
        await observer(session, aggregate_type, aggregate, type, event["data"])


def hashed_around_seq(event: dict[str, Any]) -> tuple[bytes, bytes]:
    """What ``event_hash`` hashes before and after the value of ``seq``, for an event without one:
    ``head + str(seq).encode() + tail + prev_hash`` is the hashed text. Canonical JSON sorts its
    keys, and "seq" and "type" sort last."""
    body = {key: event[key] for key in ("aggregate_type", "aggregate_id", "data", "actor", "occurred_at")}
    return canonical(body)[:-1] + b',"seq":', b',"type":' + canonical(event["type"]) + b"}"


_APPEND = text(
    "SELECT audit_append(:aggregate_type, :aggregate_id, :type, CAST(:data AS jsonb), :actor, :occurred_at, :genesis,"
    " :head, :tail)"
)


async def events_of(session: AsyncSession, aggregate_type: str, aggregate_id: uuid.UUID | str) -> list[AuditEvent]:
    result = await session.scalars(
        select(AuditEvent)
        .where(AuditEvent.aggregate_type == aggregate_type, AuditEvent.aggregate_id == str(aggregate_id))
        .order_by(AuditEvent.seq)
    )
    return list(result)


def verify_chain(events: list[dict[str, Any]]) -> list[str]:
    """Problems found in one aggregate's exported chain (empty when it verifies)."""
    problems = []
    prev_hash = GENESIS
    for expected_seq, event in enumerate(events, start=1):
        if event["seq"] != expected_seq:
            problems.append(f"seq {event['seq']}: expected {expected_seq}")
        if event["prev_hash"] != prev_hash:
            problems.append(f"seq {event['seq']}: prev_hash does not match the previous event")
        if event_hash(event, event["prev_hash"]) != event["hash"]:
            problems.append(f"seq {event['seq']}: hash does not match its content")
        prev_hash = event["hash"]
    return problems


async def append_first(
    session: AsyncSession,
    aggregate_type: str,
    events: list[tuple[uuid.UUID, str, dict[str, Any]]],
    *,
    actor: uuid.UUID | str | None = None,
) -> None:
    """The first event of many aggregates created in this very transaction, in one INSERT.

    For ids this transaction just made (a batch of deposits a scanner found): no other transaction
    can append to an aggregate that is not committed yet, so seq 1 needs no lock (the unique
    constraint still backs it). Every other case is ``append``.
    """
    if not events:
        return
    occurred_at = utcnow()
    ids, types, documents, hashes = [], [], [], []
    for aggregate_id, type, data in events:
        document = canonical(data or {})
        event = {
            "aggregate_type": aggregate_type,
            "aggregate_id": str(aggregate_id),
            "seq": 1,
            "type": type,
            "data": json.loads(document),
            "actor": None if actor is None else str(actor),
            "occurred_at": rfc3339(occurred_at),
        }
        ids.append(event["aggregate_id"])
        types.append(type)
        documents.append(document.decode())
        hashes.append(event_hash(event, GENESIS))
    # One statement over arrays: its text never changes, so it is prepared once per connection.
    await session.execute(_INSERT_FIRST, {"aggregate_type": aggregate_type, "actor": None if actor is None else str(actor),
                                          "occurred_at": occurred_at, "genesis": GENESIS, "ids": ids, "types": types,
                                          "documents": documents, "hashes": hashes})
    for observer in _observers:
        for aggregate, event_type, document in zip(ids, types, documents, strict=True):
            await observer(session, aggregate_type, aggregate, event_type, json.loads(document))


_INSERT_FIRST = text(
    "INSERT INTO audit_events (aggregate_type, aggregate_id, seq, type, data, actor, occurred_at, prev_hash, hash)"
    " SELECT :aggregate_type, x.aggregate_id, 1, x.type, CAST(x.document AS jsonb), :actor, :occurred_at, :genesis,"
    " x.hash FROM unnest(CAST(:ids AS varchar[]), CAST(:types AS varchar[]), CAST(:documents AS text[]),"
    " CAST(:hashes AS varchar[])) AS x(aggregate_id, type, document, hash)"
)


# --- projections: each domain registers how to rebuild its aggregate from these events ----------

State = dict[str, Any]
Reducer = Callable[[State | None, dict[str, Any]], State | None]
Loader = Callable[[AsyncSession, str], Awaitable[State | None]]


@dataclass(frozen=True)
class Projection:
    """How an aggregate's current-state row folds out of its events (``reduce``) and how the row
    stored today reads (``load``), in the same shape, so a replay can name any drift."""

    reduce: Reducer
    load: Loader


_projections: dict[str, Projection] = {}


def register_projection(aggregate_type: str, reduce: Reducer, load: Loader) -> None:
    """Called by the domain that owns ``aggregate_type``, next to its fold (``<domain>/projection.py``)."""
    if aggregate_type in _projections:
        raise ValueError(f"aggregate type {aggregate_type!r} has a projection already")
    _projections[aggregate_type] = Projection(reduce, load)


def projection(aggregate_type: str) -> Projection | None:
    return _projections.get(aggregate_type)


def projected_types() -> list[str]:
    return sorted(_projections)


async def stored_row(session: AsyncSession, model: type[Any], aggregate_id: str) -> Any | None:
    """The current-state row of an aggregate for its projection's loader; None for an id that is not a UUID."""
    try:
        key = uuid.UUID(aggregate_id)
    except ValueError:
        return None
    return await session.get(model, key)
