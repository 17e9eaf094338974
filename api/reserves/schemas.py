"""Proof of reserves: what is published, and a customer's proof (the format ``virtuoz reserves verify`` checks).

Two spellings of money, on purpose: ``liabilities`` and ``reserves`` are decimal strings in the asset's
units, like every API amount; whatever enters a hash (``leaf.balance``, each ``sum``) is a base-10 string
of minor units, the one spelling the proof's rules hash.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from custody.treasury import merkle
from custody.treasury.reserves import AssetReserves, Epoch, Proof

DECIMAL = "A decimal string in the asset's units (crypto without trailing zeros)."
MINOR = "Minor units (wei, micro-USDC) as a base-10 string matching ^(0|[1-9][0-9]*)$."
HASH = "Lowercase hex SHA-256."


class NodeOut(BaseModel):
    hash: str = Field(description=HASH, examples=["9f2c…"])
    sum: str = Field(description=MINOR, examples=["1500000"])

    @classmethod
    def of(cls, node: merkle.Node) -> NodeOut:
        return cls(hash=node.hash, sum=merkle.amount_text(node.sum))


class AssetReservesOut(BaseModel):
    asset: str = Field(examples=["USDC"])
    root: NodeOut = Field(description="The root of the Merkle sum tree of every customer's liability in the asset.")
    liabilities: str = Field(description="What customers are owed (available + held) at the ledger snapshot: the "
                                         "root's sum. " + DECIMAL, examples=["1.5"])
    reserves: str = Field(description="What the platform's addresses (hot, cold, deposit) held at `blocks`. "
                                      + DECIMAL, examples=["2"])
    ratio: str | None = Field(description="reserves / liabilities, 4 decimals, rounded down; null when nothing is "
                                          "owed.", examples=["1.3333"])
    blocks: dict[str, int] = Field(description="The block each chain carrying the asset was read at.",
                                   examples=[{"ethereum": 19000000}])

    @classmethod
    def of(cls, item: AssetReserves) -> AssetReservesOut:
        return cls(asset=item.asset.code, root=NodeOut.of(item.root), liabilities=item.asset.format(item.liabilities),
                   reserves=item.asset.format(item.reserves), ratio=item.ratio, blocks=item.blocks)


class ReservesOut(BaseModel):
    epoch: int = Field(description="The epoch's number, increasing.", examples=[12])
    created_at: datetime = Field(description="When the ledger snapshot was taken.")
    assets: list[AssetReservesOut]

    @classmethod
    def of(cls, epoch: Epoch) -> ReservesOut:
        return cls(epoch=epoch.number, created_at=epoch.created_at,
                   assets=[AssetReservesOut.of(item) for item in epoch.assets])


class ProofQuery(BaseModel):
    asset: str = Field(pattern=r"^[A-Z0-9]{2,10}$", examples=["USDC"])


class LeafOut(BaseModel):
    id: str = Field(description="H(user_id + \":\" + nonce). " + HASH)
    balance: str = Field(description="Available + held at the snapshot. " + MINOR)
    hash: str = Field(description="H(\"leaf:\" + id + \":\" + balance). " + HASH)


class StepOut(BaseModel):
    hash: str = Field(description=HASH)
    sum: str = Field(description=MINOR)
    side: Literal["left", "right"] = Field(description="Where the sibling stands.")


class ReservesProofOut(BaseModel):
    epoch: int
    asset: str
    nonce: str = Field(description="Your random nonce of this epoch: only you are shown it.")
    leaf: LeafOut
    path: list[StepOut] = Field(description="From the leaf up: parent = {hash: H(\"node:\" + left.hash + \":\" + "
                                            "left.sum + \":\" + right.hash + \":\" + right.sum), sum: left.sum + "
                                            "right.sum}.")
    root: NodeOut

    @classmethod
    def of(cls, proof: Proof) -> ReservesProofOut:
        return cls(epoch=proof.epoch, asset=proof.asset, nonce=proof.nonce,
                   leaf=LeafOut(id=proof.leaf.id, balance=merkle.amount_text(proof.leaf.balance), hash=proof.leaf_hash),
                   path=[StepOut(hash=step.hash, sum=merkle.amount_text(step.sum), side=step.side)
                         for step in proof.path],
                   root=NodeOut.of(proof.root))
