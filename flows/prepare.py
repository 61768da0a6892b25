"""`s3-prepare`: ingest (and, on the tiny world, generate) the corpus and QA sets: the graph's stages up to
`questions` (s3core/pipeline/graph.py, slice "prepare")."""

from __future__ import annotations

from prefect import flow

from flows.params import ConfigPath
from s3core.config import load_config
from s3core.pipeline import slice_plan
from tasks.report import report_artifacts_task
from tasks.stage import run_plan


@flow(name="s3-prepare", log_prints=True)
def s3_prepare(config_path: ConfigPath = "configs/tiny.yaml") -> dict[str, str]:
    """Ingest the corpus and QA sets named in the config into the artifact store."""
    cfg = load_config(config_path)
    state = run_plan(slice_plan(cfg, "prepare"))
    return report_artifacts_task(cfg, state.all(), title="s3-prepare")
