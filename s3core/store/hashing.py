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


ALWAYS_HASHED = ("store",)  # the artifact format itself: every stage's output depends on it


@functools.lru_cache(maxsize=None)
def code_hash(parts: tuple[str, ...] | None = None) -> str:
    """Hash of s3core source files: all of them, or only `parts` (paths relative to s3core/, files or folders)
    plus the store package. A stage names the code it runs, so editing one stage's code does not invalidate
    every other stage's cache."""
    digest = hashlib.sha256()
    for path in _source_files(parts):
        digest.update(str(path.relative_to(_S3CORE_DIR)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _source_files(parts: tuple[str, ...] | None) -> list[Path]:
    roots = [_S3CORE_DIR] if parts is None else [_S3CORE_DIR / p for p in (*ALWAYS_HASHED, *parts)]
    files: set[Path] = set()
    for root in roots:
        if not root.exists():
            raise ValueError(f"code part {root} does not exist; fix the StageSpec's code paths (relative to s3core/)")
        candidates = [root] if root.is_file() else root.rglob("*")
        files.update(p for p in candidates if p.suffix in _CODE_SUFFIXES and "__pycache__" not in p.parts and p.is_file())
    return sorted(files)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_stream(stream, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(chunk_size):
        digest.update(chunk)
    return digest.hexdigest()
