"""Withdrawal tables: the withdrawal, its approvals, its transaction attempts, and hot wallet nonces.

What the database enforces even if the service had a bug (migration 0010): a known state; one
approval per operator; attempts numbered once per withdrawal and answered once per digest; a
transaction hash belongs to one attempt; and a ``(chain, hot wallet, nonce)`` belongs to one
withdrawal unless it was released (a refused withdrawal gives its nonce back).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, SmallInteger, String, Text, \
    UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, Money, TimestampMixin
from custody.withdrawals.states import STATES

_STATE_LIST = ", ".join(f"'{state}'" for state in STATES)


class Withdrawal(IdMixin, TimestampMixin, Base):
    __tablename__ = "withdrawals"
    __table_args__ = (
        CheckConstraint(f"state IN ({_STATE_LIST})", name="state_known"),
        CheckConstraint("amount > 0 AND fee >= 0", name="amounts_valid"),
        CheckConstraint("approvals_required BETWEEN 1 AND 2", name="approvals_required_range"),
        Index("ix_withdrawals_user_created", "user_id", "created_at"),
        Index("ix_withdrawals_active", "state", postgresql_where=text(
            "state IN ('approved', 'signing', 'signed', 'broadcast')")),
        Index("uq_withdrawals_nonce", "chain", "hot_wallet", "nonce", unique=True,
              postgresql_where=text("nonce IS NOT NULL AND NOT nonce_released")),
    )
    __mapper_args__ = {"eager_defaults": True}  # server defaults come back with the INSERT (async: no lazy loads)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    chain: Mapped[str] = mapped_column(String(40))
    asset: Mapped[str] = mapped_column(String(10))
    to_address: Mapped[str] = mapped_column(String(42))  # EIP-55
    amount: Mapped[int] = mapped_column(Money)  # minor units of the asset
    fee: Mapped[int] = mapped_column(Money)  # the platform's flat fee, held with the amount
    state: Mapped[str] = mapped_column(String(20))
    hold_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ledger_holds.id"), unique=True)
    approvals_required: Mapped[int] = mapped_column(SmallInteger)
    travel_rule: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # Set when the sign request is made: the hot wallet and the nonce promised to this withdrawal.
    hot_wallet: Mapped[str | None] = mapped_column(String(42))
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    nonce_released: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    sign_requested_at: Mapped[datetime | None]
    # The transaction that was mined (one of the attempts), and how deep it is.
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    confirmations: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    gas_cost: Mapped[int | None] = mapped_column(Money)  # wei of the native coin, paid by the hot wallet
    failure_reason: Mapped[str | None] = mapped_column(String(60))
    broadcast_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class WithdrawalApproval(IdMixin, Base):
    __tablename__ = "withdrawal_approvals"
    __table_args__ = (UniqueConstraint("withdrawal_id", "operator_id", name="uq_withdrawal_approvals_operator"),)

    withdrawal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("withdrawals.id"))
    operator_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class WithdrawalAttempt(IdMixin, Base):
    """One transaction asked of the signer: the first, then fee bumps at the same nonce."""

    __tablename__ = "withdrawal_attempts"
    __table_args__ = (
        UniqueConstraint("withdrawal_id", "attempt", name="uq_withdrawal_attempts_number"),
        UniqueConstraint("request_digest", name="uq_withdrawal_attempts_digest"),
        Index("uq_withdrawal_attempts_tx_hash", "tx_hash", unique=True, postgresql_where=text("tx_hash IS NOT NULL")),
    )

    withdrawal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("withdrawals.id"))
    attempt: Mapped[int] = mapped_column(SmallInteger)  # 1, then 2, 3… for fee bumps
    unsigned_tx: Mapped[str] = mapped_column(Text)  # canonical JSON (core.sign_requests)
    request_digest: Mapped[str] = mapped_column(String(64))
    authorization: Mapped[str] = mapped_column(String(100))  # Ed25519 by the custody request key; not secret
    max_fee_per_gas: Mapped[int] = mapped_column(Money)
    max_priority_fee_per_gas: Mapped[int] = mapped_column(Money)
    requested_at: Mapped[datetime] = mapped_column(server_default=func.now())
    raw_tx: Mapped[str | None] = mapped_column(Text)  # the signed transaction (public once broadcast)
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    signed_at: Mapped[datetime | None]
    broadcast_at: Mapped[datetime | None]
    broadcast_block: Mapped[int | None] = mapped_column(BigInteger)  # the head when it was broadcast
    refusal: Mapped[str | None] = mapped_column(String(60))

    __mapper_args__ = {"eager_defaults": True}


class HotWalletNonce(Base):
    """The next nonce of a hot wallet: assigned under this row's lock, never read from the node's pending count."""

    __tablename__ = "hot_wallet_nonces"

    chain: Mapped[str] = mapped_column(String(40), primary_key=True)
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    next_nonce: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ReleasedNonce(Base):
    """A nonce given back by a withdrawal the signer refused: the next withdrawal takes it first."""

    __tablename__ = "hot_wallet_released_nonces"

    chain: Mapped[str] = mapped_column(String(40), primary_key=True)
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    nonce: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    released_at: Mapped[datetime] = mapped_column(server_default=func.now())
