"""Tasks of the evaluation stage: scores per contexts artifact, and the report with its UI table and markdown."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from s3core.config import RunConfig
from s3core.evaluation.report import report_spec
from s3core.evaluation.scores import scores_spec
from s3core.evaluation.summary import comparison_rows, set_metrics
from s3core.pipeline import open_store
from s3core.store import Manifest
from tasks.common import artifact_key, run_spec_in_task, spec_cache_key


@task(
    name="scores",
    task_run_name="scores-{contexts.stats[run]}-{contexts.stats[data_source]}-{contexts.stats[split]}",
    cache_key_fn=spec_cache_key(lambda cfg, contexts, tiny_models: scores_spec(cfg, contexts, tiny_models)),
    persist_result=True,
)
def scores_task(cfg: RunConfig, contexts: Manifest, tiny_models: Manifest | None) -> Manifest:
    """The generator's answers on one run's contexts, scored (GenAcc, EM, F1); sharded, resumable."""
    return run_spec_in_task(scores_spec(cfg, contexts, tiny_models), cfg)


@task(
    name="report",
    cache_key_fn=spec_cache_key(lambda cfg, scores, train=None, reward_curve=None, title=None:
                                report_spec(cfg, scores, train, reward_curve, title)),
    persist_result=True,
)
def report_task(cfg: RunConfig, scores: list[Manifest], train: Manifest | None = None,
                reward_curve: list[dict[str, Any]] | None = None, title: str | None = None) -> Manifest:
    """report.md, comparison.csv and the plots, in the store."""
    return run_spec_in_task(report_spec(cfg, scores, train, reward_curve, title), cfg)


@task(name="evaluation-summary")
def evaluation_summary_task(cfg: RunConfig, scores: list[Manifest], report: Manifest) -> list[dict[str, Any]]:
    """The GenAcc comparison (a table artifact) and the report (markdown, with where its files are) in this
    flow run's UI, also when the report itself came from the cache. Returns the comparison rows."""
    rows = comparison_rows(set_metrics(scores))
    create_table_artifact(rows, key=artifact_key(cfg, "evaluation"),
                          description=f"GenAcc (%) per data source and run, unweighted average ({cfg.name})")
    folder = open_store(cfg).local_dir(report)
    text = (folder / "report.md").read_text(encoding="utf-8")
    links = "\n".join(f"- `{folder / name}`" for name in sorted(p.name for p in folder.iterdir()))
    create_markdown_artifact(f"{text}\n\n## Files\n\n{links}\n", key=artifact_key(cfg, "report"),
                             description=f"Evaluation report ({cfg.name})")
    return rows
