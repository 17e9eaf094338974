"""Moving a chain's balance off the hot wallet of before: `virtuoz hot-wallet migrate --chain NAME`.

Until the hot wallet got a hardened account of its own, it was ``m/44'/60'/{account}'/1/0``, a child
of the exported deposit xpub (``custody.hd.retired_hot_wallet_address``). Once every withdrawal it
signed is final, one transfer per asset moves its balance to the new hot wallet: tokens first (they
need its native coin for gas), then the native coin less the gas of them all. The signer signs
nothing else from that wallet (``signer.service``), and these transfers count against no limit:
the money stays in custody. Their gas is a platform cost (``fees`` → ``network_fees``).

Each transfer is an aggregate ``hot_wallet_move`` of the audit log, whose id is the one the signer
journals it under: ``requested`` (by the operator: the transaction and its authorization) →
``signed`` or ``refused`` (the custody worker, on the signer's verified reply) → ``broadcast`` →
``confirmed`` or ``failed`` (the command, from the receipt). The events are the record and the
state: a run resumes what an earlier one left, and asks for new transfers only when none is pending.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core import audit
from core.audit import AuditEvent
from core.settings import ChainSettings, Settings
from core.sign_requests import (
    REFUSED_REPLY,
    SIGN_ACTOR,
    SIGNED_REPLY,
    SIGNER_QUEUE,
    UnsignedTx,
    request_digest,
)
from custody import ledger
from custody.chains import EvmChain
from custody.chains.transactions import Fees, SignedTxMismatch, check_signed, payment_tx
from custody.ledger import AccountRef
from custody.withdrawals import replies
from custody.withdrawals.authorization import authorize, request_key
from custody.withdrawals.models import Withdrawal
from custody.withdrawals.nonces import assign_nonce, release_nonce

log = logging.getLogger(__name__)

AGGREGATE = "hot_wallet_move"
SIGN = jobs.external(SIGN_ACTOR, queue=SIGNER_QUEUE)
PENDING = ("requested", "signed", "broadcast")
STATES = frozenset({*PENDING, "refused", "confirmed", "failed"})
IN_FLIGHT = ("signing", "signed", "broadcast")


class NothingToMove(Exception):
    """The retired wallet cannot pay (or has nothing): the message says what the operator can do."""


@dataclass(frozen=True)
class Move:
    id: str
    chain: str
    asset: str
    amount: int  # minor units
    unsigned_tx: str
    authorization: str
    state: str
    raw_tx: str | None = None
    tx_hash: str | None = None

    @property
    def unsigned(self) -> UnsignedTx:
        return UnsignedTx.parse(self.unsigned_tx)

    @property
    def request_digest(self) -> str:
        return request_digest(self.unsigned_tx)


def _folded(events: Sequence[AuditEvent]) -> Move:
    first = events[0].data
    move = Move(events[0].aggregate_id, first["chain"], first["asset"], int(first["amount"]), first["unsigned_tx"],
                first["authorization"], "requested")
    for event in events[1:]:
        state = event.type.removeprefix(f"{AGGREGATE}.")
        if state in STATES:  # an alert (a rejected reply) is recorded, it moves nothing
            move = replace(move, state=state, raw_tx=event.data.get("raw_tx", move.raw_tx),
                           tx_hash=event.data.get("tx_hash", move.tx_hash))
    return move


async def moves(session: AsyncSession, chain: str) -> list[Move]:
    """Every transfer ever asked for on ``chain``, in the order asked."""
    events = list(await session.scalars(select(AuditEvent).where(AuditEvent.aggregate_type == AGGREGATE)
                                        .order_by(AuditEvent.id)))
    by_move: dict[str, list[AuditEvent]] = {}
    for event in events:
        by_move.setdefault(event.aggregate_id, []).append(event)
    return [move for move in map(_folded, by_move.values()) if move.chain == chain]


async def _move(session: AsyncSession, move_id: object) -> Move | None:
    events = await audit.events_of(session, AGGREGATE, str(move_id)[:80])
    return _folded(events) if events else None


async def is_move(session: AsyncSession, move_id: object) -> bool:
    found = await session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.aggregate_type == AGGREGATE, AuditEvent.aggregate_id == str(move_id)[:80]))
    return bool(found)


async def withdrawals_in_flight(session: AsyncSession, chain: str, wallet: str) -> int:
    return await session.scalar(select(func.count()).select_from(Withdrawal).where(
        Withdrawal.chain == chain, Withdrawal.hot_wallet == wallet, Withdrawal.state.in_(IN_FLIGHT))) or 0


async def request(session: AsyncSession, settings: Settings, chain_settings: ChainSettings, chain: EvmChain,
                  retired: str, new: str, operator: str) -> list[Move]:
    """Ask the signer for the transfers that empty ``retired`` into ``new``; sent after commit."""
    head = await chain.head()
    tokens = {symbol: address for symbol, address in chain_settings.tokens.items()}
    balances = await chain.balances([retired], list(tokens.values()), head)
    fees = Fees.quote(await chain.fees(), settings.withdrawal_min_priority_fee_wei)
    token_moves = [(symbol, address, balances.get((retired, address), 0)) for symbol, address in tokens.items()]
    token_moves = [item for item in token_moves if item[2] > 0]
    gas = settings.withdrawal_gas_limit_token * len(token_moves) + settings.withdrawal_gas_limit_native
    native = balances.get((retired, None), 0) - gas * fees.max_fee_per_gas
    if native <= 0 and token_moves:
        raise NothingToMove(f"{retired} holds too little {chain_settings.native} to pay the gas of its token "
                            f"transfers ({gas * fees.max_fee_per_gas} minor units at today's fees): send it that much")
    planned = [*((symbol, address, amount) for symbol, address, amount in token_moves),
               *([(chain_settings.native, None, native)] if native > 0 else [])]
    created = []
    for asset, token, amount in planned:
        nonce = await assign_nonce(session, chain_settings.name, retired, lambda: chain.mined_nonce(retired))
        gas_limit = settings.withdrawal_gas_limit_token if token else settings.withdrawal_gas_limit_native
        unsigned = payment_tx(chain_id=chain_settings.chain_id, sender=retired, nonce=nonce, destination=new,
                              amount=amount, token=token, fees=fees, gas=gas_limit)
        move_id, text = str(uuid.uuid4()), unsigned.canonical()
        move = Move(move_id, chain_settings.name, asset, amount, text, authorize(request_key(settings), move_id, text),
                    "requested")
        await audit.append(session, AGGREGATE, move_id, f"{AGGREGATE}.requested", {
            "chain": move.chain, "from": retired, "to": new, "asset": asset, "amount": str(amount), "nonce": nonce,
            "unsigned_tx": text, "request_digest": move.request_digest, "authorization": move.authorization},
            actor=operator)
        send(session, move)
        created.append(move)
    return created


def send(session: AsyncSession, move: Move) -> None:
    jobs.send_after_commit(session, SIGN, move.id, move.unsigned_tx, move.authorization)


async def record(session: AsyncSession, move: Move, state: str, data: dict[str, Any], actor: str) -> None:
    await audit.append(session, AGGREGATE, move.id, f"{AGGREGATE}.{state}", data, actor=actor)


# --- the signer's replies (the custody worker) --------------------------------------------------

async def on_signed(session: AsyncSession, settings: Settings, move_id: str, digest: str, raw_tx: str, tx_hash: str,
                    signature: str | None) -> None:
    if not await replies.verified(session, settings, SIGNED_REPLY, move_id, digest, (raw_tx, tx_hash), signature):
        return
    move = await _move(session, move_id)
    if move is None or move.state != "requested" or digest != move.request_digest:
        return  # answered already, or not the request this move made
    try:
        checked = check_signed(raw_tx, move.unsigned)
    except SignedTxMismatch as mismatch:
        log.error("ALERT: hot wallet move %s: signed reply rejected: %s", move.id, mismatch)
        await record(session, move, "signed_reply_rejected", {"reason": str(mismatch)}, "signer")
        return
    await record(session, move, "signed", {"raw_tx": raw_tx, "tx_hash": checked}, "signer")


async def on_refused(session: AsyncSession, settings: Settings, move_id: str, digest: str, reason: str, message: str,
                     signature: str | None) -> None:
    if not await replies.verified(session, settings, REFUSED_REPLY, move_id, digest, (reason, message), signature):
        return
    move = await _move(session, move_id)
    if move is None or move.state != "requested" or digest != move.request_digest:
        return
    log.error("ALERT: the signer refused hot wallet move %s: %s (%s)", move.id, reason, message)
    await record(session, move, "refused", {"reason": reason, "message": message}, "signer")
    if reason not in ("nonce_taken", "withdrawal_signed_elsewhere", "replacement_not_allowed"):
        unsigned = move.unsigned  # nothing signed at its nonce: the next transaction of that wallet takes it
        await release_nonce(session, move.chain, unsigned.sender, unsigned.nonce)


# --- settlement (the command) -------------------------------------------------------------------

async def settle(session: AsyncSession, chain_settings: ChainSettings, move: Move, status: int, gas_cost: int,
                 block: int, operator: str) -> None:
    if gas_cost > 0:
        await ledger.move(session, reference=f"{AGGREGATE}:{move.id}:gas", type="withdrawal_gas",
                          source=AccountRef.system(ledger.FEES), destination=AccountRef.system("network_fees"),
                          currency=chain_settings.native, amount=gas_cost, reference_kind=AGGREGATE,
                          reference_id=move.id, tx_hash=move.tx_hash)
    await record(session, move, "confirmed" if status == 1 else "failed",
                 {"tx_hash": move.tx_hash, "block_number": block, "gas_cost": str(gas_cost)}, operator)
