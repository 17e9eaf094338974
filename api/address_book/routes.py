"""The caller's withdrawal address book and its allowlist."""

from __future__ import annotations

from aiohttp import web

from api.access import AUTHENTICATED
from api.address_book.schemas import (
    AllowlistIn,
    AllowlistOut,
    BookOut,
    BookQuery,
    EntryIn,
    EntryOut,
)
from api.http import path_uuid
from api.keys import REDIS, SETTINGS
from api.middleware import db_session
from api.principal import current
from api.registry import Routes
from custody.withdrawals import address_book as service

address_book = Routes(tag="wallet")

STEP_UP = {401: ("mfa_required", "invalid_mfa_code"), 429: ("too_many_attempts",)}


@address_book.get("/wallet/address-book", access=AUTHENTICATED, query=BookQuery, responses={200: BookOut},
                  errors={422: ("invalid_cursor",)})
async def list_address_book(request: web.Request, query: BookQuery) -> BookOut:
    """The caller's address book, newest first (`limit` 1–100, opaque `cursor`), whether the allowlist is on
    and, while a turn-off is pending, when it goes off (`allowlist_off_at`)."""
    page = await service.page(db_session(request), current(request).user_id, limit=query.limit, cursor=query.cursor)
    return BookOut.of(page)


@address_book.post("/wallet/address-book", access=AUTHENTICATED, body=EntryIn, responses={201: EntryOut},
                   idempotent=True,
                   errors={**STEP_UP, 409: ("address_already_in_book",),
                           422: ("unknown_chain", "asset_not_on_chain", "invalid_address")})
async def add_address_book_entry(request: web.Request, body: EntryIn) -> EntryOut:
    """Save a withdrawal destination: the same step-up as a withdrawal request (`totp_code` with MFA on).

    The address is stored as a withdrawal request stores it (EIP-55); with an `asset` (a currency code of
    the chain) the entry takes withdrawals of that asset only, without one any asset of the chain. With
    the allowlist on, a withdrawal may go to it from `usable_at` (after the platform's cooling-off,
    `VIRTUOZ_ADDRESS_COOLING_OFF_HOURS`). The owner is emailed of the new entry.
    Refusals: unknown_chain / asset_not_on_chain / invalid_address (422, `details` naming the field);
    mfa_required / invalid_mfa_code (401), too_many_attempts (429); address_already_in_book (409: once
    per chain and address, whatever the asset).
    """
    settings, session = request.config_dict[SETTINGS], db_session(request)
    entry = await service.add(session, settings, request.config_dict[REDIS], current(request).user_id,
                              chain=body.chain, asset=body.asset, address=body.address, label=body.label,
                              totp_code=body.totp_code)
    return EntryOut.of(entry)


@address_book.route("DELETE", "/wallet/address-book/{entry_id}", access=AUTHENTICATED, responses={204: None},
                    errors={404: ("address_book_entry_not_found",)})
async def remove_address_book_entry(request: web.Request) -> None:
    """Remove an entry of the caller's book (it only narrows where money may go: no step-up).
    Another user's entry: 404 address_book_entry_not_found."""
    entry_id = path_uuid(request, "entry_id", "address_book_entry_not_found")
    await service.remove(db_session(request), current(request).user_id, entry_id)


@address_book.route("PUT", "/wallet/address-book/allowlist", access=AUTHENTICATED, body=AllowlistIn,
                    responses={200: AllowlistOut}, errors=STEP_UP)
async def set_allowlist(request: web.Request, body: AllowlistIn) -> AllowlistOut:
    """Turn the withdrawal allowlist on (at once, cancelling a pending turn-off) or off (the same step-up as a
    withdrawal request, then the cooling-off: it still applies until `off_at`). Also `PATCH /me`.

    On, a withdrawal request to anything but a usable entry of the caller's book for its chain (and for
    its asset, when the entry names one) is refused with 403 address_not_allowlisted. Refusals of turning
    it off: mfa_required / invalid_mfa_code (401), too_many_attempts (429).
    """
    settings, session = request.config_dict[SETTINGS], db_session(request)
    allowlist = await service.set_allowlist(session, settings, request.config_dict[REDIS], current(request).user_id,
                                            enabled=body.enabled, totp_code=body.totp_code)
    return AllowlistOut.of(allowlist)
