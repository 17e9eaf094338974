"""The variables of the escrow product emails (``notifications.emails``)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from custody import ledger
from custody.escrow.models import EscrowContract
from notifications.emails import Variables, variables_for


@variables_for("escrow.funded", "escrow.released", "escrow.disputed")
async def escrow_variables(session: AsyncSession, template: str, ref: uuid.UUID | None) -> Variables | None:
    """``escrow_title``, ``amount`` (for ``escrow.released``: what the seller received, the
    contract amount less the platform fee), ``currency``."""
    contract = await session.get(EscrowContract, ref)
    if contract is None:
        return None
    unit = await ledger.currency(session, contract.currency)
    amount = contract.amount - (contract.fee or 0) if template == "escrow.released" else contract.amount
    return {"escrow_title": contract.title, "amount": unit.format(amount), "currency": unit.code}
