"""The pipeline's stages as specs: run config + input manifests -> a stage that knows its cache key.

Each spec is one cached, resumable stage (DESIGN.md section 3). `tasks/` wraps each in a Prefect task (its
cache key is the spec's key) and `s3agent stage NAME` runs each alone; both run exactly these specs, so the
artifact, its key and its resume behaviour are the same whichever way a stage is started.

    world         tiny world files (corpus.jsonl, train/dev/test.jsonl, entities.jsonl)   dir
    tiny_models   tokenizer, searcher, generator, encoder as Hugging Face folders          dir
    corpus        passages(id, title, text)                                                table, one per corpus part
    questions     questions(id, data_source, split, question, golden_answers, metadata)    table, one per QA set
    embeddings    row, embedding of every passage (dense encoder)                          table
    dense_index   FAISS index over the embeddings                                          dir
    bm25_index    Lucene index (pyserini)                                                  dir
    retrieval_eval  recall@k of each index on each non-train QA set                        table
    reader        the tiny world's extractive reader + its dev GenAcc (gold / naive / none)  dir (if `reader:`)
    warmstart     the searcher fine-tuned on noisy oracle trajectories (tiny:searcher_sft)  dir (if `warmstart:`)
    naive_rag     naive top-k RAG answer and GenAcc of every question (reward/precompute.py)  table, one per QA set
    training_pool train questions naive RAG fails, minus yes/no ones                        table
    train         the searcher trained by PPO: checkpoints + metrics (rl/stage.py)          dir, resumable
    contexts      per run (s3, each baseline) and eval QA set: queries, doc ids, final context  table
    scores        per contexts artifact: generator answer, GenAcc / EM / F1 (evaluation/scores.py)  table
    report        report.md, comparison.csv and plots over every scores artifact (evaluation/report.py)  dir
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from s3core.agent.inference import contexts_spec, eval_question_sets, inference_runs
from s3core.config.schema import CorpusPart, QASetConfig, RunConfig
from s3core.data.ingest import ingest_corpus, ingest_questions, source_identity
from s3core.data.tiny_world import generate_world, read_world_texts, write_world
from s3core.evaluation.report import report_spec
from s3core.evaluation.scores import scores_spec
from s3core.reader.stage import reader_spec
from s3core.retrieval.stages import (
    bm25_index_spec,
    dense_index_spec,
    embed_spec,
    needs_dense,
    retrieval_eval_spec,
)
from s3core.reward.precompute import naive_rag_spec, training_pool_spec
from s3core.rl.stage import train_spec
from s3core.store import ArtifactStore, Manifest, StageContext, StageResult, StageSpec
from s3core.store.manifest import MANIFEST_NAME
from s3core.store.stage import ProgressReporter, log_progress
from s3core.warmstart.stage import warmstart_spec

if TYPE_CHECKING:
    from s3core.evaluation.checkpoints import Checkpoint

# Every stage name in dependency order (walk_pipeline's order).
STAGE_ORDER = ("world", "tiny_models", "corpus", "questions", "embeddings", "dense_index", "bm25_index", "retrieval_eval",
               "reader", "warmstart", "naive_rag", "training_pool", "train", "contexts", "scores", "report")

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
        from s3core.models.tiny import (
            build_tiny_models,  # torch + transformers: imported only when building
        )

        texts = read_world_texts(ctx.store.local_dir(ctx.inputs["world"]))
        staging = ctx.staging_dir()
        ctx.progress(0, 1, f"building tiny models from {len(texts)} texts")
        paths = build_tiny_models(texts, models_cfg, staging / "models",
                                  world_dir=ctx.store.local_dir(ctx.inputs["world"]))
        ctx.progress(1, 1, "tiny models built")
        return StageResult(stats={"models": sorted(paths)}, staging_dir=staging / "models")

    return StageSpec("tiny_models", models_cfg, {"world": world}, build, kind="dir", code=("models", "data/tiny_world.py", "retrieval/encoder.py"))


def corpus_spec(cfg: RunConfig, part: CorpusPart, world: Manifest | None = None) -> StageSpec:
    corpus = cfg.corpus
    options = corpus.model_dump(mode="json", exclude={"parts"})
    identity = {**options, "part": part.name, "source": source_identity(part.source)}
    inputs = {"world": world} if world is not None and part.source.kind == "tiny_world" else {}

    def build(ctx: StageContext) -> StageResult:
        return ingest_corpus(ctx, corpus, part, _world_dir(ctx))

    return StageSpec("corpus", identity, inputs, build, code=INGEST_CODE)


def questions_spec(cfg: RunConfig, qa: QASetConfig, world: Manifest | None = None) -> StageSpec:
    shard_rows, question_mark = cfg.questions.shard_rows, cfg.questions.append_question_mark
    identity = {**qa.model_dump(mode="json"), "source": source_identity(qa.source), "shard_rows": shard_rows,
                "append_question_mark": question_mark}
    inputs = {"world": world} if world is not None and qa.source.kind == "tiny_world" else {}

    def build(ctx: StageContext) -> StageResult:
        return ingest_questions(ctx, qa, shard_rows, _world_dir(ctx), append_question_mark=question_mark)

    return StageSpec("questions", identity, inputs, build, code=INGEST_CODE)


def _world_dir(ctx: StageContext) -> Path | None:
    return ctx.store.local_dir(ctx.inputs["world"]) if "world" in ctx.inputs else None


@dataclass
class PipelineState:
    """The manifests of every stage so far, by name (what the next stages take as inputs)."""

    world: Manifest | None = None
    tiny_models: Manifest | None = None
    corpus: list[Manifest] = field(default_factory=list)
    questions: list[Manifest] = field(default_factory=list)
    embeddings: Manifest | None = None
    dense_index: Manifest | None = None
    bm25_index: Manifest | None = None
    retrieval_eval: Manifest | None = None
    reader: Manifest | None = None
    warmstart: Manifest | None = None
    naive_rag: list[Manifest] = field(default_factory=list)
    training_pool: Manifest | None = None
    train: Manifest | None = None
    contexts: list[Manifest] = field(default_factory=list)
    scores: list[Manifest] = field(default_factory=list)
    report: Manifest | None = None

    @property
    def models(self) -> Manifest | None:
        """Where later stages resolve `tiny:*` names: the newest artifact that extends the tiny models' set
        (warm start: + searcher_sft; reader: + reader), else the tiny models."""
        return self.warmstart or self.generator_models

    @property
    def generator_models(self) -> Manifest | None:
        """Where the generator and the encoder resolve: the set without the warm start, so that naive-RAG answers
        and scores stay cached when only the warm start changes (another seed)."""
        return self.reader or self.tiny_models

    def all(self) -> list[Manifest]:
        single = [self.world, self.tiny_models]
        later = [self.embeddings, self.dense_index, self.bm25_index, self.retrieval_eval, self.reader,
                 self.warmstart]
        return ([m for m in single if m] + self.corpus + self.questions + [m for m in later if m] + self.naive_rag
                + [m for m in (self.training_pool, self.train) if m] + self.contexts + self.scores
                + [m for m in (self.report,) if m])


class _Incomplete(Exception):
    """Raised inside walk_pipeline when `resolve` returns None (a stage is not complete)."""


def walk_pipeline(cfg: RunConfig, resolve: Callable[[StageSpec], Manifest | None],
                  partial: bool = False) -> PipelineState | None:
    """Every stage in dependency order; `resolve` runs or looks up each one.

    Returns every manifest, or as soon as `resolve` returns None (a stage that is not complete): None, or
    with `partial` the manifests resolved so far. flows/train.py wires the Prefect tasks in this same order.
    """

    def need(spec: StageSpec) -> Manifest:
        if (manifest := resolve(spec)) is None:
            raise _Incomplete(spec.stage)
        return manifest

    state = PipelineState()
    try:
        if cfg.world is not None:
            state.world = need(world_spec(cfg))
            if cfg.tiny_models is not None:
                state.tiny_models = need(tiny_models_spec(cfg, state.world))
        state.corpus = [need(corpus_spec(cfg, part, state.world)) for part in cfg.corpus.parts]
        state.questions = [need(questions_spec(cfg, qa, state.world)) for qa in cfg.questions.sets]
        if needs_dense(cfg):
            state.embeddings = need(embed_spec(cfg, state.corpus, state.tiny_models))
            state.dense_index = need(dense_index_spec(cfg, state.embeddings))
        if cfg.retrieval.bm25.enabled:
            state.bm25_index = need(bm25_index_spec(cfg, state.corpus))
        if any(m.stats.get("split") != "train" for m in state.questions):
            state.retrieval_eval = need(retrieval_eval_spec(
                cfg, state.corpus, state.questions, state.dense_index, state.bm25_index, state.tiny_models))
        if cfg.reader is not None:
            state.reader = need(reader_spec(cfg, state.tiny_models, state.corpus, state.questions, state.dense_index,
                                            state.bm25_index))
        if cfg.warmstart is not None:
            state.warmstart = need(warmstart_spec(cfg, state.models, state.corpus, state.questions, state.dense_index,
                                                  state.bm25_index))
        state.naive_rag = [need(naive_rag_spec(cfg, q, state.corpus, state.dense_index, state.bm25_index,
                                                 state.generator_models)) for q in state.questions]
        if has_train_split(state.questions):
            state.training_pool = need(training_pool_spec(cfg, state.naive_rag))
            state.train = need(train_spec(cfg, state.training_pool, state.naive_rag, state.corpus, state.dense_index,
                                          state.bm25_index, state.models))
        trained = trained_checkpoint(cfg, state.train)
        for questions in eval_question_sets(cfg, state.questions):
            state.contexts.extend(need(contexts_spec(cfg, run, questions, state.corpus, state.dense_index,
                                                     state.bm25_index, state.models))
                                  for run in inference_runs(cfg, trained))
        state.scores = [need(scores_spec(cfg, c, state.generator_models)) for c in state.contexts]
        if state.scores:
            state.report = need(report_spec(cfg, state.scores, state.train))
    except _Incomplete:
        return state if partial else None
    return state


def trained_checkpoint(cfg: RunConfig, train: Manifest | None) -> Checkpoint | None:
    """The newest checkpoint of a completed train artifact: the s3 run of the inference stage."""
    if train is None:
        return None
    from s3core.evaluation.checkpoints import as_checkpoint
    from s3core.rl.stage import final_policy_dir

    return as_checkpoint(final_policy_dir(open_store(cfg).local_dir(train)))


def has_train_split(questions: list[Manifest]) -> bool:
    return any(m.stats.get("split") == "train" for m in questions)


def prepare(store: ArtifactStore, cfg: RunConfig, progress: ProgressReporter = log_progress,
            until: str = STAGE_ORDER[-1]) -> PipelineState:
    """Every stage in order up to and including `until`, without Prefect (`s3agent stage`, tests, benchmarks).

    Local generator servers started on the way (generator.serve) are stopped before it returns."""
    from s3core.generation.local_server import LOCAL_SERVERS

    if until not in STAGE_ORDER:
        raise ValueError(f"unknown stage {until!r}: choose one of {', '.join(STAGE_ORDER)}")
    last = STAGE_ORDER.index(until)

    def run_until(spec: StageSpec) -> Manifest | None:
        return spec.run(store, progress) if STAGE_ORDER.index(spec.stage) <= last else None

    try:
        state = walk_pipeline(cfg, run_until, partial=True)
    finally:
        LOCAL_SERVERS.stop_all()
    assert state is not None  # run() always returns a manifest or raises
    return state


def finished_pipeline(cfg: RunConfig) -> PipelineState | None:
    """All manifests of the pipeline if every stage is already complete, else None. Runs nothing."""
    store = open_store(cfg)
    return walk_pipeline(cfg, lambda spec: spec.completed(store))


def pack_inputs(cfg: RunConfig, stage: str, out_root: Path) -> list[Manifest]:
    """Copy every finished artifact that `stage` needs (each stage before it in the pipeline) from the config's
    store into `out_root`, laid out as a store root; returns their manifests.

    For a machine that cannot reach the store: put `out_root` there as that checkout's store root, run the stage
    there (`s3agent stage ...`), and copy `<root>/<stage>/<key>` back. Keys depend only on configs, code and
    inputs' content hashes, so the stage finds its inputs there and its artifact has the key it has here.
    Each artifact is copied to a temporary name and renamed when complete. Raises ValueError naming the first
    stage that has not run yet.
    """
    import shutil

    if stage not in STAGE_ORDER:
        raise ValueError(f"unknown stage {stage!r}: choose one of {', '.join(STAGE_ORDER)}")
    store, last = open_store(cfg), STAGE_ORDER.index(stage)
    packed: list[Manifest] = []

    def copy_finished(spec: StageSpec) -> Manifest | None:
        if STAGE_ORDER.index(spec.stage) >= last:
            return None  # the stage itself and everything after it stay behind
        manifest = spec.completed(store)
        if manifest is None:
            raise ValueError(f"stage {spec.stage} [{spec.key}] of '{cfg.name}' has not run in {store.root_uri}, so "
                             f"there is nothing to pack for it: run the stages before {stage} first")
        target = out_root / spec.stage / spec.key
        if not (target / MANIFEST_NAME).exists():
            partial = target.with_name(f".{spec.key}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            store.fs.get(store.artifact_path(spec.stage, spec.key) + "/", str(partial) + "/", recursive=True)
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
        packed.append(manifest)
        return manifest

    walk_pipeline(cfg, copy_finished, partial=True)
    return packed
