"""Server-sent events: the caller's notifications, live, resumable with Last-Event-ID."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from api.access import AUTHENTICATED
from api.http import validate
from api.principal import current
from api.registry import Routes
from api.stream import serve

notifications = Routes(tag="me")


class StreamQuery(BaseModel):
    last_event_id: int | None = Field(default=None, ge=0, description="Or the Last-Event-ID header.")


@notifications.get("/notifications/stream", access=AUTHENTICATED, query=StreamQuery,
                   responses={200: "text/event-stream"})
async def stream(request: web.Request, query: StreamQuery) -> web.StreamResponse:
    """`text/event-stream` of the caller's notifications (`id:` monotonic per user, `event:` its type,
    `data:` JSON); a comment heartbeat keeps it open; `Last-Event-ID` replays what was missed."""
    header = request.headers.get("Last-Event-ID")
    last = validate(StreamQuery, {"last_event_id": header}).last_event_id if header else query.last_event_id
    return await serve(request, current(request), last or 0)
