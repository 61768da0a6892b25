"""The evaluation stages (DESIGN.md section 3 "Evaluation"): the generator's answers on every contexts
artifact, scored (scores.py), and the report over them (report.py).

    scores   per contexts artifact: generator answer, GenAcc / EM / F1                  table, resumable by shard
    report   report.md, comparison.csv and plots over every scores artifact             dir
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from s3core.config.schema import RunConfig
from s3core.evaluation.paired import BootstrapSettings
from s3core.evaluation.report import CURVE_COLUMNS, build_report, paired_markdown_rows, read_report_tables
from s3core.evaluation.scores import build_scores, scores_identity
from s3core.evaluation.summary import comparison_rows
from s3core.models.resolve import in_model_set
from s3core.store import ArtifactStore, Manifest, StageContext, StageResult, StageSpec
from s3core.store.stage import StageSummary


def scores_spec(cfg: RunConfig, contexts: Manifest, tiny_models: Manifest | None) -> StageSpec:
    """The `scores` stage of one contexts artifact (one run on one QA set)."""
    inputs = {"contexts": contexts}
    if in_model_set(cfg.generator.model):
        if tiny_models is None:
            raise ValueError("the generator is a 'tiny:' model but the tiny models were not built")
        inputs["tiny_models"] = tiny_models
    data_source = contexts.stats.get("data_source", "")

    def build(ctx: StageContext) -> StageResult:
        return build_scores(ctx, cfg)

    detail = f"{contexts.stats.get('run')} {data_source}/{contexts.stats.get('split')}"
    return StageSpec("scores", scores_identity(cfg, data_source), inputs, build, detail=detail)


def report_spec(cfg: RunConfig, scores: Sequence[Manifest], train: Manifest | None = None,
                reward_curve: Sequence[dict[str, Any]] | None = None, title: str | None = None) -> StageSpec:
    """The report over `scores` (any runs and QA sets); the reward curve from `train`'s metrics.parquet or,
    for a checkpoint still training, from the metrics given."""
    if not scores:
        raise ValueError("nothing to report: no scores artifacts were given (no evaluation QA set, or no run)")
    inputs = {f"scores/{i:03d}": m for i, m in enumerate(scores)}
    if train is not None:
        inputs["train"] = train
    curve = [{k: float(row[k]) for k in CURVE_COLUMNS if k in row} for row in (reward_curve or [])]
    references = reference_runs(cfg)
    settings = BootstrapSettings(cfg.evaluation.bootstrap_resamples, cfg.evaluation.bootstrap_seed)
    identity = {"title": title or f"s3-train evaluation ({cfg.name})", "reward_curve": curve,
                "references": references, "bootstrap": [settings.resamples, settings.seed, settings.level]}

    def build(ctx: StageContext) -> StageResult:
        return build_report(ctx, identity["title"], curve, references, settings)

    return StageSpec("report", identity, inputs, build, kind="dir")


def reference_runs(cfg: RunConfig) -> list[str]:
    """The runs every other run is compared with, question by question: the naive-RAG baseline that searches
    retrieval.naive_retriever (the reward's reference; else the first naive-RAG baseline), then
    evaluation.compare_to."""
    naive = [b for b in cfg.inference.baselines if b.strategy == "naive"]
    same = [b for b in naive if (b.retriever or cfg.retrieval.naive_retriever) == cfg.retrieval.naive_retriever]
    return list(dict.fromkeys([b.name for b in (same or naive)[:1]] + list(cfg.evaluation.compare_to)))


def evaluation_summary(cfg: RunConfig, store: ArtifactStore, report: Manifest) -> list[StageSummary]:
    """The GenAcc comparison and the paired differences (tables, as the report wrote them), and the report
    (markdown, with where its files are)."""
    folder = store.local_dir(report)
    per_set, paired = read_report_tables(folder)
    text = (folder / "report.md").read_text(encoding="utf-8")
    links = "\n".join(f"- `{folder / name}`" for name in sorted(p.name for p in folder.iterdir()))
    summaries = [StageSummary("evaluation", f"GenAcc (%) per data source and run, unweighted average ({cfg.name})",
                              table=comparison_rows(per_set))]
    if paired:
        summaries.append(StageSummary("paired-differences", f"GenAcc minus the reference, points, paired 95% "
                                      f"bootstrap interval ({cfg.name})", table=paired_markdown_rows(paired)))
    return summaries + [
        StageSummary("report", f"Evaluation report ({cfg.name})", markdown=f"{text}\n\n## Files\n\n{links}\n")]
