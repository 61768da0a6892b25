"""The index-build part of s3-train: embeddings -> dense index, and the BM25 index (as the config asks)."""

from __future__ import annotations

from flows.prepare import PrepareOutputs
from s3core.config import RunConfig
from s3core.retrieval.stages import needs_dense
from tasks.index import bm25_index_task, dense_index_task, embed_task


def index_stages(cfg: RunConfig, prepared: PrepareOutputs) -> PrepareOutputs:
    """Add the index artifacts to `prepared` (the same order as the pipeline walker in s3core)."""
    if needs_dense(cfg):
        embeddings = embed_task(cfg, prepared.corpus, prepared.tiny_models)
        prepared.embeddings = embeddings
        prepared.dense_index = dense_index_task(cfg, embeddings)
    if cfg.retrieval.bm25.enabled:
        prepared.bm25_index = bm25_index_task(cfg, prepared.corpus)
    return prepared
