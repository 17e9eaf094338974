"""The CMS engine: one workflow for the four kinds (legal, help, email, landing).

Documents are keyed by ``(kind, slug, locale)``. Every save adds an immutable version and puts
the document back in ``draft``; the workflow table (states.py) moves it on; publishing points
public reads at a version; rollback copies an earlier, once-published version into a new
version and publishes that, so history only grows. Every step appends a ``cms_document`` audit
event in the same transaction.

Who may do what (checked by ``check_editor``): admins everything; support may read and draft
help articles, nothing else.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.dialects.postgresql import array, insert
from sqlalchemy.ext.asyncio import AsyncSession

from content import states
from content.models import KINDS, CmsDocument, CmsPublication, CmsVersion, Kind
from content.templating import check_template
from core import audit
from core.errors import Conflict, Forbidden, InvalidInput, InvalidState, NotFound
from core.pagination import decode_cursor, encode_cursor
from core.time import utcnow

AGGREGATE = "cms_document"
SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,119}$")
# Paths of their own under /admin/cms/email/: a template can't take the name.
RESERVED_SLUGS = {("email", "deliveries")}
MAX_BLOCKS = 100

Actor = uuid.UUID | str


class DocumentNotFound(NotFound):
    code, message = "cms_document_not_found", "No such document."


class ReviewRequired(InvalidState):
    code = "review_required"


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None


@dataclass(frozen=True)
class DocumentHistory:
    document: CmsDocument
    versions: list[CmsVersion]
    publications: dict[int, list[CmsPublication]]


# --- names and permissions -----------------------------------------------------------------------

def require_kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise NotFound("No such content kind.", code="cms_kind_not_found", details={"kinds": list(KINDS)})
    return kind  # type: ignore[return-value]


def require_slug(slug: str) -> str:
    if not SLUG.match(slug):
        raise DocumentNotFound(details={"slug_pattern": SLUG.pattern})  # a path naming nothing that can exist
    return slug


def check_editor(kind: Kind, roles: Iterable[str], action: str) -> None:
    """``action`` is ``read``, ``draft`` or ``manage`` (transition, publish, rollback)."""
    roles = set(roles)
    if "admin" in roles:
        return
    if "support" in roles and kind == "help" and action in ("read", "draft"):
        return
    raise Forbidden("Support may read and draft help articles only." if "support" in roles else None,
                    details={"kind": kind, "action": action})


def _validate(kind: Kind, slug: str, body: str, meta: dict[str, Any]) -> None:
    if (kind, slug) in RESERVED_SLUGS:
        raise InvalidInput("This slug is reserved.", code="slug_reserved", details={"slug": slug})
    if kind == "email":
        subject = meta.get("subject")
        if not isinstance(subject, str) or not subject.strip():
            raise InvalidInput("An email template needs metadata.subject.", code="subject_required",
                               details={"field": "metadata.subject"})
        check_template(subject, body)
    if kind == "landing" and "blocks" in meta:
        blocks = meta["blocks"]
        if not (isinstance(blocks, list) and len(blocks) <= MAX_BLOCKS
                and all(isinstance(block, dict) and isinstance(block.get("type"), str) for block in blocks)):
            raise InvalidInput(f"metadata.blocks is a list of at most {MAX_BLOCKS} objects with a string 'type'.",
                               code="invalid_blocks", details={"field": "metadata.blocks"})


# --- reading -----------------------------------------------------------------------------------

async def get_document(session: AsyncSession, kind: Kind, slug: str, locale: str, *,
                       lock: bool = False) -> CmsDocument:
    query = select(CmsDocument).where(CmsDocument.kind == kind, CmsDocument.slug == slug,
                                      CmsDocument.locale == locale)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    document = await session.scalar(query)
    if document is None:
        raise DocumentNotFound(details={"kind": kind, "slug": slug, "locale": locale})
    return document


async def get_version(session: AsyncSession, document: CmsDocument, version: int) -> CmsVersion:
    row = await session.scalar(select(CmsVersion).where(CmsVersion.document_id == document.id,
                                                        CmsVersion.version == version))
    if row is None:
        raise NotFound("No such version.", code="cms_version_not_found",
                       details={"version": version, "current_version": document.current_version})
    return row


async def find_document(session: AsyncSession, kind: Kind, slug: str, chain: list[str]) -> CmsDocument:
    """The document of the first locale in ``chain`` that exists (any state)."""
    documents = {document.locale: document for document in await session.scalars(
        select(CmsDocument).where(CmsDocument.kind == kind, CmsDocument.slug == slug, CmsDocument.locale.in_(chain)))}
    for locale in chain:
        if locale in documents:
            return documents[locale]
    raise DocumentNotFound(details={"kind": kind, "slug": slug, "locales_tried": chain})


async def history(session: AsyncSession, kind: Kind, slug: str, locale: str) -> DocumentHistory:
    document = await get_document(session, kind, slug, locale)
    versions = list(await session.scalars(
        select(CmsVersion).where(CmsVersion.document_id == document.id).order_by(CmsVersion.version.desc())))
    publications: dict[int, list[CmsPublication]] = {}
    for publication in await session.scalars(
            select(CmsPublication).where(CmsPublication.document_id == document.id)
            .order_by(CmsPublication.published_at)):
        publications.setdefault(publication.version, []).append(publication)
    return DocumentHistory(document, versions, publications)


async def list_documents(session: AsyncSession, kind: Kind, *, locale: str | None, state: str | None, limit: int,
                         cursor: str | None) -> Page:
    """(document, title of its latest version) pairs by slug then locale."""
    query = (
        select(CmsDocument, CmsVersion.title)
        .join(CmsVersion, and_(CmsVersion.document_id == CmsDocument.id,
                               CmsVersion.version == CmsDocument.current_version))
        .where(CmsDocument.kind == kind)
        .order_by(CmsDocument.slug, CmsDocument.locale)
        .limit(limit + 1)
    )
    if locale:
        query = query.where(CmsDocument.locale == locale)
    if state:
        query = query.where(CmsDocument.state == state)
    if cursor:
        slug, after_locale = decode_cursor(cursor, 2)
        query = query.where((CmsDocument.slug, CmsDocument.locale) > (slug, after_locale))  # type: ignore[operator]
    rows = [tuple(row) for row in await session.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1][0].slug, rows[-1][0].locale) if more else None)


async def published(session: AsyncSession, kind: Kind, slug: str, chain: list[str]) -> tuple[CmsDocument, CmsVersion]:
    """The published version of the first locale in ``chain`` that has one."""
    rows = await session.execute(
        select(CmsDocument, CmsVersion)
        .join(CmsVersion, and_(CmsVersion.document_id == CmsDocument.id,
                               CmsVersion.version == CmsDocument.published_version))
        .where(CmsDocument.kind == kind, CmsDocument.slug == slug, CmsDocument.locale.in_(chain))
    )
    found = {document.locale: (document, version) for document, version in rows}
    for locale in chain:
        if locale in found:
            return found[locale]
    raise DocumentNotFound(details={"kind": kind, "slug": slug, "locales_tried": chain})


async def published_help(session: AsyncSession, chain: list[str], *, query: str | None, limit: int,
                         cursor: str | None) -> Page:
    """Published help articles by slug, each in the best locale of ``chain``; ``query`` matches
    title or body (case-insensitive substring)."""
    preference = func.row_number().over(partition_by=CmsDocument.slug,
                                        order_by=func.array_position(array(chain), CmsDocument.locale))
    ranked = (
        select(CmsDocument.id, preference.label("preference"))
        .where(CmsDocument.kind == "help", CmsDocument.published_version.is_not(None), CmsDocument.locale.in_(chain))
        .subquery()
    )
    statement = (
        select(CmsDocument, CmsVersion)
        .join(ranked, and_(ranked.c.id == CmsDocument.id, ranked.c.preference == 1))
        .join(CmsVersion, and_(CmsVersion.document_id == CmsDocument.id,
                               CmsVersion.version == CmsDocument.published_version))
        .order_by(CmsDocument.slug)
        .limit(limit + 1)
    )
    if query:
        statement = statement.where(CmsVersion.title.icontains(query, autoescape=True)
                                    | CmsVersion.body.icontains(query, autoescape=True))
    if cursor:
        (after,) = decode_cursor(cursor, 1)
        statement = statement.where(CmsDocument.slug > after)
    rows = [tuple(row) for row in await session.execute(statement)]
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1][0].slug) if more else None)


# --- changing ----------------------------------------------------------------------------------

async def save_draft(session: AsyncSession, kind: Kind, slug: str, locale: str, *, title: str, body: str,
                     meta: dict[str, Any], actor: Actor) -> tuple[CmsDocument, CmsVersion]:
    """A new version (the next number), and the document back in ``draft``."""
    _validate(kind, slug, body, meta)
    await session.execute(
        insert(CmsDocument)
        .values(id=uuid.uuid4(), kind=kind, slug=slug, locale=locale, state="draft", current_version=0)
        .on_conflict_do_nothing(index_elements=["kind", "slug", "locale"])
    )
    document = await get_document(session, kind, slug, locale, lock=True)
    previous_state = document.state if document.current_version else None
    document.current_version += 1
    document.state = "draft"
    version = CmsVersion(document_id=document.id, version=document.current_version, title=title, body=body,
                         meta=meta, created_by=str(actor))
    session.add(version)
    await session.flush()
    await audit.append(session, AGGREGATE, document.id, "cms.draft_saved", {
        **_identity(document), "version": version.version, "title": title, "previous_state": previous_state,
    }, actor=actor)
    return document, version


async def transition(session: AsyncSession, kind: Kind, slug: str, locale: str, *, to: states.State,
                     actor: Actor) -> CmsDocument:
    """Move along the workflow table; moving to ``published`` publishes the latest version."""
    document = await get_document(session, kind, slug, locale, lock=True)
    action, target = states.move(document.state, to=to)  # type: ignore[arg-type]
    if target == "published":
        await _go_public(session, document, document.current_version, actor=actor, event="cms.published",
                         data={"previous_state": document.state, "skipped_review": False})
        return document
    previous = document.state
    document.state = target
    if target == "archived":  # withdrawn: public reads answer 404 from now on
        document.published_version, document.published_at = None, None
    await session.flush()
    await audit.append(session, AGGREGATE, document.id, "cms.transitioned", {
        **_identity(document), "action": action, "from": previous, "to": target, "version": document.current_version,
    }, actor=actor)
    return document


async def publish(session: AsyncSession, kind: Kind, slug: str, locale: str, *, version: int | None,
                  note: str | None, actor: Actor) -> CmsDocument:
    """Publish the latest version. It must be ``approved``; an admin may publish a draft or a
    version in review without review by giving a ``note``, recorded in the audit event.
    ``version``, when given, must be the latest: a guard against publishing what someone else
    just replaced (earlier versions go back up through rollback)."""
    document = await get_document(session, kind, slug, locale, lock=True)
    if version is not None and version != document.current_version:
        raise Conflict("Only the latest version can be published; use rollback for an earlier one.",
                       code="version_not_latest", details={"version": version,
                                                           "current_version": document.current_version})
    skipped_review = document.state != "approved"
    if skipped_review and not (document.state in states.DIRECT_PUBLISH_FROM and note):
        moves = states.allowed_moves(document.state)  # type: ignore[arg-type]
        raise ReviewRequired(
            f"A document in state {document.state!r} is published once approved"
            + (" (or directly, with a note saying why)." if document.state in states.DIRECT_PUBLISH_FROM else "."),
            details={"state": document.state, "requested": "published", "allowed": [move.to for move in moves],
                     "note_required": document.state in states.DIRECT_PUBLISH_FROM},
        )
    await _go_public(session, document, document.current_version, actor=actor, event="cms.published", note=note,
                     skipped_review=skipped_review,
                     data={"previous_state": document.state, "skipped_review": skipped_review, "note": note})
    return document


async def rollback(session: AsyncSession, kind: Kind, slug: str, locale: str, *, version: int, note: str | None,
                   actor: Actor) -> tuple[CmsDocument, CmsVersion]:
    """Republish a once-published ``version`` as a new version; nothing is rewritten."""
    document = await get_document(session, kind, slug, locale, lock=True)
    source = await get_version(session, document, version)
    was_published = await session.scalar(select(func.count()).select_from(CmsPublication).where(
        CmsPublication.document_id == document.id, CmsPublication.version == version))
    if not was_published:
        raise Conflict("Only a version that was once published can be rolled back to.",
                       code="version_never_published", details={"version": version})
    previous = {"previous_state": document.state, "previous_published_version": document.published_version}
    document.current_version += 1
    copy = CmsVersion(document_id=document.id, version=document.current_version, title=source.title,
                      body=source.body, meta=source.meta, source_version=version, created_by=str(actor))
    session.add(copy)
    await session.flush()
    await _go_public(session, document, copy.version, actor=actor, event="cms.rolled_back", note=note,
                     data={**previous, "from_version": version, "note": note})
    return document, copy


async def _go_public(session: AsyncSession, document: CmsDocument, version: int, *, actor: Actor, event: str,
                     data: dict[str, Any], note: str | None = None, skipped_review: bool = False) -> None:
    now = utcnow()
    document.state = "published"
    document.published_version = version
    document.published_at = now
    session.add(CmsPublication(document_id=document.id, version=version, published_at=now,
                               published_by=str(actor), skipped_review=skipped_review, note=note))
    await session.flush()
    await audit.append(session, AGGREGATE, document.id, event,
                       {**_identity(document), "version": version, **data}, actor=actor)


def _identity(document: CmsDocument) -> dict[str, Any]:
    return {"kind": document.kind, "slug": document.slug, "locale": document.locale}
