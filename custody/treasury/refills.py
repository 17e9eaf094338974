"""Refills of a hot wallet below its floor, from the cold wallet, signed offline by the cold custodian.

The cold wallet is watch-only: its keys never touch the platform (DESIGN.md). So a refill is a
request, not a transfer: ``open`` carries the unsigned EIP-1559 transaction the custodian signs on
their own device — from the cold wallet to the hot wallet (the native coin) or to the token contract
with ``transfer(hot wallet, amount)``, the amount that brings the hot wallet back to its target, the
chain id, the cold wallet's next nonce and today's fee quote. The custodian hands the signed
transaction back (``POST /admin/treasury/refills/{id}/submit``); it is broadcast only if it is exactly
that transaction, signed by the cold wallet — otherwise 422 naming each field that differs — and a
refill is submitted once (409 after). ``submitted`` → ``confirmed`` (or ``failed``: mined, reverted)
follows the receipt to the chain's confirmations; the gas, paid by the cold wallet, is a platform
cost (``fees`` → ``network_fees``). An open refill whose nonce the cold wallet has used for
something else can never be mined: it ``expires`` and the next check asks for a new one.

One open refill per chain and asset (a unique index); every state change is audited on the
``treasury_refill`` aggregate in the same transaction.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import Conflict, InvalidInput, NotFound
from core.pagination import keyset_before, next_page
from core.settings import ChainSettings, Settings, UnknownChain
from core.sign_requests import UnsignedTx, decode_erc20_transfer
from core.time import utcnow
from custody import ledger
from custody.chains import ChainRejected, EvmChain, chain_for
from custody.chains.transactions import (
    Fees,
    SignedTxMismatch,
    decode_signed,
    payment_call,
    tx_hash,
)
from custody.treasury.hot_cold_models import REFILL_ACTIVE, Refill
from custody.withdrawals import gas as network_gas
from custody.withdrawals.preflight import gas_limit

log = logging.getLogger(__name__)

AGGREGATE = "treasury_refill"
# The fields of a refill transaction, in the order a mismatch names them.
FIELDS = ("chain_id", "sender", "destination", "asset_contract", "amount", "nonce", "gas", "max_fee_per_gas",
          "max_priority_fee_per_gas")


class RefillNotFound(NotFound):
    code, message = "refill_not_found", "No such refill request."


class RefillAlreadySubmitted(Conflict):
    code, message = "refill_already_submitted", "This refill has been submitted already."


class RefillExpired(Conflict):
    code, message = "refill_expired", "This refill expired: the cold wallet used its nonce; a new one is asked for."


class RefillMismatch(InvalidInput):
    code, message = "refill_transaction_mismatch", "The signed transaction is not this refill's transfer."


class MalformedTransaction(InvalidInput):
    code, message = "malformed_transaction", "raw_tx is not a signed EIP-1559 transaction."


class RefillBroadcastRejected(InvalidInput):
    code, message = "refill_broadcast_rejected", "The chain's node refused the signed transaction."


@dataclass(frozen=True)
class Transfer:
    """What a refill transaction does, in the terms an operator compares: who pays whom how much of what."""

    chain_id: int
    sender: str
    destination: str
    asset_contract: str | None  # the token contract; None for the native coin
    amount: int
    nonce: int
    gas: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int

    @classmethod
    def of(cls, transaction: UnsignedTx) -> Transfer:
        call = decode_erc20_transfer(transaction.data) if transaction.value == 0 else None
        if call is not None:
            destination, amount, contract = to_checksum_address(call[0]), call[1], transaction.to
        elif transaction.data == "0x":
            destination, amount, contract = transaction.to, transaction.value, None
        else:  # a call that is no plain transfer: it names no destination or amount we can compare
            destination, amount, contract = "", -1, transaction.to
        return cls(transaction.chain_id, transaction.sender, destination, contract, amount, transaction.nonce,
                   transaction.gas, transaction.max_fee_per_gas, transaction.max_priority_fee_per_gas)

    def differences(self, got: Transfer) -> dict[str, dict[str, Any]]:
        return {name: {"expected": _text(getattr(self, name)), "got": _text(getattr(got, name))}
                for name in FIELDS if getattr(self, name) != getattr(got, name)}


def _text(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def unsigned_of(refill: Refill) -> UnsignedTx:
    return UnsignedTx(chain_id=refill.chain_id, sender=refill.cold_wallet, nonce=refill.nonce, to=refill.tx_to,
                      value=refill.tx_value, data=refill.tx_data, gas=refill.gas,
                      max_fee_per_gas=refill.max_fee_per_gas, max_priority_fee_per_gas=refill.max_priority_fee_per_gas)


# --- asking for one (the treasury check) -----------------------------------------------------------

async def active_ids(session: AsyncSession) -> list[str]:
    return [str(row) for row in await session.scalars(
        select(Refill.id).where(Refill.state.in_(REFILL_ACTIVE)).order_by(Refill.created_at))]


async def request_if_needed(session: AsyncSession, settings: Settings, chain_settings: ChainSettings, chain: EvmChain,
                            asset: str, hot: str, hot_balance: int, target: int) -> Refill | None:
    """An open refill for ``asset`` on the chain, unless one is open or on its way already."""
    cold = chain_settings.cold_wallet
    if cold is None:
        log.error("ALERT: %s has no cold wallet (VIRTUOZ_CHAINS cold_wallet): no refill of its hot wallet can be "
                  "asked for", chain_settings.name)
        return None
    active = await session.scalar(select(Refill).where(
        Refill.chain == chain_settings.name, Refill.asset == asset, Refill.state.in_(REFILL_ACTIVE))
        .with_for_update())
    if active is not None and not await _expire_if_stale(session, chain, active):
        return None
    amount = target - hot_balance
    if amount <= 0:
        return None
    token = chain_settings.tokens.get(asset)
    fees = Fees.quote(await chain.fees(), settings.withdrawal_min_priority_fee_wei)
    to, value, data = payment_call(hot, amount, token)
    refill = Refill(id=uuid.uuid4(), chain=chain_settings.name, asset=asset, state="open", amount=amount,
                    hot_balance=hot_balance, chain_id=chain_settings.chain_id, cold_wallet=cold, hot_wallet=hot,
                    nonce=await chain.nonce(cold), tx_to=to, tx_value=value, tx_data=data,
                    gas=gas_limit(settings, token), max_fee_per_gas=fees.max_fee_per_gas,
                    max_priority_fee_per_gas=fees.max_priority_fee_per_gas)
    session.add(refill)
    await session.flush()
    unit = await ledger.currency(session, asset)
    log.error("ALERT: refill %s asked of the cold custodian: %s %s from %s to the %s hot wallet %s (nonce %s)",
              refill.id, unit.format(amount), asset, cold, chain_settings.name, hot, refill.nonce)
    await audit.append(session, AGGREGATE, refill.id, f"{AGGREGATE}.requested",
                       {"chain": refill.chain, "asset": asset, "amount": str(amount), "hot_balance": str(hot_balance),
                        "hot_target": str(target), "unsigned_tx": unsigned_of(refill).canonical()}, actor="treasury")
    return refill


async def _expire_if_stale(session: AsyncSession, chain: EvmChain, refill: Refill) -> bool:
    """True (and ``expired``) when an open refill's nonce is used by a mined transaction of the cold wallet."""
    if refill.state != "open" or await chain.mined_nonce(refill.cold_wallet) <= refill.nonce:
        return False
    refill.state = "expired"
    log.warning("refill %s expired: the cold wallet %s used its nonce %s", refill.id, refill.cold_wallet, refill.nonce)
    await audit.append(session, AGGREGATE, refill.id, f"{AGGREGATE}.expired", {"nonce": refill.nonce},
                       actor="treasury")
    await session.flush()
    return True


# --- reading and submitting (the admin routes) ---------------------------------------------------

async def page(session: AsyncSession, *, limit: int, cursor: str | None = None, state: str | None = None
               ) -> tuple[list[Refill], str | None]:
    """Refill requests, newest first."""
    query = select(Refill)
    if state is not None:
        query = query.where(Refill.state == state)
    if cursor is not None:
        query = query.where(keyset_before(cursor, Refill.created_at, Refill.id))
    rows = list(await session.scalars(query.order_by(Refill.created_at.desc(), Refill.id.desc()).limit(limit + 1)))
    return next_page(rows, limit)


async def submit(session: AsyncSession, settings: Settings, refill_id: uuid.UUID, raw_tx: str,
                 actor: uuid.UUID) -> Refill:
    """Broadcast the custodian's signed transaction if it is exactly the refill's transfer."""
    refill = await session.scalar(select(Refill).where(Refill.id == refill_id).with_for_update()
                                  .execution_options(populate_existing=True))
    if refill is None:
        raise RefillNotFound()
    if refill.state == "expired":
        raise RefillExpired(details={"refill_id": str(refill.id), "nonce": refill.nonce})
    if refill.state != "open":
        raise RefillAlreadySubmitted(details={"refill_id": str(refill.id), "state": refill.state,
                                              "tx_hash": refill.tx_hash})
    try:
        signed = decode_signed(raw_tx)
    except SignedTxMismatch as malformed:
        raise MalformedTransaction(details={"reason": str(malformed)}) from None
    expected, got = Transfer.of(unsigned_of(refill)), Transfer.of(signed)
    differences = expected.differences(got)
    if differences:
        raise RefillMismatch(f"The signed transaction is not this refill's transfer: {', '.join(differences)} "
                             "differ.", details={"differences": differences})
    try:
        chain_settings = settings.chain(refill.chain)
    except UnknownChain:
        raise RefillBroadcastRejected(f"{refill.chain} is not configured on this API.") from None
    async with chain_for(chain_settings) as chain:
        head = await chain.head()
        try:
            await chain.broadcast(bytes.fromhex(raw_tx.removeprefix("0x")))
        except ChainRejected as rejected:
            raise RefillBroadcastRejected(details={"reason": rejected.message[:300]}) from None
    refill.raw_tx, refill.tx_hash, refill.sent_block = raw_tx, tx_hash(raw_tx), head
    refill.state, refill.submitted_by, refill.submitted_at = "submitted", actor, utcnow()
    await session.flush()
    log.info("refill %s submitted by %s: %s", refill.id, actor, refill.tx_hash)
    await audit.append(session, AGGREGATE, refill.id, f"{AGGREGATE}.submitted",
                       {"tx_hash": refill.tx_hash, "block": head}, actor=actor)
    return refill


# --- submitted → confirmed (the treasury check's tracking) -----------------------------------------

async def track(session: AsyncSession, settings: Settings, refill_id: str) -> None:
    try:
        key = uuid.UUID(refill_id)
    except ValueError:
        return
    refill = await session.scalar(select(Refill).where(Refill.id == key).with_for_update(skip_locked=True)
                                  .execution_options(populate_existing=True))
    if refill is None or refill.state not in REFILL_ACTIVE:
        return
    try:
        chain_settings = settings.chain(refill.chain)
    except UnknownChain:
        return
    async with chain_for(chain_settings) as chain:
        if refill.state == "open":
            await _expire_if_stale(session, chain, refill)
            return
        head = await chain.head()
        receipt = await chain.receipt(refill.tx_hash)  # type: ignore[arg-type]
        if receipt is None:
            if head - (refill.sent_block or head) >= settings.withdrawal_rebroadcast_blocks:
                try:  # a node may have dropped it
                    await chain.broadcast(bytes.fromhex(refill.raw_tx.removeprefix("0x")))  # type: ignore[union-attr]
                    refill.sent_block = head
                except ChainRejected as rejected:
                    log.warning("refill %s: the node rejects it again: %s", refill.id, rejected.message)
            return
    refill.block_number = receipt.block_number
    if head - receipt.block_number + 1 < chain_settings.confirmations:
        return
    refill.gas_cost = receipt.gas_used * receipt.effective_gas_price
    refill.state = "confirmed" if receipt.status == 1 else "failed"
    await network_gas.book(session, reference=f"{AGGREGATE}:{refill.id}:gas", type="refill_gas",
                           currency=chain_settings.native, amount=refill.gas_cost, reference_kind=AGGREGATE,
                           reference_id=str(refill.id), tx_hash=refill.tx_hash)
    if refill.state == "failed":
        log.error("ALERT: refill %s was mined but reverted: %s", refill.id, refill.tx_hash)
    await audit.append(session, AGGREGATE, refill.id, f"{AGGREGATE}.{refill.state}",
                       {"tx_hash": refill.tx_hash, "block_number": receipt.block_number,
                        "gas_cost": str(refill.gas_cost)}, actor="treasury")
