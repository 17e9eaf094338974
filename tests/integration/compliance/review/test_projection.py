"""Transaction reviews can be rebuilt from their audit events, exactly."""

from __future__ import annotations

from compliance.review import service as review
from compliance.review.projection import reduce_transaction_review, stored_transaction_review
from core.db import unit_of_work
from tests.factories import credit_user
from tests.integration.compliance.conftest import rebuilt


async def test_transaction_review_folds_to_its_row(client, login_as, factory) -> None:
    user, officer = (await login_as(client)).user_id, (await login_as(client, "compliance")).user_id
    posted = await credit_user(factory, user, "USD", 100)
    steps = [lambda s: review.flag(s, posted.id, "why", officer),
             lambda s: review.resolve(s, posted.id, "cleared", "fine", officer),
             lambda s: review.flag(s, posted.id, "again", None)]
    for step in steps:
        async with unit_of_work(factory) as session:
            await step(session)
        folded, stored = await rebuilt(factory, "transaction_review", posted.id, reduce_transaction_review,
                                       stored_transaction_review)
        assert folded == stored
