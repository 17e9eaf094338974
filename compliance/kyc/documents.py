"""KYC documents: files sent with a KYC submission, kept like dispute evidence.

Each file is sniffed from its bytes (``core.sniff``: the same accepted types and the same
``unsupported_media_type`` refusal as evidence), streamed into the file store under its own id
with a size limit, and hashed. The file is written before its row; if the submission does not
commit, the file is discarded, so a refused submission leaves neither. Rows are append-only
(migration 0015): a resubmission after ``needs_info`` adds documents, it never replaces any.
Officers see the metadata in the queue and the case; the bytes only through the download route.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from compliance.kyc.models import KycDocument
from core.db import on_rollback
from core.errors import InvalidInput, NotFound
from core.sniff import check_upload, safe_filename, split_head, utf8_guard
from core.storage import FileStore, IncomingFile


class TooManyDocuments(InvalidInput):
    code, message = "too_many_files", "A KYC submission carries at most the configured number of documents."


@dataclass(frozen=True)
class StagedDocument:
    """A document in the file store whose row is written with the submission."""

    id: uuid.UUID
    filename: str
    content_type: str
    size: int
    sha256: str

    def as_dict(self) -> dict[str, str | int]:
        return {"id": str(self.id), "filename": self.filename, "content_type": self.content_type,
                "size": self.size, "sha256": self.sha256}


async def stage(session: AsyncSession, store: FileStore, upload: IncomingFile, *, max_bytes: int) -> StagedDocument:
    """Sniff, size-limit and store one uploaded file; it is removed again if the transaction rolls back."""
    head, chunks = await split_head(upload.chunks)
    media_type = check_upload(head, upload.content_type, upload.filename)  # 415 unsupported_media_type
    if media_type == "text/plain":
        chunks = utf8_guard(chunks)
    document_id = uuid.uuid4()
    stored = await store.save(str(document_id), chunks, max_bytes=max_bytes)  # 413 payload_too_large
    on_rollback(session, store.discard, str(document_id))
    return StagedDocument(document_id, safe_filename(upload.filename, "document"), media_type, stored.size,
                          stored.sha256)


def check_count(count: int, max_files: int) -> None:
    if count > max_files:
        raise TooManyDocuments(details={"max_files": max_files})


async def attach(session: AsyncSession, user_id: uuid.UUID, submitted_at: datetime,
                 documents: Iterable[StagedDocument]) -> None:
    """The rows of the documents a submission carried (the case row exists and is flushed)."""
    for position, document in enumerate(documents):
        session.add(KycDocument(id=document.id, user_id=user_id, filename=document.filename,
                                content_type=document.content_type, size=document.size, sha256=document.sha256,
                                submitted_at=submitted_at, position=position, created_at=submitted_at))
    await session.flush()


async def of_cases(session: AsyncSession, user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[KycDocument]]:
    """Every document of each case, oldest first (metadata only)."""
    wanted = list(user_ids)
    found: dict[uuid.UUID, list[KycDocument]] = {user_id: [] for user_id in wanted}
    if wanted:
        rows = await session.scalars(select(KycDocument).where(KycDocument.user_id.in_(wanted))
                                     .order_by(KycDocument.submitted_at, KycDocument.position))
        for row in rows:
            found[row.user_id].append(row)
    return found


async def get(session: AsyncSession, user_id: uuid.UUID, document_id: uuid.UUID) -> KycDocument:
    document = await session.get(KycDocument, document_id)
    if document is None or document.user_id != user_id:
        raise NotFound("No such KYC document.", code="kyc_document_not_found")
    return document
