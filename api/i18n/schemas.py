"""Request and response models of the i18n preview route."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from core.locales import LOCALE_PATTERN, MAX_LOCALE_LENGTH

Locale = Annotated[str, StringConstraints(pattern=LOCALE_PATTERN, max_length=MAX_LOCALE_LENGTH)]


class MessageIn(BaseModel):
    key: str = Field(min_length=1, max_length=200)
    locale: Locale
    params: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class MessageOut(BaseModel):
    message: str
    locale_used: str
