"""Login throttling: failure counters per account and per IP in Redis, over a sliding window."""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from core.errors import TooManyRequests
from core.settings import Settings

PREFIX = "virtuoz:login-failures"


def _keys(email: str, ip: str) -> tuple[str, str]:
    # Hash the email: keys are visible to anyone with Redis access, emails are personal data.
    account = hashlib.sha256(email.encode()).hexdigest()[:32]
    return f"{PREFIX}:account:{account}", f"{PREFIX}:ip:{ip}"


async def check(redis: Redis, settings: Settings, email: str, ip: str) -> None:
    account_key, ip_key = _keys(email, ip)
    account_failures, ip_failures = await redis.mget(account_key, ip_key)
    for key, failures, limit in ((account_key, account_failures, settings.login_max_failures),
                                 (ip_key, ip_failures, settings.login_ip_max_failures)):
        if failures is not None and int(failures) >= limit:
            retry_after = max(await redis.ttl(key), 1)
            raise TooManyRequests(
                "Too many failed logins; retry later.",
                details={"retry_after_seconds": retry_after},
                headers={"Retry-After": str(retry_after)},
            )


async def record_failure(redis: Redis, settings: Settings, email: str, ip: str) -> None:
    # The window starts at the first failure: SET NX EX creates the counter with its expiry, INCR
    # keeps it. (EXPIRE ... NX would do the same but needs Redis 7; the embedded server is 6.2.)
    async with redis.pipeline(transaction=True) as pipe:
        for key in _keys(email, ip):
            pipe.set(key, 0, ex=settings.login_failure_window_seconds, nx=True)
            pipe.incr(key)
        await pipe.execute()


async def clear_account(redis: Redis, email: str, ip: str) -> None:
    await redis.delete(_keys(email, ip)[0])
