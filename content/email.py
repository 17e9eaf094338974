"""Email templates (CMS documents of kind ``email``): preview, test-send, product emails.

A delivery is rendered when it is queued and stored whole (subject, HTML, text), so what goes
out is what was rendered from the version in force at that moment, however the template changes
later. The ``notifications.send_email`` job (``notifications.delivery``) hands it to SMTP after the commit.
Admins see every delivery, its state and last error at ``GET /admin/cms/email/deliveries``.

Template variables: whatever the caller passes. Product emails (``send_product_email``) also get
``display_name`` and ``email`` of the recipient unless the caller gives its own. Domains ask for a
product email with ``notifications.emails.product_email``; the ``notifications.product_email`` job
calls ``send_product_email`` (``notifications.product_emails``).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from content import service
from content.models import CmsDocument, CmsVersion, EmailDelivery
from content.templating import RenderedEmail, render_email
from core import audit
from core.errors import InvalidInput, NotFound
from core.locales import fallback_chain
from core.pagination import keyset_before, next_page
from identity.models import User

log = logging.getLogger(__name__)

AGGREGATE = "email_delivery"
SEND_EMAIL = jobs.name("notifications.send_email")


async def _template(session: AsyncSession, slug: str, locale: str | None, version: int | None, *,
                    published_only: bool) -> tuple[CmsDocument, CmsVersion]:
    chain = fallback_chain(locale)
    if published_only:
        return await service.published(session, "email", slug, chain)
    document = await service.find_document(session, "email", slug, chain)
    return document, await service.get_version(session, document, version or document.current_version)


async def _render(row: CmsVersion, variables: dict[str, Any]) -> RenderedEmail:
    return await render_email(str(row.meta.get("subject", "")), row.body, variables)


async def preview(session: AsyncSession, slug: str, *, locale: str | None, version: int | None,
                  variables: dict[str, Any]) -> RenderedEmail:
    """Render a version (the latest unless named, published or not) with ``variables``."""
    _, row = await _template(session, slug, locale, version, published_only=False)
    return await _render(row, variables)


async def queue_test_send(session: AsyncSession, slug: str, *, to: str, locale: str | None,
                          variables: dict[str, Any], actor: uuid.UUID) -> EmailDelivery:
    """Send the latest version (published or not) to ``to``: how an editor checks a template."""
    document, row = await _template(session, slug, locale, None, published_only=False)
    return await _queue(session, document, row, await _render(row, variables), recipient=to,
                        purpose="test", user_id=None, actor=actor)


async def send_product_email(session: AsyncSession, user_id: uuid.UUID, template_slug: str,
                             variables: dict[str, Any], *, locale: str | None = None,
                             delivery_id: uuid.UUID | None = None) -> EmailDelivery | None:
    """Queue the published template ``template_slug`` to a user; sent after the caller commits.

    A template that is not published is logged and skipped (None): a missing welcome text must
    not fail a registration. A template that does not render (a variable nobody gives, a refused
    construct) is stored as a ``failed`` delivery with the error, for the admin to see: rendering
    again would fail again, and the business change it is about has happened.
    """
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.", code="user_not_found")
    try:
        document, row = await _template(session, template_slug, locale, None, published_only=True)
    except service.DocumentNotFound:
        log.warning("email template %s is not published: nothing sent to user %s", template_slug, user_id)
        return None
    try:
        rendered = await _render(row, {"display_name": user.display_name, "email": user.email, **variables})
    except InvalidInput as error:
        return await _unrenderable(session, document, row, error, recipient=user.email, user_id=user.id,
                                   delivery_id=delivery_id or uuid.uuid4())
    return await _queue(session, document, row, rendered, recipient=user.email, purpose="product",
                        user_id=user.id, actor=None, delivery_id=delivery_id)


async def _unrenderable(session: AsyncSession, document: CmsDocument, row: CmsVersion, error: InvalidInput, *,
                        recipient: str, user_id: uuid.UUID, delivery_id: uuid.UUID) -> EmailDelivery:
    reason = f"{error.code}: {error.message}"[:1000]
    log.error("email template %s v%s does not render for user %s: %s", document.slug, row.version, user_id, reason)
    delivery = EmailDelivery(id=delivery_id, template_slug=document.slug, template_version=row.version,
                             locale=document.locale, purpose="product", recipient=recipient, user_id=user_id,
                             subject="", html="", text="", state="failed", attempts=0, last_error=reason)
    session.add(delivery)
    await session.flush()
    await audit.append(session, AGGREGATE, delivery.id, "email.failed", {
        "template": document.slug, "version": row.version, "locale": document.locale, "purpose": "product",
        "recipient": recipient, "attempts": 0, "error": reason, "permanent": True,
    })
    return delivery


async def _queue(session: AsyncSession, document: CmsDocument, row: CmsVersion,
                 rendered: RenderedEmail, *, recipient: str, purpose: str, user_id: uuid.UUID | None,
                 actor: uuid.UUID | None, delivery_id: uuid.UUID | None = None) -> EmailDelivery:
    delivery = EmailDelivery(id=delivery_id or uuid.uuid4(), template_slug=document.slug, template_version=row.version,
                             locale=document.locale, purpose=purpose, recipient=recipient, user_id=user_id,
                             subject=rendered.subject, html=rendered.html, text=rendered.text, state="queued",
                             attempts=0, requested_by=None if actor is None else str(actor))
    session.add(delivery)
    await session.flush()
    await audit.append(session, AGGREGATE, delivery.id, "email.queued", {
        "template": document.slug, "version": row.version, "locale": document.locale, "purpose": purpose,
        "recipient": recipient,
    }, actor=actor)
    jobs.send_after_commit(session, SEND_EMAIL, str(delivery.id))
    return delivery


async def list_deliveries(session: AsyncSession, *, state: str | None, limit: int,
                          cursor: str | None) -> service.Page:
    query = select(EmailDelivery).order_by(EmailDelivery.created_at.desc(), EmailDelivery.id.desc()).limit(limit + 1)
    if state:
        query = query.where(EmailDelivery.state == state)
    if cursor:
        query = query.where(keyset_before(cursor, EmailDelivery.created_at, EmailDelivery.id))
    rows = list(await session.scalars(query))
    return service.Page(*next_page(rows, limit))
