"""Sessions: refresh rotation and reuse detection, logout, logout-all, listing and revoking."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text

from api.keys import SETTINGS
from core.db import create_engine
from identity.tokens import issue_access_token
from tests.factories import register
from tests.integration.identity.conftest import API, audit_events, error_code, logged_in, login, new_admin, new_user
from tests.integration.identity.test_login import cookie_attributes, set_cookies


async def me_status(client, user) -> int:
    response = await client.get(f"{API}/me", headers=user.headers)
    await response.read()
    return response.status


async def test_refresh_with_the_body_rotates_both_tokens(client):
    user = await new_user(client)
    response = await client.post(f"{API}/auth/refresh", json={"refresh_token": user.refresh_token})
    body = await response.json()
    assert response.status == 200, body
    assert body["token_type"] == "Bearer" and body["user"]["id"] == user.user_id
    assert body["refresh_token"] != user.refresh_token and body["access_token"] != user.access_token
    assert set(set_cookies(response)) == {"access_token", "refresh_token"}
    fresh = await client.get(f"{API}/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert fresh.status == 200
    # the new refresh token belongs to the same session, and rotates again
    again = await client.post(f"{API}/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert again.status == 200


async def test_refresh_with_the_cookie(client):
    user = await register(client)
    first = await login(client, user["email"], keep_cookies=True)
    old = (await first.json())["refresh_token"]
    response = await client.post(f"{API}/auth/refresh")  # no body: the refresh_token cookie
    body = await response.json()
    assert response.status == 200, body
    assert body["refresh_token"] != old
    assert cookie_attributes(set_cookies(response)["refresh_token"]).value == body["refresh_token"]
    client.session.cookie_jar.clear()


async def test_refresh_without_a_token_or_with_garbage_is_401(client):
    response = await client.post(f"{API}/auth/refresh")
    assert response.status == 401 and await error_code(response) == "invalid_refresh_token"
    response = await client.post(f"{API}/auth/refresh", json={"refresh_token": "garbage"})
    assert response.status == 401 and await error_code(response) == "invalid_refresh_token"


async def test_reused_refresh_token_revokes_the_session(make_client, fast_settings, database_url):
    client = await make_client(fast_settings)
    user = await new_user(client)
    rotated = await client.post(f"{API}/auth/refresh", json={"refresh_token": user.refresh_token})
    new_pair = await rotated.json()
    assert rotated.status == 200
    response = await client.get(f"{API}/me", headers={"Authorization": f"Bearer {new_pair['access_token']}"})
    assert response.status == 200

    reused = await client.post(f"{API}/auth/refresh", json={"refresh_token": user.refresh_token})
    assert reused.status == 401
    assert await error_code(reused) == "refresh_token_reused"

    # the whole family is dead: the latest access token and the latest refresh token
    response = await client.get(f"{API}/me", headers={"Authorization": f"Bearer {new_pair['access_token']}"})
    assert response.status == 401 and await error_code(response) == "session_revoked"
    response = await client.post(f"{API}/auth/refresh", json={"refresh_token": new_pair["refresh_token"]})
    assert response.status == 401 and await error_code(response) == "invalid_refresh_token"

    events = await audit_events(database_url, "user", user.user_id)
    reuse = [event for event in events if event["type"] == "session.refresh_reused"]
    assert len(reuse) == 1 and reuse[0]["data"] == {"session_id": user.session_id}


async def test_logout_revokes_the_session_and_clears_the_cookies(make_client, fast_settings):
    client = await make_client(fast_settings)
    user = await new_user(client)
    response = await client.post(f"{API}/auth/logout", headers=user.headers)
    assert response.status == 200 and await response.json() == {"ok": True}
    cookies = set_cookies(response)
    assert set(cookies) == {"access_token", "refresh_token"}
    for name, header in cookies.items():
        morsel = cookie_attributes(header)
        assert morsel.value == "" and morsel["max-age"] == "0", header
    assert cookie_attributes(cookies["access_token"])["path"] == "/api/v1"
    assert cookie_attributes(cookies["refresh_token"])["path"] == "/api/v1/auth"

    response = await client.get(f"{API}/me", headers=user.headers)
    assert response.status == 401 and await error_code(response) == "session_revoked"
    response = await client.post(f"{API}/auth/refresh", json={"refresh_token": user.refresh_token})
    assert response.status == 401 and await error_code(response) == "invalid_refresh_token"


async def test_logout_all_revokes_every_session_of_the_user(make_client, fast_settings):
    client = await make_client(fast_settings)
    first = await new_user(client)
    second = await logged_in(client, first.email)
    bystander = await new_user(client)
    response = await client.post(f"{API}/auth/logout-all", headers=second.headers)
    assert response.status == 200
    assert await response.json() == {"revoked_sessions": 2}
    assert await me_status(client, first) == 401
    assert await me_status(client, second) == 401
    assert await me_status(client, bystander) == 200


async def test_sessions_lists_active_sessions_and_marks_the_current_one(client):
    first = await new_user(client)
    second = await logged_in(client, first.email)
    response = await client.get(f"{API}/auth/sessions", headers=second.headers)
    body = await response.json()
    assert response.status == 200, body
    by_id = {item["id"]: item for item in body["items"]}
    assert set(by_id) == {first.session_id, second.session_id}
    assert by_id[second.session_id]["current"] is True
    assert by_id[first.session_id]["current"] is False
    assert by_id[first.session_id]["ip"] == "127.0.0.1"


async def test_revoking_a_session_ends_it_on_the_next_request(make_client, fast_settings):
    client = await make_client(fast_settings)
    first = await new_user(client)
    second = await logged_in(client, first.email)
    assert await me_status(client, first) == 200
    response = await client.post(f"{API}/auth/sessions/{first.session_id}/revoke", headers=second.headers)
    assert response.status == 200, await response.text()
    response = await client.get(f"{API}/me", headers=first.headers)
    assert response.status == 401 and await error_code(response) == "session_revoked"
    assert await me_status(client, second) == 200
    listed = await (await client.get(f"{API}/auth/sessions", headers=second.headers)).json()
    assert [item["id"] for item in listed["items"]] == [second.session_id]


async def test_revoked_session_stops_working_within_the_default_one_second_cache(client, settings):
    assert settings.session_cache_seconds == 1.0
    first = await new_user(client)
    second = await logged_in(client, first.email)
    assert await me_status(client, first) == 200  # now cached as active
    response = await client.post(f"{API}/auth/sessions/{first.session_id}/revoke", headers=second.headers)
    assert response.status == 200
    await asyncio.sleep(1.1)
    response = await client.get(f"{API}/me", headers=first.headers)
    assert response.status == 401 and await error_code(response) == "session_revoked"


async def test_another_users_session_cannot_be_revoked(client):
    owner = await new_user(client)
    intruder = await new_user(client)
    for session_id in (owner.session_id, str(uuid.uuid4()), "not-a-uuid"):
        response = await client.post(f"{API}/auth/sessions/{session_id}/revoke", headers=intruder.headers)
        assert response.status == 404, session_id
        assert await error_code(response) == "session_not_found"
    assert await me_status(client, owner) == 200


async def test_token_with_foreign_sub_is_refused(client, database_url, redis_url):
    """A token signed with the platform key but naming another user's ``sub`` next to one's own
    ``sid`` is not a session of that user: refused everywhere, an admin route included."""
    admin = await new_admin(client, database_url, redis_url)
    attacker = await new_user(client)
    forged = issue_access_token(client.app[SETTINGS], uuid.UUID(admin.user_id), uuid.UUID(attacker.session_id),
                                ["admin", "customer"])
    headers = {"Authorization": f"Bearer {forged}"}
    response = await client.get(f"{API}/me", headers=headers)
    assert response.status == 401, await response.text()
    response = await client.get(f"{API}/admin/users", headers=headers)
    assert response.status == 401, await response.text()
    # the attacker's own token, and the admin's, still work
    assert await me_status(client, attacker) == 200
    response = await client.get(f"{API}/admin/users", headers=admin.headers)
    assert response.status == 200


async def _age_session(database_url: str, session_id: str, hours: float) -> None:
    """Move the session's start ``hours`` into the past, as if it had been refreshed ever since."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE auth_sessions SET created_at = now() - make_interval(secs => :s) "
                                          "WHERE id = :id"), {"s": hours * 3600, "id": session_id})
    finally:
        await engine.dispose()


async def test_refresh_past_the_absolute_session_lifetime_is_401_session_expired(make_client, fast_settings,
                                                                                database_url):
    assert fast_settings.session_max_age_hours == 720
    client = await make_client(fast_settings)
    user = await new_user(client)
    # Refreshed within its lifetime, a session goes on...
    await _age_session(database_url, user.session_id, 719)
    response = await client.post(f"{API}/auth/refresh", json={"refresh_token": user.refresh_token})
    tokens = await response.json()
    assert response.status == 200, tokens
    # ...however often it is refreshed, it ends at its absolute lifetime, counted from the login.
    await _age_session(database_url, user.session_id, 721)
    response = await client.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert response.status == 401 and await error_code(response) == "session_expired"
    # It is over, not just refused once: its access token ends too, and the ending is audited.
    response = await client.get(f"{API}/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert response.status == 401 and await error_code(response) == "session_revoked"
    response = await client.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert response.status == 401
    events = await audit_events(database_url, "user", user.user_id)
    assert [event["data"] for event in events if event["type"] == "session.expired"] == [
        {"session_id": user.session_id, "max_age_hours": 720}]
    # A new login is a new session with a lifetime of its own.
    assert (await login(client, user.email)).status == 200
