"""Sanctions lists: one address per line, ``#`` starts a comment; compared case-insensitively.

The API refuses a withdrawal to a listed address and the signer refuses to sign one, each from
its own copy of the list (settings ``sanctions_list_file`` and ``signer_sanctions_list_file``):
a signer host that is compromised through the platform still checks its own file. A list is
read again when its file changes, so an update needs no restart.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class SanctionsListError(ValueError):
    """The list file has a line that is not an address: refuse it whole rather than half-read it."""


def parse_sanctions(text: str, source: str = "sanctions list") -> frozenset[str]:
    addresses = set()
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if not _ADDRESS.fullmatch(entry):
            raise SanctionsListError(f"{source}, line {number}: {entry[:60]!r} is not an EVM address")
        addresses.add(entry.lower())
    return frozenset(addresses)


class SanctionsList:
    """A list file, re-read when its modification time or size changes. ``None`` means no list."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._addresses: frozenset[str] = frozenset()

    def addresses(self) -> frozenset[str]:
        if self.path is None:
            return frozenset()
        # A configured list that vanished must not silently become an empty one.
        status = os.stat(self.path)
        stamp = (status.st_mtime_ns, status.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._addresses = parse_sanctions(self.path.read_text(encoding="utf-8"), str(self.path))
                self._stamp = stamp
            return self._addresses

    def __contains__(self, address: object) -> bool:
        return isinstance(address, str) and address.lower() in self.addresses()


_lists: dict[Path | None, SanctionsList] = {}
_lists_lock = threading.Lock()


def sanctions_list(path: Path | None) -> SanctionsList:
    """One ``SanctionsList`` per path in this process (it re-reads its file when the file changes)."""
    with _lists_lock:
        if path not in _lists:
            _lists[path] = SanctionsList(path)
        return _lists[path]
