"""The process wiring: every domain's actors, models and plug-ins, loaded once at process start.

The domains never import each other upwards. Where a lower one needs something from above, it
defines a seam and this module, at the top, fills it: the job names a service sends are answered
by the actors imported here (``jobs.registry``), the replay asks the projections registered here
(``core.audit``), product emails read the variables the owning domains register
(``notifications.emails``), custody's withdrawal checks get compliance's implementation
(``custody.withdrawals.policy``), the signer's replies to the treasury's hot → cold transfers
reach it (``custody.withdrawals.requesters``), and the webhooks outbox hears every audit event
(``core.audit`` observers) about the resources ``cli.webhook_resources`` describes to it. Alembic
sees the tables of every models module imported here.
"""

from __future__ import annotations

# Each imported for what importing it registers; nothing else reads these names.
import compliance.kyc.models  # noqa: F401
import compliance.kyc.projection  # noqa: F401
import compliance.models  # noqa: F401
import compliance.reporting.actors  # noqa: F401
import compliance.reporting.models  # noqa: F401
import compliance.review.actors  # noqa: F401
import compliance.review.models  # noqa: F401
import compliance.review.projection  # noqa: F401
import compliance.screening.models  # noqa: F401
import compliance.travel_rule.actors  # noqa: F401
import compliance.travel_rule.models  # noqa: F401
import compliance.travel_rule.projection  # noqa: F401
import content.models  # noqa: F401
import content.projection  # noqa: F401
import core.audit  # noqa: F401
import core.heartbeats  # noqa: F401
import core.idempotency  # noqa: F401
import custody.addresses.actors  # noqa: F401
import custody.addresses.models  # noqa: F401
import custody.deposits.actors  # noqa: F401
import custody.deposits.models  # noqa: F401
import custody.deposits.projection  # noqa: F401
import custody.escrow.emails  # noqa: F401
import custody.escrow.models  # noqa: F401
import custody.escrow.projection  # noqa: F401
import custody.freezes  # noqa: F401
import custody.ledger.models  # noqa: F401
import custody.treasury.actors  # noqa: F401
import custody.treasury.hot_cold_actors  # noqa: F401
import custody.treasury.hot_cold_models  # noqa: F401
import custody.treasury.models  # noqa: F401
import custody.treasury.reserves_actors  # noqa: F401
import custody.treasury.reserves_models  # noqa: F401
import custody.withdrawals.actors  # noqa: F401
import custody.withdrawals.emails  # noqa: F401
import custody.withdrawals.models  # noqa: F401
import custody.withdrawals.projection  # noqa: F401
import identity.api_keys.models  # noqa: F401
import identity.grants.models  # noqa: F401
import identity.grants.projection  # noqa: F401
import identity.models  # noqa: F401
import identity.projection  # noqa: F401
import jobs.heartbeat  # noqa: F401
import jobs.runs  # noqa: F401
import notifications.actors  # noqa: F401
import notifications.service  # noqa: F401
import notifications.webhooks.actors  # noqa: F401
import notifications.webhooks.emails  # noqa: F401
import notifications.webhooks.models  # noqa: F401
import support.actors  # noqa: F401
import support.emails  # noqa: F401
import support.models  # noqa: F401
import support.projection  # noqa: F401
from cli import webhook_resources
from compliance.withdrawal_checks import ComplianceWithdrawalChecks
from core import audit
from custody.treasury.hot_cold import COLD_TRANSFER_REQUESTER
from custody.treasury.requests import TOPUP_NONCES
from custody.withdrawals import policy, requesters
from notifications.webhooks import outbox


def load() -> None:
    """Install the implementations the lower layers asked for (idempotent: any process, any test)."""
    policy.install(ComplianceWithdrawalChecks())
    requesters.install(COLD_TRANSFER_REQUESTER)  # hot → cold transfers: the signer answers them as withdrawals
    requesters.install(TOPUP_NONCES)  # sweeps' gas top-ups hold hot wallet nonces too
    webhook_resources.install()  # what webhooks announce, with the API's own view of each resource
    audit.install_observer(outbox.record)  # an announced audit event writes its webhook deliveries
