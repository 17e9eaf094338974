"""The variables of the ticket product emails (``notifications.emails``)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from notifications.emails import Variables, variables_for
from support.models import Ticket, TicketMessage


@variables_for("ticket.reply")
async def ticket_reply_variables(session: AsyncSession, template: str, ref: uuid.UUID | None) -> Variables | None:
    """``ticket_subject`` and ``reply`` (the staff message's body). Only a public staff message is
    ever read here: internal notes live in their own table and no id of theirs finds a message."""
    message = await session.get(TicketMessage, ref)
    if message is None or not message.from_staff:
        return None
    ticket = await session.get_one(Ticket, message.ticket_id)
    return {"ticket_subject": ticket.subject, "reply": message.body}
