"""Request and response models of the file store tools."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ShardPathIn(BaseModel):
    key: str = Field(min_length=1, max_length=200)


class ShardPathOut(BaseModel):
    key: str
    path: str
