"""The customer's withdrawal address book, and the allowlist that limits withdrawals to it.

An entry is a destination the user saved: a chain, an address in the form a withdrawal request stores
(``destinations.destination_address``: EIP-55, never the zero address) and a label; one per chain and
address. With the allowlist on, a withdrawal request goes only to an entry of the caller's own book for
its chain that is usable — its ``usable_at`` (added + ``VIRTUOZ_ADDRESS_BOOK_COOLING_HOURS``) has
passed — and is refused otherwise, right after the step-up (``service.request``), holding nothing.

What loosens the rule takes the same step-up as a withdrawal (a fresh TOTP code when the user has MFA
on): adding an entry and turning the allowlist off. What tightens it is immediate: turning it on,
removing an entry. The cooling-off is what a stolen session that also has a code runs into: it can add
the thief's address, but cannot withdraw to it before the owner, notified of the change, has had time
to react.

Changes to a user's book are serialized by a transaction-scoped lock per user, taken before the
step-up (which locks the user row) so that every change takes the two in one order; each change is an
event of the ``address_book`` aggregate (its id is the user's) in the same transaction, and a
notification. The fold of those events is ``projection.reduce_address_book``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.db import advisory_lock
from core.errors import Conflict, Forbidden, NotFound
from core.pagination import keyset_before, next_page
from core.settings import Settings
from core.time import rfc3339, utcnow
from custody.withdrawals.destinations import destination_address
from custody.withdrawals.models import AddressBook, AddressBookEntry
from identity.service import require_step_up
from notifications import service as notifications

AGGREGATE = "address_book"


class AddressNotAllowlisted(Forbidden):
    code, message = "address_not_allowlisted", ("The withdrawal allowlist is on and this address is not a usable "
                                                "entry of your address book for this chain.")


class AddressAlreadyInBook(Conflict):
    code, message = "address_already_in_book", "This address is in your address book for this chain already."


class EntryNotFound(NotFound):
    code, message = "address_book_entry_not_found", "No such address book entry."


@dataclass(frozen=True)
class BookPage:
    allowlist_enabled: bool
    items: list[AddressBookEntry]
    next_cursor: str | None


def usable(entry: AddressBookEntry) -> bool:
    return entry.usable_at <= utcnow()


async def _allowlist_enabled(session: AsyncSession, user_id: uuid.UUID) -> bool:
    return bool(await session.scalar(select(AddressBook.allowlist_enabled).where(AddressBook.user_id == user_id)))


async def _lock_book(session: AsyncSession, user_id: uuid.UUID) -> None:
    # A lock, not a row: it writes nothing, so a wrong code (committed with its audit event) leaves no trace here.
    await advisory_lock(session, f"address_book.changes:{user_id}")


async def _record(session: AsyncSession, user_id: uuid.UUID, event: str, data: dict[str, Any]) -> None:
    await audit.append(session, AGGREGATE, user_id, event, data, actor=user_id)
    # The owner hears of every change: a change they did not make is how they learn of a stolen session.
    await notifications.notify(session, user_id, event, data)


def _entry_data(entry: AddressBookEntry) -> dict[str, Any]:
    return {"entry_id": str(entry.id), "chain": entry.chain, "address": entry.address, "label": entry.label,
            "usable_at": rfc3339(entry.usable_at)}


async def page(session: AsyncSession, user_id: uuid.UUID, *, limit: int = 50, cursor: str | None = None) -> BookPage:
    """The caller's entries, newest first, and whether the allowlist is on."""
    query = (select(AddressBookEntry).where(AddressBookEntry.user_id == user_id)
             .order_by(AddressBookEntry.created_at.desc(), AddressBookEntry.id.desc()).limit(limit + 1))
    if cursor:
        query = query.where(keyset_before(cursor, AddressBookEntry.created_at, AddressBookEntry.id))
    items, next_cursor = next_page(list(await session.scalars(query)), limit)
    return BookPage(await _allowlist_enabled(session, user_id), items, next_cursor)


async def add(session: AsyncSession, settings: Settings, redis: Redis, user_id: uuid.UUID, *, chain: str,
              address: str, label: str, totp_code: str | None) -> AddressBookEntry:
    """422 for an unknown chain or a bad address, then the step-up (401, 429), then 409 for an address
    already in the book for the chain (checked under the book's lock: two adds at once cannot both pass)."""
    chain_name = settings.chain(chain).name
    normalised = destination_address(address, field="address")
    await _lock_book(session, user_id)
    await require_step_up(session, settings, redis, user_id, totp_code)
    existing = await session.scalar(select(AddressBookEntry.id).where(
        AddressBookEntry.user_id == user_id, AddressBookEntry.chain == chain_name,
        AddressBookEntry.address == normalised))
    if existing is not None:
        raise AddressAlreadyInBook(details={"chain": chain_name, "address": normalised, "entry_id": str(existing)})
    now = utcnow()
    entry = AddressBookEntry(id=uuid.uuid4(), user_id=user_id, chain=chain_name, address=normalised, label=label,
                             created_at=now, usable_at=now + settings.address_book_cooling)
    session.add(entry)
    await session.flush()
    await _record(session, user_id, "address_book.entry_added", _entry_data(entry))
    return entry


async def remove(session: AsyncSession, user_id: uuid.UUID, entry_id: uuid.UUID) -> None:
    """Someone else's entry does not exist, as far as the caller can tell (404)."""
    await _lock_book(session, user_id)
    entry = await session.scalar(select(AddressBookEntry).where(AddressBookEntry.id == entry_id,
                                                                AddressBookEntry.user_id == user_id))
    if entry is None:
        raise EntryNotFound()
    data = _entry_data(entry)
    await session.execute(delete(AddressBookEntry).where(AddressBookEntry.id == entry.id))
    await _record(session, user_id, "address_book.entry_removed", data)


async def set_allowlist(session: AsyncSession, settings: Settings, redis: Redis, user_id: uuid.UUID, *,
                        enabled: bool, totp_code: str | None) -> bool:
    """On at once; off only with the step-up. Asking for what is already so changes nothing and asks
    for no code. The allowlist's state now."""
    await _lock_book(session, user_id)
    book = await session.get(AddressBook, user_id, populate_existing=True)
    if (book is not None and book.allowlist_enabled) == enabled:
        return enabled
    if not enabled:
        await require_step_up(session, settings, redis, user_id, totp_code)
    if book is None:
        book = AddressBook(user_id=user_id)
        session.add(book)
    book.allowlist_enabled = enabled
    book.updated_at = utcnow()
    await session.flush()
    await _record(session, user_id, "address_book.allowlist_enabled" if enabled else "address_book.allowlist_disabled",
                  {})
    return enabled


async def require_allowlisted(session: AsyncSession, user_id: uuid.UUID, chain: str, destination: str) -> None:
    """403 ``address_not_allowlisted`` when the user's allowlist is on and ``destination`` (normalised) is
    not a usable entry of their book for ``chain``; ``details.usable_at`` when it is listed but still
    cooling off."""
    if not await _allowlist_enabled(session, user_id):
        return
    usable_at = await session.scalar(select(AddressBookEntry.usable_at).where(
        AddressBookEntry.user_id == user_id, AddressBookEntry.chain == chain, AddressBookEntry.address == destination))
    if usable_at is not None and usable_at <= utcnow():
        return
    details = {"chain": chain, "to_address": destination}
    if usable_at is not None:
        details["usable_at"] = rfc3339(usable_at)
    raise AddressNotAllowlisted(details=details)
