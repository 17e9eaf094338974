"""Reading requests and writing JSON responses, with every failure a typed error."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from api.keys import FILE_STORE
from core.errors import InvalidInput, MalformedJSON, NotFound, PayloadTooLarge, UnsupportedMediaType
from core.storage import IncomingFile

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

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


FORM_OVERHEAD = 64 * 1024  # boundaries, headers and small fields around the file
FORM_FIELD_LIMIT = 4096


async def _part_chunks(part: Any) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(64 * 1024):
        yield chunk


async def _small_field(part: Any) -> str:
    data = b""
    while chunk := await part.read_chunk(1024):
        data += chunk
        if len(data) > FORM_FIELD_LIMIT:
            raise InvalidInput(f"The form field {part.name!r} is too long.", code="form_field_too_long")
    return data.decode("utf-8", errors="replace")


async def multipart_file(request: web.Request, store: Callable[[IncomingFile, dict[str, str]], Awaitable[T]], *,
                         max_bytes: int) -> tuple[T, dict[str, str]]:
    """Stream the form's ``file`` part into ``store`` (never reading it whole into memory).

    ``store`` gets the small fields sent before the file; the result comes back with every small
    field of the form. Exactly one ``file`` part is required.
    """
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaType("Send the file as multipart/form-data.", details={"content_type": request.content_type})
    if request.content_length is not None and request.content_length > max_bytes + FORM_OVERHEAD:
        raise PayloadTooLarge(details={"max_bytes": max_bytes})
    fields: dict[str, str] = {}
    stored: list[T] = []
    async for part in await request.multipart():
        if part.name == "file" and part.filename is not None:
            if stored:
                raise InvalidInput("Send one file per request.", code="one_file_only")
            upload = IncomingFile(part.filename, part.headers.get("Content-Type"), _part_chunks(part))
            stored.append(await store(upload, dict(fields)))
        elif part.name:
            fields[part.name] = await _small_field(part)
    if not stored:
        raise InvalidInput("The form has no `file` part.", code="file_required")
    return stored[0], fields


async def multipart_files(request: web.Request, store: Callable[[IncomingFile], Awaitable[T]], *, field: str,
                          max_bytes: int, max_files: int) -> tuple[list[T], dict[str, str]]:
    """Stream every ``field`` file part of the form into ``store``, one after the other (none read
    whole into memory), and return what was stored with the form's small fields.

    Zero files is allowed; more than ``max_files`` is refused (422 ``too_many_files``) as soon as
    one more arrives, and so is a file under any other field name (422 ``unexpected_file``).
    """
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaType("Send the form as multipart/form-data.", details={"content_type": request.content_type})
    if request.content_length is not None and request.content_length > max_files * max_bytes + FORM_OVERHEAD:
        raise PayloadTooLarge(details={"max_bytes": max_bytes, "max_files": max_files})
    fields: dict[str, str] = {}
    stored: list[T] = []
    async for part in await request.multipart():
        if part.filename is not None:
            if part.name != field:
                raise InvalidInput(f"Files go in the form field {field!r}.", code="unexpected_file",
                                   details={"field": part.name})
            if len(stored) >= max_files:
                raise InvalidInput(f"At most {max_files} files per request.", code="too_many_files",
                                   details={"max_files": max_files})
            stored.append(await store(IncomingFile(part.filename, part.headers.get("Content-Type"), _part_chunks(part))))
        elif part.name:
            fields[part.name] = await _small_field(part)
    return stored, fields


async def stored_file(request: web.Request, file_id: uuid.UUID, *, filename: str, content_type: str, size: int,
                      headers: dict[str, str] | None = None) -> web.StreamResponse:
    """The exact bytes of an uploaded file from the file store, streamed as an attachment with its
    sniffed type, and never rendered by the browser (no sniffing, a sandboxing CSP)."""
    response = web.StreamResponse(headers={
        "Content-Type": content_type,
        "Content-Disposition": f"attachment; filename=\"{file_id}\"; filename*=UTF-8''{quote(filename, safe='')}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Content-Length": str(size),
        **(headers or {}),
    })
    await response.prepare(request)
    async for chunk in request.config_dict[FILE_STORE].read(str(file_id)):
        await response.write(chunk)
    await response.write_eof()
    return response
