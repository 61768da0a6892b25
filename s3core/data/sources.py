"""Where input records come from: local files, http(s) URLs (resumable download), Hugging Face datasets.

A source is resolved to an iterator of (line number, raw record) so the ingest stage can shard by input
position, skip finished shards on resume, and name the exact line of a malformed record.

Downloads stream to `<cache>/downloads/<hash of url>/<name>.partial` in chunks and continue from the bytes
already there with an HTTP Range request after an interruption; the file is renamed to its final name only
when complete and, when a sha256 is given, verified. A server that ignores Range restarts from zero.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import httpx

from s3core.paths import cache_dir
from s3core.store.hashing import sha256_stream, stable_hash

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


class SourceError(RuntimeError):
    """A source that cannot be read: missing file, HTTP failure, checksum mismatch, unknown dataset."""


# -- local files -------------------------------------------------------------------------------------
def open_binary(path: Path) -> io.BufferedIOBase:
    """Open a .jsonl or .jsonl.gz file as bytes (lines are decoded one by one, so a bad byte names its line)."""
    if not path.exists():
        raise SourceError(f"{path}: no such file; check the path in your config (relative paths are from the cwd)")
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def iter_jsonl_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw line bytes) for every non-blank line. A compressed file that is cut short
    or corrupt is a SourceError naming the file and the last line read."""
    number = 0
    try:
        with open_binary(path) as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
    except (EOFError, OSError, zlib.error) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise SourceError(
            f"{path}: cannot read past line {number}: {err}. The file is truncated or corrupt (an interrupted "
            "download or copy): fetch it again (for a URL source, delete it from the cache's downloads/ folder)"
        ) from None


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Cheap identity of a local input file for cache keys: path, size and modification time."""
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


# -- http(s) downloads -------------------------------------------------------------------------------
def download_path(url: str) -> Path:
    name = os.path.basename(urlparse(url).path) or "download"
    return cache_dir() / "downloads" / stable_hash(url) / name


def download(
    url: str,
    sha256: str | None = None,
    progress: Callable[[float, float, str], None] | None = None,
    retries: int = 3,
    timeout_s: float = 60.0,
) -> Path:
    """Download `url` into the project cache, resuming a partial download; verify `sha256` when given."""
    target = download_path(url)
    if target.exists():
        _verify_sha256(target, sha256, url)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    for attempt in range(1, retries + 1):
        try:
            _fetch_into(url, partial, progress, timeout_s)
            break
        except (httpx.TransportError, httpx.RemoteProtocolError) as err:
            if attempt == retries:
                raise SourceError(f"download of {url} failed after {retries} attempts: {err}") from err
            wait = 2.0 ** attempt
            log.warning("download of %s interrupted (%s); resuming in %.0f s", url, err, wait)
            time.sleep(wait)
    _verify_sha256(partial, sha256, url)
    os.replace(partial, target)
    return target


def _fetch_into(url: str, partial: Path, progress, timeout_s: float) -> None:
    have = partial.stat().st_size if partial.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with httpx.stream("GET", url, headers=headers, timeout=timeout_s, follow_redirects=True) as response:
        if response.status_code == 416:  # asked past the end: the partial file is already whole
            return
        if response.status_code not in (200, 206):
            raise SourceError(f"GET {url} answered HTTP {response.status_code}; check the URL in your config")
        if response.status_code == 200 and have:
            log.warning("%s ignores Range requests; restarting the download from zero", url)
            have = 0
        total = _total_size(response, have)
        mode = "ab" if response.status_code == 206 else "wb"
        with open(partial, mode) as handle:
            done = have
            for chunk in response.iter_bytes(CHUNK_BYTES):
                handle.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total or done, f"downloading {url}")


def _total_size(response: httpx.Response, have: int) -> int | None:
    if "content-range" in response.headers:
        return int(response.headers["content-range"].rsplit("/", 1)[-1])
    if "content-length" in response.headers:
        return have + int(response.headers["content-length"]) if response.status_code == 206 else int(response.headers["content-length"])
    return None


def _verify_sha256(path: Path, expected: str | None, url: str) -> None:
    if not expected:
        return
    with open(path, "rb") as handle:
        actual = sha256_stream(handle, CHUNK_BYTES)
    if actual != expected.lower():
        path.unlink()
        raise SourceError(
            f"checksum mismatch for {url}: sha256 {actual} != expected {expected}. The file was deleted; "
            "re-run to download again, or fix `sha256` in the config if the file legitimately changed."
        )


# -- Hugging Face datasets ---------------------------------------------------------------------------
def iter_hf_records(name: str, config: str | None, split: str, revision: str | None, skip: int = 0) -> Iterator[tuple[int, str]]:
    """Rows of a Hugging Face dataset (hub name or local folder), streamed, as (row number, JSON text)."""
    import datasets  # noqa: PLC0415 - heavy import, only for this source

    try:
        dataset = datasets.load_dataset(name, config, split=split, revision=revision, streaming=True)
    except Exception as err:  # datasets raises many types; all mean "cannot open this source"
        raise SourceError(
            f"cannot open Hugging Face dataset {name!r} (config {config!r}, split {split!r}): {err}. "
            "Check the name, config and split; offline machines need a local copy (a folder path works too)."
        ) from err
    if skip:
        dataset = dataset.skip(skip)
    for number, row in enumerate(dataset, start=skip + 1):
        yield number, json.dumps(row, ensure_ascii=False, default=str)
