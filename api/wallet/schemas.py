from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

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
