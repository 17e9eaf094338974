"""TRP v3 messages and Travel Addresses, and mutual TLS with the devnet's own CA."""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from decimal import Decimal

import pytest
from aiohttp import web

from compliance.travel_rule import trp
from compliance.travel_rule.tls import client_context, ensure_devnet_pki, identity_files, peer_name, server_context
from devnet.processes import free_port


def test_a_travel_address_round_trips_to_its_https_url() -> None:
    address = trp.travel_address("https://127.0.0.1:8483/inquiry/0xAbC")
    assert address.startswith("ta")
    assert trp.inquiry_url(address) == "https://127.0.0.1:8483/inquiry/0xAbC?t=i"


@pytest.mark.parametrize("bad", ["", "0xabc", "ta", "taXXXX", "ta" + "1" * 20, "http://example.com"])
def test_a_broken_travel_address_is_refused(bad: str) -> None:
    with pytest.raises(trp.TravelAddressInvalid):
        trp.inquiry_url(bad)


def test_a_tampered_travel_address_fails_its_checksum() -> None:
    address = trp.travel_address("https://vasp.example/inquiry/1")
    tampered = address[:-1] + ("2" if address[-1] != "2" else "3")
    with pytest.raises(trp.TravelAddressInvalid):
        trp.inquiry_url(tampered)


def test_amounts_travel_as_exact_json_numbers() -> None:
    inquiry = trp.Inquiry(str(uuid.uuid4()), {"slip0044": 60}, Decimal("1234567.123456789012345678"),
                          "https://a.example/callback/1", {"originator": {}})
    text = trp.inquiry_body(inquiry)
    assert '"amount":1234567.123456789012345678' in text
    parsed = trp.parse_inquiry(inquiry.request_identifier, trp.loads(text))
    assert parsed.amount == Decimal("1234567.123456789012345678")
    assert json.loads(text)["asset"] == {"slip0044": 60}


@pytest.mark.parametrize("field", ["asset", "amount", "callback", "IVMS101"])
def test_an_inquiry_without_a_required_field_is_refused(field: str) -> None:
    body = {"asset": {"slip0044": 60}, "amount": 1, "callback": "https://a.example/cb", "IVMS101": {}}
    del body[field]
    with pytest.raises(trp.TrpError) as refused:
        trp.parse_inquiry(str(uuid.uuid4()), body)
    assert refused.value.details == {"missing": [field]}


@pytest.mark.parametrize("amount", [0, -1, "x", True, None])
def test_an_inquiry_amount_must_be_a_positive_number(amount: object) -> None:
    body = {"asset": {"slip0044": 60}, "amount": amount, "callback": "https://a.example/cb", "IVMS101": {}}
    with pytest.raises(trp.TrpError):
        trp.parse_inquiry(str(uuid.uuid4()), body)


def test_resolutions_round_trip() -> None:
    approved = trp.Resolution(approved_address="0xabc", approved_callback="https://b.example/confirm/1")
    assert trp.parse_resolution(trp.loads(trp.resolution_body(approved))) == approved
    rejected = trp.Resolution(rejected="unknown beneficiary")
    assert trp.parse_resolution(trp.loads(trp.resolution_body(rejected))) == rejected
    assert not trp.parse_resolution({}).decided


def test_headers_need_version_3_and_a_uuid() -> None:
    identifier = str(uuid.uuid4())
    assert trp.check_headers(trp.headers(identifier)) == identifier
    with pytest.raises(trp.TrpError) as old:
        trp.check_headers({"api-version": "2.0.0", "request-identifier": identifier})
    assert old.value.code == "trp_version"
    with pytest.raises(trp.TrpError):
        trp.check_headers({"api-version": "3.1.0", "request-identifier": "nope"})


async def test_two_identities_talk_over_mutual_tls_and_a_stranger_is_refused(tmp_path) -> None:
    pki = tmp_path / "pki"
    ensure_devnet_pki(pki, ["alpha", "beta"], ["127.0.0.1"])
    seen: list[str | None] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(peer_name(request.transport.get_extra_info("ssl_object").getpeercert()))
        return web.json_response({"approved": {"address": "0x1", "callback": "https://x/confirm"}})

    app = web.Application()
    app.router.add_post("/inquiry/x", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_context(identity_files(pki, "beta"))).start()
    try:
        answer = await trp.post(client_context(identity_files(pki, "alpha")), f"https://127.0.0.1:{port}/inquiry/x",
                                str(uuid.uuid4()), "{}", timeout=10)
        assert trp.parse_resolution(answer).approved_callback == "https://x/confirm"
        assert seen == ["alpha"]
        # A client without a certificate from the CA does not get through the handshake.
        stranger = ssl.create_default_context(cafile=str(identity_files(pki, "beta").ca))
        with pytest.raises(trp.PeerError):
            await trp.post(stranger, f"https://127.0.0.1:{port}/inquiry/x", str(uuid.uuid4()), "{}", timeout=10)
        # Another CA's identity is refused too.
        other = tmp_path / "other"
        ensure_devnet_pki(other, ["alpha"], ["127.0.0.1"])
        impostor = ssl.create_default_context(cafile=str(identity_files(pki, "beta").ca))
        impostor.load_cert_chain(identity_files(other, "alpha").cert, identity_files(other, "alpha").key)
        with pytest.raises(trp.PeerError):
            await trp.post(impostor, f"https://127.0.0.1:{port}/inquiry/x", str(uuid.uuid4()), "{}", timeout=10)
        assert seen == ["alpha"]
    finally:
        await runner.cleanup()
    await asyncio.sleep(0)


def test_the_devnet_pki_is_made_once(tmp_path) -> None:
    ensure_devnet_pki(tmp_path, ["alpha"], ["127.0.0.1", "localhost"])
    before = identity_files(tmp_path, "alpha").cert.read_bytes()
    ensure_devnet_pki(tmp_path, ["alpha", "beta"], ["127.0.0.1", "localhost"])
    assert identity_files(tmp_path, "alpha").cert.read_bytes() == before
    assert identity_files(tmp_path, "beta").cert.exists()
    assert oct(identity_files(tmp_path, "beta").key.stat().st_mode & 0o777) == "0o600"


def test_serve_refuses_to_start_without_its_certificates(tmp_path, capsys) -> None:
    import argparse

    from compliance.travel_rule.cli import run_address, run_serve
    from core.settings import Settings

    settings = Settings(env="test", data_dir=tmp_path, travel_rule_pki_dir=tmp_path / "pki")
    assert run_serve(settings, argparse.Namespace(identities=None)) == 2
    assert "virtuoz.pem" in capsys.readouterr().out
    assert run_address(settings, argparse.Namespace(address="0xAbC", identity=None)) == 0
    printed = capsys.readouterr().out.strip()
    assert trp.inquiry_url(printed) == "https://127.0.0.1:8482/inquiry/0xAbC?t=i"
