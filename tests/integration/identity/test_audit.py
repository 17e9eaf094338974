"""Identity changes leave their audit events, the chain verifies, and the table is append-only."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core import audit
from core.db import create_engine
from tests.factories import PASSWORD, register
from tests.integration.identity.conftest import API, audit_events, logged_in, login, new_admin


async def test_identity_changes_leave_a_verifiable_audit_chain(make_client, fast_settings, database_url, redis_url):
    client = await make_client(fast_settings)
    admin = await new_admin(client, database_url, redis_url)
    user = await register(client)
    assert (await login(client, user["email"], "Not-the-password-1!")).status == 401
    first = await logged_in(client, user["email"])
    second = await logged_in(client, user["email"])
    assert (await client.post(f"{API}/auth/sessions/{first.session_id}/revoke", headers=second.headers)).status == 200
    refreshed = await client.post(f"{API}/auth/refresh", json={"refresh_token": second.refresh_token})
    assert refreshed.status == 200
    reused = await client.post(f"{API}/auth/refresh", json={"refresh_token": second.refresh_token})
    assert reused.status == 401
    assert (await client.post(f"{API}/admin/users/{user['id']}/role", json={"roles": ["support"]},
                              headers=admin.headers)).status == 200
    assert (await client.post(f"{API}/admin/users/{user['id']}/status", json={"status": "suspended"},
                              headers=admin.headers)).status == 200

    events = await audit_events(database_url, "user", user["id"])
    types = [event["type"] for event in events]
    for expected in ("user.registered", "user.logged_in", "user.login_failed", "user.roles_changed",
                     "user.status_changed", "session.revoked", "session.refresh_reused"):
        assert expected in types, f"{expected} missing from {types}"
    assert types[0] == "user.registered" and types.count("user.logged_in") == 2
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    assert audit.verify_chain(events) == []

    by_type = {event["type"]: event for event in events}
    assert by_type["user.registered"]["actor"] == user["id"]
    assert by_type["user.roles_changed"]["data"] == {"from": ["customer"], "to": ["support"]}
    assert by_type["user.roles_changed"]["actor"] == admin.user_id
    assert by_type["user.status_changed"]["data"] == {"from": "active", "to": "suspended"}
    assert by_type["user.status_changed"]["actor"] == admin.user_id
    assert by_type["session.revoked"]["data"]["session_id"] == first.session_id
    assert by_type["user.login_failed"]["data"]["reason"] == "password"
    # never a secret in an exported event
    exported = str(events)
    for secret in (PASSWORD, first.access_token, first.refresh_token, second.refresh_token):
        assert secret not in exported


async def test_a_tampered_export_fails_verification(client, database_url):
    user = await register(client)
    await logged_in(client, user["email"])
    events = await audit_events(database_url, "user", user["id"])
    assert audit.verify_chain(events) == []
    events[0]["data"] = {**events[0]["data"], "roles": ["admin"]}
    assert audit.verify_chain(events)
    assert audit.verify_chain(events[1:])


@pytest.mark.parametrize("statement", [
    "UPDATE audit_events SET type = 'user.nothing' WHERE aggregate_id = :id",
    "DELETE FROM audit_events WHERE aggregate_id = :id",
])
async def test_the_audit_table_refuses_update_and_delete(client, database_url, statement):
    user = await register(client, verified=False)  # its one event: user.registered
    engine = create_engine(database_url)
    try:
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as connection:
                await connection.execute(text(statement), {"id": user["id"]})
    finally:
        await engine.dispose()
    assert [event["type"] for event in await audit_events(database_url, "user", user["id"])] == ["user.registered"]
