"""Helpdesk request and response models.

A customer's models have no field for anything staff-only: the staff models extend them (breach
marks, assignee, internal notes, context links), and a field typed with a customer model
serializes only the customer's fields, whatever object it is given.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    field_validator,
    model_validator,
)

from support.models import Ticket
from support.references import LinkKind
from support.service import TicketPage, TicketView, Viewer
from support.sla import Priority
from support.states import State, allowed_moves

Subject = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Body = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
StaffTarget = Annotated[State, Field(description="The state to move to; 409 lists the allowed moves.")]


class TicketIn(BaseModel):
    subject: Subject
    body: Body
    category: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)] | None = None
    priority: Priority = "normal"


class MessageIn(BaseModel):
    body: Body


class InternalNoteIn(BaseModel):
    body: Body


class ContextLinkIn(BaseModel):
    kind: LinkKind
    ref: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]


class TransitionIn(BaseModel):
    to: StaffTarget


class TicketListQuery(BaseModel):
    state: State | None = None
    priority: Priority | None = None
    breached: bool | None = Field(default=None, description="Staff only: tickets with (or without) a breached SLA.")
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=500)


class PauseIn(BaseModel):
    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> PauseIn:
        if self.end < self.start:
            raise ValueError("a pause must end after it starts")
        return self


class SlaPreviewIn(BaseModel):
    priority: Priority
    created_at: AwareDatetime
    paused: list[PauseIn] = Field(default_factory=list, max_length=500)

    @field_validator("created_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)  # times leave the API in UTC, as every due time does


class SlaPreviewOut(BaseModel):
    priority: Priority
    calendar: str = Field(description="`business` (business hours) or `always` (24/7).")
    created_at: datetime
    first_response_due: datetime
    resolution_due: datetime


class SlaOut(BaseModel):
    first_response_due: datetime
    resolution_due: datetime
    paused: bool = Field(description="The clock stands still while the ticket waits on the customer or is resolved.")


class StaffSlaOut(SlaOut):
    paused_since: datetime | None
    first_response_breached_at: datetime | None
    resolution_breached_at: datetime | None


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    author_id: uuid.UUID
    from_staff: bool
    body: str
    created_at: datetime


class InternalNoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    ticket_id: uuid.UUID
    author_id: uuid.UUID
    body: str
    created_at: datetime


class ContextLinkOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    ticket_id: uuid.UUID
    kind: LinkKind
    ref: str
    created_by: uuid.UUID
    created_at: datetime


class TicketOut(BaseModel):
    """A ticket as its customer sees it."""

    id: uuid.UUID
    subject: str
    category: str | None
    priority: Priority
    state: State
    sla: SlaOut
    first_responded_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class StaffTicketOut(TicketOut):
    """A ticket as staff see it: whose it is, who has it, and its SLA breaches."""

    customer_id: uuid.UUID
    assignee_id: uuid.UUID | None
    sla: StaffSlaOut
    allowed_moves: list[State]


class TicketDetailOut(TicketOut):
    messages: list[MessageOut]


class StaffTicketDetailOut(StaffTicketOut):
    messages: list[MessageOut]
    internal_notes: list[InternalNoteOut]
    context_links: list[ContextLinkOut]


class TicketDetail(RootModel[StaffTicketDetailOut | TicketDetailOut]):
    """Staff receive the staff detail (notes, links, breaches); a customer the public one."""


class TicketListOut(BaseModel):
    items: list[StaffTicketOut | TicketOut] = Field(description="Staff items carry the staff fields.")
    next_cursor: str | None


def _customer_fields(ticket: Ticket) -> dict[str, object]:
    return {
        "id": ticket.id, "subject": ticket.subject, "category": ticket.category, "priority": ticket.priority,
        "state": ticket.state, "first_responded_at": ticket.first_responded_at, "resolved_at": ticket.resolved_at,
        "closed_at": ticket.closed_at, "created_at": ticket.created_at, "updated_at": ticket.updated_at,
        "sla": SlaOut(first_response_due=ticket.first_response_due, resolution_due=ticket.resolution_due,
                      paused=ticket.paused_since is not None),
    }


def _staff_fields(ticket: Ticket) -> dict[str, object]:
    return {
        **_customer_fields(ticket), "customer_id": ticket.customer_id, "assignee_id": ticket.assignee_id,
        "allowed_moves": allowed_moves(ticket.state),
        "sla": StaffSlaOut(first_response_due=ticket.first_response_due, resolution_due=ticket.resolution_due,
                           paused=ticket.paused_since is not None, paused_since=ticket.paused_since,
                           first_response_breached_at=ticket.first_response_breached_at,
                           resolution_breached_at=ticket.resolution_breached_at),
    }


def ticket_out(ticket: Ticket, staff: bool) -> StaffTicketOut | TicketOut:
    return StaffTicketOut(**_staff_fields(ticket)) if staff else TicketOut(**_customer_fields(ticket))  # type: ignore[arg-type]


def ticket_detail(view: TicketView) -> TicketDetail:
    messages = [MessageOut.model_validate(message) for message in view.messages]
    if view.internal_notes is None or view.context_links is None:
        return TicketDetail(TicketDetailOut(**_customer_fields(view.ticket), messages=messages))  # type: ignore[arg-type]
    return TicketDetail(StaffTicketDetailOut(
        **_staff_fields(view.ticket), messages=messages,  # type: ignore[arg-type]
        internal_notes=[InternalNoteOut.model_validate(note) for note in view.internal_notes],
        context_links=[ContextLinkOut.model_validate(link) for link in view.context_links],
    ))


def ticket_list(page: TicketPage, viewer: Viewer) -> TicketListOut:
    return TicketListOut(items=[ticket_out(ticket, viewer.sees_staff_side(ticket)) for ticket in page.items],
                         next_cursor=page.next_cursor)
