"""The `scores` stage: the frozen generator's answer on each context of one run on one QA set, and its
GenAcc, EM and F1 (DESIGN.md section 2 "Generator", "GenAcc"; section 3 "Evaluation").

    scores   one row per question of a contexts artifact: the answer, GenAcc (span OR judge; the judge alone
             for `evaluation.judge_only_sources`), its parts, EM and token F1, and what the breakdowns of
             the report group by (question type, searches, selected documents)   table, resumable by shard

The generator conversation and the scoring are the ones of the naive-RAG cache and the training reward
(`reward.precompute.answer_and_score`), so evaluation measures exactly what training optimised. An empty
context (`direct`, `cot`) gives the generator no passages. The key covers the generator settings, the judge
switch and the prompt: scoring the same contexts again with another generator makes a new artifact.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pyarrow as pa

from s3core.config.schema import RunConfig
from s3core.generation.backends import make_backend
from s3core.reward.precompute import answer_and_score, answering_identity, empty_answers
from s3core.store import StageContext, StageResult
from s3core.store.stage import write_missing_shards

SCORES_SCHEMA = pa.schema([
    ("question_id", pa.string()), ("data_source", pa.string()), ("split", pa.string()), ("run", pa.string()),
    ("strategy", pa.string()), ("question", pa.string()), ("golden_answers", pa.list_(pa.string())),
    ("context_doc_ids", pa.list_(pa.string())), ("turns", pa.int32()), ("question_type", pa.string()),
    ("searches", pa.int32()), ("selected", pa.int32()), ("answer", pa.string()),
    ("genacc", pa.bool_()), ("span", pa.bool_()), ("judge", pa.bool_()), ("em", pa.bool_()), ("f1", pa.float64()),
    ("scoring", pa.string()), ("generator", pa.string()),
])
CONTEXT_COLUMNS = ["question_id", "data_source", "split", "run", "strategy", "question", "golden_answers",
                   "context_doc_ids", "turns", "question_type", "queries", "selected_doc_ids", "context"]
NOT_KEPT = ("context", "queries", "selected_doc_ids")  # counted (searches, selected), not copied


def scoring_rule(cfg: RunConfig, data_source: str) -> str:
    """'judge_only' (MIRAGE), 'span_or_judge' (the paper's GenAcc) or 'span' (judge switched off)."""
    if data_source in cfg.evaluation.judge_only_sources:
        return "judge_only"
    return "span_or_judge" if cfg.reward.use_judge else "span"


def scores_identity(cfg: RunConfig, data_source: str) -> dict[str, Any]:
    return {**answering_identity(cfg), "scoring": scoring_rule(cfg, data_source), "shard_rows": cfg.evaluation.shard_rows}




def build_scores(ctx: StageContext, cfg: RunConfig) -> StageResult:
    source = ctx.inputs["contexts"].stats
    rows = ctx.store.read_table(ctx.inputs["contexts"], columns=CONTEXT_COLUMNS).to_pylist()
    rule = scoring_rule(cfg, source.get("data_source", ""))

    def open_worker():
        models = ctx.store.local_dir(ctx.inputs["tiny_models"]) if "tiny_models" in ctx.inputs else None
        backend = make_backend(cfg.generator, models)
        asyncio.run(backend.health())  # an unreachable generator fails here, before any shard is written
        return lambda chunk: asyncio.run(_score_shard(chunk, backend, cfg, rule))

    label = f"scores {source.get('run')} on {source.get('data_source')}/{source.get('split')}"
    counts = write_missing_shards(ctx, rows, cfg.evaluation.shard_rows, open_worker, SCORES_SCHEMA, _shard_stats, label)
    return StageResult(stats={"run": source.get("run"), "strategy": source.get("strategy"), "setting": cfg.name,
                              "data_source": source.get("data_source"), "split": source.get("split"),
                              "scoring": rule, "generator": cfg.generator.model, **counts})


async def _score_shard(chunk: list[dict[str, Any]], backend, cfg: RunConfig, rule: str) -> list[dict[str, Any]]:
    if not chunk:
        return []
    answers, scores = await answer_and_score(backend, [r["context"] for r in chunk], [r["question"] for r in chunk],
                                             [r["golden_answers"] for r in chunk], cfg, judge_only=rule == "judge_only")
    out = []
    for row, answer, score in zip(chunk, answers, scores):
        kept = {k: row[k] for k in CONTEXT_COLUMNS if k not in NOT_KEPT}
        out.append({**kept, "searches": len(row["queries"]), "selected": len(row["selected_doc_ids"]),
                    "answer": answer, "genacc": score.genacc, "span": score.span, "judge": score.judge,
                    "em": score.em, "f1": score.f1, "scoring": rule, "generator": cfg.generator.model})
    return out


def _shard_stats(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Sums per shard (merged across shards into the manifest): means are sums / questions."""
    return {"questions": len(rows), "genacc_sum": sum(r["genacc"] for r in rows), "em_sum": sum(r["em"] for r in rows),
            "f1_sum": sum(r["f1"] for r in rows), "empty_answers": empty_answers([r["answer"] for r in rows])}
