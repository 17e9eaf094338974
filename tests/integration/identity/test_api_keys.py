"""API keys: created under the session (with step-up), shown once, stored as a digest; used as a
Bearer on the routes their scopes cover, from their networks, within their rate limit."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from api.principal import flush_key_uses
from api.registry import PATH_PARAM
from core.db import create_engine
from core.time import rfc3339, utcnow
from identity.api_keys.service import SCOPES
from tests.integration.identity.conftest import (
    API,
    audit_events,
    enable_mfa,
    error_code,
    fetch_one,
    make_admin,
    new_user,
    totp_codes,
)
from tests.integration.identity.test_rbac import declared_specs

KEY_SHAPE = re.compile(r"vz_test_[0-9A-Za-z]{8}_[0-9A-Za-z]{43}")
STAFF = ["customer", "admin", "compliance", "operator", "support"]


def key_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def create_key(client, user, **fields) -> dict:
    body = {"name": "integration", "scopes": ["wallet:read"], **fields}
    response = await client.post(f"{API}/api-keys", json=body, headers=user.headers)
    created = await response.json()
    assert response.status == 201, created
    return created


async def execute(database_url: str, sql: str, **params) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(sql), params)
    finally:
        await engine.dispose()


async def key_count(database_url: str, user_id: str) -> int:
    return (await fetch_one(database_url, "SELECT count(*) FROM api_keys WHERE user_id = :user",
                            user=uuid.UUID(user_id)))[0]


async def test_a_key_is_shown_once_stored_as_a_digest_and_works_on_its_scope(client, database_url):
    user = await new_user(client)
    created = await create_key(client, user, scopes=["wallet:read", "deposits:read"])
    assert KEY_SHAPE.fullmatch(created["key"]), created["key"]
    assert created["prefix"] == created["key"].split("_")[2]
    stored = await fetch_one(database_url, "SELECT * FROM api_keys WHERE id = :id", id=uuid.UUID(created["id"]))
    assert stored.secret_digest == hashlib.sha256(created["key"].encode()).hexdigest()
    assert created["key"] not in str(tuple(stored))

    response = await client.get(f"{API}/wallet/balances", headers=key_headers(created["key"]))
    assert response.status == 200, await response.text()
    assert int(response.headers["RateLimit-Remaining"]) < int(response.headers["RateLimit-Limit"])

    await flush_key_uses(client.app)
    listed = await (await client.get(f"{API}/api-keys", headers=user.headers)).json()
    [item] = listed["items"]
    assert item["id"] == created["id"] and "key" not in item
    assert item["last_used_at"] is not None and item["scopes"] == ["deposits:read", "wallet:read"]

    events = await audit_events(database_url, "api_key", created["id"])
    assert [event["type"] for event in events] == ["api_key.created"]
    assert created["key"] not in str(events) and created["key"].split("_")[3] not in str(events)


async def test_a_route_outside_the_scopes_is_403_naming_the_scope(client):
    user = await new_user(client)
    key = (await create_key(client, user, scopes=["wallet:read"]))["key"]
    response = await client.get(f"{API}/wallet/deposits", headers=key_headers(key))
    assert response.status == 403
    body = await response.json()
    assert body["error"]["code"] == "insufficient_scope"
    assert body["error"]["details"] == {"required_scope": "deposits:read"}
    # Sessions only: a key never manages keys, nor logs out, nor reads the profile.
    for method, path in (("GET", "/api-keys"), ("POST", "/api-keys"), ("GET", "/me")):
        response = await client.request(method, f"{API}{path}", json={} if method == "POST" else None,
                                        headers=key_headers(key))
        assert response.status == 403 and await error_code(response) == "insufficient_scope", path


@pytest.mark.parametrize("field, value", [
    ("scopes", ["wallet:read", "wallet:admin"]),
    ("scopes", []),
    ("expires_at", "2020-01-01T00:00:00Z"),
    ("expires_at", "2999-01-01T00:00:00"),  # no offset: ambiguous
    ("allowed_ips", ["10.0.0.0/33"]),
    ("allowed_ips", ["not-a-network"]),
])
async def test_bad_input_is_422_naming_the_field_and_creates_nothing(client, database_url, field, value):
    user = await new_user(client)
    response = await client.post(f"{API}/api-keys", json={"name": "k", "scopes": ["wallet:read"], field: value},
                                 headers=user.headers)
    assert response.status == 422, await response.text()
    fields = [item["field"] for item in (await response.json())["error"]["details"]["fields"]]
    assert any(name.startswith(field) for name in fields), fields
    assert await key_count(database_url, user.user_id) == 0


async def test_compliance_scopes_are_for_staff_keys_only(client, database_url, redis_url):
    customer = await new_user(client)
    response = await client.post(f"{API}/api-keys", json={"name": "k", "scopes": ["compliance:read"]},
                                 headers=customer.headers)
    assert response.status == 422 and await error_code(response) == "scope_not_allowed"
    assert await key_count(database_url, customer.user_id) == 0
    officer = await new_user(client)
    await make_admin(database_url, redis_url, officer.user_id, ["customer", "compliance"])
    await create_key(client, officer, scopes=["compliance:read"])


async def test_more_keys_than_the_cap_is_409(make_client, settings, database_url):
    client = await make_client(settings.model_copy(update={"api_key_max_per_user": 2}))
    user = await new_user(client)
    first = await create_key(client, user)
    await create_key(client, user)
    response = await client.post(f"{API}/api-keys", json={"name": "third", "scopes": ["wallet:read"]},
                                 headers=user.headers)
    assert response.status == 409 and await error_code(response) == "api_key_limit_reached"
    assert await key_count(database_url, user.user_id) == 2
    # A revoked key no longer counts.
    assert (await client.post(f"{API}/api-keys/{first['id']}/revoke", json={}, headers=user.headers)).status == 200
    await create_key(client, user)


async def test_with_mfa_on_creating_a_key_takes_a_code(client, database_url):
    user = await new_user(client)
    enrollment, _ = await enable_mfa(client, user)
    response = await client.post(f"{API}/api-keys", json={"name": "k", "scopes": ["wallet:read"]},
                                 headers=user.headers)
    assert response.status == 401 and await error_code(response) == "mfa_required"
    assert await key_count(database_url, user.user_id) == 0
    _, current, _ = await totp_codes(enrollment["secret"])
    created = await create_key(client, user, scopes=["withdrawals:write"], totp_code=current)
    stored = await fetch_one(database_url, "SELECT stepped_up FROM api_keys WHERE id = :id",
                             id=uuid.UUID(created["id"]))
    assert stored.stepped_up is True


async def test_revoked_expired_and_forged_keys_are_401(make_client, settings, database_url):
    client = await make_client(settings.model_copy(update={"session_cache_seconds": 0.0}))
    user = await new_user(client)
    revoked = await create_key(client, user)
    assert (await client.get(f"{API}/wallet/balances", headers=key_headers(revoked["key"]))).status == 200
    response = await client.post(f"{API}/api-keys/{revoked['id']}/revoke", json={}, headers=user.headers)
    assert response.status == 200 and (await response.json())["revoked_at"] is not None
    response = await client.get(f"{API}/wallet/balances", headers=key_headers(revoked["key"]))
    assert response.status == 401 and await error_code(response) == "api_key_revoked"
    events = await audit_events(database_url, "api_key", revoked["id"])
    assert [event["type"] for event in events] == ["api_key.created", "api_key.revoked"]

    soon = await create_key(client, user, expires_at=rfc3339(utcnow() + timedelta(hours=1)))
    await execute(database_url, "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = :id",
                  id=uuid.UUID(soon["id"]))
    response = await client.get(f"{API}/wallet/balances", headers=key_headers(soon["key"]))
    assert response.status == 401 and await error_code(response) == "api_key_expired"

    live = (await create_key(client, user))["key"]
    forged = live[:-1] + ("A" if live[-1] != "A" else "B")  # the right prefix, another secret
    for token in (forged, "vz_test_short", "vz_live_" + live[8:]):
        response = await client.get(f"{API}/wallet/balances", headers=key_headers(token))
        assert response.status == 401 and await error_code(response) == "invalid_api_key", token


async def test_another_users_key_is_404(client):
    owner, other = await new_user(client), await new_user(client)
    created = await create_key(client, owner)
    response = await client.post(f"{API}/api-keys/{created['id']}/revoke", json={}, headers=other.headers)
    assert response.status == 404 and await error_code(response) == "api_key_not_found"
    assert (await client.get(f"{API}/wallet/balances", headers=key_headers(created["key"]))).status == 200


async def test_a_key_works_only_from_its_networks(client):
    user = await new_user(client)
    elsewhere = await create_key(client, user, allowed_ips=["10.0.0.0/8", "2001:db8::/32"])
    response = await client.get(f"{API}/wallet/balances", headers=key_headers(elsewhere["key"]))
    assert response.status == 403 and await error_code(response) == "ip_not_allowed"
    here = await create_key(client, user, allowed_ips=["127.0.0.1"])
    assert here["allowed_ips"] == ["127.0.0.1/32"]
    assert (await client.get(f"{API}/wallet/balances", headers=key_headers(here["key"]))).status == 200


async def test_past_the_rate_limit_is_429_with_retry_after(make_client, settings):
    client = await make_client(settings.model_copy(update={"api_key_requests_per_minute": 3}))
    user = await new_user(client)
    key = (await create_key(client, user))["key"]
    remaining = []
    for _ in range(3):
        response = await client.get(f"{API}/wallet/balances", headers=key_headers(key))
        assert response.status == 200
        remaining.append(int(response.headers["RateLimit-Remaining"]))
    assert remaining == sorted(remaining, reverse=True) and remaining[-1] == 0
    response = await client.get(f"{API}/wallet/balances", headers=key_headers(key))
    assert response.status == 429 and await error_code(response) == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["RateLimit-Limit"] == "3" and response.headers["RateLimit-Remaining"] == "0"
    # Another key of the same owner has a bucket of its own; the session is not rate limited by keys.
    other = (await create_key(client, user))["key"]
    assert (await client.get(f"{API}/wallet/balances", headers=key_headers(other))).status == 200
    assert (await client.get(f"{API}/wallet/balances", headers=user.headers)).status == 200


async def test_the_owners_demotion_applies_to_the_key_at_once(client, database_url, redis_url):
    officer = await new_user(client)
    await make_admin(database_url, redis_url, officer.user_id, ["customer", "compliance"])
    key = (await create_key(client, officer, scopes=["compliance:read"]))["key"]
    response = await client.get(f"{API}/admin/kyc/queue", headers=key_headers(key))
    assert response.status == 200, await response.text()
    await make_admin(database_url, redis_url, officer.user_id, ["customer"])
    response = await client.get(f"{API}/admin/kyc/queue", headers=key_headers(key))
    assert response.status == 403 and await error_code(response) == "forbidden"


async def test_scope_matrix_over_every_route(make_client, settings, database_url, redis_url):
    """Every authenticated route, from the registry: a key without the route's scope is refused with
    that scope named; a key with only that scope gets past the scope check (whatever the route then
    answers, never a 500). Routes with no scope refuse every key."""
    client = await make_client(settings.model_copy(update={"api_key_max_per_user": 100,
                                                           "api_key_requests_per_minute": 100_000}))
    user = await new_user(client)
    await make_admin(database_url, redis_url, user.user_id, STAFF)
    only = {scope: (await create_key(client, user, scopes=[scope]))["key"] for scope in SCOPES}
    all_but = {scope: (await create_key(client, user, scopes=[s for s in SCOPES if s != scope]))["key"]
               for scope in SCOPES}
    every = (await create_key(client, user, scopes=list(SCOPES)))["key"]
    checked: dict[str | None, int] = {}
    for (method, path), spec in sorted(declared_specs(client.app).items()):
        if spec.access.public and not spec.access.service_signature:
            continue
        concrete = PATH_PARAM.sub(lambda _: str(uuid.uuid4()), path)
        body = {} if method in ("POST", "PUT", "PATCH") else None
        refused_with = every if spec.scope is None else all_but[spec.scope]
        response = await client.request(method, concrete, json=body, headers=key_headers(refused_with))
        assert response.status == 403, f"{method} {path}: {response.status}"
        refusal = (await response.json())["error"]
        assert refusal["code"] == "insufficient_scope", f"{method} {path}"
        assert refusal["details"] == {"required_scope": spec.scope}, f"{method} {path}"
        if spec.scope is not None:
            response = await client.request(method, concrete, json=body, headers=key_headers(only[spec.scope]))
            answer = await response.read()
            assert response.status < 500, f"{method} {path}: {response.status} {answer[:300]!r}"
            if response.status == 403:
                assert (await response.json())["error"]["code"] != "insufficient_scope", f"{method} {path}"
        checked[spec.scope] = checked.get(spec.scope, 0) + 1
    assert set(checked) == {None, *SCOPES}, f"scopes no route needs: {set(SCOPES) - set(checked)}"
