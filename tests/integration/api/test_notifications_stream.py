"""The SSE stream: live events from any process, resume with Last-Event-ID, heartbeats, no leaks."""

from __future__ import annotations

import asyncio
import json
import time

from redis.asyncio import Redis

from api.keys import REDIS, STREAMS
from core.db import create_engine, session_factory, unit_of_work
from notifications.service import bind_publisher, channel, notify
from tests.factories import wait_until


async def produce(database_url: str, redis_url: str, user_id, *types: str) -> None:
    """Notifications from "another process": its own engine and Redis client."""
    engine, redis = create_engine(database_url), Redis.from_url(redis_url)
    factory = session_factory(engine)
    bind_publisher(factory, redis)
    for type in types:
        async with unit_of_work(factory) as session:
            await notify(session, user_id, type, {"note": type})
    await redis.aclose()
    await engine.dispose()


async def subscribed(client, user_id) -> bool:
    """Whether a stream of this app listens on the user's pub/sub channel (it subscribes, then replays)."""
    [(_, listeners)] = await client.app[REDIS].pubsub_numsub(channel(user_id))
    return listeners > 0


async def read_events(response, count: int, timeout: float = 10.0) -> list[dict]:
    events, current = [], {}
    deadline = time.monotonic() + timeout
    while len(events) < count:
        assert time.monotonic() < deadline, f"only {events} arrived"
        line = (await asyncio.wait_for(response.content.readline(), timeout)).decode().rstrip("\n")
        if line == "":
            if "id" in current:
                events.append(current)
            current = {}
        elif line.startswith(":"):
            current.setdefault("comments", []).append(line)
        else:
            field, _, value = line.partition(": ")
            current[field] = value
    return events


async def test_stream_delivers_events_made_in_another_process(make_client, settings, login_as, database_url, redis_url):
    client = await make_client(settings)
    user = await login_as(client)
    response = await client.get("/api/v1/notifications/stream", headers=user.headers)
    assert response.status == 200 and response.headers["Content-Type"] == "text/event-stream"
    await wait_until(lambda: subscribed(client, user.user_id), what="the stream subscribed to the user's channel")
    await produce(database_url, redis_url, user.user_id, "escrow.funded", "escrow.released")
    events = await read_events(response, 2)
    assert [(e["id"], e["event"]) for e in events] == [("1", "escrow.funded"), ("2", "escrow.released")]
    assert json.loads(events[0]["data"])["data"] == {"note": "escrow.funded"}
    response.close()


async def test_last_event_id_replays_what_was_missed(make_client, settings, login_as, database_url, redis_url):
    client = await make_client(settings)
    user = await login_as(client)
    await produce(database_url, redis_url, user.user_id, "a.one", "a.two", "a.three")
    response = await client.get("/api/v1/notifications/stream", headers={**user.headers, "Last-Event-ID": "1"})
    events = await read_events(response, 2)
    assert [e["id"] for e in events] == ["2", "3"]
    response.close()
    second_app = await make_client(settings)  # a stream on another API process resumes the same way
    response = await second_app.get("/api/v1/notifications/stream?last_event_id=2", headers=user.headers)
    assert [e["event"] for e in await read_events(response, 1)] == ["a.three"]
    response.close()


async def test_heartbeat_comments_keep_the_stream_alive(make_client, settings, login_as):
    client = await make_client(settings.model_copy(update={"sse_heartbeat_seconds": 0.2}))
    user = await login_as(client)
    response = await client.get("/api/v1/notifications/stream", headers=user.headers)
    line = await asyncio.wait_for(response.content.readline(), 5)
    assert line == b": heartbeat\n"
    response.close()


async def test_closed_clients_leave_no_stream_behind(make_client, settings, login_as):
    client = await make_client(settings.model_copy(update={"sse_heartbeat_seconds": 0.1}))
    user = await login_as(client)
    responses = [await client.get("/api/v1/notifications/stream", headers=user.headers) for _ in range(3)]
    deadline = time.monotonic() + 30
    while len(client.app[STREAMS]) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert len(client.app[STREAMS]) == 3
    for response in responses:
        response.close()
    deadline = time.monotonic() + 30
    while client.app[STREAMS] and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert client.app[STREAMS] == set()


async def test_stream_needs_authentication(client):
    response = await client.get("/api/v1/notifications/stream")
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"


async def test_bad_last_event_id_is_422(make_client, settings, login_as):
    client = await make_client(settings)
    user = await login_as(client)
    response = await client.get("/api/v1/notifications/stream", headers={**user.headers, "Last-Event-ID": "abc"})
    assert response.status == 422


async def test_stream_closes_after_logout_all(make_client, settings, login_as):
    """A stream does not outlive its session: the heartbeat re-checks it and ends the stream."""
    client = await make_client(settings.model_copy(update={"sse_heartbeat_seconds": 0.2}))
    user = await login_as(client)
    response = await client.get("/api/v1/notifications/stream", headers=user.headers)
    assert response.status == 200
    assert await asyncio.wait_for(response.content.readline(), 5) == b": heartbeat\n"
    logout = await client.post("/api/v1/auth/logout-all", headers=user.headers)
    assert logout.status == 200, await logout.text()
    # the stream ends (EOF) within a few heartbeats instead of staying open
    await asyncio.wait_for(response.content.read(), 5)
    assert response.content.at_eof()
    await wait_until(lambda: _no_streams(client), what="the stream task ended")
    response.close()


async def _no_streams(client) -> bool:
    return not client.app[STREAMS]
