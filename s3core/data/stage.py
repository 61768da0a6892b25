"""The data stages (DESIGN.md section 3, section 4): the tiny world, and the corpus and QA ingest.

    world       tiny world files (corpus.jsonl, train/dev/test.jsonl, entities.jsonl)      dir
    corpus      passages(id, title, text)                                                table, one per corpus part
    questions   questions(id, data_source, split, question, golden_answers, metadata)    table, one per QA set
    answerable  the questions whose gold answer occurs in the corpus (coverage.py); same
                schema, with the share in the manifest             table, one per QA set (questions.answerable_only)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from s3core.config.schema import CorpusPart, QASetConfig, RunConfig
from s3core.data.coverage import corpus_tokens
from s3core.data.ingest import QUESTIONS_SCHEMA, ingest_corpus, ingest_questions, source_identity
from s3core.data.tiny_world import generate_world, write_world
from s3core.store import Manifest, StageContext, StageResult, StageSpec, StageSummary


def world_spec(cfg: RunConfig) -> StageSpec:
    if cfg.world is None:
        raise ValueError("this config has no `world:` section, so there is no tiny world to generate")
    world_cfg = cfg.world

    def build(ctx: StageContext) -> StageResult:
        staging = ctx.staging_dir()
        ctx.progress(0, 1, "generating the tiny world")
        counts = write_world(generate_world(world_cfg), staging)
        ctx.progress(1, 1, f"tiny world: {counts}")
        return StageResult(stats=counts, staging_dir=staging)

    return StageSpec("world", world_cfg, {}, build, kind="dir")


def corpus_spec(cfg: RunConfig, part: CorpusPart, world: Manifest | None = None) -> StageSpec:
    corpus = cfg.corpus
    options = corpus.model_dump(mode="json", exclude={"parts"})
    identity = {**options, "part": part.name, "source": source_identity(part.source)}
    inputs = {"world": world} if world is not None and part.source.kind == "tiny_world" else {}

    def build(ctx: StageContext) -> StageResult:
        return ingest_corpus(ctx, corpus, part, _world_dir(ctx))

    return StageSpec("corpus", identity, inputs, build, detail=part.name)


def questions_spec(cfg: RunConfig, qa: QASetConfig, world: Manifest | None = None) -> StageSpec:
    shard_rows, question_mark = cfg.questions.shard_rows, cfg.questions.append_question_mark
    identity = {**qa.model_dump(mode="json"), "source": source_identity(qa.source), "shard_rows": shard_rows,
                "append_question_mark": question_mark}
    inputs = {"world": world} if world is not None and qa.source.kind == "tiny_world" else {}

    def build(ctx: StageContext) -> StageResult:
        return ingest_questions(ctx, qa, shard_rows, _world_dir(ctx), append_question_mark=question_mark)

    return StageSpec("questions", identity, inputs, build, detail=f"{qa.name}/{qa.split}")


def _world_dir(ctx: StageContext) -> Path | None:
    return ctx.store.local_dir(ctx.inputs["world"]) if "world" in ctx.inputs else None


def answerable_spec(cfg: RunConfig, questions: Manifest, corpus: Sequence[Manifest]) -> StageSpec:
    """The questions of one QA set that some passage of the corpus answers (span_check's rule)."""
    inputs = {"questions": questions, **{f"corpus/{i:03d}": m for i, m in enumerate(corpus)}}

    def build(ctx: StageContext) -> StageResult:
        parts = [m for name, m in sorted(ctx.inputs.items()) if name.startswith("corpus/")]

        def corpus_texts():
            for manifest in parts:
                table = ctx.store.read_table(manifest, columns=["title", "text"])
                yield from (f"{title} {text}" for title, text in zip(table.column("title").to_pylist(),
                                                                      table.column("text").to_pylist()))

        ctx.progress(0, 2, "tokenising the corpus for answer coverage")
        index = corpus_tokens(tuple(m.content_hash for m in parts), corpus_texts)
        rows = ctx.store.read_table(ctx.inputs["questions"]).to_pylist()
        ctx.progress(1, 2, f"checking {len(rows):,} questions against {len(index.tokens):,} passages")
        kept = [row for row in rows if index.answerable(row["golden_answers"])]
        ctx.table_writer().write_shard(0, pa.Table.from_pylist(kept, schema=QUESTIONS_SCHEMA))
        source = ctx.inputs["questions"].stats
        share = len(kept) / len(rows) if rows else 0.0
        ctx.progress(2, 2, f"{source.get('data_source')}/{source.get('split')}: {len(kept):,} of {len(rows):,} answerable")
        return StageResult(stats={"data_source": source.get("data_source"), "split": source.get("split"),
                                  "questions_in": len(rows), "answerable": len(kept), "answerable_share": round(share, 4)})

    detail = f"{questions.stats.get('data_source')}/{questions.stats.get('split')}"
    return StageSpec("answerable", {"rule": "span_check over title + text"}, inputs, build, detail=detail)


def coverage_summary(cfg: RunConfig, answerable: Sequence[Manifest]) -> StageSummary:
    """Per QA set: questions, answerable ones and their share, for the UI."""
    rows = [{"qa_set": f"{m.stats.get('data_source')}/{m.stats.get('split')}", "questions": m.stats.get("questions_in"),
             "answerable": m.stats.get("answerable"), "share": m.stats.get("answerable_share")} for m in answerable]
    return StageSummary("answer-coverage", f"Questions whose gold answer occurs in the corpus ({cfg.name})", table=rows)
