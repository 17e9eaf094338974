"""Crypto custody routes of the platform API."""

from __future__ import annotations

import uuid

from aiohttp import web

from api.access import AUTHENTICATED, roles, roles_or_service_signature
from api.principal import Principal, current
from api.http import json_response, path_uuid
from api.keys import CHAINS, REDIS, SETTINGS
from api.middleware import db_session
from api import signatures
from api.platform.schemas import (
    AllocateAddressIn,
    DepositAddressOut,
    ScannerEventIn,
    WithdrawalListOut,
    WithdrawalListQuery,
    WithdrawalOut,
    WithdrawalRequestIn,
)
from api.registry import Routes
from api.schemas import Empty
from api.wallet.schemas import DepositOut
from core.errors import Forbidden
from core.sanctions import sanctions_list
from custody.addresses import service as addresses
from custody.deposits import ingest as deposit_events
from custody.withdrawals import service as withdrawals

crypto = Routes(tag="custody")

# Staff who may act for another user; a customer only ever gets their own address.
ACTS_FOR_OTHERS = ("operator", "admin")


def _target_user(principal: Principal, requested: uuid.UUID | None) -> uuid.UUID:
    if requested is None or requested == principal.user_id:
        return principal.user_id
    if not principal.has_any(*ACTS_FOR_OTHERS):
        raise Forbidden("Only operators and admins may allocate an address for another user.",
                        code="forbidden_user_id", details={"required_roles": sorted(ACTS_FOR_OTHERS)})
    return requested


@crypto.post("/platform/crypto/address/allocate", access=roles("customer", *ACTS_FOR_OTHERS), body=AllocateAddressIn,
             responses={201: DepositAddressOut, 200: DepositAddressOut})
async def allocate_address(request: web.Request, body: AllocateAddressIn) -> web.Response:
    """The caller's (or, for staff, a user's) deposit address on a chain: 201 if assigned now, 200 if it existed."""
    # An empty pool is 503 address_pool_empty with Retry-After; the service has requested a refill.
    principal = current(request)
    allocation = await addresses.allocate(db_session(request), _target_user(principal, body.user_id), body.chain,
                                          body.asset, chains=request.config_dict[SETTINGS].chains,
                                          actor=principal.user_id)
    row = allocation.deposit_address
    out = DepositAddressOut(address=row.address, chain=row.chain, asset=allocation.asset,
                            derivation_index=row.derivation_index, created_at=row.assigned_at)
    return json_response(out, status=201 if allocation.newly_assigned else 200)


# --- withdrawals (issue 8) ----------------------------------------------------------------------

APPROVERS = ("operator", "admin")


def _withdrawal_actor(principal: Principal) -> withdrawals.Actor:
    return withdrawals.Actor(principal.user_id, is_staff=principal.is_staff, may_approve=principal.has_any(*APPROVERS))


def _withdrawal_id(request: web.Request) -> uuid.UUID:
    return path_uuid(request, "withdrawal_id", "withdrawal_not_found")


@crypto.post("/platform/crypto/withdrawals/request", access=AUTHENTICATED, body=WithdrawalRequestIn,
             responses={201: WithdrawalOut}, idempotent=True)
async def request_withdrawal(request: web.Request, body: WithdrawalRequestIn) -> WithdrawalOut:
    """Request a withdrawal: `amount + fee` is held until it is confirmed on chain (or voided).

    Refusals hold nothing: invalid_address, invalid_amount, asset_not_on_chain (422), sanctioned_address
    (403, and it freezes the account's withdrawals), withdrawals_frozen (403), kyc_limit_exceeded (403),
    travel_rule_required / travel_address_invalid (422), mfa_required / invalid_mfa_code (401),
    too_many_attempts (429), insufficient_funds (422). With a `travel_rule.travel_address` at or above the
    Travel Rule threshold the withdrawal starts in `awaiting_travel_rule` until the beneficiary's VASP
    accepts it over TRP.
    """
    settings, session, principal = request.config_dict[SETTINGS], db_session(request), current(request)
    view = await withdrawals.request(
        session, settings, sanctions_list(settings.sanctions_list_file), _withdrawal_actor(principal),
        chain=body.chain, asset=body.asset, to_address=body.to_address, amount=body.amount,
        travel_rule=body.travel_rule.model_dump(exclude_none=True) if body.travel_rule else None,
        redis=request.config_dict[REDIS], totp_code=body.totp_code)
    return WithdrawalOut.of(view)


@crypto.get("/platform/crypto/withdrawals", access=AUTHENTICATED, query=WithdrawalListQuery,
            responses={200: WithdrawalListOut})
async def list_withdrawals(request: web.Request, query: WithdrawalListQuery) -> WithdrawalListOut:
    """The caller's withdrawals, newest first (staff: everyone's, or one user's with `user_id`)."""
    page = await withdrawals.search(db_session(request), _withdrawal_actor(current(request)), user_id=query.user_id,
                                    state=query.state, limit=query.limit, cursor=query.cursor)
    return WithdrawalListOut(items=[WithdrawalOut.of(view) for view in page.items], next_cursor=page.next_cursor)


@crypto.get("/platform/crypto/withdrawals/{withdrawal_id}", access=AUTHENTICATED, responses={200: WithdrawalOut})
async def get_withdrawal(request: web.Request) -> WithdrawalOut:
    """One withdrawal (its owner and staff): state, transaction hash, confirmations, fee."""
    view = await withdrawals.get(db_session(request), _withdrawal_actor(current(request)), _withdrawal_id(request))
    return WithdrawalOut.of(view)


@crypto.post("/platform/crypto/withdrawals/{withdrawal_id}/sign", access=roles(*APPROVERS), body=Empty,
             responses={200: WithdrawalOut}, idempotent=True)
async def sign_withdrawal(request: web.Request, body: Empty) -> WithdrawalOut:
    """Approve the withdrawal and start signing (never one's own; above the four-eyes threshold, two operators).

    The first of two approvals answers `pending_approval`; the last answers `approved`, and the
    custody worker then asks the isolated signer for the transaction.
    """
    view = await withdrawals.approve(db_session(request), _withdrawal_actor(current(request)), _withdrawal_id(request))
    return WithdrawalOut.of(view)


@crypto.post("/platform/crypto/withdrawals/{withdrawal_id}/rollback", access=AUTHENTICATED, body=Empty,
             responses={200: WithdrawalOut}, idempotent=True)
async def rollback_withdrawal(request: web.Request, body: Empty) -> WithdrawalOut:
    """Roll the withdrawal back and release its hold: operators and admins until it is being signed, its
    owner until it is approved. After broadcast: 409 already_broadcast."""
    view = await withdrawals.rollback(db_session(request), _withdrawal_actor(current(request)),
                                      _withdrawal_id(request))
    return WithdrawalOut.of(view)


# --- deposits (issue 7) ---------------------------------------------------------------------------

INGEST_ACCESS = roles_or_service_signature(*ACTS_FOR_OTHERS)


@crypto.post("/platform/crypto/scanner/ingest", access=INGEST_ACCESS, body=ScannerEventIn,
             responses={201: DepositOut, 200: DepositOut})
async def ingest_scanner_event(request: web.Request, body: ScannerEventIn) -> web.Response:
    """Record a watcher's deposit event once the chain confirms it: 201 if new, 200 if already known.

    The node must show the transaction mined in that block, successful, moving that amount of that
    asset to that deposit address; otherwise 422 `event_mismatch` (audited). Idempotent per
    (chain, tx_hash, log_index). Operators and admins log in; a service signs the body instead.
    """
    actor = await signatures.caller(request, INGEST_ACCESS)
    app = request.config_dict
    ingested = await deposit_events.ingest(db_session(request), body.event(), chains=app[SETTINGS].chains,
                                           adapters={chain.name: chain for chain in app[CHAINS]}, actor=actor)
    return json_response(DepositOut.of(ingested.item), status=201 if ingested.created else 200)
