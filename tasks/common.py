"""What every stage task shares: the cache key, persisted results, and progress shown in the Prefect UI.

The cache key of a stage task is the s3core stage key (config + input manifests' content hashes + s3core
code hash), and it is only offered to Prefect while the store really holds the finished artifact: if a user
deletes an artifact, the task runs again instead of returning a manifest that points at nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import TaskRunContext

from s3core.config import RunConfig
from s3core.pipeline import open_store
from s3core.store import Manifest, StageSpec

PROGRESS_EVERY_S = 1.0


def artifact_key(cfg: RunConfig, what: str) -> str:
    """A Prefect artifact key for this setting: keys allow lowercase letters, digits and dashes only."""
    return f"{cfg.name}-{what}".lower().replace("_", "-").replace(".", "-")


def spec_cache_key(make_spec: Callable[..., StageSpec]) -> Callable[[TaskRunContext, dict[str, Any]], str | None]:
    """A Prefect cache_key_fn built from the function that makes the task's StageSpec from its parameters."""

    def cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
        spec = make_spec(**parameters)
        cfg: RunConfig = parameters["cfg"]
        if spec.completed(open_store(cfg)) is None:
            return None
        return f"{spec.stage}-{spec.key}"

    return cache_key


class PrefectProgress:
    """ProgressReporter that keeps one progress artifact per stage up to date (throttled) and logs messages."""

    def __init__(self, stage: str):
        self.stage = stage
        self.artifact_id = None
        self.last = 0.0

    def __call__(self, done: float, total: float, message: str = "") -> None:
        percent = min(100.0, 100.0 * done / total) if total else 0.0
        now = time.monotonic()
        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(percent, description=f"{self.stage}: {message}"[:500])
        elif now - self.last >= PROGRESS_EVERY_S or percent >= 100.0:
            update_progress_artifact(self.artifact_id, percent, description=f"{self.stage}: {message}"[:500])
        else:
            return
        self.last = now
        get_run_logger().info("%s %5.1f%% %s", self.stage, percent, message)


def run_spec_in_task(spec: StageSpec, cfg: RunConfig) -> Manifest:
    """Run a stage inside a task with UI progress; log whether it was skipped."""
    logger = get_run_logger()
    store = open_store(cfg)
    if done := spec.completed(store):
        logger.info("%s: finished artifact %s found; nothing to do", spec.stage, done.uri)
        return done
    manifest = spec.run(store, PrefectProgress(spec.stage))
    logger.info("%s: %s (%.1f s)", spec.stage, manifest.summary(), manifest.timings.get("total_s", 0.0))
    return manifest
