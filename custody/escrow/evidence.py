"""Dispute evidence: files sniffed from their bytes, streamed to storage, never deleted.

An upload is staged first: sniffed and streamed (atomically) into the file store before the
contract is touched, so a client trickling its bytes holds no database connection and no row
lock. Only then is the contract locked, checked and the row flushed; if the transaction does not
commit, the file is discarded, so a failed upload leaves no row and no file. "Deleting" hides a
file from the list and records who did it; the bytes stay for the audit trail. Only the parties and
the arbiters upload; an uploader hides their own file, an admin anyone's unless a party to the escrow.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.db import on_rollback
from core.errors import Conflict, Forbidden, InvalidState, NotFound
from core.sniff import check_upload, safe_filename, split_head, utf8_guard
from core.storage import FileStore, IncomingFile
from core.time import utcnow
from custody.escrow.models import EscrowContract, EvidenceFile
from custody.escrow.service import Actor, load, require_impartial, require_writer


class TooManyFiles(Conflict):
    code, message = "too_many_files", "This dispute already has the most evidence files allowed."


async def _disputed(session: AsyncSession, actor: Actor, escrow_id: uuid.UUID, *, lock: bool) -> EscrowContract:
    contract = await load(session, escrow_id, actor, lock=lock)
    if contract.state != "disputed":
        raise InvalidState("Evidence belongs to an open dispute.", details={"state": contract.state})
    return contract


@dataclass(frozen=True)
class StagedEvidence:
    id: uuid.UUID
    filename: str
    content_type: str
    size: int
    sha256: str


async def stage(session: AsyncSession, store: FileStore, upload: IncomingFile, *, max_bytes: int) -> StagedEvidence:
    """Sniff, size-limit and store an uploaded file, touching no row (``session`` only learns to
    discard the file if its transaction does not commit)."""
    head, chunks = await split_head(upload.chunks)
    media_type = check_upload(head, upload.content_type, upload.filename)  # 415 unsupported_media_type
    if media_type == "text/plain":
        chunks = utf8_guard(chunks)
    file_id = uuid.uuid4()
    stored = await store.save(str(file_id), chunks, max_bytes=max_bytes)  # 413 payload_too_large
    on_rollback(session, store.discard, str(file_id))
    return StagedEvidence(file_id, safe_filename(upload.filename, "evidence"), media_type, stored.size, stored.sha256)


async def add(session: AsyncSession, actor: Actor, escrow_id: uuid.UUID, staged: StagedEvidence,
              description: str | None, *, max_files: int) -> EvidenceFile:
    contract = await _disputed(session, actor, escrow_id, lock=True)  # the lock also serializes the count
    require_writer(contract, actor)
    count = await session.scalar(select(func.count()).select_from(EvidenceFile).where(
        EvidenceFile.escrow_id == contract.id, EvidenceFile.deleted_at.is_(None)))
    if count >= max_files:
        raise TooManyFiles(details={"max_files": max_files})
    evidence = EvidenceFile(id=staged.id, escrow_id=contract.id, filename=staged.filename,
                            content_type=staged.content_type, size=staged.size, sha256=staged.sha256,
                            description=description, uploaded_by=actor.user_id, created_at=utcnow())
    session.add(evidence)
    await session.flush()
    await audit.append(session, "escrow", contract.id, "escrow.evidence_added",
                       {"file_id": str(staged.id), "sha256": staged.sha256, "size": staged.size,
                        "content_type": staged.content_type}, actor=actor.user_id)
    return evidence


async def listing(session: AsyncSession, actor: Actor, escrow_id: uuid.UUID) -> list[EvidenceFile]:
    contract = await load(session, escrow_id, actor, lock=False)
    rows = await session.scalars(
        select(EvidenceFile)
        .where(EvidenceFile.escrow_id == contract.id, EvidenceFile.deleted_at.is_(None))
        .order_by(EvidenceFile.created_at, EvidenceFile.id)
    )
    return list(rows)


async def get(session: AsyncSession, actor: Actor, escrow_id: uuid.UUID, file_id: uuid.UUID) -> EvidenceFile:
    contract = await load(session, escrow_id, actor, lock=False)
    evidence = await session.get(EvidenceFile, file_id)
    if evidence is None or evidence.escrow_id != contract.id or evidence.deleted_at is not None:
        raise NotFound("No such evidence file.", code="evidence_not_found")
    return evidence


async def hide(session: AsyncSession, actor: Actor, escrow_id: uuid.UUID, file_id: uuid.UUID) -> EvidenceFile:
    contract = await _disputed(session, actor, escrow_id, lock=True)
    evidence = await get(session, actor, contract.id, file_id)
    if evidence.uploaded_by != actor.user_id:
        if "admin" not in actor.roles:
            raise Forbidden("Only the uploader or an admin can delete evidence.", code="uploader_only")
        require_impartial(contract, actor)  # hiding the other side's evidence would tilt the case
    evidence.deleted_at, evidence.deleted_by = utcnow(), actor.user_id
    await session.flush()
    await audit.append(session, "escrow", contract.id, "escrow.evidence_deleted",
                       {"file_id": str(file_id), "sha256": evidence.sha256}, actor=actor.user_id)
    return evidence

