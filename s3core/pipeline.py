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

from collections.abc import Callable
from pathlib import Path

from s3core.config.schema import CorpusPart, QASetConfig, RunConfig
from s3core.data.ingest import ingest_corpus, ingest_questions, source_identity
from s3core.data.tiny_world import generate_world, read_world_texts, write_world
from s3core.store import ArtifactStore, Manifest, StageContext, StageResult, StageSpec
from s3core.store.stage import ProgressReporter, log_progress


# The s3core source each stage runs (besides s3core/store): editing other code keeps its cache valid.
INGEST_CODE = ("data/ingest.py", "data/formats.py", "data/sources.py")


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

    return StageSpec("world", world_cfg, {}, build, kind="dir", code=("data/tiny_world.py",))


def tiny_models_spec(cfg: RunConfig, world: Manifest) -> StageSpec:
    if cfg.tiny_models is None:
        raise ValueError("this config has no `tiny_models:` section, so there are no tiny models to build")
    models_cfg = cfg.tiny_models

    def build(ctx: StageContext) -> StageResult:
        from s3core.models.tiny import build_tiny_models  # torch + transformers: imported only when building

        texts = read_world_texts(ctx.store.local_dir(ctx.inputs["world"]))
        staging = ctx.staging_dir()
        ctx.progress(0, 1, f"building tiny models from {len(texts)} texts")
        paths = build_tiny_models(texts, models_cfg, staging / "models")
        ctx.progress(1, 1, "tiny models built")
        return StageResult(stats={"models": sorted(paths)}, staging_dir=staging / "models")

    return StageSpec("tiny_models", models_cfg, {"world": world}, build, kind="dir", code=("models", "data/tiny_world.py"))


def corpus_spec(cfg: RunConfig, part: CorpusPart, world: Manifest | None = None) -> StageSpec:
    corpus = cfg.corpus
    options = corpus.model_dump(mode="json", exclude={"parts"})
    identity = {**options, "part": part.name, "source": source_identity(part.source)}
    inputs = {"world": world} if world is not None and part.source.kind == "tiny_world" else {}

    def build(ctx: StageContext) -> StageResult:
        return ingest_corpus(ctx, corpus, part, _world_dir(ctx))

    return StageSpec("corpus", identity, inputs, build, code=INGEST_CODE)


def questions_spec(cfg: RunConfig, qa: QASetConfig, world: Manifest | None = None) -> StageSpec:
    shard_rows = cfg.questions.shard_rows
    identity = {**qa.model_dump(mode="json"), "source": source_identity(qa.source), "shard_rows": shard_rows}
    inputs = {"world": world} if world is not None and qa.source.kind == "tiny_world" else {}

    def build(ctx: StageContext) -> StageResult:
        return ingest_questions(ctx, qa, shard_rows, _world_dir(ctx))

    return StageSpec("questions", identity, inputs, build, code=INGEST_CODE)


def _world_dir(ctx: StageContext) -> Path | None:
    return ctx.store.local_dir(ctx.inputs["world"]) if "world" in ctx.inputs else None


def walk_prepare(cfg: RunConfig, resolve: Callable[[StageSpec], Manifest | None]) -> list[Manifest] | None:
    """The preparation stages in dependency order; `resolve` runs or looks up each one.

    Returns every manifest, or None as soon as `resolve` returns None (a stage that is not complete).
    """
    manifests: list[Manifest] = []

    def step(spec: StageSpec) -> Manifest | None:
        manifest = resolve(spec)
        if manifest is not None:
            manifests.append(manifest)
        return manifest

    world = None
    if cfg.world is not None:
        if (world := step(world_spec(cfg))) is None:
            return None
        if cfg.tiny_models is not None and step(tiny_models_spec(cfg, world)) is None:
            return None
    specs = [corpus_spec(cfg, part, world) for part in cfg.corpus.parts]
    specs += [questions_spec(cfg, qa, world) for qa in cfg.questions.sets]
    for spec in specs:
        if step(spec) is None:
            return None
    return manifests


def prepare(store: ArtifactStore, cfg: RunConfig, progress: ProgressReporter = log_progress) -> list[Manifest]:
    """Every data-preparation stage in order, without Prefect (`s3agent stage` and tests)."""
    return walk_prepare(cfg, lambda spec: spec.run(store, progress)) or []


def finished_pipeline(cfg: RunConfig) -> list[Manifest] | None:
    """All manifests of the pipeline if every stage is already complete, else None. Runs nothing."""
    store = open_store(cfg)
    return walk_prepare(cfg, lambda spec: spec.completed(store))
