"""Amounts at the API edge: decimal strings in major units in, integers in minor units inside.

DESIGN.md ("Money"): the API speaks ``"8000.00"`` and ``"0.5"``, never floats; the database
keeps integers of minor units (cents, wei). ``parse_amount`` is the one door in and
``format_amount`` the one door out, so no float and no ``Decimal`` context ever touches a
balance. Parsing is deliberately strict — a payments API should refuse ``"1e3"``, ``" 5"``,
``"+5"`` or ``"1.005"`` USD rather than guess what the caller meant.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, Strict

from core.errors import InvalidInput

MAX_LENGTH = 80
# Chain amounts are uint256; NUMERIC(78,0) holds them and nothing needs more.
MAX_MINOR = 2**256 - 1

_PLAIN = re.compile(r"([0-9]+)(?:\.([0-9]+))?")
_EXPONENT = re.compile(r"[0-9]*\.?[0-9]*[eE][+-]?[0-9]*")
_SPECIAL = frozenset({"nan", "snan", "qnan", "inf", "infinity"})


class InvalidAmount(InvalidInput):
    code, message = "invalid_amount", "The amount is not a valid decimal string."


def _refuse(reason: str, message: str) -> InvalidAmount:
    return InvalidAmount(message, details={"reason": reason})


def _split(text: Any) -> tuple[str, str]:
    """The integer and fraction digits of a plain decimal string, or the reason it is not one."""
    if not isinstance(text, str):
        raise _refuse("not_a_string", f"An amount is a JSON string such as \"12.50\", not a {type(text).__name__}.")
    if len(text) > MAX_LENGTH:
        raise _refuse("too_long", f"The amount is longer than {MAX_LENGTH} characters.")
    if not text:
        raise _refuse("empty", "The amount is empty.")
    if any(char.isspace() for char in text):
        raise _refuse("whitespace", "The amount must not contain whitespace.")
    if text[0] == "-":
        raise _refuse("negative", "The amount must not be negative.")
    if text[0] == "+":
        raise _refuse("sign", "The amount must not carry a sign.")
    if text.lower() in _SPECIAL:
        raise _refuse("not_a_number", "The amount must be a finite number.")
    if _EXPONENT.fullmatch(text):
        raise _refuse("exponent", "The amount must be written without an exponent.")
    match = _PLAIN.fullmatch(text)
    if match is None:
        raise _refuse("malformed", "The amount must be digits with an optional single dot and digits on both sides "
                                   "(\"12\", \"0.5\", \"8000.00\").")
    return match.group(1), match.group(2) or ""


def parse_amount(text: str, decimals: int, *, allow_zero: bool = False) -> int:
    """``"8000.00"`` with 2 decimals → ``800000`` minor units; raises ``InvalidAmount`` (422)."""
    whole, fraction = _split(text)
    if len(fraction) > decimals:
        raise _refuse("too_many_decimals", f"The amount has {len(fraction)} decimals; this currency allows at most "
                                           f"{decimals}.")
    minor = int(whole + fraction.ljust(decimals, "0"))
    if minor == 0 and not allow_zero:
        raise _refuse("zero", "The amount must be greater than zero.")
    if minor > MAX_MINOR:
        raise _refuse("too_large", "The amount is too large.")
    return minor


def format_amount(minor: int, decimals: int, *, fixed: bool) -> str:
    """Minor units → a decimal string: fiat with exactly its decimals (``fixed``), crypto normalized
    (no exponent, no trailing zeros: ``"0.5"``, ``"1"``, ``"0.000000000000000001"``)."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError(f"minor units are an int, not {type(minor).__name__}")
    sign = "-" if minor < 0 else ""  # only system accounts (the other side of the books) go negative
    digits = str(abs(minor)).rjust(decimals + 1, "0")
    whole, fraction = (digits[:-decimals], digits[-decimals:]) if decimals else (digits, "")
    if not fixed:
        fraction = fraction.rstrip("0")
    return f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}"


def _check_syntax(text: str) -> str:
    try:
        _split(text)
    except InvalidAmount as error:
        raise ValueError(error.message) from None
    return text


# For request models: a JSON string of plain decimal digits. Numbers in JSON (1.5, 100) are refused
# (422) — a float has already lost precision before we could see it. The currency's decimals are
# checked by ``parse_amount`` in the service, which knows the currency.
AmountText = Annotated[
    str,
    Strict(),
    AfterValidator(_check_syntax),
    # The schema shows the shape; the validator gives the reason (a pattern error would not).
    Field(examples=["8000.00", "0.5"], description="A decimal string in major units (never a JSON number).",
          json_schema_extra={"pattern": r"^[0-9]+(\.[0-9]+)?$", "maxLength": MAX_LENGTH}),
]
