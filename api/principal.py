"""Who is calling, and may they: token → active session (or API key) → current roles, on every request.

Role lookups, session liveness and API keys are cached per API process (sessions and keys for at
most ``session_cache_seconds``, ≤ 1 s, so a revoked session or key stops working at once); role
caches are dropped on a Redis pub/sub invalidation that every API process receives (api/control.py).
A verified access token's claims are kept until its ``exp``: the same token string verifies to the
same claims, so only its expiry needs checking again. The lookups are Core statements on the
read-only engine, each run once more on a fresh connection if the first turned out dead.

An API key (``Bearer vz_…``) acts as its owner with the owner's current roles, on the routes its
scopes cover (each route declares its scope in the registry), from its allowed networks, within
its rate limit. Its last use is written in batches (``record_key_use``), not on every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web

from api.access import Access
from api.client_ip import client_ip
from api.keys import (
    IDENTITY_CACHE,
    PRINCIPAL,
    READ_ENGINE,
    READ_SESSIONS,
    REDIS,
    SESSIONS,
    SETTINGS,
)
from core.db import connection_lost
from core.errors import Forbidden, Unauthorized
from core.settings import Settings
from core.time import utcnow
from identity import service
from identity.api_keys import rate_limit
from identity.api_keys import service as api_keys
from identity.api_keys.models import ApiKey
from identity.models import STAFF_ROLES
from identity.tokens import AccessClaims, decode_access_token

log = logging.getLogger(__name__)

ACCESS_COOKIE = "access_token"
REFRESH_COOKIE = "refresh_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_CACHED = 50_000
KEY_USE_FLUSH_SECONDS = 5.0
QUOTA = web.RequestKey("api_key_quota", rate_limit.Quota)
T = TypeVar("T")


class SessionRevoked(Unauthorized):
    code, message = "session_revoked", "This session has ended; log in again."


class InsufficientScope(Forbidden):
    code, message = "insufficient_scope", "This API key's scopes do not cover this route."


class AddressNotAllowed(Forbidden):
    code, message = "ip_not_allowed", "This API key may not be used from this address."


@dataclass(frozen=True)
class KeyGrant:
    """What an API key allows, beyond its owner's roles."""

    id: uuid.UUID
    scopes: frozenset[str]
    stepped_up: bool  # created with a fresh TOTP code


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    session_id: uuid.UUID
    roles: frozenset[str]
    via_cookie: bool
    expires_at: int = 0  # the access token's ``exp`` (epoch seconds)
    api_key: KeyGrant | None = None  # set when the caller authenticated with an API key

    @property
    def is_staff(self) -> bool:
        return bool(self.roles & STAFF_ROLES)

    def has_any(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))


@dataclass
class IdentityCache:
    session_ttl: float
    # keyed by (sid, sub): a session is live only for the user it belongs to
    sessions: dict[tuple[uuid.UUID, uuid.UUID], tuple[bool, float]] = field(default_factory=dict)
    access: dict[uuid.UUID, tuple[list[str], str]] = field(default_factory=dict)
    keys: dict[str, tuple[ApiKey | None, float]] = field(default_factory=dict)  # by prefix
    tokens: dict[str, AccessClaims] = field(default_factory=dict)  # verified access tokens, until their exp
    key_uses: dict[uuid.UUID, datetime] = field(default_factory=dict)  # not yet written

    def drop_roles(self, user_id: uuid.UUID | None = None) -> None:
        if user_id is None:
            self.access.clear()
        else:
            self.access.pop(user_id, None)

    def drop_sessions(self) -> None:
        self.sessions.clear()
        self.keys.clear()
        self.tokens.clear()

    def claims(self, settings: Settings, token: str) -> AccessClaims:
        """The token's claims, verified (signature, algorithm, required claims) the first time it is seen.
        A hit is the very string that verified, so only the expiry is checked again, as PyJWT does it
        (valid while ``exp`` is after now); an expired token is decoded again and refused there."""
        claims = self.tokens.get(token)
        if claims is None or claims.expires_at <= time.time():
            claims = decode_access_token(settings, token)
            self.tokens[token] = claims
        return claims


def _bearer(request: web.Request) -> tuple[str | None, bool]:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    return request.cookies.get(ACCESS_COOKIE), True


async def authenticate(request: web.Request) -> Principal | None:
    token, via_cookie = _bearer(request)
    if not token:
        return None
    app = request.config_dict
    cache: IdentityCache = app[IDENTITY_CACHE]
    if (len(cache.sessions) > MAX_CACHED or len(cache.access) > MAX_CACHED or len(cache.keys) > MAX_CACHED
            or len(cache.tokens) > MAX_CACHED):
        cache.drop_sessions()  # bounded memory: a full cache starts over, it is only a cache
        cache.drop_roles()
    if api_keys.is_api_key(token) and not via_cookie:
        return await _authenticate_key(request, cache, token)
    claims = cache.claims(app[SETTINGS], token)
    now = time.monotonic()
    key = (claims.session_id, claims.user_id)
    cached = cache.sessions.get(key)
    if cached is None or cached[1] < now:
        # The session and the user's current roles, read again together (one statement).
        access = await _read(request, lambda db: service.session_access(db, claims.session_id, claims.user_id))
        cached = (access is not None, now + cache.session_ttl)
        cache.sessions[key] = cached
        if access is not None:
            cache.access[claims.user_id] = access
    if not cached[0]:
        raise SessionRevoked()
    roles = await _roles(request, cache, claims.user_id, refresh=False)
    return Principal(claims.user_id, claims.session_id, roles, via_cookie, claims.expires_at)


async def _roles(request: web.Request, cache: IdentityCache, user_id: uuid.UUID, *, refresh: bool) -> frozenset[str]:
    """The user's current roles (read again with the session or key they came with, and whenever an
    invalidation dropped them); 401 for a user that is gone, 403 for a suspended one."""
    access = None if refresh else cache.access.get(user_id)
    if access is None:
        access = await _read(request, lambda db: service.user_access(db, user_id))
        if access is None:
            raise SessionRevoked()
        cache.access[user_id] = access
    roles, status = access
    if status != "active":
        raise service.AccountSuspended()
    return frozenset(roles)


async def _read(request: web.Request, query: Callable[[Any], Awaitable[T]], *, orm: bool = False) -> T:
    """One lookup on a read-only connection (no transaction; a session when ``orm``); once more on a
    fresh connection if the first was found dead (PostgreSQL restarted since it was pooled): a read
    changes nothing, so running it again is safe whatever the request is."""
    app = request.config_dict
    for attempt in (1, 2):
        try:
            async with app[READ_SESSIONS]() if orm else app[READ_ENGINE].connect() as db:
                return await query(db)
        except Exception as error:
            if attempt == 2 or not connection_lost(error):
                raise
            log.warning("connection lost while authenticating; reading once more: %s", error)
    raise AssertionError("unreachable")


async def _authenticate_key(request: web.Request, cache: IdentityCache, token: str) -> Principal:
    prefix = api_keys.parse(token)
    now = time.monotonic()
    cached = cache.keys.get(prefix)
    stale = cached is None or cached[1] < now
    if stale:
        found = await _read(request, lambda session: api_keys.find(session, prefix), orm=True)
        cached = (found, now + cache.session_ttl)
        cache.keys[prefix] = cached
    key = api_keys.check(cached[0], token, utcnow())
    if not api_keys.allowed_from(key, client_ip(request)):
        raise AddressNotAllowed(details={"client_ip": client_ip(request)})
    roles = await _roles(request, cache, key.user_id, refresh=stale)
    request[QUOTA] = await rate_limit.take(request.config_dict[REDIS], key.id,
                                           request.config_dict[SETTINGS].api_key_requests_per_minute)
    cache.key_uses[key.id] = utcnow()
    return Principal(key.user_id, key.id, roles, False, 0, KeyGrant(key.id, frozenset(key.scopes), key.stepped_up))


def _allowed_origins(request: web.Request) -> set[str]:
    settings = request.config_dict[SETTINGS]
    allowed = set(settings.cors_origins) | {f"{request.scheme}://{request.host}"}
    if settings.public_url:
        parts = urlsplit(settings.public_url)
        allowed.add(f"{parts.scheme}://{parts.netloc}")
    return allowed


def check_origin(request: web.Request) -> None:
    """Refuse a state-changing request authenticated by a cookie from a foreign Origin (CSRF)."""
    origin = request.headers.get("Origin")
    if request.method not in SAFE_METHODS and origin and origin not in _allowed_origins(request):
        raise Forbidden("Cross-site request refused.", code="csrf_origin_refused", details={"origin": origin})


async def authorize(request: web.Request, access: Access, scope: str | None = None) -> Principal | None:
    """Enforce a route's declared access (and, for an API key, its ``scope``: None, not open to
    keys); the principal is then ``request[PRINCIPAL]``."""
    if access.public:
        return None
    principal = await authenticate(request)
    if principal is None:
        raise Unauthorized("Log in first: send the access token as a cookie or a Bearer header.")
    if principal.api_key is not None and (scope is None or scope not in principal.api_key.scopes):
        raise InsufficientScope(
            "This route is not open to API keys." if scope is None else f"This route needs the scope {scope}.",
            details={"required_scope": scope})
    # CSRF: a cookie rides along with cross-site requests, a Bearer header never does.
    if principal.via_cookie:
        check_origin(request)
    if access.roles and not principal.roles & access.roles:
        raise Forbidden(details={"required_roles": sorted(access.roles)})
    request[PRINCIPAL] = principal
    return principal


def current(request: web.Request) -> Principal:
    """The caller of a route that declared non-public access (authorize ran before the handler)."""
    return request[PRINCIPAL]


async def add_quota_headers(request: web.Request, response: web.StreamResponse) -> None:
    """An API key's answers say how much of its rate limit is left (RateLimit-* headers)."""
    quota = request.get(QUOTA)
    if quota is not None:
        response.headers.update(quota.headers())


async def flush_key_uses(app: web.Application) -> None:
    cache: IdentityCache = app[IDENTITY_CACHE]
    used, cache.key_uses = cache.key_uses, {}
    if used:
        async with app[SESSIONS].begin() as session:
            await api_keys.record_use(session, used)


async def record_key_use(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the keys' last uses, written every few seconds and at shutdown."""

    async def every_few_seconds() -> None:
        while True:
            await asyncio.sleep(KEY_USE_FLUSH_SECONDS)
            try:
                await flush_key_uses(app)
            except Exception:  # the database is away: the uses are lost, never the requests
                log.warning("could not record API key uses", exc_info=True)

    task = asyncio.create_task(every_few_seconds())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    with contextlib.suppress(Exception):
        await flush_key_uses(app)
