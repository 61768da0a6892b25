"""The inference part of s3-train: contexts of every run (s3, baselines) on every evaluation QA set."""

from __future__ import annotations

from s3core.agent.inference import eval_question_sets, inference_runs
from s3core.config import RunConfig
from s3core.pipeline import PipelineState
from tasks.inference import contexts_summary_task, contexts_task


def inference_stages(cfg: RunConfig, state: PipelineState) -> PipelineState:
    """Add the contexts artifacts (the same order as the pipeline walker in s3core); s3 uses the trained
    searcher when the train stage ran."""
    state.contexts = [
        contexts_task(cfg, run, questions, state.corpus, state.dense_index, state.bm25_index, state.tiny_models,
                      state.train if run.strategy == "s3" else None)
        for questions in eval_question_sets(cfg, state.questions)
        for run in inference_runs(cfg)
    ]
    if state.contexts:
        contexts_summary_task(cfg, state.contexts)
    return state
