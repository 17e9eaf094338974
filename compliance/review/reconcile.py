"""Reconcile one ledger transfer with the chain: does the chain still show what the ledger booked?

A transfer names its business object (``reference_kind``/``reference_id``). Deposits and
withdrawals have an on-chain counterpart; anything else (escrow, sandbox credits, fees moved
between system accounts) is internal and has none: a 409 ``no_onchain_counterpart``. A withdrawal
with no mined transaction (not yet, or never) is a 409 ``not_on_chain``.

What is compared, each mismatch a difference naming the field, the ledger's value and the chain's:

- ``receipt``: the transaction is mined (the node has its receipt);
- ``status``: 1 for what the ledger booked as received or sent, 0 for a withdrawal it booked as reverted;
- ``block_number`` and ``block_hash``: where the ledger saw it, and that this block is still the
  canonical one at that height (a reorg replaces it);
- the transfer itself: ``asset`` (native coin or token contract), ``to_address``, ``from_address``
  (withdrawals: the hot wallet) and ``amount`` (decimal strings of the asset);
- ``confirmations``: once the ledger counts it final (a credited deposit, a confirmed withdrawal),
  the chain's depth must reach the confirmations that decision required;
- ``gas_cost`` (withdrawals): what the ledger charged as network fee against the receipt's.

A deposit the ledger reversed (``reorged``) matches when the chain no longer shows it. Each check is
recorded as an audit event (``transaction.reconciled``) on the transfer's review aggregate.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from compliance.review.service import AGGREGATE
from core import audit
from core.errors import AppError, Conflict, NotFound
from core.settings import ChainSettings, UnknownChain, chain_named
from custody import ledger
from custody.chains import BlockNotFound, Chain, TransactionTransfers
from custody.deposits.models import Deposit
from custody.ledger.models import LedgerAccount, LedgerPosting, LedgerTransfer
from custody.withdrawals.models import Withdrawal

NATIVE_LOG_INDEX = -1


class NoOnchainCounterpart(Conflict):
    code, message = "no_onchain_counterpart", "This transaction is internal to the platform: nothing on chain to compare."


class NotOnChain(Conflict):
    code, message = "not_on_chain", "This withdrawal has no mined transaction (not yet, or never: rolled back or refused)."


class ChainNotConfigured(AppError):
    status, code, message = 503, "chain_not_configured", "This server does not follow the transaction's chain."


@dataclass(frozen=True)
class Difference:
    field: str
    ledger: str | None
    chain: str | None
    note: str = ""


@dataclass
class Reconciliation:
    transfer_id: uuid.UUID
    kind: str  # deposit | withdrawal
    object_id: str
    chain: str
    tx_hash: str
    ledger_state: str
    confirmations: int | None = None  # the chain's depth of the transaction, if mined
    required_confirmations: int | None = None
    differences: list[Difference] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return not self.differences

    def differ(self, name: str, ledger_value: Any, chain_value: Any, note: str = "") -> None:
        self.differences.append(Difference(name, _text(ledger_value), _text(chain_value), note))

    def compare(self, name: str, ledger_value: Any, chain_value: Any, note: str = "") -> None:
        if _text(ledger_value) != _text(chain_value):
            self.differ(name, ledger_value, chain_value, note)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _same_address(left: str | None, right: str | None) -> bool:
    return (left or "").lower() == (right or "").lower()


async def reconcile(session: AsyncSession, transfer_id: uuid.UUID, chains: Mapping[str, Chain],
                    chain_settings: Sequence[ChainSettings], *, actor: uuid.UUID | None) -> Reconciliation:
    transfer = await session.get(LedgerTransfer, transfer_id)
    if transfer is None:
        raise NotFound("No such transaction.", code="transaction_not_found")
    if transfer.reference_kind == "deposit" and transfer.reference_id:
        result = await _deposit(session, transfer, chains, chain_settings)
    elif transfer.reference_kind == "withdrawal" and transfer.reference_id:
        result = await _withdrawal(session, transfer, chains, chain_settings)
    else:
        raise NoOnchainCounterpart(details={"type": transfer.type, "reference_kind": transfer.reference_kind})
    await audit.append(session, AGGREGATE, transfer_id, "transaction.reconciled", {
        "matches": result.matches, "chain": result.chain, "tx_hash": result.tx_hash,
        "confirmations": result.confirmations, "differences": [asdict(item) for item in result.differences]},
        actor=actor)
    return result


def _adapter(chains: Mapping[str, Chain], chain_settings: Sequence[ChainSettings], name: str
             ) -> tuple[Chain, ChainSettings]:
    adapter = chains.get(name)
    try:
        configured = chain_named(chain_settings, name)
    except UnknownChain:
        configured = None
    if adapter is None or configured is None:
        raise ChainNotConfigured(details={"chain": name})
    return adapter, configured


async def _canonical_hash(chain: Chain, number: int) -> str | None:
    try:
        return (await chain.block(number)).hash
    except BlockNotFound:
        return None  # the chain is shorter than the ledger's block now


async def _user_credit(session: AsyncSession, transfer_id: uuid.UUID) -> int:
    """What the transfer credited to customers (a deposit's credit)."""
    amounts = await session.scalars(
        select(LedgerPosting.amount).join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
        .where(LedgerPosting.transfer_id == transfer_id, LedgerAccount.owner_type == "user", LedgerPosting.amount > 0))
    return sum(int(amount) for amount in amounts)


def _event(found: TransactionTransfers, log_index: int) -> tuple[str | None, str | None, str | None, int] | None:
    """(token contract or None, from, to, value) of the native transfer or the log at ``log_index``."""
    if log_index == NATIVE_LOG_INDEX:
        value = found.value
        return None if value is None else (None, value.from_address, value.to_address, value.value)
    token = next((item for item in found.tokens if item.log_index == log_index), None)
    return None if token is None else (token.token, token.from_address, token.to_address, token.value)


def _compare_asset(result: Reconciliation, configured: ChainSettings, asset: str, token: str | None) -> None:
    expected = configured.tokens.get(asset)
    if token is None and asset != configured.native:
        result.differ("asset", f"{asset} ({expected})", configured.native, "the chain moved its native coin")
    elif token is not None and not _same_address(token, expected):
        result.differ("asset", f"{asset} ({expected or 'native'})", token, "another token contract")


async def _deposit(session: AsyncSession, transfer: LedgerTransfer, chains: Mapping[str, Chain],
                   chain_settings: Sequence[ChainSettings]) -> Reconciliation:
    deposit = (await session.execute(select(
        Deposit.id, Deposit.chain, Deposit.tx_hash, Deposit.log_index, Deposit.block_number, Deposit.block_hash,
        Deposit.to_address, Deposit.asset, Deposit.amount, Deposit.state, Deposit.required_confirmations,
    ).where(Deposit.id == uuid.UUID(transfer.reference_id)))).first()
    if deposit is None:
        raise NoOnchainCounterpart(details={"type": transfer.type, "reference_kind": "deposit"})
    chain, configured = _adapter(chains, chain_settings, deposit.chain)
    unit = await ledger.currency(session, deposit.asset)
    result = Reconciliation(transfer.id, "deposit", str(deposit.id), deposit.chain, deposit.tx_hash, deposit.state,
                            required_confirmations=deposit.required_confirmations)
    found = await chain.transaction_transfers(deposit.tx_hash)
    head = await chain.head()
    canonical = await _canonical_hash(chain, deposit.block_number)
    if found is not None:
        result.confirmations = max(head - found.receipt.block_number + 1, 0)
    if deposit.state == "reorged":
        # The ledger reversed it: it must not be on the chain any more.
        if found is not None and found.receipt.status == 1:
            result.differ("receipt", None, f"mined in block {found.receipt.block_number}",
                          "the ledger reversed this deposit, but the chain shows it")
        return result
    if found is None:
        result.differ("receipt", f"mined in block {deposit.block_number}", None, "the chain has no such transaction")
    result.compare("block_hash", deposit.block_hash, canonical,
                   "" if canonical == deposit.block_hash else "the ledger's block is no longer canonical")
    if found is None:
        return result
    receipt = found.receipt
    result.compare("status", 1, receipt.status)
    result.compare("block_number", deposit.block_number, receipt.block_number)
    event = _event(found, deposit.log_index)
    if event is None:
        result.differ("event", "native transfer" if deposit.log_index == NATIVE_LOG_INDEX
                      else f"log {deposit.log_index}", None, "the transaction moves nothing there")
        return result
    token, _sender, recipient, value = event
    _compare_asset(result, configured, deposit.asset, token)
    if not _same_address(recipient, deposit.to_address):
        result.differ("to_address", deposit.to_address, recipient)
    booked = await _user_credit(session, transfer.id) if transfer.type == "deposit" else int(deposit.amount)
    result.compare("amount", unit.format(booked), unit.format(value))
    if deposit.state == "credited" and result.confirmations is not None \
            and result.confirmations < deposit.required_confirmations:
        result.differ("confirmations", deposit.required_confirmations, result.confirmations,
                      "credited with fewer confirmations on chain than required")
    return result


async def _withdrawal(session: AsyncSession, transfer: LedgerTransfer, chains: Mapping[str, Chain],
                      chain_settings: Sequence[ChainSettings]) -> Reconciliation:
    withdrawal = (await session.execute(select(
        Withdrawal.id, Withdrawal.chain, Withdrawal.asset, Withdrawal.to_address, Withdrawal.amount, Withdrawal.state,
        Withdrawal.hot_wallet, Withdrawal.tx_hash, Withdrawal.block_number, Withdrawal.gas_cost,
        Withdrawal.failure_reason,
    ).where(Withdrawal.id == uuid.UUID(transfer.reference_id)))).first()
    if withdrawal is None:
        raise NoOnchainCounterpart(details={"type": transfer.type, "reference_kind": "withdrawal"})
    if withdrawal.tx_hash is None:
        raise NotOnChain(details={"state": withdrawal.state})
    chain, configured = _adapter(chains, chain_settings, withdrawal.chain)
    unit = await ledger.currency(session, withdrawal.asset)
    result = Reconciliation(transfer.id, "withdrawal", str(withdrawal.id), withdrawal.chain, withdrawal.tx_hash,
                            withdrawal.state, required_confirmations=configured.confirmations)
    found = await chain.transaction_transfers(withdrawal.tx_hash)
    if found is None:
        result.differ("receipt", f"mined in block {withdrawal.block_number}", None, "the chain has no such transaction")
        return result
    receipt = found.receipt
    result.confirmations = max(await chain.head() - receipt.block_number + 1, 0)
    canonical = await _canonical_hash(chain, receipt.block_number)
    result.compare("block_hash", receipt.block_hash, canonical,
                   "" if canonical == receipt.block_hash else "the receipt's block is no longer canonical")
    result.compare("block_number", withdrawal.block_number, receipt.block_number)
    reverted = withdrawal.state == "failed"
    result.compare("status", 0 if reverted else 1, receipt.status)
    if withdrawal.gas_cost is not None:  # in the chain's native coin
        native = await ledger.currency(session, configured.native)
        result.compare("gas_cost", native.format(int(withdrawal.gas_cost)),
                       native.format(receipt.gas_used * receipt.effective_gas_price))
    if not reverted:
        token_contract = configured.tokens.get(withdrawal.asset)
        if token_contract is None:
            event = _event(found, NATIVE_LOG_INDEX)
        else:
            moved = [item for item in found.tokens if _same_address(item.token, token_contract)]
            event = None if not moved else (moved[0].token, moved[0].from_address, moved[0].to_address,
                                            moved[0].value)
        if event is None:
            result.differ("event", f"{unit.format(int(withdrawal.amount))} {withdrawal.asset} to "
                          f"{withdrawal.to_address}", None, "the transaction moves nothing of the asset")
        else:
            token, sender, recipient, value = event
            _compare_asset(result, configured, withdrawal.asset, token)
            if not _same_address(sender, withdrawal.hot_wallet):
                result.differ("from_address", withdrawal.hot_wallet, sender)
            if not _same_address(recipient, withdrawal.to_address):
                result.differ("to_address", withdrawal.to_address, recipient)
            result.compare("amount", unit.format(int(withdrawal.amount)), unit.format(value))
    if withdrawal.state == "confirmed" and result.confirmations < configured.confirmations:
        result.differ("confirmations", configured.confirmations, result.confirmations,
                      "confirmed with fewer confirmations on chain than required")
    return result
