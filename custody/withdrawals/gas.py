"""What the hot wallet paid the network for a mined transaction: a platform cost, booked against the fee income."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from custody import ledger
from custody.ledger import AccountRef

NETWORK_FEES = "network_fees"


async def book(session: AsyncSession, *, reference: str, type: str, currency: str, amount: int, reference_kind: str,
               reference_id: str, tx_hash: str | None) -> None:
    """``fees`` → ``network_fees``, ``amount`` wei of the chain's native coin (nothing when it is 0)."""
    if amount > 0:
        await ledger.move(session, reference=reference, type=type, source=AccountRef.system(ledger.FEES),
                          destination=AccountRef.system(NETWORK_FEES), currency=currency, amount=amount,
                          reference_kind=reference_kind, reference_id=reference_id, tx_hash=tx_hash)
