"""Tasks of the data-preparation stages: tiny world, tiny models, corpus and QA ingest."""

from __future__ import annotations

from prefect import task

from s3core.config import RunConfig
from s3core.config.schema import CorpusPart, QASetConfig
from s3core.pipeline import corpus_spec, questions_spec, tiny_models_spec, world_spec
from s3core.store import Manifest
from tasks.common import run_spec_in_task, spec_cache_key


@task(name="world", cache_key_fn=spec_cache_key(lambda cfg: world_spec(cfg)), persist_result=True)
def world_task(cfg: RunConfig) -> Manifest:
    """Generate the tiny world (corpus + QA files in the wiki-18 / FlashRAG formats)."""
    return run_spec_in_task(world_spec(cfg), cfg)


@task(name="tiny-models", cache_key_fn=spec_cache_key(lambda cfg, world: tiny_models_spec(cfg, world)), persist_result=True)
def tiny_models_task(cfg: RunConfig, world: Manifest) -> Manifest:
    """Build the tiny tokenizer, searcher, generator and encoder as Hugging Face folders."""
    return run_spec_in_task(tiny_models_spec(cfg, world), cfg)


@task(
    name="ingest-corpus",
    task_run_name="ingest-corpus-{part.name}",
    cache_key_fn=spec_cache_key(lambda cfg, part, world=None: corpus_spec(cfg, part, world)),
    persist_result=True,
)
def corpus_task(cfg: RunConfig, part: CorpusPart, world: Manifest | None = None) -> Manifest:
    """Ingest one corpus part into passages(id, title, text) Parquet shards."""
    return run_spec_in_task(corpus_spec(cfg, part, world), cfg)


@task(
    name="ingest-questions",
    task_run_name="ingest-questions-{qa.name}-{qa.split}",
    cache_key_fn=spec_cache_key(lambda cfg, qa, world=None: questions_spec(cfg, qa, world)),
    persist_result=True,
)
def questions_task(cfg: RunConfig, qa: QASetConfig, world: Manifest | None = None) -> Manifest:
    """Ingest one QA set into questions(id, data_source, split, question, golden_answers, metadata)."""
    return run_spec_in_task(questions_spec(cfg, qa, world), cfg)
