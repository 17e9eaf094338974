"""Text PostgreSQL cannot store is refused as input, by one rule for every route.

PostgreSQL refuses NUL in ``text`` and ``jsonb`` and asyncpg cannot encode a lone surrogate, so
either reaching a query is a 500. The walk below sends such a string in every string field of
every route the registry serves (path, query, JSON body, form) and expects 422 naming the field.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel

from api.keys import ROUTE_TABLES
from api.registry import RouteSpec

NUL = "a\x00b"
ALL_ROLES = ("customer", "support", "operator", "compliance", "admin")


def _resolve(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = definitions[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _is_text(schema: dict[str, Any], definitions: dict[str, Any]) -> bool:
    schema = _resolve(schema, definitions)
    if schema.get("type") == "string" and "contentMediaType" not in schema and schema.get("format") != "binary":
        return True
    return any(_is_text(option, definitions) for option in schema.get("anyOf", []))


def _objects(schema: dict[str, Any], definitions: dict[str, Any]) -> Iterator[dict[str, Any]]:
    schema = _resolve(schema, definitions)
    if "properties" in schema:
        yield schema
    for option in schema.get("anyOf", []):
        yield from _objects(option, definitions)


def text_fields(model: type[BaseModel], *, nested: bool) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, a payload with NUL at that path) for each string field, one level of nesting deep."""
    schema = model.model_json_schema()
    definitions = schema.get("$defs", {})

    def walk(schema: dict[str, Any], path: tuple[str, ...], depth: int) -> Iterator[tuple[str, ...]]:
        for obj in _objects(schema, definitions):
            for name, field in obj["properties"].items():
                if _is_text(field, definitions):
                    yield (*path, name)
                elif nested and depth < 2:
                    yield from walk(field, (*path, name), depth + 1)

    for path in dict.fromkeys(walk(schema, (), 0)):
        payload: Any = NUL
        for name in reversed(path):
            payload = {name: payload}
        yield path, payload


def _path(prefix: str, spec: RouteSpec, nul_param: str | None) -> str:
    path = prefix + spec.path
    for name in spec.path_params:
        value = quote(NUL, safe="") if name == nul_param else str(uuid.uuid4())
        path = path.replace("{" + name + "}", value)
    return path


def cases(tables: list[tuple[str, Any]]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(method, url, field named in the answer, request options) for every string of every route."""
    for prefix, routes in tables:
        for spec in routes.specs:
            for name in spec.path_params:
                yield spec.method, _path(prefix, spec, name), name, {}
            url = _path(prefix, spec, None)
            if spec.query is not None:
                for path, _ in text_fields(spec.query, nested=False):
                    yield spec.method, url, path[0], {"params": {path[0]: NUL}}
            if spec.body is not None:
                for path, payload in text_fields(spec.body, nested=True):
                    yield spec.method, url, ".".join(path), {"json": payload}
            if spec.form is not None:
                for path, _ in text_fields(spec.form, nested=False):
                    form = aiohttp.FormData(default_to_multipart=True)
                    form.add_field(path[0], NUL)
                    yield spec.method, url, path[0], {"data": form}


async def test_nul_bytes_are_422(client, login_as):
    user = await login_as(client, *ALL_ROLES)
    tables = client.server.app[ROUTE_TABLES]
    wrong: list[tuple[str, str, str, int, Any]] = []
    count = 0
    for method, url, field, options in cases(tables):
        count += 1
        response = await client.request(method, url, headers=user.headers, **options)
        answer = await response.json() if response.content_type == "application/json" else await response.text()
        named = [item.get("field") for item in answer.get("error", {}).get("details", {}).get("fields", [])] \
            if isinstance(answer, dict) else []
        if response.status != 422 or answer["error"]["code"] != "validation_error" or field not in named:
            wrong.append((method, url, field, response.status, answer))
    assert count > 150  # the walk reached the routes
    assert not wrong, "\n".join(f"{m} {u} [{f}] -> {s} {str(a)[:200]}" for m, u, f, s, a in wrong)


async def test_lone_surrogates_are_422(client, login_as):
    user = await login_as(client, "customer")
    response = await client.post("/api/v1/helpdesk/tickets", headers={**user.headers, "Content-Type": "application/json"},
                                 data=b'{"subject": "\\ud800", "body": "hello", "priority": "normal"}')
    answer = await response.json()
    assert response.status == 422, answer
    assert answer["error"]["code"] == "validation_error"
    assert [item["field"] for item in answer["error"]["details"]["fields"]] == ["subject"]


async def test_nul_in_a_json_key_is_422(client, login_as):
    admin = await login_as(client, "admin")
    response = await client.post("/api/v1/admin/cms/help/nul-key/draft", headers=admin.headers,
                                 json={"title": "T", "body": "B", "locale": "en", "metadata": {"a\x00": 1}})
    answer = await response.json()
    assert response.status == 422, answer
    assert answer["error"]["details"]["fields"][0]["field"].startswith("metadata")
