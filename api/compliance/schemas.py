"""Request and response models of the compliance routes (KYC, reports, transaction review)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, Field, WithJsonSchema

from api.http import validate
from compliance.kyc.models import KycCase, KycDocument
from compliance.kyc.service import QueueItem
from compliance.reporting.models import ComplianceReport
from compliance.review import reconcile
from compliance.review.service import TransactionView
from compliance.travel_rule import ivms101
from compliance.travel_rule import service as travel_rule
from core import json_input
from core.errors import InvalidInput

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

    @classmethod
    def of_form(cls, fields: dict[str, str]) -> KycSubmitIn:
        """The same body from a multipart form's small fields (``address`` is JSON text); 422 naming each bad field."""
        data: dict[str, Any] = dict(fields)
        if "address" in data:
            try:
                data["address"] = json_input.loads(data["address"])
            except ValueError:
                raise InvalidInput(details={"fields": [{"field": "address", "message": "not a JSON object",
                                                        "type": "json_invalid"}]}) from None
        return validate(cls, data)


class KycSubmitForm(BaseModel):
    """multipart/form-data: the fields of the JSON body (`address` as a JSON object) and up to
    `VIRTUOZ_KYC_DOCUMENT_MAX_FILES` files in `documents` (PDF, PNG, JPEG, WebP or UTF-8 text)."""

    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    date_of_birth: date
    country: str = Country
    address: str = Field(description="The address object as JSON text.",
                         examples=['{"street_name": "Main St", "building_number": "1", "post_code": "H2X 1Y4", '
                                   '"town_name": "Montreal", "country": "CA"}'])
    documents: list[bytes] = Field(default_factory=list, description="Identity documents (optional, repeatable).")


class KycDocumentOut(BaseModel):
    """A document's metadata; its bytes only through the officers' download route."""

    id: uuid.UUID
    filename: str
    content_type: str = Field(description="Sniffed from the bytes.")
    size: int
    sha256: str
    submitted_at: datetime = Field(description="The submission it came with.")
    created_at: datetime


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
    documents: list[KycDocumentOut] = Field(default_factory=list)

    @classmethod
    def of(cls, case: KycCase, documents: Sequence[KycDocument] = ()) -> KycCaseOut:
        out = cls.model_validate(case, from_attributes=True)
        out.documents = [KycDocumentOut.model_validate(document, from_attributes=True) for document in documents]
        return out


class KycMineOut(BaseModel):
    """What the applicant sees: the state and what to do, not the screening result."""

    user_id: uuid.UUID
    state: KycState
    level: int
    submitted_at: datetime
    documents: list[KycDocumentOut] = Field(default_factory=list, description="The documents of this submission.")
    reason: str | None = Field(default=None, description="needs_info only: what the officer asks for. The reason "
                                                          "of any other decision stays internal.")

    @classmethod
    def of(cls, case: KycCase, documents: Sequence[Any] = ()) -> KycMineOut:
        return cls(user_id=case.user_id, state=case.state, level=case.level,  # type: ignore[arg-type]
                   submitted_at=case.submitted_at, reason=case.reason if case.state == "needs_info" else None,
                   documents=[KycDocumentOut(**document.as_dict(), submitted_at=case.submitted_at,
                                             created_at=case.submitted_at) for document in documents])


class KycQueueItemOut(KycCaseOut):
    sla_age_seconds: int
    sla_breached: bool


class KycQueueOut(BaseModel):
    items: list[KycQueueItemOut]

    @classmethod
    def of(cls, items: list[QueueItem]) -> KycQueueOut:
        return cls(items=[KycQueueItemOut(**KycCaseOut.of(item.case, item.documents).model_dump(),
                                          sla_age_seconds=int(item.age.total_seconds()),
                                          sla_breached=item.sla_breached) for item in items])


class KycQueueQuery(BaseModel):
    limit: int = Field(default=100, ge=1, le=500)


_PLAIN_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _utc_day(days_after: int) -> BeforeValidator:
    """A plain date is a UTC day: a period starts at its midnight and ends after it (the next midnight)."""
    def parse(value: Any) -> Any:
        if isinstance(value, str) and _PLAIN_DATE.fullmatch(value):
            day = date.fromisoformat(value)  # ValueError (a 422) for 2026-13-01
            return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=days_after)
        return value

    return BeforeValidator(parse)


def _period_bound(description: str) -> WithJsonSchema:
    return WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}],
                           "description": description})


PeriodStart = Annotated[AwareDatetime, _utc_day(0), _period_bound(
    "An RFC 3339 time with its zone, or a plain date (`2026-11-01`): the start of that UTC day.")]
PeriodEnd = Annotated[AwareDatetime, _utc_day(1), _period_bound(
    "Exclusive: the period is [period_start, period_end). An RFC 3339 time with its zone, or a plain date "
    "(`2026-11-30`): the period includes that whole UTC day.")]


class ReportIn(BaseModel):
    jurisdiction: str = Field(min_length=1, max_length=10, examples=["CA"])
    type: str = Field(min_length=1, max_length=40, examples=["large_transactions"],
                      description="large_transactions, travel_rule, suspicious_activity or reconciliation")
    period_start: PeriodStart
    period_end: PeriodEnd


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


class DifferenceOut(BaseModel):
    field: str = Field(examples=["block_hash"], description="receipt, status, block_number, block_hash, asset, "
                                                         "to_address, from_address, amount, event, confirmations, gas_cost")
    ledger: str | None = Field(description="What the ledger recorded (amounts as decimal strings).")
    chain: str | None = Field(description="What the chain shows now (null: nothing).")
    note: str = ""


class ReconcileOut(BaseModel):
    """A ledger transfer compared with its on-chain transaction (deposits and withdrawals)."""

    transaction_id: uuid.UUID
    kind: Literal["deposit", "withdrawal"]
    object_id: uuid.UUID = Field(description="The deposit's or withdrawal's id.")
    chain: str
    tx_hash: str
    ledger_state: str = Field(description="The deposit's or withdrawal's state in the ledger.")
    matches: bool
    differences: list[DifferenceOut]
    confirmations: int | None = Field(description="The transaction's depth on the chain now, if mined.")
    required_confirmations: int | None

    @classmethod
    def of(cls, result: reconcile.Reconciliation) -> ReconcileOut:
        return cls(transaction_id=result.transfer_id, kind=result.kind,  # type: ignore[arg-type]
                   object_id=uuid.UUID(result.object_id), chain=result.chain, tx_hash=result.tx_hash,
                   ledger_state=result.ledger_state, matches=result.matches,
                   differences=[DifferenceOut(field=item.field, ledger=item.ledger, chain=item.chain, note=item.note)
                                for item in result.differences],
                   confirmations=result.confirmations, required_confirmations=result.required_confirmations)


# --- Travel Rule (IVMS101 in snake_case, one person per side) ------------------------------------

class TravelRuleUpsertIn(travel_rule.Upsert):
    """A Travel Rule transfer: IVMS101 originator, beneficiary and VASPs, and the value transfer."""


class TravelRuleDetailsOut(BaseModel):
    asset: str
    amount: str = Field(description="Major units, a decimal string.")
    chain: str
    destination: str
    tx_hash: str | None
    withdrawal_id: uuid.UUID | None
    deposit_id: uuid.UUID | None


class TravelRuleTransferOut(BaseModel):
    id: uuid.UUID
    external_id: str | None
    direction: Literal["outbound", "inbound"]
    state: Literal["draft", "sent", "accepted", "rejected", "expired"]
    originator: ivms101.Originator
    beneficiary: ivms101.Beneficiary
    originating_vasp: ivms101.Vasp
    beneficiary_vasp: ivms101.Vasp
    transfer: TravelRuleDetailsOut
    user_id: uuid.UUID | None = Field(description="The customer the transfer is about, if any.")
    travel_address: str | None
    request_identifier: str | None = Field(description="TRP `request-identifier` of every message about this "
                                                        "transfer; staff only (null for a customer).")
    callback_url: str | None = Field(description="The counterparty's callback; staff only.")
    counterparty: str | None = Field(description="The counterparty VASP as authenticated (its certificate's name).")
    counterparty_fingerprint: str | None = Field(
        default=None, description="SHA-256 of the certificate the counterparty presented; its callbacks must present "
                                  "the same one. Staff only.")
    wire_ivms101: dict[str, Any] | None = Field(description="The IVMS101 message exactly as last sent or received.")
    reason: str | None
    created_by: uuid.UUID | None
    decided_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    send_requested_at: datetime | None
    sent_at: datetime | None
    decided_at: datetime | None
    expires_at: datetime

    @classmethod
    def of(cls, view: travel_rule.TransferView, *, internal: bool = True) -> TravelRuleTransferOut:
        """``internal=False`` (a customer): without the decision's reason and who decided, which could
        tip off a customer about a suspicion; and without the TRP request identifier (and the
        callback URL, which carries it): whoever knows it can try to answer for the counterparty."""
        transfer = view.transfer
        hidden = set() if internal else {"reason", "decided_by", "counterparty", "counterparty_fingerprint",
                                         "request_identifier", "callback_url"}
        return cls.model_validate({
            **{name: None if name in hidden else getattr(transfer, name)
               for name in cls.model_fields if name != "transfer"},
            "transfer": {"asset": transfer.asset, "amount": view.amount, "chain": transfer.chain,
                         "destination": transfer.destination, "tx_hash": transfer.tx_hash,
                         "withdrawal_id": transfer.withdrawal_id, "deposit_id": transfer.deposit_id},
        })


class TravelRuleRecentQuery(BaseModel):
    state: Literal["draft", "sent", "accepted", "rejected", "expired"] | None = None
    direction: Literal["outbound", "inbound"] | None = None
    limit: int = Field(default=50, ge=1, le=200)


class TravelRuleListOut(BaseModel):
    items: list[TravelRuleTransferOut]
