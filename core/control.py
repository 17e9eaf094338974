"""The control channel every API process follows over Redis: the sending half.

One pub/sub channel carries control messages (drop the RBAC cache, swap the readiness policy,
swap the locale bundles); the current policy and bundles are also stored under keys, so a process
that starts later, or missed a message while Redis was away, loads the same state. Services send
here after commit; ``api.control`` is the half that listens and applies.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from redis.asyncio import Redis

from core.settings import ReadinessPolicy

CHANNEL = "virtuoz:control"
READINESS_KEY = "virtuoz:control:readiness-policy"
I18N_KEY = "virtuoz:control:i18n-bundles"


async def publish(redis: Redis, kind: str, **fields: Any) -> None:
    await redis.publish(CHANNEL, json.dumps({"kind": kind, **fields}))


async def invalidate_rbac(redis: Redis, user_id: uuid.UUID | None = None) -> None:
    await publish(redis, "rbac", user_id=str(user_id) if user_id else None)


async def store_readiness_policy(redis: Redis, policy: ReadinessPolicy) -> None:
    await redis.set(READINESS_KEY, policy.model_dump_json())
    await publish(redis, "readiness_policy")


async def store_locale_bundles(redis: Redis, bundles: dict[str, dict[str, str]]) -> None:
    await redis.set(I18N_KEY, json.dumps(bundles))
    await publish(redis, "i18n")
