"""The helpdesk: tickets, replies, staff moves, internal notes, context links, SLA breaches.

Every change of a ticket appends an audit event on the aggregate ``ticket`` in the same
transaction; the owner is notified (``notifications.service.notify``, streamed after commit) of
staff replies (also by email, ``notifications.emails``) and staff state changes. What a customer can ever
receive — a response, a list, a notification, an email — is built from public messages only:
internal notes and context links are read only for a staff viewer (not on a ticket that viewer opened
themselves: there staff are its customer), and adding one neither
notifies nor emails anyone nor touches ``updated_at`` (which customers see).

Functions take ``now`` so tests (and the SLA preview) run the clock they need; the default is
the wall clock.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import Conflict, Forbidden, NotFound
from core.pagination import keyset_before, next_page
from core.time import rfc3339, utcnow
from notifications.emails import product_email
from notifications.service import notify
from support import references, sla, states
from support.models import Ticket, TicketContextLink, TicketInternalNote, TicketMessage, TicketSlaPause

log = logging.getLogger(__name__)

AGGREGATE = "ticket"
BREACH_BATCH = 500


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a customer sees their own tickets; staff see every ticket and its notes."""

    user_id: uuid.UUID
    staff: bool

    def sees_staff_side(self, ticket: Ticket) -> bool:
        """Staff work every ticket but their own: there they are its customer, and what colleagues
        note about them (screening, fraud suspicions) stays internal."""
        return self.staff and ticket.customer_id != self.user_id


@dataclass(frozen=True)
class TicketView:
    ticket: Ticket
    messages: list[TicketMessage]
    # None for a customer viewer: the staff-only tables were never read.
    internal_notes: list[TicketInternalNote] | None = None
    context_links: list[TicketContextLink] | None = None


@dataclass(frozen=True)
class TicketPage:
    items: list[Ticket]
    next_cursor: str | None


class TicketNotFound(NotFound):
    code, message = "ticket_not_found", "No such ticket."


def _sla_data(ticket: Ticket) -> dict[str, str]:
    return {"first_response_due": rfc3339(ticket.first_response_due), "resolution_due": rfc3339(ticket.resolution_due)}


# --- reading -----------------------------------------------------------------------------------


async def _ticket(session: AsyncSession, viewer: Viewer, ticket_id: uuid.UUID, *, lock: bool = False) -> Ticket:
    query = select(Ticket).where(Ticket.id == ticket_id)
    if not viewer.staff:
        # Another customer's ticket is indistinguishable from a missing one.
        query = query.where(Ticket.customer_id == viewer.user_id)
    if lock:
        query = query.with_for_update()
    ticket = await session.scalar(query)
    if ticket is None:
        raise TicketNotFound()
    return ticket


async def get_ticket(session: AsyncSession, viewer: Viewer, ticket_id: uuid.UUID) -> TicketView:
    return await _view(session, viewer, await _ticket(session, viewer, ticket_id))


async def _view(session: AsyncSession, viewer: Viewer, ticket: Ticket) -> TicketView:
    messages = list(await session.scalars(
        select(TicketMessage).where(TicketMessage.ticket_id == ticket.id)
        .order_by(TicketMessage.created_at, TicketMessage.id)
    ))
    if not viewer.sees_staff_side(ticket):
        return TicketView(ticket, messages)
    notes = list(await session.scalars(
        select(TicketInternalNote).where(TicketInternalNote.ticket_id == ticket.id)
        .order_by(TicketInternalNote.created_at, TicketInternalNote.id)
    ))
    links = list(await session.scalars(
        select(TicketContextLink).where(TicketContextLink.ticket_id == ticket.id)
        .order_by(TicketContextLink.created_at, TicketContextLink.id)
    ))
    return TicketView(ticket, messages, notes, links)


async def list_tickets(session: AsyncSession, viewer: Viewer, *, state: str | None = None,
                       priority: str | None = None, breached: bool | None = None, limit: int = 50,
                       cursor: str | None = None) -> TicketPage:
    """Newest first: the caller's own tickets, or every ticket for staff."""
    query = select(Ticket).order_by(Ticket.created_at.desc(), Ticket.id.desc()).limit(limit + 1)
    if not viewer.staff:
        query = query.where(Ticket.customer_id == viewer.user_id)
    if state:
        query = query.where(Ticket.state == state)
    if priority:
        query = query.where(Ticket.priority == priority)
    if breached is not None:
        if not viewer.staff:  # breach flags are a staff metric: customers never see them
            raise Forbidden("Only staff can filter on SLA breaches.", code="staff_only_filter",
                            details={"filter": "breached"})
        any_breach = or_(Ticket.first_response_breached_at.is_not(None), Ticket.resolution_breached_at.is_not(None))
        query = query.where(any_breach if breached else ~any_breach)
    if cursor:
        query = query.where(keyset_before(cursor, Ticket.created_at, Ticket.id))
    rows = list(await session.scalars(query))
    return TicketPage(*next_page(rows, limit))


# --- changing ----------------------------------------------------------------------------------


async def create_ticket(session: AsyncSession, customer_id: uuid.UUID, *, subject: str, body: str,
                        priority: str = "normal", category: str | None = None,
                        now: datetime | None = None) -> TicketView:
    now = now or utcnow()
    due = sla.due_times(priority, now)
    ticket = Ticket(customer_id=customer_id, subject=subject, category=category, priority=priority, state="open",
                    first_response_due=due.first_response_due, resolution_due=due.resolution_due,
                    created_at=now, updated_at=now)
    session.add(ticket)
    await session.flush()
    message = TicketMessage(ticket_id=ticket.id, author_id=customer_id, from_staff=False, body=body, created_at=now)
    session.add(message)
    await session.flush()
    await audit.append(session, AGGREGATE, ticket.id, "ticket.created", {
        "customer_id": str(customer_id), "subject": subject, "category": category, "priority": priority,
        "state": ticket.state, "message_id": str(message.id), **_sla_data(ticket),
    }, actor=customer_id)
    return TicketView(ticket, [message])


async def add_message(session: AsyncSession, viewer: Viewer, ticket_id: uuid.UUID, body: str, *,
                      now: datetime | None = None) -> TicketView:
    """A public reply. Staff replies count as the first response; a customer reply may reopen."""
    now = now or utcnow()
    ticket = await _ticket(session, viewer, ticket_id, lock=True)
    by_staff = viewer.sees_staff_side(ticket)
    target = states.transition(ticket.state, "staff_reply" if by_staff else "customer_reply")
    message = TicketMessage(ticket_id=ticket.id, author_id=viewer.user_id, from_staff=by_staff, body=body,
                            created_at=now)
    session.add(message)
    await session.flush()
    await audit.append(session, AGGREGATE, ticket.id, "ticket.message_added",
                       {"message_id": str(message.id), "from_staff": by_staff}, actor=viewer.user_id)
    if by_staff:
        await _assign(session, ticket, viewer.user_id)
        if ticket.first_responded_at is None:
            await _breach_if_late(session, ticket, "first_response", now)
            ticket.first_responded_at = now
            await audit.append(session, AGGREGATE, ticket.id, "ticket.first_response",
                               {"at": rfc3339(now), "first_response_due": rfc3339(ticket.first_response_due)},
                               actor=viewer.user_id)
    await _enter(session, ticket, target, "staff_reply" if by_staff else "customer_reply", viewer.user_id, now)
    ticket.updated_at = now
    await session.flush()
    if by_staff:
        await notify(session, ticket.customer_id, "ticket.reply", {
            "ticket_id": str(ticket.id), "subject": ticket.subject, "state": ticket.state,
            "message_id": str(message.id), "body": message.body,
        })
        product_email(session, ticket.customer_id, "ticket.reply", message.id)
    elif ticket.assignee_id is not None and ticket.assignee_id != viewer.user_id:
        await notify(session, ticket.assignee_id, "ticket.customer_reply",
                     {"ticket_id": str(ticket.id), "subject": ticket.subject, "state": ticket.state,
                      "message_id": str(message.id)})
    return await _view(session, viewer, ticket)


async def transition(session: AsyncSession, actor_id: uuid.UUID, ticket_id: uuid.UUID, to: str, *,
                     now: datetime | None = None) -> TicketView:
    """A staff move to ``to``; 409 naming the allowed moves when the table has none."""
    now = now or utcnow()
    staff = Viewer(actor_id, staff=True)
    ticket = await _ticket(session, staff, ticket_id, lock=True)
    before = ticket.state
    action = states.move_to(before, to)
    await _assign(session, ticket, actor_id)
    if to == "resolved":
        await _breach_if_late(session, ticket, "resolution", now)
    await _enter(session, ticket, states.transition(before, action), action, actor_id, now)
    ticket.updated_at = now
    await session.flush()
    await notify(session, ticket.customer_id, "ticket.state_changed",
                 {"ticket_id": str(ticket.id), "subject": ticket.subject, "from": before, "to": ticket.state})
    return await _view(session, staff, ticket)


async def add_internal_note(session: AsyncSession, author_id: uuid.UUID, ticket_id: uuid.UUID, body: str, *,
                            now: datetime | None = None) -> TicketInternalNote:
    now = now or utcnow()
    ticket = await _ticket(session, Viewer(author_id, staff=True), ticket_id)
    note = TicketInternalNote(ticket_id=ticket.id, author_id=author_id, body=body, created_at=now)
    session.add(note)
    await session.flush()
    # The body stays in the notes table: audit exports leave the helpdesk's access control.
    await audit.append(session, AGGREGATE, ticket.id, "ticket.internal_note_added",
                       {"note_id": str(note.id)}, actor=author_id)
    return note


async def add_context_link(session: AsyncSession, author_id: uuid.UUID, ticket_id: uuid.UUID, kind: str, ref: str,
                           *, now: datetime | None = None) -> TicketContextLink:
    now = now or utcnow()
    ticket = await _ticket(session, Viewer(author_id, staff=True), ticket_id)
    canonical = await references.checked_reference(session, kind, ref)
    link = TicketContextLink(ticket_id=ticket.id, kind=kind, ref=canonical, created_by=author_id, created_at=now)
    try:
        async with session.begin_nested():
            session.add(link)
            await session.flush()
    except IntegrityError:
        raise Conflict("This ticket already links to that.", code="context_link_exists",
                       details={"kind": kind, "ref": canonical}) from None
    await audit.append(session, AGGREGATE, ticket.id, "ticket.context_link_added",
                       {"link_id": str(link.id), "kind": kind, "ref": canonical}, actor=author_id)
    return link


async def mark_breaches(session: AsyncSession, *, now: datetime | None = None, limit: int = BREACH_BATCH) -> int:
    """Mark the running tickets whose SLA fell due; returns how many breaches were marked.

    A ticket whose clock is paused (pending_customer, resolved, closed) is never marked: its due
    times move when the pause ends. Each breach is marked once (idempotent), audited, and sent to
    the assignee if the ticket has one; unassigned tickets are found with ``?breached=true``.
    """
    now = now or utcnow()
    overdue_response = and_(Ticket.first_responded_at.is_(None), Ticket.first_response_breached_at.is_(None),
                            Ticket.first_response_due <= now)
    overdue_resolution = and_(Ticket.resolution_breached_at.is_(None), Ticket.resolution_due <= now)
    tickets = list(await session.scalars(
        select(Ticket)
        .where(Ticket.state.in_(states.CLOCK_RUNS_IN), or_(overdue_response, overdue_resolution))
        .order_by(Ticket.first_response_due)
        .limit(limit)
        .with_for_update(skip_locked=True)  # a ticket being replied to is checked on the next run
    ))
    marked = 0
    for ticket in tickets:
        if ticket.first_responded_at is None:
            marked += await _breach_if_late(session, ticket, "first_response", now)
        marked += await _breach_if_late(session, ticket, "resolution", now)
    await session.flush()
    return marked


# --- internals ---------------------------------------------------------------------------------


async def _assign(session: AsyncSession, ticket: Ticket, staff_id: uuid.UUID) -> None:
    if ticket.assignee_id is None:
        ticket.assignee_id = staff_id
        await audit.append(session, AGGREGATE, ticket.id, "ticket.assigned", {"assignee_id": str(staff_id)},
                           actor=staff_id)


async def _breach_if_late(session: AsyncSession, ticket: Ticket, kind: str, now: datetime) -> int:
    """Mark one SLA of ``ticket`` breached if it fell due before ``now`` and is not marked yet."""
    if kind == "first_response":
        due, marked = ticket.first_response_due, ticket.first_response_breached_at
    else:
        due, marked = ticket.resolution_due, ticket.resolution_breached_at
    # The stored due times count the closed pauses; a clock paused now stopped at paused_since.
    clock = ticket.paused_since or now
    if marked is not None or due > clock:
        return 0
    if kind == "first_response":
        ticket.first_response_breached_at = now
    else:
        ticket.resolution_breached_at = now
    await audit.append(session, AGGREGATE, ticket.id, "ticket.sla_breached",
                       {"sla": kind, "due": rfc3339(due), "marked_at": rfc3339(now)})
    log.warning("ticket %s breached its %s SLA (due %s)", ticket.id, kind, rfc3339(due))
    if ticket.assignee_id is not None:
        await notify(session, ticket.assignee_id, "ticket.sla_breached",
                     {"ticket_id": str(ticket.id), "subject": ticket.subject, "sla": kind, "due": rfc3339(due)})
    return 1


async def _enter(session: AsyncSession, ticket: Ticket, target: str, action: str, actor: uuid.UUID,
                 now: datetime) -> None:
    """Move ``ticket`` to ``target``: pause or resume the SLA clock, stamp resolved/closed."""
    before = ticket.state
    if target == before:
        return
    running_before, running_after = before in states.CLOCK_RUNS_IN, target in states.CLOCK_RUNS_IN
    if running_before and not running_after:
        ticket.paused_since = now
    elif running_after and not running_before and ticket.paused_since is not None:
        session.add(TicketSlaPause(ticket_id=ticket.id, started_at=ticket.paused_since, ended_at=now))
        ticket.paused_since = None
        await session.flush()
        await _recompute_due(session, ticket)
    if target == "resolved":
        ticket.resolved_at = now
    elif before == "resolved":
        ticket.resolved_at = None
    if target == "closed":
        ticket.closed_at = now
    ticket.state = target
    await audit.append(session, AGGREGATE, ticket.id, "ticket.state_changed",
                       {"from": before, "to": target, "action": action, **_sla_data(ticket)}, actor=actor)


async def _recompute_due(session: AsyncSession, ticket: Ticket) -> None:
    pauses = await session.execute(
        select(TicketSlaPause.started_at, TicketSlaPause.ended_at).where(TicketSlaPause.ticket_id == ticket.id)
    )
    due = sla.due_times(ticket.priority, ticket.created_at, [(start, end) for start, end in pauses])
    ticket.first_response_due, ticket.resolution_due = due.first_response_due, due.resolution_due
