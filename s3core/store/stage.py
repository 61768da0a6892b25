"""Running one cached, resumable stage: key -> skip if complete -> build -> manifest written last.

A stage is identified by `stage_key(stage, config, inputs)`: a hash of the stage name, its config section,
the content hashes of the input artifacts and the s3core code hash (DESIGN.md section 3). The same key
is Prefect's cache key in `tasks/`, so the two layers agree on what "already done" means.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
from pydantic import BaseModel

from s3core.store.code_identity import code_files_of
from s3core.store.hashing import code_hash, stable_hash
from s3core.store.manifest import Manifest
from s3core.store.store import (
    ArtifactStore,
    TableWriter,
    content_hash_of,
    schema_to_dict,
)

log = logging.getLogger(__name__)


class ProgressReporter(Protocol):
    """Where long stages report progress (a Prefect progress artifact in tasks/, a log line here)."""

    def __call__(self, done: float, total: float, message: str = "") -> None: ...


class EventSink(Protocol):
    """Where stages announce milestones (a Prefect event in tasks/, a log line here)."""

    def __call__(self, event: str, payload: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class StageSummary:
    """What a finished stage shows its user (tasks/ posts it as a Prefect table or markdown artifact).

    `key` is short and unique within a setting ("retrieval-recall"); tasks/ prefixes the setting's name.
    A table is a list of rows (dicts); markdown is one string."""

    key: str
    description: str
    table: list[dict[str, Any]] | None = None
    markdown: str | None = None


def log_event(event: str, payload: dict[str, Any]) -> None:
    log.info("event %s %s", event, payload)


def log_progress(done: float, total: float, message: str = "") -> None:
    pct = 100.0 * done / total if total else 0.0
    log.info("%5.1f%% %s", pct, message)


def config_hash(config: BaseModel | Mapping[str, Any] | None) -> str:
    return stable_hash(config if config is not None else {})


def stage_key(
    stage: str,
    config: BaseModel | Mapping[str, Any] | None,
    inputs: Mapping[str, Manifest],
    code: tuple[str, ...] | None = None,
) -> str:
    return stable_hash(
        {
            "stage": stage,
            "config": config_hash(config),
            "inputs": {name: m.content_hash for name, m in sorted(inputs.items())},
            "code": code_hash(code),
        }
    )


@dataclass
class StageResult:
    """What a build function hands back: stage-specific counts and timings for the manifest."""

    stats: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    staging_dir: Path | None = None  # directory artifacts: the finished local folder to commit


@dataclass
class StageContext:
    """Everything a build function needs: where to write, and how to report progress."""

    store: ArtifactStore
    stage: str
    key: str
    inputs: Mapping[str, Manifest]
    progress: ProgressReporter = log_progress
    events: EventSink = log_event

    def table_writer(self) -> TableWriter:
        return self.store.table_writer(self.stage, self.key)

    def staging_dir(self, resume: bool = False) -> Path:
        """Local folder for a directory artifact; `resume=True` keeps what a crashed attempt left there."""
        return self.store.dir_staging(self.stage, self.key, resume=resume)


@dataclass
class StageSpec:
    """A stage fully described before it runs: its key is known without running it (Prefect's cache key)."""

    stage: str
    config: Any
    inputs: Mapping[str, Manifest]
    build: Callable[[StageContext], StageResult]
    kind: str = "table"
    detail: str = ""  # what distinguishes this artifact from others of its stage (a QA set, a run): for names
    code: tuple[str, ...] | None = None  # s3core files whose source enters the key (None: derived from build)

    @property
    def code_files(self) -> tuple[str, ...]:
        """The s3core source the stage runs: `code`, or what its build function imports (code_identity.py)."""
        return self.code if self.code is not None else code_files_of(self.build)

    @property
    def key(self) -> str:
        return stage_key(self.stage, self.config, self.inputs, self.code_files)

    @property
    def label(self) -> str:
        """A readable name of this artifact: the stage, and its detail if any (e.g. naive_rag tiny_nq/test)."""
        return f"{self.stage} {self.detail}" if self.detail else self.stage

    def run(self, store: ArtifactStore, progress: ProgressReporter = log_progress, events: EventSink = log_event) -> Manifest:
        return run_stage(store, self.stage, self.config, self.inputs, self.build, self.kind, progress, self.code_files,
                         events)

    def completed(self, store: ArtifactStore) -> Manifest | None:
        return store.find_complete(self.stage, self.key)


def run_stage(
    store: ArtifactStore,
    stage: str,
    config: BaseModel | Mapping[str, Any] | None,
    inputs: Mapping[str, Manifest],
    build: Callable[[StageContext], StageResult],
    kind: str = "table",
    progress: ProgressReporter = log_progress,
    code: tuple[str, ...] | None = None,
    events: EventSink = log_event,
) -> Manifest:
    """Run `build` unless a complete artifact for this key exists; return the artifact's manifest."""
    key = stage_key(stage, config, inputs, code)
    if existing := store.find_complete(stage, key):
        log.info("stage %s: complete artifact %s found, skipping", stage, key)
        return existing
    started = time.perf_counter()
    context = StageContext(store=store, stage=stage, key=key, inputs=inputs, progress=progress, events=events)
    result = build(context)
    manifest = _finalize(store, stage, key, kind, config, inputs, code, result, time.perf_counter() - started)
    store.write_manifest(manifest)
    log.info("stage %s: wrote %s", stage, manifest.summary())
    return manifest


def _finalize(store, stage, key, kind, config, inputs, code, result: StageResult, seconds: float) -> Manifest:
    common = dict(
        stage=stage,
        key=key,
        kind=kind,
        config_hash=config_hash(config),
        inputs={name: m.content_hash for name, m in sorted(inputs.items())},
        code_hash=code_hash(code),
        stats=result.stats,
        timings={**result.timings, "total_s": round(seconds, 3)},
    )
    if kind == "dir":
        if result.staging_dir is None:
            raise ValueError(f"stage {stage}: a directory artifact must return StageResult(staging_dir=...)")
        target, files = store.commit_dir(stage, key, result.staging_dir)
        return Manifest(uri=store.uri_of(store.artifact_path(stage, key)), shards=files,
                        content_hash=content_hash_of(files), **common)
    writer = store.table_writer(stage, key)
    shards, schema, shard_stats = writer.describe()
    merged = merge_shard_stats(shard_stats)
    return Manifest(
        uri=store.uri_of(writer.path),
        schema=schema_to_dict(schema) if schema is not None else None,
        row_count=sum(s.rows or 0 for s in shards),
        shards=shards,
        content_hash=content_hash_of(shards),
        **{**common, "stats": {**merged, **result.stats}},
    )


def merge_shard_stats(per_shard: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum numeric counts across shards; keep up to 10 examples of list-valued entries."""
    merged: dict[str, Any] = {}
    for stats in per_shard:
        for name, value in stats.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                merged[name] = merged.get(name, 0) + value
            elif isinstance(value, list):
                merged[name] = (merged.get(name, []) + value)[:10]
    return merged


def write_missing_shards(
    ctx: StageContext,
    items: list,
    shard_rows: int,
    open_worker: Callable[[], Callable[[list], list[dict]]],
    schema: pa.Schema,
    shard_stats: Callable[[list[dict]], dict],
    label: str,
) -> dict[str, int]:
    """The resume loop of a stage whose output rows follow its input items, `shard_rows` items per shard.

    Shard i holds the rows of items[i*shard_rows:(i+1)*shard_rows]. Finished shards are kept as they are;
    `open_worker()` (loading models, starting servers, health checks) runs only if a shard is missing, and
    the worker it returns turns one chunk of items into that chunk's rows. Returns resumed/written counts.
    """
    writer = ctx.table_writer()
    finished = writer.finished_shards()
    total = max(1, -(-len(items) // shard_rows))  # an empty input still gets one (empty) shard
    pending = [i for i in range(total) if i not in finished]
    counts = {"resumed_shards": total - len(pending), "written_shards": len(pending)}
    if not pending:
        return counts
    work = open_worker()
    started, done = time.perf_counter(), 0
    for step, index in enumerate(pending, start=1):
        chunk = items[index * shard_rows:(index + 1) * shard_rows]
        rows = work(chunk)
        writer.write_shard(index, pa.Table.from_pylist(rows, schema=schema), shard_stats(rows))
        done += len(chunk)
        rate = done / max(time.perf_counter() - started, 1e-9)
        ctx.progress(total - len(pending) + step, total, f"{label}: shard {index + 1}/{total}, {rate:.2f} items/s")
    return counts
