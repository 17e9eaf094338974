"""The Merkle sum tree of proof of reserves: building it, a customer's path in it, and checking a path.

Pure functions, no database: the same rules run where an epoch is built (``custody.treasury.reserves``)
and where a customer checks a proof (``virtuoz reserves verify``), so they cannot drift apart.

The rules, which any independent verifier can implement (README, "Proof of reserves"). ``H(text)`` is
the lowercase hex SHA-256 of the UTF-8 text; every amount is a base-10 string of minor units matching
``^(0|[1-9][0-9]*)$`` (no sign, no leading zero, no exponent: one amount, one spelling, so two different
texts never hash a same balance):

- ``leaf.id = H(user_id + ":" + nonce)``: the nonce is random, per user and per epoch, shown only to
  that user, so nobody else can tell whose leaf is whose, nor link a user's leaves across epochs;
- ``leaf.hash = H("leaf:" + leaf.id + ":" + balance)``;
- a parent of ``left`` and ``right`` is ``{"hash": H("node:" + left.hash + ":" + left.sum + ":" +
  right.hash + ":" + right.sum), "sum": left.sum + right.sum}``: the sums are inside the hashes, so a
  sibling cannot claim less than it holds without changing the root;
- the leaves are padded with zero-balance leaves of random ids to a power of two (at least two) and
  shuffled, so a leaf's position and the tree's size say nothing about who or how many;
- a path lists, from the leaf up, each sibling's ``hash`` and ``sum`` and the ``side`` it stands on.

A negative balance never enters a tree: a leaf with one would let the platform hide a liability by
offsetting it against another (``NegativeBalance``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from random import Random
from typing import Any, Literal

# ``re.fullmatch`` rather than ``$``, which would also accept a trailing newline.
AMOUNT = re.compile(r"0|[1-9][0-9]*")
HASH = re.compile(r"[0-9a-f]{64}")
# NUMERIC(78,0) holds the books; a longer amount is not one of ours (and bounds int() on hostile input).
MAX_AMOUNT_DIGITS = 78
# 2**64 leaves is beyond any platform: a longer path is not a proof of ours.
MAX_PATH = 64

Side = Literal["left", "right"]


def h(text: str) -> str:
    """The lowercase hex SHA-256 of the UTF-8 ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def amount_text(amount: int) -> str:
    """The one spelling of ``amount`` (minor units) in hashes and proofs."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ValueError(f"an amount in a proof is a non-negative int, not {amount!r}")
    return str(amount)


def leaf_id(user_id: str, nonce: str) -> str:
    return h(f"{user_id}:{nonce}")


def leaf_hash(leaf_id: str, balance: int) -> str:
    return h(f"leaf:{leaf_id}:{amount_text(balance)}")


@dataclass(frozen=True, slots=True)
class Node:
    hash: str
    sum: int


def parent(left: Node, right: Node) -> Node:
    return Node(h(f"node:{left.hash}:{amount_text(left.sum)}:{right.hash}:{amount_text(right.sum)}"),
                left.sum + right.sum)


@dataclass(frozen=True, slots=True)
class Leaf:
    """A customer's liability (``owner`` names them; None for padding) under its blinded ``id``."""

    id: str
    balance: int
    owner: Hashable | None = None

    @property
    def node(self) -> Node:
        return Node(leaf_hash(self.id, self.balance), self.balance)


@dataclass(frozen=True, slots=True)
class Step:
    """One entry of a path: the sibling, and the side it stands on."""

    hash: str
    sum: int
    side: Side


class NegativeBalance(ValueError):
    """A leaf with a negative balance: refused, never built into a tree."""

    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf
        super().__init__(f"a negative balance ({leaf.balance}) cannot enter a Merkle sum tree (owner {leaf.owner})")


def padded_size(count: int) -> int:
    """The tree's leaf count for ``count`` customers: the next power of two, at least 2 (so even a lone
    customer's root is a parent, never their own leaf)."""
    return max(2, 1 << max(count - 1, 0).bit_length())


def padding_leaf() -> Leaf:
    # Random 256 bits: spelled like any H(...), so a padding leaf looks like a customer's.
    return Leaf(secrets.token_hex(32), 0)


@dataclass(frozen=True)
class Tree:
    """Every level of the tree, leaves (shuffled) first, the root last."""

    leaves: tuple[Leaf, ...]
    levels: tuple[tuple[Node, ...], ...]

    @property
    def root(self) -> Node:
        return self.levels[-1][0]

    def path(self, position: int) -> list[Step]:
        """The siblings from the leaf at ``position`` up to (not including) the root."""
        steps = []
        for level in self.levels[:-1]:
            sibling = level[position ^ 1]
            steps.append(Step(sibling.hash, sibling.sum, "left" if position & 1 else "right"))
            position //= 2
        return steps


def build_tree(leaves: Sequence[Leaf], *, rng: Random | None = None) -> Tree:
    """The tree over ``leaves``: padded, shuffled (``rng``, a CSPRNG unless a test passes its own), hashed.

    ``NegativeBalance`` on the first leaf with a negative balance, before anything is hashed.
    """
    for leaf in leaves:
        if isinstance(leaf.balance, bool) or not isinstance(leaf.balance, int):
            raise TypeError(f"a balance is an int of minor units, not {leaf.balance!r}")
        if leaf.balance < 0:
            raise NegativeBalance(leaf)
    padded = [*leaves, *(padding_leaf() for _ in range(padded_size(len(leaves)) - len(leaves)))]
    (rng or secrets.SystemRandom()).shuffle(padded)
    level = tuple(leaf.node for leaf in padded)
    levels = [level]
    while len(level) > 1:
        level = tuple(parent(level[i], level[i + 1]) for i in range(0, len(level), 2))
        levels.append(level)
    return Tree(tuple(padded), tuple(levels))


def path_positions(position: int, depth: int) -> list[tuple[int, int]]:
    """(level, position) of each sibling on the path of the leaf at ``position`` in a tree ``depth`` levels
    above its leaves: what to read of a stored tree to answer a proof."""
    found = []
    for level in range(depth):
        found.append((level, position ^ 1))
        position //= 2
    return found


def side_at(position: int, level: int) -> Side:
    """The side of the sibling at ``level`` on the path of the leaf at ``position``."""
    return "left" if (position >> level) & 1 else "right"


# --- checking a proof -------------------------------------------------------------------------

class ProofError(ValueError):
    """A proof that does not hold; ``kind`` names the failure (``bad amount format``, ``hash mismatch``,
    ``sum mismatch``, ``root mismatch``, ``malformed proof``)."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {message}")


@dataclass(frozen=True)
class Verified:
    leaf_id: str
    balance: int
    root: Node
    steps: int


def _amount(value: Any, where: str) -> int:
    if not isinstance(value, str) or len(value) > MAX_AMOUNT_DIGITS or not AMOUNT.fullmatch(value):
        raise ProofError("bad amount format", f"{where} is {value!r}, not a base-10 string of minor units "
                                              "matching ^(0|[1-9][0-9]*)$")
    return int(value)


def _hash(value: Any, where: str) -> str:
    if not isinstance(value, str) or not HASH.fullmatch(value):
        raise ProofError("malformed proof", f"{where} is {value!r}, not a lowercase hex SHA-256")
    return value


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProofError("malformed proof", f"{where} is not an object")
    return value


def verify_proof(proof: Any, *, root: str | None = None, user_id: str | None = None) -> Verified:
    """Check ``proof`` (the JSON of ``GET /api/v1/wallet/reserves-proof``) by the rules above.

    ``root``: the root hash published (``GET /api/v1/reserves/latest``), which the proof's own must equal;
    ``user_id``: the customer's id, which with the proof's nonce must give the leaf's id. ``ProofError``
    names the first failure.
    """
    proof = _object(proof, "the proof")
    leaf = _object(proof.get("leaf"), "leaf")
    claimed_root = _object(proof.get("root"), "root")
    path = proof.get("path")
    if not isinstance(path, list) or len(path) > MAX_PATH:
        raise ProofError("malformed proof", f"path is not a list of at most {MAX_PATH} entries")
    # Every amount's spelling first: a verifier rejects a proof with any amount not in the one format.
    balance = _amount(leaf.get("balance"), "leaf.balance")
    steps = []
    for index, entry in enumerate(path):
        entry = _object(entry, f"path[{index}]")
        steps.append((_hash(entry.get("hash"), f"path[{index}].hash"), _amount(entry.get("sum"), f"path[{index}].sum"),
                      entry.get("side")))
    root_sum = _amount(claimed_root.get("sum"), "root.sum")
    root_hash = _hash(claimed_root.get("hash"), "root.hash")
    identifier = _hash(leaf.get("id"), "leaf.id")
    stated_leaf_hash = _hash(leaf.get("hash"), "leaf.hash")

    if user_id is not None:
        nonce = proof.get("nonce")
        if not isinstance(nonce, str):
            raise ProofError("malformed proof", "nonce is not a string")
        if leaf_id(user_id, nonce) != identifier:
            raise ProofError("hash mismatch", f"leaf.id is not H(user_id:nonce) for user {user_id}")
    if leaf_hash(identifier, balance) != stated_leaf_hash:
        raise ProofError("hash mismatch", "leaf.hash is not H(\"leaf:\" + leaf.id + \":\" + balance)")

    node = Node(stated_leaf_hash, balance)
    for index, (sibling_hash, sibling_sum, side) in enumerate(steps):
        sibling = Node(sibling_hash, sibling_sum)
        if side == "left":
            node = parent(sibling, node)
        elif side == "right":
            node = parent(node, sibling)
        else:
            raise ProofError("malformed proof", f"path[{index}].side is {side!r}, not \"left\" or \"right\"")
    if node.hash != root_hash:
        raise ProofError("root mismatch", f"the path leads to {node.hash}, not to root.hash {root_hash}")
    if node.sum != root_sum:
        raise ProofError("sum mismatch", f"the path sums to {node.sum}, not to root.sum {root_sum}")
    if root is not None and root_hash != root.strip().lower():
        raise ProofError("root mismatch", f"the proof's root {root_hash} is not the published root {root}")
    return Verified(identifier, balance, Node(root_hash, root_sum), len(steps))
