"""Email templates: previews of a version and a locale, missing variables, the sandbox, who may."""

from __future__ import annotations

from tests.integration.content.conftest import API, VARIABLES, email_template, unique_slug


async def test_preview_renders_subject_html_and_text(cms):
    slug = await email_template(cms)
    status, body = await cms.post(f"/cms/email/{slug}/preview", {"variables": VARIABLES})
    assert status == 200, body
    assert body["subject"] == "Escrow Servers funded"
    assert "<strong>Ada &lt;Lovelace&gt;</strong>" in body["html"] and body["html"].startswith("<!doctype html>")
    assert body["text"].startswith("Hello **Ada <Lovelace>**,")


async def test_preview_of_an_earlier_version_and_a_locale(cms):
    slug = await email_template(cms, subject="v1 {{ escrow_title }}")
    await cms.draft("email", slug, title="v2", body="two", metadata={"subject": "v2"})
    await cms.draft("email", slug, title="de", body="Hallo {{ display_name }}", locale="de",
                    metadata={"subject": "Hallo"})
    _, first = await cms.post(f"/cms/email/{slug}/preview", {"variables": VARIABLES, "version": 1})
    assert first["subject"] == "v1 Servers"
    _, latest = await cms.post(f"/cms/email/{slug}/preview", {})
    assert latest["subject"] == "v2"
    _, german = await cms.post(f"/cms/email/{slug}/preview", {"variables": VARIABLES, "locale": "de-CH"})
    assert german["subject"] == "Hallo" and "Ada" in german["text"]


async def test_preview_with_a_missing_variable_is_422_naming_it(cms):
    slug = await email_template(cms)
    status, body = await cms.post(f"/cms/email/{slug}/preview",
                                  {"variables": {k: v for k, v in VARIABLES.items() if k != "currency"}})
    assert status == 422, body
    assert body["error"]["code"] == "missing_template_variable"
    assert body["error"]["details"]["variable"] == "currency" and "currency" in body["error"]["message"]


async def test_preview_refuses_sandbox_escapes_and_unknown_templates(cms):
    slug = await email_template(cms, subject="s", body="{{ ''.__class__.__mro__[1].__subclasses__() }}")
    status, body = await cms.post(f"/cms/email/{slug}/preview", {})
    assert status == 422 and body["error"]["code"] == "template_refused"
    status, body = await cms.post(f"/cms/email/{unique_slug()}/preview", {})
    assert status == 404


async def test_who_may_preview_and_test_send(cms, cms_client, login_as):
    slug = await email_template(cms)
    support = await login_as(cms_client, "support")
    response = await cms_client.post(f"{API}/cms/email/{slug}/preview", json={"variables": VARIABLES},
                                     headers=support.headers)
    assert response.status == 200
    response = await cms_client.post(f"{API}/cms/email/{slug}/test-send", json={"to": "a@example.com"},
                                     headers=support.headers)
    assert response.status == 403
    customer = await login_as(cms_client)
    response = await cms_client.post(f"{API}/cms/email/{slug}/preview", json={}, headers=customer.headers)
    assert response.status == 403
