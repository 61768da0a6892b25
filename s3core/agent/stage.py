"""The `contexts` stage (DESIGN.md section 2 "Searcher protocol", "Final context", "Baselines"; section 3):
one artifact per run (s3, each baseline) and evaluation QA set; the work is in inference.py.

    contexts   per question: the run's queries, the doc ids of every block it saw, the ids it selected,
               the final context (ids and text) and token counts                    table, resumable by shard
"""

from __future__ import annotations

from collections.abc import Sequence

from s3core.agent.inference import InferenceRun, build_contexts, contexts_identity
from s3core.config.schema import RunConfig
from s3core.models.resolve import in_model_set
from s3core.store import Manifest, StageContext, StageResult, StageSpec
from s3core.store.stage import StageSummary


def contexts_spec(cfg: RunConfig, run: InferenceRun, questions: Manifest, corpus: Sequence[Manifest],
                  dense_index: Manifest | None, bm25_index: Manifest | None, tiny_models: Manifest | None) -> StageSpec:
    """The `contexts` stage of one run on one QA set (a trained s3 policy comes as `run.policy_dir`)."""
    inputs: dict[str, Manifest] = {"questions": questions}
    if run.retriever is not None:
        index = {"dense": dense_index, "bm25": bm25_index}[run.retriever]
        if index is None:
            raise ValueError(f"run {run.name!r} searches the {run.retriever} index, which this config does not build: "
                             f"enable it under retrieval, or set the run's retriever")
        inputs[f"{run.retriever}_index"] = index
        inputs.update({f"corpus/{i:03d}": m for i, m in enumerate(corpus)})
    uses_tiny = (run.model is not None and in_model_set(run.model)) or (
        run.retriever == "dense" and in_model_set(cfg.retrieval.dense.encoder))
    if uses_tiny:
        if tiny_models is None:
            raise ValueError(f"run {run.name!r} uses a 'tiny:' model but the tiny models were not built")
        inputs["tiny_models"] = tiny_models

    def build(ctx: StageContext) -> StageResult:
        return build_contexts(ctx, cfg, run)

    detail = f"{run.name} {questions.stats.get('data_source')}/{questions.stats.get('split')}"
    return StageSpec("contexts", contexts_identity(cfg, run), inputs, build, detail=detail)


def contexts_summary(cfg: RunConfig, contexts: Sequence[Manifest]) -> StageSummary:
    """Per run and QA set: questions, mean turns, invalid turns, stops and policy tokens, for the UI."""
    rows = []
    for m in contexts:
        s, n = m.stats, max(1, m.stats.get("questions", 0))
        rows.append({"run": s.get("run"), "qa_set": f"{s.get('data_source')}/{s.get('split')}",
                     "questions": s.get("questions", 0), "turns_mean": round(s.get("turns", 0) / n, 2),
                     "invalid_turns_mean": round(s.get("invalid_turns", 0) / n, 2), "stopped": s.get("stopped", 0),
                     "policy_tokens_mean": round(s.get("policy_tokens", 0) / n, 1)})
    return StageSummary("contexts", f"Searcher and baseline contexts ({cfg.name})", table=rows)
