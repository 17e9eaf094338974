"""The admin workflow: versions, every (state, target) pair, publish rules, rollback, audit, access."""

from __future__ import annotations

import itertools

import pytest

from content.states import STATES, TRANSITIONS
from tests.integration.content.conftest import API, audit_types, fetch_all, unique_slug

ALLOWED = {(state, to) for (state, _), to in TRANSITIONS.items()}


async def test_each_save_is_a_new_version_and_returns_to_draft(cms):
    slug = unique_slug()
    first = await cms.draft("legal", slug, title="Terms v1", body="One")
    assert (first["version"], first["state"]) == (1, "draft")
    await cms.drive_to("legal", slug, "approved")
    second = await cms.draft("legal", slug, title="Terms v2", body="Two")
    assert (second["version"], second["state"]) == (2, "draft")

    document = await cms.document("legal", slug)
    assert [v["version"] for v in document["history"]] == [2, 1]
    assert [v["title"] for v in document["history"]] == ["Terms v2", "Terms v1"]
    assert document["current_version"] == 2 and document["versions"] == 2 and document["state"] == "draft"
    assert document["allowed_moves"] == [{"action": "submit", "to": "in_review"}]


@pytest.mark.parametrize(("state", "to"), list(itertools.product(STATES, STATES)))
async def test_every_state_target_pair(cms, database_url, state, to):
    slug = unique_slug("pair")
    draft = await cms.draft("help", slug)
    await cms.drive_to("help", slug, state)
    before = await cms.document("help", slug)
    events_before = await audit_types(database_url, draft["document_id"])

    status, body = await cms.transition("help", slug, to)

    if (state, to) in ALLOWED:
        assert status == 200, body
        assert body["state"] == to
        if to == "published":
            assert body["published_version"] == 1
        if to == "archived":
            assert body["published_version"] is None
        assert len(await audit_types(database_url, draft["document_id"])) == len(events_before) + 1
    else:
        assert status == 409, body
        assert body["error"]["code"] == "illegal_transition"
        assert body["error"]["details"]["allowed"] == [move["to"] for move in before["allowed_moves"]]
        after = await cms.document("help", slug)
        assert after == before, "a refused move changes nothing"
        assert await audit_types(database_url, draft["document_id"]) == events_before


async def test_publishing_needs_approval_unless_an_admin_gives_a_note(cms, database_url):
    slug = unique_slug()
    draft = await cms.draft("legal", slug)

    status, body = await cms.publish("legal", slug)
    assert status == 409 and body["error"]["code"] == "review_required"
    assert body["error"]["details"]["allowed"] == ["in_review"] and body["error"]["details"]["note_required"]

    status, body = await cms.publish("legal", slug, note="Regulator deadline today")
    assert status == 200, body
    assert (body["state"], body["published_version"]) == ("published", 1)
    publication = body["history"][0]["publications"][0]
    assert publication["skipped_review"] is True and publication["note"] == "Regulator deadline today"

    events = await fetch_all(database_url, "SELECT type, data FROM audit_events WHERE aggregate_type = 'cms_document'"
                             " AND aggregate_id = :id ORDER BY seq", id=draft["document_id"])
    assert [event.type for event in events] == ["cms.draft_saved", "cms.published"]
    assert events[1].data["skipped_review"] is True and events[1].data["note"] == "Regulator deadline today"


async def test_publish_from_approved_and_version_guard(cms):
    slug = unique_slug()
    await cms.draft("help", slug)
    await cms.drive_to("help", slug, "approved")
    status, body = await cms.publish("help", slug, version=2)
    assert status == 409 and body["error"]["code"] == "version_not_latest"
    status, body = await cms.publish("help", slug, version=1)
    assert status == 200 and body["published_version"] == 1
    assert body["history"][0]["publications"][0]["skipped_review"] is False

    status, body = await cms.publish("help", slug, note="again")  # already published: nothing to skip to
    assert status == 409 and body["error"]["code"] == "review_required"


async def test_archived_and_published_can_not_be_force_published(cms):
    slug = unique_slug()
    await cms.draft("help", slug)
    await cms.drive_to("help", slug, "archived")
    status, body = await cms.publish("help", slug, note="bring it back")
    assert status == 409 and body["error"]["details"]["note_required"] is False


async def test_rollback_republishes_an_earlier_version_as_a_new_one(cms, cms_client, database_url):
    slug = unique_slug()
    draft = await cms.published_doc("legal", slug, title="Old terms", body="Old")
    await cms.draft("legal", slug, title="New terms", body="New")
    await cms.publish("legal", slug, note="fast track")
    response = await cms_client.get(f"{API}/cms/legal/{slug}")
    assert (await response.json())["title"] == "New terms"

    status, body = await cms.rollback("legal", slug, 1, note="new terms had a typo")
    assert status == 201, body
    assert (body["current_version"], body["published_version"], body["state"]) == (3, 3, "published")
    assert body["history"][0]["source_version"] == 1 and body["history"][0]["title"] == "Old terms"
    assert [v["version"] for v in body["history"]] == [3, 2, 1]  # nothing rewritten

    response = await cms_client.get(f"{API}/cms/legal/{slug}")
    read = await response.json()
    assert (read["title"], read["version"]) == ("Old terms", 3)
    assert (await audit_types(database_url, draft["document_id"]))[-1] == "cms.rolled_back"


async def test_rollback_refuses_unknown_and_never_published_versions(cms):
    slug = unique_slug()
    await cms.published_doc("legal", slug)
    await cms.draft("legal", slug, title="never approved")
    status, body = await cms.rollback("legal", slug, 2)
    assert status == 409 and body["error"]["code"] == "version_never_published"
    status, body = await cms.rollback("legal", slug, 9)
    assert status == 404 and body["error"]["code"] == "cms_version_not_found"


async def test_versions_are_immutable_in_the_database(cms, database_url):
    slug = unique_slug()
    draft = await cms.draft("legal", slug)
    with pytest.raises(Exception, match="append-only"):
        await fetch_all(database_url, "UPDATE cms_versions SET body = 'tampered' WHERE document_id = :id",
                        id=draft["document_id"])


async def test_listing_shows_state_versions_and_pages(cms, cms_client, admin):
    prefix = unique_slug("list")
    for n in range(3):
        await cms.draft("landing", f"{prefix}-{n}")
    await cms.draft("landing", f"{prefix}-0", title="second save")
    await cms.drive_to("landing", f"{prefix}-1", "in_review")

    items, cursor = [], None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = await cms_client.get(f"{API}/admin/cms/landing", params=params, headers=admin.headers)
        page = await response.json()
        assert response.status == 200, page
        items += [item for item in page["items"] if item["slug"].startswith(prefix)]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [(i["slug"], i["state"], i["versions"], i["title"]) for i in items] == [
        (f"{prefix}-0", "draft", 2, "second save"), (f"{prefix}-1", "in_review", 1, "Title"),
        (f"{prefix}-2", "draft", 1, "Title"),
    ]
    response = await cms_client.get(f"{API}/admin/cms/landing", params={"state": "in_review"}, headers=admin.headers)
    assert all(item["state"] == "in_review" for item in (await response.json())["items"])


async def test_locales_are_separate_documents(cms):
    slug = unique_slug()
    await cms.draft("legal", slug, title="English", locale="en")
    german = await cms.draft("legal", slug, title="Deutsch", locale="de_at")
    assert german["locale"] == "de-AT" and german["version"] == 1
    assert (await cms.document("legal", slug, locale="de-AT"))["title"] == "Deutsch"


async def test_unknown_kind_and_document_are_404(cms, cms_client, admin):
    for method, path in [("GET", "/admin/cms/poems"), ("GET", "/admin/cms/poems/x"),
                         ("POST", "/admin/cms/poems/x/draft"), ("POST", "/admin/cms/poems/x/transition")]:
        response = await cms_client.request(method, f"{API}{path}", headers=admin.headers,
                                            json={"title": "t", "body": "b", "to": "in_review"})
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "cms_kind_not_found"
    response = await cms_client.get(f"{API}/admin/cms/legal/{unique_slug()}", headers=admin.headers)
    assert response.status == 404 and (await response.json())["error"]["code"] == "cms_document_not_found"
    status, _ = await cms.transition("legal", unique_slug(), "in_review")
    assert status == 404


async def test_email_templates_need_a_valid_subject_and_syntax(cms):
    status, body = await cms.post(f"/admin/cms/email/{unique_slug()}/draft", {"title": "t", "body": "b"})
    assert status == 422 and body["error"]["code"] == "subject_required"
    status, body = await cms.post(f"/admin/cms/email/{unique_slug()}/draft",
                                  {"title": "t", "body": "ok\n{% for %}", "metadata": {"subject": "s"}})
    assert status == 422 and body["error"]["code"] == "template_syntax_error" and body["error"]["details"]["line"] == 2
    status, body = await cms.post("/admin/cms/email/deliveries/draft",
                                  {"title": "t", "body": "b", "metadata": {"subject": "s"}})
    assert status == 422 and body["error"]["code"] == "slug_reserved"


async def test_support_may_read_and_draft_help_only(cms_client, login_as, cms):
    support = await login_as(cms_client, "support")
    slug = unique_slug()
    response = await cms_client.post(f"{API}/admin/cms/help/{slug}/draft", json={"title": "t", "body": "b"},
                                     headers=support.headers)
    assert response.status == 201, await response.text()
    response = await cms_client.get(f"{API}/admin/cms/help/{slug}", headers=support.headers)
    assert response.status == 200
    for kind in ("legal", "email", "landing"):
        response = await cms_client.post(f"{API}/admin/cms/{kind}/{slug}/draft",
                                         json={"title": "t", "body": "b", "metadata": {"subject": "s"}},
                                         headers=support.headers)
        assert response.status == 403, kind
        response = await cms_client.get(f"{API}/admin/cms/{kind}", headers=support.headers)
        assert response.status == 403, kind
    response = await cms_client.post(f"{API}/admin/cms/help/{slug}/transition", json={"to": "in_review"},
                                     headers=support.headers)
    assert response.status == 403
    customer = await login_as(cms_client)
    response = await cms_client.get(f"{API}/admin/cms/help", headers=customer.headers)
    assert response.status == 403
