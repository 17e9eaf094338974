"""Password hashing (argon2id, OWASP parameters) and the password policy (ASVS 2.1)."""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from core.errors import InvalidInput

MIN_LENGTH = 12
MAX_LENGTH = 128
COMMON_PASSWORDS = Path(__file__).with_name("common-passwords.txt")

# OWASP's argon2id floor: m=19 MiB, t=2, p=1.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


class WeakPassword(InvalidInput):
    code, message = "weak_password", "The password does not meet the policy."


@cache
def _common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS.read_text().splitlines()
    return frozenset(line.strip().lower() for line in lines if line and not line.startswith("#"))


def check_policy(password: str, email: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(details={"reason": f"at least {MIN_LENGTH} characters"})
    if len(password) > MAX_LENGTH:
        raise WeakPassword(details={"reason": f"at most {MAX_LENGTH} characters"})
    if password.lower() in _common_passwords():
        raise WeakPassword(details={"reason": "this password is in a list of common passwords"})
    local_part = email.split("@", 1)[0].lower()
    if len(local_part) >= 4 and local_part in password.lower():
        raise WeakPassword(details={"reason": "the password contains the email address"})


async def hash_password(password: str) -> str:
    # ~50 ms of CPU and 19 MiB each: off the event loop (LIBRARIES.md).
    return await asyncio.get_running_loop().run_in_executor(None, _hasher.hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str, password: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(None, _verify, password_hash, password)


@cache
def dummy_hash() -> str:
    """Verified against for unknown emails, so they cost what a known one does (no user enumeration)."""
    return _hasher.hash("virtuoz-dummy-password-for-timing")
