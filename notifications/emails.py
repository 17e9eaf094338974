"""Product emails: the one call any domain makes to email a user about something that happened.

``product_email(session, user_id, template, ref)`` is called in the transaction of the change the
email is about (an escrow funded, a withdrawal confirmed, a staff reply on a ticket). Once that
transaction commits, the ``notifications.product_email`` job (notifications/actors.py, run by the
notifications worker) reads what ``ref`` names, renders the **published** template ``template`` for
the user, stores the delivery and hands it to SMTP (``notifications.send_email``). A rollback
sends nothing.

The message carries ids only (DESIGN.md): the variables are read again from the database by the
job, by the builder the domain that owns ``ref`` registered here (``@variables_for``): the
escrow's in ``custody.escrow.emails``, the ticket's in ``support.emails``. Notifications sits
below those domains and never imports them; ``cli.registry`` loads their builders at start.
``email_id`` becomes the delivery's id, so a redelivered message never emails twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from jobs.registry import JobError

PRODUCT_EMAIL = jobs.name("notifications.product_email")

# Each product email template, and what the ``ref`` of its call names (None: the user is the subject).
TEMPLATES: dict[str, str | None] = {
    "welcome": None,
    # security notices: the owner learns of an MFA change they did not make
    "mfa.enrollment_started": None,
    "mfa.disabled": None,
    "escrow.funded": "escrow",
    "escrow.released": "escrow",
    "escrow.disputed": "escrow",
    "withdrawal.confirmed": "withdrawal",
    # security notice: a new withdrawal destination, usable after the cooling-off, is how a thief drains
    "address_book.entry_added": "address_book_entry",
    "ticket.reply": "ticket_message",  # a public staff message: internal notes are never emailed
    "webhook.disabled": "webhook_endpoint",  # failing too long: its owner must fix it and enable it again
}

Variables = dict[str, str]
# (session, template, ref) → the template's variables, or None when ref names nothing to email about.
Builder = Callable[[AsyncSession, str, uuid.UUID | None], Awaitable[Variables | None]]

_builders: dict[str, Builder] = {}


def variables_for(*templates: str) -> Callable[[Builder], Builder]:
    """Register the builder of the variables of ``templates`` (by the domain that owns their ref)."""
    def register(builder: Builder) -> Builder:
        for template in templates:
            if template not in TEMPLATES:
                raise JobError(f"no product email {template!r}; they are {', '.join(TEMPLATES)}")
            if template in _builders:
                raise JobError(f"product email {template}: two builders ({_builders[template].__module__}, "
                               f"{builder.__module__})")
            _builders[template] = builder
        return builder
    return register


def builder(template: str) -> Builder | None:
    return _builders.get(template)


def missing_builders() -> list[str]:
    """Templates no loaded domain builds variables for (a test proves the process wiring has none)."""
    return [template for template in TEMPLATES if template not in _builders]


def product_email(session: AsyncSession, user_id: uuid.UUID, template: str, ref: uuid.UUID | None = None) -> None:
    """Email ``template`` about ``ref`` to ``user_id`` once ``session``'s transaction commits."""
    if template not in TEMPLATES:
        raise JobError(f"no product email {template!r}; they are {', '.join(TEMPLATES)}")
    if (ref is None) != (TEMPLATES[template] is None):
        raise JobError(f"product email {template}: ref names {TEMPLATES[template] or 'nothing'}, got {ref!r}")
    jobs.send_after_commit(session, PRODUCT_EMAIL, str(uuid.uuid4()), str(user_id), template,
                           None if ref is None else str(ref))


@variables_for("welcome", "mfa.enrollment_started", "mfa.disabled")
async def _about_the_user(session: AsyncSession, template: str, ref: uuid.UUID | None) -> Variables:
    return {}
