"""Automatic rules that flag transactions for review ("Screening and review").

- ``large_transaction``: a customer movement worth at least the rules jurisdiction's
  large_transactions threshold.
- ``structuring``: three or more movements of one customer in one direction within 24 hours,
  each between 90 % and 100 % of that threshold — amounts kept just below it.
- ``sanctioned_counterparty``: the deposit's source or the withdrawal's destination is on a
  sanctions list (``compliance.screening.service``); the customer's withdrawals are also frozen
  (``custody.freezes``) until an officer lifts the freeze.
- ``travel_rule_missing``: a deposit worth at least the jurisdiction's Travel Rule threshold
  for which no counterparty VASP sent originator data (no accepted inbound Travel Rule transfer
  confirmed with the deposit's transaction hash). An unhosted wallet's deposit is flagged too:
  the officer records the originator's data, or clears it, in the review.

A sweep reads the ledger in ``(created_at, id)`` order from a stored cursor, so every transfer
is evaluated once even after downtime. It only reads transfers older than a settle delay: a
transfer stamped at time t may commit a little after t, and a cursor moved past t by then
would skip it. A rule's flag has no actor (``flagged_by`` is null) and names the rule and the
figures; a transfer already under review is not flagged again.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import String, cast, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from compliance import jurisdictions as jurisdiction_data
from compliance.movements import MOVEMENTS, Movement, movements_between
from compliance.review import service as review
from compliance.review.models import RuleCursor, TransactionReview
from compliance.screening import service as screening
from compliance.travel_rule.models import TravelRuleTransfer
from custody import freezes
from custody.deposits.models import Deposit
from custody.ledger.models import LedgerTransfer
from custody.withdrawals.models import Withdrawal

SWEEP = "transaction_rules"
STRUCTURING_COUNT = 3
STRUCTURING_FLOOR = Decimal("0.9")
WINDOW = timedelta(hours=24)
BATCH = 500


@dataclass(frozen=True)
class Finding:
    transfer_id: uuid.UUID
    rule: str
    reason: str


def evaluate(movements: list[Movement], new: set[uuid.UUID], threshold: Decimal, currency: str) -> list[Finding]:
    """The findings on the ``new`` transfers, looking back 24 h through ``movements`` (time order)."""
    findings: dict[uuid.UUID, Finding] = {}
    by_party: dict[tuple[uuid.UUID, str], list[Movement]] = defaultdict(list)
    for movement in movements:
        by_party[(movement.user_id, movement.direction)].append(movement)
        if movement.transfer_id not in new or movement.conversion is None:
            continue
        value = movement.conversion.value
        if value >= threshold:
            findings[movement.transfer_id] = Finding(
                movement.transfer_id, "large_transaction",
                f"rule large_transaction: {movement.amount_text} {movement.currency} = {value} {currency}"
                f" >= {threshold} {currency}")
            continue
        near = [m for m in by_party[(movement.user_id, movement.direction)]
                if movement.created_at - m.created_at < WINDOW and m.conversion is not None
                and threshold * STRUCTURING_FLOOR <= m.conversion.value < threshold]
        if movement in near and len(near) >= STRUCTURING_COUNT:
            findings.setdefault(movement.transfer_id, Finding(
                movement.transfer_id, "structuring",
                f"rule structuring: {len(near)} {movement.direction} movements of user {movement.user_id} within"
                f" 24 h between {threshold * STRUCTURING_FLOOR} and {threshold} {currency}"))
    return list(findings.values())


async def sweep(session: AsyncSession, now: datetime, *, jurisdiction: str, settle_seconds: float,
                jurisdictions_file: Path | None, start: datetime | None = None, name: str = SWEEP) -> list[Finding]:
    """Evaluate the transfers after the cursor (at most ``BATCH``); flag what the rules find."""
    rule = jurisdiction_data.get(jurisdiction, jurisdictions_file)
    threshold = rule.reports["large_transactions"].threshold
    cursor = await session.get(RuleCursor, name, with_for_update=True)
    horizon = now - timedelta(seconds=settle_seconds)
    query = select(LedgerTransfer.id, LedgerTransfer.created_at).where(
        LedgerTransfer.type.in_(tuple(MOVEMENTS)), LedgerTransfer.created_at < horizon)
    if cursor is not None:
        query = query.where(tuple_(LedgerTransfer.created_at, LedgerTransfer.id)
                            > tuple_(cursor.last_created_at, cursor.last_transfer_id))
    elif start is not None:  # the first sweep of a fresh install reads from here, not from the beginning
        query = query.where(LedgerTransfer.created_at >= start)
    batch = (await session.execute(query.order_by(LedgerTransfer.created_at, LedgerTransfer.id).limit(BATCH))).all()
    if not batch:
        return []
    first, last = batch[0], batch[-1]
    movements = await movements_between(session, tuple(MOVEMENTS), first.created_at - WINDOW,
                                        last.created_at + timedelta(microseconds=1), rule.currency)
    new_ids = {row.id for row in batch}
    findings = evaluate(movements, new_ids, threshold, rule.currency)
    sanctioned = await _sanctioned_counterparties(session, [row.id for row in batch])
    findings = [finding for finding in findings if finding.transfer_id not in sanctioned] + list(sanctioned.values())
    flagged = {finding.transfer_id for finding in findings}
    findings += await _missing_travel_rule(session, [movement for movement in movements
                                                     if movement.transfer_id in new_ids - flagged],
                                           rule.travel_rule_threshold, rule.currency)
    reviewed = set((await session.scalars(select(TransactionReview.transfer_id).where(
        TransactionReview.transfer_id.in_([finding.transfer_id for finding in findings])))).all()) if findings else set()
    for finding in findings:
        if finding.transfer_id not in reviewed:
            await review.flag(session, finding.transfer_id, finding.reason, None)
    await session.execute(insert(RuleCursor).values(name=name, last_created_at=last.created_at,
                                                    last_transfer_id=last.id)
                          .on_conflict_do_update(index_elements=["name"],
                                                 set_={"last_created_at": last.created_at,
                                                       "last_transfer_id": last.id}))
    return findings


async def _missing_travel_rule(session: AsyncSession, movements: list[Movement], threshold: Decimal,
                               currency: str) -> list[Finding]:
    """Deposits at or above the Travel Rule threshold that arrived without originator data."""
    large = [movement for movement in movements if movement.ledger_type == "deposit" and movement.conversion is not None
             and movement.conversion.value >= threshold]
    hashes = [movement.tx_hash for movement in large if movement.tx_hash]
    covered = set((await session.scalars(select(TravelRuleTransfer.tx_hash).where(
        TravelRuleTransfer.direction == "inbound", TravelRuleTransfer.state == "accepted",
        TravelRuleTransfer.tx_hash.in_(hashes))))) if hashes else set()
    return [Finding(movement.transfer_id, "travel_rule_missing",
                    f"rule travel_rule_missing: deposit of {movement.amount_text} {movement.currency} ="
                    f" {movement.conversion.value} {currency} >= {threshold} {currency} without originator data")
            for movement in large if movement.tx_hash not in covered and movement.conversion is not None]


async def _sanctioned_counterparties(session: AsyncSession, transfer_ids: list[uuid.UUID]) -> dict[uuid.UUID, Finding]:
    """Deposits from, and withdrawals to, a listed address; each such customer is frozen."""
    counterparties = (await session.execute(
        select(LedgerTransfer.id, Deposit.user_id, Deposit.from_address)
        .join(Deposit, cast(Deposit.id, String) == LedgerTransfer.reference_id)
        .where(LedgerTransfer.id.in_(transfer_ids), LedgerTransfer.reference_kind == "deposit",
               Deposit.from_address.is_not(None))
        .union_all(
            select(LedgerTransfer.id, Withdrawal.user_id, Withdrawal.to_address)
            .join(Withdrawal, cast(Withdrawal.id, String) == LedgerTransfer.reference_id)
            .where(LedgerTransfer.id.in_(transfer_ids), LedgerTransfer.reference_kind == "withdrawal")))).all()
    findings = {}
    for transfer_id, user_id, address in counterparties:
        hit = await screening.screen_address(session, address)
        if hit is None or transfer_id in findings:
            continue
        reason = (f"rule sanctioned_counterparty: {address} is listed ({hit.source}"
                  f"{', ' + hit.entity_name if hit.entity_name else ''})")
        findings[transfer_id] = Finding(transfer_id, "sanctioned_counterparty", reason)
        if not await freezes.withdrawals_frozen(session, user_id):
            await freezes.freeze(session, user_id, f"sanctioned counterparty on transfer {transfer_id}")
    return findings
