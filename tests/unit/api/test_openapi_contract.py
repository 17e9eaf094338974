"""The OpenAPI document is the whole contract: every operation lists the errors it may answer, by
status and code; a body the route needs is marked required; Swagger UI reads in a newcomer's order."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from api.app import create_app
from api.keys import OPENAPI
from core.settings import Settings

HTTP_METHODS = {"get", "post", "patch", "put", "delete"}
ROOT = Path(__file__).parents[3]
# Where errors are raised: every package the API's handlers reach.
RAISING_PACKAGES = ("api", "core", "identity", "content", "custody", "compliance", "support", "notifications", "jobs")


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings(env="test", data_dir=tmp_path_factory.mktemp("data"), chains=[],
                        readiness={"workers": [], "chains": False})
    return create_app(settings)[OPENAPI]


def operations(document: dict[str, Any]):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def codes(operation: dict[str, Any], status: int) -> list[str]:
    return operation["responses"][str(status)]["x-error-codes"]


def test_the_document_is_valid_3_1(document):
    validate(document)


def test_every_operation_documents_its_4xx_answers_by_status(document):
    missing: list[str] = []
    for path, method, operation in operations(document):
        responses = operation["responses"]
        statuses = {int(status) for status in responses if status.isdigit()}
        expected: set[int] = set()
        access = operation["x-access"]
        if access != "public" and not access.startswith(("IP allowlist", "Ed25519")):
            expected |= {401}
        if access.startswith("roles:"):
            expected |= {403}
        if "{" in path:
            expected |= {404, 422}
        if "requestBody" in operation:
            expected |= {413, 415, 422}
            if "application/json" in operation["requestBody"]["content"]:
                expected |= {400}
        if any(parameter["in"] == "query" for parameter in operation.get("parameters", [])):
            expected |= {422}
        if not expected <= statuses:
            missing.append(f"{method.upper()} {path}: {sorted(expected - statuses)}")
        for status in statuses:
            if 400 <= status < 500:
                answer = responses[str(status)]
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, status)
                assert answer["x-error-codes"], (path, status)
                assert all(code in answer["description"] for code in answer["x-error-codes"]), (path, status)
    assert not missing, "\n".join(missing)


def test_the_codes_each_status_may_carry(document):
    login = document["paths"]["/api/v1/auth/login"]["post"]
    assert "too_many_attempts" in codes(login, 429)
    assert "malformed_json" in codes(login, 400) and "validation_error" in codes(login, 422)
    me = document["paths"]["/api/v1/me"]["get"]
    assert {"unauthorized", "session_revoked"} <= set(codes(me, 401))
    users = document["paths"]["/api/v1/admin/users"]["get"]
    assert "forbidden" in codes(users, 403)
    ingest = document["paths"]["/api/v1/platform/crypto/scanner/ingest"]["post"]
    assert "invalid_signature" in codes(ingest, 401)
    fund = document["paths"]["/api/v1/escrow/{escrow_id}/fund"]["post"]
    assert "idempotency_in_flight" in codes(fund, 409) and "idempotency_key_reused" in codes(fund, 422)
    assert "invalid_state" in codes(fund, 409) and "escrow_not_found" in codes(fund, 404)
    evidence = document["paths"]["/api/v1/escrow/{escrow_id}/dispute/evidence"]["post"]
    assert {"too_many_fields", "validation_error"} <= set(codes(evidence, 422))
    assert "payload_too_large" in codes(evidence, 413) and "unsupported_media_type" in codes(evidence, 415)


def raised_codes() -> set[str]:
    """Every error code written where an error is made: a ``code`` class attribute (alone or in a
    tuple assignment), a ``code=`` argument, or the not-found code given to ``path_uuid``. A route's
    ``errors=`` declaration is none of these, so it cannot vouch for itself."""
    found: set[str] = set()

    def constant(node: ast.AST) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)

    for package in RAISING_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.keyword) and node.arg in ("code", "not_found_code"):
                    constant(node.value)
                elif isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Name) and target.id == "code":
                            constant(node.value)
                        elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                            for name, value in zip(target.elts, node.value.elts, strict=False):
                                if isinstance(name, ast.Name) and name.id == "code":
                                    constant(value)
                elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "path_uuid"
                      and len(node.args) >= 3):
                    constant(node.args[2])
    return found


def test_every_documented_code_is_raised_somewhere(document):
    """No invented or misspelled code: each one the document lists is made by some error in the code."""
    raised = raised_codes()
    unknown = sorted({f"{method.upper()} {path} {status}: {code}"
                      for path, method, operation in operations(document)
                      for status, answer in operation["responses"].items()
                      for code in answer.get("x-error-codes", []) if code not in raised})
    assert not unknown, "\n".join(unknown)


def test_every_operation_naming_an_object_id_documents_404(document):
    missing = [f"{method.upper()} {path}" for path, method, operation in operations(document)
               if "_id}" in path and not codes(operation, 404)]
    assert not missing, missing


def test_a_request_body_is_required_exactly_when_an_empty_one_is_invalid(document):
    schemas = document["components"]["schemas"]
    wrong: list[str] = []
    for path, method, operation in operations(document):
        body = operation.get("requestBody")
        if body is None:
            continue
        json_body = body["content"].get("application/json")
        if json_body is None:  # a form only: its file or fields are the request
            expected = True
        else:
            schema = schemas[json_body["schema"]["$ref"].rsplit("/", 1)[-1]]
            expected = bool(schema.get("required"))
        if body["required"] is not expected:
            wrong.append(f"{method.upper()} {path}: required={body['required']}")
    assert not wrong, wrong


def test_a_required_request_body_is_marked_required(document):
    login = document["paths"]["/api/v1/auth/login"]["post"]
    assert login["requestBody"]["required"] is True
    fund = document["paths"]["/api/v1/escrow/{escrow_id}/fund"]["post"]  # Empty: nothing to send
    assert fund["requestBody"]["required"] is False
    kyc = document["paths"]["/api/v1/me/kyc"]["post"]  # JSON or a form, one of them required
    assert kyc["requestBody"]["required"] is True


def test_swagger_tags_in_a_newcomers_order(document):
    order = [tag["name"] for tag in document["tags"]]
    assert order == ["auth", "me", "wallet", "deposits", "withdrawals", "escrow", "helpdesk", "webhooks", "cms",
                     "compliance", "admin", "platform", "operations"]
    used = {tag for _, _, operation in operations(document) for tag in operation["tags"]}
    assert used <= set(order), used - set(order)
    assert all(tag.get("description") for tag in document["tags"])
