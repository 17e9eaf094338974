"""`python -m scanner --chain NAME`: the scanner alone, exactly as `virtuoz scanner --chain NAME` runs it."""

from __future__ import annotations

import argparse
import sys

from core.logging import configure_logging
from core.settings import SettingsError, load_settings
from scanner.cli import add_commands


def main(argv: list[str] | None = None) -> int:
    root = argparse.ArgumentParser(prog="python -m scanner")
    add_commands(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(["scanner", *(sys.argv[1:] if argv is None else argv)])
    try:
        settings = load_settings()
        configure_logging(settings.log_level, json=settings.log_json, process="scanner")
        return args.run(settings, args)
    except SettingsError as error:
        print(f"virtuoz scanner: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
