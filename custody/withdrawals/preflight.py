"""Pre-flight: the node runs a payment (``eth_estimateGas``) before anything is held or signed.

A payment that reverts on chain is still mined: the hot wallet pays its gas and the customer's
money does not arrive (a contract that refuses ETH, a token that refuses the transfer, a gas
limit too small for the recipient's code). The node can tell beforehand, by executing the
transaction against its latest state. Two checks use it:

- **at request** (``check_request``, in ``service.request`` before anything is held): a verdict
  "would revert" is a 422 ``would_revert``. When the node gives no verdict (unreachable, an RPC
  error, no signed hot wallet known to this process) the request goes on: it is only an intent,
  and the check before signing is the one that decides.
- **before signing** (``pipeline.request_signature``): binding. No sign request leaves without a
  passing estimate; "would revert" rolls the approved withdrawal back (hold voided, audited); no
  verdict raises, and the tracker asks again later.

State can change between the estimate and the block (another withdrawal spends the hot wallet's
tokens first): a mined revert is still possible, and ``pipeline`` books it (``failed``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from core.errors import InvalidInput
from core.settings import ChainSettings, Settings, SettingsError
from custody.chains import Chain, ChainError, ExecutionReverted
from custody.chains.transactions import payment_call
from custody.hd import XpubError, signed_xpubs
from custody.withdrawals import metrics

log = logging.getLogger(__name__)


class WouldRevert(InvalidInput):
    code, message = "would_revert", ("The chain would refuse this payment now (it would fail and still cost gas); "
                                     "check the destination, or try again later.")


def gas_limit(settings: Settings, token: str | None) -> int:
    """The gas limit a withdrawal transaction is sent with."""
    return settings.withdrawal_gas_limit_token if token else settings.withdrawal_gas_limit_native


async def check_payment(chain: Chain, settings: Settings, *, sender: str, destination: str, amount: int,
                        token: str | None) -> int:
    """The gas the payment needs now; ``WouldRevert`` if it would revert, also for lack of gas under the
    configured limit. Any other node error (``ChainError``) is no verdict and propagates."""
    to, value, data = payment_call(destination, amount, token)
    try:
        needed = await chain.estimate_gas(sender, to, value, data)
    except ExecutionReverted as reverted:
        raise WouldRevert(details={"reason": reverted.message, "revert_data": reverted.details.get("data")}) from None
    limit = gas_limit(settings, token)
    if needed > limit:
        # Sent with this limit it would run out of gas: a revert that costs the whole limit.
        raise WouldRevert(details={"reason": "out of gas: the recipient needs more gas than withdrawals are sent with",
                                   "gas_needed": needed, "gas_limit": limit})
    return needed


async def check_request(settings: Settings, chain_settings: ChainSettings, chains: Mapping[str, Chain], *,
                        destination: str, amount: int, asset: str) -> None:
    """At request: 422 ``would_revert`` on the node's verdict; without a verdict, nothing (see the module)."""
    chain = chains.get(chain_settings.name)
    try:
        entry = signed_xpubs(settings).get(chain_settings.name)
    except (XpubError, SettingsError) as unreadable:
        entry = None
        log.warning("pre-flight of a %s withdrawal skipped: %s", chain_settings.name, unreadable)
    if chain is None or entry is None:
        metrics.count("preflight_skipped", chain_settings.name, asset)
        return
    try:
        await check_payment(chain, settings, sender=entry.hot_wallet, destination=destination, amount=amount,
                            token=chain_settings.tokens.get(asset))
    except WouldRevert:
        metrics.count("preflight_refused", chain_settings.name, asset)
        raise
    except ChainError as no_verdict:
        log.warning("pre-flight of a %s withdrawal skipped, the node gave no verdict: %s", chain_settings.name,
                    no_verdict.message)
        metrics.count("preflight_skipped", chain_settings.name, asset)
