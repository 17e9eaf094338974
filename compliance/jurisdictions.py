"""Jurisdictions are data: a packaged JSON file (``compliance/jurisdictions.json``), replaceable
whole with the setting ``compliance_jurisdictions_file``.

Each names its reporting currency, its Travel Rule threshold and, per report type, the threshold
and the aggregation window, with the legal source of every figure (the file cites them), so a
compliance officer can show a regulator where each number comes from.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path

from core.errors import InvalidInput

PACKAGED = Path(__file__).with_name("jurisdictions.json")
_CODE = re.compile(r"[A-Z0-9_]{1,10}")
REPORT_TYPES = ("large_transactions", "travel_rule", "suspicious_activity", "reconciliation")


class JurisdictionFileError(ValueError):
    """The jurisdictions file is not usable; refuse it whole rather than report with half of it."""


@dataclass(frozen=True)
class ReportRule:
    threshold: Decimal
    aggregation_hours: int
    source: str


@dataclass(frozen=True)
class Jurisdiction:
    code: str
    name: str
    currency: str
    travel_rule_threshold: Decimal
    travel_rule_source: str
    reports: dict[str, ReportRule]


def _decimal(value: object, where: str) -> Decimal:
    try:
        amount = Decimal(str(value)) if isinstance(value, str) else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount < 0:
        raise JurisdictionFileError(f"{where}: {value!r} is not a non-negative decimal string")
    return amount


def parse(text: str, source: str = "jurisdictions file") -> dict[str, Jurisdiction]:
    try:
        entries = json.loads(text)["jurisdictions"]
        result = {}
        for entry in entries:
            code = entry["code"]
            if not isinstance(code, str) or not _CODE.fullmatch(code):  # it names report directories
                raise JurisdictionFileError(f"{source}: {code!r} is not a code of 1-10 capitals, digits or _")
            reports = {}
            for report_type, rule in entry["reports"].items():
                if report_type not in REPORT_TYPES:
                    raise JurisdictionFileError(f"{source}, {code}: unknown report type {report_type!r}")
                if not rule.get("source"):
                    raise JurisdictionFileError(f"{source}, {code}.{report_type}: every threshold cites its source")
                reports[report_type] = ReportRule(_decimal(rule["threshold"], f"{source}, {code}.{report_type}"),
                                                  int(rule.get("aggregation_hours", 0)), rule["source"])
            result[code] = Jurisdiction(code, entry["name"], entry["currency"],
                                        _decimal(entry["travel_rule_threshold"], f"{source}, {code}"),
                                        entry["travel_rule_source"], reports)
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, JurisdictionFileError):
            raise
        raise JurisdictionFileError(f"{source}: {error!r}") from None
    if not result:
        raise JurisdictionFileError(f"{source}: no jurisdictions")
    return result


@lru_cache(maxsize=8)
def _load(path: Path) -> dict[str, Jurisdiction]:
    return parse(path.read_text(encoding="utf-8"), str(path))


def load(path: Path | None = None) -> dict[str, Jurisdiction]:
    """The jurisdictions of ``path`` (the setting), or the packaged ones when it is unset."""
    return _load(path or PACKAGED)


def get(code: str, path: Path | None = None) -> Jurisdiction:
    found = load(path).get(code)
    if found is None:
        raise InvalidInput(f"Unknown jurisdiction {code!r}.", code="unknown_jurisdiction",
                           details={"known": sorted(load(path))})
    return found
