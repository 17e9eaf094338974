"""The CMS route tables as mounted: every route declares its access, and is in the OpenAPI document."""

from __future__ import annotations

import uuid

from api.keys import ROUTE_TABLES
from api.registry import PATH_PARAM
from tests.integration.conftest import CMS_TABLES
from tests.integration.content.conftest import API

EXPECTED = {
    ("GET", "/cms/legal/{slug}"), ("GET", "/cms/help"), ("GET", "/cms/help/{slug}"), ("GET", "/cms/landing/{slug}"),
    ("GET", "/admin/cms/email/deliveries"), ("GET", "/admin/cms/{kind}"), ("GET", "/admin/cms/{kind}/{slug}"),
    ("POST", "/admin/cms/{kind}/{slug}/draft"), ("POST", "/admin/cms/{kind}/{slug}/transition"),
    ("POST", "/admin/cms/{kind}/{slug}/publish"), ("POST", "/admin/cms/{kind}/{slug}/rollback"),
    ("POST", "/cms/email/{slug}/preview"), ("POST", "/cms/email/{slug}/test-send"),
    ("POST", "/platform/i18n/message"), ("POST", "/platform/cms/workflow/next-status"),
}


def cms_specs(app):
    tables = {id(table) for table in CMS_TABLES}
    return [(prefix, spec) for prefix, table in app[ROUTE_TABLES] if id(table) in tables for spec in table.specs]


async def test_the_tables_serve_exactly_the_issue_routes(cms_client):
    assert {(spec.method, spec.path) for _, spec in cms_specs(cms_client.app)} == EXPECTED


async def test_every_non_public_cms_route_refuses_anonymous_callers(cms_client):
    for prefix, spec in cms_specs(cms_client.app):
        if spec.access.public:
            continue
        path = prefix + PATH_PARAM.sub(lambda _: str(uuid.uuid4()), spec.path)
        response = await cms_client.request(spec.method, path, json={} if spec.method == "POST" else None)
        assert response.status == 401, (spec.method, spec.path)


async def test_openapi_documents_the_cms_routes(cms_client):
    response = await cms_client.get(f"{API}/openapi.json")
    document = await response.json()
    for method, path in EXPECTED:
        assert method.lower() in document["paths"][API + path], path
    assert "304" in document["paths"][f"{API}/cms/legal/{{slug}}"]["get"]["responses"]
