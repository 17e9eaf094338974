"""Proof-of-reserves tables: one row per epoch, and what it published and must keep answering.

An epoch is evidence once published: the rows are never updated or deleted (a trigger, migration
0029); a new epoch is a new row. What each one keeps:

- ``reserve_assets``: per asset, the Merkle sum tree's root, the liabilities it covers (the ledger's
  customer accounts, available + held, at the snapshot), the reserves counted on chain and the block
  of each chain they were read at;
- ``reserve_nodes``: every node of every tree (level 0 the leaves, in their shuffled order; a
  customer's leaf names them), so a proof is a handful of indexed reads, never a rebuild;
- ``reserve_nonces``: the customer's random nonce of the epoch, shown only to them;
- ``reserve_blocks`` and ``reserve_holdings``: per chain the block read, and the balance of every
  platform address there (hot wallet, its predecessor, cold wallet, deposit addresses) per asset.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, Money


class ReserveEpoch(Base):
    __tablename__ = "reserve_epochs"
    __table_args__ = (Index("ix_reserve_epochs_created", "created_at", "id"),)  # "latest": the newest snapshot

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)  # the public "epoch"
    # The scheduled job's period ("daily:2026-12-06"), unique: a message delivered twice builds one
    # epoch. None for an epoch an admin asked for.
    slot: Mapped[str | None] = mapped_column(String(40), unique=True)
    requested_by: Mapped[str] = mapped_column(String(120))  # the admin's user id, or "treasury" (the job)
    # now(): the start of the transaction whose snapshot the trees were read in.
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ReserveAsset(Base):
    __tablename__ = "reserve_assets"
    __table_args__ = (
        CheckConstraint("root_sum = liabilities", name="root_covers_liabilities"),
        CheckConstraint("liabilities >= 0 AND reserves >= 0", name="not_negative"),
    )

    epoch_id: Mapped[int] = mapped_column(ForeignKey("reserve_epochs.id"), primary_key=True)
    asset: Mapped[str] = mapped_column(ForeignKey("currencies.code"), primary_key=True)
    root_hash: Mapped[str] = mapped_column(String(64))
    root_sum: Mapped[int] = mapped_column(Money)
    liabilities: Mapped[int] = mapped_column(Money)  # the ledger's sum, equal to root_sum (checked when built)
    reserves: Mapped[int] = mapped_column(Money)
    customers: Mapped[int] = mapped_column(Integer)
    depth: Mapped[int] = mapped_column(Integer)  # levels above the leaves: 2**depth leaves, padding included
    blocks: Mapped[dict[str, Any]] = mapped_column(JSONB)  # {chain: block number} of the chains carrying it


class ReserveNode(Base):
    __tablename__ = "reserve_nodes"
    __table_args__ = (
        # A customer's leaf, by who they are: where a proof starts.
        Index("uq_reserve_nodes_customer", "epoch_id", "asset", "user_id", unique=True,
              postgresql_where=text("user_id IS NOT NULL")),
        # A negative balance never enters a tree (the builder refuses first; this refuses always).
        CheckConstraint("sum >= 0", name="sum_not_negative"),
        CheckConstraint("(level = 0) = (leaf_id IS NOT NULL)", name="leaf_has_id"),
        CheckConstraint("user_id IS NULL OR level = 0", name="customer_is_leaf"),
    )

    epoch_id: Mapped[int] = mapped_column(ForeignKey("reserve_epochs.id"), primary_key=True)
    asset: Mapped[str] = mapped_column(String(10), primary_key=True)
    level: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0: leaves
    position: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[str] = mapped_column(String(64))
    sum: Mapped[int] = mapped_column(Money)
    leaf_id: Mapped[str | None] = mapped_column(String(64))  # leaves only
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))  # a customer's leaf; None: padding


class ReserveNonce(Base):
    __tablename__ = "reserve_nonces"

    epoch_id: Mapped[int] = mapped_column(ForeignKey("reserve_epochs.id"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64))


class ReserveBlock(Base):
    __tablename__ = "reserve_blocks"

    epoch_id: Mapped[int] = mapped_column(ForeignKey("reserve_epochs.id"), primary_key=True)
    chain: Mapped[str] = mapped_column(String(40), primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(66))


class ReserveHolding(Base):
    __tablename__ = "reserve_holdings"
    __table_args__ = (CheckConstraint("amount >= 0", name="amount_not_negative"),)

    epoch_id: Mapped[int] = mapped_column(ForeignKey("reserve_epochs.id"), primary_key=True)
    chain: Mapped[str] = mapped_column(String(40), primary_key=True)
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    asset: Mapped[str] = mapped_column(String(10), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))  # hot_wallet | retired_hot_wallet | cold_wallet | deposit_address
    amount: Mapped[int] = mapped_column(Money)
