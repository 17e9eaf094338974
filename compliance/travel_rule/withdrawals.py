"""The Travel Rule transfer of a withdrawal: its IVMS101 document, built from what we know.

The originator is our customer: their KYC case when they have one (legal name, geographic
address, date of birth), else their display name with their customer id (IVMS101 C1 accepts a
customer identification). The beneficiary is what the withdrawal request said (name, the
destination address as account number, their VASP). The originating VASP is our identity.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from compliance.kyc.models import KycCase
from compliance.travel_rule import service, trp
from compliance.travel_rule.directory import Directory
from core.errors import InvalidInput
from core.settings import Settings
from custody.withdrawals.models import Withdrawal
from identity.models import User


def check_request(travel_rule: dict[str, Any]) -> None:
    """Before anything is written: the Travel Address decodes and the beneficiary VASP is named."""
    trp.inquiry_url(travel_rule["travel_address"])
    if not travel_rule.get("beneficiary_vasp"):
        raise InvalidInput("A Travel Address needs the beneficiary VASP's legal name.", code="travel_rule_required",
                           details={"fields": [{"field": "travel_rule.beneficiary_vasp",
                                                "message": "required with travel_address"}]})


async def _originator(session: AsyncSession, user_id: uuid.UUID) -> dict[str, Any]:
    case = await session.get(KycCase, user_id)
    if case is not None:
        address = {key: value for key, value in (case.address or {}).items() if value}
        person: dict[str, Any] = {
            "name": {"name_identifiers": [{"primary_identifier": case.last_name, "secondary_identifier": case.first_name,
                                           "name_identifier_type": "LEGL"}]},
            "geographic_addresses": [{"address_type": "HOME", **address}] if address.get("town_name") else [],
            "customer_identification": str(user_id),
        }
    else:
        display_name = await session.scalar(select(User.display_name).where(User.id == user_id))
        person = {"name": {"name_identifiers": [{"primary_identifier": display_name or str(user_id),
                                                 "name_identifier_type": "LEGL"}]},
                  "customer_identification": str(user_id)}
    return {"natural_person": person, "account_numbers": [str(user_id)]}


def _vasp(name: str, lei: str | None = None, country: str | None = None) -> dict[str, Any]:
    legal = {"name": name, **({"lei": lei} if lei else {}), **({"country_of_registration": country} if country else {})}
    return {"legal_person": legal}


async def document(session: AsyncSession, settings: Settings, user_id: uuid.UUID, destination: str,
                   travel_rule: dict[str, Any]) -> dict[str, Any]:
    """The snake_case IVMS101 document of a withdrawal's transfer."""
    beneficiary: dict[str, Any] = {"name": {"name_identifiers": [{"primary_identifier": travel_rule["beneficiary_name"],
                                                                   "name_identifier_type": "LEGL"}]}}
    if travel_rule.get("beneficiary_country"):
        beneficiary["country_of_residence"] = travel_rule["beneficiary_country"]
    identity = settings.vasp()
    return {
        "originator": await _originator(session, user_id),
        "beneficiary": {"natural_person": beneficiary, "account_numbers": [destination]},
        "originating_vasp": _vasp(identity.legal_name, identity.lei, identity.country),
        "beneficiary_vasp": _vasp(travel_rule["beneficiary_vasp"]),
    }


async def open_for_withdrawal(session: AsyncSession, settings: Settings, withdrawal: Withdrawal,
                              travel_rule: dict[str, Any], actor: uuid.UUID) -> uuid.UUID:
    """The outbound transfer of a withdrawal that waits for it (``awaiting_travel_rule``): created
    and, since its withdrawal waits, queued for sending after commit."""
    request = {**await document(session, settings, withdrawal.user_id, withdrawal.to_address, travel_rule),
               "transfer": {"withdrawal_id": withdrawal.id}, "travel_address": travel_rule["travel_address"]}
    transfer, _ = await service.upsert(session, service.Actor(actor), request, directory=Directory.of(settings))
    return transfer.id
