"""Hot wallet nonces, assigned from a row locked in PostgreSQL.

Never from the node's pending count: two workers asking the node at once would both hear "7".
The row ``hot_wallet_nonces(chain, address)`` is locked (``FOR UPDATE``) for the assignment, so
concurrent withdrawals get consecutive nonces in commit order. It is created on first use from the
node's *mined* count (the wallet's history before VirtuOZ managed it). A nonce given back by a
withdrawal the signer refused (nothing was signed for it) is taken again first, so no gap stays —
or, when later nonces are already signed and cannot wait for the next withdrawal, taken at once by
a filler (``custody.withdrawals.fillers``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.time import utcnow
from custody.withdrawals.models import HotWalletNonce, ReleasedNonce


async def assign_nonce(session: AsyncSession, chain: str, address: str,
                       mined_count: Callable[[], Awaitable[int]]) -> int:
    """The nonce for the next transaction of ``address`` on ``chain``; holds the wallet's row lock until commit."""
    row = await _locked(session, chain, address)
    if row is None:
        start = await mined_count()
        await session.execute(insert(HotWalletNonce).values(chain=chain, address=address, next_nonce=start)
                              .on_conflict_do_nothing())
        row = await _locked(session, chain, address)
        assert row is not None
    released = await session.scalar(select(ReleasedNonce.nonce).where(
        ReleasedNonce.chain == chain, ReleasedNonce.address == address).order_by(ReleasedNonce.nonce).limit(1))
    if released is not None:
        await session.execute(delete(ReleasedNonce).where(
            ReleasedNonce.chain == chain, ReleasedNonce.address == address, ReleasedNonce.nonce == released))
        return released
    nonce = row.next_nonce
    row.next_nonce = nonce + 1
    row.updated_at = utcnow()
    await session.flush()
    return nonce


async def release_nonce(session: AsyncSession, chain: str, address: str, nonce: int) -> None:
    """Give ``nonce`` back: only when the signer guarantees nothing was signed at it for its withdrawal."""
    await _locked(session, chain, address)
    await session.execute(insert(ReleasedNonce).values(chain=chain, address=address, nonce=nonce)
                          .on_conflict_do_nothing())


async def take_released(session: AsyncSession, chain: str, address: str, nonce: int) -> bool:
    """Take back a released ``nonce`` for a filler (under the wallet's row lock); False if a withdrawal took it."""
    await _locked(session, chain, address)
    taken = await session.execute(delete(ReleasedNonce).where(
        ReleasedNonce.chain == chain, ReleasedNonce.address == address, ReleasedNonce.nonce == nonce))
    return bool(taken.rowcount)  # type: ignore[attr-defined]


async def _locked(session: AsyncSession, chain: str, address: str) -> HotWalletNonce | None:
    return await session.scalar(select(HotWalletNonce).where(
        HotWalletNonce.chain == chain, HotWalletNonce.address == address).with_for_update()
        .execution_options(populate_existing=True))
