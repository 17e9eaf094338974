"""The variables of the webhook product emails (``notifications.emails``)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession
from yarl import URL

from core.time import rfc3339
from notifications.emails import Variables, variables_for
from notifications.webhooks.models import WebhookEndpoint


def shown_url(url: str) -> str:
    """The endpoint's URL without its query, fragment or credentials: an integrator may keep a token there."""
    try:
        return str(URL(url).with_user(None).with_query(None).with_fragment(None))
    except (TypeError, ValueError):
        return "(unreadable URL)"


@variables_for("webhook.disabled")
async def endpoint_variables(session: AsyncSession, template: str, ref: uuid.UUID | None) -> Variables | None:
    """``endpoint_url`` (without its query), ``failing_since`` (RFC 3339)."""
    endpoint = await session.get(WebhookEndpoint, ref)
    if endpoint is None or endpoint.enabled:
        return None  # deleted, or enabled again before the email went
    return {"endpoint_url": shown_url(endpoint.url),
            "failing_since": rfc3339(endpoint.failing_since) if endpoint.failing_since else ""}
