"""Tables of the hot and cold wallets (migration 0028): the hot wallet's last observed levels, its
transfers of surplus to the cold wallet, and the refills the cold custodian signs offline.

What the database enforces even if the service had a bug: known states; at most one hot → cold
transfer and one refill in flight per chain and asset; a ``(chain, hot wallet, nonce)`` held by one
live transfer at most (withdrawals hold theirs in ``withdrawals``, under the same nonce sequence).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, Money, TimestampMixin

LEVEL_STATES = ("ok", "below_floor", "above_ceiling")
# pending (no nonce yet) → signing → signed → broadcast → confirmed | failed (mined, reverted); refused by
# the signer (its nonce given back); dropped before signing (the surplus was gone by then).
COLD_TRANSFER_STATES = ("pending", "signing", "signed", "broadcast", "confirmed", "failed", "refused", "dropped")
COLD_TRANSFER_ACTIVE = ("pending", "signing", "signed", "broadcast")
# open (waiting for the cold custodian's signed transaction) → submitted (broadcast) → confirmed | failed;
# expired: the cold wallet used the nonce for something else before the refill came back.
REFILL_STATES = ("open", "submitted", "confirmed", "failed", "expired")
REFILL_ACTIVE = ("open", "submitted")


def _state_in(states: tuple[str, ...]) -> str:
    return "state IN (" + ", ".join(f"'{state}'" for state in states) + ")"


class HotWalletLevel(Base):
    """The last check of one asset's hot wallet on one chain: what `/metrics` and the wallets view show."""

    __tablename__ = "treasury_hot_levels"
    __table_args__ = (CheckConstraint(_state_in(LEVEL_STATES), name="state_known"),)

    chain: Mapped[str] = mapped_column(String(40), primary_key=True)
    asset: Mapped[str] = mapped_column(String(10), primary_key=True)
    hot_wallet: Mapped[str] = mapped_column(String(42))
    balance: Mapped[int] = mapped_column(Money)  # minor units, at block ``block_number``
    floor: Mapped[int] = mapped_column(Money)
    target: Mapped[int] = mapped_column(Money)
    ceiling: Mapped[int] = mapped_column(Money)
    state: Mapped[str] = mapped_column(String(20))
    block_number: Mapped[int] = mapped_column(BigInteger)
    checked_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ColdTransfer(IdMixin, TimestampMixin, Base):
    """The hot wallet's surplus of one asset, sent to the chain's cold wallet. Its id is the one the
    signer journals it under (``signer.sign_cold_transfer``)."""

    __tablename__ = "cold_transfers"
    __table_args__ = (
        CheckConstraint(_state_in(COLD_TRANSFER_STATES), name="state_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("uq_cold_transfers_active", "chain", "asset", unique=True,
              postgresql_where=text(_state_in(COLD_TRANSFER_ACTIVE))),
        Index("uq_cold_transfers_nonce", "chain", "hot_wallet", "nonce", unique=True,
              postgresql_where=text("nonce IS NOT NULL AND state NOT IN ('refused', 'dropped')")),
    )
    __mapper_args__ = {"eager_defaults": True}

    chain: Mapped[str] = mapped_column(String(40))
    asset: Mapped[str] = mapped_column(String(10))
    hot_wallet: Mapped[str] = mapped_column(String(42))
    cold_wallet: Mapped[str] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(Money)  # minor units of the asset
    state: Mapped[str] = mapped_column(String(20))
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    unsigned_tx: Mapped[str | None] = mapped_column(Text)  # canonical JSON (core.sign_requests)
    request_digest: Mapped[str | None] = mapped_column(String(64))
    authorization: Mapped[str | None] = mapped_column(String(100))  # the custody request key's; not secret
    max_fee_per_gas: Mapped[int | None] = mapped_column(Money)
    max_priority_fee_per_gas: Mapped[int | None] = mapped_column(Money)
    sign_requested_at: Mapped[datetime | None]
    raw_tx: Mapped[str | None] = mapped_column(Text)
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    sent_block: Mapped[int | None] = mapped_column(BigInteger)  # the head when last sent to the node
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    gas_cost: Mapped[int | None] = mapped_column(Money)  # wei, paid by the hot wallet
    reason: Mapped[str | None] = mapped_column(String(60))  # the signer's refusal, or why it was dropped
    alert: Mapped[str | None] = mapped_column(String(60))  # fees above the cap: it waits (alerted once)


class Refill(IdMixin, TimestampMixin, Base):
    """A request to the cold custodian: the unsigned transfer from the cold wallet to the hot wallet they
    sign offline, and, once they hand it back, the signed transaction the platform broadcasts."""

    __tablename__ = "treasury_refills"
    __table_args__ = (
        CheckConstraint(_state_in(REFILL_STATES), name="state_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("uq_treasury_refills_active", "chain", "asset", unique=True,
              postgresql_where=text(_state_in(REFILL_ACTIVE))),
        Index("ix_treasury_refills_created", "created_at", "id"),
    )
    __mapper_args__ = {"eager_defaults": True}

    chain: Mapped[str] = mapped_column(String(40))
    asset: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int] = mapped_column(Money)  # minor units: up to the hot wallet's target
    hot_balance: Mapped[int] = mapped_column(Money)  # what the hot wallet held when it was asked for
    # The transaction to sign, field by field (EIP-1559, type 2): from the cold wallet, to the hot wallet
    # (native) or to the token contract with transfer(hot wallet, amount).
    chain_id: Mapped[int] = mapped_column(BigInteger)
    cold_wallet: Mapped[str] = mapped_column(String(42))
    hot_wallet: Mapped[str] = mapped_column(String(42))
    nonce: Mapped[int] = mapped_column(BigInteger)
    tx_to: Mapped[str] = mapped_column(String(42))
    tx_value: Mapped[int] = mapped_column(Money)
    tx_data: Mapped[str] = mapped_column(Text)
    gas: Mapped[int] = mapped_column(BigInteger)
    max_fee_per_gas: Mapped[int] = mapped_column(Money)
    max_priority_fee_per_gas: Mapped[int] = mapped_column(Money)
    raw_tx: Mapped[str | None] = mapped_column(Text)
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    submitted_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    submitted_at: Mapped[datetime | None]
    sent_block: Mapped[int | None] = mapped_column(BigInteger)
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    gas_cost: Mapped[int | None] = mapped_column(Money)  # wei, paid by the cold wallet
