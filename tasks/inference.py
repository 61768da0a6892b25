"""Tasks of the inference stage: contexts of the s3 searcher and each baseline on each evaluation QA set."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact

from s3core.agent.inference import InferenceRun, contexts_spec
from s3core.config import RunConfig
from s3core.store import Manifest
from tasks.common import artifact_key, run_spec_in_task, spec_cache_key


@task(
    name="contexts",
    task_run_name="contexts-{run.name}-{questions.stats[data_source]}-{questions.stats[split]}",
    cache_key_fn=spec_cache_key(lambda cfg, run, questions, corpus, dense_index, bm25_index, tiny_models:
                                contexts_spec(cfg, run, questions, corpus, dense_index, bm25_index, tiny_models)),
    persist_result=True,
)
def contexts_task(cfg: RunConfig, run: InferenceRun, questions: Manifest, corpus: list[Manifest],
                  dense_index: Manifest | None, bm25_index: Manifest | None, tiny_models: Manifest | None) -> Manifest:
    """Contexts of one run (s3 or a baseline) on one QA set (sharded, resumable)."""
    return run_spec_in_task(contexts_spec(cfg, run, questions, corpus, dense_index, bm25_index, tiny_models), cfg)


@task(name="contexts-summary")
def contexts_summary_task(cfg: RunConfig, contexts: list[Manifest]) -> None:
    """One UI table: per run and QA set, questions, mean turns, invalid turns, stops and policy tokens."""
    create_table_artifact(contexts_table(contexts), key=artifact_key(cfg, "contexts"),
                          description=f"Searcher and baseline contexts ({cfg.name})")


def contexts_table(contexts: list[Manifest]) -> list[dict[str, object]]:
    rows = []
    for m in contexts:
        s, n = m.stats, max(1, m.stats.get("questions", 0))
        rows.append({"run": s.get("run"), "qa_set": f"{s.get('data_source')}/{s.get('split')}",
                     "questions": s.get("questions", 0), "turns_mean": round(s.get("turns", 0) / n, 2),
                     "invalid_turns_mean": round(s.get("invalid_turns", 0) / n, 2), "stopped": s.get("stopped", 0),
                     "policy_tokens_mean": round(s.get("policy_tokens", 0) / n, 1)})
    return rows
