"""Withdrawal routes: request, list, read, approve (sign) and roll back."""

from __future__ import annotations

import uuid

from aiohttp import web

from api.access import AUTHENTICATED, roles
from api.http import path_uuid
from api.keys import CHAINS, REDIS, SETTINGS
from api.middleware import db_session
from api.principal import Principal, current
from api.registry import Routes
from api.schemas import Empty
from api.withdrawals.schemas import (
    ApprovalIn,
    CancelIn,
    WithdrawalListOut,
    WithdrawalListQuery,
    WithdrawalOut,
    WithdrawalRequestIn,
)
from core.sanctions import sanctions_list
from custody.withdrawals import cancels, service

withdrawals = Routes(tag="withdrawals", scopes="withdrawals")

APPROVERS = ("operator", "admin")


def _actor(principal: Principal) -> service.Actor:
    key = principal.api_key
    return service.Actor(principal.user_id, is_staff=principal.is_staff, may_approve=principal.has_any(*APPROVERS),
                         standing_step_up=key is not None and key.stepped_up and "withdrawals:write" in key.scopes)


def _withdrawal_id(request: web.Request) -> uuid.UUID:
    return path_uuid(request, "withdrawal_id", "withdrawal_not_found")


NOT_FOUND = {404: ("withdrawal_not_found",)}
STEP_UP = {401: ("mfa_required", "invalid_mfa_code"), 429: ("too_many_attempts",)}
APPROVER_STEP_UP = {**STEP_UP, 403: ("mfa_required_for_approval",)}


@withdrawals.post("/platform/crypto/withdrawals/request", access=AUTHENTICATED, body=WithdrawalRequestIn,
                  responses={201: WithdrawalOut}, idempotent=True,
                  errors={**STEP_UP,
                          403: ("email_unverified", "address_not_allowlisted", "sanctioned_address",
                                "withdrawals_frozen", "kyc_limit_exceeded", "signer_limit_exceeded"),
                          422: ("unknown_chain", "asset_not_on_chain", "invalid_address", "invalid_amount",
                                "travel_rule_required", "travel_address_invalid", "travel_address_private",
                                "would_revert", "insufficient_funds")})
async def request_withdrawal(request: web.Request, body: WithdrawalRequestIn) -> WithdrawalOut:
    """Request a withdrawal: `amount + fee` is held until it is confirmed on chain (or voided).

    Refusals hold nothing, and come in this order: unknown_chain, asset_not_on_chain, invalid_address,
    invalid_amount (422); email_unverified (403: the account has not proved it owns its email);
    mfa_required / invalid_mfa_code (401), too_many_attempts (429); address_not_allowlisted (403: the
    caller's allowlist is on and the address is not a usable entry of their address book for the chain and asset);
    sanctioned_address (403, and it freezes the account's withdrawals), withdrawals_frozen (403);
    insufficient_funds (422); kyc_limit_exceeded (403), signer_limit_exceeded (403: above the signer's
    per-withdrawal or rolling 24-hour limit of the asset); travel_rule_required / travel_address_invalid (422); would_revert (422: the
    node, running the payment from the hot wallet now, says it would revert); travel_address_private (422: the
    Travel Address is a private, loopback or link-local address of a VASP not in the directory). With a
    `travel_rule.travel_address` at or above the Travel Rule threshold the withdrawal starts in
    `awaiting_travel_rule` until the beneficiary's VASP accepts it over TRP. An API key created with a
    TOTP code and `withdrawals:write` needs no `totp_code` for an address active in the owner's address book.
    """
    settings, session, principal = request.config_dict[SETTINGS], db_session(request), current(request)
    view = await service.request(
        session, settings, sanctions_list(settings.sanctions_list_file), _actor(principal),
        chain=body.chain, asset=body.asset, to_address=body.to_address, amount=body.amount,
        travel_rule=body.travel_rule.model_dump(exclude_none=True) if body.travel_rule else None,
        redis=request.config_dict[REDIS], totp_code=body.totp_code,
        chains={chain.name: chain for chain in request.config_dict[CHAINS]})
    return WithdrawalOut.of(view)


@withdrawals.get("/platform/crypto/withdrawals", access=AUTHENTICATED, query=WithdrawalListQuery,
                 responses={200: WithdrawalListOut})
async def list_withdrawals(request: web.Request, query: WithdrawalListQuery) -> WithdrawalListOut:
    """The caller's withdrawals, newest first (staff: everyone's, or one user's with `user_id`)."""
    page = await service.search(db_session(request), _actor(current(request)), user_id=query.user_id,
                                state=query.state, limit=query.limit, cursor=query.cursor)
    return WithdrawalListOut(items=[WithdrawalOut.of(view) for view in page.items], next_cursor=page.next_cursor)


@withdrawals.get("/platform/crypto/withdrawals/{withdrawal_id}", access=AUTHENTICATED,
                 responses={200: WithdrawalOut}, errors=NOT_FOUND)
async def get_withdrawal(request: web.Request) -> WithdrawalOut:
    """One withdrawal (its owner and staff): state, transaction hash, confirmations, fee."""
    view = await service.get(db_session(request), _actor(current(request)), _withdrawal_id(request))
    return WithdrawalOut.of(view)


@withdrawals.post("/platform/crypto/withdrawals/{withdrawal_id}/sign", access=roles(*APPROVERS), scope=None, body=ApprovalIn,
                  responses={200: WithdrawalOut}, idempotent=True,
                  errors={**APPROVER_STEP_UP, **NOT_FOUND,
                          403: ("own_withdrawal", "withdrawals_frozen", "mfa_required_for_approval"),
                          409: ("invalid_state", "already_approved")})
async def sign_withdrawal(request: web.Request, body: ApprovalIn) -> WithdrawalOut:
    """Approve the withdrawal and start signing (never one's own; two different operators once the customer's
    withdrawals of the asset over 24 hours reach the four-eyes threshold).

    Every approval needs a fresh TOTP code of the approver (`totp_code`). The first of two approvals
    answers `pending_approval`; the last answers `approved`, and the custody worker then asks the
    isolated signer for the transaction. Refusals: own_withdrawal (403), invalid_state / already_approved
    (409), withdrawals_frozen (403), mfa_required_for_approval (403: the approver has no MFA),
    mfa_required / invalid_mfa_code (401), too_many_attempts (429), withdrawal_not_found (404).
    """
    settings, session = request.config_dict[SETTINGS], db_session(request)
    view = await service.approve(session, settings, request.config_dict[REDIS], _actor(current(request)),
                                 _withdrawal_id(request), body.totp_code)
    return WithdrawalOut.of(view)


@withdrawals.post("/platform/crypto/withdrawals/{withdrawal_id}/rollback", access=AUTHENTICATED, body=Empty,
                  responses={200: WithdrawalOut}, idempotent=True,
                  errors={**NOT_FOUND, 409: ("invalid_state", "already_broadcast", "signing_in_progress")})
async def rollback_withdrawal(request: web.Request, body: Empty) -> WithdrawalOut:
    """Roll the withdrawal back and release its hold: operators and admins until it is being signed, its
    owner until it is approved. After broadcast: 409 already_broadcast."""
    view = await service.rollback(db_session(request), _actor(current(request)), _withdrawal_id(request))
    return WithdrawalOut.of(view)


@withdrawals.post("/platform/crypto/withdrawals/{withdrawal_id}/cancel", access=roles(*APPROVERS), scope=None, body=CancelIn,
                  responses={202: WithdrawalOut}, idempotent=True,
                  errors={**APPROVER_STEP_UP, **NOT_FOUND, 409: ("invalid_state", "cancel_requested")})
async def cancel_withdrawal(request: web.Request, body: CancelIn) -> WithdrawalOut:
    """Cancel a broadcast withdrawal stuck at its nonce (operators and admins, a fresh TOTP code).

    The custody worker asks the signer for a 0-value transfer of the hot wallet to itself at the same
    nonce, paying more than every transaction there. The withdrawal stays `broadcast` until one of them
    is mined: the cancel (`failed`, reason `cancelled`, the hold voided) or the payment (`confirmed`).
    Refusals: invalid_state (409: not broadcast), cancel_requested (409: already asked),
    mfa_required_for_approval (403), mfa_required / invalid_mfa_code (401), too_many_attempts (429),
    withdrawal_not_found (404).
    """
    settings, session = request.config_dict[SETTINGS], db_session(request)
    view = await cancels.request_cancel(session, settings, request.config_dict[REDIS], _actor(current(request)),
                                        _withdrawal_id(request), body.totp_code)
    return WithdrawalOut.of(view)
