"""A broadcast withdrawal whose nonce is not mined yet: send it again, replace it, or wait — never give up quietly.

Each tracker run, for a nonce with no receipt:

- the highest-fee signed transaction at the nonce is sent to the node again every
  ``withdrawal_rebroadcast_blocks`` blocks (a node that dropped it — a restart, a full pool — says
  nothing); one the node rejects is marked and tried again as many blocks later, the next lower
  one going out meanwhile;
- a payment not mined ``withdrawal_stuck_blocks`` after it went out is replaced by a fee bump (the
  same payment, fees ``withdrawal_fee_bump_percent`` higher and at least today's quote), within
  the signer's fee caps (``fee_caps``): above a cap it waits and alerts. A bump the signer refused
  is asked again, above it, as many blocks later (the same request would get the same refusal).
  The signer allows ``max_replacements`` transactions after the first at a nonce; the bumps stop one
  short, keeping the last for an operator's cancel, and alert once;
- an operator's cancel, once requested, replaces the payment instead (``cancels``), and no fee
  bump follows it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core import audit
from core.settings import Settings
from core.sign_requests import UnsignedTx
from core.time import utcnow
from custody import ledger
from custody.chains import Chain, ChainRejected
from custody.chains.transactions import Fees
from custody.withdrawals import attempts as sign_requests
from custody.withdrawals import cancels, fee_caps, metrics
from custody.withdrawals.models import Withdrawal, WithdrawalAttempt
from custody.withdrawals.service import record_step
from custody.withdrawals.states import transition

log = logging.getLogger(__name__)

BROADCAST_WITHDRAWAL = jobs.name("custody.broadcast_withdrawal")
BROADCAST_REJECTED = "broadcast_rejected"


async def drive(session: AsyncSession, settings: Settings, chain: Chain, withdrawal: Withdrawal,
                attempts: list[WithdrawalAttempt], head: int, stale: datetime) -> None:
    """Nothing at the withdrawal's nonce is mined yet (``attempts``: all of them, oldest first)."""
    latest = attempts[-1]
    waiting_for_signer = latest.raw_tx is None and latest.refusal is None
    if waiting_for_signer and latest.requested_at <= stale and (withdrawal.sign_requested_at or stale) <= stale:
        sign_requests.resend(session, latest)
        withdrawal.sign_requested_at = utcnow()
    never_sent = [item for item in attempts if item.raw_tx is not None and item.broadcast_at is None
                  and item.refusal is None]
    if never_sent:
        jobs.send_after_commit(session, BROADCAST_WITHDRAWAL, str(withdrawal.id))
    await send_again(session, settings, chain, withdrawal, attempts, head)
    if waiting_for_signer or never_sent:
        return
    if withdrawal.cancel_requested_at is not None:
        await cancels.build_if_requested(session, settings, chain, withdrawal, attempts, head)
        return
    await _bump_if_stuck(session, settings, chain, withdrawal, attempts, head)


async def send_again(session: AsyncSession, settings: Settings, chain: Chain, withdrawal: Withdrawal,
                     attempts: list[WithdrawalAttempt], head: int) -> None:
    """Every ``withdrawal_rebroadcast_blocks`` since the nonce's last send, the highest-fee signed
    transaction the node takes goes out again (one the node rejected is tried again first)."""
    out = [item for item in attempts if item.raw_tx is not None and (item.broadcast_at or item.refusal)]
    if not out:
        return
    last_sent = max(max(item.sent_block or 0, item.broadcast_block or 0, item.rejected_block or 0) for item in out)
    if head - last_sent < settings.withdrawal_rebroadcast_blocks:
        return
    for attempt in sorted(out, key=lambda item: (item.max_fee_per_gas, item.attempt), reverse=True):
        try:
            await chain.broadcast(bytes.fromhex(attempt.raw_tx.removeprefix("0x")))  # type: ignore[union-attr]
        except ChainRejected as rejected:
            rejected_by_node(withdrawal, attempt, head, rejected)
            continue
        await sent(session, withdrawal, attempt, head)
        return


def rejected_by_node(withdrawal: Withdrawal, attempt: WithdrawalAttempt, head: int, rejected: ChainRejected) -> None:
    """Not final: the node may take it later (a full pool, a replacement it misjudged); tried again."""
    log.warning("withdrawal %s: attempt %s rejected by the node at block %s: %s", withdrawal.id, attempt.attempt,
                head, rejected.message)
    if attempt.refusal in (None, BROADCAST_REJECTED):
        attempt.refusal, attempt.rejected_block = BROADCAST_REJECTED, head


async def sent(session: AsyncSession, withdrawal: Withdrawal, attempt: WithdrawalAttempt, head: int) -> None:
    """The node took ``attempt`` (a replacement, or a transaction sent again)."""
    attempt.sent_block, attempt.rejected_block = head, None
    if attempt.refusal == BROADCAST_REJECTED:
        attempt.refusal = None
    if attempt.broadcast_at is not None:
        return
    attempt.broadcast_at, attempt.broadcast_block = utcnow(), head
    withdrawal.state = transition(withdrawal.state, "replace")
    await session.flush()
    unit = await ledger.currency(session, withdrawal.asset)
    if attempt.kind == "cancel":
        await record_step(session, withdrawal, unit, "withdrawal.cancel_broadcast", "custody",
                          {"tx_hash": attempt.tx_hash, "attempt": attempt.attempt, "nonce": withdrawal.nonce})
    else:
        await record_step(session, withdrawal, unit, "withdrawal.replaced", "custody",
                          {"tx_hash": attempt.tx_hash, "attempt": attempt.attempt,
                           "max_fee_per_gas": str(attempt.max_fee_per_gas)})


async def _bump_if_stuck(session: AsyncSession, settings: Settings, chain: Chain, withdrawal: Withdrawal,
                         attempts: list[WithdrawalAttempt], head: int) -> None:
    payments = [item for item in attempts if item.kind == "payment"]
    latest = payments[-1]
    if latest.raw_tx is None:  # a bump the signer refused: asked again once the stuck window has passed anew
        since = latest.requested_block if latest.requested_block is not None else max(
            item.broadcast_block or 0 for item in payments)
    elif latest.broadcast_at is None:
        return  # the node rejected it: send_again tries it again
    else:
        since = latest.broadcast_block or head
    if head - since < settings.withdrawal_stuck_blocks:
        return
    if await chain.mined_nonce(withdrawal.hot_wallet) < (withdrawal.nonce or 0):  # type: ignore[arg-type]
        return  # an earlier nonce is not mined yet: bumping this one would not help (that one's tracker bumps)
    bumps = len([item for item in payments if item.raw_tx is not None]) - 1
    if bumps >= fee_caps.bumps_allowed(settings, withdrawal.chain):
        await fee_caps.alert(session, withdrawal, fee_caps.BUMPS_EXHAUSTED, f"not mined after {bumps} fee bumps",
                             {"attempt": latest.attempt, "head": head})
        return
    # Above every earlier request, refused ones included: the same request would be refused again.
    previous = Fees(max(item.max_fee_per_gas for item in payments),
                    max(item.max_priority_fee_per_gas for item in payments))
    today = Fees.quote(await chain.fees(), settings.withdrawal_min_priority_fee_wei)
    bumped = previous.bumped(settings.withdrawal_fee_bump_percent, floor=today)
    first = UnsignedTx.parse(payments[0].unsigned_tx)
    if (breach := fee_caps.breach(settings, withdrawal.chain, first.gas, bumped)) is not None:
        await fee_caps.alert(session, withdrawal, *breach, fee_caps.fee_data(first.gas, bumped))
        return
    fee_caps.clear(withdrawal)
    unsigned = replace(first, max_fee_per_gas=bumped.max_fee_per_gas,
                       max_priority_fee_per_gas=bumped.max_priority_fee_per_gas)
    number = attempts[-1].attempt + 1
    await sign_requests.new_attempt(session, settings, withdrawal, number, unsigned, head=head)
    await audit.append(session, "withdrawal", withdrawal.id, "withdrawal.fee_bump_requested",
                       {"attempt": number, "stuck_since_block": since, "head": head,
                        "max_fee_per_gas": str(bumped.max_fee_per_gas)}, actor="custody")
    metrics.count("fee_bump_requested", withdrawal.chain, withdrawal.asset)
