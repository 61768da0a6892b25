"""The naive-RAG baseline, precomputed once, and the training pool it selects (DESIGN.md section 2, "Reward").

    naive_rag      one row per question of one QA set: top-k passages retrieved with the question itself,
                   the generator's answer on that context, GenAcc / EM / F1           table, resumable by shard
    training_pool  train questions where naive RAG fails and that are not yes/no questions (reward.yes_no_filter;
                   paper: 169,615 NQ+HotpotQA train questions -> 70,286)                         table

The Gain-Beyond-RAG reward subtracts GenAcc(naive top-3 RAG context) from GenAcc(s3 context), so the naive
GenAcc of every training question is computed here once and cached as an artifact; the trainer reads it and
treats a missing question as an error (DESIGN.md section 2). The generator conversation is the one of
section 2 "Generator": one system message (`generator_system` prompt, `$contexts` = the numbered passages)
and the question as the user message, greedy by default. GenAcc is `score_answers` (span_check OR judge).

Choices and deviations, stated:
- Shards hold `shard_rows` questions each (default SHARD_ROWS = 256, not a config field; it enters the key).
  A finished shard is never redone: after a crash (or a generator that fails midway, whose GeneratorError
  propagates) the re-run writes only the missing shards, and the result equals an uninterrupted run's.
- `backend.health()` runs before the first shard that needs generating: an unreachable generator fails the
  stage with its GeneratorError, it never scores 0.
- Context lines are `Doc {i} (Title: {title}) {text}`, numbered from 1, built from the doc store's own
  title and text (titles kept intact, parentheses and quotes included: the public code's regex mangles them).
- `judge_used` records whether GenAcc was span OR judge for that row (= reward.use_judge), not whether the
  judge was actually asked (it is asked only about answers span_check rejected).
- The key's code covers reward/, generation/ and retrieval/base.py (the brief's choice); the retriever's
  own code enters through the index artifact's content hash only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from s3core.agent.context import format_docs
from s3core.config.schema import RunConfig
from s3core.generation.backends import make_backend
from s3core.generation.base import ChatBackend, GenerationParams, GeneratorError, Message
from s3core.prompts import load_prompt
from s3core.retrieval.base import DocStore, Retriever
from s3core.retrieval.indexes import open_naive_retriever
from s3core.reward.genacc import AnswerScore, score_answers
from s3core.store import StageContext, StageResult
from s3core.store.stage import write_missing_shards

SHARD_ROWS = 256  # questions per naive_rag shard (the unit of resume); a module default, not a config field
# the retrievers run in-process here, so their query-side code is part of what this stage computes
GENERATOR_PROMPT = "generator_system"
YES_NO_ANSWERS = frozenset({"yes", "no", "true", "false"})
# the public code's spellings: exact, lower case or capitalised
PUBLIC_CODE_YES_NO = frozenset(w for word in YES_NO_ANSWERS for w in (word, word.capitalize()))

NAIVE_RAG_SCHEMA = pa.schema([
    ("question_id", pa.string()), ("data_source", pa.string()), ("split", pa.string()), ("question", pa.string()),
    ("golden_answers", pa.list_(pa.string())), ("doc_ids", pa.list_(pa.string())), ("context", pa.string()),
    ("answer", pa.string()), ("genacc", pa.bool_()), ("em", pa.bool_()), ("f1", pa.float64()),
    ("judge_used", pa.bool_()), ("generator", pa.string()), ("retriever", pa.string()),
])
TRAINING_POOL_SCHEMA = pa.schema([
    ("question_id", pa.string()), ("data_source", pa.string()), ("question", pa.string()),
    ("golden_answers", pa.list_(pa.string())), ("naive_genacc", pa.bool_()),
])


# -- pure helpers ---------------------------------------------------------------------------------------
def generator_messages(context: str, question: str) -> list[Message]:
    """DESIGN.md section 2 "Generator": the contexts in the system message, the question as the user's."""
    system = load_prompt(GENERATOR_PROMPT).render(contexts=context)
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def is_yes_no(golden_answers: Sequence[str], rule: str = "all_gold") -> bool:
    """Whether a question counts as yes/no, which training drops (a coin flip gives it GenAcc 0.5, which
    the reward cannot tell from search). all_gold: every gold answer is yes/no/true/false, any case, stripped.
    any_gold_exact (the public code's): some gold answer is exactly one of yes/no/true/false or Yes/No/True/False."""
    if rule == "any_gold_exact":
        return any(g in PUBLIC_CODE_YES_NO for g in golden_answers)
    if rule != "all_gold":
        raise ValueError(f"unknown yes/no filter {rule!r}; valid: ['all_gold', 'any_gold_exact']")
    return bool(golden_answers) and all(g.strip().lower() in YES_NO_ANSWERS for g in golden_answers)


def answering_identity(cfg: RunConfig) -> dict[str, Any]:
    """What changes an answer or its score: the generator settings, its prompt and the judge's (when judging).
    The one identity behind the naive_rag, scores and train keys' generator part."""
    gen = cfg.generator
    return {
        "generator": {"model": gen.model, "backend": gen.backend, "max_new_tokens": gen.max_new_tokens,
                      "temperature": gen.temperature},
        "prompt": load_prompt(GENERATOR_PROMPT).text,
        "use_judge": cfg.reward.use_judge,
        "judge_prompt": load_prompt(cfg.reward.judge_prompt).text if cfg.reward.use_judge else None,
    }


# -- naive_rag --------------------------------------------------------------------------------------------
def naive_rag_identity(cfg: RunConfig, shard_rows: int) -> dict[str, Any]:
    """Everything that changes a naive_rag row, besides the input artifacts and the code."""
    return {
        "naive_retriever": cfg.retrieval.naive_retriever,
        "naive_topk": cfg.retrieval.naive_topk,
        **answering_identity(cfg),
        "shard_rows": shard_rows,
    }




def _open_naive_retriever(ctx: StageContext, cfg: RunConfig) -> tuple[Retriever, DocStore]:
    corpus = [m for key, m in sorted(ctx.inputs.items()) if key.startswith("corpus/")]
    return open_naive_retriever(ctx.store, cfg, corpus, ctx.inputs.get("dense_index"), ctx.inputs.get("bm25_index"),
                                ctx.inputs.get("tiny_models"))


def build_naive_rag(ctx: StageContext, cfg: RunConfig, shard_rows: int) -> StageResult:
    """Write every missing shard of the naive_rag artifact; finished shards are kept as they are."""
    questions = ctx.store.read_table(ctx.inputs["questions"]).to_pylist()
    source = ctx.inputs["questions"].stats
    label = f"naive RAG {source.get('data_source')}/{source.get('split')}"

    def open_worker():
        retriever, docs = _open_naive_retriever(ctx, cfg)
        models = ctx.store.local_dir(ctx.inputs["tiny_models"]) if "tiny_models" in ctx.inputs else None
        backend = make_backend(cfg.generator, models)
        asyncio.run(backend.health())  # an unreachable generator stops here with its GeneratorError
        return lambda chunk: asyncio.run(_answer_shard(chunk, retriever, docs, backend, cfg))

    counts = write_missing_shards(ctx, questions, shard_rows, open_worker, NAIVE_RAG_SCHEMA, _shard_stats, label)
    return StageResult(stats={"data_source": source.get("data_source"), "split": source.get("split"), **counts})


def _shard_stats(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Per-shard counts (summed across shards into the manifest); no timings, so resumed shards match."""
    return {"questions": len(rows), "naive_correct": sum(r["genacc"] for r in rows),
            "empty_answers": empty_answers([r["answer"] for r in rows])}


def check_answers(replies: Sequence[str | None], max_empty_share: float, generator: str) -> list[str]:
    """The replies as answers ("" for a reply without text), after refusing a batch of non-answers: more than
    `max_empty_share` of them empty or null is a GeneratorError that says how many, never a column of 0s."""
    missing = sum(r is None for r in replies)
    empty = sum(r is not None and not r.strip() for r in replies)
    if replies and missing + empty > max_empty_share * len(replies):
        raise GeneratorError(
            f"generator {generator!r} gave no answer to {missing + empty} of {len(replies)} requests "
            f"({missing} replies without content, {empty} empty), more than generator.max_empty_share "
            f"({max_empty_share}) allows: check the server's log and the model (a model that abstains by design "
            "needs max_empty_share: 1.0)")
    return ["" if r is None else r for r in replies]


def empty_answers(answers: Sequence[str]) -> int:
    """How many answers are empty (counted into the naive_rag and scores manifests)."""
    return sum(not a.strip() for a in answers)


async def answer_and_score(backend: ChatBackend, contexts: Sequence[str], questions: Sequence[str],
                           golden_answers: Sequence[Sequence[str]], cfg: RunConfig,
                           judge_only: bool = False) -> tuple[list[str], list[AnswerScore]]:
    """The generator's answer on each context (all requests concurrent) and its GenAcc / EM / F1: the one
    measurement behind the naive-RAG cache, the training reward and evaluation. The generator judges when
    use_judge; `judge_only` lets the judge alone decide GenAcc (MIRAGE)."""
    params = GenerationParams(max_new_tokens=cfg.generator.max_new_tokens, temperature=cfg.generator.temperature)
    replies = await backend.generate([generator_messages(c, q) for c, q in zip(contexts, questions)], params)
    answers = check_answers(replies, cfg.generator.max_empty_share, cfg.generator.model)
    use_judge = cfg.reward.use_judge
    scores = await score_answers(answers, [list(g) for g in golden_answers], list(questions),
                                 backend if use_judge else None, use_judge, judge_only=judge_only,
                                 judge_prompt=cfg.reward.judge_prompt)
    return answers, scores


async def _answer_shard(chunk: list[dict[str, Any]], retriever: Retriever, docs: DocStore,
                        backend: ChatBackend, cfg: RunConfig) -> list[dict[str, Any]]:
    """Retrieve, generate and score one shard of questions; rows in question order."""
    if not chunk:
        return []
    texts = [q["question"] for q in chunk]
    hits = retriever.search(texts, cfg.retrieval.naive_topk)  # the question itself is the query
    contexts = [format_docs(docs, [h.row for h in row_hits]) for row_hits in hits]
    answers, scores = await answer_and_score(backend, contexts, texts, [q["golden_answers"] for q in chunk], cfg)
    return [_naive_row(q, [docs.doc_id(h.row) for h in row_hits], c, a, s, cfg)
            for q, row_hits, c, a, s in zip(chunk, hits, contexts, answers, scores)]


def _naive_row(question: dict[str, Any], doc_ids: list[str], context: str, answer: str,
               score: AnswerScore, cfg: RunConfig) -> dict[str, Any]:
    return {
        "question_id": question["id"], "data_source": question["data_source"], "split": question["split"],
        "question": question["question"], "golden_answers": list(question["golden_answers"]),
        "doc_ids": doc_ids, "context": context, "answer": answer, "genacc": score.genacc, "em": score.em,
        "f1": score.f1, "judge_used": cfg.reward.use_judge, "generator": cfg.generator.model,
        "retriever": cfg.retrieval.naive_retriever,
    }




def select_training_pool(naive, yes_no_filter: str = "all_gold") -> tuple[pa.Table, dict[str, int]]:
    """The training pool from the naive-RAG rows (a polars LazyFrame): train questions naive RAG fails, minus
    yes/no ones; and the filter's counts (total, naive_correct, yes_no_filtered, kept).

    A naive-correct question counts as naive_correct even when its answer is yes/no; yes_no_filtered counts
    only the naive failures dropped for being yes/no."""
    import polars as pl  # polars: the table queries of the precompute stages

    train = naive.filter(pl.col("split") == "train").with_columns(
        pl.col("golden_answers").map_elements(lambda g: is_yes_no(list(g), yes_no_filter), return_dtype=pl.Boolean)
        .alias("yes_no"))
    failed = train.filter(~pl.col("genacc"))
    kept = failed.filter(~pl.col("yes_no")).select(
        "question_id", "data_source", "question", "golden_answers", pl.col("genacc").alias("naive_genacc")).collect()
    counts = train.select(pl.len().alias("total"), pl.col("genacc").sum().alias("naive_correct"),
                          (~pl.col("genacc") & pl.col("yes_no")).sum().alias("yes_no_filtered")).collect().row(0, named=True)
    stats = {"total": int(counts["total"]), "naive_correct": int(counts["naive_correct"] or 0),
             "yes_no_filtered": int(counts["yes_no_filtered"] or 0), "kept": kept.height}
    return kept.to_arrow().cast(TRAINING_POOL_SCHEMA), stats


def build_training_pool(ctx: StageContext, yes_no_filter: str = "all_gold") -> StageResult:
    import polars as pl  # polars: the table queries of the precompute stages

    columns = ["question_id", "data_source", "split", "question", "golden_answers", "genacc"]
    naive = pl.concat([ctx.store.scan_table(m).select(columns) for _, m in sorted(ctx.inputs.items())])
    pool, stats = select_training_pool(naive, yes_no_filter)
    ctx.table_writer().write_shard(0, pool)
    ctx.progress(1, 1, f"training pool: {stats['kept']} of {stats['total']} train questions kept")
    return StageResult(stats=stats)
