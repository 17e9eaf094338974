"""A real webhook receiver on 127.0.0.1 for the integration and e2e tests: an aiohttp server that
records every request as it came (headers, raw body) and answers from a script.

Each request takes the first ``Reply`` of the script meant for its event type (any type when the
reply names none; 200 when none is left). A reply may hold the request open (``hold=True``) until the
test calls ``release()``: the window a crash test needs.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from devnet.processes import free_port
from notifications.webhooks.signing import verify


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False  # answer only once released (or when the server stops)
    event_type: str | None = None  # only for a request about an event of this type


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived

    @property
    def event_id(self) -> str:
        return self.headers["VirtuOZ-Event-Id"]

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.body)

    def verifies(self, secret: str, *, now: int | None = None) -> bool:
        """What an integrator's receiver does (README, "Webhooks"): the signature over the raw body."""
        return verify(secret, self.headers["VirtuOZ-Signature"], self.body,
                      now=int(time.time()) if now is None else now)


class Receiver:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.script: list[Reply] = []
        self.requests: list[Received] = []
        self.holding = asyncio.Event()  # set while a held request waits
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, *replies: Reply) -> None:
        self.script.extend(replies)

    def release(self) -> None:
        self._release.set()

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Received(request.path_qs, dict(request.headers), body, time.monotonic()))
        reply = self._next_reply(body)
        if reply.hold:
            self.holding.set()
            await self._release.wait()
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers)

    def _next_reply(self, body: bytes) -> Reply:
        try:
            event_type = json.loads(body).get("type")
        except (ValueError, AttributeError):
            event_type = None
        for index, reply in enumerate(self.script):
            if reply.event_type in (None, event_type):
                return self.script.pop(index)
        return Reply()

    def of_event(self, event_id: str) -> list[Received]:
        return [request for request in self.requests if request.headers.get("VirtuOZ-Event-Id") == event_id]
