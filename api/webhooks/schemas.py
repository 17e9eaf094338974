"""Request and response models of the webhook routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.time import utcnow
from notifications.webhooks.models import WebhookEndpoint
from notifications.webhooks.service import (
    Created,
    DeliveryItem,
    DeliveryPage,
    EndpointPage,
)

EventType = Annotated[str, Field(min_length=1, max_length=80, examples=["deposit.credited"])]
URL = "Absolute https URL (plain http and private addresses only where the platform allows them: devnet, tests)."
EVENTS = "Event types to receive (listed in this route's description), or `[\"*\"]` for all of them."


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000, description=URL, examples=["https://example.com/hooks/virtuoz"])
    events: list[EventType] = Field(min_length=1, max_length=100, description=EVENTS,
                                    examples=[["deposit.credited", "withdrawal.confirmed"]])
    description: str | None = Field(default=None, max_length=500, examples=["Ledger sync"])


class WebhookPatchIn(BaseModel):
    """Only the fields sent change; `description: null` clears it."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=1, max_length=2000, description=URL)
    events: list[EventType] | None = Field(default=None, min_length=1, max_length=100, description=EVENTS)
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = Field(default=None, description="true re-enables an endpoint the platform disabled "
                                                           "(and restarts its failure clock); false pauses it.")

    @field_validator("url", "events", "enabled", mode="before")
    @classmethod
    def _left_out_not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("leave the field out to keep it; it cannot be null")
        return value


class WebhookOut(BaseModel):
    """An endpoint; never its secret."""

    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None = Field(description="Why it is disabled: `disabled_by_owner`, or the platform's "
                                                    "reason after failing deliveries for too long.")
    failing_since: datetime | None = Field(description="The first failed attempt since the last delivered one.")
    previous_secret_expires_at: datetime | None = Field(
        description="After a rotation: until then deliveries also carry a signature with the previous secret.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> WebhookOut:
        expires = endpoint.previous_secret_expires_at
        return cls(id=endpoint.id, url=endpoint.url, events=list(endpoint.events), description=endpoint.description,
                   enabled=endpoint.enabled, disabled_reason=endpoint.disabled_reason,
                   failing_since=endpoint.failing_since,
                   previous_secret_expires_at=expires if expires is not None and expires > utcnow() else None,
                   created_at=endpoint.created_at, updated_at=endpoint.updated_at)


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(description="The signing secret (`whsec_…`): shown in this answer only. Keep it.")

    @classmethod
    def of_created(cls, created: Created) -> WebhookCreatedOut:
        return cls(**WebhookOut.of(created.endpoint).model_dump(), secret=created.secret)


class WebhookSecretOut(BaseModel):
    id: uuid.UUID
    secret: str = Field(description="The new signing secret, in force now: shown in this answer only.")
    previous_secret_expires_at: datetime | None = Field(
        description="Until then deliveries also carry a signature with the previous secret (null: not at all).")

    @classmethod
    def of(cls, rotated: Created) -> WebhookSecretOut:
        return cls(id=rotated.endpoint.id, secret=rotated.secret,
                   previous_secret_expires_at=rotated.endpoint.previous_secret_expires_at)


class WebhookListQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=500, description="`next_cursor` of the previous page.")


class WebhookListOut(BaseModel):
    items: list[WebhookOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: EndpointPage) -> WebhookListOut:
        return cls(items=[WebhookOut.of(endpoint) for endpoint in page.items], next_cursor=page.next_cursor)


class WebhookDeliveryQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=500, description="`next_cursor` of the previous page.")
    state: Literal["pending", "delivered", "failed"] | None = None


class WebhookDeliveryOut(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID = Field(description="The event's id, sent as `VirtuOZ-Event-Id` (the same on every retry "
                                            "and redelivery).")
    event_type: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None = Field(description="The HTTP status of the last attempt; null if none answered.")
    last_latency_ms: int | None
    last_error: str | None
    response_excerpt: str | None = Field(description="The start (at most 1 KB) of the last answer's body.")
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None = Field(description="While pending: when the next attempt is due.")
    finished_at: datetime | None

    @classmethod
    def of(cls, item: DeliveryItem) -> WebhookDeliveryOut:
        row = item.delivery
        return cls(id=row.id, event_id=row.event_id, event_type=item.event_type,
                   state=row.state,  # type: ignore[arg-type]
                   attempts=row.attempts, last_status_code=row.last_status_code, last_latency_ms=row.last_latency_ms,
                   last_error=row.last_error, response_excerpt=row.response_excerpt, created_at=row.created_at,
                   last_attempt_at=row.last_attempt_at,
                   next_attempt_at=row.next_attempt_at if row.state == "pending" else None,
                   finished_at=row.finished_at)


class WebhookDeliveryListOut(BaseModel):
    items: list[WebhookDeliveryOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: DeliveryPage) -> WebhookDeliveryListOut:
        return cls(items=[WebhookDeliveryOut.of(item) for item in page.items], next_cursor=page.next_cursor)
