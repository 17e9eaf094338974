"""`virtuoz`: one console script, one sub-command per process (DESIGN.md, "Processes")."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli import registry
from cli.admin import add_commands as add_admin_commands
from cli.audit import add_commands as add_audit_commands
from cli.operator import add_commands as add_operator_commands
from compliance.cli import add_commands as add_compliance_commands
from compliance.travel_rule.cli import add_commands as add_trp_commands
from core.allocator import return_large_blocks
from core.logging import configure_logging
from core.settings import Settings, SettingsError, load_settings
from custody.books.cli import add_commands as add_ledger_commands
from custody.treasury.reserves_cli import add_commands as add_reserves_commands
from custody.withdrawals.cli import add_commands as add_hot_wallet_commands
from jobs.registry import WORKERS
from scanner.cli import add_commands as add_scanner_commands
from signer.cli import add_commands as add_signer_commands


def _api(settings: Settings, args: argparse.Namespace) -> int:
    from cli.api_workers import run_api, run_worker

    host, port = args.host or settings.api_host, args.port or settings.api_port
    if args.worker is not None:
        return run_worker(settings, host, port, args.worker, args.metrics_dir)
    return run_api(settings, host, port)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from jobs.worker import run_worker

    return run_worker(settings, args.name) or 0


def _scheduler(settings: Settings, args: argparse.Namespace) -> int:
    from jobs.scheduler import run_scheduler

    return run_scheduler(settings) or 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from core.migrate import upgrade

    upgrade(settings.require_database_url(), args.revision)
    return 0


def _devnet(settings: Settings, args: argparse.Namespace) -> int:
    from devnet.supervisor import run_devnet

    return run_devnet(settings)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="virtuoz", description="VirtuOZ custody and compliance platform")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    api = commands.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    # Internal: one of the VIRTUOZ_API_WORKERS processes a `virtuoz api` parent starts (cli.api_workers).
    api.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    api.add_argument("--metrics-dir", type=Path, help=argparse.SUPPRESS)
    api.set_defaults(run=_api, process="api")

    worker = commands.add_parser("worker", help="run a Dramatiq worker (" + ", ".join(WORKERS) + ")")
    worker.add_argument("name")
    worker.set_defaults(run=_worker, process="worker")

    scheduler = commands.add_parser("scheduler", help="run the APScheduler process (it only enqueues jobs)")
    scheduler.set_defaults(run=_scheduler, process="scheduler")

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("revision", nargs="?", default="heads")
    migrate.set_defaults(run=_migrate, process="migrate")

    add_operator_commands(commands)
    add_admin_commands(commands)
    add_audit_commands(commands)
    add_signer_commands(commands)
    add_ledger_commands(commands)
    add_reserves_commands(commands)
    add_hot_wallet_commands(commands)
    add_compliance_commands(commands)
    add_scanner_commands(commands)
    add_trp_commands(commands)

    devnet = commands.add_parser("devnet", help="run the whole platform locally on embedded servers and Anvil")
    devnet.set_defaults(run=_devnet, process="devnet")
    return root


def main(argv: list[str] | None = None) -> int:
    return_large_blocks()
    args = parser().parse_args(argv)
    if getattr(args, "offline", False):  # reads no setting: a customer checking a proof has none
        return args.run(None, args)
    registry.load()
    try:
        settings = load_settings(args.process)
    except SettingsError as error:
        print(f"virtuoz: {error}", file=sys.stderr)
        return 2
    process = f"{args.process}:{args.name}" if args.process == "worker" else args.process
    configure_logging(settings.log_level, json=settings.log_json, process=process)
    try:
        return args.run(settings, args)
    except SettingsError as error:
        print(f"virtuoz: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
