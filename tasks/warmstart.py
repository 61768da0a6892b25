"""The warm-start task: the searcher fine-tuned on noisy oracle trajectories (s3core.warmstart.stage)."""

from __future__ import annotations

from prefect import task

from s3core.config import RunConfig
from s3core.store import Manifest
from s3core.warmstart.stage import warmstart_spec
from tasks.common import run_spec_in_task, spec_cache_key


@task(
    name="warm-start-searcher",
    cache_key_fn=spec_cache_key(lambda cfg, models, corpus, questions, dense_index, bm25_index:
                                warmstart_spec(cfg, models, corpus, questions, dense_index, bm25_index)),
    persist_result=True,
)
def warmstart_task(cfg: RunConfig, models: Manifest, corpus: list[Manifest], questions: list[Manifest],
                   dense_index: Manifest | None, bm25_index: Manifest | None) -> Manifest:
    """Let the oracle play the train questions (with noise) and fine-tune the searcher on its turns."""
    return run_spec_in_task(warmstart_spec(cfg, models, corpus, questions, dense_index, bm25_index), cfg)
