"""The OpenAPI 3.1 document, built from the route registry and the pydantic models it names.

Pydantic v2 emits JSON Schema 2020-12, which OpenAPI 3.1 uses as is; openapi-pydantic's 3.1
models check the assembled document (LIBRARIES.md: the aiohttp plugins only emit 3.0).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from openapi_pydantic.v3.v3_1 import OpenAPI
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from api.access import SIGNED
from api.registry import ResponseSpec, Routes, RouteSpec
from api.schemas import ErrorResponse

REF_TEMPLATE = "#/components/schemas/{model}"
STATUS_TEXT = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No content", 304: "Not modified", 400: "Malformed request",
    401: "Authentication required", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
    408: "Request body too slow", 409: "Conflict", 413: "Payload too large", 415: "Unsupported media type",
    422: "Invalid input", 429: "Too many requests", 503: "Unavailable",
}
# Swagger UI shows the tags in this order: the way a newcomer meets the platform.
TAGS = [
    ("auth", "Register, log in, tokens and sessions, MFA; signed operator reloads."),
    ("me", "The caller: profile, KYC submission, notifications."),
    ("wallet", "Balances and the movements of available money."),
    ("deposits", "Deposit addresses, the caller's deposits, and deposit events from external watchers."),
    ("withdrawals", "Request, approve, roll back and follow withdrawals."),
    ("escrow", "Escrow contracts, disputes and evidence."),
    ("helpdesk", "Support tickets, replies, internal notes and context links."),
    ("webhooks", "Your endpoints for signed event deliveries, their secrets and their deliveries."),
    ("cms", "Published content, and the CMS workflow and email templates for editors."),
    ("compliance", "KYC review, Travel Rule transfers, reports."),
    ("admin", "Users, audit events, escrow oversight, transaction review, freezes."),
    ("platform", "Previews of platform functions (storage paths, SLA clocks) and content tooling."),
    ("operations", "Health, readiness, status, metrics and this documentation."),
]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def error_codes(spec: RouteSpec) -> dict[int, list[str]]:
    """Every error code the route may answer, by status: what its access, path, query, body and
    form imply (the registry and middleware answer those the same way on every route), and what
    the route declares of its own."""
    found: dict[int, set[str]] = defaultdict(set)
    access = spec.access
    if access == SIGNED:
        found[401] |= {"invalid_signature", "unknown_operator_key", "signed_payload_expired",
                       "signed_payload_not_yet_valid"}
        found[403].add("signed_payload_replayed")
        found[422] |= {"invalid_signed_payload", "signed_payload_lifetime_too_long"}
    elif access.service_signature:
        found[401] |= {"unauthorized", "invalid_token", "session_revoked", "invalid_signature",
                       "signature_not_accepted"}
        found[403] |= {"forbidden", "account_suspended"}
    elif not access.public:
        found[401] |= {"unauthorized", "invalid_token", "session_revoked"}
        found[403].add("account_suspended")
        if access.roles:
            found[403].add("forbidden")
        if spec.method not in SAFE_METHODS:
            found[403].add("csrf_origin_refused")
    if not access.public or access.service_signature:
        # What an API key may be answered, on every route that authenticates (api.principal).
        found[401] |= {"invalid_api_key", "api_key_revoked", "api_key_expired"}
        found[403] |= {"insufficient_scope", "ip_not_allowed"}
        found[429].add("rate_limited")
    if spec.path_params:
        found[404].add("not_found")
        found[422].add("validation_error")  # e.g. text PostgreSQL cannot store
    if spec.query is not None:
        found[422].add("validation_error")
    if spec.body is not None:
        found[400].add("malformed_json")
        found[408].add("request_timeout")
        found[413].add("payload_too_large")
        found[415].add("unsupported_media_type")
        found[422].add("validation_error")
    if spec.form is not None:
        found[408].add("request_timeout")
        found[413].add("payload_too_large")
        found[415].add("unsupported_media_type")
        found[422] |= {"validation_error", "too_many_fields", "form_field_too_long", "nested_form"}
    if spec.idempotent:
        found[409].add("idempotency_in_flight")
        found[422].add("idempotency_key_reused")
    for status, names in spec.errors.items():
        found[status] |= set(names)
    return {status: sorted(names) for status, names in sorted(found.items())}


def _body_required(model: type[BaseModel]) -> bool:
    """An absent body counts as ``{}``: it is required when ``{}`` is not a valid one."""
    return bool(model.model_json_schema().get("required"))


class _ComponentNames(GenerateJsonSchema):
    """A class name shared by two domains becomes ``EscrowResolveIn`` and ``ComplianceResolveIn``.

    pydantic's own fallback, ``api__escrow__schemas__ResolveIn``, makes openapi-python-client drop
    the model and every route that uses it.
    """

    def normalize_name(self, name: str) -> str:
        # pydantic tries the bare class name first and falls back to its dotted path on a clash;
        # only the path (api.<domain>.<module>.<Class>) names the domain to prefix it with.
        # str.capitalize, not str.title: "i18n".title() is "I18N".
        parts = name.split(".")
        if len(parts) > 3 and parts[0] == "api":
            name = "".join(word.capitalize() for word in parts[1].split("_")) + parts[-1]
        return super().normalize_name(name)

    def generate_definitions(self, inputs: Any) -> Any:
        json_schemas, definitions = super().generate_definitions(inputs)
        for name, definition in definitions.items():
            definition["title"] = name  # client generators name the class after the title, not the key
        return json_schemas, definitions


def _models(tables: list[tuple[str, Routes]]) -> list[tuple[type[BaseModel], Any]]:
    found: dict[tuple[type[BaseModel], str], None] = {(ErrorResponse, "serialization"): None}
    for _, routes in tables:
        for spec in routes.specs:
            if spec.body is not None:
                found[(spec.body, "validation")] = None
            if spec.query is not None:
                found[(spec.query, "validation")] = None
            if spec.form is not None:
                found[(spec.form, "validation")] = None
            for response in spec.responses.values():
                if isinstance(response, type):
                    found[(response, "serialization")] = None
    return list(found)


def _content(response: ResponseSpec, refs: dict[Any, Any]) -> dict[str, Any] | None:
    if response is None:
        return None
    if isinstance(response, str):
        return {response: {"schema": {"type": "object" if response.endswith("json") else "string"}}}
    return {"application/json": {"schema": refs[(response, "serialization")]}}


def _operation(spec: RouteSpec, refs: dict[Any, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in spec.path_params
    ]
    if spec.idempotent:
        parameters.append({
            "name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 255},
            "description": "Retry-safe key, scoped to the caller: the same key and body return the stored response.",
        })
    if spec.query is not None:
        ref = refs[(spec.query, "validation")]["$ref"].rsplit("/", 1)[-1]
        schema = definitions[ref]
        required = set(schema.get("required", []))
        for name, property_schema in schema.get("properties", {}).items():
            parameters.append({"name": name, "in": "query", "required": name in required, "schema": property_schema})
    responses: dict[str, Any] = {}
    for status, response in sorted(spec.responses.items()):
        entry: dict[str, Any] = {"description": STATUS_TEXT.get(status, "Response")}
        if (content := _content(response, refs)) is not None:
            entry["content"] = content
        responses[str(status)] = entry
    error = {"application/json": {"schema": refs[(ErrorResponse, "serialization")]}}
    for status, names in error_codes(spec).items():
        if str(status) in responses:  # a route documenting its own body for this status (readiness's 503)
            continue
        responses[str(status)] = {
            "description": f"{STATUS_TEXT.get(status, 'Error')}: " + ", ".join(f"`{name}`" for name in names),
            "content": error, "x-error-codes": names,
        }
    responses["default"] = {
        "description": "Error (every error has this body, with a stable code)",
        "content": {"application/json": {"schema": refs[(ErrorResponse, "serialization")]}},
    }
    operation: dict[str, Any] = {
        "operationId": spec.name,
        "summary": spec.summary,
        "tags": [spec.tag],
        "responses": responses,
        "x-access": spec.access.describe(),
        "x-api-key-scope": spec.scope,
    }
    if spec.description and spec.description != spec.summary:
        operation["description"] = spec.description
    if parameters:
        operation["parameters"] = parameters
    if spec.body is not None:
        operation["requestBody"] = {
            "required": _body_required(spec.body),
            "content": {"application/json": {"schema": refs[(spec.body, "validation")]}},
        }
    if spec.form is not None:
        json_body = operation.get("requestBody", {}).get("content", {})  # a route may take either
        operation["requestBody"] = {
            "required": spec.body is None or _body_required(spec.body),
            "content": {**json_body, "multipart/form-data": {"schema": refs[(spec.form, "validation")]}},
        }
    return operation


def _file_fields(definitions: dict[str, Any]) -> None:
    """pydantic writes ``bytes`` as ``format: binary`` (OpenAPI 3.0); 3.1 says contentMediaType."""
    for schema in definitions.values():
        for field in schema.get("properties", {}).values():
            for value in (field, field.get("items") or {}):  # a repeatable file field is an array
                if value.get("format") == "binary":
                    value.pop("format")
                    value["contentMediaType"] = "application/octet-stream"


def build_openapi(tables: list[tuple[str, Routes]], *, version: str, server_url: str | None = None) -> dict[str, Any]:
    refs, schema = models_json_schema(
        _models(tables), ref_template=REF_TEMPLATE, schema_generator=_ComponentNames)
    definitions: dict[str, Any] = schema.get("$defs", {})
    _file_fields(definitions)
    paths: dict[str, dict[str, Any]] = {}
    for prefix, routes in tables:
        for spec in routes.specs:
            paths.setdefault(prefix + spec.path, {})[spec.method.lower()] = _operation(spec, refs, definitions)
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "VirtuOZ API",
            "version": version,
            "description": "Crypto custody and compliance platform. Amounts are decimal strings; "
            "errors are `{\"error\": {\"code\", \"message\", \"details\", \"request_id\"}}`.",
        },
        "servers": [{"url": server_url or "/"}],
        "tags": [{"name": name, "description": description} for name, description in TAGS],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": definitions,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "vz_<live|test>_<prefix>_<secret>",
                           "description": "A scoped API key (POST /api/v1/api-keys): each operation's "
                                          "`x-api-key-scope` names the scope it needs; null: not open to keys."},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "access_token"},
            },
        },
    }
    # Round-trip through openapi-pydantic's 3.1 models: a malformed document fails here, at start-up.
    return OpenAPI.model_validate(document).model_dump(mode="json", by_alias=True, exclude_unset=True)
