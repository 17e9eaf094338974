from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from core.db import Money
from core.logging import configure_logging, request_id_var
from core.time import rfc3339


def test_money_binds_only_integers():
    money = Money()
    assert money.process_bind_param(2**256 - 1, None) == 2**256 - 1
    for wrong in (1.5, Decimal("1.5"), "100"):
        with pytest.raises(TypeError):
            money.process_bind_param(wrong, None)


def test_money_reads_back_as_int():
    assert Money().process_result_value(Decimal("115792089237316195423570985008687907853269984665640564039457584007913129639935"), None) == 2**256 - 1


def test_rfc3339_is_utc_with_z():
    assert rfc3339(datetime(2026, 11, 26, 14, 0, tzinfo=UTC)) == "2026-11-26T14:00:00Z"
    assert rfc3339(datetime(2026, 11, 26, 15, 0, tzinfo=timezone(timedelta(hours=1)))) == "2026-11-26T14:00:00Z"
    with pytest.raises(ValueError):
        rfc3339(datetime(2026, 11, 26))


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging puts one handler on the root logger, writing to this test's captured stderr:
    the old handlers go back after, or every later log line of this pytest worker hits a closed file."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_logs_carry_the_request_id(capsys, root_logging):
    configure_logging("INFO", json=True, process="api")
    token = request_id_var.set("req-42")
    try:
        logging.getLogger("virtuoz.test").info("funded", extra={"escrow_id": "e1"})
    finally:
        request_id_var.reset(token)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["message"] == "funded" and line["request_id"] == "req-42"
    assert line["level"] == "INFO" and line["process"] == "api" and line["escrow_id"] == "e1"
