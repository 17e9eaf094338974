"""Guessing limits against the real app: logins reserved before the password is verified, the client
address behind trusted proxies (IPv6 by /64), and registrations per address."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

from identity import throttle
from tests.factories import PASSWORD, register, unique_email
from tests.integration.identity.conftest import API, error_code

WRONG = "Not-the-password-1!"
LOOPBACK = "127.0.0.1"


def trusting_loopback(settings, **fields):
    """The test client connects from 127.0.0.1: trusting it makes X-Forwarded-For the client's address."""
    return settings.model_copy(update={"trusted_proxies": ["127.0.0.1/32"], **fields})


async def post_login(client, email: str, password: str, forwarded_for: str | None = None):
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    response = await client.post(f"{API}/auth/login", json={"email": email, "password": password}, headers=headers)
    body = await response.json()
    client.session.cookie_jar.clear()
    return response.status, body


async def test_concurrent_logins_are_counted(make_client, settings, redis):
    limit = 20
    client = await make_client(settings.model_copy(update={"login_max_failures": limit,
                                                           "login_ip_max_failures": 1000}))
    user = await register(client)

    answers = await asyncio.gather(*(post_login(client, user["email"], WRONG) for _ in range(200)))

    # Each try reserved its attempt before its password was verified: exactly `limit` were verified
    # (and refused), every later one was locked out, and all 200 are on the counters.
    codes = Counter(body["error"]["code"] for _, body in answers)
    assert codes == {"invalid_credentials": limit, "too_many_attempts": 200 - limit}, codes
    assert await throttle.login_failures(redis, user["email"], LOOPBACK) == (200, 200)
    status, body = await post_login(client, user["email"], PASSWORD)
    assert status == 429 and body["error"]["code"] == "too_many_attempts"

    # A right password gives its reservation back: good logins never count, however many.
    other = await register(client)
    for _ in range(3):
        status, body = await post_login(client, other["email"], PASSWORD)
        assert status == 200, body
    assert await throttle.login_failures(redis, other["email"], LOOPBACK) == (0, 201)
    # A failure after a successful login starts from zero, not from a reservation left behind.
    assert (await post_login(client, other["email"], WRONG))[0] == 401
    assert await throttle.login_failures(redis, other["email"], LOOPBACK) == (1, 202)


async def test_client_ip_behind_trusted_proxy(make_client, settings):
    async def session_ip(client, forwarded_for: str) -> str:
        user = await register(client)
        response = await client.post(f"{API}/auth/login", json={"email": user["email"], "password": PASSWORD},
                                     headers={"X-Forwarded-For": forwarded_for})
        tokens = await response.json()
        assert response.status == 200, tokens
        client.session.cookie_jar.clear()
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        response = await client.get(f"{API}/auth/sessions", headers=bearer)
        [session] = (await response.json())["items"]
        return session["ip"]

    # From a peer that is not a trusted proxy, X-Forwarded-For is whatever the client wrote: ignored.
    untrusted = await make_client(settings.model_copy(update={"trusted_proxies": ["10.0.0.0/8"]}))
    assert await session_ip(untrusted, "203.0.113.7") == LOOPBACK

    # From a trusted proxy: the right-most address that is not a trusted proxy (what the client
    # wrote to the left of it proves nothing).
    trusted = await make_client(settings.model_copy(update={"trusted_proxies": ["127.0.0.1/32", "10.0.0.0/8"]}))
    assert await session_ip(trusted, "198.51.100.1, 203.0.113.7") == "203.0.113.7"
    assert await session_ip(trusted, "198.51.100.1, 203.0.113.9, 10.0.0.5") == "203.0.113.9"
    assert await session_ip(trusted, "2001:db8:a::1") == "2001:db8:a::1"

    # IPv6 clients are counted by /64: a client owns its /64 and can take any address in it.
    client = await make_client(trusting_loopback(settings, login_ip_max_failures=2))
    for address in ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe"):
        assert (await post_login(client, unique_email("spray"), WRONG, address))[0] == 401
    user = await register(client)
    status, body = await post_login(client, user["email"], PASSWORD, "2001:db8:1:2::abcd")
    assert status == 429 and body["error"]["code"] == "too_many_attempts"
    status, body = await post_login(client, user["email"], PASSWORD, "2001:db8:1:3::abcd")  # the next /64
    assert status == 200, body


async def test_registrations_are_limited_per_client_ip(make_client, settings):
    client = await make_client(trusting_loopback(settings, registrations_per_hour=2))
    address, elsewhere = f"2001:db8:{uuid.uuid4().int % 0xffff:x}::1", "2001:db8:ffff::1"

    async def sign_up(forwarded_for: str, password: str = PASSWORD):
        return await client.post(f"{API}/auth/register", headers={"X-Forwarded-For": forwarded_for},
                                 json={"email": unique_email("reg"), "password": password, "display_name": "R"})

    assert (await sign_up(address)).status == 201
    assert (await sign_up(address, "short")).status == 422  # a refused attempt is an attempt
    response = await sign_up(address)
    assert response.status == 429 and await error_code(response) == "too_many_attempts"
    assert 3500 <= int(response.headers["Retry-After"]) <= 3600
    assert (await response.json())["error"]["details"]["retry_after_seconds"] == int(response.headers["Retry-After"])
    assert (await sign_up(elsewhere)).status == 201  # per address
