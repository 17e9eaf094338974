"""The TRP endpoints of a VASP identity, over real mutual TLS, on the real database.

The listener is the ``virtuoz trp`` app for identity ``beta``; requests come from identity
``alpha``'s certificate (or ``gamma``'s, a third VASP), all signed by a CA made for the test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import insert, select, update

from compliance.screening import service as screening
from compliance.travel_rule import outbound, service, trp
from compliance.travel_rule.directory import Directory
from compliance.travel_rule.models import TravelRuleTransfer
from compliance.travel_rule.server import create_trp_app
from compliance.travel_rule.tls import (
    client_context,
    ensure_devnet_pki,
    fingerprint_of_file,
    identity_files,
    peer_name,
    server_context,
)
from core import audit
from core.db import unit_of_work
from core.settings import ChainSettings, Settings, VaspDirectoryEntry, VaspIdentity
from custody.addresses.models import DepositAddress
from devnet.processes import free_port

FIXTURES = Path(__file__).parents[1] / "screening" / "fixtures"  # the sanctions list samples
USDC = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@dataclass
class Peer:
    url: str
    context: Any
    factory: Any
    pki: Path
    settings: Settings

    async def post(self, path: str, body: Any, identifier: str | None = None,
                   headers: dict[str, str] | None = None, *, as_identity: str | None = None
                   ) -> tuple[int, dict[str, Any]]:
        """POST as ``alpha`` (or ``as_identity``, with that identity's client certificate)."""
        identifier = identifier or str(uuid.uuid4())
        sent = trp.headers(identifier) | (headers or {})
        data = body if isinstance(body, str) else trp.dumps(body)
        context = client_context(identity_files(self.pki, as_identity)) if as_identity else self.context
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.url}{path}", data=data, headers=sent, ssl=context) as response:
                return response.status, trp.loads(await response.text())


@pytest.fixture
async def beta(settings: Settings, factory, tmp_path) -> AsyncIterator[Peer]:
    pki = tmp_path / "pki"
    ensure_devnet_pki(pki, ["alpha", "beta", "gamma"], ["127.0.0.1"])
    identity = VaspIdentity(name="beta", legal_name="Beta VASP", port=free_port())
    chain = ChainSettings(name="ethereum", chain_id=31337, rpc_url="http://127.0.0.1:1", native="ETH",
                          tokens={"USDC": USDC})
    configured = settings.model_copy(update={"chains": [chain], "travel_rule_identities": [identity],
                                             "travel_rule_identity": "beta", "travel_rule_pki_dir": pki})
    runner = web.AppRunner(create_trp_app(configured, identity, factory))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", identity.port,
                      ssl_context=server_context(identity_files(pki, "beta"))).start()
    try:
        yield Peer(identity.base_url, client_context(identity_files(pki, "alpha")), factory, pki, configured)
    finally:
        await runner.cleanup()


async def customer_address(client, login_as, factory) -> tuple[uuid.UUID, str]:
    user = await login_as(client)
    address = "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
    async with unit_of_work(factory) as session:
        await session.execute(insert(DepositAddress).values(
            id=uuid.uuid4(), chain="ethereum", derivation_index=uuid.uuid4().int % 2**31, address=address,
            user_id=user.user_id, assigned_at=audit.utcnow()))
    return user.user_id, address


def inquiry(account: str, *, originator: str = "Lovelace", given: str = "Ada", amount: Any = None,
            asset: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "asset": asset or {"slip0044": 60},
        "amount": amount if amount is not None else trp.dumps(1),
        "callback": "https://alpha.example/callback/x",
        "IVMS101": {
            "originator": {"originatorPersons": {"naturalPerson": {  # one object, not an array: accepted
                "name": {"nameIdentifier": {"primaryIdentifier": originator, "secondaryIdentifier": given,
                                            "nameIdentifierType": "LEGL"}},
                "customerIdentification": "c-1"}}, "accountNumber": "acct-1"},
            "beneficiary": {"beneficiaryPersons": [{"naturalPerson": {"name": {"nameIdentifier": [
                {"primaryIdentifier": "Hopper", "secondaryIdentifier": "Grace", "nameIdentifierType": "LEGL"}]}}}],
                "accountNumber": [account]},
            "originatingVASP": {"originatingVASP": {"legalPerson": {"name": {"nameIdentifier": [
                {"legalPersonName": "Alpha VASP", "legalPersonNameIdentifierType": "LEGL"}]}}}},
        },
    }


def with_amount(body: dict[str, Any], amount: str) -> str:
    """The inquiry as TRP JSON with an exact number for its amount."""
    return trp.dumps({**body, "amount": Decimal(amount)})


async def inbound(factory, identifier: str) -> list[TravelRuleTransfer]:
    async with factory() as session:
        return list(await session.scalars(select(TravelRuleTransfer).where(
            TravelRuleTransfer.request_identifier == identifier)))


async def test_an_inquiry_for_our_customer_is_approved_recorded_and_answered_the_same_twice(
        beta, client, login_as, factory) -> None:
    user_id, account = await customer_address(client, login_as, factory)
    identifier = str(uuid.uuid4())
    body = with_amount(inquiry(account), "1.5")
    status, answer = await beta.post(f"/inquiry/{account}", body, identifier)
    assert status == 200, answer
    assert answer["approved"] == {"address": account, "callback": f"{beta.url}/confirm/{identifier}"}
    assert answer["version"] == trp.API_VERSION
    status, again = await beta.post(f"/inquiry/{account}", body, identifier)
    assert (status, again) == (200, answer)
    (row,) = await inbound(factory, identifier)
    assert (row.direction, row.state, row.asset, row.amount, row.user_id) == ("inbound", "accepted", "ETH",
                                                                               15 * 10**17, user_id)
    assert row.counterparty == "alpha" and row.callback_url == "https://alpha.example/callback/x"
    assert row.originator["natural_person"]["name"]["name_identifiers"][0]["primary_identifier"] == "Lovelace"
    async with factory() as session:
        types = [event.type for event in await audit.events_of(session, service.AGGREGATE, row.id)]
    assert types == ["travel_rule.created", "travel_rule.accepted"]


async def test_a_token_inquiry_maps_the_contract_to_its_asset(beta, client, login_as, factory) -> None:
    _, account = await customer_address(client, login_as, factory)
    identifier = str(uuid.uuid4())
    body = with_amount(inquiry(account, asset={"symbol": "USDC", "contract": USDC.lower()}), "2500.25")
    status, answer = await beta.post(f"/inquiry/{account}", body, identifier)
    assert status == 200 and "approved" in answer
    (row,) = await inbound(factory, identifier)
    assert (row.asset, row.amount) == ("USDC", 2_500_250_000)


async def test_an_unknown_account_is_rejected_with_its_reason_recorded(beta) -> None:
    identifier, stranger = str(uuid.uuid4()), "0x" + "ab" * 20
    status, answer = await beta.post(f"/inquiry/{stranger}", with_amount(inquiry(stranger), "1"), identifier)
    assert (status, answer) == (200, {"version": trp.API_VERSION, "rejected": "unknown beneficiary account"})
    (row,) = await inbound(beta.factory, identifier)
    assert (row.state, row.reason, row.user_id) == ("rejected", "unknown beneficiary account", None)


async def test_a_sanctioned_originator_is_rejected(beta, client, login_as, factory) -> None:
    async with unit_of_work(factory) as session:
        await screening.load(session, (FIXTURES / "sdn_advanced_sample.xml").read_bytes(), "sdn_advanced.xml")
    _, account = await customer_address(client, login_as, factory)
    identifier = str(uuid.uuid4())
    body = with_amount(inquiry(account, originator="PETROV", given="Ivan Sergeyevich"), "1")
    status, answer = await beta.post(f"/inquiry/{account}", body, identifier)
    assert (status, answer["rejected"]) == (200, "originator screening hit")
    (row,) = await inbound(factory, identifier)
    async with factory() as session:
        types = [event.type for event in await audit.events_of(session, service.AGGREGATE, row.id)]
    assert types == ["travel_rule.created", "travel_rule.rejected", "travel_rule.screening_hit"]


@pytest.mark.parametrize(("headers", "code"), [
    ({"api-version": "2.0.0"}, "trp_version"),
    ({"request-identifier": "not-a-uuid"}, "trp_invalid"),
], ids=["old-version", "bad-identifier"])
async def test_bad_headers_are_refused_and_nothing_is_recorded(beta, headers, code) -> None:
    identifier = str(uuid.uuid4())
    status, answer = await beta.post("/inquiry/0xabc", with_amount(inquiry("0xabc"), "1"), identifier, headers)
    assert (status, answer["error"]["code"]) == (422, code)
    assert await inbound(beta.factory, identifier) == []


async def test_malformed_and_incomplete_inquiries_are_refused(beta) -> None:
    status, answer = await beta.post("/inquiry/0xabc", "{not json")
    assert (status, answer["error"]["code"]) == (422, "trp_invalid")
    body = inquiry("0xabc")
    del body["IVMS101"]["originator"]["originatorPersons"]["naturalPerson"]["customerIdentification"]
    status, answer = await beta.post("/inquiry/0xabc", with_amount(body, "1"))
    assert status == 422
    fields = {item["field"] for item in answer["error"]["details"]["fields"]}
    assert "originator.natural_person.customer_identification" in fields  # IVMS101 C1, named field by field
    status, answer = await beta.post("/inquiry/0xabc", with_amount({**inquiry("0xabc"), "callback": "http://x"}, "1"))
    assert (status, answer["error"]["details"]) == (422, {"field": "callback"})


async def test_a_confirmation_records_the_txid_once(beta, client, login_as, factory) -> None:
    _, account = await customer_address(client, login_as, factory)
    identifier = str(uuid.uuid4())
    await beta.post(f"/inquiry/{account}", with_amount(inquiry(account), "1"), identifier)
    txid = "0x" + "cd" * 32
    for _ in range(2):
        status, _answer = await beta.post(f"/confirm/{identifier}", {"txid": txid}, identifier)
        assert status == 200
    (row,) = await inbound(factory, identifier)
    assert row.tx_hash == txid
    async with factory() as session:
        types = [event.type for event in await audit.events_of(session, service.AGGREGATE, row.id)]
    assert types.count("travel_rule.recorded") == 1
    unknown = str(uuid.uuid4())
    status, answer = await beta.post(f"/confirm/{unknown}", {"txid": txid}, unknown)
    assert (status, answer["error"]["code"]) == (404, "trp_unknown_transfer")


async def test_a_late_resolution_decides_our_outbound_transfer(beta, client, login_as, factory) -> None:
    officer = await login_as(client, "compliance")
    response = await client.post("/api/v1/compliance/travel-rule", headers=officer.headers, json={
        "originator": {"natural_person": {"name": {"name_identifiers": [{"primary_identifier": "Lovelace"}]},
                                          "customer_identification": "c-1"}},
        "beneficiary": {"natural_person": {"name": {"name_identifiers": [{"primary_identifier": "Hopper"}]}},
                        "account_numbers": ["0x" + "12" * 20]},
        "originating_vasp": {"legal_person": {"name": "Beta VASP"}},
        "beneficiary_vasp": {"legal_person": {"name": "Alpha VASP"}},
        "transfer": {"asset": "ETH", "amount": "2", "chain": "ethereum", "destination": "0x" + "12" * 20}})
    assert response.status == 201, await response.text()
    created = await response.json()
    async with unit_of_work(factory) as session:
        transfer = await service.get(session, uuid.UUID(created["id"]), lock=True)
        # As delivery records it: the inquiry went to alpha, so alpha's certificate is the one pinned.
        await service.transition(session, transfer, "send", actor="test", data={
            "counterparty": "alpha", "counterparty_fingerprint": certificate_fingerprint(beta.pki, "alpha")})
        identifier = transfer.request_identifier
    status, _ = await beta.post(f"/callback/{identifier}", {"rejected": "beneficiary unknown"}, identifier)
    assert status == 200
    async with factory() as session:
        transfer = await service.get(session, uuid.UUID(created["id"]))
    assert (transfer.state, transfer.reason) == ("rejected", "beneficiary unknown")
    status, answer = await beta.post(f"/callback/{uuid.uuid4()}", {"rejected": "x"})
    assert status == 422 and answer["error"]["code"] == "trp_invalid"  # the path and the header differ


# --- pinning: a callback comes from the certificate the inquiry went to ---------------------------

def certificate_fingerprint(pki: Path, name: str) -> str:
    return fingerprint_of_file(identity_files(pki, name).cert)


@pytest.fixture
async def gamma(beta) -> AsyncIterator[tuple[str, list[str | None]]]:
    """A third VASP's TRP listener (mTLS, gamma's certificate) that decides later: it answers an
    inquiry with an empty resolution and will call back. → (its base URL, the peers it has seen)."""
    seen: list[str | None] = []

    async def undecided(request: web.Request) -> web.Response:
        seen.append(peer_name(request.transport.get_extra_info("ssl_object").getpeercert()))
        return web.Response(text="{}", content_type=trp.JSON)

    app = web.Application()
    app.router.add_post("/inquiry/{account}", undecided)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_context(identity_files(beta.pki, "gamma"))).start()
    try:
        yield f"https://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def outbound_draft(beta, login_as, client, travel_address: str, settings: Settings) -> uuid.UUID:
    officer = await login_as(client, "compliance")
    request = {
        "originator": {"natural_person": {"name": {"name_identifiers": [{"primary_identifier": "Lovelace"}]},
                                          "customer_identification": "c-1"}},
        "beneficiary": {"natural_person": {"name": {"name_identifiers": [{"primary_identifier": "Hopper"}]}},
                        "account_numbers": ["0x" + "12" * 20]},
        "originating_vasp": {"legal_person": {"name": "Beta VASP"}},
        "beneficiary_vasp": {"legal_person": {"name": "Gamma VASP"}},
        "transfer": {"asset": "ETH", "amount": "2", "chain": "ethereum", "destination": "0x" + "12" * 20},
        "travel_address": travel_address}
    async with unit_of_work(beta.factory) as session:
        transfer, _ = await service.upsert(session, service.Actor(officer.user_id, frozenset({"compliance"})),
                                           request, directory=Directory.of(settings))
        return transfer.id


async def test_a_callback_is_accepted_only_from_the_certificate_the_inquiry_went_to(
        beta, gamma, client, login_as) -> None:
    gamma_url, seen = gamma
    settings = beta.settings.model_copy(update={"travel_rule_vasp_directory": [
        VaspDirectoryEntry(name="gamma", url=gamma_url)]})
    transfer_id = await outbound_draft(beta, login_as, client, f"{gamma_url}/inquiry/{'0x' + '12' * 20}", settings)
    async with unit_of_work(beta.factory) as session:
        await outbound.deliver(session, transfer_id, settings)
    assert seen == ["beta"]  # gamma got our inquiry, over mTLS, from our identity
    async with beta.factory() as session:
        transfer = await service.get(session, transfer_id)
    assert (transfer.state, transfer.counterparty) == ("sent", "gamma")
    assert transfer.counterparty_fingerprint == certificate_fingerprint(beta.pki, "gamma")
    identifier = transfer.request_identifier
    decision = {"approved": {"address": "0x" + "12" * 20, "callback": f"{gamma_url}/confirm/{identifier}"}}

    # alpha is a VASP our CA trusts, and it knows the request identifier: still not the one we asked.
    status, answer = await beta.post(f"/callback/{identifier}", decision, identifier)
    assert (status, answer["error"]["code"]) == (403, "trp_peer_mismatch")
    async with beta.factory() as session:
        assert (await service.get(session, transfer_id)).state == "sent"
        events = await audit.events_of(session, service.AGGREGATE, transfer_id)
    refused = [event for event in events if event.type == "travel_rule.peer_refused"]
    assert [(event.actor, event.data["message"], event.data["presented"]) for event in refused] == [
        ("trp:alpha", "callback", certificate_fingerprint(beta.pki, "alpha"))]

    status, _ = await beta.post(f"/callback/{identifier}", decision, identifier, as_identity="gamma")
    assert status == 200
    async with beta.factory() as session:
        transfer = await service.get(session, transfer_id)
    assert (transfer.state, transfer.callback_url) == ("accepted", f"{gamma_url}/confirm/{identifier}")


async def test_a_confirmation_is_accepted_only_from_the_certificate_the_inquiry_came_from(
        beta, client, login_as, factory) -> None:
    _, account = await customer_address(client, login_as, factory)
    identifier = str(uuid.uuid4())
    status, answer = await beta.post(f"/inquiry/{account}", with_amount(inquiry(account), "1"), identifier)
    assert status == 200 and "approved" in answer
    (row,) = await inbound(factory, identifier)
    assert row.counterparty_fingerprint == certificate_fingerprint(beta.pki, "alpha")
    txid = "0x" + "ef" * 32
    status, answer = await beta.post(f"/confirm/{identifier}", {"txid": txid}, identifier, as_identity="gamma")
    assert (status, answer["error"]["code"]) == (403, "trp_peer_mismatch")
    assert (await inbound(factory, identifier))[0].tx_hash is None
    status, _ = await beta.post(f"/confirm/{identifier}", {"txid": txid}, identifier)
    assert status == 200
    assert (await inbound(factory, identifier))[0].tx_hash == txid


async def test_delivery_never_connects_to_a_private_address_outside_the_directory(
        beta, gamma, client, login_as) -> None:
    """The Travel Address is checked when it is given; the worker checks where the name resolves
    too, when it connects (a name may point at a private address, or start to later)."""
    gamma_url, seen = gamma
    port = gamma_url.rsplit(":", 1)[1]
    transfer_id = await outbound_draft(beta, login_as, client, "https://vasp.example/inquiry/1", beta.settings)
    async with unit_of_work(beta.factory) as session:  # as a record from before the input check would be
        await session.execute(update(TravelRuleTransfer).where(TravelRuleTransfer.id == transfer_id)
                              .values(travel_address=f"https://localhost:{port}/inquiry/1"))
    async with unit_of_work(beta.factory) as session:
        await outbound.deliver(session, transfer_id, beta.settings)
    assert seen == []  # nothing left this machine for the private address
    async with beta.factory() as session:
        transfer = await service.get(session, transfer_id)
        events = await audit.events_of(session, service.AGGREGATE, transfer_id)
    assert transfer.state == "draft"
    refused = [event for event in events if event.type == "travel_rule.delivery_refused"]
    assert [event.data["code"] for event in refused] == ["travel_address_private"]
