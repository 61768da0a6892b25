"""The reward's precompute and training part of s3-train: naive RAG on every QA set -> the training pool
-> PPO training of the searcher."""

from __future__ import annotations

from s3core.config import RunConfig
from s3core.pipeline import PipelineState, has_train_split
from tasks.precompute import naive_rag_task, training_pool_task
from tasks.reader import reader_task
from tasks.train import train_task
from tasks.warmstart import warmstart_task


def precompute_stages(cfg: RunConfig, indexed: PipelineState) -> PipelineState:
    """Add the reader and the warm start (when configured), naive_rag, training_pool and train artifacts (the
    same order as the pipeline walker in s3core)."""
    model_stages(cfg, indexed)
    indexed.naive_rag = [
        naive_rag_task(cfg, q, indexed.corpus, indexed.dense_index, indexed.bm25_index,
                       indexed.generator_models)
        for q in indexed.questions
    ]
    if has_train_split(indexed.questions):
        indexed.training_pool = training_pool_task(cfg, indexed.naive_rag)
        indexed.train = train_task(cfg, indexed.training_pool, indexed.naive_rag, indexed.corpus, indexed.dense_index,
                                   indexed.bm25_index, indexed.models)
    return indexed


def model_stages(cfg: RunConfig, indexed: PipelineState) -> PipelineState:
    """The tiny world's reader and the searcher's warm start, when the config has their sections (later stages
    then resolve `tiny:*` models in the newest of their artifacts: PipelineState.models)."""
    if cfg.reader is not None:
        indexed.reader = reader_task(cfg, indexed.tiny_models, indexed.corpus, indexed.questions, indexed.dense_index,
                                     indexed.bm25_index)
    if cfg.warmstart is not None:
        indexed.warmstart = warmstart_task(cfg, indexed.models, indexed.corpus, indexed.questions, indexed.dense_index,
                                           indexed.bm25_index)
    return indexed
