"""Changing the password: a step-up action that ends every other session of the user."""

from __future__ import annotations

from tests.factories import PASSWORD
from tests.integration.identity.conftest import (
    API,
    audit_events,
    enable_mfa,
    error_code,
    logged_in,
    login,
    new_user,
    wrong_code,
)

NEW_PASSWORD = "Another-Long-Passphrase-42"


async def change_password(client, user, current: str, new: str = NEW_PASSWORD, totp_code: str | None = None):
    payload = {"current_password": current, "new_password": new}
    if totp_code is not None:
        payload["totp_code"] = totp_code
    response = await client.post(f"{API}/auth/password", json=payload, headers=user.headers)
    return response.status, await response.json()


async def me_status(client, user) -> int:
    response = await client.get(f"{API}/me", headers=user.headers)
    await response.read()
    return response.status


async def test_password_change_revokes_every_other_session_and_keeps_this_one(make_client, fast_settings,
                                                                               database_url):
    client = await make_client(fast_settings)
    user = await new_user(client)
    other = await logged_in(client, user.email)

    status, body = await change_password(client, user, PASSWORD)
    assert status == 200, body
    assert body == {"revoked_sessions": 1}

    assert await me_status(client, user) == 200
    assert await me_status(client, other) == 401
    response = await client.post(f"{API}/auth/refresh", json={"refresh_token": other.refresh_token})
    assert response.status == 401 and await error_code(response) == "invalid_refresh_token"
    response = await client.post(f"{API}/auth/refresh", json={"refresh_token": user.refresh_token})
    assert response.status == 200  # the current session goes on
    assert (await login(client, user.email, PASSWORD)).status == 401
    assert (await login(client, user.email, NEW_PASSWORD)).status == 200

    events = await audit_events(database_url, "user", user.user_id)
    [changed] = [event for event in events if event["type"] == "user.password_changed"]
    assert changed["data"] == {"session_id": user.session_id, "revoked_sessions": [other.session_id]}
    assert changed["actor"] == user.user_id
    assert PASSWORD not in str(events) and NEW_PASSWORD not in str(events)


async def test_password_change_needs_the_current_password_and_counts_failures(make_client, settings, database_url):
    client = await make_client(settings.model_copy(update={"login_max_failures": 2}))
    user = await new_user(client)
    for _ in range(2):
        status, body = await change_password(client, user, "Not-the-password-1!")
        assert status == 401 and body["error"]["code"] == "invalid_credentials", body
    # The step-up counters, not the login ones: the right password is locked out now...
    status, body = await change_password(client, user, PASSWORD)
    assert status == 429 and body["error"]["code"] == "too_many_attempts", body
    # ...and a stolen session's guessing never locks the owner out of logging in.
    assert (await login(client, user.email)).status == 200
    events = await audit_events(database_url, "user", user.user_id)
    assert [event["data"] for event in events if event["type"] == "user.password_change_refused"] == [
        {"reason": "password"}, {"reason": "password"}]


async def test_password_change_applies_the_registration_policy(client):
    user = await new_user(client)
    local_part = user.email.split("@")[0]
    for weak in ("short", "1qaz2wsx3edc", f"{local_part}-Long-Enough-1"):
        status, body = await change_password(client, user, PASSWORD, weak)
        assert status == 422 and body["error"]["code"] == "weak_password", (weak, body)
    assert (await login(client, user.email, PASSWORD)).status == 200


async def test_password_change_needs_a_current_code_when_mfa_is_on(client):
    user = await new_user(client)
    enrollment, (_, current, _) = await enable_mfa(client, user)
    status, body = await change_password(client, user, PASSWORD)
    assert status == 401 and body["error"]["code"] == "mfa_required"
    status, body = await change_password(client, user, PASSWORD, totp_code=wrong_code(enrollment["secret"]))
    assert status == 401 and body["error"]["code"] == "invalid_mfa_code"
    status, body = await change_password(client, user, PASSWORD, totp_code=current)
    assert status == 200, body
    assert (await login(client, user.email, NEW_PASSWORD, current)).status == 401  # a code works once


async def test_password_change_is_in_the_openapi_document(client):
    document = await (await client.get(f"{API}/openapi.json")).json()
    operation = document["paths"]["/api/v1/auth/password"]["post"]
    codes = {code for answer in operation["responses"].values() for code in answer.get("x-error-codes", [])}
    assert {"invalid_credentials", "mfa_required", "invalid_mfa_code", "weak_password", "too_many_attempts"} <= codes
