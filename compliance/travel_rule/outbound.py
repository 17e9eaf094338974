"""What we send over TRP: the inquiry of an outbound transfer, and its confirmation once mined.

Both run in the compliance worker. An inquiry is POSTed inside the job's transaction: if the
commit then fails, the retry sends the same ``request-identifier`` again and the counterparty
answers with its first decision (TRP's idempotency), so nothing is decided twice. An unreachable
counterparty raises, and Dramatiq retries with backoff; the transfer stays ``draft`` meanwhile
(and expires if it never gets through).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from compliance.travel_rule import ivms101, service, trp
from compliance.travel_rule.directory import Directory, PrivateDestination
from compliance.travel_rule.models import TravelRuleTransfer
from compliance.travel_rule.tls import client_context, identity_files
from core import audit
from core.settings import Settings
from custody import ledger
from custody.withdrawals import service as withdrawals
from custody.withdrawals.models import Withdrawal

log = logging.getLogger(__name__)


def _context(settings: Settings):  # noqa: ANN202 - ssl.SSLContext
    assert settings.travel_rule_pki_dir is not None
    return client_context(identity_files(settings.travel_rule_pki_dir, settings.vasp().name))


def _token_contract(settings: Settings, chain_name: str | None, symbol: str) -> str | None:
    for chain in settings.chains:
        if chain.name == chain_name and symbol in chain.tokens:
            return chain.tokens[symbol]
    return None


async def deliver(session: AsyncSession, transfer_id: uuid.UUID, settings: Settings) -> None:
    """Send a draft outbound transfer's inquiry and apply the answer, if the answer is a decision."""
    transfer = await session.scalar(select(TravelRuleTransfer).where(TravelRuleTransfer.id == transfer_id)
                                    .with_for_update())
    if transfer is None or transfer.direction != "outbound" or transfer.state != "draft":
        return  # gone, or sent already: a redelivered message does nothing
    if not transfer.travel_address:
        log.info("travel rule transfer %s has no Travel Address: recorded, not sent", transfer.id)
        return
    url = trp.inquiry_url(transfer.travel_address)
    identity = settings.vasp()
    unit = await ledger.currency(session, transfer.asset)
    inquiry = trp.Inquiry(
        request_identifier=transfer.request_identifier,
        asset=trp.asset_of(transfer.asset, _token_contract(settings, transfer.chain, transfer.asset)),
        amount=Decimal(transfer.amount).scaleb(-unit.decimals),
        callback=f"{identity.base_url}/callback/{transfer.request_identifier}",
        ivms101=ivms101.to_wire(service.document_of(transfer)))
    actor = f"trp:{identity.name}"
    try:
        reply = await trp.exchange(_context(settings), url, transfer.request_identifier, trp.inquiry_body(inquiry),
                                   settings.travel_rule_timeout_seconds, destinations=Directory.of(settings))
    except PrivateDestination as refused:
        await _refused(session, transfer, refused, url, actor=actor)
        return
    # The certificate that answered is the only one whose callback we will take (inbound.resolved).
    await service.transition(session, transfer, "send", actor=actor, expiry_hours=settings.travel_rule_expiry_hours,
                             data={"wire_ivms101": inquiry.ivms101, "counterparty": reply.peer_name,
                                   "counterparty_fingerprint": reply.peer_fingerprint})
    await apply_resolution(session, transfer, trp.parse_resolution(reply.body), actor=actor)


async def _refused(session: AsyncSession, transfer: TravelRuleTransfer, refused: PrivateDestination, url: str, *,
                   actor: str) -> None:
    """Nothing was sent, and retrying will not change where the address points: record why and stop.
    The transfer stays a draft and expires; its withdrawal then fails, its hold voided."""
    log.warning("travel rule transfer %s: %s refused (%s)", transfer.id, url, refused.details)
    await audit.append(session, service.AGGREGATE, transfer.id, "travel_rule.delivery_refused",
                       {"code": refused.code, "url": url, **refused.details}, actor=actor)


async def apply_resolution(session: AsyncSession, transfer: TravelRuleTransfer, resolution: trp.Resolution, *,
                           actor: str) -> None:
    """Accepted or rejected, and the linked withdrawal goes on or fails with it."""
    if not resolution.decided or transfer.state != "sent":
        return
    if resolution.rejected is not None:
        await service.transition(session, transfer, "reject", actor=actor, data={"reason": resolution.rejected})
    else:
        await service.transition(session, transfer, "accept", actor=actor,
                                 data={"callback_url": resolution.approved_callback})
    if transfer.withdrawal_id is not None:
        await withdrawals.travel_rule_decided(session, transfer.withdrawal_id, accepted=transfer.state == "accepted",
                                              reason=transfer.reason)


async def expire(session: AsyncSession, moment: datetime) -> None:
    """Expire what is past its deadline; a withdrawal still waiting on an expired transfer fails."""
    for transfer in await service.expire_stale(session, moment):
        if transfer.withdrawal_id is not None:
            await withdrawals.travel_rule_decided(session, transfer.withdrawal_id, accepted=False,
                                                  reason=transfer.reason)


async def confirm(session: AsyncSession, withdrawal_id: uuid.UUID, settings: Settings) -> None:
    """Tell the beneficiary's VASP the transaction id of a confirmed withdrawal (or that it was
    canceled), once, through the approval's callback."""
    withdrawal = await session.get(Withdrawal, withdrawal_id)
    transfer = await session.scalar(select(TravelRuleTransfer).where(
        TravelRuleTransfer.withdrawal_id == withdrawal_id, TravelRuleTransfer.direction == "outbound",
        TravelRuleTransfer.state == "accepted").with_for_update())
    if withdrawal is None or transfer is None or not transfer.callback_url or transfer.tx_hash is not None:
        return
    if withdrawal.state == "confirmed" and withdrawal.tx_hash:
        body, facts = trp.confirmation_body(txid=withdrawal.tx_hash), {"tx_hash": withdrawal.tx_hash}
    elif withdrawal.state in ("failed", "rolled_back"):
        reason = f"withdrawal {withdrawal.state}"
        body, facts = trp.confirmation_body(canceled=reason), {"reason": f"canceled: {reason}"}
    else:
        return
    actor = f"trp:{settings.vasp().name}"
    try:
        # The callback is the counterparty's to choose: it must not point us at our own network either.
        await trp.post(_context(settings), transfer.callback_url, transfer.request_identifier, body,
                       settings.travel_rule_timeout_seconds, destinations=Directory.of(settings))
    except PrivateDestination as refused:
        await _refused(session, transfer, refused, transfer.callback_url, actor=actor)
        return
    await service.record(session, transfer, actor=actor, data=facts)
