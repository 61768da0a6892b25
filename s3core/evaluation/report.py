"""The `report` stage: the evaluation of a flow as files a user can open (DESIGN.md section 3 "Evaluation").

    report   report.md (tables of GenAcc, EM and F1 per data source and run, unweighted average; paired
             differences against the reference runs with 95% bootstrap intervals and win/tie/loss counts;
             breakdowns by question type, searches, selected documents and outcome class; what was scored
             and how), comparison.csv (one row per run x data source, with the paired GenAcc difference),
             paired.csv, breakdown.csv, reward_curve.png (reward and GenAcc over training steps, when a
             training run is given), per_dataset.png (GenAcc per data source and run), paired_diff.png
             (each run's GenAcc difference per data source with its interval)                      dir

Every table is a polars query over the scores shards (evaluation/paired.py), not over manifest sums.

Plots are drawn with matplotlib's Agg backend (no display needed) and linked from report.md by relative
path, so the folder can be copied or served as it is.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from s3core.evaluation.paired import (
    AVERAGE,
    BootstrapSettings,
    breakdown_rows,
    paired_rows,
    scores_frame,
    set_means,
)
from s3core.evaluation.summary import METRICS, comparison_rows, run_order
from s3core.store import Manifest, StageContext, StageResult

CURVE_COLUMNS = ("step", "reward_mean", "genacc_s3")




def train_curve(store, train: Manifest) -> list[dict[str, float]]:
    import pyarrow.parquet as pq

    table = pq.read_table(store.local_dir(train) / "metrics.parquet")
    return [{k: row[k] for k in CURVE_COLUMNS if k in row} for row in table.to_pylist()]


def build_report(ctx: StageContext, title: str, curve: list[dict[str, float]], references: Sequence[str] = (),
                 settings: BootstrapSettings = BootstrapSettings()) -> StageResult:
    out = ctx.staging_dir()
    scores = [m for k, m in sorted(ctx.inputs.items()) if k.startswith("scores/")]
    frame = scores_frame(ctx.store, scores)
    per_set = frame_metrics(frame, scores)
    if "train" in ctx.inputs and not curve:
        curve = train_curve(ctx.store, ctx.inputs["train"])
    present = {r["run"] for r in per_set}
    references = [r for r in references if r in present]
    ctx.progress(0, 2, f"report: paired bootstrap ({settings.resamples} resamples) against {references or 'no reference'}")
    paired = paired_rows(frame, references, settings) if references else []
    breakdown = breakdown_rows(frame, references[0] if references else None)
    write_csv(comparison_with_paired(per_set, paired), out / "comparison.csv", COMPARISON_COLUMNS)
    write_csv(paired, out / "paired.csv", PAIRED_COLUMNS)
    write_csv(breakdown, out / "breakdown.csv", BREAKDOWN_COLUMNS)
    plots = {"per_dataset.png": plot_per_dataset(per_set, out / "per_dataset.png")}
    if paired:
        plots["paired_diff.png"] = plot_paired(paired, out / "paired_diff.png")
    if curve:
        plots["reward_curve.png"] = plot_reward_curve(curve, out / "reward_curve.png")
    (out / "report.md").write_text(report_markdown(title, per_set, curve, plots, paired, breakdown, settings),
                                   encoding="utf-8")
    ctx.progress(2, 2, "report written")
    best = comparison_rows(per_set)
    averages = {f"{r['run']} - {r['reference']}": [round(100 * r[k], 2) for k in ("diff", "lo", "hi")]
                for r in paired if r["data_source"] == AVERAGE and r["metric"] == "genacc"}
    return StageResult(stats={"runs": len(best), "qa_sets": len({r["data_source"] for r in per_set}),
                              "genacc_avg": {r["run"]: r["avg"] for r in best}, "genacc_diff_avg": averages},
                       staging_dir=out)


def frame_metrics(frame, scores: Sequence[Manifest]) -> list[dict[str, Any]]:
    """set_metrics' rows (run, data source, split, questions, scoring, means), computed from the shards."""
    scoring = {(m.stats["run"], m.stats["data_source"], m.stats["split"]): m.stats.get("scoring", "") for m in scores}
    return [{"run": r["run"], "data_source": r["data_source"], "split": r["split"], "questions": r["questions"],
             "scoring": scoring.get((r["run"], r["data_source"], r["split"]), ""), **{k: r[k] for k in METRICS}}
            for r in set_means(frame).to_dicts()]


COMPARISON_COLUMNS = ["run", "data_source", "split", "questions", "scoring", *METRICS, "reference", "genacc_diff",
                      "genacc_diff_lo", "genacc_diff_hi", "paired_questions"]
PAIRED_COLUMNS = ["run", "reference", "data_source", "metric", "questions", "run_mean", "reference_mean", "diff", "lo",
                  "hi", "wins", "ties", "losses"]
BREAKDOWN_COLUMNS = ["by", "run", "data_source", "group", "questions", "genacc"]


def comparison_with_paired(per_set: list[dict[str, Any]], paired: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """comparison.csv's rows: each run x QA set, with its GenAcc difference to the first reference and the
    interval (empty for the reference itself)."""
    first = paired[0]["reference"] if paired else None
    diffs = {(r["run"], r["data_source"]): r for r in paired if r["metric"] == "genacc" and r["reference"] == first}
    rows = []
    for row in per_set:
        d = diffs.get((row["run"], row["data_source"]))
        rows.append({**row, "reference": first if d else "", "genacc_diff": d["diff"] if d else None,
                     "genacc_diff_lo": d["lo"] if d else None, "genacc_diff_hi": d["hi"] if d else None,
                     "paired_questions": d["questions"] if d else None})
    return rows


def read_report_tables(folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What a report folder holds as tables, typed as build_report made them: the per-set rows of
    comparison.csv (run, data source, split, questions, scoring, metrics) and the rows of paired.csv. The UI
    summary and s3-evaluate's answer read these instead of querying the scores again."""
    with open(folder / "comparison.csv", newline="", encoding="utf-8") as handle:
        per_set = [{"run": r["run"], "data_source": r["data_source"], "split": r["split"], "questions": int(r["questions"]),
                    "scoring": r["scoring"], **{k: float(r[k]) for k in METRICS}} for r in csv.DictReader(handle)]
    with open(folder / "paired.csv", newline="", encoding="utf-8") as handle:
        paired = [{**r, **{k: float(r[k]) for k in ("run_mean", "reference_mean", "diff", "lo", "hi")},
                   **{k: int(r[k]) for k in ("questions", "wins", "ties", "losses")}} for r in csv.DictReader(handle)]
    return per_set, paired


def write_csv(rows: Sequence[dict[str, Any]], path: Path, columns: Sequence[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows({k: row.get(k) for k in columns} for row in rows)


def paired_markdown_rows(paired: Sequence[dict[str, Any]], metric: str = "genacc") -> list[dict[str, Any]]:
    """The paired table for the report and the UI: difference in points with its interval, questions, W/T/L."""
    return [{"run": r["run"], "vs": r["reference"], "data_source": r["data_source"], "questions": r["questions"],
             "run %": _pp(r["run_mean"]), "reference %": _pp(r["reference_mean"]),
             "diff (pp)": f"{100 * r['diff']:+.1f}", "95% CI": f"[{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}]",
             "win/tie/loss": f"{r['wins']}/{r['ties']}/{r['losses']}"}
            for r in paired if r["metric"] == metric]


def _pp(value: float) -> str:
    return "" if value != value else f"{100 * value:.1f}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(empty)"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join("" if row[c] is None else str(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def report_markdown(title: str, per_set: list[dict[str, Any]], curve: list[dict[str, float]],
                    plots: dict[str, Path], paired: Sequence[dict[str, Any]] = (),
                    breakdown: Sequence[dict[str, Any]] = (), settings: BootstrapSettings = BootstrapSettings()) -> str:
    sets = ", ".join(f"{r['data_source']}/{r['split']} ({r['questions']} questions, {r['scoring']})"
                     for r in {(r["data_source"], r["split"]): r for r in per_set}.values())
    parts = [f"# {title}", "", f"QA sets: {sets}.", "",
             "GenAcc is span_check OR judge (judge alone where the scoring says judge_only); EM and F1 are "
             "reported alongside. `avg` is the unweighted mean over data sources. Values in %.", ""]
    for metric, label in (("genacc", "GenAcc"), ("em", "Exact match"), ("f1", "Token F1")):
        parts += [f"## {label}", "", markdown_table(comparison_rows(per_set, metric)), ""]
    parts += ["## Paired differences", ""]
    if paired:
        parts += [f"Each run minus the reference, question by question on the questions both answered: the mean "
                  f"difference in percentage points with a {100 * settings.level:.0f}% paired bootstrap interval "
                  f"({settings.resamples:,} resamples, seed {settings.seed}; `avg` resamples each data source and "
                  "averages), and how many questions the run wins, ties and loses. An interval that holds 0 is no "
                  "evidence of a difference.", ""]
        for metric, label in (("genacc", "GenAcc"), ("em", "Exact match"), ("f1", "Token F1")):
            parts += [f"### {label}", "", markdown_table(paired_markdown_rows(paired, metric)), ""]
    else:
        parts += ["No reference run was evaluated (the naive-RAG baseline of retrieval.naive_retriever, or a run "
                  "named in evaluation.compare_to), so there are no paired differences.", ""]
    if breakdown:
        parts += ["## Breakdowns", "", "GenAcc (%) and questions per group, from the per-question scores.", ""]
        for by in dict.fromkeys(r["by"] for r in breakdown):
            rows = [{"run": r["run"], "data_source": r["data_source"], by: r["group"], "questions": r["questions"],
                     "GenAcc %": _pp(r["genacc"])} for r in breakdown if r["by"] == by]
            parts += [f"### By {by}", "", markdown_table(rows), ""]
    parts += ["## Plots", "", "![GenAcc per data source](per_dataset.png)", ""]
    if "paired_diff.png" in plots:
        parts += ["![GenAcc difference to the reference, with intervals](paired_diff.png)", ""]
    if "reward_curve.png" in plots:
        last = curve[-1]
        parts += ["![Reward over training steps](reward_curve.png)", "",
                  f"Training: {len(curve)} steps; last step reward {last.get('reward_mean', float('nan')):+.3f}, "
                  f"GenAcc {last.get('genacc_s3', float('nan')):.3f}.", ""]
    else:
        parts += ["No training curve: no training run was part of this evaluation.", ""]
    return "\n".join(parts)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 120) -> Path:
    """Lay out, write (to a temporary name, renamed when complete) and close a figure."""
    tmp = path.with_name(path.name + ".tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=dpi)
    os.replace(tmp, path)
    _pyplot().close(fig)
    return path


def plot_per_dataset(per_set: list[dict[str, Any]], path: Path) -> Path:
    """Grouped bars: one group per data source (and the average), one bar per run."""
    plt = _pyplot()
    runs = run_order(per_set)
    table = comparison_rows(per_set)
    groups = [c for c in table[0] if c != "run"]
    width = 0.8 / max(1, len(runs))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * max(1, len(runs)) * 0.5), 4.0))
    for i, row in enumerate(table):
        xs = [g + (i - (len(runs) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [row[c] or 0.0 for c in groups], width, label=row["run"])
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("GenAcc (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize="small", ncols=min(4, len(runs)))
    ax.set_title("GenAcc per data source")
    return save_figure(fig, path)


def plot_paired(paired: Sequence[dict[str, Any]], path: Path) -> Path:
    """GenAcc difference to the first reference per data source (and avg), one marker per run, with its interval."""
    plt = _pyplot()
    first = paired[0]["reference"]
    rows = [r for r in paired if r["metric"] == "genacc" and r["reference"] == first]
    sources = list(dict.fromkeys(r["data_source"] for r in rows))
    runs = list(dict.fromkeys(r["run"] for r in rows))
    width = 0.8 / max(1, len(runs))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(sources) * max(1, len(runs))), 4.0))
    for i, run in enumerate(runs):
        mine = {r["data_source"]: r for r in rows if r["run"] == run}
        got = [(g, mine[src]) for g, src in enumerate(sources) if src in mine]
        xs = [g + (i - (len(runs) - 1) / 2) * width for g, _ in got]
        ys = [100 * r["diff"] for _, r in got]
        errors = [[100 * (r["diff"] - r["lo"]) for _, r in got], [100 * (r["hi"] - r["diff"]) for _, r in got]]
        ax.errorbar(xs, ys, yerr=errors, fmt="o", capsize=3, label=run)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(sources)), sources)
    ax.set_ylabel(f"GenAcc minus {first} (points)")
    ax.legend(fontsize="small", ncols=min(4, len(runs)))
    ax.set_title("Paired GenAcc difference, 95% bootstrap interval")
    return save_figure(fig, path)


def plot_reward_curve(curve: list[dict[str, float]], path: Path) -> Path:
    plt = _pyplot()
    steps = [row["step"] for row in curve]
    fig, ax = plt.subplots(figsize=(6.0, 3.5))
    ax.plot(steps, [row.get("reward_mean", float("nan")) for row in curve], marker="o", label="reward (GBR) mean")
    ax.plot(steps, [row.get("genacc_s3", float("nan")) for row in curve], marker="s", label="GenAcc of s3 context")
    ax.set_xlabel("training step")
    ax.axhline(0.0, color="grey", linewidth=0.5)
    ax.legend(fontsize="small")
    ax.set_title("Training reward")
    return save_figure(fig, path)
