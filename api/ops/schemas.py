from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class DependencyCheck(BaseModel):
    name: str = Field(examples=["database", "redis", "chain:ethereum", "worker:custody"])
    ok: bool
    latency_ms: int
    detail: str | None = None


class ReadinessOut(BaseModel):
    status: Literal["ready", "not_ready"]
    failing: list[str]
    checks: list[DependencyCheck]


class ChainStatus(BaseModel):
    name: str
    chain_id: int
    height: int | None = Field(description="The node's latest block; null when the RPC does not answer.")
    scanner_height: int | None = Field(description="The last block the scanner processed; null until it runs.")
    lag: int | None = Field(description="height - scanner_height.")


class StatusOut(BaseModel):
    service: Literal["virtuoz"] = "virtuoz"
    version: str
    environment: str
    time: str
    uptime_seconds: int
    chains: list[ChainStatus]
    queues: dict[str, int | None] = Field(description="Messages waiting per Dramatiq queue; null when Redis is down.")
