"""Message catalog: packaged locale bundles, overlaid by the bundles of the signed reload.

A bundle maps a key to a message. A message is a ``str.format`` template with named fields only
(``"Deposit of {amount} {currency} credited."``), or, when it depends on a number, a dict of CLDR
plural categories (``{"one": "…", "other": "…"}``) chosen by the ``count`` parameter with Babel's
rules for the locale that answered. ``other`` is required and is the fallback category.

The signed reload (``POST /auth/i18n/reload``) carries flat ``{key: str}`` bundles, so it spells a
plural message as one key per category: ``"deposit.credited#one"``, ``"deposit.credited#other"``.
Its bundles are laid over the packaged ones key by key (a reloaded key replaces the packaged
message of that key whole; keys and locales it does not name keep their packaged text).

Field syntax is deliberately narrow: ``{name}`` only. ``str.format`` would otherwise let a message
reach attributes (``{user.__class__}``) or pad to any width (``{x:>999999999}``).
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.numbers import format_decimal

from core.errors import InvalidInput, NotFound
from core.locales import DEFAULT_LOCALE, fallback_chain, normalize

PLURAL_PARAM = "count"
PLURAL_CATEGORIES = ("zero", "one", "two", "few", "many", "other")
PLURAL_SEPARATOR = "#"

Message = str | dict[str, str]
Bundle = dict[str, Message]
Param = str | int | float | bool | None

_formatter = string.Formatter()


class MessageNotFound(NotFound):
    code, message = "message_not_found", "No locale has a message with this key."


class MissingParameter(InvalidInput):
    code = "missing_parameter"


class InvalidMessage(InvalidInput):
    code, message = "invalid_message", "The message template is not valid."


@dataclass(frozen=True)
class Resolved:
    key: str
    message: str
    locale_used: str


def fold_plurals(flat: dict[str, Any]) -> Bundle:
    """``{"k#one": a, "k#other": b}`` → ``{"k": {"one": a, "other": b}}``; other entries unchanged."""
    bundle: Bundle = {}
    for key, value in flat.items():
        base, separator, category = key.rpartition(PLURAL_SEPARATOR)
        if separator and category in PLURAL_CATEGORIES:
            forms = bundle.setdefault(base, {})
            if isinstance(forms, dict):
                forms[category] = value
        else:
            bundle[key] = value
    return bundle


@lru_cache(maxsize=1)
def packaged_bundles() -> dict[str, Bundle]:
    """The bundles shipped in ``api/i18n/bundles/<locale>.json``."""
    bundles: dict[str, Bundle] = {}
    for entry in resources.files("content.i18n.bundles").iterdir():
        if entry.name.endswith(".json"):
            bundles[normalize(entry.name[: -len(".json")])] = fold_plurals(json.loads(entry.read_text("utf-8")))
    return bundles


def merge(live: dict[str, dict[str, str]] | None) -> dict[str, Bundle]:
    """The packaged bundles with the reloaded ones laid over them, key by key."""
    merged = {locale: dict(bundle) for locale, bundle in packaged_bundles().items()}
    for tag, flat in (live or {}).items():
        try:
            locale = normalize(tag)
        except InvalidInput:
            continue  # a reload can't be refused after the fact; an unusable tag just never matches
        merged.setdefault(locale, {}).update(fold_plurals(flat))
    return merged


class Catalog:
    """Merged bundles, rebuilt only when the live bundles object is swapped by a reload."""

    _UNSET = object()

    def __init__(self) -> None:
        self._live: object = self._UNSET
        self._bundles: dict[str, Bundle] = {}

    def bundles(self, live: dict[str, dict[str, str]] | None) -> dict[str, Bundle]:
        if live is not self._live:  # a reload replaces the dict (api/control.py): identity is the version
            self._bundles, self._live = merge(live), live
        return self._bundles


# One per process: a cache of the merge, not state (rebuilt from the inputs whenever they change).
catalog = Catalog()


def plural_category(locale: str, count: float) -> str:
    try:
        rules = Locale.parse(locale.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        rules = Locale.parse(DEFAULT_LOCALE)
    return rules.plural_form(count)


def _shown(value: Param, locale: str) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, (int, float)):
        try:
            return format_decimal(value, locale=locale.replace("-", "_"))
        except (UnknownLocaleError, ValueError):
            return format_decimal(value, locale=DEFAULT_LOCALE)
    return str(value)


def format_message(template: str, params: dict[str, Param], locale: str) -> str:
    pieces = []
    try:
        parsed = list(_formatter.parse(template))
    except ValueError as error:
        raise InvalidMessage(details={"reason": str(error)}) from None
    for literal, field, spec, conversion in parsed:
        pieces.append(literal)
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise InvalidMessage(details={"field": field, "reason": "only {name} fields are allowed"})
        if field not in params:
            raise MissingParameter(f"The message needs the parameter {field!r}.", details={"parameter": field})
        pieces.append(_shown(params[field], locale))
    return "".join(pieces)


def resolve(bundles: dict[str, Bundle], key: str, locale: str, params: dict[str, Param] | None = None) -> Resolved:
    """The message for ``key`` in the first locale of the fallback chain that has it."""
    params = params or {}
    for candidate in fallback_chain(locale):
        message = bundles.get(candidate, {}).get(key)
        if message is None:
            continue
        if isinstance(message, dict):
            count = params.get(PLURAL_PARAM)
            if PLURAL_PARAM not in params:
                raise MissingParameter(f"The message needs the parameter {PLURAL_PARAM!r}.",
                                       details={"parameter": PLURAL_PARAM})
            if isinstance(count, bool) or not isinstance(count, (int, float)):
                raise InvalidInput(f"The parameter {PLURAL_PARAM!r} must be a number.", code="invalid_parameter",
                                   details={"parameter": PLURAL_PARAM})
            template = message.get(plural_category(candidate, count)) or message.get("other")
            if template is None:
                raise InvalidMessage(details={"key": key, "reason": "a plural message needs an 'other' form"})
        else:
            template = message
        return Resolved(key, format_message(template, params, candidate), candidate)
    raise MessageNotFound(details={"key": key, "locales_tried": fallback_chain(locale)})
