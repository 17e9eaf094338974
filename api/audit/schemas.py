"""Response models of the audit event export and replay routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class EventOut(BaseModel):
    aggregate_type: str
    aggregate_id: str
    seq: int
    type: str
    data: dict[str, Any]
    actor: str | None
    occurred_at: str
    prev_hash: str
    hash: str


class EventsOut(BaseModel):
    items: list[EventOut]


class DriftOut(BaseModel):
    field: str
    stored: Any
    replayed: Any


class ReplayOut(BaseModel):
    aggregate_type: str
    aggregate_id: str
    events: int
    chain_valid: bool
    chain_problems: list[str]
    drift: list[DriftOut]
