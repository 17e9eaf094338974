"""The customer's withdrawal address book, and the allowlist that limits withdrawals to it.

An entry is a destination the user saved: a chain, an address in the form a withdrawal request stores
(``destinations.destination_address``: EIP-55, never the zero address), a label and optionally an
asset (a currency code of the chain); one per chain and address. With the allowlist on, a withdrawal
request goes only to an entry of the caller's own book for its chain — for its asset, when the entry
names one — that is usable: its ``usable_at`` (added + the cooling-off,
``VIRTUOZ_ADDRESS_COOLING_OFF_HOURS``) has passed. It is refused otherwise, right after the step-up
(``service.request``), holding nothing.

What loosens the rule takes the same step-up as a withdrawal (a fresh TOTP code when the user has MFA
on), and the cooling-off: adding an entry (usable from ``usable_at``) and turning the allowlist off
(off from ``allowlist_off_at``; until then it still applies). What tightens it is immediate: turning
it on (which also cancels a turn-off still pending), removing an entry. The cooling-off is what a
stolen session that also has a code runs into: it can add the thief's address or ask for the allowlist
off, but cannot withdraw there before the owner, notified of the change (and emailed of a new entry),
has had time to react.

Changes to a user's book are serialized by a transaction-scoped lock per user, taken before the
step-up (which locks the user row) so that every change takes the two in one order; each change is an
event of the ``address_book`` aggregate (its id is the user's) in the same transaction, and a
notification. The fold of those events is ``projection.reduce_address_book``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
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
from notifications.emails import product_email

AGGREGATE = "address_book"
ENTRY_ADDED_EMAIL = "address_book.entry_added"  # a product email (notifications.emails.TEMPLATES)


class AddressNotAllowlisted(Forbidden):
    code, message = "address_not_allowlisted", ("The withdrawal allowlist is on and this address is not a usable "
                                                "entry of your address book for this chain and asset.")


class AddressAlreadyInBook(Conflict):
    code, message = "address_already_in_book", "This address is in your address book for this chain already."


class EntryNotFound(NotFound):
    code, message = "address_book_entry_not_found", "No such address book entry."


@dataclass(frozen=True)
class Allowlist:
    """Whether the allowlist applies now, and when it stops applying if a turn-off is pending."""

    enabled: bool
    off_at: datetime | None = None


@dataclass(frozen=True)
class BookPage:
    allowlist: Allowlist
    items: list[AddressBookEntry]
    next_cursor: str | None


def usable(entry: AddressBookEntry) -> bool:
    return entry.usable_at <= utcnow()


def _in_force(enabled: bool, off_at: datetime | None, now: datetime) -> Allowlist:
    # Turned off with a cooling-off, it applies until off_at: only then is a withdrawal free to go anywhere.
    if enabled:
        return Allowlist(True)
    if off_at is not None and off_at > now:
        return Allowlist(True, off_at)
    return Allowlist(False)


async def allowlist(session: AsyncSession, user_id: uuid.UUID) -> Allowlist:
    """The user's allowlist as it applies now (on while a turn-off is pending, with its ``off_at``)."""
    row = (await session.execute(select(AddressBook.allowlist_enabled, AddressBook.allowlist_off_at)
                                 .where(AddressBook.user_id == user_id))).one_or_none()
    return Allowlist(False) if row is None else _in_force(row.allowlist_enabled, row.allowlist_off_at, utcnow())


async def _lock_book(session: AsyncSession, user_id: uuid.UUID) -> None:
    # A lock, not a row: it writes nothing, so a wrong code (committed with its audit event) leaves no trace here.
    await advisory_lock(session, f"address_book.changes:{user_id}")


async def _record(session: AsyncSession, user_id: uuid.UUID, event: str, data: dict[str, Any]) -> None:
    await audit.append(session, AGGREGATE, user_id, event, data, actor=user_id)
    # The owner hears of every change: a change they did not make is how they learn of a stolen session.
    await notifications.notify(session, user_id, event, data)


def _entry_data(entry: AddressBookEntry) -> dict[str, Any]:
    return {"entry_id": str(entry.id), "chain": entry.chain, "asset": entry.asset, "address": entry.address,
            "label": entry.label, "usable_at": rfc3339(entry.usable_at)}


async def page(session: AsyncSession, user_id: uuid.UUID, *, limit: int = 50, cursor: str | None = None) -> BookPage:
    """The caller's entries, newest first, and whether the allowlist is on."""
    query = (select(AddressBookEntry).where(AddressBookEntry.user_id == user_id)
             .order_by(AddressBookEntry.created_at.desc(), AddressBookEntry.id.desc()).limit(limit + 1))
    if cursor:
        query = query.where(keyset_before(cursor, AddressBookEntry.created_at, AddressBookEntry.id))
    items, next_cursor = next_page(list(await session.scalars(query)), limit)
    return BookPage(await allowlist(session, user_id), items, next_cursor)


async def add(session: AsyncSession, settings: Settings, redis: Redis, user_id: uuid.UUID, *, chain: str,
              address: str, label: str, totp_code: str | None, asset: str | None = None) -> AddressBookEntry:
    """422 for an unknown chain, an asset that is not the chain's or a bad address, then the step-up
    (401, 429), then 409 for an address already in the book for the chain, whatever its asset (checked
    under the book's lock: two adds at once cannot both pass). The owner is emailed of the new entry."""
    chain_settings = settings.chain(chain)
    chain_name = chain_settings.name
    symbol = None if asset is None else chain_settings.asset(asset)
    normalised = destination_address(address, field="address")
    await _lock_book(session, user_id)
    await require_step_up(session, settings, redis, user_id, totp_code)
    existing = await session.scalar(select(AddressBookEntry.id).where(
        AddressBookEntry.user_id == user_id, AddressBookEntry.chain == chain_name,
        AddressBookEntry.address == normalised))
    if existing is not None:
        raise AddressAlreadyInBook(details={"chain": chain_name, "address": normalised, "entry_id": str(existing)})
    now = utcnow()
    entry = AddressBookEntry(id=uuid.uuid4(), user_id=user_id, chain=chain_name, asset=symbol, address=normalised,
                             label=label, created_at=now, usable_at=now + settings.address_cooling_off)
    session.add(entry)
    await session.flush()
    await _record(session, user_id, "address_book.entry_added", _entry_data(entry))
    # By email too: a thief holding the session sees the in-app notification as well; the mailbox is the owner's.
    product_email(session, user_id, ENTRY_ADDED_EMAIL, entry.id)
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
                        enabled: bool, totp_code: str | None) -> Allowlist:
    """The one way to turn the allowlist on or off (``PUT /wallet/address-book/allowlist`` and
    ``PATCH /me``). On: at once, and a pending turn-off is cancelled. Off: with the step-up, and only
    after the cooling-off (``off_at``; at once when it is 0). Asking for what is already so, or already
    asked (off while a turn-off is pending), changes nothing and asks for no code. The allowlist now."""
    await _lock_book(session, user_id)
    book = await session.get(AddressBook, user_id, populate_existing=True)
    now = utcnow()
    chosen = book is not None and book.allowlist_enabled
    current = _in_force(chosen, None if book is None else book.allowlist_off_at, now)
    if chosen == enabled:
        return current
    data: dict[str, Any] = {}
    if enabled:
        off_at = None
        if current.off_at is not None:
            data["cancelled_off_at"] = rfc3339(current.off_at)
    else:
        await require_step_up(session, settings, redis, user_id, totp_code)
        cooling_off = settings.address_cooling_off
        off_at = now + cooling_off if cooling_off else None
        data["off_at"] = None if off_at is None else rfc3339(off_at)
    if book is None:
        book = AddressBook(user_id=user_id)
        session.add(book)
    book.allowlist_enabled, book.allowlist_off_at, book.updated_at = enabled, off_at, now
    await session.flush()
    await _record(session, user_id, "address_book.allowlist_enabled" if enabled else "address_book.allowlist_disabled",
                  data)
    return _in_force(enabled, off_at, now)


async def _entry(session: AsyncSession, user_id: uuid.UUID, chain: str, destination: str) -> Any:
    return (await session.execute(select(AddressBookEntry.asset, AddressBookEntry.usable_at).where(
        AddressBookEntry.user_id == user_id, AddressBookEntry.chain == chain,
        AddressBookEntry.address == destination))).one_or_none()


def _takes(entry: Any, asset: str | None) -> bool:
    """An entry without an asset takes any; one with an asset only that one (and never an unnamed one)."""
    return entry.asset is None or (asset is not None and entry.asset.upper() == asset.upper())


async def is_usable(session: AsyncSession, user_id: uuid.UUID, chain: str, destination: str, asset: str) -> bool:
    """``destination`` (normalised) is an entry of the user's book for ``chain`` and ``asset``, past its
    cooling-off, whether or not the allowlist is on."""
    entry = await _entry(session, user_id, chain, destination)
    return entry is not None and entry.usable_at <= utcnow() and _takes(entry, asset)


async def require_allowlisted(session: AsyncSession, user_id: uuid.UUID, chain: str, destination: str, *,
                              asset: str | None = None) -> None:
    """403 ``address_not_allowlisted`` when the user's allowlist applies and ``destination`` (normalised)
    is not a usable entry of their book for ``chain`` and ``asset`` (the configured symbol); an entry
    without an asset takes any. Without ``asset`` only such an entry will do: a caller that does not say
    what it withdraws gets no more than the narrowest reading. ``details.usable_at`` when the entry is
    still cooling off, ``details.entry_asset`` when it is for another asset."""
    if not (await allowlist(session, user_id)).enabled:
        return
    entry = await _entry(session, user_id, chain, destination)
    details: dict[str, Any] = {"chain": chain, "to_address": destination}
    if entry is None:
        raise AddressNotAllowlisted(details=details)
    cooling = entry.usable_at > utcnow()
    other_asset = not _takes(entry, asset)
    if not cooling and not other_asset:
        return
    if other_asset:
        details |= {"asset": asset, "entry_asset": entry.asset}
    if cooling:
        details["usable_at"] = rfc3339(entry.usable_at)
    raise AddressNotAllowlisted(details=details)
