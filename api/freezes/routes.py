"""Withdrawal freezes for staff: a user's freezes, and lifting one (compliance and admins only)."""

from __future__ import annotations

from aiohttp import web

from api.access import roles
from api.freezes.schemas import FreezeListOut, FreezeOut, LiftFreezeIn
from api.http import path_uuid
from api.middleware import db_session
from api.principal import current
from api.registry import Routes
from custody import freezes as service
from identity.models import STAFF_ROLES

freezes = Routes(tag="admin")

OFFICERS = ("compliance", "admin")


@freezes.get("/admin/users/{user_id}/freezes", access=roles(*sorted(STAFF_ROLES)), responses={200: FreezeListOut},
             errors={404: ("user_not_found",)})
async def list_freezes(request: web.Request) -> FreezeListOut:
    """A user's withdrawal freezes, active and lifted, newest first (staff). An unknown user has none."""
    rows = await service.of_user(db_session(request), path_uuid(request, "user_id", "user_not_found"))
    return FreezeListOut(items=[FreezeOut.of(row) for row in rows])


@freezes.post("/admin/users/{user_id}/freezes/{freeze_id}/lift", access=roles(*OFFICERS), body=LiftFreezeIn,
              responses={200: FreezeOut}, errors={404: ("freeze_not_found",), 409: ("freeze_already_lifted",)})
async def lift_freeze(request: web.Request, body: LiftFreezeIn) -> FreezeOut:
    """Lift one freeze, with a reason (audited `withdrawals.unfrozen` on the user). The user's money may
    leave again once no other freeze stands.

    Refusals: freeze_not_found (404: no such freeze on this user), freeze_already_lifted (409),
    validation_error (422: no reason).
    """
    row = await service.lift_freeze(db_session(request), path_uuid(request, "user_id", "freeze_not_found"),
                                    path_uuid(request, "freeze_id", "freeze_not_found"), body.reason,
                                    actor=current(request).user_id)
    return FreezeOut.of(row)
