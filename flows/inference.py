"""The inference and evaluation part of s3-train: contexts of every run (s3, baselines) on every evaluation
QA set -> generator answers and scores -> the report."""

from __future__ import annotations

from s3core.agent.inference import eval_question_sets, inference_runs
from s3core.config import RunConfig
from s3core.pipeline import PipelineState, trained_checkpoint
from tasks.evaluate import evaluation_summary_task, report_task, scores_task
from tasks.inference import contexts_summary_task, contexts_task


def inference_stages(cfg: RunConfig, state: PipelineState) -> PipelineState:
    """Add the contexts artifacts (the same order as the pipeline walker in s3core); s3 uses the trained
    searcher's newest checkpoint when the train stage ran."""
    trained = trained_checkpoint(cfg, state.train)
    state.contexts = [
        contexts_task(cfg, run, questions, state.corpus, state.dense_index, state.bm25_index, state.models)
        for questions in eval_question_sets(cfg, state.questions)
        for run in inference_runs(cfg, trained)
    ]
    if state.contexts:
        contexts_summary_task(cfg, state.contexts)
    return state


def evaluation_stages(cfg: RunConfig, state: PipelineState) -> PipelineState:
    """Add the scores of every contexts artifact and the report over them."""
    state.scores = [scores_task(cfg, c, state.generator_models) for c in state.contexts]
    if state.scores:
        state.report = report_task(cfg, state.scores, state.train)  # the title (and key) the pipeline walker uses
        evaluation_summary_task(cfg, state.scores, state.report)
    return state
