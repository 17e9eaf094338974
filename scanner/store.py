"""What the scanner keeps between runs: its cursor per chain and the hashes of recent blocks.

The cursor is the last block fully processed — its deposits recorded, its confirmations counted,
in the same transaction that moved the cursor. A restart resumes at ``height + 1``, never at the
chain's tip, however long the scanner was down. The cursor only moves by compare-and-set: a
second scanner of the same chain (which the advisory lock should already prevent) could never
move it from under the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from custody.chains import Block
from custody.deposits.models import ScannedBlock, ScannerCursor


@dataclass(frozen=True)
class Cursor:
    chain: str
    height: int  # -1: nothing processed yet
    hash: str | None  # the block at ``height``; None only before genesis
    start_height: int  # the first block ever read: nothing earlier exists for the scanner


class CursorMoved(RuntimeError):
    """The cursor in the database is not the one this scanner holds: reload it and go on from there."""


async def load(session: AsyncSession, chain: str) -> Cursor | None:
    row = await session.get(ScannerCursor, chain)
    return None if row is None else Cursor(row.chain, row.height, row.hash, row.start_height)


async def create(session: AsyncSession, chain: str, before: Block | None, start_height: int) -> Cursor:
    """The first cursor of a chain, just before ``start_height`` (whose parent is ``before``); if
    another scanner created one meanwhile, that one."""
    height, block_hash = (before.number, before.hash) if before else (-1, None)
    await session.execute(insert(ScannerCursor).values(chain=chain, height=height, hash=block_hash,
                                                       start_height=start_height).on_conflict_do_nothing())
    if before is not None:
        await store_blocks(session, chain, [before])
    cursor = await load(session, chain)
    assert cursor is not None
    return cursor


_ADVANCE = text(
    # One round trip for the three writes that end every committed batch. The ranges are disjoint
    # (stored: above the head minus the window; forgotten: below the new cursor minus the window),
    # as one statement must not touch a row twice.
    "WITH stored AS ("
    " INSERT INTO scanned_blocks (chain, number, hash, parent_hash)"
    " SELECT :chain, x.number, x.hash, x.parent_hash"
    " FROM unnest(CAST(:numbers AS bigint[]), CAST(:hashes AS varchar[]), CAST(:parents AS varchar[]))"
    " AS x(number, hash, parent_hash)"
    " ON CONFLICT (chain, number) DO UPDATE SET hash = EXCLUDED.hash, parent_hash = EXCLUDED.parent_hash),"
    " forgotten AS (DELETE FROM scanned_blocks WHERE chain = :chain AND number < CAST(:forget_below AS bigint))"
    " UPDATE scanner_cursors SET height = CAST(:height AS bigint), hash = :hash, head = CAST(:head AS bigint),"
    " progressed_at = now(), checked_at = now(), finality = :finality, finalized = CAST(:finalized AS bigint)"
    " WHERE chain = :chain AND height = CAST(:was AS bigint)"
    " RETURNING chain"
)


async def advance(session: AsyncSession, cursor: Cursor, block: Block, head: int | None, *,
                  finalized: int | None = None, recent: Sequence[Block] = (),
                  forget_below: int | None = None) -> Cursor:
    """Move the cursor to ``block`` (processed in this transaction); ``CursorMoved`` if it was not at ``cursor``.

    ``finalized``: on a chain whose finality is "finalized", the node's finalized height as checked
    against the blocks processed (None on the other chains): what the crediting worker checks.
    ``recent``: blocks to keep the hashes of (a reorg walks back through them); ``forget_below``:
    the stored blocks below it are dropped (a reorg deeper than the window cannot be walked back).
    """
    if recent and forget_below is not None and forget_below > min(item.number for item in recent):
        raise ValueError("the blocks stored and the blocks forgotten overlap")
    moved = await session.execute(_ADVANCE, {
        "chain": cursor.chain, "numbers": [item.number for item in recent], "hashes": [item.hash for item in recent],
        "parents": [item.parent_hash for item in recent],
        "forget_below": -1 if forget_below is None else forget_below,  # -1: no block is below it
        "height": block.number, "hash": block.hash, "head": head,
        "finality": "confirmations" if finalized is None else "finalized", "finalized": finalized,
        "was": cursor.height})
    if moved.first() is None:
        raise CursorMoved(f"{cursor.chain}: the cursor is no longer at {cursor.height}")
    return Cursor(cursor.chain, block.number, block.hash, cursor.start_height)


async def rewind(session: AsyncSession, cursor: Cursor, number: int, block_hash: str | None) -> Cursor:
    """Back to the common ancestor of a reorg: the blocks above it are forgotten, to be read again."""
    moved = await session.execute(
        update(ScannerCursor)
        .where(ScannerCursor.chain == cursor.chain, ScannerCursor.height == cursor.height)
        .values(height=number, hash=block_hash, progressed_at=func.now(), checked_at=func.now(),
                # Blocks above the ancestor are not the scanner's any more: none of them counts as final.
                finalized=func.least(ScannerCursor.finalized, number)))
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise CursorMoved(f"{cursor.chain}: the cursor is no longer at {cursor.height}")
    await session.execute(delete(ScannedBlock).where(ScannedBlock.chain == cursor.chain, ScannedBlock.number > number))
    return Cursor(cursor.chain, number, block_hash, cursor.start_height)


async def checked(session: AsyncSession, chain: str, head: int) -> None:
    """The scanner asked the node and is up to date: what ``/status`` and ``/metrics`` read."""
    await session.execute(update(ScannerCursor).where(ScannerCursor.chain == chain)
                          .values(head=head, checked_at=func.now()))


_STORE_BLOCKS = text(
    "INSERT INTO scanned_blocks (chain, number, hash, parent_hash)"
    " SELECT :chain, x.number, x.hash, x.parent_hash"
    " FROM unnest(CAST(:numbers AS bigint[]), CAST(:hashes AS varchar[]), CAST(:parents AS varchar[]))"
    " AS x(number, hash, parent_hash)"
    " ON CONFLICT (chain, number) DO UPDATE SET hash = EXCLUDED.hash, parent_hash = EXCLUDED.parent_hash"
)


async def store_blocks(session: AsyncSession, chain: str, blocks: Sequence[Block]) -> None:
    if blocks:
        await session.execute(_STORE_BLOCKS, {"chain": chain, "numbers": [block.number for block in blocks],
                                              "hashes": [block.hash for block in blocks],
                                              "parents": [block.parent_hash for block in blocks]})


async def recent_hashes(session: AsyncSession, chain: str, at_most: int, limit: int) -> dict[int, str]:
    """The stored hashes of the ``limit`` highest blocks at or below ``at_most``."""
    rows = await session.execute(
        select(ScannedBlock.number, ScannedBlock.hash)
        .where(ScannedBlock.chain == chain, ScannedBlock.number <= at_most)
        .order_by(ScannedBlock.number.desc()).limit(limit))
    return {row.number: row.hash for row in rows}
