"""Locale tags (BCP 47, the subset we use) and the fallback chain ``de-AT → de → en``.

Shared by the message catalog and the CMS: a reader asking for ``de-AT`` gets the Austrian text if
there is one, else the German, else the default (English).
"""

from __future__ import annotations

import re

from core.errors import InvalidInput

DEFAULT_LOCALE = "en"
LOCALE_PATTERN = r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,3}$"
MAX_LOCALE_LENGTH = 35
_LOCALE = re.compile(LOCALE_PATTERN)


def normalize(tag: str) -> str:
    """``de_at`` → ``de-AT``, ``zh-hant-tw`` → ``zh-Hant-TW``; anything else is a 422."""
    if len(tag) > MAX_LOCALE_LENGTH or not _LOCALE.match(tag):
        raise InvalidInput("The locale is not a language tag such as 'en' or 'de-AT'.", code="invalid_locale",
                           details={"locale": tag[:MAX_LOCALE_LENGTH]})
    language, *subtags = tag.replace("_", "-").split("-")
    parts = [language.lower()]
    for subtag in subtags:
        if len(subtag) == 4 and subtag.isalpha():
            parts.append(subtag.title())  # script
        elif len(subtag) == 2 and subtag.isalpha() or len(subtag) == 3 and subtag.isdigit():
            parts.append(subtag.upper())  # region
        else:
            parts.append(subtag.lower())
    return "-".join(parts)


def fallback_chain(tag: str | None, default: str = DEFAULT_LOCALE) -> list[str]:
    """The locales to try in order: the tag, each shorter prefix, then the default."""
    chain: list[str] = []
    if tag:
        parts = normalize(tag).split("-")
        chain = ["-".join(parts[:length]) for length in range(len(parts), 0, -1)]
    if default not in chain:
        chain.append(default)
    return chain


def from_accept_language(header: str | None) -> str | None:
    """The caller's most preferred valid tag in an ``Accept-Language`` header (``*`` ignored)."""
    best: tuple[float, str] | None = None
    for item in (header or "").split(",")[:20]:
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        usable = tag and tag != "*" and _LOCALE.match(tag) and len(tag) <= MAX_LOCALE_LENGTH and quality > 0
        if usable and (best is None or quality > best[0]):
            best = (quality, tag)
    return normalize(best[1]) if best else None
