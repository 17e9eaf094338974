"""Helpdesk routes: tickets for every user, staff moves, notes and context links, the SLA preview."""

from __future__ import annotations

import uuid

from aiohttp import web

from api.access import AUTHENTICATED, roles
from api.helpdesk.schemas import (
    ContextLinkIn,
    ContextLinkOut,
    InternalNoteIn,
    InternalNoteOut,
    MessageIn,
    SlaPreviewIn,
    SlaPreviewOut,
    TicketDetail,
    TicketIn,
    TicketListOut,
    TicketListQuery,
    TransitionIn,
    ticket_detail,
    ticket_list,
)
from api.http import path_uuid
from api.middleware import db_session
from api.principal import current
from api.registry import Routes
from identity.models import STAFF_ROLES
from support import service, sla

helpdesk = Routes(tag="helpdesk")
helpdesk_platform = Routes(tag="platform")

STAFF = roles(*sorted(STAFF_ROLES))
NOTE_WRITERS = roles("support", "compliance", "admin")


def _viewer(request: web.Request) -> service.Viewer:
    principal = current(request)
    return service.Viewer(principal.user_id, principal.is_staff)


def _ticket_id(request: web.Request) -> uuid.UUID:
    return path_uuid(request, "ticket_id", "ticket_not_found")


NOT_FOUND = {404: ("ticket_not_found",)}
CURSOR = {422: ("invalid_cursor",)}


@helpdesk.post("/helpdesk/tickets", access=AUTHENTICATED, body=TicketIn, responses={201: TicketDetail},
               idempotent=True)
async def create_ticket(request: web.Request, body: TicketIn) -> TicketDetail:
    """Open a ticket (state `open`); its SLA due times follow its priority (see `/platform/helpdesk/sla`)."""
    view = await service.create_ticket(db_session(request), current(request).user_id, subject=body.subject,
                                       body=body.body, priority=body.priority, category=body.category)
    return ticket_detail(view)


@helpdesk.get("/helpdesk/tickets", access=AUTHENTICATED, query=TicketListQuery, responses={200: TicketListOut},
              errors={**CURSOR, 403: ("staff_only_filter",)})
async def list_tickets(request: web.Request, query: TicketListQuery) -> TicketListOut:
    """The caller's tickets, newest first; staff see every ticket and may filter on `breached`."""
    viewer = _viewer(request)
    page = await service.list_tickets(db_session(request), viewer, state=query.state, priority=query.priority,
                                      breached=query.breached, limit=query.limit, cursor=query.cursor)
    return ticket_list(page, viewer)


@helpdesk.get("/helpdesk/tickets/{ticket_id}", access=AUTHENTICATED, responses={200: TicketDetail}, errors=NOT_FOUND)
async def get_ticket(request: web.Request) -> TicketDetail:
    """A ticket with its public messages; staff also get internal notes, context links and SLA breaches,
    except on a ticket they opened themselves, which they see as its customer."""
    return ticket_detail(await service.get_ticket(db_session(request), _viewer(request), _ticket_id(request)))


@helpdesk.post("/helpdesk/tickets/{ticket_id}/messages", access=AUTHENTICATED, body=MessageIn,
               responses={201: TicketDetail}, idempotent=True,
               errors={**NOT_FOUND, 409: ("invalid_transition",)})
async def add_message(request: web.Request, body: MessageIn) -> TicketDetail:
    """A public reply (the owner or staff). A staff reply is the first response and notifies the owner;
    a customer reply brings a ticket waiting on them back to `in_progress` and reopens a resolved one."""
    view = await service.add_message(db_session(request), _viewer(request), _ticket_id(request), body.body)
    return ticket_detail(view)


@helpdesk.post("/helpdesk/tickets/{ticket_id}/transition", access=STAFF, body=TransitionIn,
               responses={200: TicketDetail}, errors={**NOT_FOUND, 409: ("invalid_transition",)})
async def transition(request: web.Request, body: TransitionIn) -> TicketDetail:
    """Move a ticket (staff); an illegal move is 409 `invalid_transition` listing the allowed ones."""
    view = await service.transition(db_session(request), current(request).user_id, _ticket_id(request), body.to)
    return ticket_detail(view)


@helpdesk.post("/helpdesk/tickets/{ticket_id}/internal-notes", access=NOTE_WRITERS, body=InternalNoteIn,
               responses={201: InternalNoteOut}, errors=NOT_FOUND)
async def add_internal_note(request: web.Request, body: InternalNoteIn) -> InternalNoteOut:
    """Add a staff-only note: never shown, listed or notified to the customer."""
    note = await service.add_internal_note(db_session(request), current(request).user_id, _ticket_id(request),
                                           body.body)
    return InternalNoteOut.model_validate(note)


@helpdesk.post("/helpdesk/tickets/{ticket_id}/context-links", access=STAFF, body=ContextLinkIn,
               responses={201: ContextLinkOut},
               errors={**NOT_FOUND, 409: ("context_link_exists",), 422: ("unknown_reference", "invalid_url")})
async def add_context_link(request: web.Request, body: ContextLinkIn) -> ContextLinkOut:
    """Link what the ticket is about (staff). Internal refs must exist (422 `unknown_reference`);
    kinds whose domain has not registered a resolver yet are refused the same way."""
    link = await service.add_context_link(db_session(request), current(request).user_id, _ticket_id(request),
                                          body.kind, body.ref)
    return ContextLinkOut.model_validate(link)


@helpdesk_platform.post("/platform/helpdesk/sla", access=STAFF, body=SlaPreviewIn, responses={200: SlaPreviewOut})
async def sla_preview(request: web.Request, body: SlaPreviewIn) -> SlaPreviewOut:
    """The due times a ticket of this priority created then (with these pauses) gets."""
    due = sla.due_times(body.priority, body.created_at, [(pause.start, pause.end) for pause in body.paused])
    return SlaPreviewOut(priority=body.priority, calendar=sla.calendar_of(body.priority), created_at=body.created_at,
                         first_response_due=due.first_response_due, resolution_due=due.resolution_due)
