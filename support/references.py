"""What a context link may point at, and the resolvers that prove an internal reference exists.

A context link is ``(kind, ref)``. ``url`` is external: it must be a plain http(s) URL. Every
other kind names a row of the platform, and the link is accepted only when that kind's resolver
(``async exists(session, ref) -> bool``) finds it.

Every internal kind is resolved by its row's id: ``user``, ``escrow``, ``withdrawal``, ``deposit``
and ``transaction`` (a ledger transfer, the id ``/admin/transactions`` uses). A kind without a
resolver would be refused with 422 ``unknown_reference`` (never accepted unchecked); a new kind is
one ``register_resolver`` call (api may import custody and compliance, never the reverse).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import AnyHttpUrl, TypeAdapter, ValidationError
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput
from custody.deposits.models import Deposit
from custody.escrow.service import exists as escrow_exists
from custody.ledger.models import LedgerTransfer
from custody.withdrawals.models import Withdrawal
from identity.models import User

LinkKind = Literal["escrow", "withdrawal", "deposit", "transaction", "user", "url"]
KINDS: tuple[LinkKind, ...] = ("escrow", "withdrawal", "deposit", "transaction", "user", "url")
MAX_URL_LENGTH = 2048

Resolver = Callable[[AsyncSession, str], Awaitable[bool]]


class UnknownReference(InvalidInput):
    code, message = "unknown_reference", "The context link names nothing this platform knows."


class InvalidUrl(InvalidInput):
    code, message = "invalid_url", "A url context link must be an absolute http(s) URL."


def row_exists(model: Any) -> Resolver:
    """A resolver that finds ``model``'s row by its UUID primary key ``id``."""

    async def resolve(session: AsyncSession, ref: str) -> bool:
        try:
            row_id = uuid.UUID(ref)
        except ValueError:
            return False
        return bool(await session.scalar(select(exists().where(model.id == row_id))))

    return resolve


user_exists = row_exists(User)
_resolvers: dict[str, Resolver] = {"user": user_exists, "escrow": escrow_exists, "withdrawal": row_exists(Withdrawal),
                                   "deposit": row_exists(Deposit), "transaction": row_exists(LedgerTransfer)}

_url = TypeAdapter(AnyHttpUrl)


def register_resolver(kind: LinkKind, resolver: Resolver) -> None:
    if kind not in KINDS or kind == "url":
        raise ValueError(f"{kind!r} is not an internal context-link kind")
    _resolvers[kind] = resolver


def resolvable_kinds() -> list[str]:
    return sorted([*_resolvers, "url"])


async def checked_reference(session: AsyncSession, kind: str, ref: str) -> str:
    """``ref`` in canonical form once it is known to be valid; 422 otherwise."""
    if kind == "url":
        return _checked_url(ref)
    resolver = _resolvers.get(kind)
    if resolver is None:
        raise UnknownReference(
            f"Links to {kind} cannot be checked yet, so they are not accepted.",
            details={"kind": kind, "ref": ref, "reason": "no_resolver", "resolvable_kinds": resolvable_kinds()},
        )
    canonical = _canonical(kind, ref)
    if not await resolver(session, canonical):
        raise UnknownReference(details={"kind": kind, "ref": ref, "reason": "not_found"})
    return canonical


def _canonical(kind: str, ref: str) -> str:
    # Ids are UUIDs everywhere: one spelling per row, so a link cannot be attached twice.
    try:
        return str(uuid.UUID(ref))
    except ValueError:
        return ref


def _checked_url(ref: str) -> str:
    if len(ref) > MAX_URL_LENGTH or any(char.isspace() for char in ref):
        raise InvalidUrl(details={"ref": ref[:200]})
    try:
        url = _url.validate_python(ref)
    except ValidationError:
        raise InvalidUrl(details={"ref": ref[:200]}) from None
    if url.username or url.password:  # stored and shown to every staff member: no credentials
        raise InvalidUrl("A url context link must not carry credentials.", details={"ref": "<redacted>"})
    return str(url)
