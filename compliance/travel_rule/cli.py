"""`virtuoz trp`: the Travel Rule Protocol endpoints and Travel Addresses.

``virtuoz trp serve [--identity NAME ...]``: serve every configured VASP identity (or the named
ones), each on its own mutual-TLS port, until SIGTERM or SIGINT.

``virtuoz trp address ADDRESS [--identity NAME]``: print the Travel Address under which a
counterparty sends inquiries for one of our deposit addresses.
"""

from __future__ import annotations

import argparse
import asyncio

from compliance.travel_rule import trp
from compliance.travel_rule.server import serve
from compliance.travel_rule.tls import identity_files
from core.metrics import serve_metrics
from core.settings import Settings


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    command = subparsers.add_parser("trp", help="Travel Rule Protocol endpoints (mTLS) and Travel Addresses")
    commands = command.add_subparsers(dest="trp_command", required=True, metavar="COMMAND")
    serving = commands.add_parser("serve", help="serve the configured VASP identities over mTLS")
    serving.add_argument("--identity", action="append", dest="identities", metavar="NAME")
    serving.set_defaults(run=run_serve, process="trp")
    address = commands.add_parser("address", help="the Travel Address of one of our deposit addresses")
    address.add_argument("address")
    address.add_argument("--identity", metavar="NAME")
    address.set_defaults(run=run_address, process="trp")


def run_serve(settings: Settings, args: argparse.Namespace) -> int:
    assert settings.travel_rule_pki_dir is not None
    names = args.identities or [identity.name for identity in settings.travel_rule_identities]
    for name in names:
        files = identity_files(settings.travel_rule_pki_dir, settings.vasp(name).name)
        missing = [str(path) for path in (files.cert, files.key, files.ca) if not path.is_file()]
        if missing:
            print(f"virtuoz trp: identity {name!r} lacks {', '.join(missing)} (VIRTUOZ_TRAVEL_RULE_PKI_DIR)")
            return 2
    serve_metrics(settings, "trp")
    asyncio.run(serve(settings, args.identities))
    return 0


def run_address(settings: Settings, args: argparse.Namespace) -> int:
    print(trp.travel_address(f"{settings.vasp(args.identity).base_url}/inquiry/{args.address}"))
    return 0
