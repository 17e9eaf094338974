"""Deposit events from external watchers: believed only once the chain itself confirms them.

An event names a transfer (native: the transaction's own value, ``log_index = -1``; a token: the
``Transfer`` log at ``log_index``). Before anything is recorded, the node is asked for the
transaction and its receipt: it must be mined in that very block, have succeeded, and move that
amount of that asset to that deposit address. Anything else is refused (``event_mismatch``) and
the refusal is itself audited. A verified event is recorded exactly as the scanner records what
it reads, under the same unique key — the log's index within its transaction, which the receipt
gives (``log_index``, the log's place in the block, is only what the watcher names) — so the same
event from both, or twice, is one deposit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import InvalidInput
from core.settings import ChainSettings, chain_named
from custody import ledger
from custody.chains import Chain, TransactionTransfers
from custody.chains.evm_batch import checksum
from custody.deposits import senders
from custody.deposits.models import (
    CONFIRMING,
    NATIVE_LOG_INDEX,
    SEEN,
    Deposit,
    deposit_key,
)
from custody.deposits.queries import DepositItem
from custody.deposits.states import WAITING
from custody.deposits.tracking import (
    Announcements,
    Observed,
    deposit_owners,
    record,
    request_credits,
)


@dataclass(frozen=True)
class ChainEvent:
    """What a watcher says happened (hashes lowercase hex, the address EIP-55, the amount in major units)."""

    chain: str
    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str
    to_address: str
    asset: str
    amount: str


@dataclass(frozen=True)
class Ingested:
    item: DepositItem
    created: bool


# Refused events are audited under the event's key (a UUID of it: the key itself is too long an id).
EVENT_AGGREGATE = "deposit_event"


def event_aggregate_id(chain: str, tx_hash: str, log_index: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, deposit_key(chain, tx_hash.lower(), log_index))


class EventMismatch(InvalidInput):
    code, message = "event_mismatch", "The chain does not show this event."
    keep_changes = True  # the refusal's audit event is committed with the 422


def _reasons(event: ChainEvent, amount: int, token: str | None, found: TransactionTransfers | None) -> list[str]:
    """What the chain contradicts in ``event`` (empty when it shows exactly this transfer)."""
    if found is None:
        return ["transaction_not_mined"]
    receipt, reasons = found.receipt, []
    if receipt.status != 1:
        reasons.append("transaction_failed")
    if receipt.block_hash != event.block_hash:
        reasons.append("block_hash_differs")
    if receipt.block_number != event.block_number:
        reasons.append("block_number_differs")
    if token is None:
        value = found.value
        if value is None:
            return [*reasons, "no_native_value"]
        moved = (value.to_address, value.value)
    else:
        log = next((item for item in found.tokens if item.log_index == event.log_index), None)
        if log is None:
            return [*reasons, "log_not_found"]
        if log.token != token:
            reasons.append("token_differs")
        moved = (log.to_address, log.value)
    if moved[0] != event.to_address:
        reasons.append("recipient_differs")
    if moved[1] != amount:
        reasons.append("amount_differs")
    return reasons


async def ingest(session: AsyncSession, event: ChainEvent, *, chains: Sequence[ChainSettings],
                 adapters: Mapping[str, Chain], actor: uuid.UUID | str) -> Ingested:
    """Verify ``event`` against its chain and record it; the same event again returns the same deposit.

    Raises ``InvalidInput`` for what cannot be an event of ours (unknown chain or asset, a bad
    amount) and ``EventMismatch`` (422, audited) for what the chain does not show.
    """
    settings = chain_named([chain for chain in chains if chain.name in adapters], event.chain)
    asset = settings.asset(event.asset)
    # The forms the chain adapter and the database use: lowercase hashes, EIP-55 addresses.
    event = replace(event, tx_hash=event.tx_hash.lower(), block_hash=event.block_hash.lower(),
                    to_address=checksum(event.to_address), asset=asset)
    native = event.asset == settings.native
    if native != (event.log_index == NATIVE_LOG_INDEX):
        raise InvalidInput(f"A native transfer has log_index {NATIVE_LOG_INDEX}; a token transfer names its log.",
                           code="invalid_log_index", details={"asset": event.asset, "log_index": event.log_index})
    amount = (await ledger.currency(session, event.asset)).parse(event.amount)
    token = None if native else checksum(settings.tokens[event.asset])  # settings may spell it in any case

    adapter = adapters[event.chain]
    found = await adapter.transaction_transfers(event.tx_hash)
    reasons = _reasons(event, amount, token, found)
    owners = await deposit_owners(session, event.chain, [event.to_address])
    if event.to_address not in owners:
        reasons.append("not_a_deposit_address")
    if found is not None and await senders.is_internal(session, event.chain, _sender(found, event), event.tx_hash):
        reasons.append("internal_transfer")  # a gas top-up or an internal move: never a customer's deposit
    if reasons:
        await audit.append(session, EVENT_AGGREGATE, event_aggregate_id(event.chain, event.tx_hash, event.log_index),
                           "deposit.event_mismatch", {**asdict(event), "reasons": reasons}, actor=actor)
        raise EventMismatch(details={"reasons": reasons})

    seen = Observed(chain=event.chain, tx_hash=event.tx_hash, log_index=event.log_index,
                    block_number=event.block_number, block_hash=event.block_hash,
                    from_address=None if found is None else _sender(found, event), to_address=event.to_address,
                    user_id=owners[event.to_address], asset=event.asset, amount=amount,
                    tx_log_index=None if native or found is None else found.receipt.log_position(event.log_index))
    announcements = Announcements()
    (recorded,) = await record(session, [seen], announcements, required_confirmations=settings.confirmations,
                               source="ingest")
    deposit = await session.get(Deposit, recorded.deposit_id)  # locked by ``record``
    assert deposit is not None
    if deposit.state in WAITING:
        # Counted from the node's head: the scanner may be behind (or down), and the receipt
        # above proves the block is on the chain the node follows.
        counted = max(0, await adapter.head() - event.block_number + 1)
        if counted > deposit.confirmations:
            deposit.confirmations = counted
            if deposit.state == SEEN and counted >= 2:
                deposit.state = CONFIRMING
        if deposit.confirmations >= deposit.required_confirmations and deposit.credit_requested_at is None:
            await session.flush()
            await request_credits(session, [deposit.id])
            await session.refresh(deposit)
    await announcements.write(session, actor=str(actor))
    unit = await ledger.currency(session, deposit.asset)
    return Ingested(DepositItem(deposit, unit, deposit.confirmations), created=recorded.outcome == "new")


def _sender(found: TransactionTransfers, event: ChainEvent) -> str | None:
    if event.log_index == NATIVE_LOG_INDEX:
        return found.value.from_address if found.value else None
    log = next((item for item in found.tokens if item.log_index == event.log_index), None)
    return log.from_address if log else None
