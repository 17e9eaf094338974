"""TOTP (RFC 6238, via pyotp) with single-use codes, and recovery codes."""

from __future__ import annotations

import secrets
import time

import pyotp

from core.crypto import seal, token_digest, unseal

PURPOSE = "mfa-totp-secret"
STEP_SECONDS = 30
DRIFT_STEPS = 1  # accept the previous and next code too: phones' clocks drift
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # base32, lowercase


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def encrypt_secret(platform_secret: str, secret: str) -> bytes:
    return seal(platform_secret, PURPOSE, secret.encode())


def decrypt_secret(platform_secret: str, sealed: bytes) -> str:
    return unseal(platform_secret, PURPOSE, sealed).decode()


def matching_step(secret: str, code: str, last_step: int | None, now: float | None = None) -> int | None:
    """The time-step ``code`` belongs to, if it is valid and newer than ``last_step``.

    pyotp accepts a code again within its window (LIBRARIES.md): remembering the last accepted
    step and refusing it and every older one makes each code usable once.
    """
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = int((time.time() if now is None else now) // STEP_SECONDS)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if secrets.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step if last_step is None or step > last_step else None
    return None


def new_recovery_codes() -> list[str]:
    # 10 characters of base32 (50 bits) each, shown once, grouped for reading aloud.
    # (pyotp.random_base32 refuses lengths under 32 characters: it is for TOTP secrets.)
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def recovery_digest(code: str) -> str:
    return token_digest(code.strip().lower().replace(" ", ""))
