"""One registry of routes: what the router serves and what the OpenAPI document says are the same.

A domain declares its routes on a ``Routes`` table::

    routes = Routes(tag="escrow")

    @routes.post("/escrow", body=CreateEscrow, responses={201: EscrowOut}, access=roles("customer"))
    async def create_escrow(request: web.Request, body: CreateEscrow) -> EscrowOut: ...

The wrapper parses and validates the declared body and query models (415/400/413/422 as JSON),
injects them as ``body=`` and ``query=``, and serializes a returned pydantic model with the
first 2xx status declared. A handler may also return a ``web.StreamResponse`` of its own.

API keys reach a route only through its scope: a table names its domain's scopes
(``Routes(tag="escrow", scopes="escrow")``: GET needs ``escrow:read``, the rest ``escrow:write``), a
route may name another (``scope="withdrawals:read"``) or none (``scope=None``: sessions only).

A GET runs read-only (``read_only``): no transaction, on a connection PostgreSQL keeps read-only,
and once more if that connection turns out dead (api.middleware). A GET whose handler writes says
``read_only=False`` and gets the transaction every other method gets.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from api import signatures
from api.access import Access
from api.http import json_response, read_body, read_path, read_query
from api.idempotency import read_key as read_idempotency_key
from api.idempotency import run_idempotently
from api.keys import ROUTE_SPEC, SESSIONS
from api.middleware import db_session, error_response, retry_read
from api.principal import authorize

Handler = Callable[..., Awaitable[Any]]
ResponseSpec = type[BaseModel] | str | None  # a model (JSON), a media type, or no body

PATH_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")
SAFE_METHODS = frozenset({"GET", "HEAD"})


class Inherit:
    """A route's scope left to its table's default."""


INHERIT = Inherit()


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str
    handler: Handler
    name: str
    summary: str
    description: str
    tag: str
    access: Access
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    responses: dict[int, ResponseSpec]
    idempotent: bool = False
    form: type[BaseModel] | None = None  # documented as multipart/form-data; the handler streams it
    # The route's own refusals by status (``{409: ("invalid_state",)}``); what follows from its
    # access, path, query, body and form is added by the OpenAPI builder (api/openapi.py).
    errors: dict[int, tuple[str, ...]] = field(default_factory=dict)
    scope: str | None = None  # what an API key needs to call it; None: not open to API keys
    # Nothing the handler calls writes: no BEGIN/COMMIT, a connection that refuses writes, and a
    # lost connection retried once (api.middleware). Every GET unless it says otherwise.
    read_only: bool = False

    @property
    def retries_lost_connection(self) -> bool:
        """Run again on a fresh connection when the first turned out dead: a read-only route whose
        JSON answer the registry writes after the handler returned. A handler that streams its own
        answer (a media type, not a model) may already have sent part of it."""
        return self.read_only and not self.idempotent and not isinstance(self.responses.get(self.success_status), str)

    @property
    def path_params(self) -> list[str]:
        return PATH_PARAM.findall(self.path)

    @property
    def success_status(self) -> int:
        return min(status for status in self.responses if 200 <= status < 300)


@dataclass
class Routes:
    """The routes of one domain, mounted on an app (root or the ``/api/v1`` sub-app)."""

    tag: str
    scopes: str | None = None  # the scopes' domain ("escrow" → escrow:read, escrow:write); None: no API keys
    specs: list[RouteSpec] = field(default_factory=list)

    def default_scope(self, method: str) -> str | None:
        if self.scopes is None:
            return None
        return f"{self.scopes}:{'read' if method in SAFE_METHODS else 'write'}"

    def route(
        self,
        method: str,
        path: str,
        *,
        access: Access,
        responses: dict[int, ResponseSpec],
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        summary: str | None = None,
        name: str | None = None,
        idempotent: bool = False,
        form: type[BaseModel] | None = None,
        errors: dict[int, tuple[str, ...]] | None = None,
        scope: str | None | Inherit = INHERIT,
        read_only: bool | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            doc = (handler.__doc__ or "").strip()
            spec = RouteSpec(
                method=method.upper(),
                path=path,
                handler=handler,
                name=name or handler.__name__,
                summary=summary or (doc.splitlines()[0] if doc else handler.__name__.replace("_", " ")),
                description=doc,
                tag=self.tag,
                access=access,
                body=body,
                query=query,
                responses=responses,
                idempotent=idempotent,
                form=form,
                errors=errors or {},
                scope=self.default_scope(method.upper()) if isinstance(scope, Inherit) else scope,
                read_only=method.upper() in SAFE_METHODS if read_only is None else read_only,
            )
            self.specs.append(spec)
            return handler

        return register

    def get(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **options)

    def post(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **options)

    def patch(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **options)

    def mount(self, app: web.Application) -> None:
        for spec in self.specs:
            app.router.add_route(spec.method, spec.path, _endpoint(spec), name=spec.name)


def _endpoint(spec: RouteSpec) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        inputs: dict[str, Any] = {}
        read_path(request)
        if spec.query is not None:
            inputs["query"] = read_query(request, spec.query)
        if spec.body is not None:
            # A route declaring both takes JSON or a multipart form (files): the handler reads the form.
            multipart = spec.form is not None and request.content_type == "multipart/form-data"
            inputs["body"] = None if multipart else await read_body(request, spec.body)
        result = await spec.handler(request, **inputs)
        if isinstance(result, web.StreamResponse):
            return result
        return json_response(result, status=spec.success_status)

    @functools.wraps(spec.handler)
    async def endpoint(request: web.Request) -> web.StreamResponse:
        request[ROUTE_SPEC] = spec
        principal = await authorize(request, spec.access, spec.scope)
        if spec.access.service_signature:
            await signatures.caller(request, spec.access)
        key = read_idempotency_key(request) if spec.idempotent else None
        if spec.retries_lost_connection:
            return await retry_read(request, lambda: handle(request))
        if key is None or principal is None:
            return await handle(request)
        return await run_idempotently(
            request, request.config_dict[SESSIONS], lambda: db_session(request), principal.user_id, key,
            lambda: handle(request),  # type: ignore[arg-type,return-value]
            lambda error: error_response(request, error),
        )

    return endpoint
