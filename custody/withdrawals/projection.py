"""The withdrawal as a pure fold over its audit events, registered for the admin replay.

Every step records the state it reached with the withdrawal's chain, asset and amount
(``service.record_step``); the request records the owner (its actor), destination, fee and the
approvals it needs. Nonces, transaction hashes and gas belong to the signing attempts, which
keep their own rows, and are not replayed here.

A user's address book (``address_book``, its id the user's) folds out of its entries added and removed
and its allowlist turned on and off: the owner's choice and, turned off, from when (``off_at``: the
cooling-off), as stored — whether a turn-off is still pending is a matter of the clock, not of the fold.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.time import rfc3339
from custody import ledger
from custody.withdrawals.models import AddressBook, AddressBookEntry, Withdrawal

State = dict[str, Any]
STEP_FIELDS = ("state", "chain", "asset", "amount")


def reduce_withdrawal(state: State | None, event: dict[str, Any]) -> State | None:
    data = event["data"]
    state = dict(state or {})
    if event["type"] == "withdrawal.requested":
        state.update(user_id=event["actor"], to_address=data["to_address"], fee=data["fee"],
                     approvals_required=data["approvals_required"])
    state.update({field: data[field] for field in STEP_FIELDS if field in data})
    return state


async def stored_withdrawal(session: AsyncSession, aggregate_id: str) -> State | None:
    withdrawal = await audit.stored_row(session, Withdrawal, aggregate_id)
    if withdrawal is None:
        return None
    unit = await ledger.currency(session, withdrawal.asset)
    return {
        "user_id": str(withdrawal.user_id), "to_address": withdrawal.to_address, "fee": unit.format(withdrawal.fee),
        "approvals_required": withdrawal.approvals_required, "state": withdrawal.state, "chain": withdrawal.chain,
        "asset": withdrawal.asset, "amount": unit.format(withdrawal.amount),
    }

audit.register_projection("withdrawal", reduce_withdrawal, stored_withdrawal)


ENTRY_FIELDS = ("chain", "asset", "address", "label", "usable_at")


def reduce_address_book(state: State | None, event: dict[str, Any]) -> State | None:
    data = event["data"]
    state = {"allowlist_enabled": False, "allowlist_off_at": None, "entries": {}, **(state or {})}
    match event["type"]:
        case "address_book.entry_added":
            # An event from before entries had an asset lacks the key: any asset, as then.
            entry = {field: data.get(field) for field in ENTRY_FIELDS}
            state["entries"] = {**state["entries"], data["entry_id"]: entry}
        case "address_book.entry_removed":
            state["entries"] = {key: value for key, value in state["entries"].items() if key != data["entry_id"]}
        case "address_book.allowlist_enabled":
            state["allowlist_enabled"], state["allowlist_off_at"] = True, None
        case "address_book.allowlist_disabled":  # no off_at before turning off had a cooling-off: at once
            state["allowlist_enabled"], state["allowlist_off_at"] = False, data.get("off_at")
    return state


async def stored_address_book(session: AsyncSession, aggregate_id: str) -> State | None:
    try:
        user_id = uuid.UUID(aggregate_id)
    except ValueError:
        return None
    book = await session.get(AddressBook, user_id)
    entries = list(await session.scalars(select(AddressBookEntry).where(AddressBookEntry.user_id == user_id)))
    if book is None and not entries:
        return None
    off_at = None if book is None or book.allowlist_off_at is None else rfc3339(book.allowlist_off_at)
    return {"allowlist_enabled": book is not None and book.allowlist_enabled, "allowlist_off_at": off_at,
            "entries": {str(entry.id): {"chain": entry.chain, "asset": entry.asset, "address": entry.address,
                                        "label": entry.label, "usable_at": rfc3339(entry.usable_at)}
                        for entry in entries}}

audit.register_projection("address_book", reduce_address_book, stored_address_book)
