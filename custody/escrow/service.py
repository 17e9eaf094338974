"""Escrow: a buyer's money held by the ledger until release, refund or a dispute's resolution.

Every action locks the contract row first (``SELECT … FOR UPDATE``), so concurrent fund/fund,
release/dispute or resolve/resolve serialize: one wins, the others meet the new state and get a
409. A buyer with a withdrawal freeze (``custody.freezes``) can neither fund nor release, and a
dispute cannot be resolved to the seller while it stands (403 ``withdrawals_frozen``). An arbiter
who is a party to the escrow cannot resolve or reject its dispute, nor hide the other side's evidence
(403 ``party_to_dispute``); only the parties and the arbiters write to a dispute. Each transition writes its audit event and notifies both parties after commit; funding,
release and dispute also email them (``notifications.emails``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.pagination import keyset_before, next_page
from custody import ledger
from custody.escrow.models import EscrowContract
from custody.escrow.states import transition
from custody.freezes import require_not_frozen
from custody.ledger import AccountRef
from identity.models import STAFF_ROLES, User
from notifications import service as notifications
from notifications.emails import product_email

# Support reads contracts to help; only compliance and admin decide disputes.
READERS = STAFF_ROLES
ARBITERS = frozenset({"compliance", "admin"})
# Events both parties also get an email about (the template has the event's name).
EMAILED = frozenset({"escrow.funded", "escrow.released", "escrow.disputed"})


@dataclass(frozen=True)
class Actor:
    """Who acts on a contract: the service needs the id and roles, never the HTTP request."""

    user_id: uuid.UUID
    roles: frozenset[str]

    def any_of(self, roles: frozenset[str]) -> bool:
        return bool(self.roles & roles)


class SellerRequired(Conflict):
    code, message = "seller_required", "This escrow has no registered seller yet: it cannot be released to anyone."


class EscrowNotFound(NotFound):
    code, message = "escrow_not_found", "No such escrow."


@dataclass(frozen=True)
class EscrowView:
    contract: EscrowContract
    buyer: User
    seller: User | None
    currency: ledger.CurrencyInfo


async def _view(session: AsyncSession, contract: EscrowContract) -> EscrowView:
    buyer = await session.get_one(User, contract.buyer_id)
    seller = await session.get(User, contract.seller_id) if contract.seller_id else None
    return EscrowView(contract, buyer, seller, await ledger.currency(session, contract.currency))


def _is_party(contract: EscrowContract, actor: Actor) -> bool:
    return actor.user_id in (contract.buyer_id, contract.seller_id)


async def load(session: AsyncSession, escrow_id: uuid.UUID, actor: Actor, *, lock: bool) -> EscrowContract:
    query = select(EscrowContract).where(EscrowContract.id == escrow_id)
    contract = await session.scalar(query.with_for_update() if lock else query)
    # Anyone who is neither a party nor staff learns nothing, not even that it exists.
    if contract is None or not (_is_party(contract, actor) or actor.any_of(READERS)):
        raise EscrowNotFound()
    return contract


async def _record(session: AsyncSession, contract: EscrowContract, event: str, actor: Actor,
                  data: dict[str, Any] | None = None) -> None:
    await audit.append(session, "escrow", contract.id, event, {"state": contract.state, **(data or {})},
                       actor=actor.user_id)
    for party in {contract.buyer_id, contract.seller_id} - {None}:
        await notifications.notify(session, party, event, {"escrow_id": str(contract.id), "state": contract.state,
                                                            "title": contract.title})
        if event in EMAILED:
            product_email(session, party, event, contract.id)


def require_writer(contract: EscrowContract, actor: Actor) -> None:
    """Only the parties and the arbiters add to a dispute; other staff only read it."""
    if not (_is_party(contract, actor) or actor.any_of(ARBITERS)):
        raise Forbidden("Only the parties, compliance or an admin write to a dispute.", code="party_or_arbiter")


def require_impartial(contract: EscrowContract, actor: Actor) -> None:
    """An arbiter who is a buyer or seller would judge their own case: they act on it as a party only."""
    if _is_party(contract, actor):
        raise Forbidden("A party to this escrow cannot decide its dispute.", code="party_to_dispute")


def _require_buyer(contract: EscrowContract, actor: Actor) -> None:
    if actor.user_id != contract.buyer_id:
        raise Forbidden("Only the buyer can do this.", code="buyer_only")


# --- contracts --------------------------------------------------------------------------------

async def create(session: AsyncSession, actor: Actor, *, title: str, description: str, amount: str, currency: str,
                 seller_email: str | None) -> EscrowView:
    unit = await ledger.currency(session, currency)
    minor = unit.parse(amount)
    buyer = await session.get_one(User, actor.user_id)
    seller = None
    if seller_email is not None:
        seller_email = seller_email.strip().lower()
        if seller_email == buyer.email:
            raise InvalidInput("The seller cannot be the buyer.", code="seller_is_buyer")
        # Only an account that proved it owns the address: registering it proves nothing. Otherwise the
        # contract waits for one (``link_seller``).
        seller = await session.scalar(select(User).where(User.email == seller_email,
                                                         User.email_verified_at.is_not(None)))
    contract = EscrowContract(id=uuid.uuid4(), title=title.strip(), description=description, amount=minor,
                              currency=unit.code, state="created", buyer_id=buyer.id,
                              seller_id=seller.id if seller else None, seller_email=seller_email)
    session.add(contract)
    await session.flush()
    await session.refresh(contract)
    await _record(session, contract, "escrow.created", actor,
                  {"amount": unit.format(minor), "currency": unit.code, "seller_email": seller_email,
                   "seller_id": str(seller.id) if seller else None})
    return EscrowView(contract, buyer, seller, unit)


async def link_seller(session: AsyncSession, user: User) -> None:
    """A user who has just proved they own their email becomes the seller of the contracts waiting for
    it (``custody.onboarding`` calls it on verification, in that transaction); each link is audited."""
    if not user.email_verified:
        return
    linked = await session.scalars(
        update(EscrowContract)
        .where(EscrowContract.seller_email == user.email, EscrowContract.seller_id.is_(None),
               EscrowContract.buyer_id != user.id)
        .values(seller_id=user.id)
        .returning(EscrowContract.id)
    )
    for escrow_id in linked:
        await audit.append(session, "escrow", escrow_id, "escrow.seller_linked", {"seller_id": str(user.id)},
                           actor=user.id)


async def exists(session: AsyncSession, ref: str) -> bool:
    """Whether ``ref`` names an escrow (a helpdesk context link may point at one)."""
    try:
        escrow_id = uuid.UUID(ref)
    except ValueError:
        return False
    return await session.get(EscrowContract, escrow_id) is not None


async def get(session: AsyncSession, actor: Actor, escrow_id: uuid.UUID) -> EscrowView:
    return await _view(session, await load(session, escrow_id, actor, lock=False))


@dataclass(frozen=True)
class EscrowPage:
    items: list[EscrowView]
    next_cursor: str | None


async def search(session: AsyncSession, *, party: uuid.UUID | None = None, role: str | None = None,
                 state: str | None = None, user_id: uuid.UUID | None = None, created_from: datetime | None = None,
                 created_to: datetime | None = None, limit: int, cursor: str | None) -> EscrowPage:
    """Contracts newest first. ``party`` limits to that user's contracts (as ``role`` if given)."""
    query = select(EscrowContract).order_by(EscrowContract.created_at.desc(), EscrowContract.id.desc()).limit(limit + 1)
    if party is not None:
        sides = {"buyer": EscrowContract.buyer_id == party, "seller": EscrowContract.seller_id == party}
        query = query.where(sides[role] if role else or_(*sides.values()))
    if user_id is not None:
        query = query.where(or_(EscrowContract.buyer_id == user_id, EscrowContract.seller_id == user_id))
    if state:
        query = query.where(EscrowContract.state == state)
    if created_from:
        query = query.where(EscrowContract.created_at >= created_from)
    if created_to:
        query = query.where(EscrowContract.created_at < created_to)
    if cursor:
        query = query.where(keyset_before(cursor, EscrowContract.created_at, EscrowContract.id))
    rows = list(await session.scalars(query))
    page, next_cursor = next_page(rows, limit)
    return EscrowPage([await _view(session, row) for row in page], next_cursor)


async def history(session: AsyncSession, actor: Actor, escrow_id: uuid.UUID) -> list[audit.AuditEvent]:
    await load(session, escrow_id, actor, lock=False)
    return await audit.events_of(session, "escrow", escrow_id)


# --- money moves ------------------------------------------------------------------------------

async def fund(session: AsyncSession, actor: Actor, escrow_id: uuid.UUID) -> EscrowView:
    contract = await load(session, escrow_id, actor, lock=True)
    _require_buyer(contract, actor)
    contract.state = transition(contract.state, "fund")
    await require_not_frozen(session, contract.buyer_id)  # funding is the first step of a way out
    held = await ledger.hold(session, f"escrow:{contract.id}:fund", contract.buyer_id, contract.currency,
                             contract.amount, type="escrow_fund", reference_kind="escrow",
                             reference_id=str(contract.id))
    contract.hold_id = held.id
    await session.flush()
    await _record(session, contract, "escrow.funded", actor, {"hold_id": str(held.id)})
    return await _view(session, contract)


def _fee(amount: int, fee_bps: int) -> int:
    return amount * fee_bps // 10_000  # rounded down: the platform never takes more than its rate


async def _pay_seller(session: AsyncSession, contract: EscrowContract, amount: int, fee: int) -> None:
    assert contract.hold_id is not None and contract.seller_id is not None
    await ledger.post_hold(session, contract.hold_id, AccountRef.user(contract.seller_id), amount, fee=fee,
                           type="escrow_release", reference_kind="escrow", reference_id=str(contract.id))


async def release(session: AsyncSession, actor: Actor, escrow_id: uuid.UUID, fee_bps: int) -> EscrowView:
    contract = await load(session, escrow_id, actor, lock=True)
    _require_buyer(contract, actor)
    contract.state = transition(contract.state, "release")
    if contract.seller_id is None:
        raise SellerRequired()
    await require_not_frozen(session, contract.buyer_id)
    contract.fee = _fee(contract.amount, fee_bps)
    await _pay_seller(session, contract, contract.amount - contract.fee, contract.fee)
    await session.flush()
    await _record(session, contract, "escrow.released", actor, {"fee": str(contract.fee)})
    return await _view(session, contract)


async def cancel(session: AsyncSession, actor: Actor, escrow_id: uuid.UUID) -> EscrowView:
    contract = await load(session, escrow_id, actor, lock=True)
    _require_buyer(contract, actor)
    contract.state = transition(contract.state, "cancel")
    await session.flush()
    await _record(session, contract, "escrow.cancelled", actor)
    return await _view(session, contract)


async def dispute(session: AsyncSession, actor: Actor, escrow_id: uuid.UUID, reason: str) -> EscrowView:
    contract = await load(session, escrow_id, actor, lock=True)
    if not _is_party(contract, actor):
        raise Forbidden("Only the buyer or the seller can open a dispute.", code="party_only")
    contract.state = transition(contract.state, "dispute")
    contract.dispute_reason, contract.disputed_by = reason.strip(), actor.user_id
    await session.flush()
    await _record(session, contract, "escrow.disputed", actor, {"reason": contract.dispute_reason})
    return await _view(session, contract)


async def resolve(session: AsyncSession, actor: Actor, escrow_id: uuid.UUID, *, outcome: str,
                  seller_amount: str | None, note: str | None, fee_bps: int) -> EscrowView:
    if not actor.any_of(ARBITERS):
        raise Forbidden("Only compliance or an admin resolves disputes.", code="arbiter_only")
    contract = await load(session, escrow_id, actor, lock=True)
    require_impartial(contract, actor)
    contract.state = transition(contract.state, "resolve")
    unit = await ledger.currency(session, contract.currency)
    assert contract.hold_id is not None
    if outcome == "refund":
        await ledger.void_hold(session, contract.hold_id, type="escrow_refund")
        paid = 0
    else:
        if contract.seller_id is None:
            raise SellerRequired()
        # Paying the seller moves the frozen buyer's money to someone who could withdraw it; a
        # refund keeps it with its owner, so it stays possible.
        await require_not_frozen(session, contract.buyer_id)
        if outcome == "release":
            contract.fee = _fee(contract.amount, fee_bps)
            paid = contract.amount - contract.fee
        else:  # split: the arbiter names the seller's part; the rest returns to the buyer
            if seller_amount is None:
                raise InvalidInput("A split names the seller_amount.", code="seller_amount_required")
            paid = unit.parse(seller_amount)
            if paid >= contract.amount:
                raise InvalidInput("A split pays the seller less than the whole amount; use release.",
                                   code="invalid_split", details={"amount": unit.format(contract.amount)})
            contract.fee = 0
        await _pay_seller(session, contract, paid, contract.fee or 0)
    contract.resolution, contract.seller_amount = outcome, paid
    await session.flush()
    await _record(session, contract, "escrow.resolved", actor,
                  {"outcome": outcome, "seller_amount": unit.format(paid), "note": note,
                   "fee": None if contract.fee is None else str(contract.fee)})
    return await _view(session, contract)


async def reject(session: AsyncSession, actor: Actor, escrow_id: uuid.UUID, note: str | None) -> EscrowView:
    if not actor.any_of(ARBITERS):
        raise Forbidden("Only compliance or an admin rejects disputes.", code="arbiter_only")
    contract = await load(session, escrow_id, actor, lock=True)
    require_impartial(contract, actor)
    contract.state = transition(contract.state, "reject")
    await session.flush()
    await _record(session, contract, "escrow.dispute_rejected", actor, {"note": note})
    return await _view(session, contract)
