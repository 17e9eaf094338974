"""Locale tags, the fallback chain, plural forms and the bundles (packaged and reloaded)."""

from __future__ import annotations

import json
import string
from importlib import resources

import pytest

from content.i18n import catalog
from content.i18n.catalog import Catalog, MessageNotFound, MissingParameter, merge, resolve
from core.locales import fallback_chain, from_accept_language, normalize
from core.errors import InvalidInput

NOTIFICATION_TYPES = (
    "escrow.funded", "escrow.released", "escrow.disputed", "escrow.resolved", "deposit.seen", "deposit.credited",
    "withdrawal.confirmed", "withdrawal.failed", "ticket.reply",
)
PARAMS = {"escrow_title": "Servers", "amount": "8000.00", "currency": "USDC", "outcome": "refund", "count": 3,
          "chain": "ethereum", "reason": "dropped", "ticket_subject": "Help", "display_name": "Ada"}


@pytest.mark.parametrize(("tag", "expected"), [
    ("en", "en"), ("DE", "de"), ("de_at", "de-AT"), ("de-AT", "de-AT"), ("zh-hant-tw", "zh-Hant-TW"), ("es-419", "es-419"),
])
def test_tags_are_normalized(tag, expected):
    assert normalize(tag) == expected


@pytest.mark.parametrize("tag", ["", "e", "english", "de--AT", "de-AT!", "../etc", "x" * 40])
def test_invalid_tags_are_422(tag):
    with pytest.raises(InvalidInput):
        normalize(tag)


def test_fallback_chain_shortens_then_ends_in_english():
    assert fallback_chain("de-AT") == ["de-AT", "de", "en"]
    assert fallback_chain("zh-Hant-TW") == ["zh-Hant-TW", "zh-Hant", "zh", "en"]
    assert fallback_chain("en-GB") == ["en-GB", "en"]
    assert fallback_chain("en") == ["en"]
    assert fallback_chain(None) == ["en"]


def test_accept_language_picks_the_preferred_valid_tag():
    assert from_accept_language("fr-CH, fr;q=0.9, en;q=0.8") == "fr-CH"
    assert from_accept_language("en;q=0.5, de-at;q=0.9, *;q=1") == "de-AT"
    assert from_accept_language("*") is None
    assert from_accept_language(None) is None


def test_every_notification_type_has_a_message_in_every_bundled_locale():
    bundles = catalog.packaged_bundles()
    assert set(bundles) >= {"en", "de", "fr"}
    for locale, bundle in bundles.items():
        for key in NOTIFICATION_TYPES:
            assert key in bundle, (locale, key)
            resolved = resolve(bundles, key, locale, PARAMS)
            assert resolved.locale_used == locale and "{" not in resolved.message


def test_bundles_have_the_same_keys_and_fields_in_every_locale():
    def fields(message):
        forms = message.values() if isinstance(message, dict) else [message]
        return {name for form in forms for _, name, _, _ in string.Formatter().parse(form) if name}

    raw = {entry.name: json.loads(entry.read_text("utf-8"))
           for entry in resources.files("content.i18n.bundles").iterdir() if entry.name.endswith(".json")}
    english = raw.pop("en.json")
    for name, bundle in raw.items():
        assert set(bundle) == set(english), name
        for key, message in bundle.items():
            assert fields(message) == fields(english[key]), (name, key)


def test_fallback_goes_from_region_to_language_to_english():
    bundles = merge({"de-AT": {"escrow.funded": "Österreich: {escrow_title}"}, "es": {"only.spanish": "hola"}})
    assert resolve(bundles, "escrow.funded", "de-AT", PARAMS).locale_used == "de-AT"
    assert resolve(bundles, "escrow.released", "de-AT", PARAMS).locale_used == "de"
    assert resolve(bundles, "escrow.released", "es-MX", PARAMS).locale_used == "en"
    assert resolve(bundles, "only.spanish", "es-MX").message == "hola"


@pytest.mark.parametrize(("locale", "count", "expected"), [
    ("en", 1, "A deposit of"), ("en", 0, "0 deposits"), ("en", 2, "2 deposits"),
    ("de", 1, "Eine Einzahlung"), ("de", 5, "5 Einzahlungen"),
    ("fr", 0, "Un dépôt"), ("fr", 1, "Un dépôt"), ("fr", 2, "2 dépôts"),
])
def test_plural_forms_follow_cldr_rules_of_the_locale(locale, count, expected):
    message = resolve(catalog.packaged_bundles(), "deposit.credited", locale, {**PARAMS, "count": count}).message
    assert message.startswith(expected), message


def test_numbers_are_formatted_for_the_locale():
    bundles = catalog.packaged_bundles()
    assert resolve(bundles, "deposit.credited", "en", {**PARAMS, "count": 1200}).message.startswith("1,200 ")
    assert resolve(bundles, "deposit.credited", "de", {**PARAMS, "count": 1200}).message.startswith("1.200 ")


def test_a_plural_locale_without_the_category_falls_back_to_other():
    bundles = merge({"pl": {"files#one": "{count} plik", "files#other": "{count} pliki"}})
    assert resolve(bundles, "files", "pl", {"count": 5}).message == "5 pliki"  # "many" is not given
    assert resolve(bundles, "files", "pl", {"count": 1}).message == "1 plik"


def test_missing_parameter_is_422_naming_it():
    with pytest.raises(MissingParameter) as missing:
        resolve(catalog.packaged_bundles(), "escrow.funded", "en", {"escrow_title": "x", "amount": "1"})
    assert missing.value.status == 422 and missing.value.details == {"parameter": "currency"}
    with pytest.raises(MissingParameter) as missing:
        resolve(catalog.packaged_bundles(), "deposit.credited", "en", {"amount": "1", "currency": "ETH"})
    assert missing.value.details == {"parameter": "count"}


def test_unknown_key_is_404():
    with pytest.raises(MessageNotFound) as unknown:
        resolve(catalog.packaged_bundles(), "no.such.key", "de-AT")
    assert unknown.value.status == 404 and unknown.value.details["locales_tried"] == ["de-AT", "de", "en"]


def test_fields_can_not_reach_attributes_or_pad():
    bundles = merge({"en": {"evil": "{name.__class__}", "wide": "{name:>999999999}", "pos": "{0}"}})
    for key in ("evil", "wide", "pos"):
        with pytest.raises(InvalidInput):
            resolve(bundles, key, "en", {"name": "x"})


def test_reloaded_bundles_override_key_by_key_and_are_reused_until_swapped():
    cache = Catalog()
    live = {"en": {"escrow.funded": "Reloaded {escrow_title}", "deposit.credited#one": "one!",
                   "deposit.credited#other": "many!"}}
    bundles = cache.bundles(live)
    assert resolve(bundles, "escrow.funded", "en", PARAMS).message == "Reloaded Servers"
    assert resolve(bundles, "deposit.credited", "en", {"count": 2}).message == "many!"
    assert resolve(bundles, "escrow.released", "en", PARAMS).message.startswith("Escrow “Servers” was released")
    assert resolve(bundles, "escrow.funded", "de", PARAMS).message.startswith("Treuhand")
    assert cache.bundles(live) is bundles
    assert cache.bundles({}) is not bundles
