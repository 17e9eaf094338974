from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, EmailStr, Field, StringConstraints

from core.time import rfc3339
from custody.escrow.service import EscrowView
from custody.escrow.states import STATES

State = Literal["created", "funded", "released", "disputed", "resolved", "cancelled"]
assert set(State.__args__) == set(STATES)  # type: ignore[attr-defined]
AMOUNT = Field(description="A decimal string in major units, e.g. \"8000.00\"; never a number.",
               examples=["8000.00"], max_length=80)


class CreateEscrowIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    amount: str = AMOUNT
    currency: str = Field(pattern=r"^[A-Z0-9]{2,10}$", examples=["USD"])
    seller_email: EmailStr | None = Field(
        default=None, description="May name someone not yet registered: the seller is the account that verifies "
                                  "this email.")


class PartyOut(BaseModel):
    id: uuid.UUID
    email: str


class EscrowOut(BaseModel):
    id: uuid.UUID
    title: str
    description: str
    amount: str
    currency: str
    state: State
    buyer: PartyOut
    seller: PartyOut | None
    seller_email: str | None
    fee: str | None = None
    dispute_reason: str | None = None
    resolution: Literal["release", "refund", "split"] | None = None
    seller_amount: str | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: EscrowView) -> EscrowOut:
        contract, unit = view.contract, view.currency
        money = (lambda minor: None if minor is None else unit.format(minor))
        return cls(
            id=contract.id, title=contract.title, description=contract.description, amount=unit.format(contract.amount),
            currency=contract.currency, state=contract.state,  # type: ignore[arg-type]
            buyer=PartyOut(id=view.buyer.id, email=view.buyer.email),
            seller=PartyOut(id=view.seller.id, email=view.seller.email) if view.seller else None,
            seller_email=contract.seller_email, fee=money(contract.fee), dispute_reason=contract.dispute_reason,
            resolution=contract.resolution, seller_amount=money(contract.seller_amount),  # type: ignore[arg-type]
            created_at=contract.created_at, updated_at=contract.updated_at,
        )

    @classmethod
    def created(cls, view: EscrowView) -> EscrowOut:
        """The create answer: the seller as the buyer addressed them (``seller_email``), never the account
        it linked to, so the answer is the same whether that email has a verified account or not. The
        contract's detail shows its parties."""
        return cls.of(view).model_copy(update={"seller": None})


class EscrowListOut(BaseModel):
    items: list[EscrowOut]
    next_cursor: str | None


class EscrowListQuery(BaseModel):
    role: Literal["buyer", "seller"] | None = None
    state: State | None = None
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=500)


class AdminEscrowQuery(BaseModel):
    state: State | None = None
    user_id: uuid.UUID | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=500)


class HistoryItemOut(BaseModel):
    seq: int
    type: str = Field(examples=["escrow.funded"])
    actor: str | None
    occurred_at: str
    data: dict[str, Any]


class HistoryOut(BaseModel):
    items: list[HistoryItemOut]

    @classmethod
    def of(cls, events: list[Any]) -> HistoryOut:
        return cls(items=[HistoryItemOut(seq=e.seq, type=e.type, actor=e.actor, occurred_at=rfc3339(e.occurred_at),
                                         data=e.data) for e in events])


class DisputeIn(BaseModel):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class ResolveIn(BaseModel):
    outcome: Literal["release", "refund", "split"]
    seller_amount: str | None = Field(default=None, max_length=80, description="For a split: the seller's part.")
    note: str | None = Field(default=None, max_length=2000)


class RejectIn(BaseModel):
    note: str | None = Field(default=None, max_length=2000)


class EvidenceForm(BaseModel):
    """multipart/form-data: `file` (PDF, PNG, JPEG, WebP or UTF-8 text) and an optional `description`."""

    file: bytes
    description: str | None = Field(default=None, max_length=1000)


class EvidenceOut(BaseModel):
    id: uuid.UUID
    filename: str
    content_type: str
    size: int
    sha256: str
    description: str | None
    uploaded_by: uuid.UUID
    created_at: datetime


class EvidenceListOut(BaseModel):
    items: list[EvidenceOut]
