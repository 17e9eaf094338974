"""A JSON body nested deeper than any request needs is refused before it is parsed.

The API runs as its own process here, as `virtuoz api` runs in production: a stack overflow
below Python kills the process without a traceback, which an in-process server would turn into
a dead test worker instead of a failing assertion.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.http import MAX_JSON_DEPTH
from devnet.processes import ManagedProcess, free_port, port_open

REPO_ROOT = Path(__file__).resolve().parents[3]
START_TIMEOUT = 60.0  # a bound for a hung start, not a performance limit


def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status


@pytest.fixture
def api_process(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[str]:
    """`virtuoz api` on a free loopback port, against this worker's real PostgreSQL and Redis."""
    port = free_port()
    env = {
        **os.environ,
        "VIRTUOZ_ENV": "test", "VIRTUOZ_DATA_DIR": str(tmp_path), "VIRTUOZ_DATABASE_URL": database_url,
        "VIRTUOZ_REDIS_URL": redis_url, "VIRTUOZ_CHAINS": "[]", "VIRTUOZ_LOG_JSON": "false",
        "VIRTUOZ_READINESS": json.dumps({"workers": [], "chains": False}),
    }
    process = ManagedProcess("api", [sys.executable, "-m", "cli", "api", "--host", "127.0.0.1", "--port", str(port)],
                             log_path=tmp_path / "api.log", env=env, cwd=REPO_ROOT)
    process.start()
    try:
        process.wait_until(lambda: port_open(port), timeout=START_TIMEOUT)
        yield f"http://127.0.0.1:{port}"
        assert process.alive(), process.tail()
    finally:
        process.stop(timeout=10)


def test_deep_json_is_400(api_process):
    for body in (b"[" * 100_000, b'{"a":' * 50_000, b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)):
        status, answer = _post(f"{api_process}/api/v1/auth/login", body)
        assert status == 400, answer
        assert answer["error"]["code"] == "malformed_json"
        assert answer["error"]["details"]["max_depth"] == MAX_JSON_DEPTH
    assert _get(f"{api_process}/health") == 200
    # Signed operator payloads are JSON bodies too: the same bound, before any signature check.
    status, answer = _post(f"{api_process}/api/v1/auth/i18n/reload",
                           b'{"payload": {"bundles": ' + b"[" * 100_000 + b"}}")
    assert status == 400 and answer["error"]["code"] == "malformed_json", answer
    assert _get(f"{api_process}/health") == 200


def test_nesting_within_the_bound_is_parsed(api_process):
    inside = b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1)
    status, answer = _post(f"{api_process}/api/v1/auth/login", b'{"email": ' + inside + b"}")
    assert status == 422, answer  # parsed, then refused by the model: not a JSON error
    # Brackets inside strings are text, not nesting.
    status, answer = _post(f"{api_process}/api/v1/auth/login",
                           json.dumps({"email": "[" * 100_000, "password": "x"}).encode())
    assert status in (401, 422), answer
