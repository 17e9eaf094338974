"""The signer's journal: every transaction it ever signed, in SQLite beside its keystore.

It is the signer's memory of its promises, never the platform database (DESIGN.md):

- a withdrawal is signed at one ``(chain, from, nonce)`` only;
- a ``(chain, from, nonce)`` belongs to one withdrawal only;
- a second transaction at that nonce is a fee bump of the same payment, with higher fees, or the
  nonce's one self-transfer (a filler or a cancel, ``core.sign_requests``);
- a repeated request (same withdrawal, same transaction) gets the stored raw transaction back.

Each signature is committed and fsynced *before* the reply leaves: a crash after the reply
cannot forget a signature, and a crash before it only means the request is answered again,
identically. Refusals are journaled too, for the record; they bind nothing, but a refusal of an
authorized request is *sticky*: the same request is refused again with the same reason, even once
a limit would allow it. The custody worker voids the hold when it hears a refusal; a redelivered
copy of the request must not be signed after that.

Commits are grouped (group commit). A decision checks and writes under ``held()``, in the one open
transaction, so every later check sees its row at once: the rules stay exact however many requests
are in flight. Then ``sync()`` waits for the fsync that covers what the decision wrote or read; an
answer never leaves before it (a repeat read from another request's row waits for that row's
fsync too). The first waiter commits everything written so far and fsyncs it; requests deciding
meanwhile are committed together by the next one. The fsync is the journal's own, of the WAL file,
outside the hold: SQLite's own (``synchronous=FULL``) would run inside COMMIT and keep every other
request from deciding meanwhile. ``synchronous=NORMAL`` still syncs the WAL before each checkpoint
and the database after it, so a committed transaction is durable once the WAL file holding it is
fsynced. A commit or fsync that fails leaves the journal unusable until the signer restarts: after
a failed fsync the file's state is unknown (the kernel may have dropped the pages), and signing on
from memory could forget a promise.

It also keeps, per chain, the worst-case fee (gas limit × max fee per gas) of every transaction
signed in the last 24 hours — fee bumps, fillers and cancels included, since which of a nonce's
transactions is mined is not known when signing — for the rolling fee budget.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DAY_SECONDS = 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signatures (
    id INTEGER PRIMARY KEY,
    withdrawal_id TEXT NOT NULL,
    request_digest TEXT NOT NULL UNIQUE,
    chain_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    nonce TEXT NOT NULL,
    asset TEXT NOT NULL,
    destination TEXT NOT NULL,
    amount TEXT NOT NULL,
    max_fee_per_gas TEXT NOT NULL,
    max_priority_fee_per_gas TEXT NOT NULL,
    unsigned_tx TEXT NOT NULL,
    raw_tx TEXT NOT NULL,
    tx_hash TEXT NOT NULL,
    first INTEGER NOT NULL,
    signed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_signatures_withdrawal ON signatures (withdrawal_id);
CREATE INDEX IF NOT EXISTS ix_signatures_nonce ON signatures (chain_id, sender, nonce);
CREATE INDEX IF NOT EXISTS ix_signatures_asset_time ON signatures (asset, signed_at);
CREATE TABLE IF NOT EXISTS refusals (
    id INTEGER PRIMARY KEY,
    withdrawal_id TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    sticky INTEGER NOT NULL,
    refused_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_refusals_request ON refusals (request_digest, withdrawal_id);
"""


class _Window:
    """Amounts signed in the last 24 hours (of one asset, or fees of one chain), oldest first, and their sum."""

    def __init__(self) -> None:
        self.entries: deque[tuple[float, int]] = deque()
        self.total = 0

    def add(self, signed_at: float, amount: int) -> None:
        self.entries.append((signed_at, amount))
        self.total += amount

    def total_after(self, horizon: float) -> int:
        while self.entries and self.entries[0][0] <= horizon:
            self.total -= self.entries.popleft()[1]
        return self.total


def worst_case_fee(unsigned_tx: str) -> int:
    """What a signed transaction may cost its sender at most: gas limit × max fee per gas."""
    fields = json.loads(unsigned_tx)
    return int(fields["gas"]) * int(fields["max_fee_per_gas"])


@dataclass(frozen=True)
class Signature:
    withdrawal_id: str
    request_digest: str
    chain_id: int
    sender: str
    nonce: int
    asset: str
    amount: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    unsigned_tx: str
    raw_tx: str
    tx_hash: str


_COLUMNS = ("withdrawal_id, request_digest, chain_id, sender, nonce, asset, amount, max_fee_per_gas, "
            "max_priority_fee_per_gas, unsigned_tx, raw_tx, tx_hash")


def _signature(row: tuple) -> Signature:
    (withdrawal_id, digest, chain_id, sender, nonce, asset, amount, max_fee, priority_fee, unsigned_tx, raw_tx,
     tx_hash) = row
    return Signature(withdrawal_id, digest, int(chain_id), sender, int(nonce), asset, int(amount), int(max_fee),
                     int(priority_fee), unsigned_tx, raw_tx, tx_hash)


class JournalUnavailable(RuntimeError):
    """A commit of the journal failed: nothing is answered or signed until the signer restarts."""


class Journal:
    """One SQLite file; one decision at a time (``held``, check-and-write), commits grouped (``sync``)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.clock = clock  # seconds since the epoch; tests move it to roll the 24 h windows
        # isolation_level=None: explicit BEGIN IMMEDIATE … COMMIT, nothing implicit.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # COMMIT writes the WAL without fsync; ``sync`` fsyncs the WAL file, outside the hold (see above).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._wal = Path(f"{path}-wal")
        # Journals written before these columns existed (early issue-8 builds): add them in place.
        for table, column, default in (("signatures", "first", 1), ("refusals", "sticky", 0)):
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER NOT NULL DEFAULT {default}")
        self.lock = threading.RLock()  # the connection: every check and write, and each commit
        # Writes are numbered; ``_durable`` is the last one a finished commit covers.
        self._written = 0
        self._durable = 0
        self._group = threading.Condition()  # guards _durable, _committing, _broken
        self._committing = False
        self._broken: BaseException | None = None
        self._seen = threading.local()  # per thread: the last write its latest decision made or could read
        self.commits = 0  # commits that covered at least one write (bench: requests per fsync)
        self._flush()  # what the schema set-up wrote
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the WAL file's name in its folder: fsyncing the file alone does not make it durable
        finally:
            os.close(folder)
        self._windows: dict[str, _Window] = {}
        self._fee_windows: dict[int, _Window] = {}
        since = self.clock() - DAY_SECONDS
        for chain_id, asset, amount, first, unsigned_tx, signed_at in self._db.execute(
                "SELECT chain_id, asset, amount, first, unsigned_tx, signed_at FROM signatures WHERE signed_at > ?"
                " ORDER BY signed_at", (since,)):
            if first:
                self._windows.setdefault(asset, _Window()).add(signed_at, int(amount))
            self._fee_windows.setdefault(int(chain_id), _Window()).add(signed_at, worst_case_fee(unsigned_tx))

    def close(self) -> None:
        with self.lock:
            if self._broken is None and self._db.in_transaction:
                self._commit()
            self._db.close()

    # --- decisions and group commit -------------------------------------------------------------

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the journal for one decision (its checks and its write); ``sync`` afterwards."""
        with self.lock:
            depth = getattr(self._seen, "depth", 0)
            self._seen.depth = depth + 1
            try:
                yield
            finally:
                self._seen.depth = depth
                # Whatever this decision read may rest on writes not committed yet: it waits for them all.
                self._seen.ticket = self._written

    def sync(self) -> None:
        """Return once what this thread's latest decision wrote or read is committed and fsynced.

        The first thread to wait commits every write made so far and fsyncs it; the others wait
        for it, and whoever writes during its fsync is covered by the next one. Raises
        ``JournalUnavailable`` if a commit failed: the caller must not answer.
        """
        if getattr(self._seen, "depth", 0):
            raise RuntimeError("Journal.sync() inside held(): the commit needs the journal this thread holds")
        ticket = getattr(self._seen, "ticket", 0)
        with self._group:
            while True:
                self._check_usable()
                if self._durable >= ticket:
                    return
                if not self._committing:
                    self._committing = True
                    break
                self._group.wait()
        try:
            with self.lock:
                self._check_usable()
                written = self._written
                committed = self._commit_written()
            # Outside the hold: the next requests decide and write while this fsync runs.
            if committed:
                self._fsync_or_break()
            with self._group:
                self._durable = max(self._durable, written)
        finally:
            with self._group:
                self._committing = False
                self._group.notify_all()

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise JournalUnavailable(f"the signer journal failed to commit: {self._broken}")

    def _begin(self) -> None:
        self._check_usable()
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")

    def _commit_written(self) -> bool:
        """COMMIT the open transaction (not yet durable: see ``_fsync_or_break``), under ``lock``;
        whether there was one."""
        if not self._db.in_transaction:
            return False
        try:
            self._db.execute("COMMIT")
        except BaseException as error:
            self._break(error)
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise JournalUnavailable(f"the signer journal failed to commit: {error}") from error
        self.commits += 1
        return True

    def _fsync_or_break(self) -> None:
        try:
            self._flush()
        except OSError as error:
            self._break(error)
            raise JournalUnavailable(f"the signer journal failed to fsync: {error}") from error

    def _flush(self) -> None:
        """fsync the WAL file: every transaction committed so far is durable once this returns."""
        descriptor = os.open(self._wal, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def _break(self, error: BaseException) -> None:
        with self._group:
            self._broken = error
            self._group.notify_all()

    def _commit(self) -> None:
        """Commit and fsync every write made so far, at once; under ``lock``."""
        written = self._written
        if self._commit_written():
            self._fsync_or_break()
        with self._group:
            self._durable = max(self._durable, written)

    def by_digest(self, digest: str) -> Signature | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM signatures WHERE request_digest = ?", (digest,)).fetchone()
        return None if row is None else _signature(row)

    def for_withdrawal(self, withdrawal_id: str) -> list[Signature]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM signatures WHERE withdrawal_id = ? ORDER BY id",
                                (withdrawal_id,)).fetchall()
        return [_signature(row) for row in rows]

    def at_nonce(self, chain_id: int, sender: str, nonce: int) -> list[Signature]:
        """Every transaction signed at ``(chain, sender, nonce)``, oldest first."""
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM signatures WHERE chain_id = ? AND sender = ? AND nonce = ?"
                                " ORDER BY id", (str(chain_id), sender, str(nonce))).fetchall()
        return [_signature(row) for row in rows]

    def signed_since(self, asset: str, seconds: float = DAY_SECONDS, *, now: float | None = None) -> int:
        """What distinct withdrawals of ``asset`` signed in the last ``seconds`` move (fee bumps count once).

        Kept in memory from the journal (read once at open, then updated by ``record``), so the
        limit check costs the same on the millionth request as on the first.
        """
        if seconds != DAY_SECONDS:
            since = (now or self.clock()) - seconds
            rows = self._db.execute("SELECT amount FROM signatures WHERE asset = ? AND signed_at > ? AND first = 1",
                                    (asset, since)).fetchall()
            return sum(int(amount) for (amount,) in rows)
        window = self._windows.get(asset)
        return 0 if window is None else window.total_after((now or self.clock()) - DAY_SECONDS)

    def fees_since(self, chain_id: int, *, now: float | None = None) -> int:
        """The worst-case fees of every transaction signed on ``chain_id`` in the last 24 hours (wei)."""
        window = self._fee_windows.get(chain_id)
        return 0 if window is None else window.total_after((now or self.clock()) - DAY_SECONDS)

    def write(self, signature: Signature, destination: str, *, first: bool) -> None:
        """Write the signature under ``held()``: every later check sees it at once, and it is durable once
        ``sync`` returns (nobody hears of it before). ``first``: the withdrawal's first signature (it
        counts toward the daily limit; a fee bump does not count again)."""
        signed_at = self.clock()
        with self.lock:
            self._begin()
            self._db.execute(
                "INSERT INTO signatures (withdrawal_id, request_digest, chain_id, sender, nonce, asset, destination,"
                " amount, max_fee_per_gas, max_priority_fee_per_gas, unsigned_tx, raw_tx, tx_hash, first, signed_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (signature.withdrawal_id, signature.request_digest, str(signature.chain_id), signature.sender,
                 str(signature.nonce), signature.asset, destination, str(signature.amount),
                 str(signature.max_fee_per_gas), str(signature.max_priority_fee_per_gas), signature.unsigned_tx,
                 signature.raw_tx, signature.tx_hash, int(first), signed_at))
            self._written += 1
            # Counted at once, committed or not: a concurrent request's limit check must see it.
            if first:
                self._windows.setdefault(signature.asset, _Window()).add(signed_at, signature.amount)
            self._fee_windows.setdefault(signature.chain_id, _Window()).add(signed_at,
                                                                            worst_case_fee(signature.unsigned_tx))

    def write_refusal(self, withdrawal_id: str, digest: str, reason: str, message: str, *, sticky: bool) -> None:
        """Write a refusal under ``held()``; durable once ``sync`` returns, before the refusal is sent."""
        with self.lock:
            self._begin()
            self._db.execute("INSERT INTO refusals (withdrawal_id, request_digest, reason, message, sticky, refused_at)"
                             " VALUES (?, ?, ?, ?, ?, ?)",
                             (withdrawal_id[:80], digest, reason, message[:500], int(sticky), self.clock()))
            self._written += 1

    def record(self, signature: Signature, destination: str, *, first: bool) -> None:
        """``write`` and commit (fsync) at once: for a caller outside the grouped signing path."""
        with self.lock:
            self.write(signature, destination, first=first)
            self._commit()

    def record_refusal(self, withdrawal_id: str, digest: str, reason: str, message: str, *, sticky: bool) -> None:
        """``write_refusal`` and commit (fsync) at once."""
        with self.lock:
            self.write_refusal(withdrawal_id, digest, reason, message, sticky=sticky)
            self._commit()

    def sticky_refusal(self, withdrawal_id: str, digest: str) -> tuple[str, str] | None:
        row = self._db.execute("SELECT reason, message FROM refusals WHERE request_digest = ? AND withdrawal_id = ?"
                               " AND sticky = 1 ORDER BY id LIMIT 1", (digest, withdrawal_id)).fetchone()
        return None if row is None else (row[0], row[1])

    def refusals(self, withdrawal_id: str | None = None) -> list[tuple[str, str, str]]:
        """(withdrawal_id, reason, message), oldest first; for tests and operators."""
        query = "SELECT withdrawal_id, reason, message FROM refusals"
        rows = (self._db.execute(query + " WHERE withdrawal_id = ? ORDER BY id", (withdrawal_id,)) if withdrawal_id
                else self._db.execute(query + " ORDER BY id"))
        return [tuple(row) for row in rows.fetchall()]
