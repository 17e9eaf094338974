"""CMS tables: documents per (kind, slug, locale), their immutable versions, the publication log,
and the outgoing email deliveries.

A document row is the projection: its workflow ``state`` (of its latest version), the latest
version number, and the version public reads return (``published_version``). Versions and
publications are append-only (triggers in the migration): history is evidence.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar, Literal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, TimestampMixin

Kind = Literal["legal", "help", "email", "landing"]
KINDS: tuple[Kind, ...] = ("legal", "help", "email", "landing")
DeliveryState = Literal["queued", "sent", "failed"]
DELIVERY_STATES: tuple[DeliveryState, ...] = ("queued", "sent", "failed")


class CmsDocument(IdMixin, TimestampMixin, Base):
    __tablename__ = "cms_documents"
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": True}  # timestamps come back with the write (no lazy load)
    __table_args__ = (
        UniqueConstraint("kind", "slug", "locale", name="uq_cms_documents_kind_slug_locale"),
        CheckConstraint("kind IN ('legal', 'help', 'email', 'landing')", name="kind_known"),
        CheckConstraint("state IN ('draft', 'in_review', 'approved', 'published', 'archived')", name="state_known"),
    )

    kind: Mapped[str] = mapped_column(String(20))
    slug: Mapped[str] = mapped_column(String(120))
    locale: Mapped[str] = mapped_column(String(35))
    state: Mapped[str] = mapped_column(String(20))
    current_version: Mapped[int] = mapped_column(Integer)
    published_version: Mapped[int | None] = mapped_column(Integer)
    published_at: Mapped[datetime | None]


class CmsVersion(IdMixin, Base):
    __tablename__ = "cms_versions"
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": True}
    __table_args__ = (UniqueConstraint("document_id", "version", name="uq_cms_versions_document_version"),)

    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cms_documents.id"))
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    # "metadata" is taken on declarative classes; the column keeps the API's name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB)
    source_version: Mapped[int | None] = mapped_column(Integer)  # set by a rollback: the version copied
    created_by: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class CmsPublication(IdMixin, Base):
    """Every time a version went public: what rollback may return to, and when each was live."""

    __tablename__ = "cms_publications"

    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cms_documents.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    published_at: Mapped[datetime] = mapped_column(server_default=func.now())
    published_by: Mapped[str | None] = mapped_column(String(120))
    skipped_review: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(String(500))


class EmailDelivery(IdMixin, TimestampMixin, Base):
    """One email to send: rendered when queued, so what was sent is what was previewed."""

    __tablename__ = "email_deliveries"
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": True}
    __table_args__ = (CheckConstraint("state IN ('queued', 'sent', 'failed')", name="state_known"),)

    template_slug: Mapped[str] = mapped_column(String(120))
    template_version: Mapped[int] = mapped_column(Integer)
    locale: Mapped[str] = mapped_column(String(35))
    purpose: Mapped[str] = mapped_column(String(20))  # test | product
    recipient: Mapped[str] = mapped_column(String(320))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    subject: Mapped[str] = mapped_column(String(255))
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    sent_at: Mapped[datetime | None]
    requested_by: Mapped[str | None] = mapped_column(String(120))
