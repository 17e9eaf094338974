"""Sweep tables: each sweep of a deposit address, the transactions asked of the signer for it, and the
movements between the platform's own addresses that the scanner saw (never customer deposits).

What the database enforces even if the service had a bug (migration 0027): a known state; one sweep
in progress per deposit address (its nonce and its native coin are shared by every asset); a request
numbered once per id and answered once per digest; a transaction hash belongs to one row; a
``(chain, sender, nonce)`` belongs to one request unless it was given back (a verified refusal);
a chain event is one movement.
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
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, Money, TimestampMixin
from custody.treasury.states import ACTIVE, STATES

_STATE_LIST = ", ".join(f"'{state}'" for state in STATES)
_ACTIVE_LIST = ", ".join(f"'{state}'" for state in ACTIVE)


class Sweep(IdMixin, TimestampMixin, Base):
    """What one deposit address holds of one asset, on its way to the chain's hot wallet."""

    __tablename__ = "treasury_sweeps"
    __table_args__ = (
        CheckConstraint(f"state IN ({_STATE_LIST})", name="state_known"),
        CheckConstraint("amount > 0 AND topup_amount >= 0 AND gas_limit > 0 AND max_fee_per_gas > 0"
                        " AND max_priority_fee_per_gas >= 0", name="amounts_valid"),
        CheckConstraint("derivation_index BETWEEN 0 AND 2147483647", name="index_not_hardened"),
        Index("uq_treasury_sweeps_address_active", "chain", "address", unique=True,
              postgresql_where=text(f"state IN ({_ACTIVE_LIST})")),
        Index("ix_treasury_sweeps_active", "state", postgresql_where=text(f"state IN ({_ACTIVE_LIST})")),
        Index("ix_treasury_sweeps_created", "created_at", "id"),
        Index("ix_treasury_sweeps_address_asset", "chain", "address", "asset", "created_at"),
    )
    __mapper_args__ = {"eager_defaults": True}

    chain: Mapped[str] = mapped_column(String(40))
    asset: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    address: Mapped[str] = mapped_column(String(42))  # the deposit address, EIP-55
    derivation_index: Mapped[int] = mapped_column(Integer)  # m/44'/60'/{account}'/0/{index}: what the signer derives
    hot_wallet: Mapped[str] = mapped_column(String(42))  # the destination, as the signed xpub file names it
    amount: Mapped[int] = mapped_column(Money)  # minor units of the asset moved
    # The block whose balances were read: every deposit of the address and asset up to it is in the
    # amount (it is confirmed), so only a deposit in a later block makes the address sweepable again.
    balance_block: Mapped[int] = mapped_column(BigInteger)
    # The sweep transaction's gas and fees, fixed when it is planned: a token sweep's top-up pays
    # exactly gas_limit × max_fee_per_gas, less what the address already held.
    gas_limit: Mapped[int] = mapped_column(Integer)
    max_fee_per_gas: Mapped[int] = mapped_column(Money)
    max_priority_fee_per_gas: Mapped[int] = mapped_column(Money)
    topup_amount: Mapped[int] = mapped_column(Money, default=0, server_default=text("0"))  # wei; 0: none needed
    # The top-up request in flight (its attempts share its nonce); a new one only after a verified
    # refusal or a reverted top-up, never while this one may still be mined.
    topup_request_id: Mapped[uuid.UUID | None]
    state: Mapped[str] = mapped_column(String(20))
    # The transactions that were mined (or the latest sent), for the operators' list.
    topup_tx_hash: Mapped[str | None] = mapped_column(String(66))
    sweep_tx_hash: Mapped[str | None] = mapped_column(String(66))
    topup_gas_cost: Mapped[int | None] = mapped_column(Money)  # wei the hot wallet paid for the top-up(s)
    sweep_gas_cost: Mapped[int | None] = mapped_column(Money)  # wei the deposit address paid
    block_number: Mapped[int | None] = mapped_column(BigInteger)  # the sweep transaction's
    confirmations: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    failure_reason: Mapped[str | None] = mapped_column(String(60))
    # Why it waits (fees above the caps): set once when the wait starts (that is when it alerts).
    alert: Mapped[str | None] = mapped_column(String(60))
    # A top-up the signer refused is asked for again from then (a new request, never a second top-up
    # while one may still be mined).
    retry_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


TX_KINDS = ("topup", "sweep")


class SweepTransaction(IdMixin, Base):
    """One transaction asked of the signer for a sweep: a top-up (from the hot wallet) or the sweep
    itself (from the deposit address). ``request_id`` is what the signer journals it under; a fee
    bump is a later ``attempt`` of the same request, at the same nonce."""

    __tablename__ = "treasury_sweep_transactions"
    __table_args__ = (
        CheckConstraint("kind IN ('topup', 'sweep')", name="kind_known"),
        UniqueConstraint("request_id", "attempt", name="uq_treasury_sweep_transactions_attempt"),
        UniqueConstraint("request_id", "request_digest", name="uq_treasury_sweep_transactions_digest"),
        Index("uq_treasury_sweep_transactions_tx_hash", "tx_hash", unique=True,
              postgresql_where=text("tx_hash IS NOT NULL")),
        # A sender's nonce belongs to one request, until a verified refusal gives it back.
        Index("uq_treasury_sweep_transactions_nonce", "chain", "sender", "nonce", unique=True,
              postgresql_where=text("attempt = 1 AND NOT nonce_released")),
        Index("ix_treasury_sweep_transactions_sweep", "sweep_id", "requested_at"),
    )
    __mapper_args__ = {"eager_defaults": True}

    sweep_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("treasury_sweeps.id"))
    kind: Mapped[str] = mapped_column(String(10))
    request_id: Mapped[uuid.UUID]
    attempt: Mapped[int] = mapped_column(SmallInteger)  # 1, then 2, 3… for fee bumps
    chain: Mapped[str] = mapped_column(String(40))
    sender: Mapped[str] = mapped_column(String(42))
    nonce: Mapped[int] = mapped_column(BigInteger)
    nonce_released: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    value: Mapped[int] = mapped_column(Money)  # minor units of what it moves (a top-up: wei)
    unsigned_tx: Mapped[str] = mapped_column(Text)  # canonical JSON (core.sign_requests)
    request_digest: Mapped[str] = mapped_column(String(64))
    authorization: Mapped[str] = mapped_column(String(100))  # Ed25519 by the custody request key; not secret
    max_fee_per_gas: Mapped[int] = mapped_column(Money)
    max_priority_fee_per_gas: Mapped[int] = mapped_column(Money)
    requested_at: Mapped[datetime] = mapped_column(server_default=func.now())
    requested_block: Mapped[int | None] = mapped_column(BigInteger)
    sign_requested_at: Mapped[datetime | None]  # when the request last left for the signer
    raw_tx: Mapped[str | None] = mapped_column(Text)
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    signed_at: Mapped[datetime | None]
    broadcast_at: Mapped[datetime | None]
    broadcast_block: Mapped[int | None] = mapped_column(BigInteger)
    sent_block: Mapped[int | None] = mapped_column(BigInteger)  # the head when last sent to the node
    refusal: Mapped[str | None] = mapped_column(String(60))  # the signer's code; "broadcast_rejected" meanwhile
    block_number: Mapped[int | None] = mapped_column(BigInteger)  # mined there
    status: Mapped[int | None] = mapped_column(SmallInteger)  # 1 success, 0 reverted
    gas_cost: Mapped[int | None] = mapped_column(Money)


class InternalMovement(IdMixin, Base):
    """A transfer from one of the platform's own addresses (a hot wallet, a deposit address) to a deposit
    address, as the scanner saw it: a top-up, an internal move — where funds sit, never a deposit."""

    __tablename__ = "treasury_movements"
    __table_args__ = (
        UniqueConstraint("chain", "tx_hash", "tx_log_index", name="uq_treasury_movements_event"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_treasury_movements_chain_block", "chain", "block_number"),
    )

    chain: Mapped[str] = mapped_column(String(40))
    tx_hash: Mapped[str] = mapped_column(String(66))
    tx_log_index: Mapped[int] = mapped_column(Integer)  # within its transaction; -1 for the native coin
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66))
    from_address: Mapped[str] = mapped_column(String(42))
    to_address: Mapped[str] = mapped_column(String(42))
    asset: Mapped[str] = mapped_column(String(10))
    amount: Mapped[int] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
