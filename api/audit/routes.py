"""Audit event export and projection replay (admin back-office)."""

from __future__ import annotations

import json

from aiohttp import web

from api import replay as events_service
from api.access import roles
from api.audit.schemas import DriftOut, EventsOut, ReplayOut
from api.http import json_response
from api.middleware import db_session
from api.registry import Routes

audit_events = Routes(tag="admin")

NDJSON = "application/x-ndjson"


@audit_events.get("/admin/events/export/{aggregate_type}/{aggregate_id}", access=roles("admin", "compliance"),
                  responses={200: EventsOut}, errors={404: ("aggregate_not_found",)})
async def export_events(request: web.Request) -> web.Response:
    """The aggregate's events in seq order with their hashes (JSON, or NDJSON with `Accept: application/x-ndjson`)."""
    events = await events_service.export(db_session(request), request.match_info["aggregate_type"],
                                         request.match_info["aggregate_id"])
    if NDJSON in request.headers.get("Accept", ""):
        lines = "".join(json.dumps(event, separators=(",", ":")) + "\n" for event in events)
        return web.Response(text=lines, content_type=NDJSON)
    return json_response({"items": events})


@audit_events.post("/admin/events/replay/{aggregate_type}/{aggregate_id}", access=roles("admin"),
                   responses={200: ReplayOut},
                   errors={404: ("aggregate_not_found",), 422: ("unknown_aggregate_type",)})
async def replay_events(request: web.Request) -> ReplayOut:
    """Rebuild the aggregate from its events and report drift from the stored row, and the chain's validity."""
    aggregate_type, aggregate_id = request.match_info["aggregate_type"], request.match_info["aggregate_id"]
    result = await events_service.replay(db_session(request), aggregate_type, aggregate_id)
    return ReplayOut(aggregate_type=aggregate_type, aggregate_id=aggregate_id, events=result.events,
                     chain_valid=result.chain_valid, chain_problems=result.problems,
                     drift=[DriftOut(**item) for item in result.drift])
