"""IVMS101 (interVASP Messaging Standard 101) in snake_case, one person per side, and its wire form.

The API and the database speak the snake_case models below; the TRP transport speaks IVMS101's
own camelCase JSON through ``to_wire`` and ``from_wire``. Implementations disagree on whether some
elements are one object or an array (persons, ``nameIdentifier``, ``geographicAddress``,
``accountNumber``, ``addressLine``…): ``from_wire`` accepts both, ``to_wire`` always emits arrays,
as the standard's data model has them.

The standard's constraints enforced here (IVMS101 2020, section 7), each reported on the fields it
names so that a 422 says what to fill in:

- C1: a natural-person originator has a geographic address, a national identification, a customer
  identification or a date and place of birth;
- C2: a date of birth is in the past;
- C4: a legal-person originator has a geographic address, a customer number or a national
  identification (an LEI counts);
- C5/C6: every name has a legal name (``LEGL``);
- C8: an address has address lines, or a street name with a building number or name;
- C9: a legal person's national identification other than an LEI names its registration
  authority and no country of issue;
- C11: an LEI is valid (ISO 17442: 20 characters, ISO 7064 mod 97-10 check digits).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.errors import InvalidInput

NameType = Literal["ALIA", "BIRT", "MAID", "LEGL", "MISC"]
LegalNameType = Literal["LEGL", "SHRT", "TRAD"]
AddressType = Literal["HOME", "BIZZ", "GEOG"]
NationalIdType = Literal["ARNU", "CCPT", "RAID", "DRLC", "FIIN", "TXID", "SOCS", "IDCD", "LEIX", "MISC"]
COUNTRY = r"^[A-Z]{2}$"


def _country(required: bool = False) -> Any:
    return Field(default=... if required else None, pattern=COUNTRY, description="ISO 3166-1 alpha-2",
                 examples=["CA"])
REQUIRED = "ivms101_required"

Problem = tuple[tuple[str | int, ...], str]  # (location, message)


# --- cross-field rules reported field by field --------------------------------------------------

def _present(data: dict[str, Any], key: str) -> bool:
    return data.get(key) not in (None, "", [], {})


def _raise(title: str, problems: Iterable[Problem], error: ValidationError | None = None) -> None:
    """One ValidationError with pydantic's own errors and the rule violations, each on its field."""
    lines = [InitErrorDetails(type=PydanticCustomError(item["type"], _literal(item["msg"])), loc=item["loc"],
                              input=item.get("input"))
             for item in (error.errors() if error else [])]
    lines += [InitErrorDetails(type=PydanticCustomError(REQUIRED, _literal(message)), loc=loc, input=None)
              for loc, message in problems]
    raise ValidationError.from_exception_data(title, lines)


def _literal(message: str) -> str:
    return message.replace("{", "{{").replace("}", "}}")


class CheckedModel(BaseModel):
    """A model whose cross-field rules run on the raw input, so that they are reported together
    with missing or malformed fields instead of only after those are fixed."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def _problems(cls, data: dict[str, Any]) -> list[Problem]:
        return []

    @model_validator(mode="wrap")
    @classmethod
    def _rules(cls, data: Any, handler: Callable[[Any], Any]) -> Any:
        problems = cls._problems(data) if isinstance(data, dict) else []
        try:
            model = handler(data)
        except ValidationError as error:
            if not problems:
                raise
            _raise(cls.__name__, problems, error)
        if problems:
            _raise(cls.__name__, problems)
        return model


# --- the snake_case models ----------------------------------------------------------------------

class NameIdentifier(BaseModel):
    model_config = ConfigDict(extra="forbid")

    primary_identifier: str = Field(min_length=1, max_length=100, description="Family name (or the full name).",
                                    examples=["Lovelace"])
    secondary_identifier: str | None = Field(default=None, max_length=100, description="Given names.",
                                             examples=["Ada"])
    name_identifier_type: NameType = Field(default="LEGL", description="LEGL: the legal name (one is required).")


class NaturalPersonName(CheckedModel):
    name_identifiers: list[NameIdentifier] = Field(min_length=1)
    local_name_identifiers: list[NameIdentifier] = Field(default_factory=list)
    phonetic_name_identifiers: list[NameIdentifier] = Field(default_factory=list)

    @classmethod
    def _problems(cls, data: dict[str, Any]) -> list[Problem]:
        names = data.get("name_identifiers")
        if (isinstance(names, list) and names and all(isinstance(name, dict) for name in names)
                and not any(name.get("name_identifier_type", "LEGL") == "LEGL" for name in names)):
            return [(("name_identifiers",), "At least one name identifier must be the legal name (LEGL).")]
        return []


class Address(CheckedModel):
    address_type: AddressType = Field(default="GEOG", description="HOME, BIZZ (business) or GEOG (geographic).")
    department: str | None = Field(default=None, max_length=50)
    sub_department: str | None = Field(default=None, max_length=70)
    street_name: str | None = Field(default=None, min_length=1, max_length=70)
    building_number: str | None = Field(default=None, min_length=1, max_length=16)
    building_name: str | None = Field(default=None, min_length=1, max_length=35)
    floor: str | None = Field(default=None, max_length=70)
    post_box: str | None = Field(default=None, max_length=16)
    room: str | None = Field(default=None, max_length=70)
    post_code: str | None = Field(default=None, max_length=16)
    town_name: str = Field(min_length=1, max_length=35)
    town_location_name: str | None = Field(default=None, max_length=35)
    district_name: str | None = Field(default=None, max_length=35)
    country_sub_division: str | None = Field(default=None, max_length=35)
    address_lines: list[str] = Field(default_factory=list, max_length=7)
    country: str = _country(required=True)

    @field_validator("address_lines")
    @classmethod
    def _lines(cls, lines: list[str]) -> list[str]:
        if any(not line or len(line) > 70 for line in lines):
            raise ValueError("each address line has 1 to 70 characters")
        return lines

    @classmethod
    def _problems(cls, data: dict[str, Any]) -> list[Problem]:
        if _present(data, "address_lines"):
            return []
        problems: list[Problem] = []
        if not _present(data, "street_name"):
            problems.append((("street_name",), "Required unless address_lines are given (IVMS101 C8)."))
        if not (_present(data, "building_number") or _present(data, "building_name")):
            message = "A building_number or building_name is required unless address_lines are given (IVMS101 C8)."
            problems.append((("building_number",), message))
        return problems


class NationalIdentification(BaseModel):
    model_config = ConfigDict(extra="forbid")

    national_identifier: str = Field(min_length=1, max_length=35)
    national_identifier_type: NationalIdType = Field(description="CCPT passport, IDCD identity card, DRLC driving "
                                                                 "licence, TXID tax id, RAID registration id, …")
    country_of_issue: str | None = _country()
    registration_authority: str | None = Field(default=None, pattern=r"^RA[0-9]{6}$",
                                               description="GLEIF Registration Authorities List code.")


class DateAndPlaceOfBirth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date_of_birth: date
    place_of_birth: str = Field(min_length=1, max_length=70)

    @field_validator("date_of_birth")
    @classmethod
    def _past(cls, value: date) -> date:
        if value >= date.today():
            raise ValueError("a date of birth is in the past (IVMS101 C2)")
        return value


class NaturalPerson(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: NaturalPersonName
    geographic_addresses: list[Address] = Field(default_factory=list)
    national_identification: NationalIdentification | None = None
    customer_identification: str | None = Field(default=None, min_length=1, max_length=50,
                                                description="The customer's id at their VASP.")
    date_and_place_of_birth: DateAndPlaceOfBirth | None = None
    country_of_residence: str | None = _country()


class LegalPersonName(BaseModel):
    model_config = ConfigDict(extra="forbid")

    legal_person_name: str = Field(min_length=1, max_length=100)
    legal_person_name_identifier_type: LegalNameType = "TRAD"


def lei_is_valid(lei: str) -> bool:
    """ISO 17442: 18 alphanumerics and 2 check digits, ISO 7064 mod 97-10 over letters as 10..35."""
    if len(lei) != 20 or not lei.isalnum() or not lei.isascii() or not lei[18:].isdigit() or lei != lei.upper():
        return False
    return int("".join(str(int(char, 36)) for char in lei)) % 97 == 1


class LegalPerson(CheckedModel):
    name: str = Field(min_length=1, max_length=100, description="The legal name (LEGL).",
                      examples=["Example Exchange Ltd"])
    lei: str | None = Field(default=None, description="ISO 17442 Legal Entity Identifier.",
                            examples=["5493001KJTIIGC8Y1R12"])
    other_names: list[LegalPersonName] = Field(default_factory=list, description="Short (SHRT) or trading (TRAD) names.")
    geographic_addresses: list[Address] = Field(default_factory=list)
    customer_number: str | None = Field(default=None, min_length=1, max_length=50)
    national_identification: NationalIdentification | None = Field(
        default=None, description="A registration other than the LEI (which goes in `lei`).")
    country_of_registration: str | None = _country()

    @field_validator("lei")
    @classmethod
    def _lei(cls, lei: str | None) -> str | None:
        if lei is not None and not lei_is_valid(lei):
            raise ValueError("not a valid LEI (ISO 17442, IVMS101 C11)")
        return lei

    @classmethod
    def _problems(cls, data: dict[str, Any]) -> list[Problem]:
        national = data.get("national_identification")
        if not isinstance(national, dict):
            return []
        loc = ("national_identification",)
        if national.get("national_identifier_type") == "LEIX":
            return [(loc + ("national_identifier_type",), "Put an LEI in `lei`.")]
        problems: list[Problem] = []
        if not national.get("registration_authority"):
            problems.append((loc + ("registration_authority",),
                             "A legal person's registration names its registration authority (IVMS101 C9)."))
        if national.get("country_of_issue"):
            problems.append((loc + ("country_of_issue",),
                             "A legal person's registration has no country of issue (IVMS101 C9)."))
        return problems


class Party(CheckedModel):
    """The originator or the beneficiary: one natural or legal person and their account numbers."""

    natural_person: NaturalPerson | None = None
    legal_person: LegalPerson | None = None
    account_numbers: list[str] = Field(default_factory=list, max_length=20, description="Account numbers at "
                                       "their VASP, or blockchain addresses.")

    @field_validator("account_numbers")
    @classmethod
    def _accounts(cls, accounts: list[str]) -> list[str]:
        if any(not account or len(account) > 100 for account in accounts):
            raise ValueError("each account number has 1 to 100 characters")
        return accounts

    @classmethod
    def _problems(cls, data: dict[str, Any]) -> list[Problem]:
        natural, legal = data.get("natural_person") is not None, data.get("legal_person") is not None
        if natural == legal:
            message = "Give exactly one of natural_person and legal_person."
            return [(("natural_person",), message), (("legal_person",), message)]
        return []

    @property
    def person(self) -> NaturalPerson | LegalPerson:
        person = self.natural_person or self.legal_person
        assert person is not None
        return person


class Originator(Party):
    @classmethod
    def _problems(cls, data: dict[str, Any]) -> list[Problem]:
        problems = super()._problems(data)
        if problems:
            return problems
        natural, legal = data.get("natural_person"), data.get("legal_person")
        if isinstance(natural, dict):
            alternatives = ("geographic_addresses", "national_identification", "customer_identification",
                            "date_and_place_of_birth")
            side = "natural_person"
            rule = "C1"
            person = natural
        elif isinstance(legal, dict):
            alternatives = ("geographic_addresses", "customer_number", "national_identification", "lei")
            side = "legal_person"
            rule = "C4"
            person = legal
        else:
            return []
        if any(_present(person, key) for key in alternatives):
            return []
        message = (f"The originator needs one of {', '.join(alternatives[:-1])} or {alternatives[-1]} "
                   f"(IVMS101 {rule}).")
        return [((side, key), message) for key in alternatives]


class Beneficiary(Party):
    pass


class Vasp(BaseModel):
    """A VASP, as IVMS101 names it: a legal person (its LEI is optional)."""

    model_config = ConfigDict(extra="forbid")

    legal_person: LegalPerson


class Document(BaseModel):
    """The IVMS101 identity information of one transfer."""

    model_config = ConfigDict(extra="forbid")

    originator: Originator
    beneficiary: Beneficiary
    originating_vasp: Vasp
    beneficiary_vasp: Vasp


def parse(data: Any) -> Document:
    """A snake_case document; 422 ``validation_error`` with ``details.fields`` naming each field."""
    try:
        return Document.model_validate(data)
    except ValidationError as error:
        raise InvalidInput("The IVMS101 data is incomplete or invalid.", details=_fields(error)) from None


def _fields(error: ValidationError) -> dict[str, Any]:
    return {"fields": [{"field": ".".join(str(part) for part in item["loc"]) or "body", "message": item["msg"],
                        "type": item["type"]} for item in error.errors(include_url=False, include_input=False)]}


# --- to the wire (IVMS101 camelCase) -------------------------------------------------------------

def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value not in (None, [], {})}


_ADDRESS_FIELDS = tuple(name for name in Address.model_fields if name != "address_lines")


def _address_to_wire(address: Address) -> dict[str, Any]:
    wire = {_camel(name): getattr(address, name) for name in _ADDRESS_FIELDS}
    wire["addressLine"] = list(address.address_lines)
    return _compact(wire)


def _name_identifier_to_wire(name: NameIdentifier) -> dict[str, Any]:
    return _compact({"primaryIdentifier": name.primary_identifier, "secondaryIdentifier": name.secondary_identifier,
                     "nameIdentifierType": name.name_identifier_type})


def _national_to_wire(national: NationalIdentification | None) -> dict[str, Any] | None:
    if national is None:
        return None
    return _compact({"nationalIdentifier": national.national_identifier,
                     "nationalIdentifierType": national.national_identifier_type,
                     "countryOfIssue": national.country_of_issue,
                     "registrationAuthority": national.registration_authority})


def _natural_to_wire(person: NaturalPerson) -> dict[str, Any]:
    name = _compact({
        "nameIdentifier": [_name_identifier_to_wire(item) for item in person.name.name_identifiers],
        "localNameIdentifier": [_name_identifier_to_wire(item) for item in person.name.local_name_identifiers],
        "phoneticNameIdentifier": [_name_identifier_to_wire(item) for item in person.name.phonetic_name_identifiers],
    })
    birth = person.date_and_place_of_birth
    return _compact({
        "name": name,
        "geographicAddress": [_address_to_wire(address) for address in person.geographic_addresses],
        "nationalIdentification": _national_to_wire(person.national_identification),
        "customerIdentification": person.customer_identification,
        "dateAndPlaceOfBirth": None if birth is None else {"dateOfBirth": birth.date_of_birth.isoformat(),
                                                          "placeOfBirth": birth.place_of_birth},
        "countryOfResidence": person.country_of_residence,
    })


def _legal_to_wire(person: LegalPerson) -> dict[str, Any]:
    names = [{"legalPersonName": person.name, "legalPersonNameIdentifierType": "LEGL"}]
    names += [{"legalPersonName": other.legal_person_name,
               "legalPersonNameIdentifierType": other.legal_person_name_identifier_type} for other in person.other_names]
    national = (_compact({"nationalIdentifier": person.lei, "nationalIdentifierType": "LEIX"}) if person.lei
                else _national_to_wire(person.national_identification))
    return _compact({
        "name": {"nameIdentifier": names},
        "geographicAddress": [_address_to_wire(address) for address in person.geographic_addresses],
        "customerNumber": person.customer_number,
        "nationalIdentification": national,
        "countryOfRegistration": person.country_of_registration,
    })


def _person_to_wire(party: Party) -> dict[str, Any]:
    if party.natural_person is not None:
        return {"naturalPerson": _natural_to_wire(party.natural_person)}
    assert party.legal_person is not None
    return {"legalPerson": _legal_to_wire(party.legal_person)}


def to_wire(document: Document | dict[str, Any]) -> dict[str, Any]:
    """IVMS101's own JSON (camelCase, arrays wherever the data model has them) of a snake_case document."""
    doc = document if isinstance(document, Document) else parse(document)
    return {
        "originator": {"originatorPersons": [_person_to_wire(doc.originator)],
                       "accountNumber": list(doc.originator.account_numbers)},
        "beneficiary": {"beneficiaryPersons": [_person_to_wire(doc.beneficiary)],
                        "accountNumber": list(doc.beneficiary.account_numbers)},
        "originatingVASP": {"originatingVASP": {"legalPerson": _legal_to_wire(doc.originating_vasp.legal_person)}},
        "beneficiaryVASP": {"beneficiaryVASP": {"legalPerson": _legal_to_wire(doc.beneficiary_vasp.legal_person)}},
    }


# --- from the wire -------------------------------------------------------------------------------

class _Malformed(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


def _many(value: Any, path: str) -> list[Any]:
    """One object or an array of them (implementations differ); absent → []."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed(path, "Expected a JSON object.")
    return value


def _one(value: Any, path: str, *, required: bool = True) -> dict[str, Any] | None:
    """Exactly one object, given as an object or an array of one."""
    items = _many(value, path)
    if not items:
        if required:
            raise _Malformed(path, "Required.")
        return None
    if len(items) > 1:
        raise _Malformed(path, "Only one is supported here (one person per side).")
    return _object(items[0], path)


def _snake_keys(value: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """``fields`` maps camelCase keys to snake_case ones; unknown keys are kept as they are, so the
    model's ``extra="forbid"`` names them instead of the data silently disappearing."""
    return {fields.get(key, key): item for key, item in value.items()}


def _address_from_wire(value: Any, path: str) -> dict[str, Any]:
    address = _snake_keys(_object(value, path), {_camel(name): name for name in _ADDRESS_FIELDS})
    if "addressLine" in address:
        address["address_lines"] = _many(address.pop("addressLine"), f"{path}.addressLine")
    return address


def _names_from_wire(value: Any, path: str) -> list[dict[str, Any]]:
    return [_snake_keys(_object(item, path), {"primaryIdentifier": "primary_identifier",
                                              "secondaryIdentifier": "secondary_identifier",
                                              "nameIdentifierType": "name_identifier_type"})
            for item in _many(value, path)]


def _national_from_wire(value: Any, path: str) -> dict[str, Any] | None:
    national = _one(value, path, required=False)
    if national is None:
        return None
    return _snake_keys(national, {"nationalIdentifier": "national_identifier",
                                  "nationalIdentifierType": "national_identifier_type",
                                  "countryOfIssue": "country_of_issue",
                                  "registrationAuthority": "registration_authority"})


def _natural_from_wire(value: Any, path: str) -> dict[str, Any]:
    person = dict(_object(value, path))
    result: dict[str, Any] = {}
    # `name` is one NaturalPersonName in the standard, an array of them in some implementations.
    names = _many(person.pop("name", None), f"{path}.name")
    if names:
        merged: dict[str, list[dict[str, Any]]] = {}
        for index, name in enumerate(names):
            for wire_key, key in (("nameIdentifier", "name_identifiers"), ("localNameIdentifier",
                                  "local_name_identifiers"), ("phoneticNameIdentifier", "phonetic_name_identifiers")):
                name_path = f"{path}.name.{wire_key}"
                merged.setdefault(key, []).extend(_names_from_wire(_object(name, f"{path}.name").get(wire_key),
                                                                   name_path))
        result["name"] = {key: items for key, items in merged.items() if items or key == "name_identifiers"}
    if "geographicAddress" in person:
        result["geographic_addresses"] = [_address_from_wire(item, f"{path}.geographicAddress")
                                          for item in _many(person.pop("geographicAddress"), path)]
    if "nationalIdentification" in person:
        result["national_identification"] = _national_from_wire(person.pop("nationalIdentification"),
                                                                f"{path}.nationalIdentification")
    if "dateAndPlaceOfBirth" in person:
        birth = _one(person.pop("dateAndPlaceOfBirth"), f"{path}.dateAndPlaceOfBirth", required=False)
        if birth is not None:
            result["date_and_place_of_birth"] = _snake_keys(birth, {"dateOfBirth": "date_of_birth",
                                                                    "placeOfBirth": "place_of_birth"})
    result.update(_snake_keys(person, {"customerIdentification": "customer_identification",
                                       "countryOfResidence": "country_of_residence"}))
    return result


def _legal_from_wire(value: Any, path: str) -> dict[str, Any]:
    person = dict(_object(value, path))
    result: dict[str, Any] = {}
    identifiers: list[dict[str, Any]] = []
    for name in _many(person.pop("name", None), f"{path}.name"):
        for item in _many(_object(name, f"{path}.name").get("nameIdentifier"), f"{path}.name.nameIdentifier"):
            item = _object(item, f"{path}.name.nameIdentifier")
            identifiers.append({"legal_person_name": item.get("legalPersonName"),
                                "legal_person_name_identifier_type": item.get("legalPersonNameIdentifierType", "LEGL")})
    legal = next((item for item in identifiers if item["legal_person_name_identifier_type"] == "LEGL"), None)
    if legal is not None:
        result["name"] = legal["legal_person_name"]
        others = [item for item in identifiers if item is not legal]
        if others:
            result["other_names"] = others
    if "geographicAddress" in person:
        result["geographic_addresses"] = [_address_from_wire(item, f"{path}.geographicAddress")
                                          for item in _many(person.pop("geographicAddress"), path)]
    if "nationalIdentification" in person:
        national = _national_from_wire(person.pop("nationalIdentification"), f"{path}.nationalIdentification")
        if national is not None and national.get("national_identifier_type") == "LEIX":
            result["lei"] = national.get("national_identifier")
        elif national is not None:
            result["national_identification"] = national
    result.update(_snake_keys(person, {"customerNumber": "customer_number",
                                       "countryOfRegistration": "country_of_registration"}))
    return result


def _party_from_wire(value: Any, path: str, persons_key: str) -> dict[str, Any]:
    party = _object(value, path)
    person = _one(party.get(persons_key), f"{path}.{persons_key}")
    assert person is not None
    result: dict[str, Any] = {}
    person_path = f"{path}.{persons_key}"
    if "naturalPerson" in person:
        result["natural_person"] = _natural_from_wire(person["naturalPerson"], f"{person_path}.naturalPerson")
    if "legalPerson" in person:
        result["legal_person"] = _legal_from_wire(person["legalPerson"], f"{person_path}.legalPerson")
    accounts = _many(party.get("accountNumber"), f"{path}.accountNumber")
    if any(not isinstance(account, str) for account in accounts):
        raise _Malformed(f"{path}.accountNumber", "Account numbers are strings.")
    result["account_numbers"] = accounts
    return result


def _vasp_from_wire(value: Any, path: str, inner_key: str) -> dict[str, Any]:
    vasp = _object(value, path)
    # {"originatingVASP": {"originatingVASP": Person}} in the standard; some send the Person directly.
    if inner_key in vasp:
        path = f"{path}.{inner_key}"
        vasp = _one(vasp[inner_key], path) or {}
    if "legalPerson" not in vasp:
        raise _Malformed(f"{path}.legalPerson", "A VASP is a legal person.")
    return {"legal_person": _legal_from_wire(vasp["legalPerson"], f"{path}.legalPerson")}


def from_wire(payload: dict[str, Any]) -> Document:
    """The snake_case document of an IVMS101 message (camelCase), accepting either a single object
    or an array where implementations differ. A malformed or incomplete message is a 422
    (``ivms101_malformed`` naming the wire path, or ``validation_error`` naming snake_case fields)."""
    try:
        data = _object(payload, "IVMS101")
        snake = {
            "originator": _party_from_wire(data.get("originator"), "originator", "originatorPersons"),
            "beneficiary": _party_from_wire(data.get("beneficiary"), "beneficiary", "beneficiaryPersons"),
            "originating_vasp": _vasp_from_wire(data.get("originatingVASP"), "originatingVASP", "originatingVASP"),
            "beneficiary_vasp": _vasp_from_wire(data.get("beneficiaryVASP"), "beneficiaryVASP", "beneficiaryVASP"),
        }
    except _Malformed as error:
        raise InvalidInput(f"Malformed IVMS101 at {error.path}: {error.message}", code="ivms101_malformed",
                           details={"fields": [{"field": error.path, "message": error.message,
                                                "type": "ivms101_malformed"}]}) from None
    return parse(snake)


def to_snake(document: Document) -> dict[str, Any]:
    """The JSON-ready snake_case dict of a document (what the database keeps): unset fields left out."""
    return document.model_dump(mode="json", exclude_none=True)
