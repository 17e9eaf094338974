"""Deposit tables: what the scanner saw on chain, and how far it has followed each chain.

The database holds the rules even if the service had a bug (migration 0009): a chain event is
one row, keyed by ``(chain, tx_hash, log_index)`` (a native transfer has ``log_index = -1``), so
nothing delivered twice can be recorded — or credited — twice; a credited row names its credit.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint, func, text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, Money, TimestampMixin

# The log index of a native (value) transfer: it has no log, and a transaction moves value once.
NATIVE_LOG_INDEX = -1

SEEN, CONFIRMING, CREDITED, REORGED = "seen", "confirming", "credited", "reorged"
STATES = (SEEN, CONFIRMING, CREDITED, REORGED)
SOURCES = ("scanner", "ingest")


class Deposit(IdMixin, TimestampMixin, Base):
    __tablename__ = "deposits"
    __table_args__ = (
        UniqueConstraint("chain", "tx_hash", "log_index", name="uq_deposits_chain_tx_hash_log_index"),
        CheckConstraint("state IN ('seen', 'confirming', 'credited', 'reorged')", name="state_known"),
        CheckConstraint("source IN ('scanner', 'ingest')", name="source_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("log_index >= -1", name="log_index_range"),
        CheckConstraint("confirmations >= 0 AND required_confirmations >= 1", name="confirmations_range"),
        CheckConstraint("state <> 'credited' OR credit_transfer_id IS NOT NULL", name="credited_has_credit"),
        # The wallet's list: newest first per user, keyset on (created_at, id).
        Index("ix_deposits_user_created", "user_id", "created_at", "id"),
        # Reorg handling and the per-block hash check look deposits up by height.
        Index("ix_deposits_chain_block", "chain", "block_number"),
        # What each new block re-counts: the few deposits still waiting for confirmations.
        Index("ix_deposits_waiting", "chain", "block_number", postgresql_where=text("state IN ('seen', 'confirming')")),
    )

    chain: Mapped[str] = mapped_column(String(40))
    tx_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int] = mapped_column(Integer)
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
    credit_requested_at: Mapped[datetime | None]
    reversal_requested_at: Mapped[datetime | None]
    credited_at: Mapped[datetime | None]
    reorged_at: Mapped[datetime | None]
    reversed_at: Mapped[datetime | None]

    @property
    def key(self) -> str:
        """The chain event's identity; also the ledger reference of its first credit."""
        return deposit_key(self.chain, self.tx_hash, self.log_index)


def deposit_key(chain: str, tx_hash: str, log_index: int) -> str:
    return f"deposit:{chain}:{tx_hash}:{log_index}"


class ScannerCursor(Base):
    """How far the scanner has followed a chain: every block up to ``height`` is processed."""

    __tablename__ = "scanner_cursors"
    __table_args__ = (CheckConstraint("height >= -1", name="height_range"),)

    chain: Mapped[str] = mapped_column(String(40), primary_key=True)
    height: Mapped[int] = mapped_column(BigInteger)  # -1: nothing processed yet (it starts at genesis)
    hash: Mapped[str | None] = mapped_column(String(66))  # of the block at ``height``
    start_height: Mapped[int] = mapped_column(BigInteger)  # where the first run began: earlier blocks were never read
    head: Mapped[int | None] = mapped_column(BigInteger)  # the node's latest block, when the scanner last asked
    progressed_at: Mapped[datetime] = mapped_column(server_default=func.now())  # when ``height`` last moved
    checked_at: Mapped[datetime] = mapped_column(server_default=func.now())  # when the scanner last asked the node


class ScannedBlock(Base):
    """A recent block the scanner processed: walking back through these finds a reorg's common ancestor."""

    __tablename__ = "scanned_blocks"

    chain: Mapped[str] = mapped_column(String(40), primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[str] = mapped_column(String(66))
    parent_hash: Mapped[str] = mapped_column(String(66))
