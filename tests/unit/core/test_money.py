from __future__ import annotations

from decimal import Context, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from core.errors import InvalidInput
from core.money import MAX_MINOR, AmountText, format_amount, parse_amount


@pytest.mark.parametrize(("text", "decimals", "minor"), [
    ("8000.00", 2, 800_000),
    ("8000", 2, 800_000),
    ("0.5", 2, 50),
    ("0.01", 2, 1),
    ("12", 0, 12),
    ("0.5", 18, 5 * 10**17),
    ("1", 18, 10**18),
    ("0.000000000000000001", 18, 1),
    ("250.123456", 6, 250_123_456),
    ("007.50", 2, 750),
    ("115792089237316195423570985008687907853269984665640564039457.584007913129639935", 18, MAX_MINOR),
])
def test_parse_reads_major_units_into_minor_units(text, decimals, minor):
    assert parse_amount(text, decimals) == minor


def test_zero_is_refused_unless_allowed():
    with pytest.raises(InvalidInput) as refused:
        parse_amount("0.00", 2)
    assert refused.value.details == {"reason": "zero"}
    assert parse_amount("0.00", 2, allow_zero=True) == 0
    assert parse_amount("0", 18, allow_zero=True) == 0


@pytest.mark.parametrize(("text", "reason"), [
    ("-5", "negative"),
    ("-0.01", "negative"),
    ("+5", "sign"),
    ("1.001", "too_many_decimals"),
    ("1.000", "too_many_decimals"),  # even trailing zeros: say it as the currency does
    ("1e3", "exponent"),
    ("1E-2", "exponent"),
    ("1.5e2", "exponent"),
    ("NaN", "not_a_number"),
    ("nan", "not_a_number"),
    ("Infinity", "not_a_number"),
    ("inf", "not_a_number"),
    ("-Infinity", "negative"),
    (" 5", "whitespace"),
    ("5 ", "whitespace"),
    ("5\n", "whitespace"),
    ("1 000", "whitespace"),
    ("", "empty"),
    ("1" * 81, "too_long"),
    (".5", "malformed"),
    ("5.", "malformed"),
    ("1.2.3", "malformed"),
    ("1,50", "malformed"),
    ("1_000", "malformed"),
    ("0x10", "malformed"),
    ("abc", "malformed"),
    ("١٢", "malformed"),  # Arabic-Indic digits: not ours
    ("１２", "malformed"),  # full-width digits
    ("1" * 79, "too_large"),
])
def test_parse_refuses_what_is_not_a_plain_positive_decimal(text, reason):
    with pytest.raises(InvalidInput) as refused:
        parse_amount(text, 2)
    assert (refused.value.status, refused.value.code) == (422, "invalid_amount")
    assert refused.value.details == {"reason": reason}
    assert refused.value.message  # a sentence naming the problem


@pytest.mark.parametrize("value", [1.5, 100, None, Decimal("1.5"), b"1.5", ["1"]])
def test_parse_refuses_what_is_not_a_string(value):
    with pytest.raises(InvalidInput) as refused:
        parse_amount(value, 2)  # type: ignore[arg-type]
    assert refused.value.details == {"reason": "not_a_string"}


def test_parse_messages_name_the_problem():
    with pytest.raises(InvalidInput, match="has 3 decimals; this currency allows at most 2"):
        parse_amount("1.001", 2)
    with pytest.raises(InvalidInput, match="exponent"):
        parse_amount("1e3", 2)
    with pytest.raises(InvalidInput, match="negative"):
        parse_amount("-1", 2)


@pytest.mark.parametrize(("minor", "decimals", "fixed", "text"), [
    (800_000, 2, True, "8000.00"),
    (0, 2, True, "0.00"),
    (1, 2, True, "0.01"),
    (50, 2, True, "0.50"),
    (5 * 10**17, 18, False, "0.5"),
    (10**18, 18, False, "1"),
    (1, 18, False, "0.000000000000000001"),
    (0, 18, False, "0"),
    (250_000_000, 6, False, "250"),
    (250_100_000, 6, False, "250.1"),
    (12, 0, True, "12"),
    (12, 0, False, "12"),
    (-150, 2, True, "-1.50"),  # a system account, the other side of the books
    (10**40, 18, False, "10000000000000000000000"),
])
def test_format_writes_fiat_fixed_and_crypto_normalized(minor, decimals, fixed, text):
    assert format_amount(minor, decimals, fixed=fixed) == text


@pytest.mark.parametrize("value", [1.5, Decimal("1"), "1", True])
def test_format_takes_only_integers(value):
    with pytest.raises(TypeError):
        format_amount(value, 2, fixed=True)  # type: ignore[arg-type]


def normalized(text: str) -> str:
    """What a decimal string reads as: no leading zeros, no trailing fractional zeros."""
    whole, _, fraction = text.partition(".")
    whole, fraction = whole.lstrip("0") or "0", fraction.rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


decimals_st = st.integers(min_value=0, max_value=24)
EXACT = Context(prec=200)  # the oracle must not round (the default context keeps 28 digits)


def minor_units(text: str, decimals: int) -> int:
    return int(EXACT.scaleb(Decimal(text), decimals))


@st.composite
def amount_texts(draw):
    decimals = draw(decimals_st)
    whole = draw(st.text(alphabet="0123456789", min_size=1, max_size=40))
    fraction = draw(st.text(alphabet="0123456789", min_size=0, max_size=decimals))
    text = f"{whole}.{fraction}" if fraction else whole
    return text, decimals


@given(amount_texts())
def test_format_of_parse_is_the_normalized_input(case):
    text, decimals = case
    minor = parse_amount(text, decimals, allow_zero=True)
    assert format_amount(minor, decimals, fixed=False) == normalized(text)
    fixed = format_amount(minor, decimals, fixed=True)
    assert normalized(fixed) == normalized(text)
    assert len(fixed.partition(".")[2]) == decimals
    assert minor == minor_units(text, decimals)


@given(st.integers(min_value=0, max_value=MAX_MINOR), decimals_st, st.booleans())
def test_parse_of_format_is_the_same_minor_units(minor, decimals, fixed):
    assert parse_amount(format_amount(minor, decimals, fixed=fixed), decimals, allow_zero=True) == minor


@given(st.text(max_size=30))
def test_parse_either_reads_a_plain_decimal_or_refuses_with_invalid_amount(text):
    try:
        minor = parse_amount(text, 6, allow_zero=True)
    except InvalidInput as refused:
        assert refused.code == "invalid_amount"
    else:
        assert text.isascii() and minor == minor_units(text, 6)


class Payment(BaseModel):
    amount: AmountText


def test_the_request_type_accepts_decimal_strings_only():
    assert Payment.model_validate_json('{"amount": "8000.00"}').amount == "8000.00"
    for body in ('{"amount": 8000.00}', '{"amount": 8000}', '{"amount": "1e3"}', '{"amount": " 1"}',
                 '{"amount": "-1"}', '{"amount": null}', '{"amount": true}'):
        with pytest.raises(ValidationError):
            Payment.model_validate_json(body)
    with pytest.raises(ValidationError, match="exponent"):
        Payment.model_validate({"amount": "1e3"})
    schema = Payment.model_json_schema()["properties"]["amount"]
    assert schema["type"] == "string" and schema["pattern"] == r"^[0-9]+(\.[0-9]+)?$"
