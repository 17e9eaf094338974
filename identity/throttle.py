"""Throttling of guesses: counters in Redis, over a window that starts at the first attempt.

Logins count per account and per IP, and each attempt is reserved (counted) before its password is
verified, then given back when the password was right: two hundred guesses sent at once are two
hundred attempts, of which exactly the limit are verified, and good logins never add up to a lock.
Step-up codes (the TOTP a withdrawal asks for) count per account, with the login limits, on
counters of their own: a stolen session cannot try the million codes, and a guessed-at step-up
does not lock the owner out of logging in (step-up callers hold the user's row lock, which
serializes their check and count). Registrations count per IP. IPv6 addresses count by /64.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from ipaddress import ip_address, ip_network

from redis.asyncio import Redis

from core.errors import TooManyRequests
from core.settings import Settings

PREFIX = "virtuoz:login-failures"
STEP_UP_PREFIX = "virtuoz:step-up-failures"
REGISTRATION_PREFIX = "virtuoz:registrations"
REGISTRATION_WINDOW_SECONDS = 3600

# Giving an attempt back never takes a counter below zero, even when the window ended (and the
# counter with it) while the attempt was being verified.
_GIVE_BACK = """
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
"""


def ip_bucket(ip: str) -> str:
    """What a client address counts as: itself, or for IPv6 its /64 (a client is given a /64 and
    can take any address in it, so one counter per address would be no limit at all)."""
    try:
        address = ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        return str(ip_network(f"{address}/64", strict=False))
    return str(address)


def _keys(email: str, ip: str) -> tuple[str, str]:
    # Hash the email: keys are visible to anyone with Redis access, emails are personal data.
    account = hashlib.sha256(email.encode()).hexdigest()[:32]
    return f"{PREFIX}:account:{account}", f"{PREFIX}:ip:{ip_bucket(ip)}"


def _too_many(message: str, retry_after: int) -> TooManyRequests:
    return TooManyRequests(message, details={"retry_after_seconds": retry_after},
                           headers={"Retry-After": str(retry_after)})


async def _reserve(redis: Redis, limits: dict[str, int], window_seconds: int, message: str) -> None:
    """Count one attempt on every counter, then compare: 429 when any is past its limit.

    Counting first, in one MULTI, is what makes the limit hold under concurrency: each attempt sees
    its own count, so of N sent at once exactly the limit pass. A refused attempt stays counted (it
    was an attempt); the window is not extended by it.
    """
    async with redis.pipeline(transaction=True) as pipe:
        for key in limits:
            pipe.set(key, 0, ex=window_seconds, nx=True)
            pipe.incr(key)
            pipe.ttl(key)
        results = await pipe.execute()
    waits = [max(int(results[3 * index + 2]), 1)
             for index, limit in enumerate(limits.values()) if int(results[3 * index + 1]) > limit]
    if waits:
        raise _too_many(message, max(waits))


async def _check(redis: Redis, limits: dict[str, int], what: str) -> None:
    """429 with Retry-After when any counter has reached its limit."""
    for key, failures in zip(limits, await redis.mget(*limits), strict=True):
        if failures is not None and int(failures) >= limits[key]:
            raise _too_many(f"Too many failed {what}; retry later.", max(await redis.ttl(key), 1))


async def _record(redis: Redis, keys: tuple[str, ...], window_seconds: int) -> None:
    # The window starts at the first failure: SET NX EX creates the counter with its expiry, INCR
    # keeps it. (EXPIRE ... NX would do the same but needs Redis 7; the embedded server is 6.2.)
    async with redis.pipeline(transaction=True) as pipe:
        for key in keys:
            pipe.set(key, 0, ex=window_seconds, nx=True)
            pipe.incr(key)
        await pipe.execute()


@dataclass(frozen=True)
class LoginAttempt:
    """A reserved login attempt: counted until it is given back."""

    account_key: str
    ip_key: str


async def reserve_login(redis: Redis, settings: Settings, email: str, ip: str) -> LoginAttempt:
    """Count a login attempt before its password is verified; 429 past either limit."""
    account_key, ip_key = _keys(email, ip)
    await _reserve(redis, {account_key: settings.login_max_failures, ip_key: settings.login_ip_max_failures},
                   settings.login_failure_window_seconds, "Too many failed logins; retry later.")
    return LoginAttempt(account_key, ip_key)


async def give_back(redis: Redis, attempt: LoginAttempt) -> None:
    """The password was right (MFA still to come, or a suspended account): no guess was made."""
    await redis.register_script(_GIVE_BACK)(keys=[attempt.account_key, attempt.ip_key])


async def login_succeeded(redis: Redis, attempt: LoginAttempt) -> None:
    """Give the attempt back, and forget the account's failures: its owner is in."""
    await redis.register_script(_GIVE_BACK)(keys=[attempt.ip_key])
    await redis.delete(attempt.account_key)


async def login_failures(redis: Redis, email: str, ip: str) -> tuple[int, int]:
    """The (account, IP) counters as they stand: attempts counted and not given back."""
    return tuple(int(count or 0) for count in await redis.mget(*_keys(email, ip)))  # type: ignore[return-value]


async def reserve_registration(redis: Redis, settings: Settings, ip: str) -> None:
    """Count a registration from this client address; 429 past the hourly limit."""
    await _reserve(redis, {f"{REGISTRATION_PREFIX}:ip:{ip_bucket(ip)}": settings.registration_limit},
                   REGISTRATION_WINDOW_SECONDS, "Too many registrations from this address; retry later.")


def _step_up_key(user_id: uuid.UUID) -> str:
    return f"{STEP_UP_PREFIX}:{user_id}"


async def check_step_up(redis: Redis, settings: Settings, user_id: uuid.UUID) -> None:
    await _check(redis, {_step_up_key(user_id): settings.login_max_failures}, "codes")


async def record_step_up_failure(redis: Redis, settings: Settings, user_id: uuid.UUID) -> None:
    await _record(redis, (_step_up_key(user_id),), settings.login_failure_window_seconds)
