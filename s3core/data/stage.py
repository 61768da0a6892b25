"""The data stages (DESIGN.md section 3, section 4): the tiny world, and the corpus and QA ingest.

    world       tiny world files (corpus.jsonl, train/dev/test.jsonl, entities.jsonl)      dir
    corpus      passages(id, title, text)                                                table, one per corpus part
    questions   questions(id, data_source, split, question, golden_answers, metadata)    table, one per QA set
"""

from __future__ import annotations

from pathlib import Path

from s3core.config.schema import CorpusPart, QASetConfig, RunConfig
from s3core.data.ingest import ingest_corpus, ingest_questions, source_identity
from s3core.data.tiny_world import generate_world, write_world
from s3core.store import Manifest, StageContext, StageResult, StageSpec


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
