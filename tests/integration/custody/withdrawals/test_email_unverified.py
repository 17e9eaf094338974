"""An account that has not proved it owns its email address withdraws nothing.

The refusal comes right after the body is validated and before the step-up code is asked for, and
it holds nothing: no withdrawal row, no hold, no failed-code count.
"""

from __future__ import annotations

from tests.factories import enable_mfa, login_as
from tests.integration.custody.withdrawals.conftest import API, balance, body, error_code, withdrawal_count


async def test_an_unverified_account_cannot_request_a_withdrawal_and_holds_nothing(client, database_url, db):
    user = await login_as(client, database_url, verified=False)
    await enable_mfa(client, user)  # without the email check first, this request would be 401 mfa_required

    response = await client.post(f"{API}/platform/crypto/withdrawals/request", json=body(), headers=user.headers)
    assert response.status == 403, await response.text()
    assert await error_code(response) == "email_unverified"
    assert await withdrawal_count(db, user.user_id) == 0
    assert (await balance(client, user.headers, "ETH"))["held"] == "0"


async def test_a_body_that_does_not_validate_is_still_a_422(client, database_url):
    user = await login_as(client, database_url, verified=False)
    response = await client.post(f"{API}/platform/crypto/withdrawals/request", json=body(amount="0.0000000000000000001"),
                                 headers=user.headers)
    assert response.status == 422 and await error_code(response) == "invalid_amount"
