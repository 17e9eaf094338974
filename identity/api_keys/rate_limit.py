"""Each API key's rate limit: a token bucket in Redis, shared by every API process.

The bucket holds ``limit`` requests and refills evenly over a minute; the script reads Redis's own
clock, so API processes on hosts whose clocks disagree still share one bucket correctly.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis

from core.errors import TooManyRequests

PREFIX = "virtuoz:api-key-bucket"

# Returns {allowed (0|1), tokens left (as text: Lua numbers become integers on the way out)}.
_TAKE = """
local capacity = tonumber(ARGV[1])
local per_ms = capacity / 60000
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * per_ms)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], 60000 + 1000)
return {allowed, tostring(tokens)}
"""


class RateLimited(TooManyRequests):
    code, message = "rate_limited", "This API key has sent too many requests; retry later."


@dataclass(frozen=True)
class Quota:
    limit: int
    remaining: int
    reset_seconds: int  # until the bucket is full again

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(self.reset_seconds)}


async def take(redis: Redis, key_id: uuid.UUID, limit: int) -> Quota:
    """One request of ``key_id``'s bucket; 429 ``rate_limited`` (with ``Retry-After``) when it is empty."""
    allowed, left = await redis.eval(_TAKE, 1, f"{PREFIX}:{key_id}", limit)  # type: ignore[misc]
    tokens = float(left)
    per_second = limit / 60
    quota = Quota(limit, math.floor(tokens), math.ceil((limit - tokens) / per_second))
    if not int(allowed):
        retry_after = max(1, math.ceil((1 - tokens) / per_second))
        raise RateLimited(details={"retry_after_seconds": retry_after, "limit_per_minute": limit},
                          headers={"Retry-After": str(retry_after), **quota.headers()})
    return quota
