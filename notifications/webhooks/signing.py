"""Webhook secrets and signatures.

A secret is generated here, shown to its owner once, and stored sealed (AES-GCM under a key derived
from the platform secret): signing needs it back, so a digest would not do. A delivery is signed
``VirtuOZ-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``; while a
rotated-out secret is still valid, a second ``v1=`` carries its signature, so a receiver that has
not switched yet keeps verifying.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from core.crypto import seal, unseal

PURPOSE = "webhook-secret"
PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def seal_secret(platform_secret: str, secret: str) -> bytes:
    return seal(platform_secret, PURPOSE, secret.encode())


def unseal_secret(platform_secret: str, sealed: bytes) -> str:
    return unseal(platform_secret, PURPOSE, sealed).decode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secrets_in_force: list[str], timestamp: int, body: bytes) -> str:
    """The header value for ``body`` sent at ``timestamp``: one ``v1=`` per secret in force, current first."""
    return ",".join([f"t={timestamp}", *(f"v1={signature(secret, timestamp, body)}" for secret in secrets_in_force)])


def verify(secret: str, header: str, body: bytes, *, now: int, tolerance_seconds: int = 300) -> bool:
    """What a receiver does (the README shows it): any ``v1=`` matching, and a timestamp not too old."""
    parts = [part.split("=", 1) for part in header.split(",") if "=" in part]
    timestamps = [value for key, value in parts if key == "t"]
    if len(timestamps) != 1 or not timestamps[0].isdigit() or abs(now - int(timestamps[0])) > tolerance_seconds:
        return False
    expected = signature(secret, int(timestamps[0]), body)
    return any(key == "v1" and hmac.compare_digest(value, expected) for key, value in parts)
