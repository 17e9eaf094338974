"""Transfers whose sender is one of the platform's own addresses are internal movements, never deposits.

The hot wallet tops up a deposit address with the gas of its token sweep; crediting that as a
customer deposit would hand the customer the platform's money. So before anything is recorded as a
deposit, its sender is checked against the platform's sending addresses on that chain:

- every address the platform ever sent a transaction from: each gets its nonce row
  (``hot_wallet_nonces``: the hot wallets, the retired one, deposit addresses being swept) before
  its first signature, so the set is complete before any of its transactions can be mined;
- every assigned deposit address (only the platform holds their keys).

One exception keeps customers whole: a customer's withdrawal paid from the hot wallet to another
customer's deposit address is that customer's deposit (the payer's balance went down; the
payee's must go up), recognised by its transaction hash among the withdrawals' signed attempts.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from custody.addresses.models import DepositAddress
from custody.deposits.tracking import Observed
from custody.withdrawals.models import HotWalletNonce, Withdrawal, WithdrawalAttempt


async def platform_senders(session: AsyncSession, chain: str, candidates: Collection[str]) -> set[str]:
    """Which of ``candidates`` (EIP-55) are addresses on ``chain`` that only the platform sends from."""
    if not candidates:
        return set()
    wanted = list(candidates)
    # One round trip for both sets: the scanner asks once per transaction it commits.
    return set(await session.scalars(union_all(
        select(HotWalletNonce.address).where(HotWalletNonce.chain == chain, HotWalletNonce.address.in_(wanted)),
        select(DepositAddress.address).where(DepositAddress.chain == chain, DepositAddress.address.in_(wanted),
                                             DepositAddress.user_id.is_not(None)))))


async def withdrawal_payments(session: AsyncSession, chain: str, tx_hashes: Collection[str]) -> set[str]:
    """Which of ``tx_hashes`` are customers' withdrawals (any of their attempts) on ``chain``."""
    if not tx_hashes:
        return set()
    rows = await session.scalars(select(WithdrawalAttempt.tx_hash).join(
        Withdrawal, Withdrawal.id == WithdrawalAttempt.withdrawal_id).where(
        Withdrawal.chain == chain, WithdrawalAttempt.tx_hash.in_(list(tx_hashes))))
    return set(rows)


async def is_internal(session: AsyncSession, chain: str, sender: str | None, tx_hash: str) -> bool:
    """Whether a transfer from ``sender`` in ``tx_hash`` is an internal movement rather than a deposit."""
    if sender is None or not await platform_senders(session, chain, [sender]):
        return False
    return not await withdrawal_payments(session, chain, [tx_hash])


async def split(session: AsyncSession, chain: str, observed: Sequence[Observed]) -> tuple[list[Observed],
                                                                                        list[Observed]]:
    """``(deposits, internal movements)`` of what the scanner saw arrive at deposit addresses."""
    ours = await platform_senders(session, chain, {item.from_address for item in observed if item.from_address})
    internal = [item for item in observed if item.from_address in ours]
    if internal:
        paid = await withdrawal_payments(session, chain, {item.tx_hash for item in internal})
        internal = [item for item in internal if item.tx_hash not in paid]
    moved = {id(item) for item in internal}
    return [item for item in observed if id(item) not in moved], internal
