from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from custody.deposits.queries import DepositItem
from custody.ledger import ActivityItem, Balance

DECIMAL = "A decimal string in major units (fiat with its decimals, crypto without trailing zeros)."


class BalanceOut(BaseModel):
    currency: str = Field(examples=["USD"])
    available: str = Field(description=DECIMAL, examples=["8000.00"])
    held: str = Field(description="Reserved by pending escrows and withdrawals. " + DECIMAL, examples=["0.00"])
    total: str = Field(description="available + held. " + DECIMAL, examples=["8000.00"])

    @classmethod
    def of(cls, balance: Balance) -> BalanceOut:
        unit = balance.currency
        return cls(currency=unit.code, available=unit.format(balance.available), held=unit.format(balance.held),
                   total=unit.format(balance.total))


class BalancesOut(BaseModel):
    balances: list[BalanceOut]


class ActivityQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=500, description="`next_cursor` of the previous page.")
    currency: str | None = Field(default=None, pattern=r"^[A-Z0-9]{2,10}$", examples=["USD"])


class ReferenceOut(BaseModel):
    kind: str | None = Field(description="What caused the movement: escrow, withdrawal, deposit, user…")
    id: str | None


class ActivityItemOut(BaseModel):
    id: uuid.UUID
    type: str = Field(examples=["deposit", "escrow_hold", "sandbox_credit"])
    currency: str
    amount: str = Field(description=DECIMAL, examples=["0.5"])
    direction: Literal["in", "out"] = Field(description="Into or out of the available balance.")
    reference: ReferenceOut
    tx_hash: str | None
    created_at: datetime

    @classmethod
    def of(cls, item: ActivityItem) -> ActivityItemOut:
        return cls(id=item.id, type=item.type, currency=item.currency.code, amount=item.currency.format(item.amount),
                   direction=item.direction,
                   reference=ReferenceOut(kind=item.reference_kind, id=item.reference_id), tx_hash=item.tx_hash,
                   created_at=item.created_at)


class ActivityOut(BaseModel):
    items: list[ActivityItemOut]
    next_cursor: str | None


# --- deposits (issue 7) ---------------------------------------------------------------------------

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
    state: Literal["seen", "confirming", "credited", "reorged"] = Field(
        description="seen → confirming → credited; reorged when its block left the chain (a credit is reversed).")
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
