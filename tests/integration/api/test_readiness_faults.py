"""Readiness follows its dependencies: stop a real server, see 503 naming it; restart, see 200.

This test runs its own PostgreSQL and Redis so that stopping them disturbs no other test.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from core.settings import Settings
from devnet.processes import free_port
from devnet.servers import EmbeddedPostgres, EmbeddedRedis


async def wait_for_readiness(client, status: int, attempts_seconds: float = 15.0) -> dict:
    deadline = time.monotonic() + attempts_seconds
    while True:
        response = await client.get("/readiness")
        body = await response.json()
        if response.status == status or time.monotonic() > deadline:
            assert response.status == status, body
            return body
        await asyncio.sleep(0.2)


@pytest.fixture
def private_servers(tmp_path):
    postgres = EmbeddedPostgres(tmp_path / "pg", free_port(), log_dir=tmp_path).start()
    redis = EmbeddedRedis(tmp_path / "redis", free_port(), log_dir=tmp_path).start()
    yield postgres, redis
    redis.stop()
    postgres.stop()


async def test_readiness_turns_503_and_back_without_restart(make_client, private_servers, tmp_path):
    postgres, redis = private_servers
    settings = Settings(
        env="test", data_dir=tmp_path, database_url=postgres.url(), redis_url=redis.url(),
        readiness={"workers": [], "chains": False, "timeout_seconds": 1.0},
    )
    client = await make_client(settings)
    await wait_for_readiness(client, 200)

    await asyncio.to_thread(postgres.stop)
    body = await wait_for_readiness(client, 503)
    assert body["failing"] == ["database"]
    await asyncio.to_thread(postgres.start)
    await wait_for_readiness(client, 200)

    await asyncio.to_thread(redis.stop)
    body = await wait_for_readiness(client, 503)
    assert body["failing"] == ["redis"]
    await asyncio.to_thread(redis.start)
    await wait_for_readiness(client, 200)
