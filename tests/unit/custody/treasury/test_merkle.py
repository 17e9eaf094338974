"""The Merkle sum tree of proof of reserves: built, padded, shuffled, and checked by the verifier's rules."""

from __future__ import annotations

import copy
import hashlib
import logging
import random
import uuid
from typing import Any

import pytest

from custody.treasury import merkle, reserves
from custody.treasury.merkle import Leaf, ProofError, build_tree, verify_proof


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def customers(balances: list[int]) -> tuple[list[Leaf], dict[str, str]]:
    """Leaves of fresh users with these balances, and each user's nonce by user id."""
    nonces = {str(uuid.uuid4()): merkle.padding_leaf().id[:32] for _ in balances}
    leaves = [Leaf(merkle.leaf_id(user_id, nonce), balance, user_id)
              for (user_id, nonce), balance in zip(nonces.items(), balances, strict=True)]
    return leaves, nonces


def proof_of(tree: merkle.Tree, owner: str, nonce: str) -> dict[str, Any]:
    """The JSON the proof route answers, made from the tree itself."""
    position = next(index for index, leaf in enumerate(tree.leaves) if leaf.owner == owner)
    leaf = tree.leaves[position]
    return {"epoch": 1, "asset": "USDC", "nonce": nonce,
            "leaf": {"id": leaf.id, "balance": str(leaf.balance), "hash": leaf.node.hash},
            "path": [{"hash": step.hash, "sum": str(step.sum), "side": step.side} for step in tree.path(position)],
            "root": {"hash": tree.root.hash, "sum": str(tree.root.sum)}}


def failure(proof: Any, **options: Any) -> str:
    with pytest.raises(ProofError) as refused:
        verify_proof(proof, **options)
    return refused.value.kind


@pytest.mark.parametrize("count", [0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_every_customers_path_verifies_against_the_root_and_the_leaves_sum_to_it(count: int) -> None:
    balances = [random.randrange(0, 10**24) for _ in range(count)]
    leaves, nonces = customers(balances)
    tree = build_tree(leaves)
    assert tree.root.sum == sum(balances)
    for owner, nonce in nonces.items():
        checked = verify_proof(proof_of(tree, owner, nonce), root=tree.root.hash, user_id=owner)
        assert checked.root == tree.root and checked.steps == len(tree.levels) - 1


@pytest.mark.parametrize(("count", "size"), [(0, 2), (1, 2), (2, 2), (3, 4), (4, 4), (5, 8), (8, 8), (9, 16),
                                             (1000, 1024), (1025, 2048)])
def test_the_tree_is_padded_with_zero_leaves_of_random_ids_to_a_power_of_two(count: int, size: int) -> None:
    leaves, _ = customers([1] * count)
    tree = build_tree(leaves)
    assert merkle.padded_size(count) == size and len(tree.leaves) == size
    assert [len(level) for level in tree.levels] == [size >> depth for depth in range(size.bit_length())]
    padding = [leaf for leaf in tree.leaves if leaf.owner is None]
    assert len(padding) == size - count and all(leaf.balance == 0 for leaf in padding)
    # Spelled like a customer's H(user_id:nonce), and all different.
    assert all(merkle.HASH.fullmatch(leaf.id) for leaf in padding) and len({leaf.id for leaf in tree.leaves}) == size


def test_leaves_are_shuffled_so_a_position_says_nothing_about_who() -> None:
    leaves, _ = customers(list(range(1, 65)))
    orders = {tuple(leaf.balance for leaf in build_tree(leaves).leaves if leaf.owner is not None) for _ in range(5)}
    assert len(orders) > 1 and tuple(range(1, 65)) not in orders
    # A test may pin the shuffle: the same seed, the same order.
    seeded = [tuple(leaf.id for leaf in build_tree(leaves[:8], rng=random.Random(7)).leaves[:8] if leaf.owner)
              for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_the_hashes_follow_the_published_rules_exactly() -> None:
    user_id, nonce = "5f0e8a8e-3c59-4d0c-9f1e-1d7a6a0f2b11", "00112233445566778899aabbccddeeff"
    identifier = sha(f"{user_id}:{nonce}")
    assert merkle.leaf_id(user_id, nonce) == identifier
    left = merkle.Node(sha(f"leaf:{identifier}:1500000"), 1500000)
    assert Leaf(identifier, 1500000).node == left
    right = merkle.Node(sha("leaf:" + "ab" * 32 + ":0"), 0)
    assert merkle.parent(left, right) == merkle.Node(sha(f"node:{left.hash}:1500000:{right.hash}:0"), 1500000)


@pytest.mark.parametrize("text", ["01", "-1", "+1", "1.0", "1e3", "1_000", " 1", "1 ", "1\n", "", "0x10", "١",
                                  "1" * 79, 1, 1.0, None, True])
@pytest.mark.parametrize("where", ["leaf", "path", "root"])
def test_an_amount_not_spelled_as_plain_minor_units_is_a_bad_amount_format(text: Any, where: str) -> None:
    leaves, nonces = customers([5, 7, 11])
    tree = build_tree(leaves)
    owner, nonce = next(iter(nonces.items()))
    proof = proof_of(tree, owner, nonce)
    if where == "leaf":
        proof["leaf"]["balance"] = text
    elif where == "path":
        proof["path"][-1]["sum"] = text
    else:
        proof["root"]["sum"] = text
    assert failure(proof) == "bad amount format"


def test_zero_and_a_78_digit_amount_are_amounts() -> None:
    for balance in (0, 10**77):
        leaves, nonces = customers([balance, 3])
        tree = build_tree(leaves)
        owner, nonce = next(iter(nonces.items()))
        assert verify_proof(proof_of(tree, owner, nonce)).balance == balance


@pytest.fixture
def proof_and_tree() -> tuple[dict[str, Any], merkle.Tree, str]:
    leaves, nonces = customers([random.randrange(1, 10**9) for _ in range(11)])
    tree = build_tree(leaves)
    owner, nonce = next(iter(nonces.items()))
    return proof_of(tree, owner, nonce), tree, owner


def other_hash(value: str) -> str:
    return ("0" if value[0] != "0" else "1") + value[1:]


def test_tampering_with_any_path_entry_fails(proof_and_tree) -> None:
    proof, tree, owner = proof_and_tree
    assert len(proof["path"]) == 4
    for index in range(len(proof["path"])):
        for change in ("hash", "sum", "side", "less", "zero"):
            tampered = copy.deepcopy(proof)
            entry = tampered["path"][index]
            if change == "hash":
                entry["hash"] = other_hash(entry["hash"])
            elif change == "sum":
                entry["sum"] = str(int(entry["sum"]) + 1)
            elif change == "less":
                entry["sum"] = str(max(int(entry["sum"]) - 1, 0)) if entry["sum"] != "0" else "1"
            elif change == "zero":  # a sibling claiming it owes nothing
                entry["sum"] = "0" if entry["sum"] != "0" else "1"
            else:
                entry["side"] = "left" if entry["side"] == "right" else "right"
            assert failure(tampered, root=tree.root.hash, user_id=owner) == "root mismatch", (index, change)


def test_tampering_with_the_leaf_or_the_root_fails_naming_it(proof_and_tree) -> None:
    proof, _, _ = proof_and_tree
    cases = {
        ("leaf", "balance"): lambda p: p["leaf"].__setitem__("balance", str(int(p["leaf"]["balance"]) + 1)),
        ("leaf", "hash"): lambda p: p["leaf"].__setitem__("hash", other_hash(p["leaf"]["hash"])),
        ("leaf", "id"): lambda p: p["leaf"].__setitem__("id", other_hash(p["leaf"]["id"])),
        ("root", "sum"): lambda p: p["root"].__setitem__("sum", str(int(p["root"]["sum"]) - 1)),
        ("root", "hash"): lambda p: p["root"].__setitem__("hash", other_hash(p["root"]["hash"])),
        ("path", "dropped"): lambda p: p["path"].pop(),
    }
    expected = {("leaf", "balance"): "hash mismatch", ("leaf", "hash"): "hash mismatch",
                ("leaf", "id"): "hash mismatch", ("root", "sum"): "sum mismatch", ("root", "hash"): "root mismatch",
                ("path", "dropped"): "root mismatch"}
    for case, tamper in cases.items():
        tampered = copy.deepcopy(proof)
        tamper(tampered)
        assert failure(tampered) == expected[case], case


def test_a_proof_of_another_root_or_another_user_fails(proof_and_tree) -> None:
    proof, tree, owner = proof_and_tree
    assert verify_proof(proof, root=tree.root.hash.upper(), user_id=owner).root == tree.root
    assert failure(proof, root=other_hash(tree.root.hash)) == "root mismatch"
    assert failure(proof, user_id=str(uuid.uuid4())) == "hash mismatch"
    assert failure({**proof, "nonce": "someone else's"}, user_id=owner) == "hash mismatch"


@pytest.mark.parametrize("proof", [None, [], {"leaf": {}}, {"leaf": {"id": "x", "balance": "1", "hash": "y"},
                                                            "path": [], "root": {"hash": "z", "sum": "1"}}])
def test_a_malformed_proof_is_refused(proof: Any) -> None:
    assert failure(proof) in ("malformed proof", "bad amount format")


def test_a_negative_balance_never_enters_a_tree() -> None:
    leaves, _ = customers([3, 4])
    with pytest.raises(merkle.NegativeBalance) as refused:
        build_tree([*leaves, Leaf("ab" * 32, -1, "owner")])
    assert refused.value.leaf.owner == "owner"


def test_the_epoch_builder_refuses_a_negative_liability_and_alerts(caplog: pytest.LogCaptureFixture) -> None:
    users = [uuid.uuid4(), uuid.uuid4()]
    nonces = {user: reserves.new_nonce() for user in users}
    metric = reserves.REFUSALS.labels("negative_liability", "USDC")
    before = metric._value.get()
    with caplog.at_level(logging.ERROR, logger="custody.treasury.reserves"), \
            pytest.raises(reserves.NegativeLiability) as refused:
        reserves.liability_tree("USDC", [reserves.Liability(users[0], 5), reserves.Liability(users[1], -2)], nonces)
    assert (refused.value.status, refused.value.code) == (409, "negative_liability")
    assert refused.value.details == {"asset": "USDC", "user_id": str(users[1])}
    assert metric._value.get() == before + 1
    assert any(record.levelno == logging.ERROR and str(users[1]) in record.getMessage() for record in caplog.records)
    # The same customers with the books corrected: a tree, summing to what they are owed.
    tree = reserves.liability_tree("USDC", [reserves.Liability(users[0], 5), reserves.Liability(users[1], 2)], nonces)
    assert tree.root.sum == 7


@pytest.mark.parametrize(("reserves_held", "liabilities", "ratio"), [
    (2, 1, "2.0000"), (1, 3, "0.3333"), (2, 3, "0.6666"), (0, 5, "0.0000"), (10**30, 10**30 + 1, "0.9999"),
    (5, 0, None), (0, 0, None)])
def test_the_ratio_is_rounded_down_to_four_decimals(reserves_held: int, liabilities: int, ratio: str | None) -> None:
    info = reserves.ledger.CurrencyInfo("ETH", 18, "native", ())
    item = reserves.AssetReserves(info, merkle.Node("0" * 64, liabilities), liabilities, reserves_held, {})
    assert item.ratio == ratio


def test_the_reserve_block_is_the_newest_with_the_chains_confirmations() -> None:
    assert [reserves.reserve_block(head, 3) for head in (0, 1, 2, 3, 100)] == [0, 0, 0, 1, 98]
    assert reserves.reserve_block(100, 1) == 100
