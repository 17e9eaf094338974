"""`virtuoz hot-wallet migrate --chain NAME --operator WHO`: empty the hot wallet of before into the new one.

Run it after the upgrade (README, "Moving the hot wallet"), on a host with the custody worker's
configuration: the database, Redis, the chain's node, the signed xpub file, the signer public key
and the custody request key. It refuses while a withdrawal signed from the old wallet is not final
or the node still has a transaction of it pending; otherwise it asks the signer for the transfers
(``custody.withdrawals.hot_wallet_move``), broadcasts them as the custody worker returns them signed,
and follows them to the chain's confirmations. Every step is audited under ``--operator``. Run it
again after an interruption: it resumes, and reports "nothing left" once the old wallet is empty.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from core.db import create_engine, session_factory, unit_of_work
from core.settings import ChainSettings, Settings, UnknownChain
from custody.chains import ChainError, ChainRejected, EvmChain, chain_for
from custody.hd import XpubError, retired_hot_wallet_address, signed_xpubs
from custody.withdrawals import hot_wallet_move as moves
from jobs.broker import close_broker, create_broker
from jobs.registry import bind_broker

POLL_SECONDS = 2.0


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    hot_wallet = subparsers.add_parser("hot-wallet", help="operations on the hot wallets")
    commands = hot_wallet.add_subparsers(dest="hot_wallet_command", required=True, metavar="COMMAND")
    migrate = commands.add_parser("migrate", help="move the balance of the hot wallet of before "
                                                  "(m/44'/60'/account'/1/0) to the chain's own hot wallet account")
    migrate.add_argument("--chain", required=True)
    migrate.add_argument("--operator", required=True, help="who runs it (recorded in the audit log)")
    migrate.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for signatures and receipts")
    migrate.set_defaults(run=run_migrate, process="hot-wallet")


def run_migrate(settings: Settings, args: argparse.Namespace) -> int:
    try:
        chain = settings.chain(args.chain)
        entry = signed_xpubs(settings).get(chain.name)
        if entry is None:
            raise XpubError(f"the xpub file has no entry for {chain.name}: run `virtuoz signer export`")
    except (UnknownChain, XpubError) as error:
        print(f"virtuoz hot-wallet migrate: {error}", file=sys.stderr)
        return 2
    return asyncio.run(migrate(settings, chain, retired_hot_wallet_address(entry.xpub), entry.hot_wallet,
                               args.operator, args.timeout))


async def migrate(settings: Settings, chain_settings: ChainSettings, retired: str, new: str, operator: str,
                  timeout: float) -> int:
    engine = create_engine(settings.require_database_url(), pool_size=1)
    broker = create_broker(settings.require_redis_url(), broker_url=settings.broker_url)
    factory = session_factory(engine)
    bind_broker(factory, broker)
    print(f"{chain_settings.name}: moving {retired} (retired) -> {new}")
    deadline = time.monotonic() + timeout
    asked: dict[str, float] = {}  # move id → when this run last sent its sign request
    try:
        async with chain_for(chain_settings) as chain:
            while True:
                async with unit_of_work(factory) as session:
                    every = await moves.moves(session, chain_settings.name)
                    refused = [move for move in every if move.id in asked and move.state == "refused"]
                    if refused:
                        # Asking again would be refused again (a fee cap, a limit): an operator decides.
                        names = ", ".join(move.id for move in refused)
                        print(f"virtuoz hot-wallet migrate: the signer refused move(s) {names}; see their audit "
                              "events", file=sys.stderr)
                        return 1
                    pending = [move for move in every if move.state in moves.PENDING]
                    if not pending and asked:
                        # This run's transfers are final. What the gas refunds leave behind is moved by
                        # another run, if it is worth its own gas.
                        print(f"{chain_settings.name}: moved; {await chain.nonce(retired)} transactions sent "
                              f"from {retired} in all")
                        return 0
                    if not pending:
                        refusal = await _refusal_to_start(session, chain, chain_settings, retired)
                        if refusal:
                            print(f"virtuoz hot-wallet migrate: {refusal}", file=sys.stderr)
                            return 1
                        try:
                            created = await moves.request(session, settings, chain_settings, chain, retired, new,
                                                          operator)
                        except moves.NothingToMove as nothing:
                            print(f"virtuoz hot-wallet migrate: {nothing}", file=sys.stderr)
                            return 1
                        if not created:
                            print(f"{chain_settings.name}: nothing left on {retired}")
                            return 0
                        for move in created:
                            asked[move.id] = time.monotonic()
                            print(f"  asked the signer: {move.amount} {move.asset} (move {move.id})")
                        continue
                    for move in pending:
                        if move.state == "requested":
                            if time.monotonic() - asked.get(move.id, 0.0) >= settings.withdrawal_resend_seconds:
                                moves.send(session, move)  # the signer answers a repeat with the same signature
                                asked[move.id] = time.monotonic()
                        else:
                            await _advance(session, chain_settings, chain, move, operator)
                if time.monotonic() > deadline:
                    print("virtuoz hot-wallet migrate: still pending; run the command again to resume:",
                          file=sys.stderr)
                    for move in pending:
                        print(f"  {move.id} {move.asset} {move.state}", file=sys.stderr)
                    return 1
                await asyncio.sleep(POLL_SECONDS)
    except ChainError as error:
        print(f"virtuoz hot-wallet migrate: the node failed: {error.message}; run the command again", file=sys.stderr)
        return 1
    finally:
        close_broker(broker)
        await engine.dispose()


async def _refusal_to_start(session, chain: EvmChain, chain_settings: ChainSettings, retired: str) -> str | None:  # type: ignore[no-untyped-def]
    in_flight = await moves.withdrawals_in_flight(session, chain_settings.name, retired)
    if in_flight:
        return (f"{in_flight} withdrawal(s) signed from {retired} are not final yet; run the command again once they "
                "are confirmed or failed")
    if await chain.nonce(retired) != await chain.mined_nonce(retired):
        return f"the node still has a transaction of {retired} pending; run the command again once it is mined"
    return None


async def _advance(session, chain_settings: ChainSettings, chain: EvmChain, move: moves.Move,  # type: ignore[no-untyped-def]
                   operator: str) -> None:
    if move.state == "signed":
        try:
            await chain.broadcast(bytes.fromhex(move.raw_tx.removeprefix("0x")))  # type: ignore[union-attr]
        except ChainRejected as rejected:
            if "already known" not in rejected.message.lower() and "nonce too low" not in rejected.message.lower():
                raise
        await moves.record(session, move, "broadcast", {"tx_hash": move.tx_hash}, operator)
        print(f"  broadcast {move.asset}: {move.tx_hash}")
    elif move.state == "broadcast":
        receipt = await chain.receipt(move.tx_hash)  # type: ignore[arg-type]
        if receipt is None:
            return
        if await chain.head() - receipt.block_number + 1 >= chain_settings.confirmations:
            await moves.settle(session, chain_settings, move, receipt.status,
                               receipt.gas_used * receipt.effective_gas_price, receipt.block_number, operator)
            print(f"  {move.asset} {'confirmed' if receipt.status == 1 else 'FAILED (reverted)'}: {move.tx_hash}")
