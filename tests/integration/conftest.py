from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from api.registry import Routes
from core.settings import Settings

ClientFactory = Callable[..., Awaitable[TestClient]]


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
