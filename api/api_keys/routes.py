"""The caller's API keys: create (shown once), list, revoke. Sessions only: a key never manages keys."""

from __future__ import annotations

from aiohttp import web

from api.access import AUTHENTICATED
from api.api_keys.schemas import ApiKeyCreatedOut, ApiKeyIn, ApiKeyListOut, ApiKeyOut
from api.http import path_uuid
from api.keys import REDIS, SETTINGS
from api.middleware import db_session
from api.principal import current
from api.registry import Routes
from identity.api_keys import service

api_keys = Routes(tag="me")


@api_keys.post("/api-keys", access=AUTHENTICATED, body=ApiKeyIn, responses={201: ApiKeyCreatedOut},
               errors={401: ("mfa_required", "invalid_mfa_code"), 409: ("api_key_limit_reached",),
                       422: ("scope_not_allowed",), 429: ("too_many_attempts",)})
async def create_api_key(request: web.Request, body: ApiKeyIn) -> ApiKeyCreatedOut:
    """Create an API key for machine access: `Authorization: Bearer vz_<live|test>_<prefix>_<secret>`.

    The key acts as you, with at most your roles at the time of each request, on the routes its
    `scopes` cover (each operation's `x-api-key-scope`), from `allowed_ips` when set, within its rate
    limit (429 `rate_limited` with `Retry-After`; `RateLimit-*` headers on every answer). The key is in
    this answer only. With MFA on, `totp_code` is required; a key created so with `withdrawals:write`
    may request withdrawals without a code to addresses active in your address book.
    Refusals: scope_not_allowed (422: a compliance scope on a customer's key); mfa_required /
    invalid_mfa_code (401), too_many_attempts (429); api_key_limit_reached (409).
    """
    settings = request.config_dict[SETTINGS]
    issued = await service.create(db_session(request), settings, request.config_dict[REDIS], current(request).user_id,
                                  name=body.name, scopes=list(body.scopes), expires_at=body.expires_at,
                                  allowed_ips=body.allowed_ips, totp_code=body.totp_code)
    return ApiKeyCreatedOut(**ApiKeyOut.of(issued.key).model_dump(), key=issued.text)


@api_keys.get("/api-keys", access=AUTHENTICATED, responses={200: ApiKeyListOut})
async def list_api_keys(request: web.Request) -> ApiKeyListOut:
    """The caller's API keys, newest first, revoked ones included: metadata only, never a key."""
    keys = await service.list_keys(db_session(request), current(request).user_id)
    return ApiKeyListOut(items=[ApiKeyOut.of(key) for key in keys])


@api_keys.post("/api-keys/{key_id}/revoke", access=AUTHENTICATED, responses={200: ApiKeyOut},
               errors={404: ("api_key_not_found",)})
async def revoke_api_key(request: web.Request) -> ApiKeyOut:
    """Revoke a key: within a second every API process refuses it (401 api_key_revoked). Revoking twice
    changes nothing; another user's key: 404 api_key_not_found."""
    key_id = path_uuid(request, "key_id", "api_key_not_found")
    return ApiKeyOut.of(await service.revoke(db_session(request), current(request).user_id, key_id))
