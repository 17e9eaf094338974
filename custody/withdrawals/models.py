"""Withdrawal tables: the withdrawal, its approvals, its transaction attempts, hot wallet nonces, and
the customer's address book.

What the database enforces even if the service had a bug (migrations 0010, 0020, 0026, 0032): a known state;
one approval per operator; attempts numbered once per withdrawal and answered once per digest
within it; a transaction hash belongs to one attempt; a ``(chain, hot wallet, nonce)`` belongs to
one withdrawal unless it was released (a refused withdrawal gives its nonce back), and to one live
filler at most; an address once per chain in a user's address book.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

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
    # Why the worker waits for the market or an operator (a fee above the cap, fee bumps used up): set
    # once when the wait starts (that is when it alerts), cleared when the withdrawal moves on.
    alert: Mapped[str | None] = mapped_column(String(60))
    # An operator asked for the nonce to be cancelled: a 0-value self-transfer replaces the payment.
    cancel_requested_at: Mapped[datetime | None]
    broadcast_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class WithdrawalApproval(IdMixin, Base):
    __tablename__ = "withdrawal_approvals"
    __table_args__ = (UniqueConstraint("withdrawal_id", "operator_id", name="uq_withdrawal_approvals_operator"),)

    withdrawal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("withdrawals.id"))
    operator_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class WithdrawalAttempt(IdMixin, Base):
    """One transaction asked of the signer: the first, then fee bumps at the same nonce, perhaps a cancel."""

    __tablename__ = "withdrawal_attempts"
    __table_args__ = (
        UniqueConstraint("withdrawal_id", "attempt", name="uq_withdrawal_attempts_number"),
        # The digest covers the transaction only, and two withdrawals may ask for the same one.
        UniqueConstraint("withdrawal_id", "request_digest", name="uq_withdrawal_attempts_withdrawal_digest"),
        CheckConstraint("kind IN ('payment', 'cancel')", name="kind_known"),
        Index("uq_withdrawal_attempts_tx_hash", "tx_hash", unique=True, postgresql_where=text("tx_hash IS NOT NULL")),
    )

    withdrawal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("withdrawals.id"))
    attempt: Mapped[int] = mapped_column(SmallInteger)  # 1, then 2, 3… for fee bumps and a cancel
    # "payment" (the first and its fee bumps) or "cancel" (0 value to the hot wallet itself).
    kind: Mapped[str] = mapped_column(String(10), default="payment", server_default=text("'payment'"))
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
    requested_block: Mapped[int | None] = mapped_column(BigInteger)  # the head when a bump was asked for
    sent_block: Mapped[int | None] = mapped_column(BigInteger)  # the head when last sent to the node (re-broadcasts)
    rejected_block: Mapped[int | None] = mapped_column(BigInteger)  # the head when the node last refused it
    # The signer's refusal code, or "broadcast_rejected" while the node refuses it (tried again later).
    refusal: Mapped[str | None] = mapped_column(String(60))

    __mapper_args__ = {"eager_defaults": True}


class HotWalletNonce(Base):
    """The next nonce of a hot wallet: assigned under this row's lock, never read from the node's pending count.

    Every address the platform signs from keeps its nonce here, deposit addresses being swept included
    (``custody.treasury``): so a row also says "the platform sends from this address" (``custody.deposits.senders``).
    """

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


FILLER_STATES = ("pending", "signing", "signed", "broadcast", "mined", "refused")


class NonceFiller(IdMixin, TimestampMixin, Base):
    """A 0-value self-transfer of the hot wallet at a nonce a refused withdrawal gave back while later
    nonces were already signed: without it the node would hold every later transaction forever.

    ``pending`` (the nonce is taken, fees not yet quoted) → ``signing`` → ``signed`` → ``broadcast`` →
    ``mined``; ``refused`` by the signer (the nonce is given back). Its id is the one the signer sees.
    """

    __tablename__ = "nonce_fillers"
    __table_args__ = (
        CheckConstraint("state IN (" + ", ".join(f"'{state}'" for state in FILLER_STATES) + ")", name="state_known"),
        Index("uq_nonce_fillers_nonce", "chain", "address", "nonce", unique=True,
              postgresql_where=text("state <> 'refused'")),
        Index("ix_nonce_fillers_active", "state",
              postgresql_where=text("state IN ('pending', 'signing', 'signed', 'broadcast')")),
    )
    __mapper_args__ = {"eager_defaults": True}

    chain: Mapped[str] = mapped_column(String(40))
    address: Mapped[str] = mapped_column(String(42))  # the hot wallet
    nonce: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(20))
    unsigned_tx: Mapped[str | None] = mapped_column(Text)
    request_digest: Mapped[str | None] = mapped_column(String(64))
    authorization: Mapped[str | None] = mapped_column(String(100))
    max_fee_per_gas: Mapped[int | None] = mapped_column(Money)
    max_priority_fee_per_gas: Mapped[int | None] = mapped_column(Money)
    sign_requested_at: Mapped[datetime | None]
    raw_tx: Mapped[str | None] = mapped_column(Text)
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    sent_block: Mapped[int | None] = mapped_column(BigInteger)  # the head when last sent to the node
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    gas_cost: Mapped[int | None] = mapped_column(Money)
    refusal: Mapped[str | None] = mapped_column(String(60))
    alert: Mapped[str | None] = mapped_column(String(60))  # fees above the cap: it waits (alerted once)


class AddressBook(Base):
    """A user's withdrawal address book settings; the row exists once the user first changed them."""

    __tablename__ = "address_books"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    # The owner's choice. On: a withdrawal goes only to a usable entry of the book for its chain and asset
    # (custody.withdrawals.address_book).
    allowlist_enabled: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    # Turned off with a cooling-off: the allowlist still applies until then (a stolen session that turns
    # it off cannot withdraw anywhere at once). Cleared when it is turned on again.
    allowlist_off_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class AddressBookEntry(IdMixin, Base):
    """A destination the user saved: one per (user, chain, address), the address EIP-55 as withdrawals store it."""

    __tablename__ = "address_book_entries"
    __table_args__ = (
        UniqueConstraint("user_id", "chain", "address", name="uq_address_book_entries_destination"),
        Index("ix_address_book_entries_user_created", "user_id", "created_at"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    chain: Mapped[str] = mapped_column(String(40))
    address: Mapped[str] = mapped_column(String(42))
    label: Mapped[str] = mapped_column(String(100))
    # A currency code of the chain: the entry takes withdrawals of that asset only. None: any asset of the chain.
    asset: Mapped[str | None] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # created_at plus the cooling-off in force when it was added: a later change of the setting
    # neither shortens nor lengthens what the user was told.
    usable_at: Mapped[datetime]
