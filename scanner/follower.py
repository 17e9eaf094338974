"""Following one chain: every block in order, deposits recorded, confirmations counted, reorgs undone.

The loop, each step:

1. ask the node for its head; if the scanner is at it, check the tip's hash (a reorg to a chain
   no longer than ours shows only there) and rest for ``poll_seconds``;
2. otherwise read ``cursor+1 .. head`` in batched requests (``batch_blocks`` blocks each: the full
   blocks, and the token ``Transfer`` logs of the same range; then the receipts of the transfers to
   deposit addresses, asked for together with other batches', ``scanner.receipts``), ``concurrency``
   batches in flight, while a single writer commits them **in order**, ``commit_blocks`` blocks
   per transaction: recording one range overlaps reading the next (one range read ahead, no more);
3. before committing, check that each block's parent is the block before it (the cursor's hash
   for the first one). A break is a reorg: walk back through the stored hashes of recent blocks
   to the common ancestor, mark the deposits above it ``reorged`` (the worker reverses credits),
   move the cursor back there, and read forward again.

A transfer to a deposit address from one of the platform's own addresses (the hot wallet's gas
top-up of a sweep, an internal move) is recorded as an internal movement (``custody.treasury.movements``),
never as a customer's deposit (``custody.deposits.senders``).

Two answers of the node are checked against each other before they are believed. Token
``Transfer`` logs are read by range; a node lagging behind its own blocks may answer a range with
nothing. A block whose ``logsBloom`` says a watched token's Transfer may be in it, and of which the
range answer has no log, is asked for again by hash; still empty, it is believed (blooms match by
chance), but many such blocks in a row raise an alert. On a chain whose ``finality`` is
``finalized``, a deposit is due for crediting only once its block is at or below the node's
``finalized`` block, which must be the very block the scanner read there.

A batch is committed whole or not at all: its deposits, its blocks' hashes, the new confirmation
counts (and the credit requests they trigger) and the cursor, in one transaction. So the cursor
never passes a block whose deposits are not recorded, a restart resumes at ``cursor + 1`` however
long the scanner was down, and no block is ever skipped. Any failure (node, database, a node
answer that cannot be parsed, a bug) abandons the step, backs off exponentially and tries again
from the committed cursor: the scanner does not crash and does not move on past what it could
not read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import unit_of_work
from core.errors import InvalidInput
from core.settings import ChainSettings, Settings, SettingsError
from custody import ledger
from custody.chains import Block, Chain, ChainError, ChainRejected, Receipt, TokenTransfer
from custody.chains.evm_batch import checksum
from custody.deposits import senders, tracking
from custody.deposits.tracking import Observed
from custody.treasury import movements
from scanner import store
from scanner.addresses import AddressBook
from scanner.metrics import ScannerMetrics
from scanner.receipts import ReceiptReader
from scanner.store import Cursor, CursorMoved

log = logging.getLogger(__name__)

TOUCH_EVERY_SECONDS = 5.0  # how often an idle scanner records that it is alive and where the head is


class ScannerMisconfigured(SettingsError):
    """The node or the ledger is not what the settings describe: following it would credit wrongly."""


class ReorgDetected(Exception):
    """What was read does not extend the cursor's chain (or is not self-consistent): walk back."""


class DeepReorg(RuntimeError):
    """No common ancestor among the stored recent blocks: a human must look (the scanner halts)."""


@dataclass(frozen=True)
class ScanConfig:
    batch_blocks: int = 50
    concurrency: int = 4
    commit_blocks: int = 1000
    reorg_window: int = 256
    poll_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    resend_seconds: float = 30.0
    start_margin: int = 64
    empty_logs_alert_blocks: int = 20

    @classmethod
    def from_settings(cls, settings: Settings) -> ScanConfig:
        return cls(batch_blocks=settings.scanner_batch_blocks, concurrency=settings.scanner_concurrency,
                   commit_blocks=settings.scanner_commit_blocks, reorg_window=settings.scanner_reorg_window,
                   poll_seconds=settings.scanner_poll_seconds, max_backoff_seconds=settings.scanner_max_backoff_seconds,
                   resend_seconds=settings.scanner_resend_seconds, start_margin=settings.scanner_start_margin,
                   empty_logs_alert_blocks=settings.scanner_empty_logs_alert_blocks)


@dataclass(frozen=True)
class Fetched:
    """One batch as read from the node: its blocks, and the transfers in them to deposit addresses."""

    blocks: list[Block]
    observed: list[Observed]
    # Blocks whose bloom says a watched token's Transfer may be there, and the range answer had none.
    contradicted: frozenset[int] = frozenset()


class Scanner:
    def __init__(self, chain: Chain, settings: ChainSettings, sessions: async_sessionmaker[AsyncSession],
                 config: ScanConfig, metrics: ScannerMetrics | None = None) -> None:
        self.chain = chain
        self.settings = settings
        self.name = settings.name
        self.sessions = sessions
        self.config = config
        self.metrics = metrics or ScannerMetrics(settings.name)
        self.tokens = {checksum(address): asset for asset, address in settings.tokens.items()}
        self.addresses = AddressBook(settings.name)
        self.cursor: Cursor | None = None
        self.head: int | None = None
        self._touched = 0.0
        self._resent = time.monotonic()
        self._contradicted_in_a_row = 0

    # --- start ----------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Refuse a node of another network and tokens whose decimals the ledger disagrees with."""
        chain_id = await self.chain.chain_id()
        if chain_id != self.settings.chain_id:
            raise ScannerMisconfigured(f"{self.name}: the node at {self.settings.rpc_url} is chain {chain_id}, "
                                       f"the settings say {self.settings.chain_id}")
        async with self.sessions() as session:
            try:
                units = await ledger.currencies(session, [self.settings.native, *self.settings.tokens])
            except InvalidInput as unknown:  # a currency the ledger does not know cannot be credited
                raise ScannerMisconfigured(f"{self.name}: {unknown.message}") from unknown
        for address, asset in self.tokens.items():
            decimals = await self.chain.token_decimals(address)
            if decimals != units[asset].decimals:
                raise ScannerMisconfigured(f"{self.name}: {asset} at {address} has {decimals} decimals, "
                                           f"the ledger's {asset} has {units[asset].decimals}")
        if self.settings.finality == "finalized":
            try:
                await self.chain.finalized()
            except ChainRejected as refused:
                # Credits would wait for a finality the node never reports: refuse at start instead.
                problem = f"finality is \"finalized\" but the node at {self.settings.rpc_url} names no finalized block"
                raise ScannerMisconfigured(f"{self.name}: {problem} ({refused.message})") from refused
        self.cursor = await self._load_cursor()
        log.info("scanner %s: resuming after block %d (first run started at %d)", self.name, self.cursor.height,
                 self.cursor.start_height)

    async def _load_cursor(self) -> Cursor:
        async with self.sessions() as session:
            cursor = await store.load(session, self.name)
        if cursor is not None:
            return cursor
        # First run: where the settings say, or a little before the head (README, "Deposits").
        start = self.settings.start_height
        if start is None:
            start = max(0, await self.chain.head() - self.config.start_margin)
        before = await self.chain.block(start - 1) if start > 0 else None
        async with unit_of_work(self.sessions) as session:
            cursor = await store.create(session, self.name, before, start)
        log.info("scanner %s: first run, starting at block %d", self.name, cursor.height + 1)
        return cursor

    # --- the loop -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the chain until ``stop`` is set; failures back off (up to ``max_backoff_seconds``) and retry."""
        failures = 0
        while not stop.is_set():
            try:
                if self.cursor is None:
                    await self.prepare()
                progressed = await self.step()
                failures = 0
                self.metrics.halted.set(0)
                delay = 0.0 if progressed else self.config.poll_seconds
            except ScannerMisconfigured:
                raise
            except Exception as error:
                failures += 1
                delay = min(self.config.max_backoff_seconds, 0.25 * 2 ** min(failures, 16))
                self._failed(error, delay)
                self.cursor = None  # the database holds the truth: read it again
            if delay:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass

    def _failed(self, error: Exception, delay: float) -> None:
        if isinstance(error, DeepReorg):
            cause = "deep_reorg"
            # Retried like any failure (a node briefly on another fork recovers by itself), but
            # nothing is rewound or read past until the node shows a block the scanner knows.
            self.metrics.halted.set(1)
            log.critical("ALERT scanner %s halted: %s", self.name, error, extra={"alert": "deep_reorg"})
        elif isinstance(error, ChainError):
            cause = "node"
            log.warning("scanner %s: node error, retrying in %.1fs: %s", self.name, delay, error.message)
        elif isinstance(error, CursorMoved):
            cause = "cursor_moved"
            log.warning("scanner %s: %s; reloading", self.name, error)
        elif isinstance(error, (SQLAlchemyError, OSError)):
            cause = "database"
            log.warning("scanner %s: database error, retrying in %.1fs: %s", self.name, delay, error)
        else:
            cause = "unexpected"
            log.exception("scanner %s: unexpected error, retrying in %.1fs", self.name, delay)
        self.metrics.failed(cause)

    async def step(self) -> int:
        """One pass: read and commit everything up to the current head. How many blocks were processed."""
        assert self.cursor is not None
        head = self.head = await self.chain.head()
        self.metrics.head.set(head)
        if head <= self.cursor.height:
            await self._check_tip(head)
            await self._idle(head)
            return 0
        try:
            return await self._catch_up(head)
        except ReorgDetected:
            await self._reorg()
            return 1  # go again at once, from the ancestor

    async def _idle(self, head: int) -> None:
        now = time.monotonic()
        if now - self._touched >= TOUCH_EVERY_SECONDS:
            async with unit_of_work(self.sessions) as session:
                await store.checked(session, self.name, head)
            self._touched = now
        if now - self._resent >= self.config.resend_seconds:
            async with unit_of_work(self.sessions) as session:
                resent = await tracking.resend_stale_requests(session, self.name,
                                                              timedelta(seconds=self.config.resend_seconds))
            if resent:
                log.warning("scanner %s: sent %d credit/reversal requests again", self.name, resent)
            self._resent = now

    # --- catching up ----------------------------------------------------------------------------

    def _ranges(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        for first in range(start, end + 1, self.config.batch_blocks):
            yield first, min(first + self.config.batch_blocks - 1, end)

    async def _catch_up(self, head: int) -> int:
        assert self.cursor is not None
        async with self.sessions() as session:
            await self.addresses.refresh(session)
        ranges = self._ranges(self.cursor.height + 1, head)
        final = await self.chain.finalized() if self.settings.finality == "finalized" else None
        # Read ahead of the writer by up to a transaction's worth of blocks (bounded: a reorg found
        # in a batch read ahead discards it and everything after it), with at most ``concurrency``
        # batches at the node at once.
        requests = asyncio.Semaphore(self.config.concurrency)
        receipts = ReceiptReader(self.chain)
        ahead = max(self.config.concurrency, -(-self.config.commit_blocks // self.config.batch_blocks))
        in_flight: deque[asyncio.Task[Fetched]] = deque()

        def refill() -> None:
            while len(in_flight) < ahead and (batch := next(ranges, None)) is not None:
                in_flight.append(asyncio.create_task(self._fetch(*batch, requests, receipts)))

        processed = 0
        try:
            refill()
            while in_flight:
                group = [await in_flight.popleft()]
                size = len(group[0].blocks)
                refill()
                # Catching up, one transaction takes ``commit_blocks`` blocks while the next range
                # is read; at the head, a new block is committed on its own at once. Committing each
                # batch as soon as it is read overlaps more, but measured slower: the scanner is
                # bound by its one thread's CPU, and every transaction costs its round trips and
                # re-counts every deposit still waiting for confirmations.
                while in_flight and size < self.config.commit_blocks:
                    group.append(await in_flight.popleft())
                    size += len(group[-1].blocks)
                    refill()
                await self._commit(group, head, final)
                processed += size
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            await receipts.close()
        return processed

    async def _fetch(self, first: int, last: int, requests: asyncio.Semaphore, receipts: ReceiptReader) -> Fetched:
        async with requests:
            blocks, logs = await asyncio.gather(self.chain.transfers(list(range(first, last + 1))),
                                                self.chain.token_transfers(first, last, list(self.tokens)))
        # The receipts are not asked for under ``requests``: the receipt reader has one request of its
        # own at the node, for every batch at once, and this batch's place goes to the next batch.
        hashes = {item.block.number: item.block.hash for item in blocks}
        if any(hashes.get(log.block_number) != log.block_hash for log in logs):
            raise ReorgDetected(f"logs of {first}-{last} come from other blocks than the blocks read")
        found_in = {log.block_number for log in logs}
        watched = list(self.tokens)
        doubtful = [item.block for item in blocks if watched and item.block.number not in found_in
                    and self.chain.may_have_token_transfers(item.block, watched)]
        if doubtful:
            logs = [*logs, *await self._refetch(doubtful)]
        owners = self.addresses.owners
        native = [transfer for item in blocks for transfer in item.transfers if transfer.to_address in owners]
        tokens = [log for log in logs if log.token in self.tokens and log.value > 0 and log.to_address in owners]
        mined: dict[str, Receipt] = {}
        if native or tokens:
            # A transaction's value moves only if it succeeded (a contract recipient may revert); a
            # token deposit is keyed on its log's index within its transaction, which only the
            # receipt's log list gives (a reorg may mine the transaction at another place in a block).
            wanted = [*native, *tokens]
            tx_hashes = list(dict.fromkeys(item.tx_hash for item in wanted))
            answers = dict(zip(tx_hashes, await receipts.receipts(tx_hashes), strict=True))
            if any((receipt := answers[item.tx_hash]) is None or receipt.block_hash != item.block_hash
                   for item in wanted):
                raise ReorgDetected(f"receipts of {first}-{last} come from other blocks than the blocks read")
            mined = {tx_hash: receipt for tx_hash, receipt in answers.items() if receipt is not None}
            if any(mined[log.tx_hash].log_position(log.log_index) is None for log in tokens):
                raise ReorgDetected(f"logs of {first}-{last} are not in their transactions' receipts")
            native = [transfer for transfer in native if mined[transfer.tx_hash].status == 1]
        observed = [
            Observed(self.name, transfer.tx_hash, -1, transfer.block_number, transfer.block_hash, transfer.from_address,
                     transfer.to_address, owners[transfer.to_address], self.settings.native, transfer.value)
            for transfer in native
        ] + [
            Observed(self.name, log.tx_hash, log.log_index, log.block_number, log.block_hash, log.from_address,
                     log.to_address, owners[log.to_address], self.tokens[log.token], log.value,
                     tx_log_index=mined[log.tx_hash].log_position(log.log_index))
            for log in tokens
        ]
        return Fetched([item.block for item in blocks], observed, frozenset(block.number for block in doubtful))

    async def _refetch(self, doubtful: list[Block]) -> list[TokenTransfer]:
        """The range answer had no log of blocks whose blooms say there may be some: ask for them by hash."""
        found = await self.chain.token_transfers_in([block.hash for block in doubtful], list(self.tokens))
        lagged = sorted({log.block_number for log in found})
        self.metrics.refetched("found", len(lagged))
        self.metrics.refetched("empty", len(doubtful) - len(lagged))
        if lagged:
            log.warning("scanner %s: the node answered no logs for blocks %s by range, but has them by hash",
                        self.name, lagged, extra={"chain": self.name, "blocks": lagged})
        return found

    def _count_contradictions(self, blocks: list[Block], contradicted: frozenset[int]) -> None:
        """Blocks in a row that contradicted their blooms: one is chance, many are a node to distrust."""
        if not contradicted and not self._contradicted_in_a_row:
            return
        threshold = self.config.empty_logs_alert_blocks
        for block in blocks:
            if block.number not in contradicted:
                self._contradicted_in_a_row = 0
                continue
            self._contradicted_in_a_row += 1
            if self._contradicted_in_a_row == threshold:
                log.critical("ALERT scanner %s: %d blocks in a row up to %d have blooms saying a watched token's "
                             "Transfer may be there, and the node answers no such log, by range or by hash",
                             self.name, threshold, block.number, extra={"alert": "empty_logs", "chain": self.name})
        self.metrics.empty_logs_streak.set(self._contradicted_in_a_row)
        self.metrics.empty_logs_alert.set(1 if self._contradicted_in_a_row >= threshold else 0)

    async def _commit(self, group: list[Fetched], head: int, final: Block | None = None) -> None:
        assert self.cursor is not None
        blocks = [block for fetched in group for block in fetched.blocks]
        previous = self.cursor.hash
        for block in blocks:
            if previous is not None and block.parent_hash != previous:
                raise ReorgDetected(f"block {block.number}'s parent is not the block before it")
            previous = block.hash
        finalized = None  # the height up to which deposits count as final (chains with finality "finalized")
        if final is not None:
            finalized = min(final.number, blocks[-1].number)
            if {block.number: block.hash for block in blocks}.get(final.number, final.hash) != final.hash:
                raise ReorgDetected(f"the node's finalized block {final.number} is not the block read there")
        observed = [item for fetched in group for item in fetched.observed]
        window = self.config.reorg_window
        announcements = tracking.Announcements()
        async with unit_of_work(self.sessions) as session:
            if final is not None and final.number <= self.cursor.height:
                ours = (await store.recent_hashes(session, self.name, final.number, 1)).get(final.number)
                if ours is not None and ours != final.hash:
                    raise ReorgDetected(f"the node's finalized block {final.number} is not the one processed there")
            # An ingested event recorded ahead of the scanner, in a block since replaced.
            await tracking.orphan_replaced(session, self.name, {block.number: block.hash for block in blocks},
                                           announcements)
            # Deposits seen before count the new blocks; those found now are counted as they are recorded.
            await tracking.confirm(session, self.name, blocks[-1].number, finalized=finalized)
            # What the platform's own addresses sent (gas top-ups, internal moves) is no customer's deposit.
            observed, internal = await senders.split(session, self.name, observed)
            await tracking.record(session, observed, announcements, required_confirmations=self.settings.confirmations,
                                  source="scanner", height=blocks[-1].number, finalized=finalized)
            await movements.record(session, internal)
            # Only recent blocks can be walked back through: older ones are not worth a row.
            cursor = await store.advance(session, self.cursor, blocks[-1], head, finalized=finalized,
                                         recent=[block for block in blocks if block.number > head - window],
                                         forget_below=blocks[-1].number - window)
            await announcements.write(session, actor="scanner")  # last: after every row lock
        self.cursor = cursor
        self._count_contradictions(blocks, frozenset().union(*(fetched.contradicted for fetched in group)))
        self.metrics.blocks.inc(len(blocks))
        self.metrics.deposits.inc(len(observed))
        self.metrics.height.set(cursor.height)

    # --- reorgs ---------------------------------------------------------------------------------

    async def _check_tip(self, head: int) -> None:
        """At the head: our tip must still be the node's block at that height (or the node fell behind us)."""
        assert self.cursor is not None
        height = min(head, self.cursor.height)
        if height < 0 or height < self.cursor.start_height - 1:
            return
        if height == self.cursor.height:
            ours = self.cursor.hash
        else:
            async with self.sessions() as session:
                ours = (await store.recent_hashes(session, self.name, height, 1)).get(height)
        # A node behind us (head below our cursor) is only lagging if its block there is ours:
        # wait for it; real chains do not shrink, and a longer new chain is caught by its parents.
        if (await self.chain.block(height)).hash != ours:
            await self._reorg()

    async def _reorg(self) -> None:
        """Walk back from the cursor to the newest stored block the node still has; rewind to it."""
        assert self.cursor is not None
        cursor = self.cursor
        async with self.sessions() as session:
            stored = await store.recent_hashes(session, self.name, cursor.height, self.config.reorg_window)
        if cursor.hash is not None:
            stored[cursor.height] = cursor.hash
        head = await self.chain.head()
        ancestor: tuple[int, str | None] | None = None
        for number in sorted(stored, reverse=True):
            if number > head:
                continue  # the node has no block there any more
            if (await self.chain.block(number)).hash == stored[number]:
                ancestor = (number, stored[number])
                break
        if ancestor is None:
            if cursor.start_height == 0 and min(stored, default=0) <= 0:
                ancestor = (-1, None)  # even block 0 differs: a different chain from genesis (a reset devnet)
            else:
                raise DeepReorg(f"{self.name}: none of the {len(stored)} stored blocks up to {cursor.height} "
                                "is on the node's chain; reorg deeper than scanner_reorg_window")
        if ancestor[0] == cursor.height:
            return  # nothing we committed was replaced: what was read was in flux, read it again
        announcements = tracking.Announcements()
        async with unit_of_work(self.sessions) as session:
            orphaned = await tracking.orphan_above(session, self.name, ancestor[0], cursor.height, announcements)
            await movements.forget_above(session, self.name, ancestor[0])
            self.cursor = await store.rewind(session, cursor, *ancestor)
            await announcements.write(session, actor="scanner")
        depth = cursor.height - ancestor[0]
        self.metrics.reorgs.inc()
        self.metrics.reorg_depth.observe(depth)
        log.warning("scanner %s: reorg, blocks %d..%d replaced; %d deposits orphaned", self.name, ancestor[0] + 1,
                    cursor.height, len(orphaned), extra={"chain": self.name, "depth": depth,
                                                         "orphaned": [str(item.id) for item in orphaned]})
