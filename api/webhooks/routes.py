"""The caller's webhook endpoints: register, list, change, delete, rotate the secret, deliveries, test."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from aiohttp import web

from api.access import AUTHENTICATED
from api.http import path_uuid
from api.keys import SETTINGS
from api.middleware import db_session
from api.principal import current
from api.registry import Routes
from api.webhooks.schemas import (
    WebhookCreatedOut,
    WebhookDeliveryListOut,
    WebhookDeliveryOut,
    WebhookDeliveryQuery,
    WebhookIn,
    WebhookListOut,
    WebhookListQuery,
    WebhookOut,
    WebhookPatchIn,
    WebhookSecretOut,
)
from notifications.webhooks import service
from notifications.webhooks.outbox import EVENT_TYPES, TEST_EVENT

webhooks = Routes(tag="webhooks", scopes="webhooks")

NOT_FOUND = {404: ("webhook_not_found",)}
REFUSED_INPUT = {422: ("invalid_url", "unknown_event_type")}
DISABLED = {409: ("webhook_disabled",)}

H = TypeVar("H", bound=Callable[..., object])

# The OpenAPI description of the routes that take `events`: built from the outbox's catalogue, which
# the wiring cannot extend without documenting (outbox.install_resource refuses an unlisted type).
EVENT_LIST = "\n".join(f"- `{event}`: {meaning}" for event, meaning in EVENT_TYPES.items())
EVENTS_AND_SIGNATURES = f"""
**Event types** (`events`, or `["*"]` for every one; each event's `data` is the resource as the API
shows it to you, when the change happened):

{EVENT_LIST}

`{TEST_EVENT}` is sent only when you ask for it (`POST /webhooks/{{webhook_id}}/test`).

**Deliveries**: `POST <url>`, body `{{"id", "type", "created_at", "data"}}` (JSON), headers
`VirtuOZ-Event-Id` (the event's `id`, the same on every retry and redelivery: deduplicate on it),
`VirtuOZ-Timestamp` and `VirtuOZ-Signature`. A 2xx answer within the timeout is delivered; anything
else is tried again with exponential backoff (full jitter) until the retry window after the event has
passed, then the delivery is `failed`. Events about one resource reach an endpoint in order. An
endpoint failing for long enough is disabled (`disabled_reason`) and you are emailed; `PATCH` it with
`enabled: true` once it answers again.

**Signature**: `VirtuOZ-Signature: t=<unix seconds>,v1=<hex>`, where `v1` is the hex
HMAC-SHA256 under your secret of `"<t>.<raw body>"`. Accept a delivery when one `v1=` matches (compare
in constant time) and `t` is within 5 minutes of your clock. After a rotation a second `v1=` (the
previous secret) comes with it until `previous_secret_expires_at`.
"""


def described(text: str) -> Callable[[H], H]:
    """Give a handler a docstring built at import (its OpenAPI description)."""
    def describe(handler: H) -> H:
        handler.__doc__ = text
        return handler
    return describe


@webhooks.post("/webhooks", access=AUTHENTICATED, body=WebhookIn, responses={201: WebhookCreatedOut},
               errors={**REFUSED_INPUT, 409: ("webhook_limit_reached",)})
@described(f"""Register an endpoint for the events of your deposits, withdrawals, escrows, KYC and tickets.

The answer carries the endpoint's signing `secret` (`whsec_…`): this answer and rotate-secret's only.
Refusals: invalid_url (422: not an absolute https URL, or plain http or a private address where the
platform does not allow them), unknown_event_type (422, `details.unknown`), validation_error (422);
webhook_limit_reached (409: at most `VIRTUOZ_WEBHOOK_MAX_PER_USER` endpoints, 10 by default).
{EVENTS_AND_SIGNATURES}""")
async def create_webhook(request: web.Request, body: WebhookIn) -> WebhookCreatedOut:
    created = await service.create(db_session(request), request.config_dict[SETTINGS], current(request).user_id,
                                   url=body.url, events=list(body.events), description=body.description)
    return WebhookCreatedOut.of_created(created)


@webhooks.get("/webhooks", access=AUTHENTICATED, query=WebhookListQuery, responses={200: WebhookListOut},
              errors={422: ("invalid_cursor",)})
async def list_webhooks(request: web.Request, query: WebhookListQuery) -> WebhookListOut:
    """The caller's endpoints, newest first (`limit` 1–100, opaque `cursor`); never a secret."""
    page = await service.page(db_session(request), current(request).user_id, limit=query.limit, cursor=query.cursor)
    return WebhookListOut.of(page)


@webhooks.get("/webhooks/{webhook_id}", access=AUTHENTICATED, responses={200: WebhookOut}, errors=NOT_FOUND)
async def get_webhook(request: web.Request) -> WebhookOut:
    """One of the caller's endpoints; another user's: 404 webhook_not_found."""
    webhook_id = path_uuid(request, "webhook_id", "webhook_not_found")
    return WebhookOut.of(await service.get(db_session(request), current(request).user_id, webhook_id))


@webhooks.patch("/webhooks/{webhook_id}", access=AUTHENTICATED, body=WebhookPatchIn, responses={200: WebhookOut},
                errors={**NOT_FOUND, **REFUSED_INPUT})
@described(f"""Change an endpoint's `url`, `events`, `description` or `enabled`; what is left out stays.

`enabled: true` re-enables an endpoint the platform disabled and restarts its failure clock (as a new
`url` does); `enabled: false` pauses it (its pending deliveries fail). Refusals: as for creating;
another user's endpoint: 404 webhook_not_found.
{EVENTS_AND_SIGNATURES}""")
async def update_webhook(request: web.Request, body: WebhookPatchIn) -> WebhookOut:
    webhook_id = path_uuid(request, "webhook_id", "webhook_not_found")
    endpoint = await service.update(db_session(request), request.config_dict[SETTINGS], current(request).user_id,
                                    webhook_id, **body.model_dump(exclude_unset=True))
    return WebhookOut.of(endpoint)


@webhooks.route("DELETE", "/webhooks/{webhook_id}", access=AUTHENTICATED, responses={204: None}, errors=NOT_FOUND)
async def delete_webhook(request: web.Request) -> None:
    """Delete an endpoint and its deliveries (pending ones are never sent). Another user's: 404 webhook_not_found."""
    webhook_id = path_uuid(request, "webhook_id", "webhook_not_found")
    await service.remove(db_session(request), current(request).user_id, webhook_id)


@webhooks.post("/webhooks/{webhook_id}/rotate-secret", access=AUTHENTICATED, responses={200: WebhookSecretOut},
               errors=NOT_FOUND)
async def rotate_webhook_secret(request: web.Request) -> WebhookSecretOut:
    """A new signing secret, in force at once and shown in this answer only.

    The previous one keeps signing too (a second `v1=` in `VirtuOZ-Signature`) until
    `previous_secret_expires_at` (`VIRTUOZ_WEBHOOK_SECRET_ROTATION_HOURS`, 24 by default), so your
    receiver can switch without refusing a delivery. Another user's endpoint: 404 webhook_not_found.
    """
    webhook_id = path_uuid(request, "webhook_id", "webhook_not_found")
    rotated = await service.rotate_secret(db_session(request), request.config_dict[SETTINGS],
                                          current(request).user_id, webhook_id)
    return WebhookSecretOut.of(rotated)


@webhooks.get("/webhooks/{webhook_id}/deliveries", access=AUTHENTICATED, query=WebhookDeliveryQuery,
              responses={200: WebhookDeliveryListOut}, errors={**NOT_FOUND, 422: ("invalid_cursor",)})
async def list_webhook_deliveries(request: web.Request, query: WebhookDeliveryQuery) -> WebhookDeliveryListOut:
    """The endpoint's deliveries, newest first (`limit` 1–100, opaque `cursor`, optional `state`): attempts,
    the last answer's status, latency and start of body. Another user's endpoint: 404 webhook_not_found."""
    webhook_id = path_uuid(request, "webhook_id", "webhook_not_found")
    page = await service.deliveries(db_session(request), current(request).user_id, webhook_id, state=query.state,
                                    limit=query.limit, cursor=query.cursor)
    return WebhookDeliveryListOut.of(page)


@webhooks.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", access=AUTHENTICATED,
               responses={202: WebhookDeliveryOut},
               errors={404: ("webhook_not_found", "webhook_delivery_not_found"), **DISABLED})
async def redeliver_webhook(request: web.Request) -> WebhookDeliveryOut:
    """Send a delivery's event again to this endpoint: a new pending delivery, the same event id and body.

    Refusals: webhook_not_found / webhook_delivery_not_found (404: another user's, or a delivery of
    another endpoint); webhook_disabled (409: enable the endpoint first).
    """
    webhook_id = path_uuid(request, "webhook_id", "webhook_not_found")
    delivery_id = path_uuid(request, "delivery_id", "webhook_delivery_not_found")
    item = await service.redeliver(db_session(request), current(request).user_id, webhook_id, delivery_id)
    return WebhookDeliveryOut.of(item)


@webhooks.post("/webhooks/{webhook_id}/test", access=AUTHENTICATED, responses={202: WebhookDeliveryOut},
               errors={**NOT_FOUND, **DISABLED})
async def test_webhook(request: web.Request) -> WebhookDeliveryOut:
    """Send a `webhook.test` event (`data`: `{"webhook_id", "test": true}`) to this endpoint only, signed
    like any other: follow it in the endpoint's deliveries. Refusals: webhook_not_found (404),
    webhook_disabled (409: enable the endpoint first)."""
    webhook_id = path_uuid(request, "webhook_id", "webhook_not_found")
    return WebhookDeliveryOut.of(await service.send_test(db_session(request), current(request).user_id, webhook_id))
