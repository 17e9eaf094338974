"""KYC through the real routes: submission, the officers' queue, decisions, GET /me, audit, notifications."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from compliance.screening import service as screening
from core import audit
from core.db import unit_of_work
from notifications.service import Notification


def application(**changes) -> dict:
    body = {"first_name": "Ada", "last_name": f"Lovelace-{uuid.uuid4().hex[:6]}", "date_of_birth": "1985-12-10",
            "country": "CA", "address": {"street_name": "Rue Sherbrooke O", "building_number": "1380",
                                         "post_code": "H3G 1J5", "town_name": "Montreal", "country": "CA"}}
    body.update(changes)
    return body


async def kyc_status(client, user) -> str:
    response = await client.get("/api/v1/me", headers=user.headers)
    assert response.status == 200
    return (await response.json())["kyc_status"]


async def submit(client, user, **changes):
    return await client.post("/api/v1/me/kyc", json=application(**changes), headers=user.headers)


async def decide(client, officer, user_id, decision, reason="checked against documents", **extra):
    return await client.post(f"/api/v1/admin/kyc/{user_id}/decision",
                             json={"decision": decision, "reason": reason, **extra}, headers=officer.headers)


async def test_submission_makes_the_case_pending_and_me_shows_it(client, login_as) -> None:
    user = await login_as(client)
    assert await kyc_status(client, user) == "unverified"
    response = await submit(client, user)
    assert response.status == 201, await response.text()
    body = await response.json()
    assert (body["state"], body["user_id"], body["level"]) == ("pending", str(user.user_id), 0)
    assert await kyc_status(client, user) == "pending"


async def test_submitting_while_pending_is_a_conflict(client, login_as) -> None:
    user = await login_as(client)
    assert (await submit(client, user)).status == 201
    again = await submit(client, user)
    assert again.status == 409
    assert (await again.json())["error"]["code"] == "kyc_invalid_state"


@pytest.mark.parametrize("change", [
    {"country": "Canada"}, {"date_of_birth": "10/12/1985"}, {"first_name": ""},
    {"address": {"street_name": "x", "town_name": "y", "country": "CA"}},
], ids=["country", "date", "empty-name", "address-incomplete"])
async def test_invalid_application_is_a_422(client, login_as, change) -> None:
    user = await login_as(client)
    response = await submit(client, user, **change)
    assert response.status == 422
    assert await kyc_status(client, user) == "unverified"


async def test_approval_updates_me_appends_events_and_notifies(client, login_as, factory) -> None:
    user, officer = await login_as(client), await login_as(client, "compliance")
    await submit(client, user)
    response = await decide(client, officer, user.user_id, "approved", level=2)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["state"], body["level"], body["reason"]) == ("approved", 2, "checked against documents")
    assert await kyc_status(client, user) == "approved"
    async with factory() as session:
        events = await audit.events_of(session, "kyc_case", user.user_id)
        notes = (await session.scalars(select(Notification).where(Notification.user_id == user.user_id,
                                                                  Notification.type == "kyc.decided"))).all()
    assert [(e.type, e.actor) for e in events] == [("kyc.submitted", str(user.user_id)),
                                                   ("kyc.approved", str(officer.user_id))]
    assert events[1].data == {"decision": "approved", "level": 2, "reason": "checked against documents"}
    assert [note.data for note in notes] == [{"state": "approved", "level": 2}]
    # Final: neither the officer nor the user moves it again.
    assert (await decide(client, officer, user.user_id, "rejected")).status == 409
    assert (await submit(client, user)).status == 409


async def test_needs_info_then_resubmission_then_rejection(client, login_as, factory) -> None:
    user, officer = await login_as(client), await login_as(client, "admin")
    await submit(client, user)
    asked = await decide(client, officer, user.user_id, "needs_info", reason="proof of address is unreadable")
    assert (await asked.json())["state"] == "needs_info"
    assert await kyc_status(client, user) == "needs_info"
    for decision in ("approved", "rejected", "needs_info"):  # nothing to decide until the user answers
        assert (await decide(client, officer, user.user_id, decision)).status == 409
    again = await submit(client, user, town_name="Laval")
    assert again.status == 201 and (await again.json())["state"] == "pending"
    rejected = await decide(client, officer, user.user_id, "rejected", reason="document forged")
    assert (await rejected.json())["state"] == "rejected"
    assert await kyc_status(client, user) == "rejected"
    assert (await submit(client, user)).status == 409
    async with factory() as session:
        events = [e.type for e in await audit.events_of(session, "kyc_case", user.user_id)]
        notes = (await session.scalars(select(Notification.data).where(
            Notification.user_id == user.user_id, Notification.type == "kyc.decided").order_by(Notification.seq))).all()
    assert events == ["kyc.submitted", "kyc.needs_info", "kyc.submitted", "kyc.rejected"]
    # The user is told what information is missing, not why they were rejected.
    assert notes == [{"state": "needs_info", "level": 0, "reason": "proof of address is unreadable"},
                     {"state": "rejected", "level": 0}]


async def test_queue_lists_pending_cases_oldest_first_with_sla_age(client, login_as) -> None:
    first, second, decided = await login_as(client), await login_as(client), await login_as(client)
    officer = await login_as(client, "compliance")
    for user in (first, second, decided):
        await submit(client, user)
    await decide(client, officer, decided.user_id, "approved")
    response = await client.get("/api/v1/admin/kyc/queue?limit=500", headers=officer.headers)
    assert response.status == 200
    items = (await response.json())["items"]
    ids = [item["user_id"] for item in items]
    assert ids.index(str(first.user_id)) < ids.index(str(second.user_id))
    assert str(decided.user_id) not in ids
    assert all(item["state"] == "pending" for item in items)
    assert [item["submitted_at"] for item in items] == sorted(item["submitted_at"] for item in items)
    mine = items[ids.index(str(first.user_id))]
    assert mine["sla_age_seconds"] >= 0 and mine["sla_breached"] is False
    assert mine["address"]["town_name"] == "Montreal"


@pytest.mark.parametrize("role", [None, "support", "operator"])
async def test_only_compliance_and_admin_see_the_queue_and_decide(client, login_as, role) -> None:
    user = await login_as(client)
    await submit(client, user)
    caller = await login_as(client, role) if role else await login_as(client)
    assert (await client.get("/api/v1/admin/kyc/queue", headers=caller.headers)).status == 403
    assert (await decide(client, caller, user.user_id, "approved")).status == 403
    client.session.cookie_jar.clear()  # login left a cookie: these go out with no credentials at all
    assert (await client.get("/api/v1/admin/kyc/queue")).status == 401
    assert (await client.post("/api/v1/me/kyc", json=application())).status == 401


async def test_decision_refusals(client, login_as) -> None:
    officer, stranger = await login_as(client, "compliance"), await login_as(client)
    assert (await decide(client, officer, stranger.user_id, "approved")).status == 404
    assert (await decide(client, officer, "not-a-uuid", "approved")).status == 404
    await submit(client, stranger)
    assert (await decide(client, officer, stranger.user_id, "maybe")).status == 422
    assert (await decide(client, officer, stranger.user_id, "approved", reason="")).status == 422
    assert (await decide(client, officer, stranger.user_id, "approved", level=9)).status == 422


async def test_a_sanctioned_name_is_shown_to_the_officer_not_the_user(client, login_as, factory) -> None:
    surname = f"Sanctioned{uuid.uuid4().hex[:8]}"
    async with unit_of_work(factory) as session:
        await screening.load(session, f"""<?xml version="1.0"?>
<Sanctions xmlns="https://sanctionslistservice.ofac.treas.gov/api/PublicationPreview/exports/ADVANCED_XML">
<ReferenceValueSets><FeatureTypeValues><FeatureType ID="345">Digital Currency Address - ETH</FeatureType>
</FeatureTypeValues></ReferenceValueSets><DistinctParties><DistinctParty FixedRef="77"><Profile ID="77">
<Identity ID="1"><Alias Primary="true"><DocumentedName><DocumentedNamePart><NamePartValue>{surname.upper()}
</NamePartValue></DocumentedNamePart><DocumentedNamePart><NamePartValue>Boris</NamePartValue></DocumentedNamePart>
</DocumentedName></Alias></Identity></Profile></DistinctParty></DistinctParties></Sanctions>""".encode(), "sdn.xml")
    user, officer = await login_as(client), await login_as(client, "compliance")
    response = await submit(client, user, first_name="Boris", last_name=surname)
    assert response.status == 201
    assert "screening_hit" not in await response.json()
    queue = (await (await client.get("/api/v1/admin/kyc/queue?limit=500", headers=officer.headers)).json())["items"]
    mine = next(item for item in queue if item["user_id"] == str(user.user_id))
    assert mine["screening_hit"]["kind"] == "name"
    assert mine["screening_hit"]["source"] == "ofac_sdn" and mine["screening_hit"]["list_uid"] == "77"


async def test_an_officer_cannot_decide_their_own_case(client, login_as) -> None:
    officer = await login_as(client, "compliance")
    assert (await submit(client, officer)).status == 201
    own = await decide(client, officer, officer.user_id, "approved")
    assert own.status == 403 and (await own.json())["error"]["code"] == "own_kyc_case"
    assert await kyc_status(client, officer) == "pending"
