"""Escrow contracts, disputes and evidence; admin oversight."""

from __future__ import annotations

from aiohttp import web

from api.access import AUTHENTICATED, roles
from api.escrow.schemas import (
    AdminEscrowQuery,
    CreateEscrowIn,
    DisputeIn,
    EscrowListOut,
    EscrowListQuery,
    EscrowOut,
    EvidenceForm,
    EvidenceListOut,
    EvidenceOut,
    HistoryOut,
    RejectIn,
    ResolveIn,
)
from api.http import multipart_file, path_uuid, stored_file
from api.keys import FILE_STORE, SETTINGS
from api.middleware import db_session
from api.principal import current
from api.registry import Routes
from api.schemas import Empty
from core.storage import IncomingFile
from custody.escrow import evidence, service

escrow = Routes(tag="escrow", scopes="escrow")
escrow_admin = Routes(tag="admin")

ESCROW = {200: EscrowOut}
NOT_FOUND = {404: ("escrow_not_found",)}
STATE = {**NOT_FOUND, 409: ("invalid_state",)}


def _actor(request: web.Request) -> service.Actor:
    principal = current(request)
    return service.Actor(principal.user_id, principal.roles)


def _escrow_id(request: web.Request):  # noqa: ANN202 - a UUID
    return path_uuid(request, "escrow_id", "escrow_not_found")


@escrow.post("/escrow", access=AUTHENTICATED, body=CreateEscrowIn, responses={201: EscrowOut}, idempotent=True,
             errors={422: ("seller_is_buyer", "invalid_amount")})
async def create_escrow(request: web.Request, body: CreateEscrowIn) -> EscrowOut:
    """Create an escrow contract; the caller is the buyer. `seller_email` may name someone not yet registered:
    the contract's seller is the account that has verified that email, once there is one. The answer's
    `seller` is always null (the detail shows the linked seller to the parties)."""
    view = await service.create(db_session(request), _actor(request), title=body.title, description=body.description,
                                amount=body.amount, currency=body.currency, seller_email=body.seller_email)
    return EscrowOut.created(view)


@escrow.get("/escrow/contracts", access=AUTHENTICATED, query=EscrowListQuery, responses={200: EscrowListOut})
async def list_contracts(request: web.Request, query: EscrowListQuery) -> EscrowListOut:
    """Contracts where the caller is a party (`role` buyer or seller), newest first."""
    page = await service.search(db_session(request), party=current(request).user_id, role=query.role,
                                state=query.state, limit=query.limit, cursor=query.cursor)
    return EscrowListOut(items=[EscrowOut.of(view) for view in page.items], next_cursor=page.next_cursor)


@escrow.get("/escrow/contracts/{escrow_id}", access=AUTHENTICATED, responses=ESCROW, errors=NOT_FOUND)
async def get_contract(request: web.Request) -> EscrowOut:
    """Contract detail, for its parties and staff."""
    return EscrowOut.of(await service.get(db_session(request), _actor(request), _escrow_id(request)))


@escrow.get("/escrow/contracts/{escrow_id}/history", access=AUTHENTICATED, responses={200: HistoryOut},
            errors=NOT_FOUND)
async def contract_history(request: web.Request) -> HistoryOut:
    """The contract's timeline, read from the audit event store."""
    return HistoryOut.of(await service.history(db_session(request), _actor(request), _escrow_id(request)))


@escrow.post("/escrow/{escrow_id}/fund", access=AUTHENTICATED, body=Empty, responses=ESCROW, idempotent=True,
             errors={**STATE, 403: ("buyer_only", "withdrawals_frozen"), 422: ("insufficient_funds",)})
async def fund(request: web.Request, body: Empty) -> EscrowOut:
    """Fund the escrow (buyer): the amount is held on the buyer's balance.

    Refusals: buyer_only (403), withdrawals_frozen (403: the buyer's money is frozen), invalid_state (409),
    insufficient_funds (422), escrow_not_found (404).
    """
    return EscrowOut.of(await service.fund(db_session(request), _actor(request), _escrow_id(request)))


@escrow.post("/escrow/{escrow_id}/release", access=AUTHENTICATED, body=Empty, responses=ESCROW, idempotent=True,
             errors={**STATE, 403: ("buyer_only", "withdrawals_frozen"), 409: ("invalid_state", "seller_required")})
async def release(request: web.Request, body: Empty) -> EscrowOut:
    """Release the funds to the seller (buyer), minus the platform fee.

    Refusals: buyer_only (403), withdrawals_frozen (403: the buyer's money is frozen), invalid_state /
    seller_required (409), escrow_not_found (404).
    """
    settings = request.config_dict[SETTINGS]
    return EscrowOut.of(await service.release(db_session(request), _actor(request), _escrow_id(request),
                                              settings.escrow_fee_bps))


@escrow.post("/escrow/{escrow_id}/cancel", access=AUTHENTICATED, body=Empty, responses=ESCROW, idempotent=True,
             errors={**STATE, 403: ("buyer_only",)})
async def cancel(request: web.Request, body: Empty) -> EscrowOut:
    """Cancel an escrow that was never funded (buyer)."""
    return EscrowOut.of(await service.cancel(db_session(request), _actor(request), _escrow_id(request)))


@escrow.post("/escrow/{escrow_id}/dispute", access=AUTHENTICATED, body=DisputeIn, responses=ESCROW,
             errors={**STATE, 403: ("party_only",)})
async def open_dispute(request: web.Request, body: DisputeIn) -> EscrowOut:
    """Open a dispute on a funded escrow (buyer or seller)."""
    return EscrowOut.of(await service.dispute(db_session(request), _actor(request), _escrow_id(request), body.reason))


@escrow.post("/escrow/{escrow_id}/dispute/evidence", access=AUTHENTICATED, form=EvidenceForm,
             responses={201: EvidenceOut},
             errors={**NOT_FOUND, 403: ("party_or_arbiter",), 409: ("invalid_state", "too_many_files"),
                     422: ("one_file_only", "file_required")})
async def upload_evidence(request: web.Request) -> web.Response:
    """Upload an evidence file (multipart field `file`, optional `description`); its type is read from its bytes.

    Refusals: party_or_arbiter (403: only the parties, compliance or an admin write to a dispute),
    invalid_state / too_many_files (409), escrow_not_found (404).
    """
    settings = request.config_dict[SETTINGS]
    session, escrow_id = db_session(request), _escrow_id(request)

    async def stage(upload: IncomingFile, fields: dict[str, str]) -> evidence.StagedEvidence:
        return await evidence.stage(session, request.config_dict[FILE_STORE], upload,
                                    max_bytes=settings.evidence_max_bytes)

    staged, fields = await multipart_file(request, stage, max_bytes=settings.evidence_max_bytes)
    stored = await evidence.add(session, _actor(request), escrow_id, staged, _description(fields),
                                max_files=settings.evidence_max_files)
    return web.json_response(text=EvidenceOut.model_validate(stored, from_attributes=True).model_dump_json(),
                             status=201)


@escrow.get("/escrow/{escrow_id}/dispute/evidence", access=AUTHENTICATED, responses={200: EvidenceListOut},
            errors=NOT_FOUND)
async def list_evidence(request: web.Request) -> EvidenceListOut:
    """Evidence files of the dispute (deleted ones are hidden)."""
    rows = await evidence.listing(db_session(request), _actor(request), _escrow_id(request))
    return EvidenceListOut(items=[EvidenceOut.model_validate(row, from_attributes=True) for row in rows])


@escrow.get("/escrow/{escrow_id}/dispute/evidence/{file_id}", access=AUTHENTICATED,
            responses={200: "application/octet-stream"}, errors={404: ("escrow_not_found", "evidence_not_found")})
async def download_evidence(request: web.Request) -> web.StreamResponse:
    """The exact bytes, as an attachment with the sniffed type."""
    found = await evidence.get(db_session(request), _actor(request), _escrow_id(request),
                               path_uuid(request, "file_id", "evidence_not_found"))
    return await stored_file(request, found.id, filename=found.filename, content_type=found.content_type,
                             size=found.size)


@escrow.post("/escrow/{escrow_id}/dispute/evidence/{file_id}/delete", access=AUTHENTICATED, body=Empty,
             responses={200: EvidenceOut},
             errors={403: ("uploader_only", "party_to_dispute"), 404: ("escrow_not_found", "evidence_not_found"),
                     409: ("invalid_state",)})
async def delete_evidence(request: web.Request, body: Empty) -> EvidenceOut:
    """Hide an evidence file (uploader or admin); it is kept for the audit trail.

    Refusals: uploader_only (403), party_to_dispute (403: an admin who is a party hides only their own
    files), invalid_state (409).
    """
    hidden = await evidence.hide(db_session(request), _actor(request), _escrow_id(request),
                                 path_uuid(request, "file_id", "evidence_not_found"))
    return EvidenceOut.model_validate(hidden, from_attributes=True)


@escrow.post("/escrow/{escrow_id}/dispute/resolve", access=roles("compliance", "admin"), scope=None, body=ResolveIn,
             responses=ESCROW, idempotent=True,
             errors={**NOT_FOUND, 403: ("arbiter_only", "party_to_dispute", "withdrawals_frozen"),
                     409: ("invalid_state", "seller_required"),
                     422: ("seller_amount_required", "invalid_split", "invalid_amount")})
async def resolve_dispute(request: web.Request, body: ResolveIn) -> EscrowOut:
    """Decide a dispute: release to the seller, refund the buyer, or split.

    Refusals: arbiter_only (403), party_to_dispute (403: the arbiter is the buyer or the seller),
    withdrawals_frozen (403: release or split while the buyer's money is frozen; a refund stays possible),
    invalid_state / seller_required (409), invalid_split (422).
    """
    settings = request.config_dict[SETTINGS]
    return EscrowOut.of(await service.resolve(db_session(request), _actor(request), _escrow_id(request),
                                              outcome=body.outcome, seller_amount=body.seller_amount, note=body.note,
                                              fee_bps=settings.escrow_fee_bps))


@escrow.post("/escrow/{escrow_id}/dispute/reject", access=roles("compliance", "admin"), scope=None, body=RejectIn,
             responses=ESCROW, errors={**STATE, 403: ("arbiter_only", "party_to_dispute")})
async def reject_dispute(request: web.Request, body: RejectIn) -> EscrowOut:
    """Reject a dispute: the escrow is funded again, its hold untouched.

    Refusals: arbiter_only / party_to_dispute (403: the arbiter is the buyer or the seller),
    invalid_state (409), escrow_not_found (404).
    """
    return EscrowOut.of(await service.reject(db_session(request), _actor(request), _escrow_id(request), body.note))


@escrow_admin.get("/admin/escrow/contracts", access=roles("admin", "compliance", "support"), query=AdminEscrowQuery,
                  responses={200: EscrowListOut})
async def admin_contracts(request: web.Request, query: AdminEscrowQuery) -> EscrowListOut:
    """Every contract, filtered by state, user and creation time."""
    page = await service.search(db_session(request), state=query.state, user_id=query.user_id,
                                created_from=query.created_from, created_to=query.created_to, limit=query.limit,
                                cursor=query.cursor)
    return EscrowListOut(items=[EscrowOut.of(view) for view in page.items], next_cursor=page.next_cursor)


def _description(fields: dict[str, str]) -> str | None:
    return (fields.get("description") or "").strip()[:1000] or None
