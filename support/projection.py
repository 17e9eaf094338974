"""The ticket aggregate as a pure fold over its audit events, registered for the admin replay."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.time import rfc3339
from support.models import Ticket

State = dict[str, Any]


def reduce_ticket(state: State | None, event: dict[str, Any]) -> State | None:
    data = event["data"]
    match event["type"]:
        case "ticket.created":
            return {
                "customer_id": data["customer_id"], "priority": data["priority"], "state": data["state"],
                "assignee_id": None, "first_response_due": data["first_response_due"],
                "resolution_due": data["resolution_due"], "first_responded_at": None,
                "first_response_breached_at": None, "resolution_breached_at": None,
            }
        case "ticket.state_changed":
            return {**(state or {}), "state": data["to"], "first_response_due": data["first_response_due"],
                    "resolution_due": data["resolution_due"]}
        case "ticket.assigned":
            return {**(state or {}), "assignee_id": data["assignee_id"]}
        case "ticket.first_response":
            return {**(state or {}), "first_responded_at": data["at"]}
        case "ticket.sla_breached":
            return {**(state or {}), f"{data['sla']}_breached_at": data["marked_at"]}
        case _:  # messages, notes, links: facts about the ticket that change no field here
            return state


def _time(value: Any) -> str | None:
    return None if value is None else rfc3339(value)


async def stored_ticket(session: AsyncSession, aggregate_id: str) -> State | None:
    ticket = await audit.stored_row(session, Ticket, aggregate_id)
    if ticket is None:
        return None
    return {
        "customer_id": str(ticket.customer_id), "priority": ticket.priority, "state": ticket.state,
        "assignee_id": None if ticket.assignee_id is None else str(ticket.assignee_id),
        "first_response_due": _time(ticket.first_response_due), "resolution_due": _time(ticket.resolution_due),
        "first_responded_at": _time(ticket.first_responded_at),
        "first_response_breached_at": _time(ticket.first_response_breached_at),
        "resolution_breached_at": _time(ticket.resolution_breached_at),
    }

audit.register_projection("ticket", reduce_ticket, stored_ticket)
