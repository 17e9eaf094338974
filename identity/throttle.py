"""Throttling of guesses: failure counters in Redis, over a window that starts at the first failure.

Logins count per account and per IP; step-up codes (the TOTP a withdrawal asks for) per account,
with the login limits, on counters of their own: a stolen session cannot try the million codes,
and a guessed-at step-up does not lock the owner out of logging in.
"""

from __future__ import annotations

import hashlib
import uuid

from redis.asyncio import Redis

from core.errors import TooManyRequests
from core.settings import Settings

PREFIX = "virtuoz:login-failures"
STEP_UP_PREFIX = "virtuoz:step-up-failures"


def _keys(email: str, ip: str) -> tuple[str, str]:
    # Hash the email: keys are visible to anyone with Redis access, emails are personal data.
    account = hashlib.sha256(email.encode()).hexdigest()[:32]
    return f"{PREFIX}:account:{account}", f"{PREFIX}:ip:{ip}"


async def _check(redis: Redis, limits: dict[str, int], what: str) -> None:
    """429 with Retry-After when any counter has reached its limit."""
    for key, failures in zip(limits, await redis.mget(*limits), strict=True):
        if failures is not None and int(failures) >= limits[key]:
            retry_after = max(await redis.ttl(key), 1)
            raise TooManyRequests(
                f"Too many failed {what}; retry later.",
                details={"retry_after_seconds": retry_after},
                headers={"Retry-After": str(retry_after)},
            )


async def _record(redis: Redis, keys: tuple[str, ...], window_seconds: int) -> None:
    # The window starts at the first failure: SET NX EX creates the counter with its expiry, INCR
    # keeps it. (EXPIRE ... NX would do the same but needs Redis 7; the embedded server is 6.2.)
    async with redis.pipeline(transaction=True) as pipe:
        for key in keys:
            pipe.set(key, 0, ex=window_seconds, nx=True)
            pipe.incr(key)
        await pipe.execute()


async def check(redis: Redis, settings: Settings, email: str, ip: str) -> None:
    account_key, ip_key = _keys(email, ip)
    await _check(redis, {account_key: settings.login_max_failures, ip_key: settings.login_ip_max_failures}, "logins")


async def record_failure(redis: Redis, settings: Settings, email: str, ip: str) -> None:
    await _record(redis, _keys(email, ip), settings.login_failure_window_seconds)


def _step_up_key(user_id: uuid.UUID) -> str:
    return f"{STEP_UP_PREFIX}:{user_id}"


async def check_step_up(redis: Redis, settings: Settings, user_id: uuid.UUID) -> None:
    await _check(redis, {_step_up_key(user_id): settings.login_max_failures}, "codes")


async def record_step_up_failure(redis: Redis, settings: Settings, user_id: uuid.UUID) -> None:
    await _record(redis, (_step_up_key(user_id),), settings.login_failure_window_seconds)


async def clear_account(redis: Redis, email: str, ip: str) -> None:
    await redis.delete(_keys(email, ip)[0])
