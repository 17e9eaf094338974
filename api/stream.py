"""The SSE stream of a user's notifications: replay what was missed, then follow live.

Subscribe first, replay from the table second, then follow pub/sub skipping what was already
sent: no event can fall in the gap between the two. Each stream is registered on the app so a
shutdown ends it instead of waiting for the client.

A stream is authenticated once, when it opens, but lives for hours: at every heartbeat it checks
again that its session is live and its user active, and it ends when the access token expires, so
a logout, a revocation or a suspension closes it within one heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from aiohttp import web

from api.keys import REDIS, SESSIONS, SETTINGS, STREAMS
from api.principal import Principal
from identity import service as identity
from notifications import service as notifications

POLL_SECONDS = 1.0


def _event(seq: int, type: str, data: str) -> bytes:
    return f"id: {seq}\nevent: {type}\ndata: {data}\n\n".encode()


async def _still_allowed(app: web.Application, principal: Principal) -> bool:
    if time.time() >= principal.expires_at:
        return False
    async with app[SESSIONS]() as session:
        return await identity.session_in_force(session, principal.session_id, principal.user_id)


async def serve(request: web.Request, principal: Principal, last_seq: int) -> web.StreamResponse:
    app = request.config_dict
    user_id = principal.user_id
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",  # proxies must not buffer a stream
    })
    await response.prepare(request)
    task = asyncio.current_task()
    assert task is not None
    app[STREAMS].add(task)
    pubsub = app[REDIS].pubsub()
    try:
        await pubsub.subscribe(notifications.channel(user_id))
        async with app[SESSIONS]() as session:
            missed = await notifications.since(session, user_id, last_seq)
        for notification in missed:
            await response.write(_event(notification.seq, notification.type, notifications.wire(notification)))
            last_seq = notification.seq
        heartbeat = app[SETTINGS].sse_heartbeat_seconds
        next_beat = time.monotonic() + heartbeat
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(POLL_SECONDS, heartbeat))
            if message is not None:
                payload = json.loads(message["data"])
                if payload["seq"] > last_seq:
                    await response.write(_event(payload["seq"], payload["type"], message["data"].decode()))
                    last_seq = payload["seq"]
            if time.time() >= principal.expires_at:
                break  # the token it was opened with is over: the client reconnects with a fresh one
            if time.monotonic() >= next_beat:
                if not await _still_allowed(app, principal):
                    break
                await response.write(b": heartbeat\n\n")  # keeps proxies from closing an idle stream
                next_beat = time.monotonic() + heartbeat
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the client left, or the app is shutting down
    finally:
        app[STREAMS].discard(task)
        with contextlib.suppress(Exception):
            await pubsub.aclose()
    return response


async def close_streams(app: web.Application) -> None:
    for task in list(app[STREAMS]):
        task.cancel()
