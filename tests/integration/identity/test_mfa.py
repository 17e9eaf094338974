"""TOTP MFA: enrollment, single-use codes at login, recovery codes, secrets at rest, step-up."""

from __future__ import annotations

import asyncio
import base64
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from identity import service
from api.keys import REDIS, SETTINGS
from core.db import create_engine, session_factory, unit_of_work
from core.errors import TooManyRequests
from tests.integration.identity.conftest import (
    API,
    enable_mfa,
    error_code,
    fetch_one,
    login,
    new_user,
    totp_codes,
    wrong_code,
)


async def profile(client, user) -> dict:
    response = await client.get(f"{API}/me", headers=user.headers)
    assert response.status == 200
    return await response.json()


async def test_enrollment_returns_a_secret_its_uri_and_ten_recovery_codes(client):
    user = await new_user(client)
    response = await client.post(f"{API}/auth/mfa/enroll", json={"password": user.password}, headers=user.headers)
    body = await response.json()
    assert response.status == 200, body
    assert set(body) == {"secret", "otpauth_uri", "recovery_codes"}
    uri = urlsplit(body["otpauth_uri"])
    assert body["otpauth_uri"].startswith("otpauth://totp/")
    query = parse_qs(uri.query)
    assert query["secret"] == [body["secret"]] and query["issuer"] == ["VirtuOZ"]
    assert len(body["recovery_codes"]) == 10 == len(set(body["recovery_codes"]))
    # pending until a code confirms it: login still needs no code
    assert (await profile(client, user))["mfa_enabled"] is False
    assert (await login(client, user.email)).status == 200


async def test_verify_with_a_wrong_code_keeps_mfa_off(client):
    user = await new_user(client)
    enrollment = await (await client.post(f"{API}/auth/mfa/enroll", json={"password": user.password},
                                           headers=user.headers)).json()
    response = await client.post(f"{API}/auth/mfa/verify", json={"code": wrong_code(enrollment["secret"])},
                                 headers=user.headers)
    assert response.status == 401 and await error_code(response) == "invalid_mfa_code"
    assert (await profile(client, user))["mfa_enabled"] is False


async def test_verified_mfa_is_required_at_login(client):
    user = await new_user(client)
    enrollment, (_, current, _) = await enable_mfa(client, user)
    assert (await profile(client, user))["mfa_enabled"] is True

    response = await login(client, user.email)
    assert response.status == 401 and await error_code(response) == "mfa_required"
    response = await login(client, user.email, totp_code=wrong_code(enrollment["secret"]))
    assert response.status == 401 and await error_code(response) == "invalid_mfa_code"
    response = await login(client, user.email, "Not-the-password-1!", totp_code=current)
    assert response.status == 401 and await error_code(response) == "invalid_credentials"
    response = await login(client, user.email, totp_code=current)
    assert response.status == 200, await response.text()


async def test_the_same_totp_code_cannot_be_used_twice(client):
    user = await new_user(client)
    _, (previous, current, following) = await enable_mfa(client, user)
    # the code that verified the enrollment is spent
    response = await login(client, user.email, totp_code=previous)
    assert response.status == 401 and await error_code(response) == "invalid_mfa_code"
    assert (await login(client, user.email, totp_code=current)).status == 200
    response = await login(client, user.email, totp_code=current)
    assert response.status == 401 and await error_code(response) == "invalid_mfa_code"
    # and an older code after a newer one is refused too
    assert (await login(client, user.email, totp_code=following)).status == 200
    response = await login(client, user.email, totp_code=current)
    assert response.status == 401 and await error_code(response) == "invalid_mfa_code"


async def test_concurrent_logins_with_one_code_let_only_one_in(client):
    user = await new_user(client)
    _, (_, current, _) = await enable_mfa(client, user)
    responses = await asyncio.gather(*(login(client, user.email, totp_code=current) for _ in range(4)))
    assert sorted(response.status for response in responses) == [200, 401, 401, 401]


async def test_a_recovery_code_disables_mfa_once(client):
    user = await new_user(client)
    enrollment, (_, _, following) = await enable_mfa(client, user)
    recovery = enrollment["recovery_codes"][0]
    response = await client.post(f"{API}/auth/mfa/disable", json={"password": user.password, "code": recovery.upper()}, headers=user.headers)
    assert response.status == 200, await response.text()
    assert await response.json() == {"mfa_enabled": False}
    assert (await profile(client, user))["mfa_enabled"] is False
    assert (await login(client, user.email)).status == 200  # no code needed any more

    response = await client.post(f"{API}/auth/mfa/disable", json={"password": user.password, "code": recovery}, headers=user.headers)
    assert response.status == 409 and await error_code(response) == "mfa_not_enabled"

    # on again (new secret, new codes): the used code, and every code of the old set, are dead
    again = await (await client.post(f"{API}/auth/mfa/enroll", json={"password": user.password},
                                           headers=user.headers)).json()
    codes = await totp_codes(again["secret"])
    assert (await client.post(f"{API}/auth/mfa/verify", json={"code": codes[1]}, headers=user.headers)).status == 200
    for old in (recovery, enrollment["recovery_codes"][1]):
        response = await client.post(f"{API}/auth/mfa/disable", json={"password": user.password, "code": old}, headers=user.headers)
        assert response.status == 401 and await error_code(response) == "invalid_mfa_code"
    response = await client.post(f"{API}/auth/mfa/disable", json={"password": user.password, "code": again["recovery_codes"][5]},
                                 headers=user.headers)
    assert response.status == 200


async def test_a_recovery_code_is_single_use_in_the_database(client, database_url):
    user = await new_user(client)
    enrollment, _ = await enable_mfa(client, user)
    code = enrollment["recovery_codes"][3]
    engine = create_engine(database_url)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            row = await service.get_user(session, uuid.UUID(user.user_id))
            assert await service._consume_recovery_code(session, row, code) is True
            assert await service._consume_recovery_code(session, row, code) is False
            assert await service._consume_recovery_code(session, row, enrollment["recovery_codes"][4]) is True
    finally:
        await engine.dispose()


async def test_disable_with_a_current_totp_code(client):
    user = await new_user(client)
    _, (_, current, _) = await enable_mfa(client, user)
    response = await client.post(f"{API}/auth/mfa/disable", json={"password": user.password, "code": current}, headers=user.headers)
    assert response.status == 200, await response.text()


async def test_reenrolling_while_on_needs_the_password_and_a_current_code(client):
    user = await new_user(client)
    _, (_, current, _) = await enable_mfa(client, user)
    response = await client.post(f"{API}/auth/mfa/enroll", json={"password": user.password}, headers=user.headers)
    assert response.status == 401 and await error_code(response) == "mfa_required"
    response = await client.post(f"{API}/auth/mfa/enroll", json={"password": "Not-the-password-1!", "code": current},
                                 headers=user.headers)
    assert response.status == 401 and await error_code(response) == "invalid_credentials"
    response = await client.post(f"{API}/auth/mfa/enroll", json={"password": user.password, "code": current},
                                 headers=user.headers)
    assert response.status == 200, await response.text()
    # still on: the old authenticator works until the new one is verified
    assert (await profile(client, user))["mfa_enabled"] is True


async def test_disable_needs_the_password(client):
    user = await new_user(client)
    _, (_, current, _) = await enable_mfa(client, user)
    response = await client.post(f"{API}/auth/mfa/disable", json={"password": "Not-the-password-1!", "code": current},
                                 headers=user.headers)
    assert response.status == 401 and await error_code(response) == "invalid_credentials"
    response = await client.post(f"{API}/auth/mfa/disable", json={"code": current}, headers=user.headers)
    assert response.status == 422
    assert (await profile(client, user))["mfa_enabled"] is True


async def test_totp_secret_is_not_stored_in_plaintext(client, database_url):
    user = await new_user(client)
    enrollment, _ = await enable_mfa(client, user)
    row = await fetch_one(database_url, "SELECT mfa_secret, mfa_pending_secret FROM users WHERE id = :id",
                          id=uuid.UUID(user.user_id))
    stored = bytes(row.mfa_secret)
    secret = enrollment["secret"]
    assert row.mfa_pending_secret is None
    assert secret.encode() not in stored and secret.lower().encode() not in stored
    assert base64.b32decode(secret) not in stored
    recovery = await fetch_one(database_url, "SELECT string_agg(code_hash, ',') AS hashes FROM mfa_recovery_codes"
                               " WHERE user_id = :id", id=uuid.UUID(user.user_id))
    assert all(code.replace("-", "") not in recovery.hashes for code in enrollment["recovery_codes"])


def _settings(client):
    return client.app[SETTINGS]


async def test_step_up_passes_without_mfa(client, database_url):
    user = await new_user(client)
    engine = create_engine(database_url)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            await service.require_step_up(session, _settings(client), client.app[REDIS], uuid.UUID(user.user_id),
                                            None)
    finally:
        await engine.dispose()


async def test_step_up_needs_a_fresh_code_when_mfa_is_on(client, database_url):
    user = await new_user(client)
    _, (previous, current, _) = await enable_mfa(client, user)
    settings, user_id, redis = _settings(client), uuid.UUID(user.user_id), client.app[REDIS]
    engine = create_engine(database_url)
    factory = session_factory(engine)
    try:
        for code in (None, ""):
            with pytest.raises(service.MfaRequired) as refused:
                async with unit_of_work(factory) as session:
                    await service.require_step_up(session, settings, redis, user_id, code)
            assert (refused.value.status, refused.value.code) == (401, "mfa_required")
        with pytest.raises(service.InvalidMfaCode):  # the code that verified the enrollment
            async with unit_of_work(factory) as session:
                await service.require_step_up(session, settings, redis, user_id, previous)
        async with unit_of_work(factory) as session:
            await service.require_step_up(session, settings, redis, user_id, current)
        with pytest.raises(service.InvalidMfaCode) as reused:
            async with unit_of_work(factory) as session:
                await service.require_step_up(session, settings, redis, user_id, current)
        assert (reused.value.status, reused.value.code) == (401, "invalid_mfa_code")
    finally:
        await engine.dispose()
    # the step-up spent the code for login too
    response = await login(client, user.email, totp_code=current)
    assert response.status == 401 and await error_code(response) == "invalid_mfa_code"


async def test_step_up_codes_are_throttled_per_account(client, database_url):
    """A stolen session cannot try the million codes: after the login limit of wrong codes, 429
    (even for a right one); the login counters are not the step-up's."""
    user = await new_user(client)
    _, (_, current, _) = await enable_mfa(client, user)
    settings, user_id, redis = _settings(client), uuid.UUID(user.user_id), client.app[REDIS]
    engine = create_engine(database_url)
    factory = session_factory(engine)
    try:
        for _ in range(settings.login_max_failures):
            with pytest.raises(service.InvalidMfaCode):
                async with unit_of_work(factory) as session:
                    await service.require_step_up(session, settings, redis, user_id, "000000")
        with pytest.raises(TooManyRequests) as throttled:
            async with unit_of_work(factory) as session:
                await service.require_step_up(session, settings, redis, user_id, current)
        assert throttled.value.status == 429 and int(throttled.value.headers["Retry-After"]) > 0
    finally:
        await engine.dispose()
    response = await login(client, user.email, totp_code=current)
    assert response.status == 200, await response.text()


async def test_a_recovery_code_logs_in_once_when_the_authenticator_is_lost(client):
    user = await new_user(client)
    enrollment, _ = await enable_mfa(client, user)
    recovery = enrollment["recovery_codes"][3]
    first = await login(client, user.email, totp_code=recovery)
    assert first.status == 200, await first.text()
    again = await login(client, user.email, totp_code=recovery)
    assert again.status == 401 and await error_code(again) == "invalid_mfa_code"


async def test_mfa_disable_is_throttled(client):
    """Turning MFA off is a step-up action: wrong codes count on the step-up counters, so a stolen
    session (even with the password) cannot try the million codes."""
    user = await new_user(client)
    enrollment, _ = await enable_mfa(client, user)
    statuses = []
    for _ in range(13):
        response = await client.post(f"{API}/auth/mfa/disable",
                                      json={"password": user.password, "code": wrong_code(enrollment["secret"])},
                                      headers=user.headers)
        statuses.append(response.status)
        if response.status == 429:
            assert await error_code(response) == "too_many_attempts"
            assert int(response.headers["Retry-After"]) > 0
    assert 429 in statuses[:12], statuses
    assert set(statuses) <= {401, 429} and statuses[-1] == 429, statuses
    assert (await profile(client, user))["mfa_enabled"] is True
