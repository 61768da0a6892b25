"""The reader task: the tiny world's extractive reader, trained and measured (s3core.reader.stage)."""

from __future__ import annotations

from prefect import task

from s3core.config import RunConfig
from s3core.reader.stage import reader_spec
from s3core.store import Manifest
from tasks.common import run_spec_in_task, spec_cache_key


@task(
    name="train-reader",
    cache_key_fn=spec_cache_key(lambda cfg, tiny_models, corpus, questions, dense_index, bm25_index:
                                reader_spec(cfg, tiny_models, corpus, questions, dense_index, bm25_index)),
    persist_result=True,
)
def reader_task(cfg: RunConfig, tiny_models: Manifest, corpus: list[Manifest], questions: list[Manifest],
                dense_index: Manifest | None, bm25_index: Manifest | None) -> Manifest:
    """Train the reader on the train split; measure its dev GenAcc with gold, naive and no context."""
    return run_spec_in_task(reader_spec(cfg, tiny_models, corpus, questions, dense_index, bm25_index), cfg)
