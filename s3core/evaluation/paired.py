"""Paired comparisons and breakdowns of per-question scores (issue 24; DESIGN.md section 3 "Evaluation").

Every run is scored on the same questions as the naive-RAG baseline of the same generator, so the honest
uncertainty of "s3 beats naive RAG by 1.5 points" is a *paired* one: the per-question difference
d_i = m_run(q_i) - m_ref(q_i), its mean, and a 95% percentile bootstrap interval over questions.

Bootstrap (seeded, `evaluation.bootstrap_resamples`, 10,000 by default): resample r draws n question
positions with replacement, `rng.integers(0, n, size=n)`, from `numpy.random.default_rng(seed)`, one
generator per (reference, data source) in sorted source order, resamples in order; the interval is the 2.5
and 97.5 percentiles of the resampled means. All runs compared with one reference on one source share the
draws (as the questions do), which turns the resampling into one count-matrix product: counts [R, n] @
differences [n, runs x metrics]. A run that lacks some of the reference's questions is compared on the
questions both have: each resample keeps the drawn positions that run has. The unweighted average over data
sources (the paper's "Avg.") resamples each source independently and averages the resampled means.

Breakdowns split a run's questions by question type (`question_type`: the tiny world's single-hop / two-hop
/ comparison, HotpotQA's bridge / comparison), by number of searches and of selected documents, and by the
GBR outcome class against the reference (gained: the reference is wrong and the run right; kept: both
right; lost: the reference right, the run wrong; never: both wrong).

Everything is a polars query over the `scores` shards, read lazily (`ArtifactStore.scan_table`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from s3core.store import ArtifactStore, Manifest

METRICS = ("genacc", "em", "f1")
KEY = ["question_id", "data_source", "split"]
SCORE_COLUMNS = [*KEY, "run", "strategy", "question_type", "searches", "selected", *METRICS]
AVERAGE = "avg"
OUTCOMES = ("gained", "kept", "lost", "never")
COUNTS_BUDGET = 4_000_000  # entries of one [chunk, n] block of draws


@dataclass(frozen=True)
class BootstrapSettings:
    resamples: int = 10_000
    seed: int = 0
    level: float = 0.95


def scores_frame(store: ArtifactStore, scores: Sequence[Manifest]) -> pl.LazyFrame:
    """Every question of every scores artifact: KEY, run, strategy, question type, searches, selected
    documents and the metrics as floats (one row per question and run)."""
    if not scores:
        raise ValueError("no scores artifacts to read: evaluate at least one run first")
    frames = [store.scan_table(m).select(SCORE_COLUMNS) for m in scores]
    return pl.concat(frames, how="vertical_relaxed").with_columns(
        [pl.col(m).cast(pl.Float64) for m in METRICS])


def set_means(frame: pl.LazyFrame) -> pl.DataFrame:
    """One row per run and QA set: questions and the mean of each metric."""
    return (frame.group_by(["run", "data_source", "split"], maintain_order=True)
            .agg(pl.len().alias("questions"), *[pl.col(m).mean() for m in METRICS])
            .collect())


# -- the bootstrap ------------------------------------------------------------------------------------------
def resample_counts(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """[R, n] how often each of n positions is drawn in each resample (resample r: rng.integers(0, n, n))."""
    counts = np.empty((resamples, n), dtype=np.float32)
    chunk = max(1, COUNTS_BUDGET // max(1, n))
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        draws = rng.integers(0, n, size=(k, n))  # [k, n]: resample k's positions, in the loop's order
        flat = (draws + (np.arange(k) * n)[:, None]).ravel()
        counts[start:start + k] = np.bincount(flat, minlength=k * n).reshape(k, n)
    return counts


def resampled_means(counts: np.ndarray, values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """[R, c] resampled means of `values` [n, c] where `present` [n, c] (the drawn positions a column has)."""
    weights = counts @ present.astype(np.float32)  # [R, c]: drawn positions each column has
    sums = counts @ np.where(present, values, 0.0).astype(np.float64)  # [R, c]
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / weights


def interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each column of [R, c] samples (NaN resamples, with no position, left out)."""
    tail = 100 * (1 - level) / 2
    return np.nanpercentile(samples, tail, axis=0), np.nanpercentile(samples, 100 - tail, axis=0)


# -- paired differences -------------------------------------------------------------------------------------
def paired_rows(frame: pl.LazyFrame, references: Sequence[str],
                settings: BootstrapSettings = BootstrapSettings()) -> list[dict[str, Any]]:
    """For each reference run and every other run: per data source and for the unweighted average,
    the questions both have, each side's mean, the mean difference with its interval, and win/tie/loss
    counts, for every metric. Values are fractions (report.py shows %)."""
    data = frame.collect()
    present_runs = list(dict.fromkeys(data["run"].to_list()))
    missing = [r for r in references if r not in present_runs]
    if missing:
        raise ValueError(f"reference run(s) {missing} have no scores here (runs: {present_runs}); name a run that "
                         "was evaluated (evaluation.compare_to) or evaluate it first")
    rows: list[dict[str, Any]] = []
    for reference in references:
        others = [r for r in present_runs if r != reference]
        if others:
            rows += _paired_with(data, reference, others, settings)
    return rows


def _paired_with(data: pl.DataFrame, reference: str, others: Sequence[str],
                 settings: BootstrapSettings) -> list[dict[str, Any]]:
    ref = data.filter(pl.col("run") == reference)
    sources = sorted(set(ref["data_source"].to_list()))
    rows, boots = [], {}  # boots: (run, metric) -> list of [R] resampled mean differences, one per source
    for source in sources:
        wide = ref.filter(pl.col("data_source") == source).sort(KEY).select(KEY + list(METRICS))
        for run in others:
            run_rows = data.filter((pl.col("run") == run) & (pl.col("data_source") == source)).select(KEY + list(METRICS))
            wide = wide.join(run_rows.rename({m: f"{m}@{run}" for m in METRICS}), on=KEY, how="left")
        n = wide.height
        counts = resample_counts(n, settings.resamples, np.random.default_rng([settings.seed, sources.index(source)]))
        columns = [(run, m) for run in others for m in METRICS]
        theirs = np.column_stack([wide[f"{m}@{run}"].to_numpy().astype(np.float64) for run, m in columns])  # [n, c]
        mine = np.column_stack([wide[m].to_numpy().astype(np.float64) for _, m in columns])  # [n, c]
        present = ~np.isnan(theirs)
        diff = theirs - mine  # [n, c]
        samples = resampled_means(counts, diff, present)  # [R, c]
        lo, hi = interval(samples, settings.level)
        for j, (run, metric) in enumerate(columns):
            boots.setdefault((run, metric), []).append(samples[:, j])
            keep = present[:, j]
            d = diff[keep, j]
            rows.append({"run": run, "reference": reference, "data_source": source, "metric": metric,
                         "questions": int(keep.sum()), "run_mean": _mean(theirs[keep, j]),
                         "reference_mean": _mean(mine[keep, j]), "diff": _mean(d), "lo": float(lo[j]),
                         "hi": float(hi[j]), "wins": int((d > 0).sum()), "ties": int((d == 0).sum()),
                         "losses": int((d < 0).sum())})
    for (run, metric), per_source in boots.items():
        mine = [r for r in rows if r["run"] == run and r["metric"] == metric]
        lo, hi = interval(np.mean(np.column_stack(per_source), axis=1)[:, None], settings.level)
        rows.append({"run": run, "reference": reference, "data_source": AVERAGE, "metric": metric,
                     "questions": sum(r["questions"] for r in mine),
                     "run_mean": _mean([r["run_mean"] for r in mine]),
                     "reference_mean": _mean([r["reference_mean"] for r in mine]),
                     "diff": _mean([r["diff"] for r in mine]), "lo": float(lo[0]), "hi": float(hi[0]),
                     "wins": sum(r["wins"] for r in mine), "ties": sum(r["ties"] for r in mine),
                     "losses": sum(r["losses"] for r in mine)})
    return rows


def _mean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()) if values.size else float("nan")


# -- breakdowns ---------------------------------------------------------------------------------------------
def breakdown_rows(frame: pl.LazyFrame, reference: str | None) -> list[dict[str, Any]]:
    """GenAcc and question counts per run and data source, split by question type (when the data has types),
    searches, selected documents, and (given a reference) the GBR outcome class against it."""
    groups = []
    has_types = frame.select((pl.col("question_type").fill_null("") != "").any()).collect().item()
    if has_types:
        groups.append(("question type", pl.col("question_type").fill_null(""), pl.lit(0)))
    groups += [("searches", pl.col("searches").cast(pl.Utf8), pl.col("searches")),
               ("selected documents", pl.col("selected").cast(pl.Utf8), pl.col("selected"))]
    parts = [_grouped(frame, *group) for group in groups]
    if reference is not None:
        ref = frame.filter(pl.col("run") == reference).select(*KEY, pl.col("genacc").alias("reference_genacc"))
        joined = frame.filter(pl.col("run") != reference).join(ref, on=KEY, how="inner")
        right, ref_right = pl.col("genacc") > 0, pl.col("reference_genacc") > 0
        outcome = (pl.when(~ref_right & right).then(pl.lit("gained")).when(ref_right & right).then(pl.lit("kept"))
                   .when(ref_right & ~right).then(pl.lit("lost")).otherwise(pl.lit("never")))
        order = pl.col("group").replace_strict({name: i for i, name in enumerate(OUTCOMES)}, return_dtype=pl.Int64)
        parts.append(_grouped(joined, f"outcome vs {reference}", outcome, order))
    return pl.concat(parts).to_dicts()


def _grouped(frame: pl.LazyFrame, by: str, group: pl.Expr, order: pl.Expr) -> pl.DataFrame:
    """Questions and GenAcc per (run, data source, group); groups in `order` (numbers as numbers)."""
    return (frame.with_columns(group.alias("group"))
            .with_columns(order.alias("order"))
            .group_by(["run", "data_source", "group"])
            .agg(pl.len().alias("questions"), pl.col("genacc").mean().alias("genacc"), pl.col("order").first())
            .with_columns(pl.lit(by).alias("by"))
            .sort(["run", "data_source", "order", "group"])
            .select("by", "run", "data_source", "group", "questions", "genacc")
            .collect())
