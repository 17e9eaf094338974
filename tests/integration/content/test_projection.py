"""CMS documents can be rebuilt from their audit events, exactly, along the whole workflow."""

from __future__ import annotations

from tests.integration.content.conftest import API, unique_slug


async def test_cms_document_replays_without_drift(cms_client, cms, admin) -> None:
    slug = unique_slug("replay")

    async def no_drift(step: str) -> None:
        document = await cms.document("legal", slug)
        response = await cms_client.post(f"{API}/admin/events/replay/cms_document/{document['id']}",
                                         headers=admin.headers)
        report = await response.json()
        assert response.status == 200, report
        assert report["drift"] == [] and report["chain_valid"], (step, report)

    await cms.draft("legal", slug, title="v1")
    await no_drift("draft")
    await cms.drive_to("legal", slug, "published")
    await no_drift("published")
    await cms.draft("legal", slug, title="v2")
    status, _ = await cms.publish("legal", slug, note="urgent fix")
    assert status == 200
    await no_drift("published without review")
    status, _ = await cms.rollback("legal", slug, 1, note="back to v1")
    assert status == 201
    await no_drift("rolled back")
    assert (await cms.transition("legal", slug, "archived"))[0] == 200
    await no_drift("archived")
