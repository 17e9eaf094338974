"""Request and response models of the compliance routes (KYC, reports, transaction review)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from compliance.kyc import QueueItem
from compliance.models import ComplianceReport, KycCase
from compliance.review import TransactionView

KycState = Literal["unverified", "pending", "approved", "rejected", "needs_info"]
ReportState = Literal["queued", "running", "ready", "failed"]
Country = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2", examples=["CA"])


class AddressIn(BaseModel):
    """IVMS101 geographic address fields (snake_case)."""

    street_name: str = Field(min_length=1, max_length=70)
    building_number: str = Field(min_length=1, max_length=16)
    post_code: str = Field(min_length=1, max_length=16)
    town_name: str = Field(min_length=1, max_length=35)
    country: str = Country


class KycSubmitIn(BaseModel):
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    date_of_birth: date
    country: str = Country
    address: AddressIn


class KycDecisionIn(BaseModel):
    decision: Literal["approved", "rejected", "needs_info"]
    level: int | None = Field(default=None, ge=1, le=3, description="The verification level granted (approved only).")
    reason: str = Field(min_length=1, max_length=2000, description="Recorded in the audit trail; shown to the user "
                                                                  "only for needs_info.")


class KycCaseOut(BaseModel):
    user_id: uuid.UUID
    state: KycState
    level: int
    first_name: str
    last_name: str
    date_of_birth: date
    country: str
    address: AddressIn
    screening_hit: dict[str, str | None] | None = None
    submitted_at: datetime
    decided_at: datetime | None = None
    reason: str | None = None

    @classmethod
    def of(cls, case: KycCase) -> KycCaseOut:
        return cls.model_validate(case, from_attributes=True)


class KycMineOut(BaseModel):
    """What the applicant sees: the state and what to do, not the screening result."""

    user_id: uuid.UUID
    state: KycState
    level: int
    submitted_at: datetime

    @classmethod
    def of(cls, case: KycCase) -> KycMineOut:
        return cls(user_id=case.user_id, state=case.state, level=case.level,  # type: ignore[arg-type]
                   submitted_at=case.submitted_at)


class KycQueueItemOut(KycCaseOut):
    sla_age_seconds: int
    sla_breached: bool


class KycQueueOut(BaseModel):
    items: list[KycQueueItemOut]

    @classmethod
    def of(cls, items: list[QueueItem]) -> KycQueueOut:
        return cls(items=[KycQueueItemOut(**KycCaseOut.of(item.case).model_dump(),
                                          sla_age_seconds=int(item.age.total_seconds()),
                                          sla_breached=item.sla_breached) for item in items])


class KycQueueQuery(BaseModel):
    limit: int = Field(default=100, ge=1, le=500)


class ReportIn(BaseModel):
    jurisdiction: str = Field(min_length=1, max_length=10, examples=["CA"])
    type: str = Field(min_length=1, max_length=40, examples=["large_transactions"],
                      description="large_transactions, travel_rule, suspicious_activity or reconciliation")
    period_start: AwareDatetime
    period_end: AwareDatetime = Field(description="Exclusive: the period is [period_start, period_end).")


class ReportQueuedOut(BaseModel):
    id: uuid.UUID
    state: ReportState


class ReportOut(BaseModel):
    id: uuid.UUID
    jurisdiction: str
    type: str
    period_start: datetime
    period_end: datetime
    state: ReportState
    rows: int | None = None
    sha256: str | None = Field(default=None, description="SHA-256 of the CSV file")
    json_sha256: str | None = Field(default=None, description="SHA-256 of the JSON file")
    parameters: dict[str, str | int] | None = None
    error: str | None = None
    requested_by: uuid.UUID | None = None
    created_at: datetime
    finished_at: datetime | None = None

    @classmethod
    def of(cls, report: ComplianceReport) -> ReportOut:
        return cls.model_validate(report, from_attributes=True)


class ReportListOut(BaseModel):
    items: list[ReportOut]
    next_cursor: str | None


class ReportListQuery(BaseModel):
    type: str | None = Field(default=None, max_length=40)
    state: ReportState | None = None
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=500)


class AdminReportListQuery(ReportListQuery):
    jurisdiction: str | None = Field(default=None, max_length=10)


class DownloadQuery(BaseModel):
    format: Literal["csv", "json"] = "csv"


class TransactionQuery(BaseModel):
    user_id: uuid.UUID | None = None
    type: str | None = Field(default=None, max_length=40, examples=["deposit", "withdrawal_post", "escrow_release"])
    state: str | None = Field(default=None, max_length=20, description="The deposit's or withdrawal's state.")
    flagged: bool | None = Field(default=None, description="true: flagged and not yet resolved; false: not so.")
    review: Literal["flagged", "cleared", "reported"] | None = None
    currency: str | None = Field(default=None, pattern=r"^[A-Z0-9]{2,10}$",
                                 description="Required with amount_min/amount_max.")
    amount_min: str | None = Field(default=None, max_length=80, description="Major units, inclusive.")
    amount_max: str | None = Field(default=None, max_length=80, description="Major units, inclusive.")
    created_from: AwareDatetime | None = None
    created_to: AwareDatetime | None = Field(default=None, description="Exclusive.")
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=500)


class PostingOut(BaseModel):
    owner_type: Literal["user", "system"]
    user_id: uuid.UUID | None
    account: str = Field(examples=["available", "held", "chain_deposits"])
    currency: str
    amount: str = Field(description="Signed decimal string: negative debits the account.")


class ReviewOut(BaseModel):
    state: Literal["flagged", "cleared", "reported"]
    reason: str
    flagged_by: uuid.UUID | None
    flagged_at: datetime
    resolution_note: str | None = None
    resolved_by: uuid.UUID | None = None
    resolved_at: datetime | None = None


class TransactionOut(BaseModel):
    id: uuid.UUID
    reference: str
    type: str
    reference_kind: str | None
    reference_id: str | None
    state: str | None = Field(description="The deposit's or withdrawal's own state, when the transfer is one.")
    tx_hash: str | None
    created_at: datetime
    postings: list[PostingOut]
    flagged: bool
    review: ReviewOut | None

    @classmethod
    def of(cls, view: TransactionView) -> TransactionOut:
        review = ReviewOut.model_validate(view.review, from_attributes=True) if view.review else None
        return cls(id=view.id, reference=view.reference, type=view.type, reference_kind=view.reference_kind,
                   reference_id=view.reference_id, state=view.object_state, tx_hash=view.tx_hash,
                   created_at=view.created_at,
                   postings=[PostingOut(owner_type=p.owner_type, user_id=p.user_id, account=p.account,  # type: ignore[arg-type]
                                        currency=p.currency, amount=p.amount) for p in view.postings],
                   flagged=review is not None and review.state == "flagged", review=review)


class TransactionListOut(BaseModel):
    items: list[TransactionOut]
    next_cursor: str | None


class FlagIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class ResolveIn(BaseModel):
    resolution: Literal["cleared", "reported"]
    note: str = Field(default="", max_length=5000)
