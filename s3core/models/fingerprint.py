"""The identity of a model's weights: a content hash of its Hugging Face folder, so the same weights are
scored once whatever path they are read from (a checkpoint in the train stage's staging folder, the same
checkpoint moved into the store, a copy elsewhere)."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path


def weights_fingerprint(actor: Path) -> str:
    """sha256 over the actor folder's files (names and contents): the identity of the weights. Hashed once
    per process for an unchanged folder (a 7B checkpoint is ~15 GB)."""
    files = sorted(p for p in Path(actor).rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"{actor} holds no files: not a Hugging Face model folder")
    signature = tuple((str(p.relative_to(actor)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _fingerprint(str(actor), signature)


@functools.lru_cache(maxsize=64)
def _fingerprint(actor: str, signature: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in signature:
        digest.update(name.encode() + b"\0")
        with open(Path(actor) / name, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()[:16]
