"""Per-dataset metrics and the comparison table across runs (DESIGN.md section 3 "Evaluation").

Numbers come from the `scores` manifests' summed stats, so a table over any number of runs and QA sets
reads no Parquet. The average is unweighted over data sources (the paper's "Avg." column): a large set
does not outweigh a small one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from s3core.store import ArtifactStore, Manifest

METRICS = ("genacc", "em", "f1")


def set_metrics(scores: Sequence[Manifest]) -> list[dict[str, Any]]:
    """One row per scores artifact: run, data source, split, questions, scoring rule and mean metrics."""
    rows = []
    for m in scores:
        s = m.stats
        n = int(s.get("questions", 0))
        row = {"run": s["run"], "data_source": s["data_source"], "split": s["split"], "questions": n,
               "scoring": s.get("scoring", "")}
        row.update({k: (s.get(f"{k}_sum", 0) / n if n else float("nan")) for k in METRICS})
        rows.append(row)
    return rows


def run_order(per_set: Sequence[dict[str, Any]]) -> list[str]:
    """Runs as first seen, with s3 and its checkpoints (newest step last) ahead of the baselines."""
    seen = list(dict.fromkeys(r["run"] for r in per_set))
    s3 = sorted((r for r in seen if r == "s3" or r.startswith("s3@")), key=_step_of)
    return s3 + [r for r in seen if r not in s3]


def _step_of(run: str) -> tuple[int, int]:
    if run == "s3":
        return (1, 0)
    try:
        return (0, int(run.rsplit("-", 1)[-1]))
    except ValueError:
        return (0, 0)


def comparison_rows(per_set: Sequence[dict[str, Any]], metric: str = "genacc") -> list[dict[str, Any]]:
    """One row per run: `metric` per data source (as %, 1 decimal) and their unweighted average."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: choose one of {METRICS}")
    sources = list(dict.fromkeys(r["data_source"] for r in per_set))
    table = []
    for run in run_order(per_set):
        values = {r["data_source"]: r[metric] for r in per_set if r["run"] == run}
        row: dict[str, Any] = {"run": run}
        row.update({src: _percent(values.get(src)) for src in sources})
        present = [v for v in values.values() if v == v]  # not NaN
        row["avg"] = _percent(sum(present) / len(present)) if present else None
        table.append(row)
    return table


def _percent(value: float | None) -> float | None:
    return None if value is None or value != value else round(100.0 * value, 1)


def scored_before(store: ArtifactStore, setting: str, generator: str, sets: Sequence[tuple[str, str]],
                  runs_to_skip: Sequence[str] = ()) -> list[Manifest]:
    """The newest completed scores artifact per (run, data source, split) of `setting`, answered by the same
    `generator`, on the QA sets `sets` ((data_source, split) pairs): what earlier evaluations of this setting
    measured, for the comparison table of a new one. Runs in `runs_to_skip` (evaluated now) are left out."""
    newest: dict[tuple[str, str, str], Manifest] = {}
    for m in store.list_manifests("scores"):
        s = m.stats
        if s.get("setting") != setting or s.get("generator") != generator:
            continue
        if (s.get("data_source"), s.get("split")) not in set(sets):
            continue
        if s.get("run") in runs_to_skip:
            continue
        slot = (s["run"], s["data_source"], s["split"])
        if slot not in newest or m.created_at > newest[slot].created_at:
            newest[slot] = m
    return list(newest.values())
