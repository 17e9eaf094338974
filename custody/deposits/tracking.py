"""Recording what the chain says about deposits: transfers found, confirmations, orphaned blocks.

The scanner calls these once per batch of blocks, in one transaction; the ingest route calls
``record`` for one verified event. They only flush: credit and reversal requests go to the
custody worker after the caller's commit, never about a row that was rolled back.

Lock order, the same everywhere (no deadlock with the worker's jobs): deposit rows first, then
audit aggregates and notification recipients.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, case, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.db import after_commit
from core.notifications import notify_many
from core.time import utcnow
from custody import ledger
from custody.addresses.models import DepositAddress
from custody.deposits import actors
from custody.deposits.models import CREDITED, REORGED, SEEN, CONFIRMING, Deposit
from custody.deposits.states import LIVE, WAITING, transition
from jobs.registry import JobSpec, broker_of, enqueue

_KEY = tuple_(Deposit.chain, Deposit.tx_hash, Deposit.log_index)


@dataclass(frozen=True)
class Observed:
    """A transfer to a deposit address as the chain shows it (read by the scanner, or verified for ingest)."""

    chain: str
    tx_hash: str
    log_index: int  # -1 for the native coin
    block_number: int
    block_hash: str
    from_address: str | None
    to_address: str
    user_id: uuid.UUID
    asset: str
    amount: int

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.chain, self.tx_hash, self.log_index)


@dataclass(frozen=True)
class Recorded:
    deposit: Deposit
    outcome: str  # new | revived (was reorged) | moved (another block) | known (nothing changed)


async def deposit_owners(session: AsyncSession, chain: str, addresses: Iterable[str]) -> dict[str, uuid.UUID]:
    """Which of ``addresses`` (EIP-55) are assigned deposit addresses on ``chain``, and whose."""
    wanted = sorted(set(addresses))
    if not wanted:
        return {}
    rows = await session.execute(
        select(DepositAddress.address, DepositAddress.user_id)
        .where(DepositAddress.chain == chain, DepositAddress.address.in_(wanted), DepositAddress.user_id.is_not(None)))
    return {row.address: row.user_id for row in rows}


async def _locked_by_key(session: AsyncSession, keys: Sequence[tuple[str, str, int]]) -> dict[tuple[str, str, int], Deposit]:
    if not keys:
        return {}
    rows = await session.scalars(select(Deposit).where(_KEY.in_(keys)).order_by(Deposit.id).with_for_update())
    return {(row.chain, row.tx_hash, row.log_index): row for row in rows}


def _place(deposit: Deposit, seen: Observed) -> None:
    deposit.block_number, deposit.block_hash = seen.block_number, seen.block_hash
    if deposit.state != CREDITED:
        deposit.confirmations = 0
        deposit.credit_requested_at = None


async def record(session: AsyncSession, observed: Sequence[Observed], *, required_confirmations: int,
                 source: str) -> list[Recorded]:
    """Record transfers to deposit addresses: a new one is ``seen``; a known one is left as it is,
    found again after a reorg (``revived``) or found in another block (``moved``)."""
    unique = list({seen.key: seen for seen in observed}.values())
    if not unique:
        return []
    existing = await _locked_by_key(session, [seen.key for seen in unique])
    fresh = [seen for seen in unique if seen.key not in existing]
    created: set[uuid.UUID] = set()
    if fresh:
        rows = [{"id": uuid.uuid4(), "chain": seen.chain, "tx_hash": seen.tx_hash, "log_index": seen.log_index,
                 "block_number": seen.block_number, "block_hash": seen.block_hash,
                 "from_address": seen.from_address, "to_address": seen.to_address, "user_id": seen.user_id,
                 "asset": seen.asset, "amount": seen.amount, "state": SEEN, "confirmations": 0,
                 "required_confirmations": required_confirmations, "source": source, "credits": 0}
                for seen in fresh]
        # A concurrent ingest of the same event may win the insert: its row is then "existing".
        created = set(await session.scalars(
            insert(Deposit).values(rows).on_conflict_do_nothing(constraint="uq_deposits_chain_tx_hash_log_index")
            .returning(Deposit.id)))
        existing |= await _locked_by_key(session, [seen.key for seen in fresh])
    results: list[Recorded] = []
    for seen in unique:
        deposit = existing[seen.key]
        if deposit.id in created:
            outcome = "new"
        elif deposit.state == REORGED:
            deposit.state = transition(deposit.state, "reappear")
            _place(deposit, seen)
            outcome = "revived"
        elif deposit.block_hash != seen.block_hash:
            deposit.state = transition(deposit.state, "move")
            _place(deposit, seen)
            outcome = "moved"
        else:
            outcome = "known"
        results.append(Recorded(deposit, outcome))
    await session.flush()

    changed = [item for item in results if item.outcome != "known"]
    if changed:
        units = await ledger.currencies(session, {item.deposit.asset for item in changed})
        views = {item.deposit.id: _view(item.deposit, units[item.deposit.asset]) for item in changed}
        await audit.append_first(session, "deposit", [(item.deposit.id, "deposit.seen", views[item.deposit.id])
                                                      for item in changed if item.outcome == "new"], actor=source)
        for item in changed:
            if item.outcome != "new":
                await audit.append(session, "deposit", item.deposit.id, f"deposit.{item.outcome}",
                                   views[item.deposit.id], actor=source)
        await notify_many(session, [(item.deposit.user_id, "deposit.seen", views[item.deposit.id])
                                    for item in changed if item.outcome in ("new", "revived")])
    return results


def _view(deposit: Deposit, unit: ledger.CurrencyInfo) -> dict[str, object]:
    return {"deposit_id": str(deposit.id), "chain": deposit.chain, "asset": deposit.asset,
            "amount": unit.format(deposit.amount), "tx_hash": deposit.tx_hash, "log_index": deposit.log_index,
            "block_number": deposit.block_number, "block_hash": deposit.block_hash,
            "to_address": deposit.to_address, "state": deposit.state,
            "required_confirmations": deposit.required_confirmations}


async def confirm(session: AsyncSession, chain: str, height: int) -> int:
    """Count the confirmations of the waiting deposits up to ``height`` (every block up to it is
    processed); those that reach their requirement are sent to the custody worker. How many were."""
    counted = func.greatest(Deposit.confirmations, height - Deposit.block_number + 1)
    rows = (await session.execute(
        update(Deposit)
        .where(Deposit.chain == chain, Deposit.state.in_(WAITING), Deposit.block_number <= height)
        .values(confirmations=counted, updated_at=utcnow(),
                state=case((and_(Deposit.state == SEEN, counted >= 2), CONFIRMING), else_=Deposit.state))
        .returning(Deposit.id, Deposit.confirmations, Deposit.required_confirmations, Deposit.credit_requested_at),
        execution_options={"synchronize_session": False},
    )).all()
    due = [row.id for row in rows if row.confirmations >= row.required_confirmations and row.credit_requested_at is None]
    await request_credits(session, due)
    return len(due)


async def request_credits(session: AsyncSession, deposit_ids: Sequence[uuid.UUID]) -> None:
    if deposit_ids:
        await session.execute(update(Deposit).where(Deposit.id.in_(deposit_ids)).values(credit_requested_at=utcnow()),
                              execution_options={"synchronize_session": False})
        send_after_commit(session, actors.credit_deposit, deposit_ids)


async def orphan_above(session: AsyncSession, chain: str, above: int, through: int) -> list[Deposit]:
    """A reorg replaced the blocks ``above+1 .. through``: their deposits are ``reorged``."""
    rows = list(await session.scalars(
        select(Deposit).where(Deposit.chain == chain, Deposit.state.in_(LIVE), Deposit.block_number > above,
                              Deposit.block_number <= through).order_by(Deposit.id).with_for_update()))
    await _orphan(session, rows)
    return rows


async def orphan_replaced(session: AsyncSession, chain: str, canonical: dict[int, str]) -> list[Deposit]:
    """Deposits recorded at one of these heights under another block hash than the canonical one
    (an ingested event whose block was replaced before the scanner got there) are ``reorged``."""
    if not canonical:
        return []
    rows = await session.scalars(
        select(Deposit).where(Deposit.chain == chain, Deposit.state.in_(LIVE),
                              Deposit.block_number.in_(list(canonical))).order_by(Deposit.id).with_for_update())
    stale = [row for row in rows if row.block_hash != canonical[row.block_number]]
    await _orphan(session, stale)
    return stale


async def _orphan(session: AsyncSession, deposits: list[Deposit]) -> None:
    if not deposits:
        return
    now = utcnow()
    previous = {}
    for deposit in deposits:
        previous[deposit.id] = deposit.state
        deposit.state = transition(deposit.state, "orphan")
        deposit.reorged_at = now
        if deposit.credit_transfer_id is not None:
            deposit.reversal_requested_at = now
    await session.flush()
    units = await ledger.currencies(session, {deposit.asset for deposit in deposits})
    for deposit in deposits:
        view = _view(deposit, units[deposit.asset])
        await audit.append(session, "deposit", deposit.id, "deposit.reorged", {**view, "was": previous[deposit.id]},
                           actor="scanner")
    await notify_many(session, [(deposit.user_id, "deposit.reorged", _view(deposit, units[deposit.asset]))
                                for deposit in deposits])
    send_after_commit(session, actors.reverse_deposit,
                      [deposit.id for deposit in deposits if deposit.credit_transfer_id is not None])


async def resend_stale_requests(session: AsyncSession, chain: str, older_than: timedelta) -> int:
    """Send again the credit and reversal requests not done after ``older_than`` (a message lost
    with Redis, or dead-lettered): both jobs are idempotent. How many were sent."""
    cutoff = utcnow() - older_than
    credits = list(await session.scalars(
        update(Deposit).where(Deposit.chain == chain, Deposit.state.in_(WAITING),
                              Deposit.confirmations >= Deposit.required_confirmations,
                              Deposit.credit_requested_at < cutoff)
        .values(credit_requested_at=utcnow()).returning(Deposit.id),
        execution_options={"synchronize_session": False}))
    reversals = list(await session.scalars(
        update(Deposit).where(Deposit.chain == chain, Deposit.state == REORGED,
                              Deposit.credit_transfer_id.is_not(None), Deposit.reversal_requested_at < cutoff)
        .values(reversal_requested_at=utcnow()).returning(Deposit.id),
        execution_options={"synchronize_session": False}))
    send_after_commit(session, actors.credit_deposit, credits)
    send_after_commit(session, actors.reverse_deposit, reversals)
    return len(credits) + len(reversals)


def send_after_commit(session: AsyncSession, spec: JobSpec, deposit_ids: Sequence[uuid.UUID]) -> None:
    """One message per deposit, sent side by side once the transaction commits (a catch-up can
    confirm hundreds at once; one after the other they would hold up the scanner)."""
    if not deposit_ids:
        return
    messages = [spec.message(str(deposit_id)) for deposit_id in deposit_ids]
    broker = broker_of(session)

    async def send() -> None:
        await asyncio.gather(*(enqueue(broker, message) for message in messages))

    after_commit(session, send)
