"""Sanctions screening: a store of listed crypto addresses and names, and the checks others call.

``screen_address(session, address)`` and ``screen_name(session, name)`` return a ``Hit`` (what
matched, which list, which entry) or ``None``. EVM addresses are compared lowercased (EIP-55
checksums are only a spelling); names are compared on a folded key: case, accents, punctuation
and word order do not matter ("KIM, Jong Un" = "jong-un kim").

Lists are loaded with ``virtuoz compliance load-sanctions FILE``: OFAC's SDN *advanced* XML
(features "Digital Currency Address - ETH", "- XBT"…, names from each party's aliases) or a plain
list, one address per line, ``#`` comments. Loading only adds (the tables are append-only); each
load is an audit event with the file's SHA-256, so the list in force at any time can be shown.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from compliance.screening.models import SanctionedAddress, SanctionedName
from core import audit
from core.errors import InvalidInput

OFAC_SOURCE = "ofac_sdn"
DIGITAL_CURRENCY_FEATURE = "Digital Currency Address - "
_EVM = re.compile(r"0x[0-9a-fA-F]{40}")
# Addresses of other chains (bitcoin, tron…) are kept as written: they are case-sensitive.
_ADDRESS = re.compile(r"[A-Za-z0-9:_-]{20,128}")


class SanctionsFileError(InvalidInput):
    code, message = "invalid_sanctions_file", "The sanctions file cannot be read."


@dataclass(frozen=True)
class Hit:
    kind: str  # "address" | "name"
    value: str  # what was screened
    matched: str  # the listed entry
    entity_name: str | None
    source: str
    list_uid: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ListedAddress:
    address: str
    currency: str | None = None
    entity_name: str | None = None
    list_uid: str | None = None


@dataclass(frozen=True)
class ListedName:
    name: str
    list_uid: str | None = None


@dataclass(frozen=True)
class LoadResult:
    source: str
    sha256: str
    addresses: int  # entries in the file
    names: int
    added_addresses: int  # new to the store
    added_names: int


def normalize_address(address: str) -> str:
    address = address.strip()
    return address.lower() if _EVM.fullmatch(address) else address


def name_key(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    letters = "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()
    words = re.findall(r"[^\W_]+", letters)
    return " ".join(sorted(words))


# --- parsing ------------------------------------------------------------------------------------

def parse_plain(text: str, source: str) -> list[ListedAddress]:
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if not _ADDRESS.fullmatch(entry):
            raise SanctionsFileError(f"{source}, line {number}: {entry[:60]!r} is not an address",
                                     details={"line": number})
        entries.append(ListedAddress(normalize_address(entry)))
    return entries


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    return [child for child in element.iter() if _local(child.tag) == name]


def parse_ofac_advanced(text: str) -> tuple[list[ListedAddress], list[ListedName]]:
    """OFAC SDN advanced XML: each DistinctParty's alias names and digital currency addresses."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise SanctionsFileError(f"not well-formed XML: {error}") from None
    feature_types = {element.get("ID"): (element.text or "").strip() for element in _children(root, "FeatureType")}
    currency_of = {type_id: name[len(DIGITAL_CURRENCY_FEATURE):].strip()
                   for type_id, name in feature_types.items() if name.startswith(DIGITAL_CURRENCY_FEATURE)}
    addresses, names = [], []
    for party in _children(root, "DistinctParty"):
        uid = party.get("FixedRef")
        primary, aliases = None, []
        for alias in _children(party, "Alias"):
            for documented in _children(alias, "DocumentedName"):
                full = " ".join((part.text or "").strip() for part in _children(documented, "NamePartValue")).strip()
                if full:
                    aliases.append(full)
                    if alias.get("Primary") == "true" and primary is None:
                        primary = full
        names.extend(ListedName(name, uid) for name in dict.fromkeys(aliases))
        for feature in _children(party, "Feature"):
            currency = currency_of.get(feature.get("FeatureTypeID"))
            if currency is None:
                continue
            for detail in _children(feature, "VersionDetail"):
                value = (detail.text or "").strip()
                if value:
                    addresses.append(ListedAddress(normalize_address(value), currency, primary or
                                                   (aliases[0] if aliases else None), uid))
    if not feature_types:
        raise SanctionsFileError("no FeatureType reference values: is this OFAC's advanced XML (sdn_advanced.xml)?")
    return addresses, names


# --- the store ----------------------------------------------------------------------------------

async def load(session: AsyncSession, content: bytes, filename: str, *, actor: str | None = None) -> LoadResult:
    """Add a file's entries to the store (XML → OFAC, else a plain list named after the file)."""
    digest = hashlib.sha256(content).hexdigest()
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SanctionsFileError(f"{filename} is not UTF-8 text") from None
    if text.lstrip().startswith("<"):
        source = OFAC_SOURCE
        addresses, names = parse_ofac_advanced(text)
    else:
        source = f"list:{Path(filename).name}"
        addresses, names = parse_plain(text, filename), []
    added_addresses = added_names = 0
    if addresses:
        rows = [{"address": entry.address, "currency": entry.currency, "entity_name": entry.entity_name,
                 "list_uid": entry.list_uid, "source": source} for entry in {e.address: e for e in addresses}.values()]
        result = await session.execute(insert(SanctionedAddress).values(rows).on_conflict_do_nothing()
                                       .returning(SanctionedAddress.id))
        added_addresses = len(result.all())
    if names:
        rows = [{"name": entry.name, "name_key": key, "list_uid": entry.list_uid, "source": source}
                for key, entry in {name_key(e.name): e for e in names}.items() if key]
        result = await session.execute(insert(SanctionedName).values(rows).on_conflict_do_nothing()
                                       .returning(SanctionedName.id))
        added_names = len(result.all())
    loaded = LoadResult(source, digest, len(addresses), len(names), added_addresses, added_names)
    await audit.append(session, "sanctions_list", source, "sanctions.loaded",
                       {"file": Path(filename).name, **asdict(loaded)}, actor=actor)
    return loaded


async def screen_address(session: AsyncSession, address: str) -> Hit | None:
    """The listing of ``address`` (any chain; EVM compared lowercased), or ``None``."""
    key = normalize_address(address)
    row = await session.scalar(select(SanctionedAddress).where(SanctionedAddress.address == key)
                               .order_by(SanctionedAddress.loaded_at).limit(1))
    if row is None:
        return None
    return Hit("address", address, row.address, row.entity_name, row.source, row.list_uid)


async def screen_name(session: AsyncSession, name: str) -> Hit | None:
    """An exact match of the folded name (see ``name_key``) on a listed name, or ``None``.

    Exact on purpose: fuzzy matching belongs to a reviewed screening tool, and a false positive
    here would block a customer without a human in the loop.
    """
    key = name_key(name)
    if not key:
        return None
    row = await session.scalar(select(SanctionedName).where(SanctionedName.name_key == key)
                               .order_by(SanctionedName.loaded_at).limit(1))
    if row is None:
        return None
    return Hit("name", name, row.name, row.name, row.source, row.list_uid)
