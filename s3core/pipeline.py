"""The pipeline's stages as specs: run config + input manifests -> a stage that knows its cache key.

Each spec is one cached, resumable stage (DESIGN.md section 3). `tasks/` wraps each in a Prefect task (its
cache key is the spec's key) and `s3agent stage NAME` runs each alone; both run exactly these specs, so the
artifact, its key and its resume behaviour are the same whichever way a stage is started.

    world         tiny world files (corpus.jsonl, train/dev/test.jsonl, entities.jsonl)   dir
    tiny_models   tokenizer, searcher, generator, encoder as Hugging Face folders          dir
    corpus        passages(id, title, text)                                                table, one per corpus part
    questions     questions(id, data_source, split, question, golden_answers, metadata)    table, one per QA set
"""

from __future__ import annotations

import json
from pathlib import Path

from s3core.config.schema import CorpusPart, QASetConfig, RunConfig
from s3core.data.ingest import ingest_corpus, ingest_questions, source_identity
from s3core.data.tiny_world import generate_world, write_world
from s3core.store import ArtifactStore, Manifest, StageContext, StageResult, StageSpec
from s3core.store.stage import ProgressReporter, log_progress


def open_store(cfg: RunConfig) -> ArtifactStore:
    return ArtifactStore(cfg.store.root)


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


def world_texts(world_dir: Path) -> list[str]:
    """Every passage and question of the tiny world: the text the tiny tokenizers are trained on."""
    texts = []
    for name in ("corpus.jsonl", "train.jsonl", "dev.jsonl", "test.jsonl"):
        with open(world_dir / name, encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                texts.append(record.get("contents") or record.get("question", ""))
    return texts


def tiny_models_spec(cfg: RunConfig, world: Manifest) -> StageSpec:
    if cfg.tiny_models is None:
        raise ValueError("this config has no `tiny_models:` section, so there are no tiny models to build")
    models_cfg = cfg.tiny_models

    def build(ctx: StageContext) -> StageResult:
        from s3core.models.tiny import build_tiny_models  # torch + transformers: imported only when building

        texts = world_texts(ctx.store.local_dir(ctx.inputs["world"]))
        staging = ctx.staging_dir()
        ctx.progress(0, 1, f"building tiny models from {len(texts)} texts")
        paths = build_tiny_models(texts, models_cfg, staging / "models")
        ctx.progress(1, 1, "tiny models built")
        return StageResult(stats={"models": sorted(paths)}, staging_dir=staging / "models")

    return StageSpec("tiny_models", models_cfg, {"world": world}, build, kind="dir")


def corpus_spec(cfg: RunConfig, part: CorpusPart, world: Manifest | None = None) -> StageSpec:
    corpus = cfg.corpus
    options = corpus.model_dump(mode="json", exclude={"parts"})
    identity = {**options, "part": part.name, "source": source_identity(part.source)}
    inputs = {"world": world} if world is not None and part.source.kind == "tiny_world" else {}

    def build(ctx: StageContext) -> StageResult:
        return ingest_corpus(ctx, corpus, part, _world_dir(ctx))

    return StageSpec("corpus", identity, inputs, build)


def questions_spec(cfg: RunConfig, qa: QASetConfig, world: Manifest | None = None) -> StageSpec:
    shard_rows = cfg.questions.shard_rows
    identity = {**qa.model_dump(mode="json"), "source": source_identity(qa.source), "shard_rows": shard_rows}
    inputs = {"world": world} if world is not None and qa.source.kind == "tiny_world" else {}

    def build(ctx: StageContext) -> StageResult:
        return ingest_questions(ctx, qa, shard_rows, _world_dir(ctx))

    return StageSpec("questions", identity, inputs, build)


def _world_dir(ctx: StageContext) -> Path | None:
    return ctx.store.local_dir(ctx.inputs["world"]) if "world" in ctx.inputs else None


def prepare(store: ArtifactStore, cfg: RunConfig, progress: ProgressReporter = log_progress) -> dict[str, object]:
    """Every data-preparation stage in order, without Prefect (what `s3agent prepare` runs)."""
    out: dict[str, object] = {}
    world = world_spec(cfg).run(store, progress) if cfg.world is not None else None
    if world is not None:
        out["world"] = world
        if cfg.tiny_models is not None:
            out["tiny_models"] = tiny_models_spec(cfg, world).run(store, progress)
    out["corpus"] = [corpus_spec(cfg, part, world).run(store, progress) for part in cfg.corpus.parts]
    out["questions"] = [questions_spec(cfg, qa, world).run(store, progress) for qa in cfg.questions.sets]
    return out
