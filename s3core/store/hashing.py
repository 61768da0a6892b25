"""Stable hashes for cache keys: configs, input manifests and the s3core source code."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

_S3CORE_DIR = Path(__file__).resolve().parents[1]
_CODE_SUFFIXES = {".py", ".txt", ".jinja", ".json", ".yaml"}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot hash a {type(obj).__name__} in a cache key; pass plain data or a pydantic model")


def stable_hash(obj: Any, length: int = 16) -> str:
    """sha256 of the canonical JSON form of `obj` (sorted keys), first `length` hex digits."""
    text = json.dumps(obj, sort_keys=True, default=_jsonable, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


@functools.lru_cache(maxsize=1)
def code_hash() -> str:
    """Hash of every source file of s3core: a code change invalidates cached stages (coarse but safe)."""
    digest = hashlib.sha256()
    for path in sorted(_S3CORE_DIR.rglob("*")):
        if path.suffix in _CODE_SUFFIXES and "__pycache__" not in path.parts and path.is_file():
            digest.update(str(path.relative_to(_S3CORE_DIR)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_stream(stream, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(chunk_size):
        digest.update(chunk)
    return digest.hexdigest()
