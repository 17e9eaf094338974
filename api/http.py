"""Reading requests and writing JSON responses, with every failure a typed error."""

from __future__ import annotations

import json
import uuid
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from core.errors import InvalidInput, MalformedJSON, NotFound, UnsupportedMediaType

M = TypeVar("M", bound=BaseModel)

JSON_TYPES = ("application/json",)


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity by default; they are not JSON and never money.
    raise ValueError(f"{name} is not valid JSON")


def validation_details(error: ValidationError) -> dict[str, Any]:
    return {
        "fields": [
            {"field": ".".join(str(part) for part in item["loc"]) or "body", "message": item["msg"], "type": item["type"]}
            for item in error.errors(include_url=False, include_input=False)
        ]
    }


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidInput(details=validation_details(error)) from None


async def read_body(request: web.Request, model: type[M]) -> M:
    """The JSON body validated as ``model``; an absent body counts as ``{}``."""
    raw = await request.read()  # over client_max_size: aiohttp raises 413, rendered as JSON
    if not raw.strip():
        return validate(model, {})
    if request.content_type not in JSON_TYPES:
        raise UnsupportedMediaType(
            "Send the body as application/json.", details={"content_type": request.content_type}
        )
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as error:
        raise MalformedJSON(details={"reason": str(error)}) from None
    return validate(model, data)


def read_query(request: web.Request, model: type[M]) -> M:
    return validate(model, dict(request.query))


def json_response(payload: BaseModel | dict[str, Any] | None, *, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    if payload is None:
        return web.Response(status=status, headers=headers)
    if isinstance(payload, BaseModel):
        text = payload.model_dump_json()
    else:
        text = json.dumps(payload, separators=(",", ":"))
    return web.Response(text=text, status=status, content_type="application/json", headers=headers)


def path_uuid(request: web.Request, name: str, not_found_code: str = "not_found") -> uuid.UUID:
    """A UUID path parameter; anything else names nothing that exists, so it is a 404."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise NotFound(code=not_found_code) from None
