"""Webhook tables: an integrator's endpoints, the outbox of events, and one delivery per (event, endpoint).

An event row and its deliveries are written in the transaction of the change they announce (next
to its audit event), so a rolled-back change sends nothing and a crash after the commit loses
nothing: the webhooks worker delivers from these rows, never from a queue message alone.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, TimestampMixin

DELIVERY_STATES = ("pending", "delivered", "failed")


class WebhookEndpoint(IdMixin, TimestampMixin, Base):
    """Where a user wants events sent, and the secret that signs them (sealed: HMAC needs it back)."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_user", "user_id"),)
    __mapper_args__ = {"eager_defaults": True}

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(ARRAY(String(80)))  # event types, or ["*"]
    description: Mapped[str | None] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    # After a rotation the old secret still signs (a second v1=) until it expires.
    previous_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_expires_at: Mapped[datetime | None]
    # The first failed attempt since the last success: failing for long enough disables the endpoint.
    failing_since: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(40))


class WebhookEvent(IdMixin, Base):
    """One announced change: ``id`` is the event id receivers see (``VirtuOZ-Event-Id``), on every retry."""

    __tablename__ = "webhook_events"

    type: Mapped[str] = mapped_column(String(80))
    # The resource the event is about (the audit aggregate): deliveries for one endpoint and resource go in order.
    resource_type: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[str] = mapped_column(String(80))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime]


class WebhookDelivery(IdMixin, Base):
    """One event to one endpoint: its attempts and where it stands."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="state_known"),
        Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=text("state = 'pending'")),
        Index("ix_webhook_deliveries_order", "endpoint_id", "resource_type", "resource_id", "position",
              postgresql_where=text("state = 'pending'")),
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at"),
    )

    # Creation order, strict: "the earlier event" of a resource is the lower position.
    position: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_events.id"))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    # Copied from the event, so the ordering index needs no join.
    resource_type: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[str] = mapped_column(String(80))
    state: Mapped[str] = mapped_column(String(12), default="pending", server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))
    next_attempt_at: Mapped[datetime]
    created_at: Mapped[datetime]
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(SmallInteger)
    last_latency_ms: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(300))
    response_excerpt: Mapped[str | None] = mapped_column(String(1024))  # at most 1 KB of the last answer's body
    finished_at: Mapped[datetime | None]
