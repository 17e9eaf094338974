"""A GET runs read-only: no transaction, PostgreSQL refusing any write, and once more on a fresh
connection when its connection dies under it; a route that writes keeps its transaction and is
never run twice."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest
from aiohttp import web
from pydantic import BaseModel
from sqlalchemy import select, text

from api.access import PUBLIC
from api.middleware import db_session
from api.registry import Routes
from core.db import create_engine, session_factory
from core.heartbeats import ServiceHeartbeat, record_heartbeat
from core.migrate import upgrade
from core.settings import Settings
from devnet.processes import free_port
from devnet.servers import EmbeddedPostgres, EmbeddedRedis
from tests import factories

probe = Routes(tag="test")
runs: Counter[str] = Counter()


class Written(BaseModel):
    name: str


class Statements(BaseModel):
    read_only: bool
    transaction_per_statement: bool


async def _write(request: web.Request) -> Written:
    name = request.query["name"]
    await record_heartbeat(db_session(request), name)
    return Written(name=name)


@probe.get("/test/read-only/write", access=PUBLIC, responses={200: Written})
async def get_that_writes(request: web.Request) -> Written:
    """A GET that should not write, and does."""
    return await _write(request)


@probe.get("/test/opted-out/write", access=PUBLIC, responses={200: Written}, read_only=False)
async def get_that_declares_its_write(request: web.Request) -> Written:
    return await _write(request)


async def _statements(request: web.Request) -> Statements:
    session = db_session(request)
    # Two statements apart in time: inside BEGIN … COMMIT they share the transaction's start; on their
    # own, each statement is its own transaction.
    first = await session.scalar(text("SELECT transaction_timestamp()"))
    await session.execute(text("SELECT pg_sleep(0.01)"))
    row = (await session.execute(text(
        "SELECT current_setting('transaction_read_only') = 'on' AS read_only, transaction_timestamp() AS began"))).one()
    return Statements(read_only=row.read_only, transaction_per_statement=row.began > first)


@probe.get("/test/read-only/statements", access=PUBLIC, responses={200: Statements})
async def get_statements(request: web.Request) -> Statements:
    return await _statements(request)


@probe.post("/test/statements", access=PUBLIC, responses={200: Statements})
async def post_statements(request: web.Request) -> Statements:
    return await _statements(request)


async def _dies_once(request: web.Request, route: str) -> Written:
    runs[route] += 1
    session = db_session(request)
    name = request.query["name"]
    if route == "post":
        await record_heartbeat(session, name)
    if runs[route] == 1:
        # What a restart of PostgreSQL does to a connection in use: the server ends it under a statement.
        await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
    await session.execute(text("SELECT 1"))
    return Written(name=name)


@probe.get("/test/read-only/dies-once", access=PUBLIC, responses={200: Written})
async def get_dies_once(request: web.Request) -> Written:
    return await _dies_once(request, "get")


@probe.post("/test/dies-once", access=PUBLIC, responses={200: Written})
async def post_dies_once(request: web.Request) -> Written:
    return await _dies_once(request, "post")


@pytest.fixture
async def app_client(make_client, settings):
    return await make_client(settings, extra_routes=[probe])


async def stored(database_url: str, name: str) -> bool:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            return await session.scalar(select(ServiceHeartbeat.service).where(ServiceHeartbeat.service == name)) is not None
    finally:
        await engine.dispose()


def test_the_registry_makes_gets_read_only_unless_they_say_otherwise():
    specs = {spec.handler.__name__: spec for spec in probe.specs}
    assert specs["get_that_writes"].read_only and specs["get_statements"].read_only
    assert not specs["get_that_declares_its_write"].read_only
    assert not specs["post_statements"].read_only and not specs["post_dies_once"].read_only
    assert specs["get_dies_once"].retries_lost_connection and not specs["post_dies_once"].retries_lost_connection


async def test_a_get_that_writes_is_refused_by_the_database(app_client, database_url):
    name = f"read-only-{uuid.uuid4()}"
    response = await app_client.get("/api/v1/test/read-only/write", params={"name": name})
    assert response.status == 500
    assert (await response.json())["error"]["code"] == "internal_error"
    assert not await stored(database_url, name)


async def test_a_get_that_declares_its_write_runs_in_a_transaction(app_client, database_url):
    name = f"opted-out-{uuid.uuid4()}"
    response = await app_client.get("/api/v1/test/opted-out/write", params={"name": name})
    assert response.status == 200, await response.text()
    assert await stored(database_url, name)


async def test_a_get_opens_no_transaction_and_a_post_one(app_client):
    read = await app_client.get("/api/v1/test/read-only/statements")
    assert read.status == 200
    assert await read.json() == {"read_only": True, "transaction_per_statement": True}
    write = await app_client.post("/api/v1/test/statements")
    assert write.status == 200
    assert await write.json() == {"read_only": False, "transaction_per_statement": False}


async def test_a_get_whose_connection_dies_runs_once_more(app_client):
    runs.clear()
    response = await app_client.get("/api/v1/test/read-only/dies-once", params={"name": "a"})
    assert response.status == 200, await response.text()
    assert await response.json() == {"name": "a"}
    assert runs["get"] == 2


async def test_a_write_whose_connection_dies_is_never_run_again(app_client, database_url):
    runs.clear()
    name = f"dies-{uuid.uuid4()}"
    response = await app_client.post("/api/v1/test/dies-once", params={"name": name})
    assert response.status == 503
    body = await response.json()
    assert body["error"]["code"] == "database_unavailable" and response.headers["Retry-After"] == "1"
    assert runs["post"] == 1
    assert not await stored(database_url, name)


# --- PostgreSQL restarted between two requests ----------------------------------------------------

@pytest.fixture
def private_servers(tmp_path):
    # Its own servers, requested before make_client so the app closes first: restarting the ones
    # the other tests share would fail them.
    postgres = EmbeddedPostgres(tmp_path / "pg", free_port(), log_dir=tmp_path).start()
    redis = EmbeddedRedis(tmp_path / "redis", free_port(), log_dir=tmp_path).start()
    yield postgres, redis
    redis.stop()
    postgres.stop()


async def test_reads_and_writes_are_answered_after_postgres_restarts(private_servers, make_client, tmp_path):
    postgres, redis = private_servers
    postgres.create_database("virtuoz_restart")
    url = postgres.url("virtuoz_restart")
    await asyncio.to_thread(upgrade, url)
    settings = Settings(env="test", data_dir=tmp_path, database_url=url, redis_url=redis.url(), chains=[],
                        readiness={"workers": [], "chains": False}, log_json=False, kyc_withdrawal_limits={})
    client = await make_client(settings, extra_routes=[probe])
    email = factories.unique_email()
    await factories.register(client, email=email)
    headers = await factories.bearer(client, email)

    async def balances() -> int:
        response = await client.get("/api/v1/wallet/balances", headers=headers)
        return response.status

    # Several connections pooled in each engine, every one of them ended by the restart. No pre-ping:
    # a socket the server closed is replaced at checkout without a round trip (core.db), and a read
    # whose connection dies under it anyway runs once more; a write is never run twice.
    assert await asyncio.gather(*(balances() for _ in range(5))) == [200] * 5
    await asyncio.to_thread(postgres.stop)
    await asyncio.to_thread(postgres.start)

    assert await asyncio.gather(*(balances() for _ in range(5))) == [200] * 5
    name = f"after-restart-{uuid.uuid4()}"
    write = await client.get("/api/v1/test/opted-out/write", params={"name": name})
    assert write.status == 200, await write.text()
