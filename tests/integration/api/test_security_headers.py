"""Every answer carries the browser-hardening headers; nothing personal is ever stored by a cache."""

from __future__ import annotations

from pydantic import SecretStr

from core.settings import Environment
from tests.factories import PASSWORD, unique_email

API = "/api/v1"


def assert_hardened(response, *, hsts: bool = False) -> None:
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff", (response.url, dict(headers))
    assert headers["Referrer-Policy"] == "no-referrer", response.url
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], response.url
    assert ("Strict-Transport-Security" in headers) is hsts, response.url


async def test_security_headers_on_every_answer(client):
    for method, path in [("GET", "/health"), ("GET", "/readiness"), ("GET", f"{API}/status"),
                         ("GET", f"{API}/openapi.json"), ("GET", "/no/such/route"), ("POST", f"{API}/auth/login"),
                         ("DELETE", f"{API}/status"), ("GET", "/docs"), ("GET", "/docs/assets/swagger-ui.css")]:
        response = await client.request(method, path)
        assert_hardened(response)


async def test_the_docs_page_keeps_what_swagger_ui_needs(client):
    policy = (await client.get("/docs")).headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy


async def test_hsts_outside_devnet_and_test(make_client, settings):
    production = settings.model_copy(update={"env": Environment.PRODUCTION, "secret_key": SecretStr("s" * 40),
                                             "sandbox_credit": None})
    client = await make_client(production)
    response = await client.get("/health")
    assert_hardened(response, hsts=True)
    assert "max-age=" in response.headers["Strict-Transport-Security"]


async def test_token_and_personal_answers_are_no_store(client):
    email = unique_email("nostore")
    registered = await client.post(f"{API}/auth/register",
                                   json={"email": email, "password": PASSWORD, "display_name": "No Store"})
    assert registered.status == 201
    login = await client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status == 200
    tokens = await login.json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    refreshed = await client.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    me = await client.get(f"{API}/me", headers=headers)
    refused = await client.post(f"{API}/auth/login", json={"email": email, "password": "wrong-password-123"})
    for response in (registered, login, refreshed, me, refused, await client.get(f"{API}/wallet/balances", headers=headers)):
        assert response.headers.get("Cache-Control") == "no-store", (response.url, dict(response.headers))
    assert_hardened(me)


async def test_public_content_keeps_its_own_caching(client):
    response = await client.get(f"{API}/cms/help")
    assert response.status == 200
    assert response.headers["Cache-Control"].startswith("public")
    assert_hardened(response)
