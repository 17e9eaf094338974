"""KYC cases can be rebuilt from their audit events, exactly."""

from __future__ import annotations

import uuid
from datetime import date

from compliance.kyc import service as kyc
from compliance.kyc.projection import reduce_kyc_case, stored_kyc_case
from core.db import unit_of_work
from tests.integration.compliance.conftest import rebuilt


async def test_kyc_case_folds_to_its_row(client, login_as, factory) -> None:
    user, officer = (await login_as(client)).user_id, (await login_as(client, "compliance")).user_id
    address = {"street_name": "Main St", "building_number": "1", "post_code": "10001", "town_name": "NYC",
               "country": "US"}
    submission = kyc.Submission("Grace", f"Hopper-{uuid.uuid4().hex[:6]}", date(1906, 12, 9), "US", address)
    steps = [lambda s: kyc.submit(s, user, submission),
             lambda s: kyc.decide(s, user, "needs_info", "blurry", officer),
             lambda s: kyc.submit(s, user, submission),
             lambda s: kyc.decide(s, user, "approved", "ok", officer, 2)]
    for step in steps:
        async with unit_of_work(factory) as session:
            await step(session)
        folded, stored = await rebuilt(factory, "kyc_case", user, reduce_kyc_case, stored_kyc_case)
        assert folded == stored
