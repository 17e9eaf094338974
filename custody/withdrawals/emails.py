"""The variables of the withdrawal product emails (``notifications.emails``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import AuditEvent
from custody import ledger
from custody.withdrawals.address_book import AGGREGATE, ENTRY_ADDED_EMAIL
from custody.withdrawals.models import AddressBookEntry, Withdrawal
from notifications.emails import Variables, variables_for


@variables_for("withdrawal.confirmed")
async def withdrawal_variables(session: AsyncSession, template: str, ref: uuid.UUID | None) -> Variables | None:
    """``amount``, ``currency``, ``chain``, ``tx_hash``."""
    withdrawal = await session.get(Withdrawal, ref)
    if withdrawal is None:
        return None
    unit = await ledger.currency(session, withdrawal.asset)
    return {"amount": unit.format(withdrawal.amount), "currency": unit.code, "chain": withdrawal.chain,
            "tx_hash": withdrawal.tx_hash or ""}


@variables_for(ENTRY_ADDED_EMAIL)
async def address_book_entry_variables(session: AsyncSession, template: str, ref: uuid.UUID | None) -> Variables | None:
    """``label``, ``chain``, ``address``, ``asset`` (empty: any asset of the chain), ``usable_at``
    (``2027-01-08 09:30 UTC``)."""
    entry = await session.get(AddressBookEntry, ref)
    if entry is not None:
        data: dict[str, Any] = {"label": entry.label, "chain": entry.chain, "address": entry.address,
                                "asset": entry.asset, "usable_at": entry.usable_at}
    else:
        # Removed before this job ran: the owner is told all the same (an address added and removed at
        # once is no less a sign of someone else in the account), from the event of the addition.
        data = await session.scalar(select(AuditEvent.data).where(
            AuditEvent.aggregate_type == AGGREGATE, AuditEvent.type == "address_book.entry_added",
            AuditEvent.data.contains({"entry_id": str(ref)})))
        if data is None:
            return None
        data = {**data, "usable_at": datetime.fromisoformat(data["usable_at"])}
    return {"label": data["label"], "chain": data["chain"], "address": data["address"], "asset": data.get("asset") or "",
            "usable_at": data["usable_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")}
