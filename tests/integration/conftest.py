from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import update

from api.app import create_app
from identity.models import User
from api.registry import Routes
from core.db import create_engine, session_factory, unit_of_work
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


@dataclass(frozen=True)
class LoggedIn:
    user_id: uuid.UUID
    email: str
    password: str
    headers: dict[str, str]


PASSWORD = "Correct-Horse-Battery-9"


@pytest.fixture
def login_as(database_url: str):
    """Register a fresh user through the real routes (optionally with roles), log in, return Bearer headers."""

    async def login(client: TestClient, *roles: str) -> LoggedIn:
        email = f"u-{uuid.uuid4().hex[:12]}@example.com"
        registered = await client.post("/api/v1/auth/register",
                                       json={"email": email, "password": PASSWORD, "display_name": "Test User"})
        assert registered.status == 201, await registered.text()
        user_id = uuid.UUID((await registered.json())["id"])
        if roles:
            engine = create_engine(database_url)
            async with unit_of_work(session_factory(engine)) as session:
                await session.execute(update(User).where(User.id == user_id).values(roles=list(roles)))
            await engine.dispose()
        response = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert response.status == 200, await response.text()
        token = (await response.json())["access_token"]
        return LoggedIn(user_id, email, PASSWORD, {"Authorization": f"Bearer {token}"})

    return login
