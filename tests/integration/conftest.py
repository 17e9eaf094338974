from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app, route_tables
from api.cms.routes import cms_admin, cms_public, email_templates
from api.i18n.routes import platform_content
from api.registry import Routes
from core.settings import Settings
from tests import factories
from tests.factories import LoggedIn

ClientFactory = Callable[..., Awaitable[TestClient]]
API = "/api/v1"
CMS_TABLES = (cms_public, cms_admin, email_templates, platform_content)


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    """Start the real app (real PostgreSQL and Redis) on a loopback port; closed after the test."""
    clients: list[TestClient] = []

    async def start(settings: Settings, extra_routes: Sequence[Routes] = ()) -> TestClient:
        client = TestClient(TestServer(create_app(settings, extra_routes=extra_routes)))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: ClientFactory, settings: Settings) -> TestClient:
    return await make_client(settings)


@pytest.fixture
def login_as(database_url: str) -> Callable[..., Awaitable[LoggedIn]]:
    """Register a fresh user through the real routes (optionally with roles), log in, return Bearer headers."""

    async def login(client: TestClient, *roles: str, verified: bool = True) -> LoggedIn:
        return await factories.login_as(client, database_url, *roles, verified=verified)

    return login


# --- the CMS driven by an admin: content's tests, and the email tests of notifications ------------

def missing_tables(settings: Settings) -> list:
    """The CMS tables api/app.py does not mount yet (none, once it does)."""
    root, v1 = route_tables(settings)
    return [table for table in CMS_TABLES if not any(table is mounted for mounted in [*root, *v1])]


@pytest.fixture
async def cms_client(make_client, settings) -> TestClient:
    return await make_client(settings, extra_routes=missing_tables(settings))


@pytest.fixture
async def admin(cms_client, login_as):
    return await login_as(cms_client, "admin")


class Cms:
    """The admin routes, driven as an admin would."""

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers

    async def post(self, path: str, payload: dict[str, Any], *, status: int | None = None) -> Any:
        response = await self.client.post(f"{API}{path}", json=payload, headers=self.headers)
        body = await response.json()
        if status is not None:
            assert response.status == status, body
        return response.status, body

    async def draft(self, kind: str, slug: str, *, title: str = "Title", body: str = "Body", locale: str = "en",
                    metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        payload = {"title": title, "body": body, "locale": locale, "metadata": metadata or {}}
        return (await self.post(f"/admin/cms/{kind}/{slug}/draft", payload, status=201))[1]

    async def transition(self, kind: str, slug: str, to: str, *, locale: str = "en") -> tuple[int, dict[str, Any]]:
        return await self.post(f"/admin/cms/{kind}/{slug}/transition", {"to": to, "locale": locale})

    async def publish(self, kind: str, slug: str, **payload: Any) -> tuple[int, dict[str, Any]]:
        return await self.post(f"/admin/cms/{kind}/{slug}/publish", payload)

    async def rollback(self, kind: str, slug: str, version: int, **payload: Any) -> tuple[int, dict[str, Any]]:
        return await self.post(f"/admin/cms/{kind}/{slug}/rollback", {"version": version, **payload})

    async def document(self, kind: str, slug: str, *, locale: str = "en") -> dict[str, Any]:
        response = await self.client.get(f"{API}/admin/cms/{kind}/{slug}", params={"locale": locale},
                                         headers=self.headers)
        body = await response.json()
        assert response.status == 200, body
        return body

    async def drive_to(self, kind: str, slug: str, state: str, *, locale: str = "en") -> None:
        """From a fresh draft to ``state`` through legal moves."""
        path = {"draft": [], "in_review": ["in_review"], "approved": ["in_review", "approved"],
                "published": ["in_review", "approved", "published"],
                "archived": ["in_review", "approved", "published", "archived"]}[state]
        for step in path:
            status, body = await self.transition(kind, slug, step, locale=locale)
            assert status == 200, body

    async def published_doc(self, kind: str, slug: str, *, title: str = "Title", body: str = "Body",
                            locale: str = "en", metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        draft = await self.draft(kind, slug, title=title, body=body, locale=locale, metadata=metadata)
        await self.drive_to(kind, slug, "published", locale=locale)
        return draft


@pytest.fixture
async def cms(cms_client, admin) -> AsyncIterator[Cms]:
    yield Cms(cms_client, admin.headers)
