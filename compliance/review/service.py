"""Transaction review: one view over the ledger's transfers for staff, with flags and resolutions.

Every movement of money is a ledger transfer, so the ledger is the one list: deposits credited,
withdrawals held and settled, escrow funding and releases, sandbox credits. A transfer names
its business object (``reference_kind``/``reference_id``); for deposits and withdrawals the
object's own state is shown beside it (read from custody's ``Deposit`` and ``Withdrawal`` models,
a layer below). A flag opens a review, a resolution (``cleared`` or ``reported``) closes it once;
both are audit events of the aggregate ``transaction_review``. An officer never resolves a transfer
that posts to their own ledger accounts (403 ``own_transaction``): another officer does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from compliance.review.models import TransactionReview
from core import audit
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.money import format_amount, parse_amount
from core.pagination import keyset_before, next_page
from core.time import utcnow
from custody.deposits.models import Deposit
from custody.ledger.models import Currency, LedgerAccount, LedgerPosting, LedgerTransfer
from custody.withdrawals.models import Withdrawal

AGGREGATE = "transaction_review"
RESOLUTIONS = ("cleared", "reported")


class AlreadyResolved(Conflict):
    code, message = "review_already_resolved", "This transaction's review is already resolved."


class NotFlagged(Conflict):
    code, message = "not_flagged", "This transaction is not flagged."


class OwnTransaction(Forbidden):
    code, message = "own_transaction", "This transaction touches your own accounts: another officer reviews it."


class AlreadyFlagged(Conflict):
    code, message = "already_flagged", "This transaction is already flagged and awaiting review."


@dataclass(frozen=True)
class PostingView:
    owner_type: str
    user_id: uuid.UUID | None
    account: str
    currency: str
    amount: str


@dataclass(frozen=True)
class TransactionView:
    id: uuid.UUID
    reference: str
    type: str
    reference_kind: str | None
    reference_id: str | None
    object_state: str | None
    tx_hash: str | None
    created_at: datetime
    postings: list[PostingView]
    review: TransactionReview | None


@dataclass(frozen=True)
class TransactionPage:
    items: list[TransactionView]
    next_cursor: str | None


@dataclass(frozen=True)
class Filters:
    user_id: uuid.UUID | None = None
    type: str | None = None
    state: str | None = None  # the deposit's or withdrawal's state
    flagged: bool | None = None  # flagged and not yet resolved
    review: str | None = None  # flagged | cleared | reported
    currency: str | None = None
    amount_min: str | None = None
    amount_max: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


def _object_state() -> object:
    deposit = select(Deposit.state).where(
        LedgerTransfer.reference_kind == "deposit",
        cast(Deposit.id, String) == LedgerTransfer.reference_id).scalar_subquery()
    withdrawal = select(Withdrawal.state).where(
        LedgerTransfer.reference_kind == "withdrawal",
        cast(Withdrawal.id, String) == LedgerTransfer.reference_id).scalar_subquery()
    return func.coalesce(deposit, withdrawal)


async def _amount_bound(session: AsyncSession, filters: Filters, text: str) -> int:
    decimals = await session.scalar(select(Currency.decimals).where(Currency.code == filters.currency))
    if decimals is None:
        raise InvalidInput(f"Unknown currency {filters.currency!r}.", code="unknown_currency")
    return parse_amount(text, decimals, allow_zero=True)


async def search(session: AsyncSession, filters: Filters, *, limit: int = 50, cursor: str | None = None
                 ) -> TransactionPage:
    state = _object_state().label("object_state")
    query = select(LedgerTransfer, state)
    if filters.user_id is not None:
        query = query.where(LedgerTransfer.id.in_(
            select(LedgerPosting.transfer_id).join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
            .where(LedgerAccount.user_id == filters.user_id)))
    if filters.type is not None:
        query = query.where(LedgerTransfer.type == filters.type)
    if filters.state is not None:
        query = query.where(_object_state() == filters.state)
    open_reviews = select(TransactionReview.transfer_id).where(TransactionReview.state == "flagged")
    if filters.flagged is True:
        query = query.where(LedgerTransfer.id.in_(open_reviews))
    elif filters.flagged is False:
        query = query.where(LedgerTransfer.id.not_in(open_reviews))
    if filters.review is not None:
        query = query.where(LedgerTransfer.id.in_(
            select(TransactionReview.transfer_id).where(TransactionReview.state == filters.review)))
    if filters.amount_min is not None or filters.amount_max is not None or filters.currency is not None:
        if filters.currency is None:
            raise InvalidInput("An amount filter names its currency.", code="currency_required")
        moved = func.sum(LedgerPosting.amount).filter(LedgerPosting.amount > 0)
        amounts = (select(LedgerPosting.transfer_id).where(LedgerPosting.currency == filters.currency)
                   .group_by(LedgerPosting.transfer_id))
        if filters.amount_min is not None:
            amounts = amounts.having(moved >= await _amount_bound(session, filters, filters.amount_min))
        if filters.amount_max is not None:
            amounts = amounts.having(moved <= await _amount_bound(session, filters, filters.amount_max))
        query = query.where(LedgerTransfer.id.in_(amounts))
    if filters.created_from is not None:
        query = query.where(LedgerTransfer.created_at >= filters.created_from)
    if filters.created_to is not None:
        query = query.where(LedgerTransfer.created_at < filters.created_to)
    if cursor:
        query = query.where(keyset_before(cursor, LedgerTransfer.created_at, LedgerTransfer.id))
    rows = (await session.execute(query.order_by(LedgerTransfer.created_at.desc(), LedgerTransfer.id.desc())
                                  .limit(limit + 1))).all()
    page, next_cursor = next_page([row.LedgerTransfer for row in rows], limit)
    states = {row.LedgerTransfer.id: row.object_state for row in rows}
    return TransactionPage(await _views(session, page, states), next_cursor)


async def _views(session: AsyncSession, transfers: list[LedgerTransfer],
                 states: dict[uuid.UUID, str | None]) -> list[TransactionView]:
    ids = [transfer.id for transfer in transfers]
    postings: dict[uuid.UUID, list[PostingView]] = {transfer_id: [] for transfer_id in ids}
    if ids:
        result = await session.execute(
            select(LedgerPosting.transfer_id, LedgerAccount.owner_type, LedgerAccount.user_id, LedgerAccount.kind,
                   LedgerPosting.currency, LedgerPosting.amount, Currency.decimals, Currency.kind.label("unit"))
            .join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
            .join(Currency, Currency.code == LedgerPosting.currency)
            .where(LedgerPosting.transfer_id.in_(ids))
            .order_by(LedgerPosting.transfer_id, LedgerPosting.amount))
        for row in result:
            postings[row.transfer_id].append(PostingView(
                row.owner_type, row.user_id, row.kind, row.currency,
                format_amount(int(row.amount), row.decimals, fixed=row.unit == "fiat")))
    reviews = {review.transfer_id: review for review in (await session.scalars(
        select(TransactionReview).where(TransactionReview.transfer_id.in_(ids)))).all()} if ids else {}
    return [TransactionView(t.id, t.reference, t.type, t.reference_kind, t.reference_id, states.get(t.id), t.tx_hash,
                            t.created_at, postings[t.id], reviews.get(t.id)) for t in transfers]


async def get(session: AsyncSession, transfer_id: uuid.UUID) -> TransactionView:
    row = (await session.execute(select(LedgerTransfer, _object_state().label("object_state"))
                                 .where(LedgerTransfer.id == transfer_id))).first()
    if row is None:
        raise NotFound("No such transaction.", code="transaction_not_found")
    return (await _views(session, [row.LedgerTransfer], {transfer_id: row.object_state}))[0]


async def _transfer_exists(session: AsyncSession, transfer_id: uuid.UUID) -> None:
    if await session.scalar(select(LedgerTransfer.id).where(LedgerTransfer.id == transfer_id)) is None:
        raise NotFound("No such transaction.", code="transaction_not_found")


async def flag(session: AsyncSession, transfer_id: uuid.UUID, reason: str, actor: uuid.UUID | None) -> TransactionView:
    """Open a review (staff, or a rule with ``actor=None``); a resolved one may be flagged again."""
    await _transfer_exists(session, transfer_id)
    review = await session.get(TransactionReview, transfer_id, with_for_update=True)
    now = utcnow()
    if review is None:
        session.add(TransactionReview(transfer_id=transfer_id, state="flagged", reason=reason, flagged_by=actor,
                                      flagged_at=now))
    elif review.state == "flagged":
        raise AlreadyFlagged(details={"flagged_at": review.flagged_at.isoformat()})
    else:
        review.state, review.reason, review.flagged_by, review.flagged_at = "flagged", reason, actor, now
        review.resolution_note = review.resolved_by = review.resolved_at = None
    await session.flush()
    await audit.append(session, AGGREGATE, transfer_id, "transaction.flagged", {"reason": reason}, actor=actor)
    return await get(session, transfer_id)


async def resolve(session: AsyncSession, transfer_id: uuid.UUID, resolution: str, note: str,
                  actor: uuid.UUID) -> TransactionView:
    """Close a flagged review once: ``cleared`` or ``reported`` (to the regulator)."""
    await _transfer_exists(session, transfer_id)
    review = await session.get(TransactionReview, transfer_id, with_for_update=True)
    if review is None:
        raise NotFlagged()
    if review.state != "flagged":
        raise AlreadyResolved(details={"state": review.state})
    # Clearing (or reporting) one's own money would make the officer their own reviewer.
    if await session.scalar(select(LedgerPosting.transfer_id)
                            .join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
                            .where(LedgerPosting.transfer_id == transfer_id, LedgerAccount.user_id == actor)
                            .limit(1)) is not None:
        raise OwnTransaction()
    review.state, review.resolution_note, review.resolved_by, review.resolved_at = resolution, note, actor, utcnow()
    await session.flush()
    await audit.append(session, AGGREGATE, transfer_id, f"transaction.{resolution}", {"note": note}, actor=actor)
    return await get(session, transfer_id)

