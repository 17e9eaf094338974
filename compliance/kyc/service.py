"""KYC cases: the user submits, a compliance officer decides; every step is an audit event.

The case is the projection; its events (aggregate ``kyc_case``, id = the user's id) are the
record a regulator sees. ``users.kyc_status`` mirrors the case state for ``GET /me``; it is
written here through identity's ``User`` model (a layer below).
The name is screened against the sanctions list on each submission; a hit is kept on the case
for the officer (it never decides by itself).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from compliance.kyc import documents as kyc_documents
from compliance.kyc.models import KycCase, KycDocument
from compliance.kyc.states import DECISIONS, transition
from compliance.screening import service as screening
from core import audit
from core.errors import Forbidden, InvalidInput, NotFound
from core.time import utcnow
from identity.models import LOCK_USER, User
from notifications.service import notify

AGGREGATE = "kyc_case"
MAX_LEVEL = 3


@dataclass(frozen=True)
class Submission:
    first_name: str
    last_name: str
    date_of_birth: date
    country: str
    address: dict[str, Any]


@dataclass(frozen=True)
class QueueItem:
    case: KycCase
    age: timedelta
    sla_breached: bool
    documents: list[KycDocument] = field(default_factory=list)


async def _status(session: AsyncSession, user_id: uuid.UUID) -> str:
    status = await session.scalar(select(User.kyc_status).where(User.id == user_id).with_for_update(**LOCK_USER))
    if status is None:
        raise NotFound("No such user.", code="user_not_found")
    return status


async def _set_status(session: AsyncSession, user_id: uuid.UUID, status: str) -> None:
    await session.execute(update(User).where(User.id == user_id).values(kyc_status=status))


async def submit(session: AsyncSession, user_id: uuid.UUID, submission: Submission,
                 documents: Sequence[kyc_documents.StagedDocument] = ()) -> KycCase:
    """The user's application (or resubmission after ``needs_info``) → ``pending``, with the
    documents already staged in the file store (``kyc_documents.stage``)."""
    state = transition(await _status(session, user_id), "submit")  # the user row lock serializes submits
    hit = await screening.screen_name(session, f"{submission.first_name} {submission.last_name}")
    now = utcnow()
    case = await session.get(KycCase, user_id)
    fields = {"first_name": submission.first_name, "last_name": submission.last_name,
              "date_of_birth": submission.date_of_birth, "country": submission.country,
              "address": submission.address, "screening_hit": hit.as_dict() if hit else None,
              "state": state, "submitted_at": now, "decided_at": None, "decided_by": None, "reason": None}
    if case is None:
        case = KycCase(user_id=user_id, level=0, **fields)
        session.add(case)
    else:
        for name, value in fields.items():
            setattr(case, name, value)
    await _set_status(session, user_id, state)
    await session.flush()
    await kyc_documents.attach(session, user_id, now, documents)
    await audit.append(session, AGGREGATE, user_id, "kyc.submitted", {
        "state": state, "first_name": submission.first_name, "last_name": submission.last_name,
        "date_of_birth": submission.date_of_birth.isoformat(), "country": submission.country,
        "address": submission.address, "screening_hit": fields["screening_hit"],
        "documents": [document.as_dict() for document in documents]}, actor=user_id)
    return case


async def decide(session: AsyncSession, user_id: uuid.UUID, decision: str, reason: str, officer: uuid.UUID,
                 level: int | None = None) -> KycCase:
    """A compliance officer's decision on a pending case; the user is notified."""
    if decision not in DECISIONS:
        raise InvalidInput(f"A decision is one of {', '.join(DECISIONS)}.", code="invalid_decision")
    if officer == user_id:  # nobody verifies their own identity
        raise Forbidden("You cannot decide your own KYC case.", code="own_kyc_case")
    case = await session.get(KycCase, user_id, with_for_update=True)
    if case is None:
        raise NotFound("This user has no KYC case.", code="kyc_case_not_found")
    case.state = transition(case.state, DECISIONS[decision])
    if decision == "approved":
        case.level = level if level is not None else max(case.level, 1)
    case.decided_at, case.decided_by, case.reason = utcnow(), officer, reason
    await _set_status(session, user_id, case.state)
    await session.flush()
    await audit.append(session, AGGREGATE, user_id, f"kyc.{case.state}",
                       {"decision": decision, "level": case.level, "reason": reason}, actor=officer)
    # The user sees the outcome, not the officer's internal reasoning beyond what they must act on.
    data: dict[str, Any] = {"state": case.state, "level": case.level}
    if decision == "needs_info":
        data["reason"] = reason
    await notify(session, user_id, "kyc.decided", data)
    return case


async def get(session: AsyncSession, user_id: uuid.UUID) -> KycCase:
    case = await session.get(KycCase, user_id)
    if case is None:
        raise NotFound("This user has no KYC case.", code="kyc_case_not_found")
    return case


async def queue(session: AsyncSession, sla_hours: float, limit: int = 100) -> list[QueueItem]:
    """Pending cases, oldest submission first, with their age against the SLA."""
    now: datetime = utcnow()
    cases = await session.scalars(select(KycCase).where(KycCase.state == "pending")
                                  .order_by(KycCase.submitted_at, KycCase.user_id).limit(limit))
    sla = timedelta(hours=sla_hours)
    pending = list(cases)
    documents = await kyc_documents.of_cases(session, [case.user_id for case in pending])
    return [QueueItem(case, now - case.submitted_at, now - case.submitted_at > sla, documents[case.user_id])
            for case in pending]


async def documents(session: AsyncSession, user_id: uuid.UUID) -> list[KycDocument]:
    """The case's documents (metadata), oldest first."""
    return (await kyc_documents.of_cases(session, [user_id]))[user_id]
