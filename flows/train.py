"""`s3-train`: the whole pipeline for one setting, every stage cached and resumable.

    prepare (world -> tiny models -> corpus -> questions) -> index (embeddings -> dense index; BM25 index)
    -> precompute (naive RAG per QA set -> training pool) -> train (PPO, checkpoints + events) -> inference
    (contexts of the trained s3 searcher and the baselines) -> evaluate (answers, GenAcc / EM / F1, report)
"""

from __future__ import annotations

from prefect import flow

from flows.index import index_stages
from flows.inference import evaluation_stages, inference_stages
from flows.params import ConfigPath
from flows.precompute import precompute_stages
from flows.prepare import prepare_stages
from s3core.config import load_config
from tasks.precompute import stop_local_generators
from tasks.report import report_artifacts_task


@flow(name="s3-train", log_prints=True)
def s3_train(config_path: ConfigPath = "configs/tiny.yaml") -> dict[str, str]:
    """Run every stage of the s3 pipeline for the setting in `config_path`."""
    cfg = load_config(config_path)
    try:
        trained = precompute_stages(cfg, index_stages(cfg, prepare_stages(cfg)))
        outputs = evaluation_stages(cfg, inference_stages(cfg, trained))
    finally:
        stop_local_generators()
    return report_artifacts_task(cfg, outputs.all(), title=f"s3-train ({cfg.name})")
