"""`s3-train`: the whole stage graph for one setting, every stage cached and resumable.

    world -> tiny models -> corpus -> questions -> embeddings -> dense index; BM25 index -> retrieval recall
    -> reader, warm start (when configured) -> naive RAG per QA set -> training pool -> train (PPO,
    checkpoints + events) -> contexts (the trained s3 searcher and the baselines) -> scores -> report

The order and the conditions are the graph's (s3core/pipeline/graph.py); this flow only picks its slice.
"""

from __future__ import annotations

from prefect import flow

from flows.params import ConfigPath
from s3core.config import load_config
from s3core.pipeline import slice_plan
from tasks.report import report_artifacts_task
from tasks.stage import run_plan


@flow(name="s3-train", log_prints=True)
def s3_train(config_path: ConfigPath = "configs/tiny.yaml") -> dict[str, str]:
    """Run every stage of the s3 pipeline for the setting in `config_path`."""
    cfg = load_config(config_path)
    state = run_plan(slice_plan(cfg, "train"))
    return report_artifacts_task(cfg, state.all(), title=f"s3-train ({cfg.name})")
