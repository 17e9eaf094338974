"""The file store's path preview: where a key is kept, by the function the evidence store uses."""

from __future__ import annotations

from aiohttp import web

from api.access import roles
from api.registry import Routes
from api.storage.schemas import ShardPathIn, ShardPathOut
from core.storage import shard_path

storage = Routes(tag="platform")


@storage.post("/platform/storage/shard-path", access=roles("operator", "admin"), body=ShardPathIn,
              responses={200: ShardPathOut}, errors={422: ("invalid_storage_key",)})
async def storage_shard_path(request: web.Request, body: ShardPathIn) -> ShardPathOut:
    """Where the file store keeps a key: the same function the evidence store uses."""
    return ShardPathOut(key=body.key, path=shard_path(body.key))
