"""Request and response models of the deposit routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.wallet.schemas import DECIMAL
from core.money import AmountText
from custody.deposits.ingest import ChainEvent
from custody.deposits.queries import DepositItem

HASH_PATTERN = r"^0x[0-9a-fA-F]{64}$"


class ScannerEventIn(BaseModel):
    """A transfer to a deposit address, as an external watcher saw it; verified against the chain."""

    model_config = ConfigDict(extra="forbid")

    chain: str = Field(min_length=1, max_length=40, examples=["ethereum"])
    tx_hash: str = Field(pattern=HASH_PATTERN)
    log_index: int = Field(ge=-1, le=2**31 - 1,
                           description="The token Transfer log's index in its block; -1 for the native coin.")
    block_number: int = Field(ge=0, le=2**63 - 1)
    block_hash: str = Field(pattern=HASH_PATTERN)
    to_address: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$", examples=["0x9858EfFD232B4033E47d90003D41EC34EcaEda94"])
    asset: str = Field(min_length=1, max_length=20, examples=["USDC"])
    amount: AmountText

    def event(self) -> ChainEvent:
        return ChainEvent(chain=self.chain, tx_hash=self.tx_hash, log_index=self.log_index,
                          block_number=self.block_number, block_hash=self.block_hash, to_address=self.to_address,
                          asset=self.asset, amount=self.amount)


class DepositsQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=500, description="`next_cursor` of the previous page.")


class DepositOut(BaseModel):
    id: uuid.UUID
    chain: str = Field(examples=["ethereum"])
    asset: str = Field(examples=["USDC"])
    amount: str = Field(description=DECIMAL, examples=["125.5"])
    tx_hash: str
    log_index: int = Field(description="The token Transfer log's index in its block; -1 for the native coin.")
    block_number: int
    block_hash: str
    to_address: str = Field(description="The deposit address (EIP-55).")
    state: Literal["seen", "confirming", "credited", "reorged", "orphaned"] = Field(
        description="seen → confirming → credited; reorged when its block left the chain (a credit is reversed); "
                    "orphaned when its transaction, mined again, moves something else at that log (a credit is "
                    "reversed, and the new content is another deposit).")
    confirmations: int = Field(description="Blocks on top of the deposit's, its own included.")
    required_confirmations: int = Field(description="Credited once confirmations reach this.")
    created_at: datetime = Field(description="When the deposit was first seen.")
    credited_at: datetime | None
    reorged_at: datetime | None

    @classmethod
    def of(cls, item: DepositItem) -> DepositOut:
        row = item.deposit
        return cls(id=row.id, chain=row.chain, asset=row.asset, amount=item.currency.format(row.amount),
                   tx_hash=row.tx_hash, log_index=row.log_index, block_number=row.block_number,
                   block_hash=row.block_hash, to_address=row.to_address, state=row.state,  # type: ignore[arg-type]
                   confirmations=item.confirmations, required_confirmations=row.required_confirmations,
                   created_at=row.created_at, credited_at=row.credited_at, reorged_at=row.reorged_at)


class DepositsOut(BaseModel):
    items: list[DepositOut]
    next_cursor: str | None
