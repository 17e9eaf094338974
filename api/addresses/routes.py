"""Deposit address routes: the caller's (or, for staff, a user's) address on a chain."""

from __future__ import annotations

import uuid

from aiohttp import web

from api.access import roles
from api.addresses.schemas import AllocateAddressIn, DepositAddressOut
from api.http import json_response
from api.keys import SETTINGS
from api.middleware import db_session
from api.principal import Principal, current
from api.registry import Routes
from core.errors import Forbidden
from custody.addresses import service

addresses = Routes(tag="deposits", scopes="deposits")

# Staff who may act for another user; a customer only ever gets their own address.
ACTS_FOR_OTHERS = ("operator", "admin")


def _target_user(principal: Principal, requested: uuid.UUID | None) -> uuid.UUID:
    if requested is None or requested == principal.user_id:
        return principal.user_id
    if not principal.has_any(*ACTS_FOR_OTHERS):
        raise Forbidden("Only operators and admins may allocate an address for another user.",
                        code="forbidden_user_id", details={"required_roles": sorted(ACTS_FOR_OTHERS)})
    return requested


@addresses.post("/platform/crypto/address/allocate", access=roles("customer", *ACTS_FOR_OTHERS),
                body=AllocateAddressIn, responses={201: DepositAddressOut, 200: DepositAddressOut},
                errors={403: ("forbidden_user_id",), 404: ("user_not_found",),
                        422: ("unknown_chain", "asset_not_on_chain"), 503: ("address_pool_empty",)})
async def allocate_address(request: web.Request, body: AllocateAddressIn) -> web.Response:
    """The caller's (or, for staff, a user's) deposit address on a chain: 201 if assigned now, 200 if it existed."""
    # An empty pool is 503 address_pool_empty with Retry-After; the service has requested a refill.
    principal = current(request)
    allocation = await service.allocate(db_session(request), _target_user(principal, body.user_id), body.chain,
                                        body.asset, chains=request.config_dict[SETTINGS].chains,
                                        actor=principal.user_id)
    row = allocation.deposit_address
    out = DepositAddressOut(address=row.address, chain=row.chain, asset=allocation.asset,
                            derivation_index=row.derivation_index, created_at=row.assigned_at)
    return json_response(out, status=201 if allocation.newly_assigned else 200)
