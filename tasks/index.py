"""Tasks of the index-build stages: passage embeddings, the dense (FAISS) index and the BM25 index."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact

from s3core.config import RunConfig
from s3core.pipeline import open_store
from s3core.retrieval.stages import (
    bm25_index_spec,
    dense_index_spec,
    embed_spec,
    retrieval_eval_spec,
)
from s3core.store import Manifest
from tasks.common import artifact_key, run_spec_in_task, spec_cache_key


@task(name="embed-passages", cache_key_fn=spec_cache_key(lambda cfg, corpus, tiny_models=None: embed_spec(cfg, corpus, tiny_models)), persist_result=True)
def embed_task(cfg: RunConfig, corpus: list[Manifest], tiny_models: Manifest | None = None) -> Manifest:
    """Encode every passage with the dense encoder (sharded, resumable)."""
    return run_spec_in_task(embed_spec(cfg, corpus, tiny_models), cfg)


@task(name="dense-index", cache_key_fn=spec_cache_key(lambda cfg, embeddings: dense_index_spec(cfg, embeddings)), persist_result=True)
def dense_index_task(cfg: RunConfig, embeddings: Manifest) -> Manifest:
    """Build the FAISS index (flat, HNSW or IVF-PQ) over the passage embeddings."""
    return run_spec_in_task(dense_index_spec(cfg, embeddings), cfg)


@task(name="bm25-index", cache_key_fn=spec_cache_key(lambda cfg, corpus: bm25_index_spec(cfg, corpus)), persist_result=True)
def bm25_index_task(cfg: RunConfig, corpus: list[Manifest]) -> Manifest:
    """Build the Lucene BM25 index with pyserini."""
    return run_spec_in_task(bm25_index_spec(cfg, corpus), cfg)


@task(
    name="retrieval-eval",
    cache_key_fn=spec_cache_key(lambda cfg, corpus, questions, dense_index, bm25_index, tiny_models: retrieval_eval_spec(
        cfg, corpus, questions, dense_index, bm25_index, tiny_models)),
    persist_result=True,
)
def retrieval_eval_task(
    cfg: RunConfig,
    corpus: list[Manifest],
    questions: list[Manifest],
    dense_index: Manifest | None,
    bm25_index: Manifest | None,
    tiny_models: Manifest | None,
) -> Manifest:
    """Recall@k of each index on each non-train QA set; posted to the UI as a table."""
    manifest = run_spec_in_task(retrieval_eval_spec(cfg, corpus, questions, dense_index, bm25_index, tiny_models), cfg)
    rows = open_store(cfg).read_table(manifest).to_pylist()
    create_table_artifact(
        [{**r, "value": round(r["value"], 4)} for r in rows],
        key=artifact_key(cfg, "retrieval-recall"),
        description=f"Retrieval recall@k ({cfg.name}): answer recall = a top-k passage contains a gold answer",
    )
    return manifest
