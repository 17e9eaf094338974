"""The body of the ``notifications.product_email`` job: the variables of each product email, read
from what its ``ref`` names by the builder its domain registered, then the published template
rendered for the user and queued for SMTP.

Domains ask for these emails with ``notifications.emails.product_email`` (the list of templates is there).
Every template also gets ``display_name`` and ``email`` of the recipient (email.py). A ``ref`` that
names nothing (or, for ``ticket.reply``, anything but a public staff message) sends nothing.

Locale: the user's own (``users.locale``, set at registration or with ``PATCH /me``), through the
CMS fallback chain (``de-AT → de → en``); a user without one gets the default locale's template.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from content import email
from content.models import EmailDelivery
from identity.models import User
from notifications import emails

log = logging.getLogger(__name__)


def _locale(user: User) -> str | None:
    return user.locale  # None: the default locale; the CMS falls back de-AT → de → en


VERIFY_EMAIL = "email.verify"


async def queue_verification_email(session: AsyncSession, user: User, link: str) -> EmailDelivery | None:
    """The link proving ``user`` owns their address (``identity.email_verification``), rendered and
    queued in the caller's transaction rather than by the ``notifications.product_email`` job: the link
    carries a secret, and job messages carry ids only (DESIGN.md) — the token's plaintext lives in
    the request that made it and in the stored delivery, nowhere else. Its own template, not a part
    of ``welcome``: a resend must not welcome anyone twice. Sent after the commit, like every delivery;
    skipped (logged) while the template is not published."""
    return await email.send_product_email(session, user.id, VERIFY_EMAIL, {"verify_url": link}, locale=_locale(user))


async def queue_product_email(session: AsyncSession, delivery_id: uuid.UUID, user_id: uuid.UUID, template: str,
                              ref: uuid.UUID | None) -> EmailDelivery | None:
    """Render and queue one product email (the delivery gets ``delivery_id``); None if nothing is sent."""
    if await session.get(EmailDelivery, delivery_id) is not None:
        return None  # a redelivered message: this email was queued already
    builder = emails.builder(template)
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
