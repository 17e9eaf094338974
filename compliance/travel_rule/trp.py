"""The OpenVASP Travel Rule Protocol, version 3: addresses, headers, messages and the HTTP client.

The flow (https://gitlab.com/OpenVASP/travel-rule-protocol, core specification):

1. The beneficiary's VASP hands out a *Travel Address*: ``ta`` + Base58Check of a URL without its
   scheme that carries ``t=i`` (``vasp.example/trp/acme/inquiry/0xabc…?t=i``); https is implied.
2. The originating VASP POSTs an *inquiry* there: ``{"asset", "amount", "callback", "IVMS101"}``
   with the headers ``api-version`` and ``request-identifier`` (one UUID per transfer, the same on
   every message about it).
3. The beneficiary's VASP answers with a *resolution*, in the response (200) or later to the
   inquiry's ``callback``: ``{"approved": {"address", "callback"}}`` or ``{"rejected": "why"}``.
4. Once the transaction is on chain the originator POSTs a *confirmation* to the approval's
   callback: ``{"txid": "0x…"}``, or ``{"canceled": "why"}`` when it will not happen.

Amounts are JSON numbers in major units (``1.5``); they are written from the Decimal text and read
back as Decimal, never through a float.
"""

from __future__ import annotations

import json
import ssl
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from bip_utils import Base58ChecksumError, Base58Decoder, Base58Encoder

from compliance.travel_rule.tls import peer_certificate
from core import json_input
from core.errors import InvalidInput

API_VERSION = "3.1.0"
SUPPORTED_MAJOR = "3"
SLIP0044_ETHER = 60
JSON = "application/json"


class TrpError(InvalidInput):
    code, message = "trp_invalid", "Not a valid Travel Rule Protocol message."


class TravelAddressInvalid(InvalidInput):
    code, message = "travel_address_invalid", "Not a valid Travel Address."


# --- Travel Addresses ---------------------------------------------------------------------------

def travel_address(url: str) -> str:
    """The Travel Address of an inquiry URL (its scheme is dropped, ``t=i`` added)."""
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    query["t"] = "i"
    bare = f"{parts.netloc}{parts.path}?{urlencode(sorted(query.items()))}"
    return "ta" + Base58Encoder.CheckEncode(bare.encode())


def inquiry_url(address: str) -> str:
    """The https URL a Travel Address (or a plain https URL, as TRP allows) points at."""
    if address.startswith("https://"):
        return address
    if not address.startswith("ta"):
        raise TravelAddressInvalid(details={"travel_address": address})
    try:
        bare = Base58Decoder.CheckDecode(address[2:]).decode()
    except (Base58ChecksumError, ValueError, UnicodeDecodeError):
        raise TravelAddressInvalid(details={"travel_address": address}) from None
    parts = urlsplit("//" + bare)
    if "://" in bare or not parts.hostname or parse_qs(parts.query).get("t") != ["i"]:
        raise TravelAddressInvalid(details={"travel_address": address})
    return "https://" + bare


# --- messages -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Inquiry:
    request_identifier: str
    asset: dict[str, Any]
    amount: Decimal
    callback: str
    ivms101: dict[str, Any]


@dataclass(frozen=True)
class Resolution:
    approved_address: str | None = None
    approved_callback: str | None = None
    rejected: str | None = None

    @property
    def decided(self) -> bool:
        return self.approved_callback is not None or self.rejected is not None


def asset_of(symbol: str, token_contract: str | None) -> dict[str, Any]:
    """TRP names assets by SLIP-0044 coin type (native ether) or, for tokens, by symbol and contract."""
    if token_contract is None:
        return {"slip0044": SLIP0044_ETHER}
    return {"symbol": symbol, "contract": token_contract}


def dumps(message: dict[str, Any]) -> str:
    """JSON with Decimal values written as exact numbers."""
    placeholders: dict[str, str] = {}

    def number(value: Any) -> Any:
        if isinstance(value, Decimal):
            key = f"@@decimal-{len(placeholders)}@@"
            placeholders[f'"{key}"'] = format(value.normalize(), "f")
            return key
        if isinstance(value, dict):
            return {key: number(item) for key, item in value.items()}
        if isinstance(value, list):
            return [number(item) for item in value]
        return value

    text = json.dumps(number(message), separators=(",", ":"))
    for quoted, plain in placeholders.items():
        text = text.replace(quoted, plain)
    return text


def loads(text: str | bytes) -> dict[str, Any]:
    try:
        body = json_input.loads(text, parse_float=Decimal)
    except ValueError:
        raise TrpError("The body is not JSON.") from None
    if not isinstance(body, dict):
        raise TrpError("The body is not a JSON object.")
    return body


def inquiry_body(inquiry: Inquiry) -> str:
    return dumps({"asset": inquiry.asset, "amount": inquiry.amount, "callback": inquiry.callback,
                  "IVMS101": inquiry.ivms101})


def parse_inquiry(request_identifier: str, body: dict[str, Any]) -> Inquiry:
    missing = [field for field in ("asset", "amount", "callback", "IVMS101") if field not in body]
    if missing:
        raise TrpError("The inquiry lacks required fields.", details={"missing": missing})
    amount = body["amount"]
    if isinstance(amount, bool) or not isinstance(amount, (int, Decimal, str)):
        raise TrpError("amount is not a number.", details={"field": "amount"})
    try:
        amount = Decimal(str(amount))
    except ArithmeticError:
        raise TrpError("amount is not a number.", details={"field": "amount"}) from None
    if not amount.is_finite() or amount <= 0:
        raise TrpError("amount must be positive.", details={"field": "amount"})
    if not isinstance(body["IVMS101"], dict) or not isinstance(body["asset"], dict):
        raise TrpError("IVMS101 and asset must be objects.")
    if not isinstance(body["callback"], str) or not body["callback"].startswith("https://"):
        raise TrpError("callback must be an https URL.", details={"field": "callback"})
    return Inquiry(request_identifier, body["asset"], amount, body["callback"], body["IVMS101"])


def resolution_body(resolution: Resolution) -> str:
    if resolution.rejected is not None:
        return dumps({"version": API_VERSION, "rejected": resolution.rejected})
    return dumps({"version": API_VERSION, "approved": {"address": resolution.approved_address,
                                                       "callback": resolution.approved_callback}})


def parse_resolution(body: dict[str, Any]) -> Resolution:
    """An approval or a rejection; an empty object (or neither) means "not decided yet"."""
    approved, rejected = body.get("approved"), body.get("rejected")
    if approved is not None:
        if not isinstance(approved, dict) or not isinstance(approved.get("callback"), str):
            raise TrpError("approved needs an address and a callback.", details={"field": "approved"})
        return Resolution(approved_address=approved.get("address"), approved_callback=approved["callback"])
    if rejected is not None:
        return Resolution(rejected=str(rejected) or "rejected")
    return Resolution()


def confirmation_body(*, txid: str | None = None, canceled: str | None = None) -> str:
    return dumps({"txid": txid} if txid is not None else {"canceled": canceled or "canceled"})


def check_headers(headers: Any) -> str:
    """The request identifier of an incoming TRP request, after checking its API version."""
    version = headers.get("api-version", "")
    if version.split(".")[0] != SUPPORTED_MAJOR:
        raise TrpError("Unsupported TRP api-version.", code="trp_version",
                       details={"api-version": version, "supported": API_VERSION})
    identifier = headers.get("request-identifier", "")
    try:
        uuid.UUID(identifier)
    except ValueError:
        raise TrpError("request-identifier must be a UUID.", details={"request-identifier": identifier}) from None
    return identifier


def headers(request_identifier: str) -> dict[str, str]:
    return {"api-version": API_VERSION, "request-identifier": request_identifier, "Content-Type": JSON}


# --- the client ---------------------------------------------------------------------------------

class PeerError(Exception):
    """The counterparty could not be reached or answered with an error: worth a retry."""


@dataclass(frozen=True)
class Reply:
    """A counterparty's answer, and who gave it: its certificate's name and fingerprint, as presented
    on the connection the message went over (``tls.fingerprint``)."""

    body: dict[str, Any]
    peer_name: str | None
    peer_fingerprint: str | None


class Destinations(Protocol):
    """Where a message may go (``directory.Directory``): a refusal raises before anything is sent."""

    def check_url(self, url: str) -> None: ...

    def resolver(self, url: str) -> AbstractResolver | None: ...


class _PeerRecordingConnector(aiohttp.TCPConnector):
    """Records the certificate the server presented on each connection it hands out: a small answer
    arrives with its headers and the response lets its connection go at once, transport and all."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.peers: list[tuple[str | None, str | None]] = []

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        connection = await super().connect(req, traces, timeout)
        transport = connection.transport
        self.peers.append(peer_certificate(transport.get_extra_info("ssl_object") if transport else None))
        return connection


async def exchange(context: ssl.SSLContext, url: str, request_identifier: str, body: str, timeout: float, *,
                   destinations: Destinations | None = None) -> Reply:
    """POST one TRP message over mutual TLS; the parsed JSON answer ({} for an empty one) and the
    certificate the counterparty presented. ``destinations`` refuses internal addresses. Redirects
    are not followed: a 3xx is a failure (else it could lead to an address nobody checked)."""
    resolver = None
    if destinations is not None:
        destinations.check_url(url)
        resolver = destinations.resolver(url)
    try:
        connector = _PeerRecordingConnector(**({"resolver": resolver} if resolver is not None else {}))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout), connector=connector) as client:
            async with client.post(url, data=body.encode(), headers=headers(request_identifier), ssl=context,
                                   allow_redirects=False) as response:
                text = await response.text()
                if response.status >= 300:
                    raise PeerError(f"{url} answered {response.status}: {text[:200]}")
                name, fingerprint = connector.peers[-1] if connector.peers else (None, None)
                return Reply(loads(text) if text.strip() else {}, name, fingerprint)
    except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as error:
        raise PeerError(f"{url}: {error.__class__.__name__}: {error}") from None


async def post(context: ssl.SSLContext, url: str, request_identifier: str, body: str, timeout: float, *,
               destinations: Destinations | None = None) -> dict[str, Any]:
    """``exchange``, for the answer alone."""
    return (await exchange(context, url, request_identifier, body, timeout, destinations=destinations)).body
