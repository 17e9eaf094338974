"""The double-entry ledger: transfers, two-phase holds, balances and activity.

Rules (DESIGN.md, "Money"):

- A transfer is a set of postings summing to zero per currency, written together with the
  account balance updates in the caller's transaction (services only flush; the boundary commits).
- A business ``reference`` posts once: the same reference with the same content returns the
  existing transfer (``replayed=True``) and changes nothing; with other content it is a
  ``Conflict`` (``reference_conflict``). A retried message therefore cannot post twice.
- User ``available``/``held`` balances never go negative: the service refuses first
  (``InsufficientFunds``, before writing any transfer, posting or balance), a CHECK refuses always.
  System accounts (``chain_deposits``, ``fees``, ``escrow``…) are the other side and may go negative.
- Holds are two-phase (TigerBeetle's pending transfers): ``hold`` moves available → held,
  ``post_hold`` settles it (in full or part, optionally with a fee; the rest returns to available),
  ``void_hold`` returns it. A hold resolves exactly once (row lock + a partial UNIQUE index).
  Only holds touch ``held`` accounts, so a user's held balance is the sum of their pending holds.

Concurrency: a transfer is one call of ``ledger_post()`` (migration 0033), one round trip. It
creates the missing accounts with ``INSERT … ON CONFLICT DO NOTHING`` (which holds no lock on rows
that already exist), in one fixed order of account keys, then locks them all with
``SELECT … ORDER BY id FOR UPDATE``: every transaction takes its account locks in the same order, so
two transfers never deadlock on each other, first use of a brand-new account included. Settling a
hold is one call of ``ledger_resolve_hold()``, which locks the hold's own row before its accounts.
The funds check reads the locked balances; then the same call writes the transfer, its postings,
the balances and the hold. The rules stay here: the functions check and write what they are given
(a settlement's legs, which follow from the hold, are derived there as ``post_hold`` says).

Activity (``activity``) is derived from the postings on the user's **available** accounts: it is
the story of spendable money. Placing a hold shows as ``out`` when the money stops being
spendable (an escrow funding, a withdrawal request); a void — or the unused part of a partial
post — shows as ``in`` when it comes back; settling a hold moves held money, so it adds no line.
Pages are newest first with a keyset cursor on (created_at, posting id): stable under concurrent
inserts, unlike offsets (no line is shown twice or shifted between pages).
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import Conflict, InsufficientFunds, InvalidInput, NotFound
from core.money import MAX_MINOR, format_amount, parse_amount
from core.pagination import keyset_before, next_page
from custody.ledger.models import Currency, LedgerAccount, LedgerPosting, LedgerTransfer

AVAILABLE, HELD = "available", "held"
SANDBOX_FUNDING, FEES = "sandbox_funding", "fees"
MAX_PAGE = 100

_SYSTEM_NAME = re.compile(r"[a-z][a-z0-9_.:-]{0,59}")


# --- values -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AccountRef:
    """Names an account up to its currency: a user's ``available``/``held``, or a system account."""

    kind: str
    user_id: uuid.UUID | None = None

    @classmethod
    def user(cls, user_id: uuid.UUID, kind: str = AVAILABLE) -> AccountRef:
        return cls(kind, user_id).checked()

    @classmethod
    def system(cls, name: str) -> AccountRef:
        return cls(name, None).checked()

    def checked(self) -> AccountRef:
        if self.is_user:
            if self.kind not in (AVAILABLE, HELD):
                raise InvalidInput(f"A user account is {AVAILABLE!r} or {HELD!r}, not {self.kind!r}.",
                                   code="invalid_account")
        elif not isinstance(self.kind, str) or not _SYSTEM_NAME.fullmatch(self.kind) or self.kind in (AVAILABLE, HELD):
            raise InvalidInput(f"{self.kind!r} is not a system account name.", code="invalid_account")
        return self

    @property
    def is_user(self) -> bool:
        return self.user_id is not None

    def describe(self, currency: str) -> str:
        owner = f"user {self.user_id}" if self.is_user else "system"
        return f"{owner} {self.kind} {currency}"


@dataclass(frozen=True)
class Leg:
    """One side of a transfer: ``amount`` > 0 credits ``account``, < 0 debits it (minor units)."""

    account: AccountRef
    currency: str
    amount: int


@dataclass(frozen=True)
class CurrencyInfo:
    code: str
    decimals: int
    kind: str  # fiat | native | token
    chains: tuple[str, ...]

    def parse(self, text: str, *, allow_zero: bool = False) -> int:
        return parse_amount(text, self.decimals, allow_zero=allow_zero)

    def format(self, minor: int) -> str:
        return format_amount(minor, self.decimals, fixed=self.kind == "fiat")


@dataclass(frozen=True)
class Transfer:
    id: uuid.UUID
    reference: str
    type: str
    reference_kind: str | None
    reference_id: str | None
    tx_hash: str | None
    hold_id: uuid.UUID | None
    created_at: datetime
    replayed: bool = False  # True when the reference had already posted: nothing changed


@dataclass(frozen=True)
class Hold:
    id: uuid.UUID
    reference: str
    user_id: uuid.UUID
    currency: str
    amount: int
    state: str  # pending | posted | voided
    posted_amount: int | None
    fee: int | None
    created_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class Balance:
    currency: CurrencyInfo
    available: int
    held: int

    @property
    def total(self) -> int:
        return self.available + self.held


@dataclass(frozen=True)
class ActivityItem:
    id: uuid.UUID  # the posting's
    type: str
    currency: CurrencyInfo
    amount: int  # positive; see direction
    direction: Literal["in", "out"]
    reference_kind: str | None
    reference_id: str | None
    tx_hash: str | None
    created_at: datetime


@dataclass(frozen=True)
class ActivityPage:
    items: list[ActivityItem]
    next_cursor: str | None


class ReferenceConflict(Conflict):
    code, message = "reference_conflict", "This reference already posted a different transfer."


class HoldAlreadyResolved(Conflict):
    code, message = "hold_already_resolved", "This hold has already been posted or voided."


# --- currencies ---------------------------------------------------------------------------------

# Decimals fix the meaning of every stored amount, so a currency never changes once seeded:
# caching what was read is safe; an unknown code is looked up again (currencies are data).
_currencies: dict[str, CurrencyInfo] = {}


async def currencies(session: AsyncSession, codes: Iterable[str] | None = None) -> dict[str, CurrencyInfo]:
    """The named currencies (all when ``codes`` is None); an unknown code is a 422."""
    wanted = None if codes is None else set(codes)
    if wanted is None or not wanted <= _currencies.keys():
        query = select(Currency) if wanted is None else select(Currency).where(Currency.code.in_(wanted))
        for row in await session.scalars(query):
            _currencies[row.code] = CurrencyInfo(row.code, row.decimals, row.kind, tuple(row.chains))
    if wanted is None:
        return dict(sorted(_currencies.items()))
    unknown = sorted(wanted - _currencies.keys())
    if unknown:
        raise InvalidInput(f"Unknown currency {unknown[0]!r}.", code="unknown_currency", details={"currency": unknown[0]})
    return {code: _currencies[code] for code in sorted(wanted)}


async def currency(session: AsyncSession, code: str) -> CurrencyInfo:
    return (await currencies(session, [code]))[code]


# --- transfers ----------------------------------------------------------------------------------

Key = tuple[AccountRef, str]  # (account, currency)


def _ordered(keys: Iterable[Key]) -> list[Key]:
    """A fixed order for a transfer's accounts (user ids are UUIDs, system accounts have none)."""
    return sorted(keys, key=lambda key: (key[0].kind, str(key[0].user_id or ""), key[1]))


@dataclass(frozen=True)
class _Plan:
    """What one transfer writes, validated and netted per account."""

    reference: str
    type: str
    legs: dict[Key, int]
    reference_kind: str | None
    reference_id: str | None
    tx_hash: str | None
    hold_id: uuid.UUID | None = None  # the hold this transfer creates (new_hold)
    new_hold: tuple[uuid.UUID, str, int] | None = None  # (user_id, currency, amount); the transfer id is hold_id


def _text_field(name: str, value: str | None, limit: int, *, required: bool = False) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidInput(f"{name} must be a string of 1 to {limit} characters.", code=f"invalid_{name}")


def _amount(value: Any, name: str = "amount", *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} is an int of minor units.", code="invalid_amount")
    if value < 0 or (value == 0 and not allow_zero) or value > MAX_MINOR:
        raise InvalidInput(f"{name} must be {'≥' if allow_zero else '>'} 0 and fit 256 bits.", code="invalid_amount",
                           details={name: str(value)})
    return value


async def _plan(session: AsyncSession, *, reference: str, type: str, legs: Sequence[Leg], reference_kind: str | None,
                reference_id: str | None, tx_hash: str | None, allow_held: bool = False, **extra: Any) -> _Plan:
    _text_field("reference", reference, 200, required=True)
    _text_field("type", type, 40, required=True)
    _text_field("reference_kind", reference_kind, 40)
    _text_field("reference_id", reference_id, 100)
    _text_field("tx_hash", tx_hash, 100)
    netted: dict[Key, int] = defaultdict(int)
    for leg in legs:
        if isinstance(leg.amount, bool) or not isinstance(leg.amount, int) or abs(leg.amount) > MAX_MINOR:
            raise InvalidInput("A leg's amount is an int of minor units that fits 256 bits.", code="invalid_amount")
        leg.account.checked()
        if leg.account.is_user and leg.account.kind == HELD and not allow_held:
            raise InvalidInput("Held balances move only through holds.", code="held_account_reserved")
        netted[(leg.account, leg.currency)] += leg.amount
    nonzero = {key: amount for key, amount in netted.items() if amount}
    if not nonzero:
        raise InvalidInput("A transfer moves money: its legs are empty or cancel out.", code="empty_transfer")
    await currencies(session, {currency for _, currency in nonzero})
    sums: dict[str, int] = defaultdict(int)
    for (_, code), amount in nonzero.items():
        sums[code] += amount
    unbalanced = {code: total for code, total in sums.items() if total}
    if unbalanced:
        raise InvalidInput("A transfer's legs must sum to zero per currency.", code="unbalanced_transfer",
                           details={"unbalanced": {code: str(total) for code, total in sorted(unbalanced.items())}})
    return _Plan(reference, type, nonzero, reference_kind, reference_id, tx_hash, **extra)


def _account_match(key: Key) -> Any:
    account, code = key
    if account.is_user:
        return and_(LedgerAccount.owner_type == "user", LedgerAccount.user_id == account.user_id,
                    LedgerAccount.kind == account.kind, LedgerAccount.currency == code)
    return and_(LedgerAccount.owner_type == "system", LedgerAccount.kind == account.kind,
                LedgerAccount.currency == code)


def _key_of(owner_type: str, user_id: uuid.UUID | None, kind: str, code: str) -> Key:
    return (AccountRef(kind, user_id if owner_type == "user" else None), code)


def _insufficient(kind: str, code: str, balance: int, needed: int) -> InsufficientFunds:
    info = _currencies[code]
    return InsufficientFunds(
        f"Not enough {kind} {code}: {info.format(balance)} there, {info.format(needed)} needed.",
        details={"currency": code, "account": kind, "balance": info.format(balance), "required": info.format(needed)},
    )


# One round trip per transfer: ledger_post() (migration 0033) creates the missing accounts, locks
# them in id order, refuses a user balance below zero, then writes the transfer (once per
# reference), its postings, the balances and the hold. It checks and writes only what the plan
# says: the rules are the ones above.
_POST = text(
    "SELECT outcome, posted_at, short_leg, short_balance FROM ledger_post("
    "CAST(:id AS uuid), :reference, :type, :reference_kind, :reference_id, :tx_hash, CAST(:hold_id AS uuid),"
    " CAST(:owner_types AS varchar[]), CAST(:user_ids AS uuid[]), CAST(:kinds AS varchar[]),"
    " CAST(:currencies AS varchar[]), CAST(:amounts AS numeric[]), :hold_action, CAST(:hold_user_id AS uuid),"
    " :hold_currency, CAST(:hold_amount AS numeric), :hold_state, CAST(:posted_amount AS numeric),"
    " CAST(:fee AS numeric))"
)


async def _post(session: AsyncSession, plan: _Plan) -> Transfer:
    transfer_id = plan.hold_id if plan.new_hold and plan.hold_id else uuid.uuid4()
    keys = _ordered(plan.legs)
    params: dict[str, Any] = {
        "id": transfer_id, "reference": plan.reference, "type": plan.type, "reference_kind": plan.reference_kind,
        "reference_id": plan.reference_id, "tx_hash": plan.tx_hash, "hold_id": plan.hold_id,
        "owner_types": ["user" if account.is_user else "system" for account, _ in keys],
        "user_ids": [account.user_id for account, _ in keys], "kinds": [account.kind for account, _ in keys],
        "currencies": [code for _, code in keys], "amounts": [plan.legs[key] for key in keys],
        "hold_action": None, "hold_user_id": None, "hold_currency": None, "hold_amount": None, "hold_state": None,
        "posted_amount": None, "fee": None,
    }
    if plan.new_hold:
        params["hold_action"] = "create"
        params["hold_user_id"], params["hold_currency"], params["hold_amount"] = plan.new_hold
    row = (await session.execute(_POST, params)).one()
    if row.outcome == "posted":
        return Transfer(transfer_id, plan.reference, plan.type, plan.reference_kind, plan.reference_id, plan.tx_hash,
                        plan.hold_id, row.posted_at)
    # The reference had posted (perhaps concurrently): a replay or a conflict. A retry of a transfer
    # that already posted is a replay even when the money has moved on since (a refusal now).
    existing = await _replay(session, plan)
    if existing is not None:
        return existing
    if row.outcome == "insufficient":
        (account, code) = key = keys[row.short_leg - 1]
        raise _insufficient(account.kind, code, int(row.short_balance), -plan.legs[key])
    raise RuntimeError(f"transfer {plan.reference!r} conflicted but cannot be read back")


async def _replay(session: AsyncSession, plan: _Plan) -> Transfer | None:
    """The transfer already posted under ``plan.reference`` if its content is the same; a conflict if not."""
    existing = await session.scalar(select(LedgerTransfer).where(LedgerTransfer.reference == plan.reference))
    if existing is None:
        return None
    rows = await session.execute(
        select(LedgerAccount.owner_type, LedgerAccount.user_id, LedgerAccount.kind, LedgerPosting.currency,
               LedgerPosting.amount)
        .join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
        .where(LedgerPosting.transfer_id == existing.id)
    )
    legs = {_key_of(row.owner_type, row.user_id, row.kind, row.currency): row.amount for row in rows}
    # A replayed hold creation has its own id, not the one this attempt would have used.
    same_hold = existing.hold_id == existing.id if plan.new_hold else existing.hold_id == plan.hold_id
    same = same_hold and legs == plan.legs and (
        (existing.type, existing.reference_kind, existing.reference_id, existing.tx_hash)
        == (plan.type, plan.reference_kind, plan.reference_id, plan.tx_hash)
    )
    if not same:
        raise ReferenceConflict(details={"reference": plan.reference, "transfer_id": str(existing.id)})
    return Transfer(existing.id, existing.reference, existing.type, existing.reference_kind, existing.reference_id,
                    existing.tx_hash, existing.hold_id, existing.created_at, replayed=True)


async def transfer(session: AsyncSession, *, reference: str, type: str, legs: Sequence[Leg],
                   reference_kind: str | None = None, reference_id: str | None = None,
                   tx_hash: str | None = None) -> Transfer:
    """Post a balanced set of legs once per ``reference`` (see the module docstring)."""
    plan = await _plan(session, reference=reference, type=type, legs=legs, reference_kind=reference_kind,
                       reference_id=reference_id, tx_hash=tx_hash)
    return await _post(session, plan)


async def move(session: AsyncSession, *, reference: str, type: str, source: AccountRef, destination: AccountRef,
               currency: str, amount: int, reference_kind: str | None = None, reference_id: str | None = None,
               tx_hash: str | None = None) -> Transfer:
    """A two-leg transfer of ``amount`` minor units from ``source`` to ``destination``."""
    _amount(amount)
    return await transfer(session, reference=reference, type=type, reference_kind=reference_kind,
                          reference_id=reference_id, tx_hash=tx_hash,
                          legs=[Leg(source, currency, -amount), Leg(destination, currency, amount)])


# --- holds --------------------------------------------------------------------------------------

async def hold(session: AsyncSession, reference: str, user_id: uuid.UUID, currency: str, amount: int, *,
               type: str = "hold", reference_kind: str | None = None, reference_id: str | None = None) -> Hold:
    """Move ``amount`` from the user's available to held, pending a post or a void. Idempotent per reference."""
    _text_field("reference", reference, 190)  # room for the ":post" / ":void" of its resolution
    _amount(amount)
    legs = [Leg(AccountRef.user(user_id), currency, -amount), Leg(AccountRef.user(user_id, HELD), currency, amount)]
    plan = await _plan(session, reference=reference, type=type, legs=legs, reference_kind=reference_kind,
                       reference_id=reference_id, tx_hash=None, allow_held=True, hold_id=uuid.uuid4(),
                       new_hold=(user_id, currency, amount))
    posted = await _post(session, plan)
    if posted.replayed:
        return await get_hold(session, posted.id)
    return Hold(posted.id, reference, user_id, currency, amount, "pending", None, None, posted.created_at, None)


_HOLD = text(
    "SELECT h.id, t.reference, h.user_id, h.currency, h.amount, h.state, h.posted_amount, h.fee, h.created_at,"
    " h.resolved_at FROM ledger_holds AS h JOIN ledger_transfers AS t ON t.id = h.id WHERE h.id = :id"
)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


async def get_hold(session: AsyncSession, hold_id: uuid.UUID) -> Hold:
    row = (await session.execute(_HOLD, {"id": hold_id})).first()
    if row is None:
        raise NotFound("No such hold.", code="hold_not_found", details={"hold_id": str(hold_id)})
    return Hold(row.id, row.reference, row.user_id, row.currency, int(row.amount), row.state,
                _optional_int(row.posted_amount), _optional_int(row.fee), row.created_at, row.resolved_at)


# One round trip per settlement: ledger_resolve_hold() (migration 0033) locks the hold's row (so a
# post and a void of one hold serialize), refuses one already resolved, derives the legs from the
# hold as post_hold and void_hold describe them, and writes them with ledger_post().
_RESOLVE = text(
    "SELECT outcome, posted_at, short_balance, existing_transfer_id, hold_reference, hold_user_id, hold_currency,"
    " hold_amount, hold_state, hold_created_at, hold_posted_amount FROM ledger_resolve_hold("
    "CAST(:hold_id AS uuid), CAST(:transfer_id AS uuid), :state, :type, :reference, :reference_kind, :reference_id,"
    " :tx_hash, :destination_owner_type, CAST(:destination_user_id AS uuid), :destination_kind,"
    " CAST(:amount AS numeric), CAST(:fee AS numeric), :fee_kind)"
)

_OWN_ACCOUNT = ("A hold settles to another user's available account or a system account; to return it to its owner, "
                "void it.")


async def _resolve(session: AsyncSession, hold_id: uuid.UUID, state: str, *, type: str, reference: str | None,
                   reference_kind: str | None = None, reference_id: str | None = None, tx_hash: str | None = None,
                   destination: AccountRef | None = None, amount: int | None = None, fee: int | None = None,
                   fee_account: AccountRef | None = None) -> Hold:
    """Post (``state`` "posted") or void a pending hold, refusing as the module docstring says."""
    _text_field("type", type, 40, required=True)
    _text_field("reference", reference or None, 200)
    _text_field("reference_kind", reference_kind or None, 40)
    _text_field("reference_id", reference_id or None, 100)
    _text_field("tx_hash", tx_hash, 100)
    row = (await session.execute(_RESOLVE, {
        "hold_id": hold_id, "transfer_id": uuid.uuid4(), "state": state, "type": type, "reference": reference or None,
        "reference_kind": reference_kind or None, "reference_id": reference_id or None, "tx_hash": tx_hash,
        "destination_owner_type": None if destination is None else "user" if destination.is_user else "system",
        "destination_user_id": None if destination is None else destination.user_id,
        "destination_kind": None if destination is None else destination.kind, "amount": amount, "fee": fee,
        "fee_kind": None if fee_account is None else fee_account.kind,
    })).one()
    details: dict[str, Any] = {"hold_id": str(hold_id)}
    if row.outcome == "posted":
        posted_amount = None if state == "voided" else int(row.hold_posted_amount)
        return Hold(hold_id, row.hold_reference, row.hold_user_id, row.hold_currency, int(row.hold_amount), state,
                    posted_amount, fee if state == "posted" else None, row.hold_created_at, row.posted_at)
    if row.outcome == "not_found":
        raise NotFound("No such hold.", code="hold_not_found", details=details)
    if row.outcome == "already_resolved":
        raise HoldAlreadyResolved(details={**details, "state": row.hold_state})
    if row.outcome == "invalid_amount":
        _amount(int(row.hold_posted_amount))  # all but the fee is not > 0: refused as that amount would be
    if row.outcome == "exceeds_hold":
        raise InvalidInput("The posted amount and fee exceed the hold.", code="amount_exceeds_hold",
                           details={"hold": str(row.hold_amount), "amount": str(row.hold_posted_amount),
                                    "fee": str(fee)})
    if row.outcome == "own_account":
        # Money back to its owner is a void; keeping them apart keeps every hold auditable.
        raise InvalidInput(_OWN_ACCOUNT, code="invalid_account")
    if row.outcome == "exists":
        suffix = ":post" if state == "posted" else ":void"
        raise ReferenceConflict(details={"reference": reference or f"{row.hold_reference}{suffix}",
                                         "transfer_id": str(row.existing_transfer_id)})
    if row.outcome == "insufficient":  # the held balance is short of a pending hold: the books are broken
        await currency(session, row.hold_currency)
        raise _insufficient(HELD, row.hold_currency, int(row.short_balance), int(row.hold_amount))
    raise RuntimeError(f"hold {hold_id}: unexpected outcome {row.outcome!r}")


async def post_hold(session: AsyncSession, hold_id: uuid.UUID, destination: AccountRef, amount: int | None = None,
                    *, fee: int | None = None, fee_account: AccountRef | None = None, type: str = "hold_post",
                    reference: str | None = None, reference_kind: str | None = None, reference_id: str | None = None,
                    tx_hash: str | None = None) -> Hold:
    """Settle a pending hold: ``amount`` (default: all but the fee; > 0) to ``destination``, ``fee`` to
    ``fee_account`` (default: the system ``fees`` account), the rest back to the owner's available.
    Amount and fee together never exceed the hold. The destination is another user's available
    account or a system account: money back to its owner is a void. The transfer's reference is
    the hold's followed by ":post", its object the hold's, unless given."""
    fee = _amount(fee or 0, "fee", allow_zero=True)
    if amount is not None:
        _amount(amount)
    destination.checked()
    if destination.is_user and destination.kind == HELD:
        raise InvalidInput(_OWN_ACCOUNT, code="invalid_account")
    fee_account = (fee_account or AccountRef.system(FEES)).checked()
    if fee and fee_account.is_user:
        raise InvalidInput("A fee goes to a system account.", code="invalid_account")
    return await _resolve(session, hold_id, "posted", type=type, reference=reference, reference_kind=reference_kind,
                          reference_id=reference_id, tx_hash=tx_hash, destination=destination, amount=amount, fee=fee,
                          fee_account=fee_account)


async def void_hold(session: AsyncSession, hold_id: uuid.UUID, *, type: str = "hold_void",
                    reference: str | None = None) -> Hold:
    """Return a pending hold to the owner's available balance. The transfer's reference is the
    hold's followed by ":void", its object the hold's, unless given."""
    return await _resolve(session, hold_id, "voided", type=type, reference=reference)


# --- reads --------------------------------------------------------------------------------------

async def check_available(session: AsyncSession, user_id: uuid.UUID, code: str, amount: int) -> None:
    """Refuse now, as a hold of ``amount`` would (``InsufficientFunds``), when the user's available ``code``
    is short. A read without a lock, for a caller whose refusals come in an order: the hold decides."""
    await currency(session, code)  # loads what the refusal formats its amounts with
    account = (AccountRef.user(user_id), code)
    balance = await session.scalar(select(LedgerAccount.balance).where(_account_match(account))) or 0
    if balance < amount:
        raise _insufficient(AVAILABLE, code, balance, amount)


# The read of every GET /wallet/balances, a Core statement on the table built once: no ORM
# compilation or result handling per request.
_ACCOUNT = LedgerAccount.__table__.c
_USER_BALANCES = select(_ACCOUNT.currency, _ACCOUNT.kind, _ACCOUNT.balance).where(
    _ACCOUNT.owner_type == "user", _ACCOUNT.user_id == bindparam("user_id"))


async def balances(session: AsyncSession, user_id: uuid.UUID) -> list[Balance]:
    """Every currency the user has touched, plus USD always; by currency code."""
    rows = await session.execute(_USER_BALANCES, {"user_id": user_id})
    amounts: dict[str, dict[str, int]] = {"USD": {AVAILABLE: 0, HELD: 0}}
    for row in rows:
        amounts.setdefault(row.currency, {AVAILABLE: 0, HELD: 0})[row.kind] = row.balance
    info = await currencies(session, amounts)
    return [Balance(info[code], amounts[code][AVAILABLE], amounts[code][HELD]) for code in sorted(amounts)]


async def activity(session: AsyncSession, user_id: uuid.UUID, *, currency: str | None = None, limit: int = 50,
                   cursor: str | None = None) -> ActivityPage:
    """The user's movements of available money, newest first (see the module docstring)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}.", code="invalid_limit")
    accounts = select(LedgerAccount.id).where(LedgerAccount.owner_type == "user", LedgerAccount.user_id == user_id,
                                              LedgerAccount.kind == AVAILABLE)
    if currency is not None:
        await currencies(session, [currency])
        accounts = accounts.where(LedgerAccount.currency == currency)
    query = (
        select(LedgerPosting.id, LedgerPosting.currency, LedgerPosting.amount, LedgerPosting.created_at,
               LedgerTransfer.type, LedgerTransfer.reference_kind, LedgerTransfer.reference_id, LedgerTransfer.tx_hash)
        .join(LedgerTransfer, LedgerTransfer.id == LedgerPosting.transfer_id)
        .where(LedgerPosting.account_id.in_(accounts))
        .order_by(LedgerPosting.created_at.desc(), LedgerPosting.id.desc())
        .limit(limit + 1)
    )
    if cursor:
        query = query.where(keyset_before(cursor, LedgerPosting.created_at, LedgerPosting.id))
    rows, next_cursor = next_page(list(await session.execute(query)), limit)
    info = await currencies(session, {row.currency for row in rows})
    items = [
        ActivityItem(row.id, row.type, info[row.currency], abs(row.amount), "in" if row.amount > 0 else "out",
                     row.reference_kind, row.reference_id, row.tx_hash, row.created_at)
        for row in rows
    ]
    return ActivityPage(items, next_cursor)


# --- sandbox ------------------------------------------------------------------------------------

async def sandbox_credit(session: AsyncSession, user_id: uuid.UUID, spec: str) -> list[Transfer]:
    """Credit play money from the system ``sandbox_funding`` account: ``spec`` is ``"USD:10000.00"``
    or a comma-separated list of such. Once per (user, currency): a replay changes nothing."""
    wanted: dict[str, str] = {}
    for part in spec.split(","):
        code, sep, amount = part.strip().partition(":")
        if not sep or not code or code in wanted:
            raise InvalidInput(f"Sandbox credit {part.strip()!r} is not CURRENCY:AMOUNT (each currency once).",
                               code="invalid_sandbox_credit")
        wanted[code] = amount
    info = await currencies(session, wanted)
    amounts = {code: info[code].parse(amount) for code, amount in wanted.items()}
    posted = [
        await move(session, reference=f"sandbox:{user_id}:{code}", type="sandbox_credit",
                   source=AccountRef.system(SANDBOX_FUNDING), destination=AccountRef.user(user_id), currency=code,
                   amount=amount, reference_kind="user", reference_id=str(user_id))
        for code, amount in amounts.items()
    ]
    credited = [{"currency": code, "amount": info[code].format(amounts[code])}
                for code, credit in zip(amounts, posted, strict=True) if not credit.replayed]
    if credited:
        await audit.append(session, "user", user_id, "ledger.sandbox_credited", {"credits": credited})
    return posted
