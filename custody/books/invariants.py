"""The books against the tables they settle: what must agree between the ledger, the withdrawals
and the deposits, whoever edited which row.

The ledger's own checks (``custody.ledger.verify``) prove the postings add up; they cannot see
that a withdrawal marked ``confirmed`` still has its money on hold, or that a deposit row was
inflated after its credit. These checks read withdrawals and deposits, so they live above the
ledger, which never imports the domains that post to it.

Each finding has a stable name (what a runbook or an alert keys on) and the ids of the rows:

- ``withdrawal_hold_mismatch``: the hold is not the withdrawal's owner, asset and amount + fee.
- ``withdrawal_active_hold_not_pending``: a withdrawal still in progress whose hold was resolved.
- ``withdrawal_confirmed_hold_not_posted``: confirmed, but the hold is not posted as amount + fee.
- ``withdrawal_revert_hold_not_fee_posted``: mined but reverted, yet the hold is not the fee posted
  with the amount returned (or, without a fee, voided).
- ``withdrawal_hold_not_voided``: failed without a mined transaction (refused, rejected, cancelled)
  or rolled back, yet the hold is not voided.
- ``deposit_credits_unpaired``: credits minus reversals is not the one credit in force the row
  names (or none): a credit never reversed, a reversal without its credit.
- ``deposit_credit_not_in_force``: the row names a credit that is not its own, or was reversed.
- ``deposit_orphaned_credit_in_force`` (``deposit_reorged_credit_in_force``): an orphaned (reorged)
  deposit whose credit is in force with no reversal on its way. Between the scanner's commit and
  the worker's reversal the credit is still in force, with ``reversal_requested_at`` set (and sent
  again by the scanner until done): that is work in flight, not drift.
- ``deposit_credit_amount``: a credit or reversal that does not move the deposit's amount between
  the chain deposits account and its owner's available balance (or the receivable), in its asset.
- ``chain_deposits_mismatch``: the ``chain_deposits`` system account is not minus the credits in
  force (per currency).
- ``receivable_mismatch``: the ``receivable`` system account is not minus the open shortfalls, what
  reversals left owed (``deposits.receivable``) and no later credit settled (per currency).

Amounts are minor units, as stored. Each check is one statement; `virtuoz ledger verify` runs them
in one REPEATABLE READ snapshot with the ledger's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from custody.deposits.crediting import CHAIN_DEPOSITS, RECEIVABLE
from custody.deposits.models import ORPHANED, REORGED
from custody.withdrawals.states import FINAL

# What the custody worker writes when a payment was mined but reverted (custody.withdrawals.pipeline):
# the only failure in which money was spent on chain, so the only one that takes the fee.
REVERTED = "reverted"
# Ledger transfer types and the reference suffix crediting writes (custody.deposits.crediting).
CREDIT, REVERSAL, REVERSAL_SUFFIX = "deposit", "deposit_reversal", ":reversal"


@dataclass(frozen=True)
class Finding:
    """One broken invariant: its stable ``name``, the rows (``{"withdrawal": id, "hold": id}``), why."""

    name: str
    ids: Mapping[str, str]
    detail: str

    def __str__(self) -> str:
        rows = " ".join(f"{kind}={value}" for kind, value in self.ids.items())
        return f"{self.name} {rows}: {self.detail}"


_WITHDRAWALS = text(
    """
    SELECT * FROM (
        SELECT w.id, w.hold_id, w.state, w.failure_reason, w.user_id, w.asset, w.amount, w.fee,
            h.user_id AS hold_user_id, h.currency AS hold_currency, h.amount AS hold_amount, h.state AS hold_state,
            h.posted_amount, h.fee AS hold_fee,
            h.id IS NULL OR h.user_id <> w.user_id OR h.currency <> w.asset OR h.amount <> w.amount + w.fee
                AS mismatch,
            CASE
                WHEN NOT w.state = ANY(CAST(:final AS varchar[])) THEN
                    CASE WHEN h.state IS DISTINCT FROM 'pending' THEN 'withdrawal_active_hold_not_pending' END
                WHEN w.state = 'confirmed' THEN
                    CASE WHEN NOT (h.state IS NOT DISTINCT FROM 'posted'
                                   AND h.posted_amount IS NOT DISTINCT FROM w.amount
                                   AND h.fee IS NOT DISTINCT FROM w.fee)
                         THEN 'withdrawal_confirmed_hold_not_posted' END
                WHEN w.state = 'failed' AND w.failure_reason IS NOT DISTINCT FROM :reverted THEN
                    CASE WHEN NOT (CASE WHEN w.fee > 0
                                        THEN h.state IS NOT DISTINCT FROM 'posted'
                                             AND h.posted_amount IS NOT DISTINCT FROM w.fee
                                             AND h.fee IS NOT DISTINCT FROM 0
                                        ELSE h.state IS NOT DISTINCT FROM 'voided' END)
                         THEN 'withdrawal_revert_hold_not_fee_posted' END
                ELSE CASE WHEN h.state IS DISTINCT FROM 'voided' THEN 'withdrawal_hold_not_voided' END
            END AS state_finding
        FROM withdrawals AS w
        LEFT JOIN ledger_holds AS h ON h.id = w.hold_id
    ) AS checked
    WHERE mismatch OR state_finding IS NOT NULL
    ORDER BY id
    """
)

# Every credit and reversal of each deposit, with what it moved, in the deposit's asset: from or to
# the chain deposits account, the owner's available balance and the receivable; and the postings
# anywhere else. A reversal books on the receivable what the owner no longer has; a later credit's
# settlement of it is a transfer of its own, checked through the receivable's balance.
_MOVES = """
    moves AS (
        SELECT d.id AS deposit_id, t.id AS transfer_id, t.type, t.reference,
            coalesce(sum(p.amount) FILTER (WHERE a.owner_type = 'system' AND a.kind = :chain_deposits
                                           AND p.currency = d.asset), 0) AS chain_leg,
            coalesce(sum(p.amount) FILTER (WHERE a.owner_type = 'user' AND a.user_id = d.user_id
                                           AND a.kind = 'available' AND p.currency = d.asset), 0) AS owner_leg,
            coalesce(sum(p.amount) FILTER (WHERE a.owner_type = 'system' AND a.kind = :receivable
                                           AND p.currency = d.asset), 0) AS receivable_leg,
            count(p.id) FILTER (WHERE p.currency <> d.asset OR NOT (
                (a.owner_type = 'system' AND a.kind IN (:chain_deposits, :receivable))
                OR (a.owner_type = 'user' AND a.user_id = d.user_id AND a.kind = 'available'))) AS elsewhere
        FROM deposits AS d
        JOIN ledger_transfers AS t ON t.reference_kind = 'deposit' AND t.reference_id = CAST(d.id AS varchar)
            AND t.type IN (:credit, :reversal)
        JOIN ledger_postings AS p ON p.transfer_id = t.id
        JOIN ledger_accounts AS a ON a.id = p.account_id
        GROUP BY d.id, t.id, t.type, t.reference
    )"""

_DEPOSITS = text(
    "WITH" + _MOVES + """,
    tally AS (
        SELECT m.deposit_id,
            count(*) FILTER (WHERE m.type = :credit) AS credits,
            count(*) FILTER (WHERE m.type = :reversal) AS reversals,
            count(*) FILTER (WHERE m.type = :reversal AND NOT EXISTS (
                SELECT 1 FROM moves AS c WHERE c.deposit_id = m.deposit_id AND c.type = :credit
                    AND c.reference || :suffix = m.reference)) AS stray_reversals,
            count(*) FILTER (WHERE m.elsewhere > 0 OR CASE WHEN m.type = :credit
                THEN m.chain_leg <> -d.amount OR m.owner_leg < 0 OR m.receivable_leg < 0
                ELSE m.chain_leg <> d.amount OR m.owner_leg > 0 OR m.receivable_leg > 0 END) AS wrong_amounts
        FROM moves AS m JOIN deposits AS d ON d.id = m.deposit_id
        GROUP BY m.deposit_id
    )
    SELECT * FROM (
        SELECT d.id, d.state, d.amount, d.credit_transfer_id, d.reversed_at, d.reversal_requested_at,
            coalesce(x.credits, 0) AS credits, coalesce(x.reversals, 0) AS reversals,
            coalesce(x.stray_reversals, 0) AS stray_reversals, coalesce(x.wrong_amounts, 0) AS wrong_amounts,
            d.credit_transfer_id IS NOT NULL
                AND (own.transfer_id IS NULL OR EXISTS (
                    SELECT 1 FROM ledger_transfers AS undone WHERE undone.reference = own.reference || :suffix))
                AS not_in_force
        FROM deposits AS d
        LEFT JOIN tally AS x ON x.deposit_id = d.id
        LEFT JOIN moves AS own ON own.deposit_id = d.id AND own.transfer_id = d.credit_transfer_id
            AND own.type = :credit
    ) AS checked
    WHERE credits - reversals <> CASE WHEN credit_transfer_id IS NULL THEN 0 ELSE 1 END
        OR stray_reversals > 0 OR (reversed_at IS NOT NULL AND reversals = 0)
        OR not_in_force OR wrong_amounts > 0
        OR (state IN (:orphaned, :reorged) AND credit_transfer_id IS NOT NULL AND reversal_requested_at IS NULL)
    ORDER BY id
    """
)

# Per currency: the chain deposits account against the deposits whose credit is in force.
_CHAIN_DEPOSITS = text(
    """
    SELECT coalesce(a.currency, x.asset) AS currency, a.id AS account_id, coalesce(a.balance, 0) AS balance,
        coalesce(x.in_force, 0) AS in_force
    FROM (SELECT id, currency, balance FROM ledger_accounts
          WHERE owner_type = 'system' AND kind = :chain_deposits) AS a
    FULL JOIN (SELECT asset, sum(amount) AS in_force FROM deposits
               WHERE credit_transfer_id IS NOT NULL GROUP BY asset) AS x ON x.asset = a.currency
    WHERE coalesce(a.balance, 0) <> -coalesce(x.in_force, 0)
    ORDER BY 1
    """
)

# Per currency: the receivable account against what reversals left owed and no credit settled.
_RECEIVABLE = text(
    """
    SELECT coalesce(a.currency, x.asset) AS currency, a.id AS account_id, coalesce(a.balance, 0) AS balance,
        coalesce(x.owed, 0) AS owed
    FROM (SELECT id, currency, balance FROM ledger_accounts WHERE owner_type = 'system' AND kind = :receivable) AS a
    FULL JOIN (SELECT asset, sum(receivable) AS owed FROM deposits WHERE receivable <> 0 GROUP BY asset) AS x
        ON x.asset = a.currency
    WHERE coalesce(a.balance, 0) <> -coalesce(x.owed, 0)
    ORDER BY 1
    """
)

_PARAMS = {"final": sorted(FINAL), "reverted": REVERTED, "chain_deposits": CHAIN_DEPOSITS, "receivable": RECEIVABLE,
           "credit": CREDIT, "reversal": REVERSAL, "suffix": REVERSAL_SUFFIX, "orphaned": ORPHANED,
           "reorged": REORGED}


async def verify_books(session: AsyncSession) -> list[Finding]:
    """Every broken cross-table invariant, withdrawals first, then deposits, then the system accounts."""
    findings: list[Finding] = []

    async def rows(query: Any) -> list[Any]:
        return list(await session.execute(query, _PARAMS))

    for row in await rows(_WITHDRAWALS):
        findings.extend(_withdrawal_findings(row))
    for row in await rows(_DEPOSITS):
        findings.extend(_deposit_findings(row))
    for row in await rows(_CHAIN_DEPOSITS):
        findings.append(Finding("chain_deposits_mismatch", {"currency": row.currency, "account": str(row.account_id)},
                                f"balance {int(row.balance)}, but the credits in force total {int(row.in_force)}"))
    for row in await rows(_RECEIVABLE):
        findings.append(Finding("receivable_mismatch", {"currency": row.currency, "account": str(row.account_id)},
                                f"balance {int(row.balance)}, but deposits' reversals left {int(row.owed)} owed"))
    return findings


def _withdrawal_findings(row: Any) -> list[Finding]:
    """What is wrong with one row of ``_WITHDRAWALS``."""
    ids = {"withdrawal": str(row.id), "hold": str(row.hold_id)}
    found = []
    if row.mismatch:
        found.append(Finding("withdrawal_hold_mismatch", ids,
                             f"the hold is {row.hold_amount} {row.hold_currency} of user {row.hold_user_id}, the "
                             f"withdrawal {int(row.amount)} + fee {int(row.fee)} {row.asset} of user {row.user_id}"))
    if row.state_finding:
        reason = f" ({row.failure_reason})" if row.failure_reason else ""
        hold = (f"its hold is {row.hold_state}" if row.hold_state != "posted"
                else f"its hold is posted: {int(row.posted_amount)} with fee {int(row.hold_fee)}")
        found.append(Finding(row.state_finding, ids,
                             f"{row.state}{reason}, amount {int(row.amount)} fee {int(row.fee)}, but {hold}"))
    return found


def _deposit_findings(row: Any) -> list[Finding]:
    """What is wrong with one row of ``_DEPOSITS`` (a row may break several invariants at once)."""
    ids = {"deposit": str(row.id)}
    if row.credit_transfer_id is not None:
        ids["credit"] = str(row.credit_transfer_id)
    tally = f"{row.state}, {row.credits} credit(s), {row.reversals} reversal(s)"
    found = []
    if row.wrong_amounts:
        found.append(Finding("deposit_credit_amount", ids,
                             f"{row.wrong_amounts} of its credits and reversals do not move its amount "
                             f"{int(row.amount)}"))
    if row.state in (ORPHANED, REORGED) and row.credit_transfer_id is not None and row.reversal_requested_at is None:
        found.append(Finding(f"deposit_{row.state}_credit_in_force", ids,
                             f"{tally}: its credit is in force and no reversal was requested"))
    if row.not_in_force:
        found.append(Finding("deposit_credit_not_in_force", ids,
                             f"{tally}: the credit it names is not its own credit in force"))
    expected = 0 if row.credit_transfer_id is None else 1
    if (row.credits - row.reversals != expected or row.stray_reversals
            or (row.reversed_at is not None and not row.reversals)):
        found.append(Finding("deposit_credits_unpaired", ids,
                             f"{tally} ({row.stray_reversals} without their credit), but the row names "
                             f"{expected} credit in force"))
    return found


async def books_counts(session: AsyncSession) -> tuple[int, int]:
    """(withdrawals, deposits): what ``ledger verify`` reports when everything holds."""
    row = (await session.execute(text(
        "SELECT (SELECT count(*) FROM withdrawals) AS withdrawals, (SELECT count(*) FROM deposits) AS deposits"
    ))).one()
    return row.withdrawals, row.deposits
