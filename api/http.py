"""Reading requests and writing JSON responses, with every failure a typed error."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing
from itertools import islice
from typing import Any, TypeVar
from urllib.parse import quote

import orjson
from aiohttp import BodyPartReader, web
from pydantic import BaseModel, ValidationError

from api.keys import FILE_STORE, SETTINGS
from core.errors import (
    InvalidInput,
    MalformedJSON,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from core.json_input import MAX_DEPTH as MAX_JSON_DEPTH
from core.json_input import TooDeep
from core.json_input import loads as loads_json
from core.storage import IncomingFile

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

JSON_TYPES = ("application/json",)


def validation_details(error: ValidationError) -> dict[str, Any]:
    return {
        "fields": [
            {"field": ".".join(str(part) for part in item["loc"]) or "body", "message": item["msg"], "type": item["type"]}
            for item in error.errors(include_url=False, include_input=False)
        ]
    }


MAX_TEXT_PROBLEMS = 20  # a body full of NULs gets a bounded answer


def _label(text: str) -> str:
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")


def _unstorable(value: Any, path: str) -> Iterator[dict[str, str]]:
    if isinstance(value, str):
        if "\x00" in value:
            yield {"field": path or "body", "message": "NUL characters (\\u0000) are not allowed in text.",
                   "type": "string_nul"}
        elif not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                yield {"field": path or "body", "message": "The text is not valid Unicode (a lone surrogate).",
                       "type": "string_unicode"}
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{_label(str(key))}" if path else _label(str(key))
            yield from _unstorable(key, child)  # keys are stored too (jsonb)
            yield from _unstorable(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unstorable(item, f"{path}.{index}" if path else str(index))


def check_text(data: Any) -> None:
    """Refuse (422 naming each field) strings PostgreSQL cannot store: a NUL, which ``text`` and
    ``jsonb`` refuse, or a lone surrogate, which has no UTF-8 form. Every input a route reads passes
    here (path, query, body, form fields), so no route can let one reach a query and fail with a 500."""
    problems = list(islice(_unstorable(data, ""), MAX_TEXT_PROBLEMS))
    if problems:
        raise InvalidInput(details={"fields": problems})


def validate(model: type[M], data: Any) -> M:
    check_text(data)
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
    return validate(model, parse_json(raw))


def parse_json(raw: str | bytes) -> Any:
    """Untrusted JSON (a body, a form field holding JSON), nested at most ``MAX_JSON_DEPTH`` deep."""
    try:
        return loads_json(raw, max_depth=MAX_JSON_DEPTH)
    except TooDeep as error:
        raise MalformedJSON(f"The JSON is nested deeper than {error.max_depth} levels.",
                            details={"reason": str(error), "max_depth": error.max_depth}) from None
    except ValueError as error:  # UnicodeDecodeError included
        raise MalformedJSON(details={"reason": str(error)}) from None


def read_query(request: web.Request, model: type[M]) -> M:
    return validate(model, dict(request.query))


def read_path(request: web.Request) -> None:
    """The path parameters are text a handler may look up too (slugs, kinds, ids)."""
    check_text(dict(request.match_info))


def json_bytes(payload: BaseModel | dict[str, Any]) -> bytes:
    """The JSON body of a response, byte for byte what ``model_dump_json`` / ``json.dumps`` wrote.

    A model goes through pydantic's own (Rust) serializer straight to bytes: its decimal strings,
    RFC 3339 times with ``Z`` and UUIDs exactly as ``model_dump_json`` writes them, without a str in
    between. A dict goes through orjson, compact as ``json.dumps(separators=(",", ":"))``, and through
    ``json.dumps`` itself where the two would differ: what orjson refuses (an int past 64 bits, a
    key that is not a string) and text ``json.dumps`` escapes (``ensure_ascii``: anything past
    ASCII, and DEL). Floats below 1e-4, which no payload carries, would be written in another
    notation of the same number.
    """
    if isinstance(payload, BaseModel):
        return payload.__pydantic_serializer__.to_json(payload)
    try:
        encoded = orjson.dumps(payload)
    except TypeError:
        encoded = b"\x7f"
    if encoded.isascii() and b"\x7f" not in encoded:
        return encoded
    return json.dumps(payload, separators=(",", ":")).encode()


def json_response(payload: BaseModel | dict[str, Any] | None, *, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    if payload is None:
        return web.Response(status=status, headers=headers)
    return web.Response(body=json_bytes(payload), status=status, content_type="application/json", charset="utf-8",
                        headers=headers)


def path_uuid(request: web.Request, name: str, not_found_code: str = "not_found") -> uuid.UUID:
    """A UUID path parameter; anything else names nothing that exists, so it is a 404."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise NotFound(code=not_found_code) from None


FORM_OVERHEAD = 64 * 1024  # boundaries, headers and small fields around the file
FORM_FIELD_LIMIT = 4096


class _Form:
    """A multipart form read part by part, within ``form_max_fields`` parts and ``max_bytes`` in all.

    The Content-Length, when there is one, is checked before reading; a chunked body has none, so
    the parts are counted and their bytes added up as they stream in.
    """

    def __init__(self, request: web.Request, max_bytes: int) -> None:
        if request.content_length is not None and request.content_length > max_bytes:
            raise PayloadTooLarge(details={"max_form_bytes": max_bytes})
        self.request, self.max_bytes, self.received = request, max_bytes, 0
        self.max_parts = request.config_dict[SETTINGS].form_max_fields

    async def parts(self) -> AsyncIterator[BodyPartReader]:
        count = 0
        async for part in await self.request.multipart():
            count += 1
            if count > self.max_parts:
                raise InvalidInput(f"A form has at most {self.max_parts} parts.", code="too_many_fields",
                                   details={"max_fields": self.max_parts})
            if not isinstance(part, BodyPartReader):
                raise InvalidInput("Nested multipart forms are not accepted.", code="nested_form")
            yield part

    def _count(self, chunk: bytes) -> bytes:
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise PayloadTooLarge(details={"max_form_bytes": self.max_bytes})
        return chunk

    async def chunks(self, part: BodyPartReader) -> AsyncIterator[bytes]:
        while chunk := await part.read_chunk(64 * 1024):
            yield self._count(chunk)

    async def small_field(self, part: BodyPartReader) -> str:
        data = b""
        while chunk := await part.read_chunk(1024):
            data += self._count(chunk)
            if len(data) > FORM_FIELD_LIMIT:
                raise InvalidInput(f"The form field {part.name!r} is too long.", code="form_field_too_long")
        text = data.decode("utf-8", errors="replace")
        check_text({part.name: text})
        return text


async def multipart_file(request: web.Request, store: Callable[[IncomingFile, dict[str, str]], Awaitable[T]], *,
                         max_bytes: int) -> tuple[T, dict[str, str]]:
    """Stream the form's ``file`` part into ``store`` (never reading it whole into memory).

    ``store`` gets the small fields sent before the file; the result comes back with every small
    field of the form. Exactly one ``file`` part is required.
    """
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaType("Send the file as multipart/form-data.", details={"content_type": request.content_type})
    form = _Form(request, max_bytes + FORM_OVERHEAD)
    fields: dict[str, str] = {}
    stored: list[T] = []
    async for part in form.parts():
        if part.name == "file" and part.filename is not None:
            if stored:
                raise InvalidInput("Send one file per request.", code="one_file_only")
            upload = IncomingFile(part.filename, part.headers.get("Content-Type"), form.chunks(part))
            stored.append(await store(upload, dict(fields)))
        elif part.name:
            fields[part.name] = await form.small_field(part)
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
    form = _Form(request, max_files * max_bytes + FORM_OVERHEAD)
    fields: dict[str, str] = {}
    stored: list[T] = []
    async for part in form.parts():
        if part.filename is not None:
            if part.name != field:
                raise InvalidInput(f"Files go in the form field {field!r}.", code="unexpected_file",
                                   details={"field": part.name})
            if len(stored) >= max_files:
                raise InvalidInput(f"At most {max_files} files per request.", code="too_many_files",
                                   details={"max_files": max_files})
            stored.append(await store(IncomingFile(part.filename, part.headers.get("Content-Type"), form.chunks(part))))
        elif part.name:
            fields[part.name] = await form.small_field(part)
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
    return await streamed(request, response, request.config_dict[FILE_STORE].read(str(file_id)))


async def streamed(request: web.Request, response: web.StreamResponse,
                   chunks: AsyncIterator[bytes]) -> web.StreamResponse:
    """Send ``chunks`` (a file store's ``read``) as ``response``'s body. The first chunk is read before
    the status goes out, so a file the store cannot give (an S3 error) is an error body, not a 200 cut
    short; the read is closed however the response ends (a client that goes away included)."""
    async with aclosing(chunks) as reading:  # type: ignore[type-var]
        first = await anext(reading, b"")
        await response.prepare(request)
        if first:
            await response.write(first)
        async for chunk in reading:
            await response.write(chunk)
    await response.write_eof()
    return response
