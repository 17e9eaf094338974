"""Access JWTs (PyJWT, algorithm allowlist) and opaque refresh tokens."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

import jwt

from core.errors import Unauthorized
from core.settings import Settings
from core.time import utcnow


class InvalidToken(Unauthorized):
    code, message = "invalid_token", "The access token is invalid or expired."


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    roles: tuple[str, ...]
    expires_at: int = 0  # epoch seconds (``exp``, a JWT NumericDate): long-lived connections end there


def _signing_key(settings: Settings) -> str:
    if settings.jwt_algorithm == "EdDSA":
        assert settings.jwt_private_key is not None
        return settings.jwt_private_key.get_secret_value()
    return settings.secret_key.get_secret_value()


def _verifying_key(settings: Settings) -> str:
    if settings.jwt_algorithm == "EdDSA":
        assert settings.jwt_public_key is not None
        return settings.jwt_public_key
    return settings.secret_key.get_secret_value()


def issue_access_token(settings: Settings, user_id: uuid.UUID, session_id: uuid.UUID, roles: list[str]) -> str:
    now = utcnow()
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "roles": sorted(roles),
        "iat": now,
        "exp": now + timedelta(seconds=settings.access_token_ttl_seconds),
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, _signing_key(settings), algorithm=settings.jwt_algorithm)


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    try:
        # The allowlist is the one configured algorithm: "none" and any other are refused.
        claims = jwt.decode(
            token,
            _verifying_key(settings),
            algorithms=[settings.jwt_algorithm],
            options={"require": ["sub", "sid", "exp", "iat", "jti"]},
        )
        return AccessClaims(uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"]), tuple(claims.get("roles", ())),
                            int(claims["exp"]))
    except (jwt.PyJWTError, ValueError, TypeError):
        raise InvalidToken() from None


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)
