"""The one Prefect task every stage runs in, and the walk of a plan's stages as Prefect tasks.

`run_plan` walks the stage graph (s3core.pipeline.graph) with `resolve` = this module's stage task, so a
flow is only a choice of plan. Each spec runs in `stage_task`, named after its stage (`naive-rag`, its run
`naive-rag-tiny_nq-test`), with

- the cache key = the s3core stage key (config + input manifests' content hashes + the code the stage
  runs), offered to Prefect only while the store really holds the finished artifact: if a user deletes an
  artifact, the task runs again instead of returning a manifest that points at nothing;
- progress in a Prefect progress artifact (throttled) and the log;
- the stage's events (the train stage's `s3.checkpoint.saved`) as Prefect events, which the
  `s3-evaluate/on-checkpoint` deployment is triggered by.

What a finished stage shows in the UI (its StageSummary: tables, markdown) is posted by `summary_task`,
every run, also when the stage itself came from the cache.
"""

from __future__ import annotations

import re
import time
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.context import TaskRunContext
from prefect.events import emit_event

from s3core.config import RunConfig
from s3core.generation.local_server import LOCAL_SERVERS
from s3core.pipeline import PipelineState, Plan, StageNode, summaries, walk_pipeline
from s3core.pipeline.graph import display_name
from s3core.store import Manifest, StageSpec, StageSummary, open_store

PROGRESS_EVERY_S = 1.0


def artifact_key(cfg: RunConfig, what: str) -> str:
    """A Prefect artifact key for this setting: keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]", "-", f"{cfg.name}-{what}".lower())


def task_run_name(spec: StageSpec) -> str:
    """`naive-rag-tiny_nq-test`: the stage, then what tells this artifact from the stage's others."""
    detail = re.sub(r"[\s/]+", "-", spec.detail)
    return f"{display_name(spec.stage)}-{detail}" if detail else display_name(spec.stage)


def cached_while_artifact_exists(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    """Prefect's cache key of a stage task: the stage key, while the finished artifact is in the store."""
    spec: StageSpec = parameters["spec"]
    if spec.completed(open_store(parameters["cfg"])) is None:
        return None
    return f"{spec.stage}-{spec.key}"


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


def emit_stage_event(event: str, payload: dict[str, Any]) -> None:
    """A Prefect event per stage milestone; deployments trigger on `s3.checkpoint.saved` (payload: run, key,
    step, path, store)."""
    resource = {"prefect.resource.id": f"s3.run.{payload.get('run', 'unknown')}"}
    if "key" in payload:
        resource["s3.key"] = str(payload["key"])
    emit_event(event=event, resource=resource, payload=payload)
    if "step" in payload:
        get_run_logger().info("checkpoint step %s saved at %s", payload["step"], payload.get("path"))


@task(name="stage", cache_key_fn=cached_while_artifact_exists, persist_result=True)
def stage_task(spec: StageSpec, cfg: RunConfig) -> Manifest:
    """Run one stage (or find its finished artifact) with UI progress and events; log which it was."""
    logger = get_run_logger()
    store = open_store(cfg)
    if done := spec.completed(store):
        logger.info("%s: finished artifact %s found; nothing to do", spec.label, done.uri)
        return done
    manifest = spec.run(store, PrefectProgress(spec.stage), events=emit_stage_event)
    logger.info("%s: %s (%.1f s)", spec.label, manifest.summary(), manifest.timings.get("total_s", 0.0))
    return manifest


@task(name="stage-summary", task_run_name="summary-{stage}")
def summary_task(cfg: RunConfig, stage: str, posts: list[StageSummary]) -> None:
    """Post a finished stage's tables and markdown to this flow run's UI."""
    for post in posts:
        key = artifact_key(cfg, post.key)
        if post.table is not None:
            create_table_artifact(post.table, key=key, description=post.description)
        if post.markdown is not None:
            create_markdown_artifact(post.markdown, key=key, description=post.description)


def run_stage(spec: StageSpec, cfg: RunConfig) -> Manifest:
    """`spec` in its stage's task (named after the stage, its run after the artifact)."""
    return stage_task.with_options(name=display_name(spec.stage), task_run_name=task_run_name(spec))(spec, cfg)


def run_plan(plan: Plan) -> PipelineState:
    """Every stage of `plan` in graph order, each spec a Prefect task, each finished stage's summary posted.
    Local generator servers started on the way (generator.serve) are stopped before it returns."""

    def post_summaries(node: StageNode, state: PipelineState) -> None:
        if posts := summaries(node, plan, state):
            summary_task(plan.cfg, node.name, posts)

    try:
        state = walk_pipeline(plan, lambda spec: run_stage(spec, plan.cfg), after=post_summaries)
    finally:
        LOCAL_SERVERS.stop_all()  # by PID
    assert state is not None  # a stage task returns a manifest or raises
    return state
