"""Withdrawals as the API sees them: request, read, approve (sign), roll back.

A request is refused holding nothing (no withdrawal row, no hold; no freeze but the sanctions one)
unless every check passes, in one order, which ``request`` reads top to bottom:

- the body: the chain and asset, the address (EIP-55), the amount (the asset's decimals) — 422;
- the account's email ownership (``identity.email_verification``) — 403 ``email_unverified``; it
  only reads;
- the caller's step-up MFA code — 401, 429 past the failures allowed. Before anything that has a
  consequence: an attempt without a code freezes nobody. A wrong code is committed (its audit
  event), which is why nothing is written before it;
- the address book allowlist, when the user turned it on: the destination must be a usable entry of
  their book for the chain and asset (``address_book``) — 403;
- the sanctions list — 403, and the attempt is committed and freezes the account's withdrawals —
  then a withdrawal freeze — 403;
- the balance (``amount + fee``) — 422: a customer short of funds hears it before any limit or
  Travel Rule question;
- the KYC level's 24-hour limit (``compliance.kyc.limits``), then the signer's limits (``limits``) — 403;
- the Travel Rule data — 422;
- the node's pre-flight (``preflight``: a payment that would revert) — 422, a network round trip,
  after every rule of ours and before the lock below.

Then, under a lock per asset that also covers the four-eyes sum, the signer's limits are read again
(two requests at once may both have passed them above) and the hold of ``amount + fee`` is the last
thing written; it checks the balance again, under the ledger's row locks. A refusal after the step-up
rolls back with the rest and so spends no code — except the sanctions hit, committed as it is.

Approving locks the withdrawal row, so two operators approving at once serialize; every approval
needs the approver's own TOTP step-up (an approver without MFA approves nothing); the last required
approval moves it to ``approved`` and asks the custody worker (after commit) to build and authorize
the transaction. Two approvals are required when the customer's withdrawals of the asset over 24
hours reach the four-eyes threshold (``limits.approvals_required``). The worker side is
``custody.withdrawals.pipeline``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core import audit
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.pagination import decode_cursor, encode_cursor
from core.sanctions import SanctionsList
from core.settings import Settings
from core.time import utcnow
from custody import ledger
from custody.chains import Chain
from custody.freezes import freeze, require_not_frozen, withdrawals_frozen
from custody.withdrawals import address_book, limits, metrics, preflight
from custody.withdrawals.destinations import destination_address
from custody.withdrawals.models import Withdrawal, WithdrawalApproval, WithdrawalAttempt
from custody.withdrawals.policy import checks
from custody.withdrawals.states import FINAL, transition
from identity.email_verification import require_verified as require_email_verified
from identity.models import LOCK_USER, User
from identity.service import require_step_up
from notifications import service as notifications

SIGN_WITHDRAWAL = jobs.name("custody.sign_withdrawal")
CONFIRM_TRAVEL_RULE = jobs.name("compliance.confirm_travel_rule")  # the compliance worker answers
MAX_PAGE = 100


@dataclass(frozen=True)
class Actor:
    user_id: uuid.UUID
    is_staff: bool = False  # may read every withdrawal
    may_approve: bool = False  # operator or admin
    # An API key created under step-up with withdrawals:write: its creation stands for the TOTP code,
    # but only towards an address active in the owner's book (what a stolen key cannot add to).
    standing_step_up: bool = False


@dataclass(frozen=True)
class WithdrawalView:
    withdrawal: Withdrawal
    currency: ledger.CurrencyInfo
    approvals: int

    def format(self, minor: int | None) -> str | None:
        return None if minor is None else self.currency.format(minor)


@dataclass(frozen=True)
class WithdrawalPage:
    items: list[WithdrawalView]
    next_cursor: str | None


class WithdrawalNotFound(NotFound):
    code, message = "withdrawal_not_found", "No such withdrawal."


class SanctionedAddress(Forbidden):
    code, message = "sanctioned_address", "Withdrawals to this address are not allowed."
    keep_changes = True  # the attempt itself is a compliance record (its audit event and the freeze are committed)


class TravelRuleRequired(InvalidInput):
    code, message = "travel_rule_required", "Above the Travel Rule threshold, beneficiary data is required."


class AlreadyBroadcast(Conflict):
    code, message = "already_broadcast", "The transaction has been broadcast: this withdrawal can no longer be rolled back."


class SigningInProgress(Conflict):
    code, message = "signing_in_progress", "The transaction is being signed and will be broadcast; it cannot be rolled back now."


# --- rules from settings ------------------------------------------------------------------------

def _threshold(unit: ledger.CurrencyInfo, table: dict[str, str]) -> int | None:
    configured = table.get(unit.code)
    return None if configured is None else unit.parse(configured, allow_zero=True)


async def record_step(session: AsyncSession, withdrawal: Withdrawal, unit: ledger.CurrencyInfo, event: str,
                  actor: uuid.UUID | str | None, data: dict[str, Any] | None = None) -> None:
    """The audit event, the owner's notification and the metric of one step; at a final state, the
    Travel Rule counterparty's confirmation."""
    body = {"state": withdrawal.state, "chain": withdrawal.chain, "asset": withdrawal.asset,
            "amount": unit.format(withdrawal.amount), **(data or {})}
    await audit.append(session, "withdrawal", withdrawal.id, event, body, actor=actor)
    await notifications.notify(session, withdrawal.user_id, event, {"withdrawal_id": str(withdrawal.id), **body})
    metrics.count(event.removeprefix("withdrawal."), withdrawal.chain, withdrawal.asset)
    if withdrawal.state in FINAL:
        tell_travel_rule_counterparty(session, withdrawal)


# --- request ------------------------------------------------------------------------------------

async def request(session: AsyncSession, settings: Settings, sanctions: SanctionsList, actor: Actor, *, chain: str,
                  asset: str, to_address: str, amount: str, travel_rule: dict[str, Any] | None,
                  redis: Redis, totp_code: str | None, chains: Mapping[str, Chain] | None = None) -> WithdrawalView:
    # The refusals, in their order (the module says why this one); none of them holds anything.
    chain_settings = settings.chain(chain)
    symbol = chain_settings.asset(asset)
    destination = destination_address(to_address)
    unit = await ledger.currency(session, symbol)
    minor = unit.parse(amount)
    fee = unit.parse(settings.withdrawal_fees.get(symbol, "0"), allow_zero=True)
    # An account that has not proved it owns its email withdraws nothing; asked before the step-up
    # code, so the refusal spends no code and writes nothing.
    await require_email_verified(session, actor.user_id)
    # Before anything with a consequence: without a valid code, a sanctioned destination freezes nobody.
    if not (actor.standing_step_up
            and await address_book.is_usable(session, actor.user_id, chain_settings.name, destination, symbol)):
        await require_step_up(session, settings, redis, actor.user_id, totp_code)
    # The user's own rule, before the sanctions list: an address they never listed freezes nobody.
    await address_book.require_allowlisted(session, actor.user_id, chain_settings.name, destination, asset=symbol)
    await _screen(session, sanctions, actor.user_id, chain_settings.name, destination, unit, minor)
    await require_not_frozen(session, actor.user_id)
    # Asked here so that a short balance is heard before the limits; the hold below is what decides.
    await ledger.check_available(session, actor.user_id, symbol, minor + fee)
    await checks().check_limit(session, settings, actor.user_id, unit, minor)
    now = utcnow()
    await limits.check_signer_limits(session, settings, unit, minor, now)
    counterparty = _travel_rule_counterparty(settings, unit, minor, travel_rule)
    await preflight.check_request(settings, chain_settings, chains or {}, destination=destination, amount=minor,
                                  asset=symbol)

    # Binding: held until commit, the lock keeps the signer's and the four-eyes sums true until the row is in.
    await limits.lock_asset(session, symbol)
    await limits.check_signer_limits(session, settings, unit, minor, now)
    withdrawal_id = uuid.uuid4()
    hold = await ledger.hold(session, f"withdrawal:{withdrawal_id}", actor.user_id, symbol, minor + fee,
                             type="withdrawal_hold", reference_kind="withdrawal", reference_id=str(withdrawal_id))
    approvals_required = await limits.approvals_required(
        session, actor.user_id, unit, minor, _threshold(unit, settings.withdrawal_four_eyes_thresholds), now)
    withdrawal = Withdrawal(id=withdrawal_id, user_id=actor.user_id, chain=chain_settings.name, asset=symbol,
                            to_address=destination, amount=minor, fee=fee, state="requested", hold_id=hold.id,
                            approvals_required=approvals_required, travel_rule=travel_rule or None)
    session.add(withdrawal)
    await session.flush()
    await record_step(session, withdrawal, unit, "withdrawal.requested", actor.user_id,
                  {"to_address": destination, "fee": unit.format(fee),
                   "approvals_required": withdrawal.approvals_required})
    if counterparty:
        withdrawal.state = transition(withdrawal.state, "await_travel_rule")
        await session.flush()
        transfer_id = await checks().open_travel_rule(session, settings, withdrawal, travel_rule, actor.user_id)
        await record_step(session, withdrawal, unit, "withdrawal.awaiting_travel_rule", actor.user_id,
                          {"travel_rule_transfer_id": str(transfer_id)})
    return WithdrawalView(withdrawal, unit, 0)


async def _screen(session: AsyncSession, sanctions: SanctionsList, user_id: uuid.UUID, chain: str, destination: str,
                  unit: ledger.CurrencyInfo, amount: int) -> None:
    """403 ``sanctioned_address`` for a destination on the configured list file or on a list loaded into
    compliance screening (OFAC SDN…). The attempt itself is a red flag: it is audited, and the customer's
    withdrawals stay frozen until an officer lifts it (both committed with the refusal)."""
    hit = await checks().screen_destination(session, destination)
    if destination not in sanctions and hit is None:
        return
    await audit.append(session, "user", user_id, "withdrawal.sanctions_hit",
                       {"chain": chain, "asset": unit.code, "to_address": destination, "amount": unit.format(amount),
                        "screening": hit},
                       actor=user_id)
    metrics.count("sanctions_hit", chain, unit.code)
    if not await withdrawals_frozen(session, user_id):
        await freeze(session, user_id, f"withdrawal to sanctioned address {destination}")
    raise SanctionedAddress(details={"to_address": destination})


def _travel_rule_counterparty(settings: Settings, unit: ledger.CurrencyInfo, amount: int,
                              travel_rule: dict[str, Any] | None) -> str | None:
    """422 ``travel_rule_required`` at or above the asset's threshold without beneficiary data (or with a
    Travel Address but no VASP; ``travel_address_invalid`` when it does not decode). The beneficiary
    VASP's Travel Address, when that VASP must accept the transfer over TRP first; else None."""
    threshold = _threshold(unit, settings.withdrawal_travel_rule_thresholds)
    # FATF R.16: the threshold is inclusive ("USD/EUR 1 000 or more").
    if threshold is None or amount < threshold:
        return None
    if not travel_rule:
        raise TravelRuleRequired(details={"threshold": unit.format(threshold), "asset": unit.code})
    counterparty = travel_rule.get("travel_address")
    if counterparty:
        checks().check_travel_rule(travel_rule)
    return counterparty


def tell_travel_rule_counterparty(session: AsyncSession, withdrawal: Withdrawal) -> None:
    """A withdrawal sent with a Travel Address ended (confirmed, failed, rolled back): its beneficiary
    VASP, if it accepted the transfer, gets the txid or ``canceled`` (a compliance job, after commit).
    ``record_step`` calls it on every final step, whichever path got there."""
    if withdrawal.travel_rule and withdrawal.travel_rule.get("travel_address"):
        jobs.send_after_commit(session, CONFIRM_TRAVEL_RULE, str(withdrawal.id))


async def travel_rule_decided(session: AsyncSession, withdrawal_id: uuid.UUID, *, accepted: bool,
                              reason: str | None) -> None:
    """The beneficiary VASP accepted the withdrawal's Travel Rule transfer (it now waits for operator
    approval) or rejected it, or it expired (it fails, and its hold is voided)."""
    withdrawal = await session.scalar(select(Withdrawal).where(Withdrawal.id == withdrawal_id).with_for_update())
    if withdrawal is None or withdrawal.state != "awaiting_travel_rule":
        return  # rolled back meanwhile: the decision changes nothing
    unit = await ledger.currency(session, withdrawal.asset)
    if accepted:
        withdrawal.state = transition(withdrawal.state, "travel_rule_accept")
        await session.flush()
        await record_step(session, withdrawal, unit, "withdrawal.travel_rule_accepted", None)
        return
    withdrawal.state = transition(withdrawal.state, "travel_rule_reject")
    withdrawal.failure_reason = "travel_rule_rejected"
    withdrawal.finished_at = utcnow()
    await ledger.void_hold(session, withdrawal.hold_id, type="withdrawal_void")
    await session.flush()
    await record_step(session, withdrawal, unit, "withdrawal.failed", None,
                      {"reason": "travel_rule_rejected", "detail": (reason or "")[:500]})


# --- reads --------------------------------------------------------------------------------------

async def _load(session: AsyncSession, withdrawal_id: uuid.UUID, actor: Actor, *, lock: bool) -> Withdrawal:
    query = select(Withdrawal).where(Withdrawal.id == withdrawal_id)
    found = await session.scalar(query.with_for_update() if lock else query)
    # Someone else's withdrawal does not exist, as far as a customer can tell.
    if found is None or not (found.user_id == actor.user_id or actor.is_staff or actor.may_approve):
        raise WithdrawalNotFound()
    return found


async def _view(session: AsyncSession, withdrawal: Withdrawal) -> WithdrawalView:
    approvals = await session.scalar(select(func.count()).select_from(WithdrawalApproval)
                                     .where(WithdrawalApproval.withdrawal_id == withdrawal.id))
    return WithdrawalView(withdrawal, await ledger.currency(session, withdrawal.asset), approvals or 0)


async def get(session: AsyncSession, actor: Actor, withdrawal_id: uuid.UUID) -> WithdrawalView:
    return await _view(session, await _load(session, withdrawal_id, actor, lock=False))


async def search(session: AsyncSession, actor: Actor, *, user_id: uuid.UUID | None = None, state: str | None = None,
                 limit: int = 50, cursor: str | None = None) -> WithdrawalPage:
    """Newest first; customers see their own, staff everyone's (or one user's with ``user_id``)."""
    query = select(Withdrawal).order_by(Withdrawal.created_at.desc(), Withdrawal.id.desc()).limit(limit + 1)
    if not (actor.is_staff or actor.may_approve):
        query = query.where(Withdrawal.user_id == actor.user_id)
    elif user_id is not None:
        query = query.where(Withdrawal.user_id == user_id)
    if state is not None:
        query = query.where(Withdrawal.state == state)
    if cursor:
        created_at, last_id = decode_cursor(cursor, 2)
        try:
            after = (datetime.fromisoformat(created_at), uuid.UUID(last_id))
        except ValueError:
            raise InvalidInput("The cursor is not one this API issued.", code="invalid_cursor") from None
        query = query.where(tuple_(Withdrawal.created_at, Withdrawal.id) < after)
    rows = list(await session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    items = [await _view(session, row) for row in rows]
    return WithdrawalPage(items, encode_cursor(rows[-1].created_at.isoformat(), rows[-1].id) if more else None)


async def attempts(session: AsyncSession, withdrawal_id: uuid.UUID) -> list[WithdrawalAttempt]:
    return list(await session.scalars(select(WithdrawalAttempt).where(WithdrawalAttempt.withdrawal_id == withdrawal_id)
                                      .order_by(WithdrawalAttempt.attempt)))


# --- approve (the "sign" route) -----------------------------------------------------------------

class MfaRequiredForApproval(Forbidden):
    code, message = "mfa_required_for_approval", ("Approving withdrawals needs two-factor authentication: turn "
                                                  "it on, then approve with a current code.")


async def step_up_approver(session: AsyncSession, settings: Settings, redis: Redis, operator_id: uuid.UUID,
                            totp_code: str | None) -> None:
    """An approval moves customers' money: a stolen operator session alone must not do it. Every
    approval takes a fresh TOTP code of the approver (each code once), and an approver without MFA
    is refused outright rather than waved through."""
    approver = await session.get_one(User, operator_id, with_for_update=LOCK_USER)  # MFA cannot be turned off meanwhile
    if not approver.mfa_enabled:
        raise MfaRequiredForApproval()
    await require_step_up(session, settings, redis, operator_id, totp_code)


async def approve(session: AsyncSession, settings: Settings, redis: Redis, actor: Actor, withdrawal_id: uuid.UUID,
                  totp_code: str | None) -> WithdrawalView:
    if not actor.may_approve:
        raise Forbidden("Only operators and admins approve withdrawals.", code="forbidden")
    withdrawal = await _load(session, withdrawal_id, actor, lock=True)
    if withdrawal.user_id == actor.user_id:
        raise Forbidden("Nobody approves their own withdrawal.", code="own_withdrawal")
    unit = await ledger.currency(session, withdrawal.asset)
    if withdrawal.state not in ("requested", "pending_approval"):
        transition(withdrawal.state, "approve")  # raises the 409 naming what the state allows
    await require_not_frozen(session, withdrawal.user_id)
    already = await session.scalar(select(WithdrawalApproval.id).where(
        WithdrawalApproval.withdrawal_id == withdrawal.id, WithdrawalApproval.operator_id == actor.user_id))
    if already is not None:
        raise Conflict("You have approved this withdrawal already; four eyes means another operator.",
                       code="already_approved")
    # Last, so a refused approval never spends a code; nothing is written before it (a wrong code is
    # committed with its audit event).
    await step_up_approver(session, settings, redis, actor.user_id, totp_code)
    session.add(WithdrawalApproval(withdrawal_id=withdrawal.id, operator_id=actor.user_id))
    await session.flush()
    approvals = (await _view(session, withdrawal)).approvals
    complete = approvals >= withdrawal.approvals_required
    withdrawal.state = transition(withdrawal.state, "approve" if complete else "approve_partial")
    await session.flush()
    await record_step(session, withdrawal, unit, "withdrawal.approved" if complete else "withdrawal.approval_added",
                  actor.user_id, {"approvals": approvals, "approvals_required": withdrawal.approvals_required})
    if complete:
        jobs.send_after_commit(session, SIGN_WITHDRAWAL, str(withdrawal.id))
    return WithdrawalView(withdrawal, unit, approvals)


# --- rollback -----------------------------------------------------------------------------------

OWNER_ROLLBACK_STATES = ("requested", "awaiting_travel_rule", "pending_approval")


async def rollback(session: AsyncSession, actor: Actor, withdrawal_id: uuid.UUID) -> WithdrawalView:
    withdrawal = await _load(session, withdrawal_id, actor, lock=True)
    owner = withdrawal.user_id == actor.user_id
    if not (actor.may_approve or owner):
        raise Forbidden("Only the owner (before approval), operators and admins roll a withdrawal back.",
                        code="forbidden")
    state = withdrawal.state
    if state in ("broadcast", "confirmed"):
        raise AlreadyBroadcast(details={"state": state, "tx_hash": withdrawal.tx_hash})
    if state in ("signing", "signed"):
        raise SigningInProgress(details={"state": state})
    if not actor.may_approve and state not in OWNER_ROLLBACK_STATES and state not in ("failed", "rolled_back"):
        raise Conflict("The withdrawal is approved: ask an operator to roll it back.", code="already_approved",
                       details={"state": state})
    withdrawal.state = transition(state, "rollback")
    withdrawal.finished_at = utcnow()
    await ledger.void_hold(session, withdrawal.hold_id, type="withdrawal_void")
    await session.flush()
    unit = await ledger.currency(session, withdrawal.asset)
    await record_step(session, withdrawal, unit, "withdrawal.rolled_back", actor.user_id, {"previous_state": state})
    return await _view(session, withdrawal)
