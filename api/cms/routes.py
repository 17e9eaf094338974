"""CMS routes: public reads of published content, the admin workflow, email template tools.

Tables: ``cms_public`` (anyone), ``cms_admin`` (admin; support reads and drafts help articles),
``email_templates`` (preview: admin, support; test-send: admin).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api.access import PUBLIC, roles
from api.caching import cached_json
from api.cms.schemas import (
    AdminListQuery,
    DeliveryListOut,
    DeliveryListQuery,
    DeliveryOut,
    DocumentListOut,
    DocumentOut,
    DocumentSummaryOut,
    DraftIn,
    DraftOut,
    HelpListOut,
    HelpQuery,
    HelpSummaryOut,
    LandingOut,
    LocaleQuery,
    MoveOut,
    PreviewIn,
    PreviewOut,
    PublicationOut,
    PublicQuery,
    PublishedOut,
    PublishIn,
    RollbackIn,
    TestSendIn,
    TransitionIn,
    VersionOut,
)
from api.keys import SETTINGS
from api.middleware import db_session
from api.principal import current
from api.registry import Routes
from content import email, service, states
from content.models import CmsDocument, CmsVersion, EmailDelivery, Kind
from content.render import render_blocks, version_html
from core.locales import fallback_chain, from_accept_language, normalize

cms_public = Routes(tag="cms")
cms_admin = Routes(tag="cms")
email_templates = Routes(tag="cms")

ADMIN = roles("admin")
EDITORS = roles("admin", "support")  # support: help articles only (service.check_editor)
CACHED = {200: None, 304: None}  # 200's model is set per route below

# Refusals shared by the routes below, by status.
CURSOR = {422: ("invalid_cursor",)}
DOCUMENT_NOT_FOUND = ("cms_document_not_found",)
KIND_OR_DOCUMENT_NOT_FOUND = {404: ("cms_kind_not_found", "cms_document_not_found")}
# What a template may fail with when it is rendered (a preview, a test send).
RENDER_ERRORS = ("template_error", "template_limit_exceeded", "template_too_large", "template_syntax_error",
                 "template_refused", "missing_template_variable")


# --- helpers: path, locale, serialization -------------------------------------------------------

def _kind(request: web.Request, action: str) -> Kind:
    kind = service.require_kind(request.match_info["kind"])
    service.check_editor(kind, current(request).roles, action)
    return kind


def _slug(request: web.Request) -> str:
    return service.require_slug(request.match_info["slug"])


def _reader_chain(request: web.Request, query: PublicQuery) -> list[str]:
    return fallback_chain(query.locale or from_accept_language(request.headers.get("Accept-Language")))


def _moves(state: str) -> list[MoveOut]:
    return [MoveOut(action=move.action, to=move.to) for move in states.allowed_moves(state)]  # type: ignore[arg-type]


def _summary(document: CmsDocument, title: str) -> dict[str, Any]:
    return {
        "id": document.id, "kind": document.kind, "slug": document.slug, "locale": document.locale,
        "state": document.state, "title": title, "current_version": document.current_version,
        "versions": document.current_version, "published_version": document.published_version,
        "published_at": document.published_at, "updated_at": document.updated_at,
        "allowed_moves": _moves(document.state),
    }


def _document_out(found: service.DocumentHistory) -> DocumentOut:
    history = [
        VersionOut(version=row.version, title=row.title, body=row.body, metadata=row.meta,
                   source_version=row.source_version, created_by=row.created_by, created_at=row.created_at,
                   publications=[PublicationOut(published_at=p.published_at, published_by=p.published_by,
                                                skipped_review=p.skipped_review, note=p.note)
                                 for p in found.publications.get(row.version, [])])
        for row in found.versions
    ]
    return DocumentOut(**_summary(found.document, found.versions[0].title), history=history)


def _published_out(document: CmsDocument, version: CmsVersion) -> dict[str, Any]:
    return {"slug": document.slug, "title": version.title, "version": version.version, "locale": document.locale,
            "body_html": version_html(version.id, version.body), "published_at": document.published_at}


def _delivery_out(delivery: EmailDelivery) -> DeliveryOut:
    return DeliveryOut(id=delivery.id, template_slug=delivery.template_slug, template_version=delivery.template_version,
                       locale=delivery.locale, purpose=delivery.purpose, to=delivery.recipient,
                       subject=delivery.subject, state=delivery.state, attempts=delivery.attempts,
                       last_error=delivery.last_error, created_at=delivery.created_at,
                       updated_at=delivery.updated_at, sent_at=delivery.sent_at)


def _max_age(request: web.Request) -> int:
    return request.config_dict[SETTINGS].cms_cache_max_age_seconds


# --- public reads ------------------------------------------------------------------------------

@cms_public.get("/cms/legal/{slug}", access=PUBLIC, query=PublicQuery, responses={**CACHED, 200: PublishedOut},
                errors={404: DOCUMENT_NOT_FOUND})
async def cms_legal_document(request: web.Request, query: PublicQuery) -> web.Response:
    """A published legal document (`?locale=`, falling back `de-AT → de → en`); ETag, 304."""
    document, version = await service.published(db_session(request), "legal", _slug(request),
                                                _reader_chain(request, query))
    return cached_json(request, PublishedOut(**_published_out(document, version)), max_age=_max_age(request))


@cms_public.get("/cms/help", access=PUBLIC, query=HelpQuery, responses={**CACHED, 200: HelpListOut}, errors=CURSOR)
async def cms_help_articles(request: web.Request, query: HelpQuery) -> web.Response:
    """Published help articles by slug, each in the best available locale; `query` searches title and body."""
    page = await service.published_help(db_session(request), _reader_chain(request, query), query=query.query,
                                        limit=query.limit, cursor=query.cursor)
    items = [HelpSummaryOut(slug=document.slug, title=version.title, version=version.version,
                            locale=document.locale, published_at=document.published_at)
             for document, version in page.items]
    return cached_json(request, HelpListOut(items=items, next_cursor=page.next_cursor), max_age=_max_age(request))


@cms_public.get("/cms/help/{slug}", access=PUBLIC, query=PublicQuery, responses={**CACHED, 200: PublishedOut},
                errors={404: DOCUMENT_NOT_FOUND})
async def cms_help_article(request: web.Request, query: PublicQuery) -> web.Response:
    """One published help article."""
    document, version = await service.published(db_session(request), "help", _slug(request),
                                                _reader_chain(request, query))
    return cached_json(request, PublishedOut(**_published_out(document, version)), max_age=_max_age(request))


@cms_public.get("/cms/landing/{slug}", access=PUBLIC, query=PublicQuery, responses={**CACHED, 200: LandingOut},
                errors={404: DOCUMENT_NOT_FOUND})
async def cms_landing_page(request: web.Request, query: PublicQuery) -> web.Response:
    """A published landing page: title, `blocks` (from `metadata.blocks`, `html` sanitized) and body HTML."""
    document, version = await service.published(db_session(request), "landing", _slug(request),
                                                _reader_chain(request, query))
    page = LandingOut(**_published_out(document, version), blocks=render_blocks(version.meta.get("blocks")))
    return cached_json(request, page, max_age=_max_age(request))


# --- admin workflow ----------------------------------------------------------------------------

# Registered before /admin/cms/{kind}/{slug}: aiohttp matches in order (the slug is reserved).
@cms_admin.get("/admin/cms/email/deliveries", access=ADMIN, query=DeliveryListQuery,
               responses={200: DeliveryListOut}, errors=CURSOR)
async def cms_email_deliveries(request: web.Request, query: DeliveryListQuery) -> DeliveryListOut:
    """Outgoing emails, newest first: state (queued, sent, failed), attempts and the last SMTP error."""
    page = await email.list_deliveries(db_session(request), state=query.state, limit=query.limit, cursor=query.cursor)
    return DeliveryListOut(items=[_delivery_out(row) for row in page.items], next_cursor=page.next_cursor)


@cms_admin.get("/admin/cms/{kind}", access=EDITORS, query=AdminListQuery, responses={200: DocumentListOut},
               errors={**CURSOR, 404: ("cms_kind_not_found",)})
async def cms_list_documents(request: web.Request, query: AdminListQuery) -> DocumentListOut:
    """Documents of a kind (each slug and locale): workflow state, allowed moves, versions."""
    kind = _kind(request, "read")
    page = await service.list_documents(db_session(request), kind, locale=query.locale and normalize(query.locale),
                                        state=query.state, limit=query.limit, cursor=query.cursor)
    return DocumentListOut(items=[DocumentSummaryOut(**_summary(document, title)) for document, title in page.items],
                           next_cursor=page.next_cursor)


@cms_admin.get("/admin/cms/{kind}/{slug}", access=EDITORS, query=LocaleQuery, responses={200: DocumentOut},
               errors=KIND_OR_DOCUMENT_NOT_FOUND)
async def cms_get_document(request: web.Request, query: LocaleQuery) -> DocumentOut:
    """One document in one locale, with every version and when each was published."""
    kind = _kind(request, "read")
    return _document_out(await service.history(db_session(request), kind, _slug(request), normalize(query.locale)))


@cms_admin.post("/admin/cms/{kind}/{slug}/draft", access=EDITORS, body=DraftIn, responses={201: DraftOut},
                errors={**KIND_OR_DOCUMENT_NOT_FOUND,
                        422: ("slug_reserved", "subject_required", "invalid_blocks", "template_too_large",
                              "template_syntax_error")})
async def cms_save_draft(request: web.Request, body: DraftIn) -> DraftOut:
    """Save a new version (the document goes back to `draft`); the first save creates the document."""
    kind = _kind(request, "draft")
    document, version = await service.save_draft(db_session(request), kind, _slug(request), normalize(body.locale),
                                                 title=body.title, body=body.body, meta=body.metadata,
                                                 actor=current(request).user_id)
    return DraftOut(document_id=document.id, kind=kind, slug=document.slug, locale=document.locale,
                    state=document.state, version=version.version, title=version.title,
                    created_at=version.created_at)


@cms_admin.post("/admin/cms/{kind}/{slug}/transition", access=ADMIN, body=TransitionIn, responses={200: DocumentOut},
                errors={**KIND_OR_DOCUMENT_NOT_FOUND, 409: ("illegal_transition",)})
async def cms_transition(request: web.Request, body: TransitionIn) -> DocumentOut:
    """Move along the workflow; an illegal move is a 409 listing `details.allowed`."""
    kind, slug, locale, session = _kind(request, "manage"), _slug(request), normalize(body.locale), db_session(request)
    await service.transition(session, kind, slug, locale, to=body.to, actor=current(request).user_id)
    return _document_out(await service.history(session, kind, slug, locale))


@cms_admin.post("/admin/cms/{kind}/{slug}/publish", access=ADMIN, body=PublishIn, responses={200: DocumentOut},
                errors={**KIND_OR_DOCUMENT_NOT_FOUND, 409: ("version_not_latest", "review_required")})
async def cms_publish(request: web.Request, body: PublishIn) -> DocumentOut:
    """Publish the latest version once `approved`; with a `note`, straight from draft or review (audited)."""
    kind, slug, locale, session = _kind(request, "manage"), _slug(request), normalize(body.locale), db_session(request)
    await service.publish(session, kind, slug, locale, version=body.version, note=body.note,
                          actor=current(request).user_id)
    return _document_out(await service.history(session, kind, slug, locale))


@cms_admin.post("/admin/cms/{kind}/{slug}/rollback", access=ADMIN, body=RollbackIn, responses={201: DocumentOut},
                errors={404: ("cms_kind_not_found", "cms_document_not_found", "cms_version_not_found"),
                        409: ("version_never_published",)})
async def cms_rollback(request: web.Request, body: RollbackIn) -> DocumentOut:
    """Republish an earlier, once-published version as a new version (history kept)."""
    kind, slug, locale, session = _kind(request, "manage"), _slug(request), normalize(body.locale), db_session(request)
    await service.rollback(session, kind, slug, locale, version=body.version, note=body.note,
                           actor=current(request).user_id)
    return _document_out(await service.history(session, kind, slug, locale))


# --- email templates ---------------------------------------------------------------------------

@email_templates.post("/cms/email/{slug}/preview", access=EDITORS, body=PreviewIn, responses={200: PreviewOut},
                      errors={404: ("cms_document_not_found", "cms_version_not_found"), 422: RENDER_ERRORS})
async def cms_preview_email(request: web.Request, body: PreviewIn) -> PreviewOut:
    """Render a template version with `variables`: subject, HTML and text. A missing variable is a 422 naming it."""
    rendered = await email.preview(db_session(request), _slug(request), locale=body.locale, version=body.version,
                                   variables=body.variables)
    return PreviewOut(subject=rendered.subject, html=rendered.html, text=rendered.text)


@email_templates.post("/cms/email/{slug}/test-send", access=ADMIN, body=TestSendIn, responses={202: DeliveryOut},
                      errors={404: DOCUMENT_NOT_FOUND, 422: RENDER_ERRORS})
async def cms_test_send_email(request: web.Request, body: TestSendIn) -> DeliveryOut:
    """Queue the latest version to `to`; sent by the notifications worker (see the deliveries list)."""
    delivery = await email.queue_test_send(db_session(request), _slug(request), to=str(body.to), locale=body.locale,
                                           variables=body.variables, actor=current(request).user_id)
    return _delivery_out(delivery)
