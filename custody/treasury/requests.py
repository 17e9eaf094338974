"""Sign requests of sweeps and gas top-ups: authorized by the custody request key, sent after commit.

The contract is ``core.sweep_requests``: the request names the deposit address's derivation index,
and the custody request key (the withdrawals' own, ``custody.withdrawals.authorization``) signs
the request id, its kind, that index and the exact transaction under a domain of their own. Each
request is recorded (``SweepTransaction``) before it leaves, leaves only after that commit, and is
sent again, identically, until the signer answers (the journal answers a repeat alike).
"""

from __future__ import annotations

import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core.settings import Settings
from core.sign_requests import SIGNER_QUEUE, UnsignedTx, request_digest
from core.signing import b64url_encode
from core.sweep_requests import SIGN_SWEEP_ACTOR, sweep_authorization_message
from core.time import utcnow
from custody.treasury.models import Sweep, SweepTransaction
from custody.withdrawals.authorization import request_key

SIGN_SWEEP = jobs.external(SIGN_SWEEP_ACTOR, queue=SIGNER_QUEUE)  # the isolated signer answers it


def authorize_sweep(key: Ed25519PrivateKey, request_id: str, kind: str, index: int, unsigned_tx: str) -> str:
    """base64url of the Ed25519 signature over the request (``core.sweep_requests``)."""
    return b64url_encode(key.sign(sweep_authorization_message(request_id, kind, index, unsigned_tx)))


async def new_transaction(session: AsyncSession, settings: Settings, sweep: Sweep, kind: str, request_id: uuid.UUID,
                          attempt: int, unsigned: UnsignedTx, value: int, head: int | None = None
                          ) -> SweepTransaction:
    """Record attempt ``attempt`` of request ``request_id`` and send it to the signer after commit."""
    text = unsigned.canonical()
    row = SweepTransaction(
        id=uuid.uuid4(), sweep_id=sweep.id, kind=kind, request_id=request_id, attempt=attempt, chain=sweep.chain,
        sender=unsigned.sender, nonce=unsigned.nonce, value=value, unsigned_tx=text,
        request_digest=request_digest(text), requested_block=head,
        authorization=authorize_sweep(request_key(settings), str(request_id), kind, sweep.derivation_index, text),
        max_fee_per_gas=unsigned.max_fee_per_gas, max_priority_fee_per_gas=unsigned.max_priority_fee_per_gas,
        nonce_released=False)
    session.add(row)
    await session.flush()
    resend(session, sweep, row)
    return row


def resend(session: AsyncSession, sweep: Sweep, row: SweepTransaction) -> None:
    row.sign_requested_at = utcnow()
    jobs.send_after_commit(session, SIGN_SWEEP, str(row.request_id), row.kind, sweep.derivation_index,
                           row.unsigned_tx, row.authorization)


async def of_sweep(session: AsyncSession, sweep: Sweep, kind: str | None = None) -> list[SweepTransaction]:
    """The sweep's transactions (of ``kind``), in the order asked."""
    query = select(SweepTransaction).where(SweepTransaction.sweep_id == sweep.id)
    if kind is not None:
        query = query.where(SweepTransaction.kind == kind)
    return list(await session.scalars(query.order_by(SweepTransaction.requested_at, SweepTransaction.attempt)))


class TopupNonces:
    """Gas top-ups take hot wallet nonces from the withdrawals' sequence: a nonce given back below one of
    theirs must be filled at once, or the top-up waits behind it for ever (``custody.withdrawals.fillers``
    asks through ``custody.withdrawals.requesters``). Their replies come on the treasury queue, so no
    withdrawal reply is ever theirs."""

    name = "treasury.topups"

    async def owns(self, session: AsyncSession, request_id: str) -> bool:
        return False

    async def on_signed(self, session: AsyncSession, settings: Settings, request_id: str, digest: str, raw_tx: str,
                        tx_hash: str, signature: str | None) -> None:
        raise AssertionError("top-ups are answered on the treasury queue")

    async def on_refused(self, session: AsyncSession, settings: Settings, request_id: str, digest: str, reason: str,
                         message: str, signature: str | None) -> None:
        raise AssertionError("top-ups are answered on the treasury queue")

    async def holds_nonce_above(self, session: AsyncSession, chain: str, address: str, nonce: int) -> bool:
        return bool(await session.scalar(select(exists().where(
            SweepTransaction.chain == chain, SweepTransaction.sender == address, SweepTransaction.nonce > nonce,
            SweepTransaction.attempt == 1, SweepTransaction.nonce_released.is_(False)))))


TOPUP_NONCES = TopupNonces()
