"""Recording what the chain says about deposits: transfers found, confirmations, orphaned blocks.

The scanner calls these once per batch of blocks, in one transaction; the ingest route calls
``record`` for one verified event. They only flush: credit and reversal requests go to the
deposits worker after the caller's commit, never about a row that was rolled back.

Lock order, the same everywhere (no deadlock with the worker's jobs): deposit rows first, then
audit aggregates and notification recipients. So these functions collect their audit events and
notifications in an ``Announcements`` that the caller writes last, after every row it locks.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core import audit
from core.db import after_commit
from core.time import utcnow
from custody import ledger
from custody.addresses.models import DepositAddress
from custody.deposits.models import (
    CONFIRMING,
    CREDITED,
    NATIVE_LOG_INDEX,
    REORGED,
    SEEN,
    Deposit,
)
from custody.deposits.states import LIVE, UNDONE, WAITING, transition
from jobs.registry import broker_of, enqueue_many
from notifications.service import notify_many

log = logging.getLogger(__name__)

CREDIT_DEPOSIT = jobs.name("custody.credit_deposit")
REVERSE_DEPOSIT = jobs.name("custody.reverse_deposit")


@dataclass(frozen=True)
class Observed:
    """A transfer to a deposit address as the chain shows it (read by the scanner, or verified for ingest)."""

    chain: str
    tx_hash: str
    log_index: int  # the log's index in its block; -1 for the native coin
    block_number: int
    block_hash: str
    from_address: str | None
    to_address: str
    user_id: uuid.UUID
    asset: str
    amount: int
    # The log's index within its transaction (``Receipt.log_position``): what keys a token deposit,
    # since a reorg may mine the transaction at another place in a block. Unused for the native coin.
    tx_log_index: int | None = None

    @property
    def index(self) -> int | None:
        return NATIVE_LOG_INDEX if self.log_index == NATIVE_LOG_INDEX else self.tx_log_index

    @property
    def key(self) -> tuple[str, str, int]:
        """The chain event's identity: the transaction and the log's index within it."""
        assert self.index is not None
        return (self.chain, self.tx_hash, self.index)

    @property
    def position(self) -> tuple[str, str, int]:
        """Where it was found (how a token row recorded before 0023 is still matched)."""
        return (self.chain, self.tx_hash, self.log_index)

    @property
    def content(self) -> tuple[str, str, int]:
        """What a key found again must still say; anything else is another deposit (``supersede``)."""
        return (self.to_address, self.asset, self.amount)


@dataclass
class Announcements:
    """The audit events and notifications of one transaction's deposit changes, written last."""

    first_events: list[tuple[uuid.UUID, str, dict[str, object]]] = field(default_factory=list)  # new deposits
    events: list[tuple[uuid.UUID, str, dict[str, object]]] = field(default_factory=list)
    notices: list[tuple[uuid.UUID, str, dict[str, object]]] = field(default_factory=list)  # (user, type, data)

    async def write(self, session: AsyncSession, actor: str) -> None:
        await audit.append_first(session, "deposit", self.first_events, actor=actor)
        for deposit_id, type, data in sorted(self.events, key=lambda event: str(event[0])):
            await audit.append(session, "deposit", deposit_id, type, data, actor=actor)
        await notify_many(session, self.notices)
        self.first_events, self.events, self.notices = [], [], []


@dataclass(frozen=True)
class Recorded:
    deposit_id: uuid.UUID
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


# Set-based statements: a catch-up records hundreds of deposits per transaction, and a statement
# of fixed text over arrays is compiled once (a VALUES list per row would be compiled every time).
# The live row of each key; a token row recorded before 0023 (no ``tx_log_index``) by its block position.
_LOCK_KNOWN = text(
    "SELECT d.id FROM deposits AS d"
    " JOIN unnest(CAST(:chains AS varchar[]), CAST(:tx_hashes AS varchar[]), CAST(:tx_log_indexes AS int[]),"
    " CAST(:log_indexes AS int[])) AS k(chain, tx_hash, tx_log_index, log_index)"
    " ON d.chain = k.chain AND d.tx_hash = k.tx_hash"
    " AND (d.tx_log_index = k.tx_log_index OR (d.tx_log_index IS NULL AND d.log_index = k.log_index))"
    " WHERE d.state <> 'orphaned'"
    " ORDER BY d.id FOR UPDATE OF d"
)
_INSERT_NEW = text(
    "INSERT INTO deposits (id, chain, tx_hash, log_index, tx_log_index, revision, supersedes, block_number,"
    " block_hash, from_address, to_address, user_id, asset, amount, state, confirmations, required_confirmations,"
    " source, credits, credit_requested_at)"
    " SELECT x.id, x.chain, x.tx_hash, x.log_index, x.tx_log_index, x.revision, x.supersedes, x.block_number,"
    " x.block_hash, x.from_address, x.to_address,"
    " x.user_id, x.asset, x.amount, CASE WHEN c.counted >= 2 THEN 'confirming' ELSE 'seen' END, c.counted,"
    " CAST(:required AS int), :source, 0, CASE WHEN c.counted >= CAST(:required AS int) THEN now() END"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:chains AS varchar[]), CAST(:tx_hashes AS varchar[]),"
    " CAST(:log_indexes AS int[]), CAST(:tx_log_indexes AS int[]), CAST(:revisions AS int[]),"
    " CAST(:supersedes AS uuid[]), CAST(:block_numbers AS bigint[]), CAST(:block_hashes AS varchar[]),"
    " CAST(:from_addresses AS varchar[]), CAST(:to_addresses AS varchar[]), CAST(:user_ids AS uuid[]),"
    " CAST(:assets AS varchar[]), CAST(:amounts AS numeric[]))"
    " AS x(id, chain, tx_hash, log_index, tx_log_index, revision, supersedes, block_number, block_hash, from_address,"
    " to_address, user_id, asset, amount)"
    " CROSS JOIN LATERAL (SELECT greatest(0, coalesce(CAST(:height AS bigint) - x.block_number + 1, 0)) AS counted) AS c"
    # No conflict target: with one (the live key's index), a key inserted at the same moment by
    # another recording passes that check first, then fails on the (key, revision) constraint.
    " ON CONFLICT DO NOTHING"
    " RETURNING id, credit_requested_at IS NOT NULL AS due"
)


def _counted(block_number: int, height: int | None) -> int:
    """Confirmations of a block once every block up to ``height`` is processed (None: not counted yet)."""
    return 0 if height is None else max(0, height - block_number + 1)


def _keys(observed: Sequence[Observed]) -> dict[str, list[object]]:
    return {"chains": [seen.chain for seen in observed], "tx_hashes": [seen.tx_hash for seen in observed],
            "tx_log_indexes": [seen.index for seen in observed], "log_indexes": [seen.log_index for seen in observed]}


async def _lock_known(session: AsyncSession, observed: Sequence[Observed]) -> dict[tuple[str, str, int], Deposit]:
    """The live rows of the keys of ``observed``, locked, by key."""
    ids = list(dict.fromkeys(await session.scalars(_LOCK_KNOWN, _keys(observed))))
    if not ids:
        return {}
    rows = list(await session.scalars(select(Deposit).where(Deposit.id.in_(ids))))
    by_key = {(row.chain, row.tx_hash, row.tx_log_index): row for row in rows if row.tx_log_index is not None}
    by_position = {(row.chain, row.tx_hash, row.log_index): row for row in rows if row.tx_log_index is None}
    found = {}
    for seen in observed:
        row = by_key.get(seen.key) or by_position.get(seen.position)
        if row is not None:
            found[seen.key] = row
    return found


def _content(deposit: Deposit) -> tuple[str, str, int]:
    return (deposit.to_address, deposit.asset, deposit.amount)


def _place(deposit: Deposit, seen: Observed, height: int | None) -> bool:
    """Move the deposit to the block it was found in; True if that makes it due for crediting."""
    deposit.block_number, deposit.block_hash, deposit.log_index = seen.block_number, seen.block_hash, seen.log_index
    if deposit.state == CREDITED:
        return False
    deposit.confirmations = _counted(seen.block_number, height)
    if deposit.confirmations >= 2:
        deposit.state = transition(deposit.state, "confirm")
    due = deposit.confirmations >= deposit.required_confirmations
    deposit.credit_requested_at = utcnow() if due else None
    return due


async def record(session: AsyncSession, observed: Sequence[Observed], announcements: Announcements, *,
                 required_confirmations: int, source: str, height: int | None = None,
                 finalized: int | None = None) -> list[Recorded]:
    """Record transfers to deposit addresses: a new one is ``seen``; a known one is left as it is,
    found again after a reorg (``revived``) or found in another block (``moved``). A known key saying
    another recipient, asset or amount is another deposit: its row is ``orphaned`` (a credit in force
    goes to the worker to reverse) and the new content is recorded as the key's next revision (``new``).

    ``height``: every block up to it is processed in this transaction (the scanner's), so the
    confirmations of what is recorded are counted now, and the due ones sent for crediting; of those,
    a revived or moved one counts again from its new block. ``finalized``: as for ``confirm``.
    """
    for seen in observed:
        if seen.index is None:  # keyed on its place in the block, it would be credited again after a reorg
            raise ValueError(f"{seen.chain} {seen.tx_hash} log {seen.log_index}: a token transfer needs its log's "
                             "index within its transaction (Receipt.log_position)")
    unique = list({seen.key: seen for seen in observed}.values())
    if not unique:
        return []
    by_key = {seen.key: seen for seen in unique}
    known: dict[tuple[str, str, int], Deposit] = {}
    replaced: dict[tuple[str, str, int], Deposit] = {}  # the row each new revision supersedes
    superseded: list[tuple[tuple[str, str, int], Deposit, str]] = []  # (key, row, its state before)
    created: dict[tuple[str, str, int], uuid.UUID] = {}
    due: list[uuid.UUID] = []
    pending = unique
    # Another round only when a concurrent recording of the same key (an ingest) won the insert.
    for _ in range(3):
        found = await _lock_known(session, pending)
        other = [(key, row) for key, row in found.items() if _content(row) != by_key[key].content]
        for key, row in other:
            replaced[key] = found.pop(key)
            superseded.append((key, row, row.state))
        await _supersede(session, [row for _, row in other])
        known |= found
        fresh = [seen for seen in pending if seen.key not in known]
        if not fresh:
            break
        ids = [uuid.uuid4() for _ in fresh]
        inserted = {row.id: row.due for row in await session.execute(_INSERT_NEW, {
            **_keys(fresh), "ids": ids, "block_numbers": [seen.block_number for seen in fresh],
            "block_hashes": [seen.block_hash for seen in fresh], "from_addresses": [seen.from_address for seen in fresh],
            "to_addresses": [seen.to_address for seen in fresh], "user_ids": [seen.user_id for seen in fresh],
            "assets": [seen.asset for seen in fresh], "amounts": [seen.amount for seen in fresh],
            "revisions": [replaced[seen.key].revision + 1 if seen.key in replaced else 1 for seen in fresh],
            "supersedes": [replaced[seen.key].id if seen.key in replaced else None for seen in fresh],
            "required": required_confirmations, "source": source, "height": height})}
        created |= {seen.key: deposit_id for seen, deposit_id in zip(fresh, ids, strict=True) if deposit_id in inserted}
        due += [deposit_id for deposit_id, is_due in inserted.items() if is_due]
        pending = [seen for seen in fresh if seen.key not in created]
        if not pending:
            break
    else:
        raise RuntimeError(f"deposit keys kept changing under concurrent recordings: {[seen.key for seen in pending]}")
    results: list[Recorded] = []
    changed: list[Deposit] = []
    for seen in unique:
        if seen.key in created:
            results.append(Recorded(created[seen.key], "new"))
            continue
        deposit = known[seen.key]
        if deposit.state == REORGED:
            deposit.state = transition(deposit.state, "reappear")
            outcome = "revived"
        elif deposit.block_hash != seen.block_hash:
            deposit.state = transition(deposit.state, "move")
            outcome = "moved"
        else:
            outcome = "known"
        results.append(Recorded(deposit.id, outcome))
        if outcome != "known":
            changed.append(deposit)
            if _place(deposit, seen, height):
                due.append(deposit.id)
    if changed:
        await session.flush()
    due = await _final_only(session, due, finalized)
    send_after_commit(session, CREDIT_DEPOSIT, due)

    outcomes = {item.deposit_id: item.outcome for item in results}
    units = await ledger.currencies(session, {seen.asset for seen in unique} | {row.asset for _, row, _ in superseded})
    for seen in unique:
        if seen.key in created:
            state = CONFIRMING if _counted(seen.block_number, height) >= 2 else SEEN
            previous = replaced.get(seen.key)
            view = _view(created[seen.key], seen, units[seen.asset], state, required_confirmations,
                         revision=1 if previous is None else previous.revision + 1,
                         supersedes=None if previous is None else previous.id)
            announcements.first_events.append((created[seen.key], "deposit.seen", view))
            announcements.notices.append((seen.user_id, "deposit.seen", view))
    for key, row, was in superseded:
        successor = created.get(key) or known[key].id
        view = _deposit_view(row, units[row.asset])
        announcements.events.append((row.id, "deposit.orphaned", {**view, "was": was, "superseded_by": str(successor)}))
        announcements.notices.append((row.user_id, "deposit.orphaned", view))
    for deposit in changed:
        view = _deposit_view(deposit, units[deposit.asset])
        announcements.events.append((deposit.id, f"deposit.{outcomes[deposit.id]}", view))
        if outcomes[deposit.id] == "revived":
            announcements.notices.append((deposit.user_id, "deposit.seen", view))
    return results


async def _supersede(session: AsyncSession, rows: list[Deposit]) -> None:
    """The key was found again saying something else: the rows step aside (out of the unique index,
    flushed before the new revision is inserted) and a credit in force goes to the worker to reverse."""
    if not rows:
        return
    now = utcnow()
    for row in rows:
        row.state = transition(row.state, "supersede")
        row.orphaned_at = now
        if row.credit_transfer_id is not None:
            row.reversal_requested_at = now
    await session.flush()
    send_after_commit(session, REVERSE_DEPOSIT, [row.id for row in rows if row.credit_transfer_id is not None])


async def _final_only(session: AsyncSession, due: list[uuid.UUID], finalized: int | None) -> list[uuid.UUID]:
    """Of the deposits found due by their count, those whose block is final (``finalized``: see
    ``confirm``); the others are not requested yet, so ``confirm`` requests them once they are."""
    if finalized is None or not due:
        return due
    early = set(await session.scalars(
        update(Deposit).where(Deposit.id.in_(due), Deposit.block_number > finalized)
        .values(credit_requested_at=None).returning(Deposit.id),
        execution_options={"synchronize_session": "fetch"}))
    return [deposit_id for deposit_id in due if deposit_id not in early]


def _view(deposit_id: uuid.UUID, seen: Observed, unit: ledger.CurrencyInfo, state: str,
          required_confirmations: int, *, revision: int = 1, supersedes: uuid.UUID | None = None) -> dict[str, object]:
    """What the user and the audit trail see of a deposit."""
    view: dict[str, object] = {
        "deposit_id": str(deposit_id), "chain": seen.chain, "asset": seen.asset, "amount": unit.format(seen.amount),
        "tx_hash": seen.tx_hash, "log_index": seen.log_index, "tx_log_index": seen.index, "revision": revision,
        "block_number": seen.block_number, "block_hash": seen.block_hash, "to_address": seen.to_address,
        "state": state, "required_confirmations": required_confirmations}
    if supersedes is not None:
        view["supersedes"] = str(supersedes)
    return view


def _deposit_view(deposit: Deposit, unit: ledger.CurrencyInfo) -> dict[str, object]:
    seen = Observed(deposit.chain, deposit.tx_hash, deposit.log_index, deposit.block_number, deposit.block_hash,
                    deposit.from_address, deposit.to_address, deposit.user_id, deposit.asset, deposit.amount,
                    tx_log_index=deposit.tx_log_index)
    return _view(deposit.id, seen, unit, deposit.state, deposit.required_confirmations, revision=deposit.revision,
                 supersedes=deposit.supersedes)


_CONFIRM = text(
    "UPDATE deposits SET confirmations = CAST(:height AS bigint) - block_number + 1,"
    " state = CASE WHEN state = 'seen' AND CAST(:height AS bigint) - block_number + 1 >= 2 THEN 'confirming'"
    " ELSE state END,"
    " credit_requested_at = CASE WHEN credit_requested_at IS NULL"
    " AND CAST(:height AS bigint) - block_number + 1 >= required_confirmations"
    " AND block_number <= coalesce(CAST(:finalized AS bigint), block_number) THEN now()"
    " ELSE credit_requested_at END,"
    " updated_at = now()"
    " WHERE chain = :chain AND state IN ('seen', 'confirming') AND block_number <= CAST(:height AS bigint)"
    " AND confirmations < CAST(:height AS bigint) - block_number + 1"
    " RETURNING id, credit_requested_at = now() AS due"
)
_REQUEST_CREDITS = text("UPDATE deposits SET credit_requested_at = now() WHERE id = ANY(CAST(:ids AS uuid[]))")


async def confirm(session: AsyncSession, chain: str, height: int, *, finalized: int | None = None) -> int:
    """Count the confirmations of the waiting deposits up to ``height`` (every block up to it is
    processed); those that reach their requirement are sent to the deposits worker. How many were.

    ``finalized``: on a chain whose finality is "finalized", the node's finalized height (checked
    by the scanner against its own blocks): a deposit above it is not due, whatever its count.
    """
    # The "confirm" action of states.py (seen → confirming), in SQL for every waiting deposit at once;
    # ``credit_requested_at = now()`` (the transaction's time) is what this very statement set.
    due = [row.id for row in await session.execute(_CONFIRM, {"chain": chain, "height": height,
                                                              "finalized": finalized}) if row.due]
    send_after_commit(session, CREDIT_DEPOSIT, due)
    return len(due)


async def request_credits(session: AsyncSession, deposit_ids: Sequence[uuid.UUID]) -> None:
    if deposit_ids:
        await session.execute(_REQUEST_CREDITS, {"ids": list(deposit_ids)})
        send_after_commit(session, CREDIT_DEPOSIT, deposit_ids)


async def orphan_above(session: AsyncSession, chain: str, above: int, through: int,
                       announcements: Announcements) -> list[Deposit]:
    """A reorg replaced the blocks ``above+1 .. through``: their deposits are ``reorged``."""
    rows = list(await session.scalars(
        select(Deposit).where(Deposit.chain == chain, Deposit.state.in_(LIVE), Deposit.block_number > above,
                              Deposit.block_number <= through).order_by(Deposit.id).with_for_update()))
    await _orphan(session, rows, announcements)
    return rows


# The live deposits of a range of heights (ix_deposits_chain_block), with the hash they were recorded under.
_LIVE_IN_RANGE = text(
    "SELECT id, block_number, block_hash FROM deposits"
    " WHERE chain = :chain AND block_number BETWEEN CAST(:first AS bigint) AND CAST(:last AS bigint)"
    " AND state IN ('seen', 'confirming', 'credited')"
)


async def orphan_replaced(session: AsyncSession, chain: str, canonical: dict[int, str],
                          announcements: Announcements) -> list[Deposit]:
    """Deposits recorded at one of these heights under another block hash than the canonical one
    (an ingested event whose block was replaced before the scanner got there) are ``reorged``."""
    if not canonical:
        return []
    # Catching up, the range holds no deposit yet (only ingested events can be ahead of the
    # scanner): one index range scan, instead of joining a thousand (height, hash) pairs.
    rows = await session.execute(_LIVE_IN_RANGE, {"chain": chain, "first": min(canonical), "last": max(canonical)})
    ids = [row.id for row in rows if row.block_number in canonical and row.block_hash != canonical[row.block_number]]
    if not ids:
        return []
    # Locked, then checked again: a concurrent ingest may have moved one since it was read.
    locked = await session.scalars(select(Deposit).where(Deposit.id.in_(ids)).order_by(Deposit.id).with_for_update()
                                   .execution_options(populate_existing=True))
    stale = [row for row in locked if row.state in LIVE and row.block_number in canonical
             and row.block_hash != canonical[row.block_number]]
    await _orphan(session, stale, announcements)
    return stale


async def _orphan(session: AsyncSession, deposits: list[Deposit], announcements: Announcements) -> None:
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
        view = _deposit_view(deposit, units[deposit.asset])
        announcements.events.append((deposit.id, "deposit.reorged", {**view, "was": previous[deposit.id]}))
        announcements.notices.append((deposit.user_id, "deposit.reorged", view))
    send_after_commit(session, REVERSE_DEPOSIT,
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
        update(Deposit).where(Deposit.chain == chain, Deposit.state.in_(UNDONE),
                              Deposit.credit_transfer_id.is_not(None), Deposit.reversal_requested_at < cutoff)
        .values(reversal_requested_at=utcnow()).returning(Deposit.id),
        execution_options={"synchronize_session": False}))
    send_after_commit(session, CREDIT_DEPOSIT, credits)
    send_after_commit(session, REVERSE_DEPOSIT, reversals)
    return len(credits) + len(reversals)


# Messages on their way to Redis, so a process about to exit can wait for them (drain_sends).
_sending: set[asyncio.Future[None]] = set()


def send_after_commit(session: AsyncSession, job_name: str, deposit_ids: Sequence[uuid.UUID]) -> None:
    """One message per deposit, sent once the transaction commits.

    A catch-up confirms hundreds at once: they go to a worker thread (RedisBroker blocks) and to
    Redis in one round trip (``enqueue_many``), and the caller does not wait for it — its next
    transaction need not wait for Redis. A message lost with a crashing process is sent again by the
    scanner (``resend_stale_requests``).
    """
    if not deposit_ids:
        return
    messages = [jobs.message(job_name, str(deposit_id)) for deposit_id in deposit_ids]
    broker = broker_of(session)

    def send() -> None:
        future = asyncio.get_running_loop().run_in_executor(None, enqueue_many, broker, messages)
        _sending.add(future)
        future.add_done_callback(_sent)

    after_commit(session, send)


def _sent(future: asyncio.Future[None]) -> None:
    _sending.discard(future)
    if not future.cancelled() and future.exception() is not None:
        log.error("deposit job messages not sent (the scanner sends them again): %s", future.exception())


async def drain_sends() -> None:
    """Wait until the messages already handed over are in Redis (before closing the broker)."""
    if _sending:
        await asyncio.gather(*list(_sending), return_exceptions=True)
