"""Helpers for the identity tests: logins and their tokens, admins, audit reads, TOTP codes.

The database is shared by every test of a worker and never cleaned, so every user gets a unique
email. Login failure counters live in Redis and every TestClient calls from 127.0.0.1: the per-IP
counter is flushed before and after each test here, so no test trips another's IP limit.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import jwt
import pyotp
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from sqlalchemy import text

from identity import service
from core import audit
from core.db import create_engine, session_factory, unit_of_work
from tests.factories import PASSWORD, register, unique_email

API = "/api/v1"
IP_FAILURES = "virtuoz:login-failures:ip:*"


@dataclass
class Login:
    """A logged-in user: the tokens of one session."""

    user_id: str
    email: str
    access_token: str
    refresh_token: str
    password: str = PASSWORD

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    @property
    def session_id(self) -> str:
        return jwt.decode(self.access_token, options={"verify_signature": False})["sid"]


async def error_code(response: ClientResponse) -> str:
    return (await response.json())["error"]["code"]


async def login(client: TestClient, email: str, password: str = PASSWORD, totp_code: str | None = None, *,
                keep_cookies: bool = False) -> ClientResponse:
    """POST /auth/login; the cookie jar is emptied after unless ``keep_cookies`` (so later requests
    authenticate only as the test says)."""
    payload: dict[str, Any] = {"email": email, "password": password}
    if totp_code is not None:
        payload["totp_code"] = totp_code
    response = await client.post(f"{API}/auth/login", json=payload)
    await response.read()
    if not keep_cookies:
        client.session.cookie_jar.clear()
    return response


async def logged_in(client: TestClient, email: str, password: str = PASSWORD, totp_code: str | None = None) -> Login:
    response = await login(client, email, password, totp_code)
    body = await response.json()
    assert response.status == 200, body
    return Login(body["user"]["id"], email, body["access_token"], body["refresh_token"], password)


async def new_user(client: TestClient, *, email: str | None = None, tag: str = "u") -> Login:
    """Register a customer and log in."""
    user = await register(client, email=email or unique_email(tag))
    return await logged_in(client, user["email"])


async def make_admin(database_url: str, redis_url: str, user_id: str | uuid.UUID,
                     roles: list[str] | None = None) -> None:
    """Grant roles (admin by default) through the service, as an admin route would."""
    engine = create_engine(database_url)
    redis = Redis.from_url(redis_url)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            await service.set_roles(session, redis, uuid.UUID(str(user_id)), uuid.UUID(str(user_id)),
                                    roles or ["admin", "customer"])
    finally:
        await redis.aclose()
        await engine.dispose()


async def new_admin(client: TestClient, database_url: str, redis_url: str) -> Login:
    user = await register(client, email=unique_email("admin"))
    await make_admin(database_url, redis_url, user["id"])
    return await logged_in(client, user["email"])


async def audit_events(database_url: str, aggregate_type: str, aggregate_id: str | uuid.UUID) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            return [audit.as_dict(event) for event in await audit.events_of(session, aggregate_type, aggregate_id)]
    finally:
        await engine.dispose()


async def fetch_one(database_url: str, sql: str, **params: Any) -> Any:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return (await connection.execute(text(sql), params)).first()
    finally:
        await engine.dispose()


async def totp_codes(secret: str) -> tuple[str, str, str]:
    """The codes of the previous, current and next time step, taken at least 8 s before the step
    ends, so each stays inside the server's ±1 step window for the rest of the test."""
    remaining = 30 - time.time() % 30
    if remaining < 8:
        await asyncio.sleep(remaining + 0.2)
    now = time.time()
    totp = pyotp.TOTP(secret)
    return totp.at(now - 30), totp.at(now), totp.at(now + 30)


def wrong_code(secret: str) -> str:
    """A six-digit code that matches none of the steps the server accepts now."""
    now = time.time()
    valid = {pyotp.TOTP(secret).at(now + 30 * step) for step in range(-2, 3)}
    return next(code for code in ("000000", "111111", "222222", "333333", "444444", "555555") if code not in valid)


async def enable_mfa(client: TestClient, user: Login) -> tuple[dict[str, Any], tuple[str, str, str]]:
    """Enroll and verify with the *previous* step's code; returns the enrollment and the codes
    (previous — already used, current, next)."""
    response = await client.post(f"{API}/auth/mfa/enroll", json={"password": user.password}, headers=user.headers)
    enrollment = await response.json()
    assert response.status == 200, enrollment
    codes = await totp_codes(enrollment["secret"])
    response = await client.post(f"{API}/auth/mfa/verify", json={"code": codes[0]}, headers=user.headers)
    assert response.status == 200, await response.text()
    return enrollment, codes


async def poll(check, timeout: float = 5.0, interval: float = 0.05) -> Any:
    """Call ``check`` (async, returns a truthy value when done) until it is truthy; the last value."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def _flush(redis: Redis, pattern: str) -> None:
    keys = [key async for key in redis.scan_iter(pattern)]
    if keys:
        await redis.delete(*keys)


@pytest.fixture(autouse=True)
async def _fresh_ip_throttle(redis: Redis) -> AsyncIterator[None]:
    await _flush(redis, IP_FAILURES)
    yield
    await _flush(redis, IP_FAILURES)


@pytest.fixture
def fast_settings(settings):
    """Settings without the per-process session cache: a revocation shows on the very next request."""
    return settings.model_copy(update={"session_cache_seconds": 0.0})

