"""Product emails: the one call any domain makes to email a user about something that happened.

``product_email(session, user_id, template, ref)`` is called in the transaction of the change the
email is about (an escrow funded, a withdrawal confirmed, a staff reply on a ticket). Once that
transaction commits, the ``cms.product_email`` job (declared in api/cms/actors.py, run by the
notifications worker) reads what ``ref`` names, renders the **published** template ``template`` for
the user, stores the delivery and hands it to SMTP (``cms.send_email``). A rollback sends nothing.

The job is named here and declared in the API's CMS package because domain packages (custody,
compliance) never import the API (import-linter): this module is the seam both sides share. The
message carries ids only (DESIGN.md); the variables are read again from the database by the job
(api/cms/product_emails.py, one function per template). ``email_id`` becomes the delivery's id, so
a redelivered message never emails twice.
"""

from __future__ import annotations

import uuid

import dramatiq
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import after_commit
from jobs.registry import JobError, broker_of, enqueue

PRODUCT_EMAIL_JOB = "cms.product_email"
PRODUCT_EMAIL_QUEUE = "notifications"

# Each product email template, and what the ``ref`` of its call names (None: the user is the subject).
TEMPLATES: dict[str, str | None] = {
    "welcome": None,
    "escrow.funded": "escrow",
    "escrow.released": "escrow",
    "escrow.disputed": "escrow",
    "withdrawal.confirmed": "withdrawal",
    "ticket.reply": "ticket_message",  # a public staff message: internal notes are never emailed
}


def product_email(session: AsyncSession, user_id: uuid.UUID, template: str, ref: uuid.UUID | None = None) -> None:
    """Email ``template`` about ``ref`` to ``user_id`` once ``session``'s transaction commits."""
    if template not in TEMPLATES:
        raise JobError(f"no product email {template!r}; they are {', '.join(TEMPLATES)}")
    if (ref is None) != (TEMPLATES[template] is None):
        raise JobError(f"product email {template}: ref names {TEMPLATES[template] or 'nothing'}, got {ref!r}")
    message = dramatiq.Message(queue_name=PRODUCT_EMAIL_QUEUE, actor_name=PRODUCT_EMAIL_JOB,
                               args=(str(uuid.uuid4()), str(user_id), template, None if ref is None else str(ref)),
                               kwargs={}, options={})
    after_commit(session, enqueue, broker_of(session), message)
