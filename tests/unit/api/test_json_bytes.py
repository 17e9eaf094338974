"""Responses leave through orjson (dicts) and pydantic's serializer (models), byte for byte what
``json.dumps`` and ``model_dump_json`` wrote before."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from api.app import create_app
from api.http import json_bytes, json_response
from api.keys import OPENAPI
from api.wallet.schemas import BalanceOut, BalancesOut
from core.settings import Settings


def dumped(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


# Floats below 1e-4 in magnitude are written in another notation of the same number (json_bytes).
floats = st.floats(allow_nan=False, allow_infinity=False).filter(lambda value: value == 0 or abs(value) >= 1e-4)
scalars = st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80) | floats | st.text()
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                      max_leaves=20)


@given(st.dictionaries(st.text(), values, max_size=6))
def test_a_dict_is_written_as_json_dumps_wrote_it(payload):
    assert json_bytes(payload) == dumped(payload)


def test_the_texts_orjson_writes_otherwise_are_still_json_dumps():
    for payload in ({"message": "Le délai — 5 €…"}, {"del": "\x7f"}, {"control": "\x00\x1f\n\t\"\\"},
                    {"wei": 2**200}, {"negative": -(2**64)}, {1: "an int key"}, {"line": "\u2028"}):
        assert json_bytes(payload) == dumped(payload), payload


def test_the_error_body_is_unchanged():
    body = {"error": {"code": "insufficient_funds", "message": "Not enough available.",
                      "details": {"available": "10.00", "required": "8000.00"}, "request_id": str(uuid.uuid4())}}
    response = json_response(body, status=409)
    assert response.body == dumped(body)
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"


def test_the_openapi_document_is_unchanged(tmp_path):
    settings = Settings(env="test", data_dir=tmp_path, chains=[], readiness={"workers": [], "chains": False})
    document = create_app(settings)[OPENAPI]
    assert json_bytes(document) == dumped(document)


class Times(BaseModel):
    at: datetime
    maybe: datetime | None
    amount: Decimal
    id: uuid.UUID
    note: str


def test_a_model_is_written_as_model_dump_json_wrote_it():
    vienna = timezone(timedelta(hours=1))
    for at in (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2026, 1, 2, 3, 4, 5, 678900, tzinfo=UTC),
               datetime(2026, 1, 2, 3, 4, 5, tzinfo=vienna)):
        model = Times(at=at, maybe=None, amount=Decimal("8000.00"), id=uuid.uuid4(), note="Übergabe — ok")
        assert json_bytes(model) == model.model_dump_json().encode()
    assert b'"at":"2026-01-02T03:04:05Z"' in json_bytes(
        Times(at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), maybe=None, amount=Decimal(1), id=uuid.uuid4(), note=""))


def test_balances_keep_their_decimal_strings():
    model = BalancesOut(balances=[BalanceOut(currency="USD", available="8000.00", held="0.00", total="8000.00")])
    response = json_response(model)
    assert response.body == model.model_dump_json().encode()
    assert json.loads(response.body) == {"balances": [{"currency": "USD", "available": "8000.00", "held": "0.00",
                                                       "total": "8000.00"}]}
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
