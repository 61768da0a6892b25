"""The index-build part of s3-train: embeddings -> dense index, and the BM25 index (as the config asks)."""

from __future__ import annotations

from s3core.config import RunConfig
from s3core.pipeline import PipelineState
from s3core.retrieval.stages import needs_dense
from tasks.index import (
    bm25_index_task,
    dense_index_task,
    embed_task,
    retrieval_eval_task,
)


def index_stages(cfg: RunConfig, prepared: PipelineState) -> PipelineState:
    """Add the index artifacts to `prepared` (the same order as the pipeline walker in s3core)."""
    if needs_dense(cfg):
        embeddings = embed_task(cfg, prepared.corpus, prepared.tiny_models)
        prepared.embeddings = embeddings
        prepared.dense_index = dense_index_task(cfg, embeddings)
    if cfg.retrieval.bm25.enabled:
        prepared.bm25_index = bm25_index_task(cfg, prepared.corpus)
    if any(m.stats.get("split") != "train" for m in prepared.questions):
        prepared.retrieval_eval = retrieval_eval_task(
            cfg, prepared.corpus, prepared.questions, prepared.dense_index, prepared.bm25_index, prepared.tiny_models
        )
    return prepared
