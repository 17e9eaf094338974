"""Cancelling a withdrawal stuck at its nonce: a 0-value transfer of the hot wallet to itself at that nonce.

An operator asks (``request_cancel``: operators and admins with a fresh TOTP code, as for an
approval; only a ``broadcast`` withdrawal, once). The custody worker then asks the signer for the cancel: the
withdrawal's own id (the signer's journal allows one such self-transfer per nonce, for the
withdrawal signed there, ``core.sign_requests``), fees at least ``withdrawal_fee_bump_percent``
above every transaction asked for at the nonce (nodes and the signer want 10 %) and today's quote,
within the signer's fee caps. No fee bump of the payment follows.

Whichever transaction at the nonce is mined decides, and the withdrawal stays ``broadcast`` until
then: the payment (confirmed, as ever) or the cancel (``settle``: failed, the hold voided — the
customer pays neither amount nor fee — and the gas booked as a platform cost).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core import audit
from core.errors import Conflict, Forbidden
from core.settings import ChainSettings, Settings
from core.sign_requests import UnsignedTx
from core.time import utcnow
from custody import ledger
from custody.chains import Chain
from custody.chains.transactions import Fees
from custody.withdrawals import attempts as sign_requests
from custody.withdrawals import fee_caps, gas, service
from custody.withdrawals.models import Withdrawal, WithdrawalAttempt
from custody.withdrawals.states import transition

log = logging.getLogger(__name__)

CANCEL_WITHDRAWAL = jobs.name("custody.cancel_withdrawal")


class CancelRequested(Conflict):
    code, message = "cancel_requested", "A cancel of this withdrawal is already on its way."


# --- the operator's request (API) ---------------------------------------------------------------

async def request_cancel(session: AsyncSession, settings: Settings, redis: Redis, actor: service.Actor,
                         withdrawal_id: uuid.UUID, totp_code: str | None) -> service.WithdrawalView:
    if not actor.may_approve:
        raise Forbidden("Only operators and admins cancel withdrawals.", code="forbidden")
    withdrawal = await session.scalar(select(Withdrawal).where(Withdrawal.id == withdrawal_id).with_for_update())
    if withdrawal is None:
        raise service.WithdrawalNotFound()
    await check_cancellable(session, withdrawal)
    # Last, so a refused request never spends a code; a wrong code is committed, nothing else is written.
    # A stolen operator session alone must not fail customers' withdrawals: the approvers' step-up.
    await service.step_up_approver(session, settings, redis, actor.user_id, totp_code)
    await mark_requested(session, withdrawal, actor.user_id)
    return await service.get(session, actor, withdrawal.id)


async def check_cancellable(session: AsyncSession, withdrawal: Withdrawal) -> None:
    """409 unless the withdrawal is broadcast and no cancel of it is requested or out already."""
    if withdrawal.state != "broadcast":
        transition(withdrawal.state, "request_cancel")  # the 409 naming what this state allows
    cancels = [item for item in await sign_requests.of(session, withdrawal) if item.kind == "cancel"]
    if withdrawal.cancel_requested_at is not None or any(_live(item) for item in cancels):
        raise CancelRequested(details={"requested_at": str(withdrawal.cancel_requested_at)})


async def mark_requested(session: AsyncSession, withdrawal: Withdrawal, operator_id: uuid.UUID) -> None:
    """Audited on the withdrawal; the custody worker asks the signer after commit."""
    withdrawal.cancel_requested_at = utcnow()
    withdrawal.state = transition(withdrawal.state, "request_cancel")
    await session.flush()
    await service.record_step(session, withdrawal, await ledger.currency(session, withdrawal.asset),
                              "withdrawal.cancel_requested", operator_id, {"nonce": withdrawal.nonce})
    jobs.send_after_commit(session, CANCEL_WITHDRAWAL, str(withdrawal.id))


def _live(attempt: WithdrawalAttempt) -> bool:
    """Signed, or still waiting for the signer: not one it refused."""
    return attempt.raw_tx is not None or attempt.refusal is None


# --- the custody worker -------------------------------------------------------------------------

async def build_if_requested(session: AsyncSession, settings: Settings, chain: Chain, withdrawal: Withdrawal,
                             attempts: list[WithdrawalAttempt], head: int) -> WithdrawalAttempt | None:
    """Ask the signer for the cancel an operator requested, unless one is out already (idempotent)."""
    if withdrawal.state != "broadcast" or withdrawal.cancel_requested_at is None or withdrawal.hot_wallet is None:
        return None
    if any(item.kind == "cancel" and _live(item) for item in attempts):
        return None
    # 10 % (at least) above every request at the nonce, refused ones included: a cancel identical to
    # a refused one would be refused again.
    previous = Fees(max(item.max_fee_per_gas for item in attempts),
                    max(item.max_priority_fee_per_gas for item in attempts))
    today = Fees.quote(await chain.fees(), settings.withdrawal_min_priority_fee_wei)
    fees = previous.bumped(settings.withdrawal_fee_bump_percent, floor=today)
    gas_limit = settings.withdrawal_gas_limit_native
    if (breach := fee_caps.breach(settings, withdrawal.chain, gas_limit, fees)) is not None:
        await fee_caps.alert(session, withdrawal, *breach, {"cancel": True, **fee_caps.fee_data(gas_limit, fees)})
        return None
    fee_caps.clear(withdrawal)
    payment = UnsignedTx.parse(attempts[0].unsigned_tx)
    unsigned = UnsignedTx(chain_id=payment.chain_id, sender=payment.sender, nonce=payment.nonce, to=payment.sender,
                          value=0, data="0x", gas=gas_limit, max_fee_per_gas=fees.max_fee_per_gas,
                          max_priority_fee_per_gas=fees.max_priority_fee_per_gas)
    number = attempts[-1].attempt + 1
    attempt = await sign_requests.new_attempt(session, settings, withdrawal, number, unsigned, kind="cancel", head=head)
    await audit.append(session, "withdrawal", withdrawal.id, "withdrawal.cancel_signing",
                       {"attempt": number, "nonce": payment.nonce, **fee_caps.fee_data(gas_limit, fees)},
                       actor="custody")
    return attempt


async def on_refused(session: AsyncSession, withdrawal: Withdrawal, attempt: WithdrawalAttempt, reason: str,
                     message: str) -> None:
    """The payment stands; the operator may ask again (a new cancel pays more than the refused one)."""
    withdrawal.cancel_requested_at = None
    log.error("withdrawal %s: the signer refused its cancel (attempt %s): %s (%s)", withdrawal.id, attempt.attempt,
              reason, message)
    await audit.append(session, "withdrawal", withdrawal.id, "withdrawal.cancel_refused",
                       {"attempt": attempt.attempt, "reason": reason, "message": message}, actor="signer")


async def settle(session: AsyncSession, chain_settings: ChainSettings, withdrawal: Withdrawal,
                 attempt: WithdrawalAttempt, gas_cost: int) -> None:
    """The cancel was mined (and is deep enough): nothing was paid; the customer gets the hold back."""
    unit = await ledger.currency(session, withdrawal.asset)
    withdrawal.gas_cost, withdrawal.finished_at = gas_cost, utcnow()
    await gas.book(session, reference=f"withdrawal:{withdrawal.id}:gas", type="withdrawal_gas",
                   currency=chain_settings.native, amount=gas_cost, reference_kind="withdrawal",
                   reference_id=str(withdrawal.id), tx_hash=attempt.tx_hash)
    await ledger.void_hold(session, withdrawal.hold_id, type="withdrawal_void")
    withdrawal.state = transition(withdrawal.state, "cancel")
    withdrawal.failure_reason = "cancelled"
    await session.flush()
    data: dict[str, Any] = {"tx_hash": attempt.tx_hash, "block_number": withdrawal.block_number,
                            "confirmations": withdrawal.confirmations, "gas_cost": str(gas_cost),
                            "reason": "cancelled"}
    await service.record_step(session, withdrawal, unit, "withdrawal.failed", "custody", data)
