"""What webhooks announce, and the data they carry: installed in the outbox by ``cli.registry.load``.

The outbox (``notifications.webhooks``) sits below the domains whose changes it announces, so the
wiring tells it, per audit aggregate, which events its owners hear of and how the resource reads.
The data is the API's own response model of the resource, as its owner gets it from the API: one
serialization, so a webhook never says more (or otherwise) than a ``GET`` would.

Only events the owner can see are listed. Never internal ones — a sanctions hit, a signer alert, an
approval short of the last, an internal note or context link, a compliance review: announcing them
would tip the customer off.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from api.compliance.schemas import KycMineOut
from api.deposits.schemas import DepositOut
from api.escrow.schemas import EscrowOut
from api.helpdesk.schemas import ticket_detail
from api.withdrawals.schemas import WithdrawalOut
from compliance.kyc import service as kyc
from compliance.kyc.documents import StagedDocument
from compliance.kyc.models import KycCase
from custody.deposits.queries import deposit_item
from custody.escrow import service as escrow
from custody.escrow.models import EscrowContract
from custody.withdrawals import service as withdrawals
from custody.withdrawals.models import Withdrawal
from notifications.webhooks import outbox
from notifications.webhooks.outbox import Loaded
from support import service as helpdesk
from support.models import Ticket

# Audit event → webhook event. A deposit found again after a reorg (`deposit.revived`) is seen again,
# as its owner's notification says; a deposit that only moved to another block announces nothing.
DEPOSIT_EVENTS = {"deposit.seen": "deposit.seen", "deposit.revived": "deposit.seen",
                  "deposit.credited": "deposit.credited", "deposit.reorged": "deposit.reorged",
                  "deposit.orphaned": "deposit.orphaned", "deposit.reversed": "deposit.reversed"}
# The customer's steps. Not approval_added (one operator of two), signing/signed, fee bumps, cancels
# in flight or signer alerts: what operators do with the transaction is theirs.
WITHDRAWAL_EVENTS = ("withdrawal.requested", "withdrawal.awaiting_travel_rule", "withdrawal.approved",
                     "withdrawal.broadcast", "withdrawal.confirmed", "withdrawal.failed", "withdrawal.rolled_back")
# Not evidence added or hidden (an arbiter's hiding is not the other party's business), nor a seller linked.
ESCROW_EVENTS = ("escrow.created", "escrow.funded", "escrow.released", "escrow.cancelled", "escrow.disputed",
                 "escrow.dispute_rejected", "escrow.resolved")
KYC_EVENTS = ("kyc.approved", "kyc.rejected", "kyc.needs_info")
TICKET_EVENTS = ("ticket.reply", "ticket.state_changed")


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _json(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


async def load_deposit(session: AsyncSession, deposit_id: str) -> Loaded | None:
    key = _uuid(deposit_id)
    item = None if key is None else await deposit_item(session, key)
    if item is None:
        return None
    return [item.deposit.user_id], _json(DepositOut.of(item))


async def load_withdrawal(session: AsyncSession, withdrawal_id: str) -> Loaded | None:
    key = _uuid(withdrawal_id)
    row = None if key is None else await session.get(Withdrawal, key)
    if row is None:
        return None
    view = await withdrawals.get(session, withdrawals.Actor(user_id=row.user_id), row.id)
    return [row.user_id], _json(WithdrawalOut.of(view))


async def load_escrow(session: AsyncSession, escrow_id: str) -> Loaded | None:
    """Both parties hear of it, with the same document (the contract's detail is the same for either)."""
    key = _uuid(escrow_id)
    contract = None if key is None else await session.get(EscrowContract, key)
    if contract is None:
        return None
    view = await escrow.get(session, escrow.Actor(contract.buyer_id, frozenset()), contract.id)
    parties = [contract.buyer_id] + ([contract.seller_id] if contract.seller_id is not None else [])
    return parties, _json(EscrowOut.of(view))


async def load_kyc_case(session: AsyncSession, user_id: str) -> Loaded | None:
    """The aggregate's id is its user's; the documents are those of the submission decided."""
    key = _uuid(user_id)
    case = None if key is None else await session.get(KycCase, key)
    if case is None:
        return None
    documents = [StagedDocument(document.id, document.filename, document.content_type, document.size, document.sha256)
                 for document in await kyc.documents(session, case.user_id)
                 if document.submitted_at == case.submitted_at]
    return [case.user_id], _json(KycMineOut.of(case, documents))


async def load_ticket(session: AsyncSession, ticket_id: str) -> Loaded | None:
    """Its customer's view: public messages only, whoever the customer is (staff included)."""
    key = _uuid(ticket_id)
    ticket = None if key is None else await session.get(Ticket, key)
    if ticket is None:
        return None
    view = await helpdesk.get_ticket(session, helpdesk.Viewer(ticket.customer_id, staff=False), ticket.id)
    return [ticket.customer_id], _json(ticket_detail(view).root)


def announce_deposit(type: str, data: dict[str, Any]) -> str | None:
    return DEPOSIT_EVENTS.get(type)


def announce_ticket(type: str, data: dict[str, Any]) -> str | None:
    """A public reply by staff is ``ticket.reply``; the customer's own replies and staff's internal
    notes and links are not announced."""
    if type == "ticket.message_added":
        return "ticket.reply" if data.get("from_staff") is True else None
    return type if type in TICKET_EVENTS else None


def install() -> None:
    outbox.install_resource("deposit", tuple(sorted(set(DEPOSIT_EVENTS.values()))), load_deposit,
                            announce=announce_deposit)
    outbox.install_resource("withdrawal", WITHDRAWAL_EVENTS, load_withdrawal)
    outbox.install_resource("escrow", ESCROW_EVENTS, load_escrow)
    outbox.install_resource(kyc.AGGREGATE, KYC_EVENTS, load_kyc_case)
    outbox.install_resource(helpdesk.AGGREGATE, TICKET_EVENTS, load_ticket, announce=announce_ticket)
