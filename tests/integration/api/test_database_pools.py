"""The API's database pools keep the connections they open: under more concurrent requests than
connections, requests wait for a pooled connection instead of each opening and closing one of
their own (a connection costs PostgreSQL a process and the API a TLS-capable handshake)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy import event, text

from api.access import PUBLIC
from api.keys import ENGINE, READ_ENGINE
from api.middleware import db_session
from api.registry import Routes

probe = Routes(tag="test")
POOL_SIZE = 1
CONCURRENT = 12
ROUNDS = 3


class Slept(BaseModel):
    slept: bool


async def _hold_a_connection(request: web.Request) -> Slept:
    # Long enough for every concurrent request to arrive while the pool's connections are in use.
    await db_session(request).execute(text("SELECT pg_sleep(0.02)"))
    return Slept(slept=True)


@probe.get("/test/pools/read", access=PUBLIC, responses={200: Slept})
async def read(request: web.Request) -> Slept:
    return await _hold_a_connection(request)


@probe.post("/test/pools/write", access=PUBLIC, responses={200: Slept})
async def write(request: web.Request) -> Slept:
    return await _hold_a_connection(request)


async def test_concurrent_requests_reuse_the_pools_connections(make_client, settings):
    client = await make_client(settings.model_copy(update={"database_pool_size": POOL_SIZE}), extra_routes=[probe])
    connects = {"read": 0, "write": 0}
    for name, key in (("read", READ_ENGINE), ("write", ENGINE)):
        event.listen(client.server.app[key].sync_engine, "connect",
                     lambda *_, name=name: connects.__setitem__(name, connects[name] + 1))

    for _ in range(ROUNDS):
        statuses = await asyncio.gather(
            *(client.get("/api/v1/test/pools/read") for _ in range(CONCURRENT)),
            *(client.post("/api/v1/test/pools/write") for _ in range(CONCURRENT)))
        assert [response.status for response in statuses] == [200] * (2 * CONCURRENT)

    # Each pool opens its connections once (up to twice VIRTUOZ_DATABASE_POOL_SIZE: see api.app),
    # however many requests waited for them.
    assert 1 <= connects["read"] <= 2 * POOL_SIZE and 1 <= connects["write"] <= 2 * POOL_SIZE, connects
