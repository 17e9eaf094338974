"""IVMS101: snake_case models, their rules reported field by field, and the camelCase wire form both ways."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from compliance.travel_rule import ivms101
from core.errors import InvalidInput

LEI = "5493001KJTIIGC8Y1R12"


def natural(**changes: Any) -> dict[str, Any]:
    person = {"name": {"name_identifiers": [{"primary_identifier": "Lovelace", "secondary_identifier": "Ada",
                                             "name_identifier_type": "LEGL"}]},
              "geographic_addresses": [{"address_type": "HOME", "street_name": "Rue Sherbrooke O",
                                        "building_number": "1380", "post_code": "H3G 1J5", "town_name": "Montreal",
                                        "country": "CA"}]}
    person.update(changes)
    return person


def document(**changes: Any) -> dict[str, Any]:
    doc = {"originator": {"natural_person": natural(), "account_numbers": ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]},
           "beneficiary": {"natural_person": {"name": {"name_identifiers": [{"primary_identifier": "Hopper",
                                                                            "secondary_identifier": "Grace"}]}},
                           "account_numbers": ["0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"]},
           "originating_vasp": {"legal_person": {"name": "VirtuOZ Devnet VASP", "lei": LEI}},
           "beneficiary_vasp": {"legal_person": {"name": "Example Exchange Ltd"}}}
    doc.update(changes)
    return doc


def fields_of(data: Any) -> dict[str, str]:
    with pytest.raises(InvalidInput) as refused:
        ivms101.parse(data)
    assert refused.value.status == 422
    return {item["field"]: item["type"] for item in refused.value.details["fields"]}


def test_a_complete_document_parses() -> None:
    doc = ivms101.parse(document())
    assert doc.originator.natural_person is not None
    assert doc.originator.natural_person.name.name_identifiers[0].primary_identifier == "Lovelace"
    assert doc.beneficiary.natural_person.name.name_identifiers[0].name_identifier_type == "LEGL"  # the default
    assert doc.originating_vasp.legal_person.lei == LEI


def test_missing_fields_are_each_named() -> None:
    fields = fields_of({"originator": {"natural_person": {}}, "beneficiary": {"legal_person": {}}})
    assert fields == {
        "originator.natural_person.name": "missing",
        "originator.natural_person.geographic_addresses": "ivms101_required",
        "originator.natural_person.national_identification": "ivms101_required",
        "originator.natural_person.customer_identification": "ivms101_required",
        "originator.natural_person.date_and_place_of_birth": "ivms101_required",
        "beneficiary.legal_person.name": "missing",
        "originating_vasp": "missing",
        "beneficiary_vasp": "missing",
    }


@pytest.mark.parametrize("alternative", [
    {"national_identification": {"national_identifier": "AB123456", "national_identifier_type": "CCPT",
                                 "country_of_issue": "CA"}},
    {"customer_identification": "C-1001"},
    {"date_and_place_of_birth": {"date_of_birth": "1985-12-10", "place_of_birth": "London"}},
], ids=["national-id", "customer-id", "birth"])
def test_a_natural_originator_needs_an_address_or_an_alternative(alternative: dict[str, Any]) -> None:
    without = natural(geographic_addresses=[])
    assert "originator.natural_person.geographic_addresses" in fields_of(
        document(originator={"natural_person": without}))
    ivms101.parse(document(originator={"natural_person": {**without, **alternative}}))


def test_a_beneficiary_needs_only_a_name() -> None:
    ivms101.parse(document(beneficiary={"natural_person": {"name": {"name_identifiers": [
        {"primary_identifier": "Hopper"}]}}}))


def test_a_legal_originator_needs_an_address_customer_number_or_registration() -> None:
    fields = fields_of(document(originator={"legal_person": {"name": "Acme Corp"}}))
    assert set(fields) == {f"originator.legal_person.{name}" for name in
                           ("geographic_addresses", "customer_number", "national_identification", "lei")}
    ivms101.parse(document(originator={"legal_person": {"name": "Acme Corp", "lei": LEI}}))
    ivms101.parse(document(originator={"legal_person": {"name": "Acme Corp", "customer_number": "B-77"}}))


def test_one_person_per_side_exactly() -> None:
    fields = fields_of(document(beneficiary={"natural_person": natural(), "legal_person": {"name": "Acme"}}))
    assert {"beneficiary.natural_person", "beneficiary.legal_person"} <= set(fields)
    fields = fields_of(document(beneficiary={"account_numbers": ["x"]}))
    assert {"beneficiary.natural_person", "beneficiary.legal_person"} <= set(fields)


def test_a_name_needs_a_legal_name() -> None:
    name = {"name_identifiers": [{"primary_identifier": "Ada", "name_identifier_type": "ALIA"}]}
    fields = fields_of(document(originator={"natural_person": natural(name=name)}))
    assert fields == {"originator.natural_person.name.name_identifiers": "ivms101_required"}


def test_an_address_needs_lines_or_street_and_building() -> None:
    bare = {"town_name": "Montreal", "country": "CA"}
    fields = fields_of(document(originator={"natural_person": natural(geographic_addresses=[bare])}))
    assert fields == {"originator.natural_person.geographic_addresses.0.street_name": "ivms101_required",
                      "originator.natural_person.geographic_addresses.0.building_number": "ivms101_required"}
    ivms101.parse(document(originator={"natural_person": natural(
        geographic_addresses=[{**bare, "address_lines": ["1380 Rue Sherbrooke O"]}])}))
    ivms101.parse(document(originator={"natural_person": natural(
        geographic_addresses=[{**bare, "street_name": "Main St", "building_name": "Tower A"}])}))


def test_bad_values_are_refused() -> None:
    fields = fields_of(document(
        originating_vasp={"legal_person": {"name": "X", "lei": LEI[:-1] + "3"}},  # wrong check digits
        originator={"natural_person": natural(date_and_place_of_birth={"date_of_birth": "2999-01-01",
                                                                        "place_of_birth": "Mars"})},
        beneficiary={"natural_person": natural(country_of_residence="Canada")}))
    assert set(fields) == {"originating_vasp.legal_person.lei",
                           "originator.natural_person.date_and_place_of_birth.date_of_birth",
                           "beneficiary.natural_person.country_of_residence"}
    assert fields_of(document(beneficiary={"natural_person": natural(), "typo": 1})) == {"beneficiary.typo":
                                                                                         "extra_forbidden"}


def test_a_legal_registration_names_its_authority() -> None:
    registration = {"national_identifier": "12345", "national_identifier_type": "RAID", "country_of_issue": "CA"}
    fields = fields_of(document(beneficiary_vasp={"legal_person": {"name": "X", "national_identification":
                                                                   registration}}))
    assert set(fields) == {"beneficiary_vasp.legal_person.national_identification.registration_authority",
                           "beneficiary_vasp.legal_person.national_identification.country_of_issue"}


@pytest.mark.parametrize("lei,valid", [(LEI, True), ("529900T8BM49AURSDO55", True), ("529900T8BM49AURSDO56", False),
                                       ("5493001kjtiigc8y1r12", False), ("5493001KJTIIGC8Y1R1", False)],
                         ids=["gleif", "example-2", "check-digit", "lowercase", "short"])
def test_lei_check_digits(lei: str, valid: bool) -> None:
    assert ivms101.lei_is_valid(lei) is valid


# --- the wire ------------------------------------------------------------------------------------

def test_to_wire_is_ivms101_camel_case_with_arrays() -> None:
    wire = ivms101.to_wire(ivms101.parse(document()))
    person = wire["originator"]["originatorPersons"][0]["naturalPerson"]
    assert person["name"] == {"nameIdentifier": [{"primaryIdentifier": "Lovelace", "secondaryIdentifier": "Ada",
                                                  "nameIdentifierType": "LEGL"}]}
    assert person["geographicAddress"] == [{"addressType": "HOME", "streetName": "Rue Sherbrooke O",
                                            "buildingNumber": "1380", "postCode": "H3G 1J5", "townName": "Montreal",
                                            "country": "CA"}]
    assert wire["originator"]["accountNumber"] == ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]
    assert wire["beneficiary"]["beneficiaryPersons"][0]["naturalPerson"]["name"]["nameIdentifier"][0][
        "nameIdentifierType"] == "LEGL"
    assert wire["originatingVASP"] == {"originatingVASP": {"legalPerson": {
        "name": {"nameIdentifier": [{"legalPersonName": "VirtuOZ Devnet VASP", "legalPersonNameIdentifierType": "LEGL"}]},
        "nationalIdentification": {"nationalIdentifier": LEI, "nationalIdentifierType": "LEIX"}}}}
    assert wire["beneficiaryVASP"] == {"beneficiaryVASP": {"legalPerson": {
        "name": {"nameIdentifier": [{"legalPersonName": "Example Exchange Ltd", "legalPersonNameIdentifierType": "LEGL"}]}}}}


RICH = document(
    originator={"natural_person": natural(
        name={"name_identifiers": [{"primary_identifier": "Lovelace", "secondary_identifier": "Ada"},
                                   {"primary_identifier": "Byron", "name_identifier_type": "BIRT"}],
              "local_name_identifiers": [{"primary_identifier": "ラブレス", "name_identifier_type": "LEGL"}]},
        geographic_addresses=[{"address_type": "GEOG", "address_lines": ["1380 Rue Sherbrooke O", "Suite 5"],
                               "town_name": "Montreal", "country_sub_division": "QC", "country": "CA"}],
        national_identification={"national_identifier": "AB123456", "national_identifier_type": "CCPT",
                                 "country_of_issue": "GB"},
        customer_identification="C-1001",
        date_and_place_of_birth={"date_of_birth": "1985-12-10", "place_of_birth": "London"},
        country_of_residence="CA"), "account_numbers": ["acct-1", "0xabc"]},
    beneficiary={"legal_person": {"name": "Acme Corp", "lei": LEI, "other_names": [
        {"legal_person_name": "Acme", "legal_person_name_identifier_type": "SHRT"}],
        "customer_number": "B-77", "country_of_registration": "US",
        "geographic_addresses": [{"address_type": "BIZZ", "street_name": "Main St", "building_number": "1",
                                  "town_name": "Springfield", "country": "US"}]}, "account_numbers": []},
    beneficiary_vasp={"legal_person": {"name": "Other VASP", "national_identification": {
        "national_identifier": "12345", "national_identifier_type": "RAID", "registration_authority": "RA000001"}}})


@pytest.mark.parametrize("source", [document(), RICH], ids=["minimal", "every-field"])
def test_round_trip_through_the_wire(source: dict[str, Any]) -> None:
    doc = ivms101.parse(source)
    assert ivms101.from_wire(ivms101.to_wire(doc)) == doc
    assert ivms101.parse(ivms101.to_snake(doc)) == doc


def singles(wire: dict[str, Any]) -> dict[str, Any]:
    """The same message as implementations that send single objects instead of one-element arrays."""
    wire = copy.deepcopy(wire)
    originator = wire["originator"]
    originator["originatorPersons"] = originator["originatorPersons"][0]
    originator["accountNumber"] = originator["accountNumber"][0]
    person = originator["originatorPersons"]["naturalPerson"]
    person["name"]["nameIdentifier"] = person["name"]["nameIdentifier"][0]
    person["geographicAddress"] = person["geographicAddress"][0]
    wire["beneficiary"]["beneficiaryPersons"] = wire["beneficiary"]["beneficiaryPersons"][0]
    vasp = wire["originatingVASP"]["originatingVASP"]["legalPerson"]
    vasp["name"]["nameIdentifier"] = vasp["name"]["nameIdentifier"][0]
    # Some send the VASP's Person without the inner wrapper.
    wire["beneficiaryVASP"] = wire["beneficiaryVASP"]["beneficiaryVASP"]
    return wire


def test_from_wire_accepts_single_objects_where_implementations_differ() -> None:
    doc = ivms101.parse(document())
    wire = ivms101.to_wire(doc)
    assert ivms101.from_wire(singles(wire)) == doc
    # A natural person's name as an array of names, and an address line as a string.
    wire["originator"]["originatorPersons"][0]["naturalPerson"]["name"] = [
        wire["originator"]["originatorPersons"][0]["naturalPerson"]["name"]]
    assert ivms101.from_wire(wire) == doc


def test_from_wire_names_what_is_missing_or_malformed() -> None:
    wire = ivms101.to_wire(ivms101.parse(document()))
    del wire["originator"]["originatorPersons"][0]["naturalPerson"]["geographicAddress"]
    with pytest.raises(InvalidInput) as refused:
        ivms101.from_wire(wire)
    assert "originator.natural_person.geographic_addresses" in {f["field"] for f in refused.value.details["fields"]}

    wire = ivms101.to_wire(ivms101.parse(document()))
    wire["originator"]["originatorPersons"].append(wire["originator"]["originatorPersons"][0])
    with pytest.raises(InvalidInput) as refused:
        ivms101.from_wire(wire)
    assert refused.value.code == "ivms101_malformed"
    assert refused.value.details["fields"][0]["field"] == "originator.originatorPersons"

    with pytest.raises(InvalidInput) as refused:
        ivms101.from_wire({"originator": "nobody"})
    assert refused.value.details["fields"][0]["field"] == "originator"
