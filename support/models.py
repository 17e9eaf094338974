"""Helpdesk tables: tickets, their public messages, SLA pauses, internal notes and context links.

Internal notes live in a table of their own, not as a flagged message: the customer-facing
queries never touch that table, so no forgotten ``WHERE internal = false`` can leak one.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, TimestampMixin


class Ticket(IdMixin, TimestampMixin, Base):
    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint("state IN ('open', 'in_progress', 'pending_customer', 'resolved', 'closed')",
                        name="state_known"),
        CheckConstraint("priority IN ('low', 'normal', 'high', 'urgent')", name="priority_known"),
        Index("ix_tickets_created_at_id", "created_at", "id"),
        Index("ix_tickets_state", "state"),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    # The first staff member to take the ticket (first public reply or move); breach alerts go here.
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    subject: Mapped[str] = mapped_column(String(200))
    category: Mapped[str | None] = mapped_column(String(40))
    priority: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(20))
    # Computed by sla.due_times from created_at and the closed pauses; recomputed when a pause ends.
    first_response_due: Mapped[datetime]
    resolution_due: Mapped[datetime]
    paused_since: Mapped[datetime | None]  # the open pause, while the clock stands still
    first_responded_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    first_response_breached_at: Mapped[datetime | None]
    resolution_breached_at: Mapped[datetime | None]


class TicketMessage(IdMixin, Base):
    """A public message: what the customer sees (their own words and staff replies)."""

    __tablename__ = "ticket_messages"

    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id"), index=True)
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    from_staff: Mapped[bool]
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class TicketSlaPause(IdMixin, Base):
    """A closed interval during which the ticket's SLA clock stood still."""

    __tablename__ = "ticket_sla_pauses"
    __table_args__ = (CheckConstraint("ended_at >= started_at", name="ordered"),)

    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id"), index=True)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]


class TicketInternalNote(IdMixin, Base):
    """Staff-only: never in a customer's response, list, notification or email."""

    __tablename__ = "ticket_internal_notes"

    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id"), index=True)
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class TicketContextLink(IdMixin, Base):
    """Staff-only: what the ticket is about (an escrow, a withdrawal, a user, a URL)."""

    __tablename__ = "ticket_context_links"
    __table_args__ = (UniqueConstraint("ticket_id", "kind", "ref", name="uq_ticket_context_links_ticket_kind_ref"),)

    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    ref: Mapped[str] = mapped_column(String(2048))
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
