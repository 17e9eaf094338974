"""Travel Rule transfers: the upsert of the API, state transitions, inbound records, reads, expiry.

Every change appends its audit event (aggregate ``travel_rule``) in the caller's transaction:
``travel_rule.created`` (the whole record), ``travel_rule.updated`` (the fields changed, with their
new values), ``travel_rule.send_requested``, ``travel_rule.recorded`` (facts learned later: a
tx hash, a callback, the message exchanged) and ``travel_rule.<new state>`` for each transition.
So the chain of events alone tells what was known, sent, received and decided, when and by whom.

Who may upsert: compliance officers and operators, any transfer; a customer, only transfers that
name one of their own withdrawals (another's is a 404, as if it did not exist).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from compliance.travel_rule import ivms101
from compliance.travel_rule.directory import Directory
from compliance.travel_rule.models import TravelRuleTransfer
from compliance.travel_rule.states import DRAFT, INITIAL, LIVE, OPEN, SENT
from compliance.travel_rule.states import transition as next_state
from core import audit
from core.db import advisory_lock
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.money import AmountText
from core.time import rfc3339, utcnow
from custody import ledger
from custody.deposits.models import Deposit
from custody.withdrawals.models import Withdrawal
from notifications.service import notify

AGGREGATE = "travel_rule"
SEND_TRAVEL_RULE = jobs.name("compliance.send_travel_rule")
DEFAULT_EXPIRY_HOURS = 72.0
# May upsert any transfer (the contract); everyone else only for their own withdrawal.
STAFF_ROLES = frozenset({"compliance", "operator"})
# A linked withdrawal in this state waits for its transfer: it is sent without being asked.
WITHDRAWAL_WAITING = "awaiting_travel_rule"
# What a transition (or ``record``) may set besides the state.
FACTS = frozenset({"reason", "tx_hash", "callback_url", "counterparty", "counterparty_fingerprint", "wire_ivms101",
                   "travel_address", "deposit_id"})

AuditActor = uuid.UUID | str | None


@dataclass(frozen=True)
class Actor:
    """Who upserts: the service needs the id and roles, never the HTTP request."""

    user_id: uuid.UUID
    roles: frozenset[str] = frozenset()

    @property
    def is_staff(self) -> bool:
        return bool(self.roles & STAFF_ROLES)


class TransferNotFound(NotFound):
    code, message = "travel_rule_transfer_not_found", "No such Travel Rule transfer."


class NotEditable(Conflict):
    code, message = "travel_rule_not_editable", "Only a draft that has not been sent can be changed."


# --- the upsert's input ---------------------------------------------------------------------------

class TransferDetails(ivms101.CheckedModel):
    """The value transfer; taken from the withdrawal or deposit it names (what is given must match)."""

    asset: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{2,10}$", examples=["ETH"])
    amount: AmountText | None = None
    chain: str | None = Field(default=None, min_length=1, max_length=40, examples=["ethereum"])
    destination: str | None = Field(default=None, min_length=1, max_length=128,
                                    description="The beneficiary's address on chain.")
    tx_hash: str | None = Field(default=None, min_length=1, max_length=128)
    withdrawal_id: uuid.UUID | None = None
    deposit_id: uuid.UUID | None = Field(default=None, description="An inbound transfer: the deposit it is about.")

    @classmethod
    def _problems(cls, data: dict[str, Any]) -> list[ivms101.Problem]:
        withdrawal, deposit = data.get("withdrawal_id") is not None, data.get("deposit_id") is not None
        if withdrawal and deposit:
            message = "Name a withdrawal (outbound) or a deposit (inbound), not both."
            return [(("withdrawal_id",), message), (("deposit_id",), message)]
        if withdrawal or deposit:
            return []
        return [((name,), "Required unless the transfer names a withdrawal_id or deposit_id.")
                for name in ("asset", "amount", "chain", "destination") if data.get(name) in (None, "")]


class Upsert(ivms101.Document):
    """``POST /compliance/travel-rule``: IVMS101 (snake_case, one person per side) and the transfer."""

    id: uuid.UUID | None = Field(default=None, description="Update this transfer (instead of by external_id).")
    external_id: str | None = Field(default=None, min_length=1, max_length=200,
                                    description="Your reference: the same one again updates the same draft.")
    direction: Literal["outbound", "inbound"] | None = Field(
        default=None, description="Implied by the link: a deposit is inbound, anything else outbound.")
    transfer: TransferDetails
    travel_address: str | None = Field(default=None, min_length=1, max_length=2000,
                                       description="The beneficiary VASP's TRP Travel Address (or inquiry URL).")
    send: bool = Field(default=False, description="Send it to the beneficiary's VASP now (it stays a draft "
                                                  "until the compliance worker has delivered it).")


def parse_upsert(data: Upsert | dict[str, Any]) -> Upsert:
    if isinstance(data, Upsert):
        return data
    try:
        return Upsert.model_validate(data)
    except ValidationError as error:
        raise InvalidInput(details=ivms101._fields(error)) from None


# --- views ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TransferView:
    transfer: TravelRuleTransfer
    currency: ledger.CurrencyInfo

    @property
    def amount(self) -> str:
        return self.currency.format(self.transfer.amount)


async def view(session: AsyncSession, transfer: TravelRuleTransfer) -> TransferView:
    return TransferView(transfer, await ledger.currency(session, transfer.asset))


async def views(session: AsyncSession, transfers: Sequence[TravelRuleTransfer]) -> list[TransferView]:
    units = await ledger.currencies(session, {transfer.asset for transfer in transfers}) if transfers else {}
    return [TransferView(transfer, units[transfer.asset]) for transfer in transfers]


def document_of(transfer: TravelRuleTransfer) -> ivms101.Document:
    """The transfer's IVMS101 document (``ivms101.to_wire`` of it is what goes to the counterparty)."""
    return ivms101.Document.model_validate({"originator": transfer.originator, "beneficiary": transfer.beneficiary,
                                            "originating_vasp": transfer.originating_vasp,
                                            "beneficiary_vasp": transfer.beneficiary_vasp})


def _json(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return rfc3339(value)
    return value


RECORD_FIELDS = ("external_id", "direction", "state", "originator", "beneficiary", "originating_vasp",
                 "beneficiary_vasp", "asset", "chain", "destination", "tx_hash", "withdrawal_id", "deposit_id",
                 "user_id", "travel_address", "request_identifier", "callback_url", "counterparty",
                 "counterparty_fingerprint", "reason", "created_by", "expires_at")


def _snapshot(transfer: TravelRuleTransfer, unit: ledger.CurrencyInfo) -> dict[str, Any]:
    record = {name: _json(getattr(transfer, name)) for name in RECORD_FIELDS}
    record["amount"] = unit.format(transfer.amount)
    return record


# --- reads ----------------------------------------------------------------------------------------

async def get(session: AsyncSession, transfer_id: uuid.UUID, *, lock: bool = False) -> TravelRuleTransfer:
    query = select(TravelRuleTransfer).where(TravelRuleTransfer.id == transfer_id)
    transfer = await session.scalar(query.with_for_update() if lock else query)
    if transfer is None:
        raise TransferNotFound()
    return transfer


async def by_request_identifier(session: AsyncSession, request_identifier: str, direction: str, *,
                                lock: bool = False) -> TravelRuleTransfer | None:
    """The transfer a TRP message is about (its ``request-identifier`` header), or None."""
    query = select(TravelRuleTransfer).where(TravelRuleTransfer.request_identifier == request_identifier,
                                             TravelRuleTransfer.direction == direction)
    return await session.scalar(query.with_for_update() if lock else query)


async def for_withdrawal(session: AsyncSession, withdrawal_id: uuid.UUID, *,
                         lock: bool = False) -> TravelRuleTransfer | None:
    """The withdrawal's live transfer (draft, sent or accepted), or its latest one, or None."""
    query = (select(TravelRuleTransfer).where(TravelRuleTransfer.withdrawal_id == withdrawal_id)
             .order_by(TravelRuleTransfer.state.in_(LIVE).desc(), TravelRuleTransfer.created_at.desc()).limit(1))
    return await session.scalar(query.with_for_update() if lock else query)


async def recent(session: AsyncSession, state: str | None = None, direction: str | None = None,
                 limit: int = 50) -> list[TravelRuleTransfer]:
    """Newest first, optionally one state and/or one direction."""
    query = select(TravelRuleTransfer)
    if state is not None:
        query = query.where(TravelRuleTransfer.state == state)
    if direction is not None:
        query = query.where(TravelRuleTransfer.direction == direction)
    query = query.order_by(TravelRuleTransfer.created_at.desc(), TravelRuleTransfer.id.desc()).limit(limit)
    return list(await session.scalars(query))


# --- the upsert -----------------------------------------------------------------------------------

def _mismatch(field: str, given: Any, expected: Any, what: str) -> dict[str, str]:
    return {"field": f"transfer.{field}", "message": f"The {what} has {expected}, not {given}.",
            "type": "travel_rule_link_mismatch"}


@dataclass
class _Resolved:
    direction: str
    fields: dict[str, Any]
    withdrawal: Withdrawal | None


async def _resolve(session: AsyncSession, actor: Actor, request: Upsert) -> _Resolved:
    """The record's fields from the request and the withdrawal or deposit it names."""
    details = request.transfer
    direction = "inbound" if details.deposit_id is not None else "outbound"
    if request.direction is not None and request.direction != direction:
        raise InvalidInput("An inbound transfer names a deposit; an outbound one does not.",
                           code="travel_rule_direction_mismatch",
                           details={"fields": [{"field": "direction", "message": f"This transfer is {direction}.",
                                                "type": "travel_rule_direction_mismatch"}]})
    if direction == "inbound" and not actor.is_staff:
        raise Forbidden("Only compliance officers and operators record inbound transfers.", code="travel_rule_forbidden")
    if request.send and direction == "inbound":
        raise InvalidInput("An inbound transfer was sent by the counterparty; it is accepted or rejected, not sent.",
                           code="travel_rule_inbound_not_sent")
    linked: dict[str, Any] = {}
    what = ""
    withdrawal = None
    user_id = None
    if details.withdrawal_id is not None:
        withdrawal = await session.scalar(select(Withdrawal).where(Withdrawal.id == details.withdrawal_id)
                                          .with_for_update())
        if withdrawal is None or not (actor.is_staff or withdrawal.user_id == actor.user_id):
            raise NotFound("No such withdrawal.", code="withdrawal_not_found")
        linked = {"asset": withdrawal.asset, "amount": withdrawal.amount, "chain": withdrawal.chain,
                  "destination": withdrawal.to_address, "tx_hash": withdrawal.tx_hash}
        what, user_id = "withdrawal", withdrawal.user_id
    elif details.deposit_id is not None:
        deposit = await session.get(Deposit, details.deposit_id)
        if deposit is None:
            raise NotFound("No such deposit.", code="deposit_not_found")
        linked = {"asset": deposit.asset, "amount": deposit.amount, "chain": deposit.chain,
                  "destination": deposit.to_address, "tx_hash": deposit.tx_hash}
        what, user_id = "deposit", deposit.user_id
    elif not actor.is_staff:
        raise Forbidden("Name your withdrawal (transfer.withdrawal_id): customers file Travel Rule data for "
                        "their own withdrawals only.", code="travel_rule_forbidden")

    asset = (details.asset or linked.get("asset") or "").upper()
    unit = await ledger.currency(session, asset)
    amount = unit.parse(details.amount) if details.amount is not None else linked.get("amount")
    fields: dict[str, Any] = {
        "asset": asset, "amount": amount, "chain": details.chain or linked.get("chain"),
        "destination": details.destination or linked.get("destination"),
        "tx_hash": details.tx_hash or linked.get("tx_hash"),
    }
    if linked:
        problems = []
        for name in ("asset", "amount", "chain", "destination", "tx_hash"):
            given, expected = fields[name], linked[name]
            if name in ("destination", "tx_hash") and isinstance(given, str) and isinstance(expected, str):
                same = given.lower() == expected.lower()
            else:
                same = expected is None or given == expected
            if not same:
                shown = (lambda value: unit.format(value)) if name == "amount" else (lambda value: value)
                problems.append(_mismatch(name, shown(given), shown(expected), what))
        if problems:
            raise InvalidInput(f"The transfer does not match its {what}.", code="travel_rule_link_mismatch",
                               details={"fields": problems})
        # The link's own spelling (EIP-55) is the one kept.
        fields["destination"] = linked["destination"]
        fields["tx_hash"] = linked["tx_hash"] or fields["tx_hash"]
    document = {name: getattr(request, name).model_dump(mode="json", exclude_none=True)
                for name in ("originator", "beneficiary", "originating_vasp", "beneficiary_vasp")}
    fields.update(document, withdrawal_id=details.withdrawal_id, deposit_id=details.deposit_id, user_id=user_id,
                  travel_address=request.travel_address)
    return _Resolved(direction, fields, withdrawal)


async def _existing(session: AsyncSession, actor: Actor, request: Upsert) -> TravelRuleTransfer | None:
    if request.id is not None:
        transfer = await session.scalar(select(TravelRuleTransfer).where(TravelRuleTransfer.id == request.id)
                                        .with_for_update())
        if transfer is None:
            raise TransferNotFound()
        if request.external_id is not None and transfer.external_id not in (None, request.external_id):
            raise Conflict("This transfer has another external_id.", code="travel_rule_external_id_mismatch",
                           details={"external_id": transfer.external_id})
    elif request.external_id is not None:
        transfer = await session.scalar(select(TravelRuleTransfer)
                                        .where(TravelRuleTransfer.external_id == request.external_id)
                                        .with_for_update())
    else:
        return None
    # A customer may see only transfers about their own withdrawals; anything else does not exist.
    if transfer is not None and not (actor.is_staff or (transfer.withdrawal_id is not None
                                                        and transfer.user_id == actor.user_id)):
        raise TransferNotFound()
    return transfer


async def _check_link_free(session: AsyncSession, resolved: _Resolved, transfer_id: uuid.UUID | None) -> None:
    for column, name in ((TravelRuleTransfer.withdrawal_id, "withdrawal_id"),
                         (TravelRuleTransfer.deposit_id, "deposit_id")):
        value = resolved.fields[name]
        if value is None:
            continue
        other = await session.scalar(select(TravelRuleTransfer.id).where(
            column == value, TravelRuleTransfer.state.in_(LIVE), TravelRuleTransfer.id != transfer_id))
        if other is not None:
            raise Conflict(f"This {name.removesuffix('_id')} already has a Travel Rule transfer.",
                           code="travel_rule_link_taken", details={"transfer_id": str(other)})


async def upsert(session: AsyncSession, actor: Actor, data: Upsert | dict[str, Any], *,
                 expiry_hours: float = DEFAULT_EXPIRY_HOURS,
                 directory: Directory | None = None) -> tuple[TravelRuleTransfer, bool]:
    """Create a transfer, or update the one with this ``id`` or ``external_id`` while it is a draft
    not yet sent (else 409 ``travel_rule_not_editable``; the same data again changes nothing and is
    no error). ``send`` (or a linked withdrawal waiting for it) queues its delivery. → (transfer, created).

    An outbound transfer's ``travel_address`` must decode (422 ``travel_address_invalid``) and not
    point at an internal address unless ``directory`` lists its VASP (422 ``travel_address_private``;
    no directory: none is listed)."""
    request = parse_upsert(data)
    if request.travel_address is not None and request.transfer.deposit_id is None:  # outbound: we will send to it
        (directory or Directory()).check_travel_address(request.travel_address)
    if request.external_id is not None:  # two first upserts of one external_id: one creates, one updates
        await advisory_lock(session, f"travel_rule:external:{request.external_id}")
    transfer = await _existing(session, actor, request)
    resolved = await _resolve(session, actor, request)
    await _check_link_free(session, resolved, transfer.id if transfer else None)
    unit = await ledger.currency(session, resolved.fields["asset"])
    if transfer is None:
        transfer = await _create(session, resolved, external_id=request.external_id, actor=actor.user_id,
                                 expiry_hours=expiry_hours, unit=unit)
        created = True
    else:
        await _update(session, transfer, resolved, request, actor, unit)
        created = False
    waiting = resolved.withdrawal is not None and resolved.withdrawal.state == WITHDRAWAL_WAITING
    if transfer.state == DRAFT and (request.send or waiting):
        await request_send(session, transfer, actor=actor.user_id)
    return transfer, created


async def _create(session: AsyncSession, resolved: _Resolved, *, external_id: str | None, actor: AuditActor,
                  expiry_hours: float, unit: ledger.CurrencyInfo, request_identifier: str | None = None,
                  extra: dict[str, Any] | None = None) -> TravelRuleTransfer:
    now = utcnow()
    state = INITIAL[resolved.direction]
    transfer = TravelRuleTransfer(
        id=uuid.uuid4(), external_id=external_id, direction=resolved.direction, state=state,
        request_identifier=request_identifier or str(uuid.uuid4()),
        created_by=actor if isinstance(actor, uuid.UUID) else None,
        sent_at=now if state == SENT else None, expires_at=now + timedelta(hours=expiry_hours),
        **resolved.fields, **(extra or {}))
    session.add(transfer)
    await session.flush()
    await audit.append(session, AGGREGATE, transfer.id, "travel_rule.created", _snapshot(transfer, unit), actor=actor)
    return transfer


async def _update(session: AsyncSession, transfer: TravelRuleTransfer, resolved: _Resolved, request: Upsert,
                  actor: Actor, unit: ledger.CurrencyInfo) -> None:
    fields = dict(resolved.fields)
    if request.external_id is not None:
        fields["external_id"] = request.external_id
    changed = {name: value for name, value in fields.items() if getattr(transfer, name) != value}
    if resolved.direction != transfer.direction:
        raise Conflict(f"This transfer is {transfer.direction}.", code="travel_rule_direction_mismatch")
    if not changed:
        return
    if transfer.state != DRAFT or transfer.send_requested_at is not None:
        raise NotEditable(details={"state": transfer.state, "send_requested": transfer.send_requested_at is not None,
                                   "fields": sorted(changed)})
    for name, value in changed.items():
        setattr(transfer, name, value)
    await session.flush()
    shown = {name: unit.format(value) if name == "amount" else _json(value) for name, value in changed.items()}
    await audit.append(session, AGGREGATE, transfer.id, "travel_rule.updated",
                       {"changed": sorted(changed), "fields": shown}, actor=actor.user_id)


async def request_send(session: AsyncSession, transfer: TravelRuleTransfer, *, actor: AuditActor) -> None:
    """Queue the delivery of a draft (the compliance worker's ``compliance.send_travel_rule``, after
    commit). Asking again re-queues it: delivery is idempotent, and a lost message is not fatal."""
    if transfer.direction != "outbound":
        raise InvalidInput("An inbound transfer is not sent by us.", code="travel_rule_inbound_not_sent")
    if transfer.state != DRAFT:
        return
    if transfer.send_requested_at is None:
        transfer.send_requested_at = utcnow()
        await session.flush()
        await audit.append(session, AGGREGATE, transfer.id, "travel_rule.send_requested",
                           {"travel_address": transfer.travel_address}, actor=actor)
    jobs.send_after_commit(session, SEND_TRAVEL_RULE, str(transfer.id))


# --- transitions, facts, inbound --------------------------------------------------------------------

def _facts(data: dict[str, Any] | None) -> dict[str, Any]:
    facts = dict(data or {})
    unknown = set(facts) - FACTS
    if unknown:
        raise TypeError(f"not a Travel Rule fact: {', '.join(sorted(unknown))}")
    return facts


async def transition(session: AsyncSession, transfer: TravelRuleTransfer, action: str, *, actor: AuditActor,
                     data: dict[str, Any] | None = None, expiry_hours: float | None = None) -> TravelRuleTransfer:
    """Apply ``action`` (send, accept, reject, expire) with its facts (``data``: reason, tx_hash,
    callback_url, counterparty, wire_ivms101, travel_address, deposit_id): a 409 ``invalid_state``
    when the state does not allow it. Appends ``travel_rule.<new state>`` and tells the linked
    customer. ``expiry_hours`` on ``send`` restarts the deadline from now. Load with ``lock=True``."""
    facts = _facts(data)
    previous = transfer.state
    transfer.state = next_state(previous, action)
    now = utcnow()
    if transfer.state == SENT:
        transfer.sent_at = now
        if expiry_hours is not None:
            transfer.expires_at = now + timedelta(hours=expiry_hours)
    if transfer.state in ("accepted", "rejected"):
        transfer.decided_at = now
        transfer.decided_by = actor if isinstance(actor, uuid.UUID) else None
    for name, value in facts.items():
        setattr(transfer, name, value)
    await session.flush()
    await audit.append(session, AGGREGATE, transfer.id, f"travel_rule.{transfer.state}",
                       {"from": previous, "action": action, **{name: _json(value) for name, value in facts.items()}},
                       actor=actor)
    if transfer.user_id is not None:
        # The customer learns the outcome, never a reason: telling a customer why a transfer was
        # refused can tip them off about a suspicion (FATF R.21).
        await notify(session, transfer.user_id, f"travel_rule.{transfer.state}", {
            "id": str(transfer.id), "state": transfer.state, "direction": transfer.direction,
            "withdrawal_id": _json(transfer.withdrawal_id), "deposit_id": _json(transfer.deposit_id)})
    return transfer


async def record(session: AsyncSession, transfer: TravelRuleTransfer, *, actor: AuditActor,
                 data: dict[str, Any]) -> TravelRuleTransfer:
    """Facts learned without a state change (the approval's callback, the txid, the message as sent,
    the deposit that arrived): set and audited as ``travel_rule.recorded``; unchanged facts are skipped."""
    changed = {name: value for name, value in _facts(data).items() if getattr(transfer, name) != value}
    if not changed:
        return transfer
    for name, value in changed.items():
        setattr(transfer, name, value)
    await session.flush()
    await audit.append(session, AGGREGATE, transfer.id, "travel_rule.recorded",
                       {name: _json(value) for name, value in changed.items()}, actor=actor)
    return transfer


async def create_inbound(session: AsyncSession, *, request_identifier: str,
                         document: ivms101.Document | dict[str, Any], asset: str, amount: Decimal | str, chain: str,
                         destination: str, callback_url: str | None = None, travel_address: str | None = None,
                         counterparty: str | None = None, counterparty_fingerprint: str | None = None,
                         wire_ivms101: dict[str, Any] | None = None,
                         user_id: uuid.UUID | None = None, deposit_id: uuid.UUID | None = None,
                         tx_hash: str | None = None, actor: AuditActor = None,
                         expiry_hours: float = DEFAULT_EXPIRY_HOURS) -> tuple[TravelRuleTransfer, bool]:
    """Record a transfer a counterparty sent us (state ``sent``), once per ``request_identifier``:
    the same identifier again returns the first record (``created`` False). ``amount`` is in major
    units (TRP's number). ``document`` is snake_case (``ivms101.from_wire`` of the message)."""
    await advisory_lock(session, f"travel_rule:request:{request_identifier}")
    existing = await by_request_identifier(session, request_identifier, "inbound", lock=True)
    if existing is not None:
        return existing, False
    parsed = document if isinstance(document, ivms101.Document) else ivms101.parse(document)
    unit = await ledger.currency(session, asset.upper())
    text_amount = format(amount, "f") if isinstance(amount, Decimal) else amount
    if isinstance(amount, Decimal) and "." in text_amount:
        text_amount = text_amount.rstrip("0").rstrip(".")
    fields = {name: getattr(parsed, name).model_dump(mode="json", exclude_none=True)
              for name in ("originator", "beneficiary", "originating_vasp", "beneficiary_vasp")}
    fields.update(asset=unit.code, amount=unit.parse(text_amount), chain=chain, destination=destination,
                  tx_hash=tx_hash, withdrawal_id=None, deposit_id=deposit_id, user_id=user_id,
                  travel_address=travel_address)
    transfer = await _create(session, _Resolved("inbound", fields, None), external_id=None, actor=actor,
                             expiry_hours=expiry_hours, unit=unit, request_identifier=request_identifier,
                             extra={"callback_url": callback_url, "counterparty": counterparty,
                                    "counterparty_fingerprint": counterparty_fingerprint,
                                    "wire_ivms101": wire_ivms101})
    return transfer, True


# --- expiry ---------------------------------------------------------------------------------------

EXPIRY_BATCH = 500


async def expire_stale(session: AsyncSession, now: datetime) -> list[TravelRuleTransfer]:
    """Expire the drafts and sent transfers whose deadline is at or before ``now`` (at most a batch
    per call; rows another transaction holds are left for the next run)."""
    transfers = list(await session.scalars(
        select(TravelRuleTransfer)
        .where(TravelRuleTransfer.state.in_(OPEN), TravelRuleTransfer.expires_at <= now)
        .order_by(TravelRuleTransfer.expires_at).limit(EXPIRY_BATCH).with_for_update(skip_locked=True)))
    for transfer in transfers:
        reason = ("Not sent before its deadline." if transfer.state == DRAFT
                  else "No answer from the counterparty before the deadline.")
        await transition(session, transfer, "expire", actor=None, data={"reason": reason})
    return transfers
