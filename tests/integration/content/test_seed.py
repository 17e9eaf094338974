"""Devnet starter content: published, idempotent, and every email template renders."""

from __future__ import annotations

from content.seed import SEEDS, seed_content
from core.db import create_engine, session_factory, unit_of_work
from tests.integration.content.conftest import API, fetch_all

SAMPLE = {"escrow_title": "Servers", "amount": "1.00", "currency": "USDC", "chain": "ethereum", "tx_hash": "0xabc",
          "ticket_subject": "Help", "reply": "Done", "display_name": "Ada", "email": "ada@example.com",
          "verify_url": "https://app.example.com/verify-email?token=a_b-c"}


async def seed(database_url: str) -> list[str]:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            return await seed_content(session)
    finally:
        await engine.dispose()


async def test_seed_is_idempotent_and_publishes_everything(database_url, cms_client, cms):
    await seed(database_url)
    assert await seed(database_url) == []  # the second run finds everything in place

    for entry in SEEDS:
        rows = await fetch_all(database_url, "SELECT state, published_version, current_version FROM cms_documents"
                               " WHERE kind = :kind AND slug = :slug AND locale = :locale",
                               kind=entry.kind, slug=entry.slug, locale=entry.locale)
        assert len(rows) == 1 and rows[0].state == "published" and rows[0].published_version is not None, entry

    for path in ("/cms/legal/terms", "/cms/legal/privacy", "/cms/help/getting-started", "/cms/landing/home"):
        response = await cms_client.get(f"{API}{path}")
        assert response.status == 200, path
    response = await cms_client.get(f"{API}/cms/legal/terms", params={"locale": "de-AT"})
    assert (await response.json())["locale"] == "de"
    help_list = await (await cms_client.get(f"{API}/cms/help", params={"limit": "100"})).json()
    assert {"getting-started", "deposits", "escrow-disputes"} <= {item["slug"] for item in help_list["items"]}

    for slug in ("welcome", "email.verify", "escrow.funded", "escrow.released", "escrow.disputed",
                 "withdrawal.confirmed", "ticket.reply"):
        status, body = await cms.post(f"/cms/email/{slug}/preview", {"variables": SAMPLE})
        assert status == 200, (slug, body)
        assert body["subject"] and "{{" not in body["html"], slug
        if slug == "email.verify":  # the link survives the Markdown escaping of its value, whole
            assert 'href="https://app.example.com/verify-email?token=a_b-c"' in body["html"], body["html"]


async def test_seed_never_overwrites_an_edit(database_url, cms):
    await seed(database_url)
    await cms.draft("legal", "privacy", title="Edited privacy policy")
    await seed(database_url)
    document = await cms.document("legal", "privacy")
    assert document["title"] == "Edited privacy policy" and document["state"] == "draft"
    await cms.publish("legal", "privacy", note="restore the seeded state for the other tests of this worker")
