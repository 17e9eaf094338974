"""Deposit tables: what the scanner saw on chain, and how far it has followed each chain.

The database holds the rules even if the service had a bug (migrations 0009, 0023): a chain
event is one live row, keyed by ``(chain, tx_hash, tx_log_index)`` — the log's index **within its
transaction** (a native transfer has ``-1``), which a reorg cannot change, unlike ``log_index``,
the log's place in its block — so nothing delivered twice can be recorded, or credited, twice; a
credited row names its credit. A key found again with another recipient, asset or amount
``orphaned``s its row (outside the unique index) and is recorded again as the next ``revision``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, Money, TimestampMixin

# The log index of a native (value) transfer: it has no log, and a transaction moves value once.
NATIVE_LOG_INDEX = -1

SEEN, CONFIRMING, CREDITED, REORGED, ORPHANED = "seen", "confirming", "credited", "reorged", "orphaned"
STATES = (SEEN, CONFIRMING, CREDITED, REORGED, ORPHANED)
SOURCES = ("scanner", "ingest")


class Deposit(IdMixin, TimestampMixin, Base):
    __tablename__ = "deposits"
    __table_args__ = (
        # One live row per chain event; an orphaned one (its key seen again with other content) steps aside.
        Index("uq_deposits_identity", "chain", "tx_hash", "tx_log_index", unique=True,
              postgresql_where=text("state <> 'orphaned'")),
        # Each revision posts under a ledger reference of its own (``key``).
        UniqueConstraint("chain", "tx_hash", "tx_log_index", "revision", name="uq_deposits_identity_revision"),
        CheckConstraint("state IN ('seen', 'confirming', 'credited', 'reorged', 'orphaned')", name="state_known"),
        CheckConstraint("source IN ('scanner', 'ingest')", name="source_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("log_index >= -1", name="log_index_range"),
        # NULL only for token rows recorded before 0023 (the index needs the node): see ``key``.
        CheckConstraint("tx_log_index IS NULL OR (tx_log_index = -1) = (log_index = -1)", name="tx_log_index_range"),
        CheckConstraint("revision >= 1 AND (revision = 1) = (supersedes IS NULL)", name="revision_range"),
        CheckConstraint("receivable >= 0", name="receivable_range"),
        CheckConstraint("confirmations >= 0 AND required_confirmations >= 1", name="confirmations_range"),
        CheckConstraint("state <> 'credited' OR credit_transfer_id IS NOT NULL", name="credited_has_credit"),
        # The wallet's list: newest first per user, keyset on (created_at, id).
        Index("ix_deposits_user_created", "user_id", "created_at", "id"),
        # A legacy token row by its block position, and a key's earlier revisions.
        Index("ix_deposits_chain_tx_hash", "chain", "tx_hash"),
        # Reorg handling and the per-block hash check look deposits up by height.
        Index("ix_deposits_chain_block", "chain", "block_number"),
        # What each new block re-counts: the few deposits still waiting for confirmations.
        Index("ix_deposits_waiting", "chain", "block_number", postgresql_where=text("state IN ('seen', 'confirming')")),
    )

    chain: Mapped[str] = mapped_column(String(40))
    tx_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int] = mapped_column(Integer)  # in the block it was last found in; -1 native
    tx_log_index: Mapped[int | None] = mapped_column(Integer)  # in its transaction; -1 native (the key)
    revision: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    supersedes: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("deposits.id"))  # the previous revision
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66))
    from_address: Mapped[str | None] = mapped_column(String(42))
    to_address: Mapped[str] = mapped_column(String(42))  # EIP-55, as in deposit_addresses
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    asset: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    amount: Mapped[int] = mapped_column(Money)
    state: Mapped[str] = mapped_column(String(12), server_default=text("'seen'"))
    # Blocks on top of the deposit's, its own included, as of the scanner's last processed block.
    confirmations: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # The chain's setting when the deposit was first seen: a later settings change moves no goalposts.
    required_confirmations: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(10))
    # Credits posted so far: each (re-)credit after a reorg has a ledger reference of its own.
    credits: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    credit_transfer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ledger_transfers.id"))  # in force
    # Minor units its reversals booked on the ``receivable`` account (spent before the reorg), not yet
    # settled by a later credit of the same chain event.
    receivable: Mapped[int] = mapped_column(Money, server_default=text("0"))
    credit_requested_at: Mapped[datetime | None]
    reversal_requested_at: Mapped[datetime | None]
    credited_at: Mapped[datetime | None]
    reorged_at: Mapped[datetime | None]
    reversed_at: Mapped[datetime | None]
    orphaned_at: Mapped[datetime | None]

    @property
    def key(self) -> str:
        """The chain event's identity and revision; also the ledger reference of its first credit."""
        # A token row recorded before 0023 keeps the reference its credit was posted under.
        index = self.log_index if self.tx_log_index is None else self.tx_log_index
        return deposit_key(self.chain, self.tx_hash, index, self.revision)


def deposit_key(chain: str, tx_hash: str, index: int, revision: int = 1) -> str:
    """``deposit:{chain}:{tx_hash}:{index}``, and ``:r{revision}`` after the first content of the key."""
    key = f"deposit:{chain}:{tx_hash}:{index}"
    return key if revision == 1 else f"{key}:r{revision}"


class ScannerCursor(Base):
    """How far the scanner has followed a chain: every block up to ``height`` is processed."""

    __tablename__ = "scanner_cursors"
    __table_args__ = (
        CheckConstraint("height >= -1", name="height_range"),
        CheckConstraint("finality IN ('confirmations', 'finalized')", name="finality_known"),  # migration 0024
    )

    chain: Mapped[str] = mapped_column(String(40), primary_key=True)
    height: Mapped[int] = mapped_column(BigInteger)  # -1: nothing processed yet (it starts at genesis)
    hash: Mapped[str | None] = mapped_column(String(66))  # of the block at ``height``
    start_height: Mapped[int] = mapped_column(BigInteger)  # where the first run began: earlier blocks were never read
    head: Mapped[int | None] = mapped_column(BigInteger)  # the node's latest block, when the scanner last asked
    progressed_at: Mapped[datetime] = mapped_column(server_default=func.now())  # when ``height`` last moved
    checked_at: Mapped[datetime] = mapped_column(server_default=func.now())  # when the scanner last asked the node
    # The chain's finality rule as the scanner follows it, and (rule "finalized") the node's finalized
    # height it checked against its own blocks: no deposit above that height may be credited.
    finality: Mapped[str] = mapped_column(String(13), server_default=text("'confirmations'"))
    finalized: Mapped[int | None] = mapped_column(BigInteger)


class ScannedBlock(Base):
    """A recent block the scanner processed: walking back through these finds a reorg's common ancestor."""

    __tablename__ = "scanned_blocks"

    chain: Mapped[str] = mapped_column(String(40), primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[str] = mapped_column(String(66))
    parent_hash: Mapped[str] = mapped_column(String(66))
