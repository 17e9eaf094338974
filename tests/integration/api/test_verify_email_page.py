"""The devnet's /verify-email page: where the emailed link lands when there is no front end."""

from __future__ import annotations

import uuid

from core.settings import Environment
from tests.factories import emailed_verification_token, publish_email_templates, register
from tests.integration.identity.conftest import fetch_one

API = "/api/v1"


async def test_the_devnet_serves_the_page_the_link_points_at(make_client, settings):
    client = await make_client(settings.model_copy(update={"env": Environment.DEVNET, "public_url": None}))
    await publish_email_templates(client)
    user = await register(client, verified=False)
    token = await emailed_verification_token(client, user["id"])

    page = await client.get("/verify-email", params={"token": token})
    assert page.status == 200 and page.content_type == "text/html"
    policy = page.headers["Content-Security-Policy"]
    # Its script is a file from this origin; no inline code, nothing from elsewhere, never framed.
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy and page.headers["Referrer-Policy"] == "no-referrer"
    html = await page.text()
    assert '<script src="/verify-email.js"></script>' in html and token not in html

    script = await client.get("/verify-email.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    assert '"/api/v1/auth/email/verify"' in await script.text()

    # What the page's button does: post the token.
    verified = await client.post(f"{API}/auth/email/verify", json={"token": token})
    assert verified.status == 200, await verified.text()


async def test_the_emailed_link_points_at_the_api_when_no_public_url_is_set(make_client, settings, database_url):
    devnet = settings.model_copy(update={"env": Environment.DEVNET, "public_url": None, "api_host": "127.0.0.1",
                                         "api_port": 8480})
    client = await make_client(devnet)
    await publish_email_templates(client)
    user = await register(client, verified=False)
    token = await emailed_verification_token(client, user["id"])
    assert devnet.public_base_url == "http://127.0.0.1:8480"
    row = await fetch_one(database_url, "SELECT text FROM email_deliveries WHERE user_id = :user"
                          " AND template_slug = 'email.verify'", user=uuid.UUID(user["id"]))
    assert f"http://127.0.0.1:8480/verify-email?token={token}" in row.text


async def test_elsewhere_the_front_end_serves_it(client):
    assert (await client.get("/verify-email", params={"token": "x"})).status == 404
