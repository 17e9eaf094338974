"""Scoped API keys: created under the owner's session (with step-up), used as ``Authorization: Bearer vz_…``.

A key reads ``vz_<live|test>_<prefix>_<secret>``: ``prefix`` is 8 and ``secret`` 43 base62 characters
(256 random bits), so a secret scanner can tell a leaked key by its shape. Only SHA-256 of the whole
key is stored. A key acts as its owner, with at most the owner's roles at the time of each request
(read by the API like a session's), and only on the routes its scopes cover.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import datetime
from ipaddress import ip_address, ip_network

from redis.asyncio import Redis
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import Conflict, InvalidInput, NotFound, Unauthorized
from core.settings import Environment, Settings
from core.time import rfc3339, utcnow
from identity.api_keys.models import ApiKey
from identity.models import STAFF_ROLES, User
from identity.service import require_step_up, user_access

AGGREGATE = "api_key"
ALPHABET = string.ascii_letters + string.digits
PREFIX_LENGTH, SECRET_LENGTH = 8, 43  # 43 base62 characters hold 256 bits
KEY_SHAPE = re.compile(rf"vz_(live|test)_([0-9A-Za-z]{{{PREFIX_LENGTH}}})_([0-9A-Za-z]{{{SECRET_LENGTH}}})")

SCOPES = (
    "wallet:read", "deposits:read", "deposits:write", "withdrawals:read", "withdrawals:write",
    "escrow:read", "escrow:write", "webhooks:read", "webhooks:write", "compliance:read", "compliance:write",
)
STAFF_SCOPES = frozenset({"compliance:read", "compliance:write"})


class InvalidApiKey(Unauthorized):
    code, message = "invalid_api_key", "This API key is not valid."


class ApiKeyRevoked(Unauthorized):
    code, message = "api_key_revoked", "This API key has been revoked."


class ApiKeyExpired(Unauthorized):
    code, message = "api_key_expired", "This API key has expired."


class ApiKeyNotFound(NotFound):
    code, message = "api_key_not_found", "No such API key."


class ApiKeyLimitReached(Conflict):
    code, message = "api_key_limit_reached", "You have as many active API keys as allowed; revoke one first."


class StaffScopeRefused(InvalidInput):
    code, message = "scope_not_allowed", "Compliance scopes are for staff keys only."


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    text: str  # shown once, never stored


def _random(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def environment(settings: Settings) -> str:
    return "live" if settings.env is Environment.PRODUCTION else "test"


def is_api_key(token: str) -> bool:
    return token.startswith("vz_")


def parse(token: str) -> str:
    """The key's prefix; 401 ``invalid_api_key`` for anything not shaped like a key."""
    shape = KEY_SHAPE.fullmatch(token)
    if shape is None:
        raise InvalidApiKey()
    return shape.group(2)


def allowed_from(key: ApiKey, client_ip: str) -> bool:
    if not key.allowed_ips:
        return True
    try:
        address = ip_address(client_ip)
    except ValueError:
        return False
    return any(address in ip_network(network) for network in key.allowed_ips)


def _active(now: datetime):  # type: ignore[no-untyped-def]
    return (ApiKey.revoked_at.is_(None)) & (ApiKey.expires_at.is_(None) | (ApiKey.expires_at > now))


async def create(session: AsyncSession, settings: Settings, redis: Redis, user_id: uuid.UUID, *, name: str,
                 scopes: list[str], expires_at: datetime | None, allowed_ips: list[str] | None,
                 totp_code: str | None) -> IssuedKey:
    """422 for a staff scope on a customer's key, then the step-up (401, 429), then 409 past the cap.
    The step-up locks the user's row: two creations at once cannot both pass the cap."""
    access = await user_access(session, user_id)
    roles = set(access[0]) if access else set()
    if set(scopes) & STAFF_SCOPES and not roles & STAFF_ROLES:
        raise StaffScopeRefused(details={"field": "scopes", "scopes": sorted(set(scopes) & STAFF_SCOPES)})
    await require_step_up(session, settings, redis, user_id, totp_code)
    now = utcnow()
    active = await session.scalar(select(func.count()).select_from(ApiKey)
                                  .where(ApiKey.user_id == user_id, _active(now)))
    if (active or 0) >= settings.api_key_max_per_user:
        raise ApiKeyLimitReached(details={"limit": settings.api_key_max_per_user})
    user = await session.get_one(User, user_id)
    prefix, env = _random(PREFIX_LENGTH), environment(settings)
    text = f"vz_{env}_{prefix}_{_random(SECRET_LENGTH)}"
    key = ApiKey(id=uuid.uuid4(), user_id=user_id, name=name, prefix=prefix, environment=env,
                 secret_digest=digest(text), scopes=sorted(set(scopes)), allowed_ips=allowed_ips or None,
                 stepped_up=user.mfa_enabled, expires_at=expires_at)
    session.add(key)
    await session.flush()
    await audit.append(session, AGGREGATE, key.id, "api_key.created", {
        "user_id": str(user_id), "name": name, "prefix": prefix, "scopes": key.scopes,
        "allowed_ips": key.allowed_ips, "stepped_up": key.stepped_up,
        "expires_at": None if expires_at is None else rfc3339(expires_at)}, actor=user_id)
    return IssuedKey(key, text)


async def list_keys(session: AsyncSession, user_id: uuid.UUID) -> list[ApiKey]:
    return list(await session.scalars(select(ApiKey).where(ApiKey.user_id == user_id)
                                      .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())))


async def revoke(session: AsyncSession, user_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    """Another user's key does not exist, as far as the caller can tell (404); revoking twice changes nothing."""
    key = await session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id)
                               .with_for_update())
    if key is None:
        raise ApiKeyNotFound()
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await session.flush()
        await audit.append(session, AGGREGATE, key.id, "api_key.revoked", {"user_id": str(user_id)}, actor=user_id)
    return key


async def find(session: AsyncSession, prefix: str) -> ApiKey | None:
    return await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))


def check(key: ApiKey | None, token: str, now: datetime) -> ApiKey:
    """The key ``token`` names, if it is that key, live and unexpired; 401 otherwise."""
    if key is None or not hmac.compare_digest(key.secret_digest, digest(token)):
        raise InvalidApiKey()
    if key.revoked_at is not None:
        raise ApiKeyRevoked()
    if key.expires_at is not None and key.expires_at <= now:
        raise ApiKeyExpired()
    return key


async def record_use(session: AsyncSession, used: dict[uuid.UUID, datetime]) -> None:
    """Write the last use of many keys in one statement (the API batches them)."""
    if not used:
        return
    await session.execute(_RECORD_USE, {"ids": list(used), "times": list(used.values())})


# Many API processes flush their batches: a later use never gives way to an earlier one.
_RECORD_USE = text(
    "UPDATE api_keys SET last_used_at = GREATEST(COALESCE(api_keys.last_used_at, x.at), x.at)"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:times AS timestamptz[])) AS x(id, at) WHERE api_keys.id = x.id")
