"""Who is calling a route open to staff or to a service that signs its body (``roles_or_service_signature``).

A service signs the raw request body with the shared secret ``VIRTUOZ_INGEST_HMAC_SECRET``:
``X-Signature: sha256=<hex HMAC-SHA256 of the body>``. A replayed body does nothing new: what it
reaches is idempotent (the same event is the same deposit) and verified against the chain.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from aiohttp import web

from api.access import Access
from api.client_ip import client_ip
from api.keys import CALLER, ROUTE_SPEC, SETTINGS
from api.principal import authorize
from core.errors import Unauthorized

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Signature"
SERVICE_ACTOR = "service:ingest"


class InvalidSignature(Unauthorized):
    code, message = "invalid_signature", "The body signature does not match."


async def caller(request: web.Request, access: Access) -> str:
    """The actor: a staff user's id, or ``service:ingest`` for a body signed with the ingest secret.

    The route registry calls it before reading the body (an unauthenticated caller learns nothing
    about what a valid body looks like); the handler's own call gets the same answer.
    """
    if (known := request.get(CALLER)) is not None:
        return known
    request[CALLER] = await _identify(request, access)
    return request[CALLER]


async def _identify(request: web.Request, access: Access) -> str:
    header = request.headers.get(SIGNATURE_HEADER)
    if header is None:
        principal = await authorize(request, Access(roles=access.roles), request[ROUTE_SPEC].scope)
        assert principal is not None
        return str(principal.user_id)
    secret = request.config_dict[SETTINGS].ingest_hmac_secret
    if secret is None:
        raise InvalidSignature("Signed requests are not accepted here: no ingest secret is configured.",
                               code="signature_not_accepted")
    scheme, _, digest = header.strip().partition("=")
    expected = hmac.new(secret.get_secret_value().encode(), await request.read(), hashlib.sha256).hexdigest()
    offered = digest.strip().lower().encode("utf-8", "replace")  # bytes: compare_digest refuses non-ASCII str
    if scheme.lower() != "sha256" or not hmac.compare_digest(offered, expected.encode()):
        log.warning("refused a badly signed request to %s from %s", request.path, client_ip(request))
        raise InvalidSignature()
    return SERVICE_ACTOR
