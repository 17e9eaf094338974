"""Signed operator payloads: Ed25519 over the canonical JSON of a payload.

Operators change live configuration (i18n catalogues, the readiness policy) by sending an
envelope ``{"payload": {..., "issued_at", "expires_at", "nonce"}, "signature", "key_id"}``.
The signature covers the canonical JSON of ``payload`` so whitespace and key order in transit
do not matter. This module only proves *who* signed *what* and *when it is valid*; replay
protection (remembering used nonces) belongs to the API, which keeps them in Redis for
``nonce_ttl`` seconds.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from core.errors import AppError, InvalidInput, Unauthorized
from core.time import rfc3339, utcnow

ENVELOPE_FIELDS = frozenset({"payload", "signature", "key_id"})
SIGNED_FIELDS = ("issued_at", "expires_at", "nonce")
MIN_NONCE_LENGTH = 16

# Strict shapes: the stdlib decoders are lenient (b64decode drops unknown characters unless
# validated, fromisoformat accepts dates without times and ISO "basic" forms), and a signed
# payload should mean exactly one thing.
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


class SignedPayloadRefused(AppError):
    """Base of every refusal, so a caller can catch them all at once."""


class InvalidSignedPayload(SignedPayloadRefused, InvalidInput):
    status, code, message = 422, "invalid_signed_payload", "The signed payload envelope is malformed."


class SignedPayloadLifetimeTooLong(SignedPayloadRefused, InvalidInput):
    status, code, message = (
        422, "signed_payload_lifetime_too_long", "The signed payload is valid for longer than allowed.",
    )


class UnknownOperatorKey(SignedPayloadRefused, Unauthorized):
    status, code, message = 401, "unknown_operator_key", "No operator key is configured under this key_id."


class InvalidSignature(SignedPayloadRefused, Unauthorized):
    status, code, message = 401, "invalid_signature", "The signature does not match the payload and key."


class SignedPayloadExpired(SignedPayloadRefused, Unauthorized):
    status, code, message = 401, "signed_payload_expired", "The signed payload has expired; sign it again."


class SignedPayloadNotYetValid(SignedPayloadRefused, Unauthorized):
    status, code, message = (
        401, "signed_payload_not_yet_valid", "The signed payload is issued in the future; check the signer's clock.",
    )


@dataclass(frozen=True)
class VerifiedPayload:
    key_id: str
    nonce: str
    issued_at: datetime
    expires_at: datetime
    payload: dict[str, Any]  # what the operator asked for, without issued_at/expires_at/nonce
    signed_payload: dict[str, Any]  # everything that was signed, for the audit trail


def canonical_json(payload: dict[str, Any]) -> bytes:
    """The exact bytes that are signed; any other serialization of the same object verifies."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding; raise ValueError on anything else."""
    if not _BASE64URL.fullmatch(text):
        raise ValueError("not base64url")
    unpadded = text.rstrip("=")
    try:
        return base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except binascii.Error as error:  # e.g. a length that no byte string encodes to
        raise ValueError("not base64url") from error


def load_public_key(text: str) -> Ed25519PublicKey:
    """A configured operator key; ValueError (without the key) if it is not 32 base64url bytes.

    Settings validation can call this at startup so a typo never waits for the first reload.
    """
    try:
        raw = b64url_decode(text.strip())
    except ValueError:
        raise ValueError("operator public key is not base64url") from None
    if len(raw) != 32:
        raise ValueError("operator public key must be 32 raw Ed25519 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def generate_keypair() -> tuple[str, str]:
    """(private key as PEM PKCS8 text, public key as base64url of its 32 raw bytes)."""
    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    public_raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return private_pem, b64url_encode(public_raw)


def sign_payload(
    private_key_pem: str,
    key_id: str,
    payload: dict[str, Any],
    *,
    lifetime: timedelta = timedelta(minutes=10),
    now: datetime | None = None,
) -> dict[str, Any]:
    """Return the envelope for ``payload``; fields the caller already set are kept as given."""
    private_key = serialization.load_pem_private_key(private_key_pem.encode("utf-8"), password=None)
    if not isinstance(private_key, Ed25519PrivateKey):
        raise ValueError("the operator key must be an Ed25519 private key")
    # Whole seconds: the times are read by humans in audit logs, sub-second precision adds nothing.
    issued = (now or utcnow()).replace(microsecond=0)
    signed = dict(payload)  # never mutate the caller's dict
    signed.setdefault("issued_at", rfc3339(issued))
    signed.setdefault("expires_at", rfc3339(_parse_time(signed["issued_at"], "issued_at") + lifetime))
    signed.setdefault("nonce", secrets.token_urlsafe(18))
    signature = private_key.sign(canonical_json(signed))
    return {"payload": signed, "signature": b64url_encode(signature), "key_id": key_id}


def verify_envelope(
    envelope: dict[str, Any],
    public_keys: dict[str, str],
    *,
    now: datetime | None = None,
    max_lifetime: timedelta = timedelta(hours=1),
    clock_skew: timedelta = timedelta(minutes=2),
) -> VerifiedPayload:
    """Check shape, key, signature, lifetime and validity window, in that order.

    The signature is checked before anything the payload claims about time, so an unsigned
    or forged envelope only ever learns ``invalid_signature``. A configured key that is not a
    valid Ed25519 key is a server misconfiguration and raises ValueError (rendered as a 500).
    """
    if not isinstance(envelope, dict):
        raise InvalidSignedPayload("The signed payload envelope must be a JSON object.")
    missing = sorted(ENVELOPE_FIELDS - envelope.keys())
    extra = sorted(str(key) for key in envelope.keys() - ENVELOPE_FIELDS)
    if missing or extra:
        raise InvalidSignedPayload(
            "The envelope must have exactly the fields payload, signature and key_id.",
            details={"missing": missing, "unexpected": extra},
        )
    payload, signature_text, key_id = envelope["payload"], envelope["signature"], envelope["key_id"]
    if not isinstance(payload, dict):
        raise InvalidSignedPayload("payload must be a JSON object.", details={"field": "payload"})
    if not isinstance(key_id, str) or not key_id:
        raise InvalidSignedPayload("key_id must be a non-empty string.", details={"field": "key_id"})
    if not isinstance(signature_text, str):
        raise InvalidSignedPayload("signature must be a base64url string.", details={"field": "signature"})
    try:
        signature = b64url_decode(signature_text)
    except ValueError:
        raise InvalidSignedPayload("signature is not valid base64url.", details={"field": "signature"}) from None
    if len(signature) != 64:
        raise InvalidSignedPayload("signature must be 64 bytes (Ed25519).", details={"field": "signature"})
    for field in SIGNED_FIELDS:
        if not isinstance(payload.get(field), str):
            raise InvalidSignedPayload(f"payload.{field} must be a string.", details={"field": f"payload.{field}"})
    issued_at = _parse_time(payload["issued_at"], "issued_at")
    expires_at = _parse_time(payload["expires_at"], "expires_at")
    nonce = payload["nonce"]
    if len(nonce) < MIN_NONCE_LENGTH:
        raise InvalidSignedPayload(
            f"payload.nonce must be at least {MIN_NONCE_LENGTH} characters.", details={"field": "payload.nonce"}
        )
    try:
        message = canonical_json(payload)
    except ValueError:  # e.g. a lone surrogate escape, which has no UTF-8 form
        raise InvalidSignedPayload(
            "payload cannot be encoded as canonical JSON.", details={"field": "payload"}
        ) from None

    if key_id not in public_keys:
        raise UnknownOperatorKey()
    try:
        load_public_key(public_keys[key_id]).verify(signature, message)
    except _CryptoInvalidSignature:
        raise InvalidSignature() from None

    if expires_at <= issued_at:
        raise InvalidSignedPayload("payload.expires_at must be after payload.issued_at.",
                                   details={"field": "payload.expires_at"})
    if expires_at - issued_at > max_lifetime:
        raise SignedPayloadLifetimeTooLong(
            f"The signed payload may be valid for at most {_minutes(max_lifetime)} minutes.",
            details={"max_lifetime_seconds": int(max_lifetime.total_seconds())},
        )
    moment = now or utcnow()
    if moment > expires_at + clock_skew:
        raise SignedPayloadExpired()
    if issued_at > moment + clock_skew:
        raise SignedPayloadNotYetValid()
    return VerifiedPayload(
        key_id=key_id,
        nonce=nonce,
        issued_at=issued_at,
        expires_at=expires_at,
        payload={key: value for key, value in payload.items() if key not in SIGNED_FIELDS},
        signed_payload=dict(payload),
    )


def nonce_ttl(
    verified: VerifiedPayload, now: datetime | None = None, *, clock_skew: timedelta = timedelta(minutes=2)
) -> int:
    """Seconds a used nonce must be remembered: as long as verify_envelope would still accept it."""
    remaining = (verified.expires_at + clock_skew - (now or utcnow())).total_seconds()
    return max(1, math.ceil(remaining))


def _parse_time(text: str, field: str) -> datetime:
    if not isinstance(text, str) or not _RFC3339.fullmatch(text):
        raise InvalidSignedPayload(
            f"payload.{field} must be an RFC 3339 time with a zone, e.g. 2026-01-31T12:00:00Z.",
            details={"field": f"payload.{field}"},
        )
    try:
        # RFC 3339 allows a lowercase "t"/"z"; fromisoformat wants them uppercase.
        return datetime.fromisoformat(text.upper()).astimezone(UTC)
    except ValueError:  # shape is right but the date is not, e.g. month 13
        raise InvalidSignedPayload(
            f"payload.{field} is not a valid date and time.", details={"field": f"payload.{field}"}
        ) from None


def _minutes(span: timedelta) -> int:
    return int(span.total_seconds() // 60)
