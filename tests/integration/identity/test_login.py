"""Login: tokens in the body and as cookies, no user enumeration, throttling, access-token checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from http.cookies import SimpleCookie

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from tests.factories import PASSWORD, register, unique_email
from tests.integration.identity.conftest import API, enable_mfa, error_code, logged_in, login, new_user, wrong_code


def set_cookies(response) -> dict[str, str]:
    """Each Set-Cookie header by cookie name (the raw header, attributes included)."""
    headers = response.headers.getall("Set-Cookie", [])
    return {header.split("=", 1)[0]: header for header in headers}


def cookie_attributes(header: str):
    cookie = SimpleCookie()
    cookie.load(header)
    (morsel,) = cookie.values()
    return morsel


async def test_login_returns_tokens_user_and_expiry(client):
    user = await register(client)
    response = await login(client, user["email"])
    body = await response.json()
    assert response.status == 200, body
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert body["token_type"] == "Bearer"
    assert 300 <= body["expires_in"] <= 900
    assert body["user"] == user


async def test_login_sets_httponly_samesite_lax_cookies_scoped_by_path(client):
    user = await register(client)
    response = await login(client, user["email"])
    body = await response.json()
    cookies = set_cookies(response)
    assert set(cookies) == {"access_token", "refresh_token"}
    access, refresh = cookie_attributes(cookies["access_token"]), cookie_attributes(cookies["refresh_token"])
    assert access.value == body["access_token"] and refresh.value == body["refresh_token"]
    assert access["path"] == "/api/v1" and refresh["path"] == "/api/v1/auth"
    for morsel, header in ((access, cookies["access_token"]), (refresh, cookies["refresh_token"])):
        assert morsel["httponly"] is True, header
        assert morsel["samesite"] == "Lax", header
        assert "secure" not in header.lower(), "test env cookies are not Secure"
        assert int(morsel["max-age"]) > 0


async def test_cookies_are_secure_when_configured(make_client, settings):
    client = await make_client(settings.model_copy(update={"cookie_secure": True}))
    user = await register(client)
    response = await login(client, user["email"])
    assert response.status == 200
    for name, header in set_cookies(response).items():
        assert cookie_attributes(header)["secure"] is True, name


async def test_login_email_is_case_and_space_insensitive(client):
    user = await register(client)
    response = await login(client, f"  {user['email'].upper()} ")
    assert response.status == 200, await response.text()


async def test_wrong_password_and_unknown_email_get_the_same_answer(client):
    user = await register(client)
    wrong_password = await login(client, user["email"], "Not-the-password-1!")
    unknown_email = await login(client, unique_email("nobody"), PASSWORD)
    answers = []
    for response in (wrong_password, unknown_email):
        assert response.status == 401
        body = await response.json()
        assert body["error"]["code"] == "invalid_credentials"
        assert body["error"]["request_id"]
        del body["error"]["request_id"]
        answers.append(body)
    assert answers[0] == answers[1]
    assert "Set-Cookie" not in wrong_password.headers


async def test_ten_failures_lock_the_account_even_with_the_right_password(client, settings):
    assert settings.login_max_failures == 10
    user = await register(client)
    for _ in range(10):
        response = await login(client, user["email"], "Not-the-password-1!")
        assert response.status == 401
    response = await login(client, user["email"], PASSWORD)
    assert response.status == 429
    assert await error_code(response) == "too_many_attempts"
    retry_after = int(response.headers["Retry-After"])
    # the counter expires with the window (started at the first failure)
    assert settings.login_failure_window_seconds - 60 <= retry_after <= settings.login_failure_window_seconds
    assert (await response.json())["error"]["details"]["retry_after_seconds"] == retry_after
    # Another account from the same address still logs in: the lock is per account.
    other = await register(client)
    assert (await login(client, other["email"])).status == 200


async def test_a_successful_login_resets_the_account_counter(make_client, settings):
    client = await make_client(settings.model_copy(update={"login_max_failures": 3}))
    user = await register(client)
    for _ in range(2):
        assert (await login(client, user["email"], "Not-the-password-1!")).status == 401
    assert (await login(client, user["email"])).status == 200
    for _ in range(2):
        assert (await login(client, user["email"], "Not-the-password-1!")).status == 401
    assert (await login(client, user["email"])).status == 200


async def test_failures_from_one_address_are_limited_across_accounts(make_client, settings):
    client = await make_client(settings.model_copy(update={"login_ip_max_failures": 3}))
    user = await register(client)
    for _ in range(3):
        assert (await login(client, unique_email("spray"), "Not-the-password-1!")).status == 401
    response = await login(client, user["email"])
    assert response.status == 429
    assert await error_code(response) == "too_many_attempts"
    assert int(response.headers["Retry-After"]) >= 1


async def test_access_token_claims_and_lifetime(client):
    user = await new_user(client)
    claims = jwt.decode(user.access_token, options={"verify_signature": False})
    assert set(claims) >= {"sub", "sid", "roles", "iat", "exp", "jti"}
    assert claims["sub"] == user.user_id
    uuid.UUID(claims["sid"]), uuid.UUID(claims["jti"])
    assert claims["roles"] == ["customer"]
    assert 300 <= claims["exp"] - claims["iat"] <= 900
    assert abs(claims["iat"] - time.time()) < 300
    assert jwt.get_unverified_header(user.access_token)["alg"] == "HS256"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def _refused(client, token: str) -> None:
    response = await client.get(f"{API}/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 401, await response.text()
    assert await error_code(response) == "invalid_token"
    response = await client.get(f"{API}/me", headers={"Cookie": f"access_token={token}"})
    assert response.status == 401
    assert await error_code(response) == "invalid_token"


async def test_alg_none_token_is_refused(client):
    user = await new_user(client)
    claims = jwt.decode(user.access_token, options={"verify_signature": False})
    await _refused(client, jwt.encode(claims, None, algorithm="none"))
    # Hand-built, with an empty signature and with the original signature kept.
    header_none = _b64({"alg": "none", "typ": "JWT"})
    await _refused(client, f"{header_none}.{_b64(claims)}.")
    await _refused(client, f"{header_none}.{_b64(claims)}.{user.access_token.rsplit('.', 1)[1]}")


async def test_token_signed_with_another_key_is_refused(client):
    user = await new_user(client)
    claims = jwt.decode(user.access_token, options={"verify_signature": False})
    await _refused(client, jwt.encode(claims, "an-attacker-key-that-is-long-enough-32b", algorithm="HS256"))


@pytest.mark.filterwarnings("ignore:The HMAC key is")
async def test_token_with_another_algorithm_is_refused_even_with_the_right_secret(client, settings):
    user = await new_user(client)
    claims = jwt.decode(user.access_token, options={"verify_signature": False})
    secret = settings.secret_key.get_secret_value()
    await _refused(client, jwt.encode(claims, secret, algorithm="HS512"))
    await _refused(client, jwt.encode(claims, secret, algorithm="HS384"))


async def test_expired_or_incomplete_tokens_are_refused(client, settings):
    user = await new_user(client)
    claims = jwt.decode(user.access_token, options={"verify_signature": False})
    secret = settings.secret_key.get_secret_value()
    await _refused(client, jwt.encode({**claims, "iat": claims["iat"] - 3600, "exp": claims["exp"] - 3600},
                                      secret, algorithm="HS256"))
    for missing in ("sid", "exp", "jti"):
        await _refused(client, jwt.encode({k: v for k, v in claims.items() if k != missing}, secret, algorithm="HS256"))
    await _refused(client, "not-a-jwt")


async def test_cookie_and_bearer_are_both_accepted(client):
    user = await register(client)
    response = await login(client, user["email"], keep_cookies=True)
    token = (await response.json())["access_token"]
    by_jar = await client.get(f"{API}/me")  # the cookie the login set
    assert by_jar.status == 200, await by_jar.text()
    client.session.cookie_jar.clear()
    by_cookie = await client.get(f"{API}/me", headers={"Cookie": f"access_token={token}"})
    by_bearer = await client.get(f"{API}/me", headers={"Authorization": f"Bearer {token}"})
    assert by_cookie.status == 200 and by_bearer.status == 200
    assert (await by_cookie.json())["id"] == (await by_bearer.json())["id"] == user["id"]


async def test_me_returns_the_profile(client):
    user = await register(client, display_name="Grace Hopper")
    session = await logged_in(client, user["email"])
    response = await client.get(f"{API}/me", headers=session.headers)
    body = await response.json()
    assert response.status == 200
    assert body == {**user, "mfa_enabled": False, "kyc_status": "unverified", "locale": None, "email_verified": True,
                    "withdrawal_allowlist": False, "withdrawal_allowlist_off_at": None}


async def test_wrong_mfa_codes_count_towards_the_lockout(make_client, settings):
    client = await make_client(settings.model_copy(update={"login_max_failures": 3}))
    user = await logged_in(client, (await register(client))["email"])
    enrollment, (_, current, _) = await enable_mfa(client, user)
    for _ in range(3):
        response = await login(client, user.email, totp_code=wrong_code(enrollment["secret"]))
        assert response.status == 401 and await error_code(response) == "invalid_mfa_code"
    response = await login(client, user.email, totp_code=current)
    assert response.status == 429 and await error_code(response) == "too_many_attempts"


def _ed25519_pem_pair() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


async def test_eddsa_tokens_and_algorithm_confusion(make_client, settings):
    private, public = _ed25519_pem_pair()
    client = await make_client(settings.model_copy(update={
        "jwt_algorithm": "EdDSA", "jwt_private_key": SecretStr(private), "jwt_public_key": public}))
    user = await new_user(client)
    assert jwt.get_unverified_header(user.access_token)["alg"] == "EdDSA"
    assert (await client.get(f"{API}/me", headers=user.headers)).status == 200
    claims = jwt.decode(user.access_token, options={"verify_signature": False})
    # the public key as an HMAC secret (the classic RS/HS confusion), the platform secret, none
    forged = [
        _b64({"alg": "HS256", "typ": "JWT"}) + "." + _b64(claims),
        jwt.encode(claims, settings.secret_key.get_secret_value(), algorithm="HS256"),
        jwt.encode(claims, None, algorithm="none"),
        jwt.encode(claims, _ed25519_pem_pair()[0], algorithm="EdDSA"),
    ]
    signing_input = forged[0].encode()
    signature = base64.urlsafe_b64encode(hmac.new(public.encode(), signing_input, hashlib.sha256).digest())
    forged[0] = f"{forged[0]}.{signature.rstrip(b'=').decode()}"
    for token in forged:
        await _refused(client, token)
