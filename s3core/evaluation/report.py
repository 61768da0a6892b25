"""The `report` stage: the evaluation of a flow as files a user can open (DESIGN.md section 3 "Evaluation").

    report   report.md (tables of GenAcc, EM and F1 per data source and run, unweighted average; what was
             scored and how), comparison.csv (one row per run x data source), reward_curve.png (reward and
             GenAcc over training steps, when a training run is given), per_dataset.png (GenAcc per data
             source and run)                                                                         dir

Plots are drawn with matplotlib's Agg backend (no display needed) and linked from report.md by relative
path, so the folder can be copied or served as it is.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from s3core.evaluation.summary import METRICS, comparison_rows, run_order, set_metrics
from s3core.store import Manifest, StageContext, StageResult

CURVE_COLUMNS = ("step", "reward_mean", "genacc_s3")




def train_curve(store, train: Manifest) -> list[dict[str, float]]:
    import pyarrow.parquet as pq

    table = pq.read_table(store.local_dir(train) / "metrics.parquet")
    return [{k: row[k] for k in CURVE_COLUMNS if k in row} for row in table.to_pylist()]


def build_report(ctx: StageContext, title: str, curve: list[dict[str, float]]) -> StageResult:
    out = ctx.staging_dir()
    scores = [m for k, m in sorted(ctx.inputs.items()) if k.startswith("scores/")]
    per_set = set_metrics(scores)
    if "train" in ctx.inputs and not curve:
        curve = train_curve(ctx.store, ctx.inputs["train"])
    write_comparison_csv(per_set, out / "comparison.csv")
    plots = {"per_dataset.png": plot_per_dataset(per_set, out / "per_dataset.png")}
    if curve:
        plots["reward_curve.png"] = plot_reward_curve(curve, out / "reward_curve.png")
    (out / "report.md").write_text(report_markdown(title, per_set, curve, plots), encoding="utf-8")
    best = comparison_rows(per_set)
    return StageResult(stats={"runs": len(best), "qa_sets": len({r["data_source"] for r in per_set}),
                              "genacc_avg": {r["run"]: r["avg"] for r in best}}, staging_dir=out)


def write_comparison_csv(per_set: list[dict[str, Any]], path: Path) -> None:
    columns = ["run", "data_source", "split", "questions", "scoring", *METRICS]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: row[k] for k in columns} for row in per_set)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(empty)"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join("" if row[c] is None else str(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def report_markdown(title: str, per_set: list[dict[str, Any]], curve: list[dict[str, float]],
                    plots: dict[str, Path]) -> str:
    sets = ", ".join(f"{r['data_source']}/{r['split']} ({r['questions']} questions, {r['scoring']})"
                     for r in {(r["data_source"], r["split"]): r for r in per_set}.values())
    parts = [f"# {title}", "", f"QA sets: {sets}.", "",
             "GenAcc is span_check OR judge (judge alone where the scoring says judge_only); EM and F1 are "
             "reported alongside. `avg` is the unweighted mean over data sources. Values in %.", ""]
    for metric, label in (("genacc", "GenAcc"), ("em", "Exact match"), ("f1", "Token F1")):
        parts += [f"## {label}", "", markdown_table(comparison_rows(per_set, metric)), ""]
    parts += ["## Plots", "", "![GenAcc per data source](per_dataset.png)", ""]
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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
