"""Sanctions files: OFAC's advanced XML and plain lists, parsed without a database."""

from __future__ import annotations

from pathlib import Path

import pytest

from compliance.screening.service import (
    SanctionsFileError,
    name_key,
    normalize_address,
    parse_ofac_advanced,
    parse_plain,
)

FIXTURES = Path(__file__).parents[3] / "integration" / "compliance" / "screening" / "fixtures"


def test_ofac_advanced_xml_addresses_and_names() -> None:
    addresses, names = parse_ofac_advanced((FIXTURES / "sdn_advanced_sample.xml").read_text())
    by_address = {entry.address: entry for entry in addresses}
    lazarus = by_address["0x098b716b8aaf21512996dc57eb0615e2383e2f96"]  # lowercased
    assert (lazarus.currency, lazarus.entity_name, lazarus.list_uid) == ("ETH", "LAZARUS GROUP", "23254")
    assert by_address["bc1qsampleaddressxxxxxxxxxxxxxxxxxxxxxxxx0"].currency == "XBT"  # kept as written
    assert by_address["0x00000000000000000000000000000000deadbeef"].currency == "USDT"
    assert len(addresses) == 3  # the birthdate feature is not an address
    assert {(entry.name, entry.list_uid) for entry in names} == {
        ("LAZARUS GROUP", "23254"), ("APPLEWORM", "23254"), ("PETROV Ivan Sergeyevich", "99901")}


def test_xml_that_is_not_ofac_is_refused() -> None:
    with pytest.raises(SanctionsFileError):
        parse_ofac_advanced("<root><a/></root>")
    with pytest.raises(SanctionsFileError):
        parse_ofac_advanced("<root><a></root>")


def test_plain_list_skips_comments_and_lowercases_evm() -> None:
    entries = parse_plain((FIXTURES / "plain_list.txt").read_text(), "plain_list.txt")
    assert [entry.address for entry in entries] == ["0x7f367cc41522ce07553e823bf3be79a889debe1b",
                                                    "0x1da5821544e25c636c1417ba96ade4cf6d2f9b5a"]


def test_plain_list_with_a_bad_line_is_refused_whole() -> None:
    with pytest.raises(SanctionsFileError) as refused:
        parse_plain("0x7F367cC41522cE07553e823bf3be79A889DEbe1B\nnot an address\n", "bad.txt")
    assert refused.value.details == {"line": 2}


def test_name_key_folds_case_accents_punctuation_and_order() -> None:
    assert name_key("PETROV, Ivan Sergeyevich") == name_key("ivan sergeyevich petrov") == name_key("Iván  Sergeyevich-Petrov")
    assert name_key("Ivan Petrov") != name_key("PETROV Ivan Sergeyevich")
    assert normalize_address(" 0xABCDEF0000000000000000000000000000000001 ") == "0xabcdef0000000000000000000000000000000001"
