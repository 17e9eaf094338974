"""Sign requests to the isolated signer: a withdrawal's attempts (its payment, fee bumps, a cancel) and fillers.

Every request is the exact unsigned transaction and the custody request key's Ed25519 authorization
over it and the id it is made for (``core.sign_requests``); it leaves only after the commit that
records it, and is sent again, identically, until the signer answers.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core.settings import Settings
from core.sign_requests import SIGN_ACTOR, SIGNER_QUEUE, UnsignedTx, request_digest
from core.time import utcnow
from custody.withdrawals.authorization import authorize, request_key
from custody.withdrawals.models import Withdrawal, WithdrawalAttempt

SIGN = jobs.external(SIGN_ACTOR, queue=SIGNER_QUEUE)  # the isolated signer answers it


def send_sign_request(session: AsyncSession, request_id: str, unsigned_tx: str, authorization: str) -> None:
    jobs.send_after_commit(session, SIGN, request_id, unsigned_tx, authorization)


def resend(session: AsyncSession, attempt: WithdrawalAttempt) -> None:
    send_sign_request(session, str(attempt.withdrawal_id), attempt.unsigned_tx, attempt.authorization)


async def new_attempt(session: AsyncSession, settings: Settings, withdrawal: Withdrawal, number: int,
                      unsigned: UnsignedTx, *, kind: str = "payment", head: int | None = None) -> WithdrawalAttempt:
    """Record attempt ``number`` and send its sign request after commit. ``head``: the block it was asked at."""
    text = unsigned.canonical()
    attempt = WithdrawalAttempt(
        withdrawal_id=withdrawal.id, attempt=number, kind=kind, unsigned_tx=text, request_digest=request_digest(text),
        authorization=authorize(request_key(settings), str(withdrawal.id), text), requested_block=head,
        max_fee_per_gas=unsigned.max_fee_per_gas, max_priority_fee_per_gas=unsigned.max_priority_fee_per_gas)
    session.add(attempt)
    await session.flush()
    resend(session, attempt)
    withdrawal.sign_requested_at = utcnow()
    return attempt


async def of(session: AsyncSession, withdrawal: Withdrawal) -> list[WithdrawalAttempt]:
    return list(await session.scalars(select(WithdrawalAttempt).where(WithdrawalAttempt.withdrawal_id == withdrawal.id)
                                      .order_by(WithdrawalAttempt.attempt)))
