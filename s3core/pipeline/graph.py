"""The one stage graph of the pipeline (DESIGN.md section 3): every stage, its order, when it applies, and
what it shows in the UI once done.

Each node makes the StageSpecs of one stage from the config and the manifests of the stages before it;
an empty list means the stage does not apply to this config (no `world:`, no train split, ...). Everything
that walks the pipeline walks `STAGES` through `walk_pipeline`: the Prefect flows (`flows/`, one generic
task per spec), `s3agent run` / `stage` / `store pack`, the tests and the benchmarks. A flow is a `Plan`: a
slice of the stages (`SLICES`) plus the few choices that differ between flows (which runs to evaluate,
whether the report adds what was scored before), so no flow restates an order or a condition.

`s3agent stages` lists the stages with a line each; each stage's spec lives in `<domain>/stage.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from s3core.agent.inference import InferenceRun, eval_question_sets, inference_runs
from s3core.agent.stage import contexts_spec, contexts_summary
from s3core.config.schema import RunConfig
from s3core.data.stage import answerable_spec, corpus_spec, coverage_summary, questions_spec, world_spec
from s3core.evaluation.stage import evaluation_summary, report_spec, scores_spec
from s3core.evaluation.summary import scored_before
from s3core.models.stage import prepared_models_spec, tiny_models_spec
from s3core.reader.stage import reader_spec
from s3core.retrieval.stage import (
    bm25_index_spec,
    dense_index_spec,
    embed_spec,
    needs_dense,
    recall_summary,
    retrieval_eval_spec,
)
from s3core.reward.stage import naive_rag_spec, training_pool_spec, training_pool_summary
from s3core.rl.checkpoints import Checkpoint, as_checkpoint
from s3core.rl.stage import final_policy_dir, train_spec
from s3core.store import ArtifactStore, Manifest, StageSpec, open_store
from s3core.store.stage import StageSummary
from s3core.warmstart.stage import warmstart_spec


@dataclass
class PipelineState:
    """The manifests of every stage so far, by stage name (what the next stages take as inputs)."""

    world: Manifest | None = None
    tiny_models: Manifest | None = None
    prepared_models: Manifest | None = None
    corpus: list[Manifest] = field(default_factory=list)
    questions: list[Manifest] = field(default_factory=list)
    answerable: list[Manifest] = field(default_factory=list)
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
        return self.reader or self.base_models

    @property
    def base_models(self) -> Manifest | None:
        """The model set before anything is trained on the corpus: the prepared models (which include the
        tiny ones when there are both), else the tiny models."""
        return self.prepared_models or self.tiny_models

    @property
    def usable_questions(self) -> list[Manifest]:
        """The QA sets later stages use: the answerable subsets when the answerable stage ran, else as ingested."""
        return list(self.answerable) or list(self.questions)

    def record(self, stage: str, manifests: list[Manifest]) -> None:
        """Keep a stage's manifests: a list for the stages with one artifact per part / QA set / run."""
        if isinstance(getattr(self, stage), list):
            setattr(self, stage, list(manifests))
        else:
            setattr(self, stage, manifests[0] if manifests else None)

    def of(self, stage: str) -> list[Manifest]:
        value = getattr(self, stage)
        return list(value) if isinstance(value, list) else [value] if value is not None else []

    def all(self) -> list[Manifest]:
        """Every manifest, in stage order."""
        return [m for node in STAGES for m in self.of(node.name)]


@dataclass(frozen=True)
class Plan:
    """What one walk of the graph runs: a slice of the stages, and the choices that differ between flows."""

    cfg: RunConfig
    stages: tuple[str, ...] | None = None  # the stages to run, in graph order; None: all of them
    runs: tuple[InferenceRun, ...] | None = None  # contexts: these runs (None: s3 + every baseline)
    with_history: bool = False  # report: add the scores this setting made before (s3-evaluate)
    report_title: str | None = None
    reward_curve: tuple[dict[str, Any], ...] | None = None  # report: metrics of a checkpoint still training

    def selects(self, stage: str) -> bool:
        return self.stages is None or stage in self.stages

    @property
    def store(self) -> ArtifactStore:
        return open_store(self.cfg)


SpecsFn = Callable[[Plan, PipelineState], list[StageSpec]]
SummaryFn = Callable[[Plan, PipelineState], list[StageSummary]]


@dataclass(frozen=True)
class StageNode:
    """One stage of the graph: its name (the artifact folder; `-` for `_` in Prefect task and CLI names), the
    function making its specs (empty: the stage does not apply), and what it shows in the UI once done."""

    name: str
    specs: SpecsFn
    summary: SummaryFn | None = None
    help: str = ""  # one line for `s3agent stages`

    @property
    def task_name(self) -> str:
        return display_name(self.name)


def display_name(stage: str) -> str:
    """A stage's name in Prefect task names and on the command line: `naive_rag` -> `naive-rag`."""
    return stage.replace("_", "-")


# -- the specs of each stage, from the config and the stages before it ---------------------------------
def _world(plan: Plan, s: PipelineState) -> list[StageSpec]:
    return [world_spec(plan.cfg)] if plan.cfg.world is not None else []


def _tiny_models(plan: Plan, s: PipelineState) -> list[StageSpec]:
    return [tiny_models_spec(plan.cfg, s.world)] if plan.cfg.tiny_models is not None and s.world else []


def _prepared_models(plan: Plan, s: PipelineState) -> list[StageSpec]:
    return [prepared_models_spec(plan.cfg, s.tiny_models)] if plan.cfg.models else []


def _corpus(plan: Plan, s: PipelineState) -> list[StageSpec]:
    return [corpus_spec(plan.cfg, part, s.world) for part in plan.cfg.corpus.parts]


def _questions(plan: Plan, s: PipelineState) -> list[StageSpec]:
    return [questions_spec(plan.cfg, qa, s.world) for qa in plan.cfg.questions.sets]


def _answerable(plan: Plan, s: PipelineState) -> list[StageSpec]:
    if not plan.cfg.questions.answerable_only:
        return []
    return [answerable_spec(plan.cfg, q, s.corpus) for q in s.questions]


def _embeddings(plan: Plan, s: PipelineState) -> list[StageSpec]:
    return [embed_spec(plan.cfg, s.corpus, s.base_models)] if needs_dense(plan.cfg) else []


def _dense_index(plan: Plan, s: PipelineState) -> list[StageSpec]:
    return [dense_index_spec(plan.cfg, s.embeddings)] if s.embeddings is not None else []


def _bm25_index(plan: Plan, s: PipelineState) -> list[StageSpec]:
    return [bm25_index_spec(plan.cfg, s.corpus)] if plan.cfg.retrieval.bm25.enabled else []


def _retrieval_eval(plan: Plan, s: PipelineState) -> list[StageSpec]:
    if not any(m.stats.get("split") != "train" for m in s.usable_questions):
        return []
    return [retrieval_eval_spec(plan.cfg, s.corpus, s.usable_questions, s.dense_index, s.bm25_index, s.base_models)]


def _reader(plan: Plan, s: PipelineState) -> list[StageSpec]:
    if plan.cfg.reader is None:
        return []
    return [reader_spec(plan.cfg, s.base_models, s.corpus, s.usable_questions, s.dense_index, s.bm25_index)]


def _warmstart(plan: Plan, s: PipelineState) -> list[StageSpec]:
    if plan.cfg.warmstart is None:
        return []
    return [warmstart_spec(plan.cfg, s.models, s.corpus, s.usable_questions, s.dense_index, s.bm25_index)]


def _naive_rag(plan: Plan, s: PipelineState) -> list[StageSpec]:
    return [naive_rag_spec(plan.cfg, q, s.corpus, s.dense_index, s.bm25_index, s.generator_models)
            for q in s.usable_questions]


def _training_pool(plan: Plan, s: PipelineState) -> list[StageSpec]:
    return [training_pool_spec(plan.cfg, s.naive_rag)] if has_train_split(s.usable_questions) and s.naive_rag else []


def _train(plan: Plan, s: PipelineState) -> list[StageSpec]:
    if s.training_pool is None:
        return []
    return [train_spec(plan.cfg, s.training_pool, s.naive_rag, s.corpus, s.dense_index, s.bm25_index, s.models)]


def _contexts(plan: Plan, s: PipelineState) -> list[StageSpec]:
    runs = plan.runs if plan.runs is not None else inference_runs(plan.cfg, trained_checkpoint(plan.cfg, s.train))
    return [contexts_spec(plan.cfg, run, questions, s.corpus, s.dense_index, s.bm25_index, s.models)
            for questions in eval_question_sets(plan.cfg, s.usable_questions) for run in runs]


def _scores(plan: Plan, s: PipelineState) -> list[StageSpec]:
    return [scores_spec(plan.cfg, c, s.generator_models) for c in s.contexts]


def _report(plan: Plan, s: PipelineState) -> list[StageSpec]:
    scores = reported_scores(plan, s)
    if not scores:
        return []
    curve = list(plan.reward_curve) if plan.reward_curve is not None else None
    return [report_spec(plan.cfg, scores, s.train, curve, plan.report_title)]


def reported_scores(plan: Plan, s: PipelineState) -> list[Manifest]:
    """What the report covers: this walk's scores and, for s3-evaluate, what the setting scored before with
    the same generator on the same QA sets (other checkpoints and baselines)."""
    if not plan.with_history or not s.scores:
        return list(s.scores)
    sets = sorted({(m.stats["data_source"], m.stats["split"]) for m in s.scores})
    runs = sorted({str(m.stats.get("run")) for m in s.scores})
    return list(s.scores) + scored_before(plan.store, plan.cfg.name, plan.cfg.generator.model, sets, runs_to_skip=runs)


# -- what each stage shows in the UI once done -----------------------------------------------------------
def _recall_summary(plan: Plan, s: PipelineState) -> list[StageSummary]:
    return [recall_summary(plan.cfg, plan.store, s.retrieval_eval)] if s.retrieval_eval else []


def _coverage_summary(plan: Plan, s: PipelineState) -> list[StageSummary]:
    return [coverage_summary(plan.cfg, s.answerable)] if s.answerable else []


def _training_pool_summary(plan: Plan, s: PipelineState) -> list[StageSummary]:
    return [training_pool_summary(plan.cfg, s.naive_rag, s.training_pool)] if s.training_pool else []


def _contexts_summary(plan: Plan, s: PipelineState) -> list[StageSummary]:
    return [contexts_summary(plan.cfg, s.contexts)] if s.contexts else []


def _evaluation_summary(plan: Plan, s: PipelineState) -> list[StageSummary]:
    return evaluation_summary(plan.cfg, plan.store, s.report) if s.report else []


STAGES: tuple[StageNode, ...] = (
    StageNode("world", _world,
              help="the tiny world's files: corpus, QA splits, entities (if `world:`)"),
    StageNode("tiny_models", _tiny_models,
              help="tokenizer, searcher, generator, encoder built from scratch (if `tiny_models:`)"),
    StageNode("prepared_models", _prepared_models,
              help="real models (GGUF or HF folders from packages, URLs, files) as HF folders (if `models:`)"),
    StageNode("corpus", _corpus,
              help="passages(id, title, text), one artifact per corpus part"),
    StageNode("questions", _questions,
              help="questions(id, data_source, split, ...), one artifact per QA set"),
    StageNode("answerable", _answerable, _coverage_summary,
              help="the questions whose gold answer occurs in the corpus (if questions.answerable_only)"),
    StageNode("embeddings", _embeddings,
              help="dense embedding of every passage (if the dense index is used)"),
    StageNode("dense_index", _dense_index,
              help="FAISS index over the embeddings"),
    StageNode("bm25_index", _bm25_index,
              help="Lucene BM25 index (if retrieval.bm25.enabled)"),
    StageNode("retrieval_eval", _retrieval_eval, _recall_summary,
              help="recall@k of each index on each non-train QA set"),
    StageNode("reader", _reader,
              help="the tiny world's extractive reader and its dev GenAcc (if `reader:`)"),
    StageNode("warmstart", _warmstart,
              help="the searcher fine-tuned on noisy oracle turns (if `warmstart:`)"),
    StageNode("naive_rag", _naive_rag,
              help="naive top-k RAG answer and GenAcc per question, one artifact per QA set"),
    StageNode("training_pool", _training_pool, _training_pool_summary,
              help="train questions naive RAG fails, minus yes/no ones (if a train split)"),
    StageNode("train", _train,
              help="the searcher trained by PPO: checkpoints and metrics"),
    StageNode("contexts", _contexts, _contexts_summary,
              help="per run (s3, each baseline) and evaluation QA set: searches and final context"),
    StageNode("scores", _scores,
              help="per contexts artifact: generator answers, GenAcc / EM / F1"),
    StageNode("report", _report, _evaluation_summary,
              help="report.md, comparison.csv and plots over every scores artifact"),
)
STAGE_ORDER: tuple[str, ...] = tuple(node.name for node in STAGES)
# Names the CLI also takes for several stages at once (besides every stage name, with - or _).
STAGE_GROUPS: dict[str, tuple[str, ...]] = {
    "index": ("embeddings", "dense_index", "bm25_index"),
    "inference": ("contexts",),
    "evaluate": ("scores", "report"),
}


def _through(last: str) -> tuple[str, ...]:
    return STAGE_ORDER[: STAGE_ORDER.index(last) + 1]


# The flows' slices of the graph (flows/: s3-train, s3-prepare, s3-evaluate).
SLICES: dict[str, tuple[str, ...]] = {
    "train": STAGE_ORDER,
    "prepare": _through("questions"),
    # the checkpoint or baseline given, on everything it needs; the reward's precompute and training are
    # another flow's work
    "evaluate": tuple(s for s in STAGE_ORDER if s not in ("naive_rag", "training_pool", "train")),
}
assert set(PipelineState.__dataclass_fields__) == set(STAGE_ORDER), "PipelineState has one field per stage"


def stage_names(name: str) -> tuple[str, ...]:
    """The stages a CLI name means: one stage (`naive-rag` or `naive_rag`), or a group (`index`)."""
    if name in STAGE_GROUPS:
        return STAGE_GROUPS[name]
    stage = name.replace("-", "_")
    if stage not in STAGE_ORDER:
        raise ValueError(f"unknown stage {name!r}: choose one of {', '.join(cli_stage_names())}")
    return (stage,)


def cli_stage_names() -> list[str]:
    return [node.task_name for node in STAGES] + list(STAGE_GROUPS)


class _Incomplete(Exception):
    """Raised inside walk_pipeline when `resolve` returns None (a stage is not complete)."""


Resolve = Callable[[StageSpec], Manifest | None]
AfterStage = Callable[[StageNode, PipelineState], None]


def walk_pipeline(plan: Plan | RunConfig, resolve: Resolve, partial: bool = False,
                  after: AfterStage | None = None) -> PipelineState | None:
    """Every selected stage in graph order; `resolve` runs or looks up each spec, `after` (if given) is
    called once a stage's specs are all resolved.

    Returns every manifest, or as soon as `resolve` returns None (a stage that is not complete): None, or
    with `partial` the manifests resolved so far.
    """
    plan = plan if isinstance(plan, Plan) else Plan(plan)
    state = PipelineState()
    try:
        for node in STAGES:
            if not plan.selects(node.name):
                continue
            manifests = [_need(resolve, spec) for spec in node.specs(plan, state)]
            state.record(node.name, manifests)
            if manifests and after is not None:
                after(node, state)
    except _Incomplete:
        return state if partial else None
    return state


def _need(resolve: Resolve, spec: StageSpec) -> Manifest:
    if (manifest := resolve(spec)) is None:
        raise _Incomplete(spec.stage)
    return manifest


def summaries(node: StageNode, plan: Plan, state: PipelineState) -> list[StageSummary]:
    """What a finished stage shows in the UI (tables, markdown); [] for most stages."""
    return node.summary(plan, state) if node.summary is not None else []


def trained_checkpoint(cfg: RunConfig, train: Manifest | None) -> Checkpoint | None:
    """The newest checkpoint of a completed train artifact: the s3 run of the inference stage."""
    if train is None:
        return None
    return as_checkpoint(final_policy_dir(open_store(cfg).local_dir(train)))


def has_train_split(questions: Sequence[Manifest]) -> bool:
    return any(m.stats.get("split") == "train" for m in questions)


def plan_through(cfg: RunConfig, last: str) -> Plan:
    """Every stage up to and including `last` (what `s3agent stage` runs)."""
    if last not in STAGE_ORDER:
        raise ValueError(f"unknown stage {last!r}: choose one of {', '.join(STAGE_ORDER)}")
    return Plan(cfg, stages=_through(last))


def slice_plan(cfg: RunConfig, slice_name: str, **choices: Any) -> Plan:
    """The plan of one flow's slice (`SLICES`), with its choices (runs, with_history, report_title, ...)."""
    if slice_name not in SLICES:
        raise ValueError(f"unknown slice {slice_name!r}: choose one of {', '.join(SLICES)}")
    return replace(Plan(cfg, stages=SLICES[slice_name]), **choices)
