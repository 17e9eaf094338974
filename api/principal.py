"""Who is calling, and may they: token → active session → current roles, checked on every request.

Role lookups and session liveness are cached per API process (sessions for at most
``session_cache_seconds``, ≤ 1 s, so a revoked session stops working at once); role caches are
dropped on a Redis pub/sub invalidation that every API process receives (api/control.py).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

from api.access import Access
from api.keys import IDENTITY_CACHE, PRINCIPAL, SESSIONS, SETTINGS
from core.errors import Forbidden, Unauthorized
from identity import service
from identity.models import STAFF_ROLES
from identity.tokens import decode_access_token

ACCESS_COOKIE = "access_token"
REFRESH_COOKIE = "refresh_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_CACHED = 50_000


class SessionRevoked(Unauthorized):
    code, message = "session_revoked", "This session has ended; log in again."


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    session_id: uuid.UUID
    roles: frozenset[str]
    via_cookie: bool
    expires_at: int = 0  # the access token's ``exp`` (epoch seconds)

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

    def drop_roles(self, user_id: uuid.UUID | None = None) -> None:
        if user_id is None:
            self.access.clear()
        else:
            self.access.pop(user_id, None)

    def drop_sessions(self) -> None:
        self.sessions.clear()


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
    claims = decode_access_token(app[SETTINGS], token)
    cache: IdentityCache = app[IDENTITY_CACHE]
    now = time.monotonic()
    key = (claims.session_id, claims.user_id)
    cached = cache.sessions.get(key)
    access = cache.access.get(claims.user_id)
    if len(cache.sessions) > MAX_CACHED or len(cache.access) > MAX_CACHED:
        cache.drop_sessions()  # bounded memory: a full cache starts over, it is only a cache
        cache.drop_roles()
    if cached is None or cached[1] < now or access is None:
        async with app[SESSIONS]() as session:
            active = await service.session_is_active(session, claims.session_id, claims.user_id)
            access = await service.user_access(session, claims.user_id)
        cache.sessions[key] = (active, now + cache.session_ttl)
        if access is not None:
            cache.access[claims.user_id] = access
        cached = (active, now + cache.session_ttl)
    if not cached[0] or access is None:
        raise SessionRevoked()
    roles, status = access
    if status != "active":
        raise service.AccountSuspended()
    return Principal(claims.user_id, claims.session_id, frozenset(roles), via_cookie, claims.expires_at)


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


async def authorize(request: web.Request, access: Access) -> Principal | None:
    """Enforce a route's declared access; the principal is then ``request[PRINCIPAL]``."""
    if access.public:
        return None
    principal = await authenticate(request)
    if principal is None:
        raise Unauthorized("Log in first: send the access token as a cookie or a Bearer header.")
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
