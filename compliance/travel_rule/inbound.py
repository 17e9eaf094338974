"""What arrives over TRP: inquiries for our customers, late resolutions, confirmations.

The beneficiary-side policy is deliberately plain, and every decision is recorded with its reason
(the compliance officer must be able to defend it): approve when the inquiry's account is a
deposit address we assigned to a customer, on the chain of the asset asked about, and the
originator is not on the sanctions list; reject otherwise.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from compliance.screening import service as screening
from compliance.travel_rule import ivms101, service, trp
from compliance.travel_rule.models import TravelRuleTransfer
from core import audit
from core.errors import Conflict, Forbidden, NotFound
from core.settings import Settings, VaspIdentity
from custody.addresses.models import DepositAddress

log = logging.getLogger(__name__)


class UnknownTransfer(NotFound):
    code, message = "trp_unknown_transfer", "No Travel Rule transfer has this request identifier."


class PeerMismatch(Forbidden):
    code = "trp_peer_mismatch"
    message = ("Messages about this transfer are taken only from the certificate its inquiry went to (or came "
               "from).")
    keep_changes = True  # the refusal is recorded: someone our CA trusts tried to speak for another VASP


async def check_pinned(session: AsyncSession, transfer: TravelRuleTransfer, message: str, *, peer: str | None,
                       fingerprint: str | None) -> None:
    """403 ``trp_peer_mismatch`` unless the message comes with the certificate pinned on the transfer.

    Every VASP our CA signs gets through the TLS handshake, and the request identifier travels in
    the clear to the counterparty (and is in their logs): neither proves the sender is the VASP we
    asked. The certificate fingerprint does. A transfer with nothing pinned takes no message at all.
    """
    if transfer.counterparty_fingerprint is not None and fingerprint == transfer.counterparty_fingerprint:
        return
    log.warning("TRP %s for transfer %s refused: %s presented %s, pinned %s", message, transfer.id, peer,
                fingerprint, transfer.counterparty_fingerprint)
    await audit.append(session, service.AGGREGATE, transfer.id, "travel_rule.peer_refused",
                       {"message": message, "peer": peer, "presented": fingerprint,
                        "pinned": transfer.counterparty_fingerprint}, actor=f"trp:{peer or 'peer'}")
    raise PeerMismatch(details={"request_identifier": transfer.request_identifier})


def _asset(settings: Settings, chain_name: str | None, asset: dict[str, Any]) -> tuple[str, str] | None:
    """(chain, symbol) the inquiry's asset names, on the account's chain if we know the account."""
    for chain in settings.chains:
        if chain_name is not None and chain.name != chain_name:
            continue
        if asset.get("slip0044") == trp.SLIP0044_ETHER:
            return chain.name, chain.native
        contract = str(asset.get("contract", "")).lower()
        for symbol, address in chain.tokens.items():
            if contract and address.lower() == contract:
                return chain.name, symbol
    return None


def _display_name(party: ivms101.Party) -> str:
    person = party.person
    if isinstance(person, ivms101.LegalPerson):
        return person.name
    legal = next((name for name in person.name.name_identifiers if name.name_identifier_type == "LEGL"),
                 person.name.name_identifiers[0])
    return " ".join(part for part in (legal.secondary_identifier, legal.primary_identifier) if part)


def _decision(address: DepositAddress | None, hit: screening.Hit | None) -> str | None:
    """The reason to reject, or None to approve."""
    if address is None:
        return "unknown beneficiary account"
    if hit is not None:
        return "originator screening hit"
    return None


async def receive(session: AsyncSession, settings: Settings, identity: VaspIdentity, inquiry: trp.Inquiry, *,
                  account: str, peer: str | None, fingerprint: str | None = None) -> trp.Resolution:
    """Record and decide an inquiry; ``fingerprint`` (of the certificate it came with) is pinned: the
    originator's confirmation must come with the same certificate."""
    existing = await service.by_request_identifier(session, inquiry.request_identifier, "inbound")
    if existing is not None:
        return _resolution(identity, existing)
    wire = dict(inquiry.ivms101)
    # Many originators leave out the beneficiary VASP: that is us.
    wire.setdefault("beneficiaryVASP", {"beneficiaryVASP": {"legalPerson": {"name": {"nameIdentifier": [
        {"legalPersonName": identity.legal_name, "legalPersonNameIdentifierType": "LEGL"}]}}}})
    document = ivms101.from_wire(wire)
    address = await session.scalar(select(DepositAddress).where(
        func.lower(DepositAddress.address) == account.lower(), DepositAddress.user_id.is_not(None)))
    asset = _asset(settings, address.chain if address is not None else None, inquiry.asset)
    if asset is None:
        # Nothing of ours to record it against: refused at the door (logged, not stored).
        log.info("TRP inquiry %s from %s refused: asset %s not supported", inquiry.request_identifier, peer,
                 inquiry.asset)
        return trp.Resolution(rejected="asset not supported")
    hit = await screening.screen_name(session, _display_name(document.originator))
    reason = _decision(address, hit)
    transfer, _ = await service.create_inbound(
        session, request_identifier=inquiry.request_identifier, document=document, asset=asset[1],
        amount=inquiry.amount, chain=asset[0], destination=account, callback_url=inquiry.callback,
        counterparty=peer, counterparty_fingerprint=fingerprint, wire_ivms101=inquiry.ivms101,
        user_id=address.user_id if address is not None else None,
        actor=f"trp:{identity.name}")
    if transfer.state != "sent":
        return _resolution(identity, transfer)  # a concurrent copy of this inquiry decided it
    if reason is None:
        await service.transition(session, transfer, "accept", actor=f"trp:{identity.name}")
    else:
        await service.transition(session, transfer, "reject", actor=f"trp:{identity.name}", data={"reason": reason})
        if hit is not None:
            await audit.append(session, service.AGGREGATE, transfer.id, "travel_rule.screening_hit", hit.as_dict(),
                               actor=f"trp:{identity.name}")
    return _resolution(identity, transfer)


def _resolution(identity: VaspIdentity, transfer: TravelRuleTransfer) -> trp.Resolution:
    if transfer.state == "accepted":
        return trp.Resolution(approved_address=transfer.destination,
                              approved_callback=f"{identity.base_url}/confirm/{transfer.request_identifier}")
    if transfer.state == "rejected":
        return trp.Resolution(rejected=transfer.reason or "rejected")
    return trp.Resolution()


async def resolved(session: AsyncSession, request_identifier: str, resolution: trp.Resolution, *,
                   peer: str | None, fingerprint: str | None = None) -> None:
    """A counterparty's late decision on one of our outbound inquiries, from the certificate the
    inquiry went to (``check_pinned``)."""
    from compliance.travel_rule.outbound import apply_resolution  # the outbound side owns what follows

    transfer = await service.by_request_identifier(session, request_identifier, "outbound", lock=True)
    if transfer is None:
        raise UnknownTransfer(details={"request_identifier": request_identifier})
    await check_pinned(session, transfer, "callback", peer=peer, fingerprint=fingerprint)
    await apply_resolution(session, transfer, resolution, actor=f"trp:{peer or 'peer'}")


async def confirmed(session: AsyncSession, request_identifier: str, *, txid: Any, canceled: Any,
                    peer: str | None, fingerprint: str | None = None) -> None:
    """The originator's ``txid`` (or ``canceled``) for an inbound transfer we approved, from the
    certificate its inquiry came with (``check_pinned``)."""
    transfer = await service.by_request_identifier(session, request_identifier, "inbound", lock=True)
    if transfer is None:
        raise UnknownTransfer(details={"request_identifier": request_identifier})
    await check_pinned(session, transfer, "confirm", peer=peer, fingerprint=fingerprint)
    if transfer.state != "accepted":
        raise Conflict("Only an accepted transfer is confirmed.", code="trp_not_accepted",
                       details={"state": transfer.state})
    actor = f"trp:{peer or 'peer'}"
    if txid is not None:
        if not isinstance(txid, str) or not 1 <= len(txid) <= 128:
            raise trp.TrpError("txid must be a transaction hash.", details={"field": "txid"})
        await service.record(session, transfer, actor=actor, data={"tx_hash": txid})
    else:
        await service.record(session, transfer, actor=actor, data={"reason": f"canceled: {str(canceled)[:480]}"})
