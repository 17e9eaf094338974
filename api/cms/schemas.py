"""Request and response models of the CMS, email template and content-platform routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, EmailStr, Field, StringConstraints, model_validator

from content.states import Action, State
from core.locales import DEFAULT_LOCALE, LOCALE_PATTERN, MAX_LOCALE_LENGTH

Locale = Annotated[str, StringConstraints(pattern=LOCALE_PATTERN, max_length=MAX_LOCALE_LENGTH)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
MAX_BODY_CHARS = 200_000


# --- admin -------------------------------------------------------------------------------------

class DraftIn(BaseModel):
    title: Title
    body: str = Field(max_length=MAX_BODY_CHARS, description="Markdown (inline HTML is sanitized on output).")
    locale: Locale = DEFAULT_LOCALE
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Per kind: email needs `subject` (a template); landing may have `blocks` "
                    "(objects with a string `type`; a `markdown` field is rendered to `html`).",
    )


class TransitionIn(BaseModel):
    to: State
    locale: Locale = DEFAULT_LOCALE


class PublishIn(BaseModel):
    version: int | None = Field(default=None, ge=1, description="If given, must be the latest version.")
    locale: Locale = DEFAULT_LOCALE
    note: Note | None = Field(default=None, description="Required to publish without review (admin override).")


class RollbackIn(BaseModel):
    version: int = Field(ge=1, description="A version that was once published; it is republished as a new version.")
    locale: Locale = DEFAULT_LOCALE
    note: Note | None = None


class LocaleQuery(BaseModel):
    locale: Locale = DEFAULT_LOCALE


class AdminListQuery(BaseModel):
    locale: Locale | None = None
    state: State | None = None
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=500)


class MoveOut(BaseModel):
    action: Action
    to: State


class PublicationOut(BaseModel):
    published_at: datetime
    published_by: str | None
    skipped_review: bool
    note: str | None


class VersionOut(BaseModel):
    version: int
    title: str
    body: str
    metadata: dict[str, Any]
    source_version: int | None = Field(description="For a rollback: the version it copies.")
    created_by: str | None
    created_at: datetime
    publications: list[PublicationOut]


class DocumentSummaryOut(BaseModel):
    id: uuid.UUID
    kind: str
    slug: str
    locale: str
    state: State
    title: str = Field(description="The latest version's title.")
    current_version: int
    versions: int
    published_version: int | None
    published_at: datetime | None
    updated_at: datetime
    allowed_moves: list[MoveOut]


class DocumentListOut(BaseModel):
    items: list[DocumentSummaryOut]
    next_cursor: str | None


class DocumentOut(DocumentSummaryOut):
    history: list[VersionOut] = Field(description="Every version, newest first.")


class DraftOut(BaseModel):
    document_id: uuid.UUID
    kind: str
    slug: str
    locale: str
    state: State
    version: int
    title: str
    created_at: datetime


# --- public ------------------------------------------------------------------------------------

class PublicQuery(BaseModel):
    locale: Locale | None = Field(default=None, description="Else the Accept-Language header, else en.")


class HelpQuery(PublicQuery):
    query: str | None = Field(default=None, max_length=200, description="Matches title or body.")
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=500)


class PublishedOut(BaseModel):
    slug: str
    title: str
    version: int
    locale: str
    body_html: str
    published_at: datetime


class HelpSummaryOut(BaseModel):
    slug: str
    title: str
    version: int
    locale: str
    published_at: datetime


class HelpListOut(BaseModel):
    items: list[HelpSummaryOut]
    next_cursor: str | None


class LandingOut(PublishedOut):
    blocks: list[dict[str, Any]]


# --- email -------------------------------------------------------------------------------------

class PreviewIn(BaseModel):
    variables: dict[str, Any] = Field(default_factory=dict)
    locale: Locale | None = None
    version: int | None = Field(default=None, ge=1, description="Default: the latest version, published or not.")


class PreviewOut(BaseModel):
    subject: str
    html: str
    text: str


class TestSendIn(BaseModel):
    to: EmailStr
    variables: dict[str, Any] = Field(default_factory=dict)
    locale: Locale | None = None


class DeliveryOut(BaseModel):
    id: uuid.UUID
    template_slug: str
    template_version: int
    locale: str
    purpose: Literal["test", "product"]
    to: str
    subject: str
    state: Literal["queued", "sent", "failed"]
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None


class DeliveryListQuery(BaseModel):
    state: Literal["queued", "sent", "failed"] | None = None
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=500)


class DeliveryListOut(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


# --- platform previews -------------------------------------------------------------------------

class NextStatusIn(BaseModel):
    state: State
    action: Action | None = None
    to: State | None = None

    @model_validator(mode="after")
    def _one_of_action_or_to(self) -> NextStatusIn:
        if (self.action is None) == (self.to is None):
            raise ValueError("give exactly one of 'action' and 'to'")
        return self


class NextStatusOut(BaseModel):
    allowed: bool
    next: State | None
    allowed_moves: list[MoveOut]
