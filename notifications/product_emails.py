"""The body of the ``cms.product_email`` job: the variables of each product email, read from what
its ``ref`` names, then the published template rendered for the user and queued for SMTP.

Domains ask for these emails with ``notifications.emails.product_email`` (the list of templates is there).
Every template also gets ``display_name`` and ``email`` of the recipient (email.py). A ``ref`` that
names nothing (or, for ``ticket.reply``, anything but a public staff message) sends nothing.

Locale: the user's own (``users.locale``, set at registration or with ``PATCH /me``), through the
CMS fallback chain (``de-AT → de → en``); a user without one gets the default locale's template.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from identity.models import User
from content import email
from content.models import EmailDelivery
from custody.escrow.models import EscrowContract
from support.models import Ticket, TicketMessage
from custody import ledger
from custody.withdrawals.models import Withdrawal

log = logging.getLogger(__name__)

Variables = dict[str, str]
Builder = Callable[[AsyncSession, str, uuid.UUID | None], Awaitable[Variables | None]]


async def _welcome(session: AsyncSession, template: str, ref: uuid.UUID | None) -> Variables:
    return {}


async def _escrow(session: AsyncSession, template: str, ref: uuid.UUID | None) -> Variables | None:
    """``escrow_title``, ``amount`` (for ``escrow.released``: what the seller received, the
    contract amount less the platform fee), ``currency``."""
    contract = await session.get(EscrowContract, ref)
    if contract is None:
        return None
    unit = await ledger.currency(session, contract.currency)
    amount = contract.amount - (contract.fee or 0) if template == "escrow.released" else contract.amount
    return {"escrow_title": contract.title, "amount": unit.format(amount), "currency": unit.code}


async def _withdrawal(session: AsyncSession, template: str, ref: uuid.UUID | None) -> Variables | None:
    """``amount``, ``currency``, ``chain``, ``tx_hash``."""
    withdrawal = await session.get(Withdrawal, ref)
    if withdrawal is None:
        return None
    unit = await ledger.currency(session, withdrawal.asset)
    return {"amount": unit.format(withdrawal.amount), "currency": unit.code, "chain": withdrawal.chain,
            "tx_hash": withdrawal.tx_hash or ""}


async def _ticket_reply(session: AsyncSession, template: str, ref: uuid.UUID | None) -> Variables | None:
    """``ticket_subject`` and ``reply`` (the staff message's body). Only a public staff message is
    ever read here: internal notes live in their own table and no id of theirs finds a message."""
    message = await session.get(TicketMessage, ref)
    if message is None or not message.from_staff:
        return None
    ticket = await session.get_one(Ticket, message.ticket_id)
    return {"ticket_subject": ticket.subject, "reply": message.body}


# One per template of notifications.emails.TEMPLATES (a test checks they match).
BUILDERS: dict[str, Builder] = {
    "welcome": _welcome,
    "escrow.funded": _escrow,
    "escrow.released": _escrow,
    "escrow.disputed": _escrow,
    "withdrawal.confirmed": _withdrawal,
    "ticket.reply": _ticket_reply,
}


def _locale(user: User) -> str | None:
    return user.locale  # None: the default locale; the CMS falls back de-AT → de → en


async def queue_product_email(session: AsyncSession, delivery_id: uuid.UUID, user_id: uuid.UUID, template: str,
                              ref: uuid.UUID | None) -> EmailDelivery | None:
    """Render and queue one product email (the delivery gets ``delivery_id``); None if nothing is sent."""
    if await session.get(EmailDelivery, delivery_id) is not None:
        return None  # a redelivered message: this email was queued already
    builder = BUILDERS.get(template)
    if builder is None:
        log.error("product email %s is unknown: nothing sent to user %s", template, user_id)
        return None
    variables = await builder(session, template, ref)
    if variables is None:
        log.warning("product email %s: %s names nothing to email about; nothing sent to user %s",
                    template, ref, user_id)
        return None
    user = await session.get_one(User, user_id)
    return await email.send_product_email(session, user.id, template, variables, locale=_locale(user),
                                          delivery_id=delivery_id)
