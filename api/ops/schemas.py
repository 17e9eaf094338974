from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from api.probes import ChainStatus, DependencyCheck, ReadinessOut, StatusOut

__all__ = ["ChainStatus", "DependencyCheck", "HealthOut", "ReadinessOut", "StatusOut"]


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"
