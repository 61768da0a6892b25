"""The reward's precompute stages (DESIGN.md section 2 "Reward", section 3): the naive-RAG baseline every
GBR reward is measured against, and the questions worth training on.

    naive_rag       naive top-k RAG answer and GenAcc of every question (precompute.py)   table, one per QA set
    training_pool   train questions naive RAG fails, minus yes/no ones                   table
"""

from __future__ import annotations

from collections.abc import Sequence

from s3core.config.schema import RunConfig
from s3core.models.resolve import in_model_set
from s3core.reward.precompute import SHARD_ROWS, build_naive_rag, build_training_pool, naive_rag_identity
from s3core.store import Manifest, StageContext, StageResult, StageSpec
from s3core.store.stage import StageSummary


def naive_rag_spec(
    cfg: RunConfig,
    questions: Manifest,
    corpus: Sequence[Manifest],
    dense_index: Manifest | None,
    bm25_index: Manifest | None,
    tiny_models: Manifest | None,
    shard_rows: int = SHARD_ROWS,
) -> StageSpec:
    """The `naive_rag` stage of one QA set (one artifact per questions manifest)."""
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
    name = cfg.retrieval.naive_retriever
    index = {"dense": dense_index, "bm25": bm25_index}[name]
    if index is None:
        raise ValueError(f"retrieval.naive_retriever is {name!r} but the {name} index has not been built")
    needs_models = in_model_set(cfg.generator.model) or (name == "dense" and in_model_set(cfg.retrieval.dense.encoder))
    if needs_models and tiny_models is None:
        raise ValueError("the generator or the dense encoder is a 'tiny:' model but the tiny models were not built")
    inputs = {"questions": questions, f"{name}_index": index, **{f"corpus/{i:03d}": m for i, m in enumerate(corpus)}}
    if needs_models:
        inputs["tiny_models"] = tiny_models

    def build(ctx: StageContext) -> StageResult:
        return build_naive_rag(ctx, cfg, shard_rows)

    return StageSpec("naive_rag", naive_rag_identity(cfg, shard_rows), inputs, build,
                     detail=f"{questions.stats.get('data_source')}/{questions.stats.get('split')}")


# -- training_pool ----------------------------------------------------------------------------------------
def training_pool_spec(cfg: RunConfig, naive: Sequence[Manifest]) -> StageSpec:
    """The `training_pool` stage: naive-RAG failures of the train split, without yes/no questions
    (`reward.yes_no_filter` says which count as yes/no)."""
    inputs = {f"naive_rag/{i:03d}": m for i, m in enumerate(naive) if m.stats.get("split") == "train"}
    if not inputs:
        raise ValueError("training_pool needs at least one naive_rag artifact of a train-split QA set; none was given")

    rule = cfg.reward.yes_no_filter

    def build(ctx: StageContext) -> StageResult:
        return build_training_pool(ctx, rule)

    return StageSpec("training_pool", {"rule": "naive_genacc_false_and_not_yes_no", "yes_no_filter": rule},
                     inputs, build)


def training_pool_summary(cfg: RunConfig, naive: Sequence[Manifest], pool: Manifest) -> StageSummary:
    """Naive-RAG GenAcc per QA set, then the pool's filter counts (paper: 169,615 -> 70,286), for the UI."""
    rows: list[dict[str, object]] = []
    for m in naive:
        n, correct = m.stats.get("questions", 0), m.stats.get("naive_correct", 0)
        rows.append({"what": f"naive RAG {m.stats.get('data_source')}/{m.stats.get('split')}", "questions": n,
                     "naive_correct": correct, "genacc": round(correct / n, 4) if n else 0.0})
    s = pool.stats
    rows.append({"what": "training pool", "questions": s.get("total", 0), "naive_correct": s.get("naive_correct", 0),
                 "yes_no_filtered": s.get("yes_no_filtered", 0), "kept": s.get("kept", 0)})
    return StageSummary("training-pool", f"Naive RAG GenAcc and the training pool ({cfg.name})", table=rows)
