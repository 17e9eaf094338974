"""Prove the books: recompute every invariant from the postings and name what does not hold.

Each check is one SQL statement, so each is consistent on its own even while transfers commit;
``virtuoz ledger verify`` runs them all in one REPEATABLE READ snapshot. Amounts in the
problems are minor units (cents, wei), exactly as stored.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


def _account(row: Any) -> str:
    owner = f"user {row.user_id}" if row.owner_type == "user" else "system"
    return f"account {row.id} ({owner} {row.kind} {row.currency})"


_CURRENCY_SUMS = text(
    "SELECT currency, sum(amount) AS total FROM ledger_postings GROUP BY currency HAVING sum(amount) <> 0"
    " ORDER BY currency"
)
_UNBALANCED_TRANSFERS = text(
    "SELECT p.transfer_id, t.reference, p.currency, sum(p.amount) AS total"
    " FROM ledger_postings AS p JOIN ledger_transfers AS t ON t.id = p.transfer_id"
    " GROUP BY p.transfer_id, t.reference, p.currency HAVING sum(p.amount) <> 0 ORDER BY t.reference"
)
_EMPTY_TRANSFERS = text(
    "SELECT t.id, t.reference FROM ledger_transfers AS t"
    " WHERE NOT EXISTS (SELECT 1 FROM ledger_postings AS p WHERE p.transfer_id = t.id) ORDER BY t.reference"
)
_BALANCE_DRIFT = text(
    "SELECT a.id, a.owner_type, a.user_id, a.kind, a.currency, a.balance, coalesce(s.total, 0) AS total"
    " FROM ledger_accounts AS a"
    " LEFT JOIN (SELECT account_id, sum(amount) AS total FROM ledger_postings GROUP BY account_id) AS s"
    " ON s.account_id = a.id"
    " WHERE a.balance <> coalesce(s.total, 0) ORDER BY a.id"
)
_NEGATIVE_USERS = text(
    "SELECT id, owner_type, user_id, kind, currency, balance FROM ledger_accounts"
    " WHERE owner_type = 'user' AND balance < 0 ORDER BY id"
)
_CURRENCY_MISMATCH = text(
    "SELECT p.id, p.currency AS posting_currency, a.id AS account_id, a.currency"
    " FROM ledger_postings AS p JOIN ledger_accounts AS a ON a.id = p.account_id"
    " WHERE p.currency <> a.currency ORDER BY p.id"
)
# A hold's creating transfer: exactly its user's available −amount and held +amount, in its currency.
_HOLD_CREATION = text(
    """
    SELECT h.id, t.hold_id, h.amount, count(p.id) AS postings,
        coalesce(sum(p.amount) FILTER (WHERE a.user_id = h.user_id AND a.kind = 'available'
                                       AND p.currency = h.currency), 0) AS available,
        coalesce(sum(p.amount) FILTER (WHERE a.user_id = h.user_id AND a.kind = 'held'
                                       AND p.currency = h.currency), 0) AS held
    FROM ledger_holds AS h
    JOIN ledger_transfers AS t ON t.id = h.id
    LEFT JOIN ledger_postings AS p ON p.transfer_id = h.id
    LEFT JOIN ledger_accounts AS a ON a.id = p.account_id
    GROUP BY h.id, t.hold_id, h.amount
    HAVING t.hold_id IS DISTINCT FROM h.id OR count(p.id) <> 2
        OR coalesce(sum(p.amount) FILTER (WHERE a.user_id = h.user_id AND a.kind = 'available'
                                          AND p.currency = h.currency), 0) <> -h.amount
        OR coalesce(sum(p.amount) FILTER (WHERE a.user_id = h.user_id AND a.kind = 'held'
                                          AND p.currency = h.currency), 0) <> h.amount
    ORDER BY h.id
    """
)
_HOLD_RESOLUTIONS = text(
    "SELECT h.id, h.state, count(t.id) AS resolutions FROM ledger_holds AS h"
    " LEFT JOIN ledger_transfers AS t ON t.hold_id = h.id AND t.id <> h.id"
    " GROUP BY h.id, h.state"
    " HAVING count(t.id) <> CASE WHEN h.state = 'pending' THEN 0 ELSE 1 END ORDER BY h.id"
)
# A resolving transfer: held −amount; voided → available +amount; posted → available gets back
# amount − posted − fee, and the rest (posted + fee) goes elsewhere.
_HOLD_SETTLEMENT = text(
    """
    SELECT h.id, h.state, h.amount, h.posted_amount, h.fee,
        coalesce(sum(p.amount) FILTER (WHERE a.user_id = h.user_id AND a.kind = 'held'), 0) AS held,
        coalesce(sum(p.amount) FILTER (WHERE a.user_id = h.user_id AND a.kind = 'available'), 0) AS available,
        coalesce(sum(p.amount) FILTER (WHERE a.user_id IS DISTINCT FROM h.user_id), 0) AS elsewhere,
        bool_and(p.currency = h.currency) AS same_currency
    FROM ledger_holds AS h
    JOIN ledger_transfers AS t ON t.hold_id = h.id AND t.id <> h.id
    JOIN ledger_postings AS p ON p.transfer_id = t.id
    JOIN ledger_accounts AS a ON a.id = p.account_id
    GROUP BY h.id, h.state, h.amount, h.posted_amount, h.fee
    ORDER BY h.id
    """
)
_HELD_VS_PENDING = text(
    """
    SELECT coalesce(a.user_id, x.user_id) AS user_id, coalesce(a.currency, x.currency) AS currency,
        a.id AS account_id, coalesce(a.balance, 0) AS balance, coalesce(x.pending, 0) AS pending
    FROM (SELECT id, user_id, currency, balance FROM ledger_accounts
          WHERE owner_type = 'user' AND kind = 'held') AS a
    FULL JOIN (SELECT user_id, currency, sum(amount) AS pending FROM ledger_holds
               WHERE state = 'pending' GROUP BY user_id, currency) AS x
        ON x.user_id = a.user_id AND x.currency = a.currency
    WHERE coalesce(a.balance, 0) <> coalesce(x.pending, 0)
    ORDER BY 1, 2
    """
)


def _minor(value: Any) -> str:
    # asyncpg reads NUMERIC as a Decimal that may print as -2.000E+19: amounts are whole minor units.
    return str(int(value))


async def verify_ledger(session: AsyncSession) -> list[str]:
    """Every broken invariant, one line each naming the rows; empty when the books hold."""
    problems: list[str] = []

    async def rows(query: Any) -> list[Any]:
        return list(await session.execute(query))

    for row in await rows(_CURRENCY_SUMS):
        problems.append(f"currency {row.currency}: postings sum to {_minor(row.total)}, not 0")
    for row in await rows(_UNBALANCED_TRANSFERS):
        problems.append(f"transfer {row.transfer_id} ({row.reference}): {row.currency} postings sum to {_minor(row.total)}, not 0")
    for row in await rows(_EMPTY_TRANSFERS):
        problems.append(f"transfer {row.id} ({row.reference}) has no postings")
    for row in await rows(_BALANCE_DRIFT):
        problems.append(f"{_account(row)}: balance {_minor(row.balance)} but its postings sum to {_minor(row.total)}")
    for row in await rows(_NEGATIVE_USERS):
        problems.append(f"{_account(row)}: negative user balance {_minor(row.balance)}")
    for row in await rows(_CURRENCY_MISMATCH):
        problems.append(f"posting {row.id}: currency {row.posting_currency} on account {row.account_id} "
                        f"in {row.currency}")
    for row in await rows(_HOLD_CREATION):
        problems.append(f"hold {row.id}: its creating transfer does not move exactly {_minor(row.amount)} from available "
                        f"to held ({row.postings} postings, available {row.available}, held {row.held}, "
                        f"hold_id {row.hold_id})")
    for row in await rows(_HOLD_RESOLUTIONS):
        problems.append(f"hold {row.id} ({row.state}) has {row.resolutions} resolving transfers "
                        f"(expected {0 if row.state == 'pending' else 1})")
    for row in await rows(_HOLD_SETTLEMENT):
        problems.extend(f"hold {row.id} ({row.state}): {problem}" for problem in _settlement_problems(row))
    for row in await rows(_HELD_VS_PENDING):
        problems.append(f"user {row.user_id} {row.currency}: held balance {_minor(row.balance)} "
                        f"(account {row.account_id}) but pending holds total {_minor(row.pending)}")
    return problems


def _settlement_problems(r: Any) -> list[str]:
    """What is wrong with one row of ``_HOLD_SETTLEMENT``."""
    problems = []
    if not r.same_currency:
        problems.append("its resolving transfer moves another currency")
    if r.held != -r.amount:
        problems.append(f"its resolving transfer takes {-r.held} from held, not {r.amount}")
    if r.state == "voided":
        expected_back, expected_elsewhere = r.amount, 0
    elif r.state == "posted" and r.posted_amount is not None and r.fee is not None:
        expected_back = r.amount - r.posted_amount - r.fee
        expected_elsewhere = r.posted_amount + r.fee
    else:
        return [*problems, "resolved without a recorded posted amount and fee"]
    if r.available != expected_back:
        problems.append(f"{r.available} returned to available, expected {expected_back}")
    if r.elsewhere != expected_elsewhere:
        problems.append(f"{r.elsewhere} settled to other accounts, expected {expected_elsewhere}")
    return problems


async def ledger_counts(session: AsyncSession) -> tuple[int, int]:
    """(accounts, transfers): what ``ledger verify`` reports when the books hold."""
    row = (await session.execute(text(
        "SELECT (SELECT count(*) FROM ledger_accounts) AS accounts, (SELECT count(*) FROM ledger_transfers) AS transfers"
    ))).one()
    return row.accounts, row.transfers
