"""Email ownership through the real routes: the link a new account is emailed, verifying it once,
expired and used links, resending (throttled), and what /me shows.

The link is read from the stored delivery of the seeded ``email.verify`` template (rendered in the
registration's transaction); the SMTP hand-off itself is the notifications tests' business.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text

from core.db import create_engine
from tests.factories import (
    emailed_verification_token,
    publish_email_templates,
    register,
    unique_email,
)
from tests.integration.identity.conftest import API, audit_events, error_code, fetch_one, logged_in


@pytest.fixture
async def client(make_client, settings):
    client = await make_client(settings.model_copy(update={"public_url": "https://app.example.com"}))
    await publish_email_templates(client)
    return client


async def execute(database_url: str, sql: str, **params) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(sql), params)
    finally:
        await engine.dispose()


async def unverified_user(client):
    created = await register(client, email=unique_email("ev"), verified=False)
    return await logged_in(client, created["email"])


async def me(client, user) -> dict:
    response = await client.get(f"{API}/me", headers=user.headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def verify(client, token: str):
    return await client.post(f"{API}/auth/email/verify", json={"token": token})


async def test_a_new_account_is_unverified_and_is_emailed_a_link_to_the_front_end(client, database_url):
    user = await unverified_user(client)
    assert (await me(client, user))["email_verified"] is False
    row = await fetch_one(database_url, "SELECT recipient, text, html FROM email_deliveries WHERE user_id = :user"
                          " AND template_slug = 'email.verify'", user=uuid.UUID(user.user_id))
    assert row.recipient == user.email
    token = await emailed_verification_token(client, user.user_id)
    assert f"https://app.example.com/verify-email?token={token}" in row.text
    assert f'href="https://app.example.com/verify-email?token={token}"' in row.html
    # Stored hashed: the token itself is nowhere in the tokens table.
    stored = await fetch_one(database_url, "SELECT token_hash, expires_at > now() AS live FROM"
                             " email_verification_tokens WHERE user_id = :user", user=uuid.UUID(user.user_id))
    assert stored.live and stored.token_hash != token and token not in stored.token_hash


async def test_verifying_marks_the_email_verified_once_and_is_audited(client, database_url):
    user = await unverified_user(client)
    token = await emailed_verification_token(client, user.user_id)
    response = await verify(client, token)
    assert response.status == 200, await response.text()
    assert await response.json() == {"email_verified": True}
    assert (await me(client, user))["email_verified"] is True
    events = await audit_events(database_url, "user", user.user_id)
    [verified] = [event for event in events if event["type"] == "user.email_verified"]
    assert verified["data"] == {"email": user.email} and verified["actor"] == user.user_id
    assert token not in str(events)

    again = await verify(client, token)
    assert again.status == 422 and await error_code(again) == "invalid_token"
    spent = await fetch_one(database_url, "SELECT count(*) AS links, bool_and(used_at IS NOT NULL) AS used"
                            " FROM email_verification_tokens WHERE user_id = :user", user=uuid.UUID(user.user_id))
    assert (spent.links, spent.used) == (1, True)


async def test_two_clicks_at_once_verify_once(client, database_url):
    user = await unverified_user(client)
    token = await emailed_verification_token(client, user.user_id)
    answers = await asyncio.gather(*(verify(client, token) for _ in range(4)))
    assert sorted(answer.status for answer in answers) == [200, 422, 422, 422]
    events = await audit_events(database_url, "user", user.user_id)
    assert [event["type"] for event in events].count("user.email_verified") == 1


async def test_an_expired_or_unknown_token_is_invalid(client, database_url):
    user = await unverified_user(client)
    token = await emailed_verification_token(client, user.user_id)
    await execute(database_url, "UPDATE email_verification_tokens SET expires_at = now() - interval '1 second'"
                  " WHERE user_id = :user", user=uuid.UUID(user.user_id))
    expired = await verify(client, token)
    assert expired.status == 422 and await error_code(expired) == "invalid_token"
    unknown = await verify(client, "x" * 43)
    assert unknown.status == 422 and await error_code(unknown) == "invalid_token"
    assert (await me(client, user))["email_verified"] is False


async def test_resend_replaces_the_link_and_is_throttled(make_client, settings):
    client = await make_client(settings.model_copy(update={"email_verification_resend_max": 2}))
    await publish_email_templates(client)
    user = await unverified_user(client)
    first = await emailed_verification_token(client, user.user_id)

    anonymous = await client.post(f"{API}/auth/email/resend")
    assert anonymous.status == 401
    resent = await client.post(f"{API}/auth/email/resend", headers=user.headers)
    assert resent.status == 202, await resent.text()
    assert (await resent.json())["email"] == user.email
    second = await emailed_verification_token(client, user.user_id)
    assert second != first
    assert (await client.post(f"{API}/auth/email/resend", headers=user.headers)).status == 202
    throttled = await client.post(f"{API}/auth/email/resend", headers=user.headers)
    assert throttled.status == 429 and await error_code(throttled) == "too_many_attempts"
    assert 0 < int(throttled.headers["Retry-After"]) <= settings.email_verification_resend_window_seconds

    # Only the newest link works: a resend retires the ones before it.
    stale = await verify(client, first)
    assert stale.status == 422 and await error_code(stale) == "invalid_token"
    latest = await emailed_verification_token(client, user.user_id)
    assert (await verify(client, latest)).status == 200


async def test_a_verified_account_gets_no_new_link(client):
    created = await register(client)  # the factory verifies it
    user = await logged_in(client, created["email"])
    assert (await me(client, user))["email_verified"] is True
    response = await client.post(f"{API}/auth/email/resend", headers=user.headers)
    assert response.status == 409 and await error_code(response) == "email_already_verified"


async def test_the_verification_routes_are_in_the_openapi_document_with_their_errors(client):
    document = await (await client.get(f"{API}/openapi.json")).json()
    verify_op = document["paths"]["/api/v1/auth/email/verify"]["post"]
    resend_op = document["paths"]["/api/v1/auth/email/resend"]["post"]
    assert "invalid_token" in verify_op["responses"]["422"]["x-error-codes"]
    assert "email_already_verified" in resend_op["responses"]["409"]["x-error-codes"]
    assert "too_many_attempts" in resend_op["responses"]["429"]["x-error-codes"]
    assert "email_verified" in str(document["components"]["schemas"])
