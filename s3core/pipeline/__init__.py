"""The pipeline: one stage graph (graph.py) and the ways to walk it without Prefect (DESIGN.md section 3).

Each stage is one cached, resumable StageSpec (its key: config + inputs' content hashes + the code it runs).
`flows/` runs the graph's slices under Prefect (a generic task per spec, whose cache key is the spec's key);
`prepare` runs stages here (`s3agent stage NAME`, tests, benchmarks); `finished_pipeline` looks every stage
up without running any; `pack_inputs` copies what a stage needs to another machine. All of them walk the
same `STAGES`, so the artifact, its key and its resume behaviour are the same whichever way a stage starts.
`experiment.py` runs the graph once per seed and aggregates.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from s3core.config.schema import RunConfig
from s3core.generation.local_server import LOCAL_SERVERS
from s3core.pipeline.graph import (
    SLICES,
    STAGE_GROUPS,
    STAGE_ORDER,
    STAGES,
    PipelineState,
    Plan,
    StageNode,
    cli_stage_names,
    has_train_split,
    plan_through,
    slice_plan,
    stage_names,
    summaries,
    trained_checkpoint,
    walk_pipeline,
)
from s3core.store import ArtifactStore, Manifest, StageSpec, open_store
from s3core.store.manifest import MANIFEST_NAME
from s3core.store.stage import ProgressReporter, log_progress

__all__ = [
    "SLICES", "STAGES", "STAGE_GROUPS", "STAGE_ORDER", "PipelineState", "Plan", "StageNode", "cli_stage_names",
    "finished_pipeline", "has_train_split", "open_store", "pack_inputs", "plan_through", "prepare", "slice_plan",
    "stage_names", "summaries", "trained_checkpoint", "walk_pipeline",
]


def prepare(store: ArtifactStore, cfg: RunConfig, progress: ProgressReporter = log_progress,
            until: str = STAGE_ORDER[-1]) -> PipelineState:
    """Every stage in order up to and including `until`, without Prefect (`s3agent stage`, tests, benchmarks).

    Local generator servers started on the way (generator.serve) are stopped before it returns."""
    plan = plan_through(cfg, until)
    try:
        state = walk_pipeline(plan, lambda spec: spec.run(store, progress))
    finally:
        LOCAL_SERVERS.stop_all()
    assert state is not None  # run() always returns a manifest or raises
    return state


def finished_pipeline(cfg: RunConfig) -> PipelineState | None:
    """All manifests of the pipeline if every stage is already complete, else None. Runs nothing."""
    store = open_store(cfg)
    return walk_pipeline(cfg, lambda spec: spec.completed(store))


def pack_inputs(cfg: RunConfig, stage: str, out_root: Path) -> list[Manifest]:
    """Copy every finished artifact that `stage` needs (each stage before it in the pipeline) from the config's
    store into `out_root`, laid out as a store root; returns their manifests.

    For a machine that cannot reach the store: put `out_root` there as that checkout's store root, run the stage
    there (`s3agent stage ...`), and copy `<root>/<stage>/<key>` back. Keys depend only on configs, code and
    inputs' content hashes, so the stage finds its inputs there and its artifact has the key it has here.
    Each artifact is copied to a temporary name and renamed when complete. Raises ValueError naming the first
    stage that has not run yet.
    """
    if stage not in STAGE_ORDER:
        raise ValueError(f"unknown stage {stage!r}: choose one of {', '.join(STAGE_ORDER)}")
    store = open_store(cfg)
    before = STAGE_ORDER[: STAGE_ORDER.index(stage)]
    packed: list[Manifest] = []

    def copy_finished(spec: StageSpec) -> Manifest | None:
        manifest = spec.completed(store)
        if manifest is None:
            raise ValueError(f"stage {spec.stage} [{spec.key}] of '{cfg.name}' has not run in {store.root_uri}, so "
                             f"there is nothing to pack for it: run the stages before {stage} first")
        target = out_root / spec.stage / spec.key
        if not (target / MANIFEST_NAME).exists():
            partial = target.with_name(f".{spec.key}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            store.fs.get(store.artifact_path(spec.stage, spec.key) + "/", str(partial) + "/", recursive=True)
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
        packed.append(manifest)
        return manifest

    walk_pipeline(Plan(cfg, stages=before), copy_finished)
    return packed
