"""What the deployment tests share: the repository's paths, the README's process table, secret names."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from core.settings import SECRET_FILE_SETTINGS, Settings
from jobs.registry import WORKERS

REPO_ROOT = Path(__file__).resolve().parents[3]
DEPLOY = REPO_ROOT / "deploy"

# The processes that run for as long as the platform does (a service each), and the one-shot
# migration every release runs first; `worker NAME` for each worker kind.
DAEMONS = {"api", "scheduler", "signer", "scanner", "trp serve", "migrate"} | {f"worker {name}" for name in WORKERS}
# The commands an operator runs by hand: no service.
BY_HAND = {"signer init", "signer export", "hot-wallet migrate", "ledger verify", "reserves verify", "operator keygen",
           "operator sign", "audit verify", "admin create", "devnet", "trp address"}

# Settings whose value is a secret: only ever a file (VIRTUOZ_<NAME>_FILE), and the servers' own.
SECRET_VARIABLES = {f"VIRTUOZ_{name.upper()}" for name in SECRET_FILE_SETTINGS} | {
    "VIRTUOZ_SIGNER_PASSPHRASE", "VIRTUOZ_CUSTODY_REQUEST_KEY", "POSTGRES_PASSWORD", "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "RABBITMQ_DEFAULT_PASS"}
SECRET_LOOKING = re.compile(r"(PASSWORD|PASSPHRASE|SECRET|SECRET_KEY|PRIVATE_KEY|TOKEN|_PASS)$")


def command_key(words: list[str]) -> str:
    """``["worker", "custody"]`` → ``"worker custody"``; ``["scanner", "--chain", "x"]`` → ``"scanner"``:
    the sub-command's own words, up to the first option or placeholder."""
    key = []
    for word in words:
        if not re.fullmatch(r"[a-z][a-z-]*", word):
            break
        key.append(word)
    return " ".join(key)


def readme_commands() -> set[str]:
    """Every command of the README's process table ("## Processes"), as ``command_key``s."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("\n## Processes\n", 1)[1].split("\n## ", 1)[0]
    commands = set()
    for line in section.splitlines():
        cells = line.split("|")
        if len(cells) < 4 or not line.startswith("|"):
            continue
        for command in re.findall(r"`([^`]*\bvirtuoz [^`]*)`", cells[2]):
            commands.add(command_key(command.split("virtuoz ", 1)[1].split()))
    return commands


def secret_in_environment(name: str, value: object) -> str | None:
    """Why ``name=value`` in an environment would hand out a secret, or None."""
    text = str(value)
    if "://" in text:
        parts = urlsplit(text)
        if parts.username or parts.password:
            return f"{name} carries credentials in its URL"
    if name.endswith("_FILE"):
        return None
    if name in SECRET_VARIABLES:
        # A URL with no credentials in it (a placeholder) is no secret; any other value is.
        if name.endswith("_URL") and "://" in text:
            return None
        return f"{name} is a secret: give it as {name}_FILE"
    if SECRET_LOOKING.search(name):
        return f"{name} looks like a secret: give it as a file"
    return None


def unknown_settings(variables: Iterable[str]) -> list[str]:
    """The ``VIRTUOZ_*`` names among ``variables`` that no setting reads (settings ignore unknown
    names, so a misspelt one would be dropped without a word)."""
    known = {f"VIRTUOZ_{name.upper()}" for name in Settings.model_fields}
    known |= {f"VIRTUOZ_{name.upper()}_FILE" for name in SECRET_FILE_SETTINGS}
    return sorted(name for name in variables if name.startswith("VIRTUOZ_") and name not in known)
