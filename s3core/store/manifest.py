"""The JSON manifest that completes every artifact (DESIGN.md section 3)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


class ShardInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="file name relative to the artifact directory")
    rows: int | None = Field(default=None, description="row count (tables only)")
    bytes: int
    sha256: str


class Manifest(BaseModel):
    """What a finished stage wrote. Tasks return this (small JSON), never the data itself."""

    model_config = ConfigDict(extra="forbid")
    format_version: int = FORMAT_VERSION
    stage: str
    key: str = Field(description="cache key = hash(stage, config hash, input content hashes, code hash)")
    kind: Literal["table", "dir"]
    uri: str = Field(description="the artifact directory in the store (local path or fsspec URL)")
    config_hash: str
    inputs: dict[str, str] = Field(default_factory=dict, description="input name -> content hash")
    code_hash: str
    schema_: dict[str, str] | None = Field(default=None, alias="schema", description="column -> arrow type")
    row_count: int | None = None
    shards: list[ShardInfo] = Field(default_factory=list, description="parquet shards or files of a dir")
    content_hash: str
    stats: dict[str, Any] = Field(default_factory=dict, description="stage-specific counts (skipped lines, ...)")
    timings: dict[str, float] = Field(default_factory=dict, description="seconds per phase")
    created_at: str = Field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat())

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        return cls.model_validate_json(text)

    def summary(self) -> str:
        size = f"{self.row_count} rows" if self.kind == "table" else f"{len(self.shards)} files"
        return f"{self.stage} [{self.key}] {size} at {self.uri}"
