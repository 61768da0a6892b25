"""Tasks of the reward's precompute: naive RAG on every QA set, then the training pool (reward/precompute.py)."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact

from s3core.config import RunConfig
from s3core.generation.local_server import LOCAL_SERVERS
from s3core.reward.precompute import naive_rag_spec, training_pool_spec
from s3core.store import Manifest
from tasks.common import artifact_key, run_spec_in_task, spec_cache_key


@task(
    name="naive-rag",
    task_run_name="naive-rag-{questions.stats[data_source]}-{questions.stats[split]}",
    cache_key_fn=spec_cache_key(lambda cfg, questions, corpus, dense_index, bm25_index, tiny_models: naive_rag_spec(
        cfg, questions, corpus, dense_index, bm25_index, tiny_models)),
    persist_result=True,
)
def naive_rag_task(
    cfg: RunConfig,
    questions: Manifest,
    corpus: list[Manifest],
    dense_index: Manifest | None,
    bm25_index: Manifest | None,
    tiny_models: Manifest | None,
) -> Manifest:
    """Naive top-k RAG answer and GenAcc of every question of one QA set (sharded, resumable)."""
    return run_spec_in_task(naive_rag_spec(cfg, questions, corpus, dense_index, bm25_index, tiny_models), cfg)


@task(name="training-pool", cache_key_fn=spec_cache_key(lambda cfg, naive: training_pool_spec(cfg, naive)), persist_result=True)
def training_pool_task(cfg: RunConfig, naive: list[Manifest]) -> Manifest:
    """The train questions naive RAG fails (yes/no ones dropped); the filter's counts go to the UI as a table."""
    manifest = run_spec_in_task(training_pool_spec(cfg, naive), cfg)
    create_table_artifact(naive_rag_table(naive, manifest), key=artifact_key(cfg, "training-pool"),
                          description=f"Naive RAG GenAcc and the training pool ({cfg.name})")
    return manifest


def naive_rag_table(naive: list[Manifest], pool: Manifest) -> list[dict[str, object]]:
    """One row per QA set (naive GenAcc), then the pool's filter counts (paper: 169,615 -> 70,286)."""
    rows: list[dict[str, object]] = []
    for m in naive:
        n, correct = m.stats.get("questions", 0), m.stats.get("naive_correct", 0)
        rows.append({"what": f"naive RAG {m.stats.get('data_source')}/{m.stats.get('split')}", "questions": n,
                     "naive_correct": correct, "genacc": round(correct / n, 4) if n else 0.0})
    s = pool.stats
    rows.append({"what": "training pool", "questions": s.get("total", 0), "naive_correct": s.get("naive_correct", 0),
                 "yes_no_filtered": s.get("yes_no_filtered", 0), "kept": s.get("kept", 0)})
    return rows


def stop_local_generators() -> None:
    """Stop the `transformers serve` servers this flow run started (generator.serve); by PID."""
    LOCAL_SERVERS.stop_all()
