"""Run-time control shared by every API process over Redis: the listening half.

Each API process follows the control channel (``core.control``, where services send) and applies
what it carries: drop the RBAC cache, swap the readiness policy, swap the locale bundles.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from api.keys import IDENTITY_CACHE, LIVE, REDIS, SETTINGS
from core.control import CHANNEL, I18N_KEY, READINESS_KEY
from core.settings import ReadinessPolicy

log = logging.getLogger(__name__)

RECONNECT_SECONDS = 1.0
STOP_SECONDS = 5.0


@dataclass
class LiveConfig:
    """What can change without a restart; read it here, never from settings, where it applies."""

    readiness_policy: ReadinessPolicy
    locale_bundles: dict[str, dict[str, str]] = field(default_factory=dict)


async def _load_stored(app: web.Application) -> None:
    redis, live = app[REDIS], app[LIVE]
    policy, bundles = await redis.mget(READINESS_KEY, I18N_KEY)
    if policy:
        live.readiness_policy = ReadinessPolicy.model_validate_json(policy)
    if bundles:
        live.locale_bundles = json.loads(bundles)


async def _apply(app: web.Application, message: dict[str, Any]) -> None:
    kind = message.get("kind")
    if kind == "rbac":
        user_id = message.get("user_id")
        app[IDENTITY_CACHE].drop_roles(uuid.UUID(user_id) if user_id else None)
        app[IDENTITY_CACHE].drop_sessions()
    elif kind in ("readiness_policy", "i18n"):
        await _load_stored(app)


async def _listen(app: web.Application, stop: asyncio.Event) -> None:
    # Its own connection without a read timeout: a quiet channel is not a broken one.
    client = Redis.from_url(app[SETTINGS].require_redis_url(), socket_connect_timeout=5, health_check_interval=30)
    try:
        await _follow(app, client, stop)
    finally:
        await client.aclose()


async def _follow(app: web.Application, client: Redis, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(CHANNEL)
                await _load_stored(app)  # whatever changed while we were not listening
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        await _apply(app, json.loads(message["data"]))
        except asyncio.CancelledError:
            raise
        except Exception:  # Redis away: keep the last known state, reconnect
            if stop.is_set():
                return
            log.warning("control channel lost; reconnecting", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RECONNECT_SECONDS)


async def control_context(app: web.Application) -> AsyncIterator[None]:
    app[LIVE] = LiveConfig(readiness_policy=app[SETTINGS].readiness)
    with contextlib.suppress(Exception):  # Redis may be down at start: readiness will say so
        await _load_stored(app)
    stop = asyncio.Event()
    listener = asyncio.create_task(_listen(app, stop))
    yield
    # The event ends the loop even where a cancellation gets lost inside the Redis client (a
    # timeout expiring together with the cancel, Python 3.11), and the wait is bounded: a shutdown
    # never hangs on this listener.
    stop.set()
    listener.cancel()
    await asyncio.wait({listener}, timeout=STOP_SECONDS)
    if not listener.done():
        log.warning("control listener still running after %.0fs; leaving it", STOP_SECONDS)
