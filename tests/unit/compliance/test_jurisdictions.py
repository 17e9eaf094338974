"""The packaged jurisdictions file: the thresholds it states, each with its source."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from compliance import jurisdictions
from compliance.jurisdictions import REPORT_TYPES, JurisdictionFileError
from core.errors import InvalidInput


def test_packaged_thresholds() -> None:
    data = jurisdictions.load()
    assert (data["FATF"].currency, data["FATF"].travel_rule_threshold) == ("USD", Decimal(1000))
    assert (data["US"].currency, data["US"].travel_rule_threshold) == ("USD", Decimal(3000))
    assert "1010.410" in data["US"].travel_rule_source
    assert (data["EU"].currency, data["EU"].travel_rule_threshold) == ("EUR", Decimal(0))
    assert "2023/1113" in data["EU"].travel_rule_source
    assert (data["CA"].currency, data["CA"].travel_rule_threshold) == ("CAD", Decimal(1000))
    lvctr = data["CA"].reports["large_transactions"]
    assert (lvctr.threshold, lvctr.aggregation_hours) == (Decimal(10000), 24)
    assert data["US"].reports["suspicious_activity"].threshold == Decimal(2000)


def test_every_jurisdiction_defines_every_report_with_a_source() -> None:
    for jurisdiction in jurisdictions.load().values():
        assert set(jurisdiction.reports) == set(REPORT_TYPES)
        assert all(rule.source for rule in jurisdiction.reports.values())


def test_unknown_jurisdiction_is_a_422() -> None:
    with pytest.raises(InvalidInput) as refused:
        jurisdictions.get("XX")
    assert refused.value.code == "unknown_jurisdiction"


def test_override_file_replaces_the_packaged_one(tmp_path) -> None:
    path = tmp_path / "j.json"
    path.write_text(json.dumps({"jurisdictions": [{
        "code": "GB", "name": "United Kingdom", "currency": "GBP", "travel_rule_threshold": "1000",
        "travel_rule_source": "MLRs 2017 reg. 64C",
        "reports": {"large_transactions": {"threshold": "10000", "source": "internal"}}}]}))
    assert list(jurisdictions.load(path)) == ["GB"]


@pytest.mark.parametrize("threshold", ["-1", "abc", 1000])
def test_a_bad_threshold_refuses_the_whole_file(threshold) -> None:
    text = json.dumps({"jurisdictions": [{
        "code": "GB", "name": "x", "currency": "GBP", "travel_rule_threshold": threshold, "travel_rule_source": "s",
        "reports": {}}]})
    with pytest.raises(JurisdictionFileError):
        jurisdictions.parse(text)


def test_a_threshold_without_source_is_refused() -> None:
    text = json.dumps({"jurisdictions": [{
        "code": "GB", "name": "x", "currency": "GBP", "travel_rule_threshold": "1", "travel_rule_source": "s",
        "reports": {"large_transactions": {"threshold": "1"}}}]})
    with pytest.raises(JurisdictionFileError, match="cites its source"):
        jurisdictions.parse(text)


@pytest.mark.parametrize("code", ["../etc", "us", "", "TOOLONGCODE1"])
def test_a_code_that_could_not_name_a_directory_is_refused(code) -> None:
    text = json.dumps({"jurisdictions": [{
        "code": code, "name": "x", "currency": "GBP", "travel_rule_threshold": "1", "travel_rule_source": "s",
        "reports": {}}]})
    with pytest.raises(JurisdictionFileError):
        jurisdictions.parse(text)
